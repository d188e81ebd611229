"""tests/bench: `keybroker bench` and bench/compare against a real keybrokerd.

Each test is one function named on the command line (meson registers one
test() per function). No test asserts a speed: only that the numbers exist,
the requests succeeded, the counters agree, and the outputs parse.
"""
import csv
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from kbtest import BUILD, SRC, Broker, Token, check, run  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"


def bench_json(b, *args):
    p = b.cli("bench", "--json", "--warmup", "0.2", *args, check_rc=0)
    j = json.loads(p.stdout)
    check(len(j["series"]) == 1, "one series: %s" % j)
    return j, j["series"][0]


def bench_json_has_nonzero_requests_and_zero_errors(root):
    b = Broker(root, Token(root))
    j, s = bench_json(b, "--key", "aes", "--op", "unwrap-hit", "--duration", "1", "--clients", "2")
    check(j["op"] == "unwrap-hit" and j["key"] == "aes" and j["backend"] == "pkcs11", "header: %s" % j)
    check(s["requests"] > 0 and s["errors"] == 0, "requests and errors: %s" % s)
    check(s["throughput"] > 0 and 0 < s["latency_us"]["p50"] <= s["latency_us"]["p99"] <= s["latency_us"]["max"],
          "latencies in order: %s" % s)
    check(s["backend_calls"] == 0 and s["hit_ratio"] == 1.0, "unwrap-hit is all hits: %s" % s)


def bench_unwrap_miss_reaches_the_backend_every_time(root):
    b = Broker(root, Token(root))
    for key in ("rsa", "aes"):
        _, s = bench_json(b, "--key", key, "--op", "unwrap-miss", "--duration", "1")
        check(s["requests"] > 0 and s["errors"] == 0, "%s: %s" % (key, s))
        check(s["backend_calls"] == s["requests"] == s["misses"] and s["hits"] == 0,
              "%s: every unwrap reaches the backend: %s" % (key, s))


def bench_every_op_runs_by_request_count(root):
    b = Broker(root, Token(root))
    for op in ("unwrap-hit", "unwrap-miss", "wrap", "datakey", "rewrap", "mixed"):
        _, s = bench_json(b, "--key", "aes", "--op", op, "--requests", "200", "--clients", "2")
        check(s["requests"] == 200 and s["errors"] == 0, "%s: %s" % (op, s))


def bench_refuses_bad_usage(root):
    b = Broker(root, Token(root))
    for args in (["--op", "wrap"], ["--key", "aes", "--op", "nope"],
                 ["--key", "aes", "--op", "wrap", "--duration", "1", "--requests", "5"],
                 ["--key", "aes", "--op", "wrap", "--clients", "0"]):
        p = b.cli("bench", *args)
        check(p.returncode == 2, "bench %s: exit %d, want 2" % (args, p.returncode))
    for op in ("wrap", "unwrap-hit", "unwrap-miss", "datakey", "rewrap", "mixed"):
        p = b.cli("bench", "--key", "nokey", "--op", op, "--requests", "5")
        check(p.returncode == 1 and p.stderr.startswith(b"keybroker: unknown_key: ") and b"nokey" in p.stderr,
              "%s: an unknown key is unknown_key, as in every other command: %r" % (op, p.stderr))
        check(p.stdout == b"", "%s: no table for a run that did not start: %r" % (op, p.stdout))


def bench_refused_size_fails_once_with_the_brokers_message(root):
    """SoftHSM's AES-KWP key takes multiples of 8 bytes: a 12-byte DEK is refused by the broker
    before the run, with its code and whole message, and nothing is measured or shown."""
    b = Broker(root, Token(root))
    want = b.call({"op": "wrap", "key": "aes", "plaintext": "AAAAAAAAAAAAAAAA"})["error"]
    check(want["code"] == "bad_request" and len(want["message"]) > 20, "the broker refuses 12 bytes: %s" % want)
    for op in ("wrap", "datakey", "unwrap-hit", "unwrap-miss", "rewrap", "mixed"):
        p = b.cli("bench", "--key", "aes", "--op", op, "--size", "12", "--requests", "20", "--warmup", "0")
        err = p.stderr.decode()
        check(p.returncode == 1, "%s: exit %d, want 1: %s" % (op, p.returncode, err))
        check(err == "keybroker: bad_request: %s\n" % want["message"],
              "%s: the broker's code and whole message: %r" % (op, err))
        check(p.stdout == b"", "%s: no throughput or latency for a run that failed: %r" % (op, p.stdout))


def bench_plot_and_csv_hold_one_series(root):
    b = Broker(root, Token(root))
    svg, table = os.path.join(root, "cdf.svg"), os.path.join(root, "bench.csv")
    b.cli("bench", "--key", "rsa", "--op", "unwrap-hit", "--duration", "1", "--warmup", "0",
          "--plot", svg, "--csv", table, check_rc=0)
    paths = ET.parse(svg).getroot().findall(".//" + SVG + "path")
    check(len(paths) == 1, "one path for one series, got %d" % len(paths))
    rows = list(csv.DictReader(open(table)))
    check(len(rows) == 1 and int(rows[0]["requests"]) > 0, "one CSV row: %s" % rows)


def compare_plot_has_one_path_per_series(root):
    out = os.path.join(root, "out")
    p = subprocess.run([os.path.join(SRC, "bench", "compare"), "--build", BUILD, "--out", out,
                        "--duration", "0.3", "--rounds", "1", "--runs", "1", "--warmup", "0",
                        # the latency series runs too, briefly: its code is what is tested here, not its figures
                        "--latency-clients", "1,32", "--latency-duration", "0.5", "--latency-runs", "1"],
                       capture_output=True, timeout=600)
    check(p.returncode == 0, "bench/compare failed: %s" % p.stderr.decode(errors="replace"))
    j = json.load(open(os.path.join(out, "compare.json")))
    shown = [s for s in j["series"] if not s["skipped"] and s["requests"] > 0]
    check(len(shown) >= 12, "floors, keybroker and the RSA peer all ran: %s" % [s["series"] for s in shown])
    check(all(s["errors"] == 0 for s in shown), "no errors: %s" % shown)
    root_el = ET.parse(os.path.join(out, "bench-cdf.svg")).getroot()
    paths = root_el.findall(".//" + SVG + "path")
    check(len(paths) == len(shown), "%d paths for %d series" % (len(paths), len(shown)))
    texts = " ".join(t.text or "" for t in root_el.iter(SVG + "text"))
    check("latency" in texts and "fraction" in texts, "labelled axes: %s" % texts)
    check(len(j["ratios"]) >= 7 and all("median" in r for r in j["ratios"]), "ratios: %s" % j["ratios"])
    check(b"ratio" in p.stdout and b"median" in p.stdout, "a ratio table is printed")


def compare_help_lists_its_series_and_options(root):
    p = subprocess.run([os.path.join(SRC, "bench", "compare"), "--build", BUILD, "--help"],
                       capture_output=True, timeout=60)
    out = p.stdout.decode()
    check(p.returncode == 0, "bench/compare --help exits 0: %d %s" % (p.returncode, p.stderr))
    for want in ("--build DIR", "--out DIR", "--duration S", "--rounds N", "--runs N", "--warmup S",
                 "--size BYTES", "--azure-key NAME", "floor A: echo, rsa sizes", "floor B: in-process AES",
                 "keybroker unwrap-miss rsa", "peer: p11-kit server RSA", "Azure: raw HTTPS unwrapkey",
                 "cached unwrap p50 / echo p50"):
        check(want in out, "bench/compare --help lacks %r:\n%s" % (want, out))


if __name__ == "__main__":
    run(globals())
