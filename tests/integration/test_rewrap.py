#!/usr/bin/env python3
"""Bulk rewrap (`keybroker rewrap --in`) against a real keybrokerd on a SoftHSM
token: --out in input order, --failed, the summary by version and code, a
rerun that resumes, --to-version, the progress line on a terminal only, and
no DEK in anything it writes."""
import os
import pty
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kbtest  # noqa: E402
from kbtest import CLI, Broker, Token, check, unb64  # noqa: E402

BAD = "kb1:aes:01:AES-KWP:AAAA:zzzzzzzz"


def blobs(kb, n, bad_at=None):
    """n fresh data keys, alternating aes and rsa: (lines, DEKs in base64)."""
    lines, deks = [], []
    for i in range(n):
        r = kb.ok({"op": "datakey", "key": "aes" if i % 2 else "rsa"})
        lines.append(r["blob"])
        deks.append(r["plaintext"])
    if bad_at is not None:
        lines[bad_at] = BAD
    return lines, deks


def write_lines(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def read_lines(path):
    with open(path) as f:
        return f.read().splitlines()


def wraps(kb):
    """The backend's wrap calls so far: one per line a rewrap moved."""
    return kb.backend_calls("aes", "wrap") + kb.backend_calls("rsa", "wrap")


def check_unwraps(kb, out, deks, skip=()):
    kb.ok({"op": "flush"})
    for i, blob in enumerate(out):
        if i in skip:
            continue
        check(kb.ok({"op": "unwrap", "blob": blob})["plaintext"] == deks[i], "line %d keeps its DEK" % (i + 1))


def rewrap_bulk_out_failed_and_summary(root):
    kb = Broker(root, Token(root))
    lines, deks = blobs(kb, 300, bad_at=7)
    kb.ok({"op": "rotate", "key": "aes"})
    kb.ok({"op": "rotate", "key": "rsa"})
    src, out, failed = (os.path.join(root, n) for n in ("blobs.txt", "blobs.new", "blobs.failed"))
    write_lines(src, lines)
    p = kb.cli("rewrap", "--in", src, "--out", out, "--failed", failed, "--concurrency", "8", check_rc=1)
    err = p.stderr.decode()
    new = read_lines(out)
    check(p.stdout == b"", "with --out nothing goes to stdout")
    check(len(new) == 300 and new[7] == BAD, "one line out per line in, the failed one unchanged")
    check(all(":02:" in b for i, b in enumerate(new) if i != 7), "every other line moved to version 02")
    check(read_lines(failed) == [BAD], "--failed lists the failed line: %s" % read_lines(failed))
    for want in ("line 8: bad_blob", "1 of 300 lines failed", "299 rewrapped", "aes 01 -> 02: 149",
                 "rsa 01 -> 02: 150", "failed bad_blob: 1"):
        check(want in err, "the summary says %r:\n%s" % (want, err))
    check("\r" not in err and "ETA" not in err, "no progress line when stderr is no terminal:\n%r" % err)
    check_unwraps(kb, new, deks, skip=(7,))
    # no DEK in anything the run wrote
    written = p.stdout + p.stderr + open(out, "rb").read() + open(failed, "rb").read()
    check(not any(d.encode() in written or unb64(d).hex().encode() in written for d in deks),
          "no DEK in --out, --failed, stdout or stderr")
    # the same file with 1 connection: the same lines in the same order (versions are 02 either way)
    p = kb.cli("rewrap", "--in", src, "--concurrency", "1", check_rc=1)
    one = p.stdout.decode().splitlines()
    check(len(one) == 300 and [b.split(":")[:3] for b in one] == [b.split(":")[:3] for b in new],
          "--concurrency 1 keeps the same order")
    kb.cli("rewrap", "--in", src, "--concurrency", "0", check_rc=2)
    kb.cli("rewrap", "--out", out, lines[0], check_rc=2)


def rewrap_bulk_rerun_resumes_from_out(root):
    kb = Broker(root, Token(root))
    lines, deks = blobs(kb, 200)
    kb.ok({"op": "rotate", "key": "aes"})
    kb.ok({"op": "rotate", "key": "rsa"})
    src, out = os.path.join(root, "blobs.txt"), os.path.join(root, "blobs.new")
    write_lines(src, lines)
    kb.cli("rewrap", "--in", src, "--out", out, check_rc=0)
    full = read_lines(out)
    # as if the first run had stopped after 120 lines, in the middle of the 121st
    with open(out, "w") as f:
        f.write("\n".join(full[:120]) + "\n" + full[120][:40])
    calls = wraps(kb)
    p = kb.cli("rewrap", "--in", src, "--out", out, check_rc=0)
    err = p.stderr.decode()
    again = read_lines(out)
    check(len(again) == 200 and again[:120] == full[:120], "the 120 lines done are kept as they were")
    check("120 lines skipped, already in --out" in err and "80 rewrapped" in err, "the summary says so:\n" + err)
    check(wraps(kb) - calls == 80,
          "only the 80 lines left reach the backend")
    check_unwraps(kb, again, deks)
    # a finished --out: nothing left to do
    p = kb.cli("rewrap", "--in", src, "--out", out, check_rc=0)
    check("200 lines skipped" in p.stderr.decode() and read_lines(out) == again, "a finished run is left alone")
    # an --out longer than the input is not its output
    write_lines(os.path.join(root, "short.txt"), lines[:10])
    p = kb.cli("rewrap", "--in", os.path.join(root, "short.txt"), "--out", out, check_rc=2)
    check("not this input's output" in p.stderr.decode(), p.stderr.decode())


def rewrap_bulk_to_version(root):
    kb = Broker(root, Token(root))
    lines, deks = blobs(kb, 40)
    kb.ok({"op": "rotate", "key": "aes"})
    kb.ok({"op": "rotate", "key": "rsa"})
    moved = [kb.ok({"op": "rewrap", "blob": b})["blob"] for b in lines[:10]]
    src, out = os.path.join(root, "blobs.txt"), os.path.join(root, "blobs.new")
    write_lines(src, moved + lines[10:])
    calls = wraps(kb)
    p = kb.cli("rewrap", "--in", src, "--out", out, "--to-version", "02", check_rc=0)
    err = p.stderr.decode()
    check(read_lines(out)[:10] == moved and "10 already under the version" in err and "30 rewrapped" in err,
          "lines under 02 are kept as they are:\n" + err)
    check(wraps(kb) - calls == 30, "and never reach the backend")
    check_unwraps(kb, read_lines(out), deks)
    # the key moved on to 03: a rewrap to 02 cannot happen, every other line fails, unchanged
    kb.ok({"op": "rotate", "key": "aes"})
    os.unlink(out)
    p = kb.cli("rewrap", "--in", src, "--out", out, "--to-version", "02", "--failed", os.path.join(root, "f"),
               check_rc=1)
    err = p.stderr.decode()
    check("wrapped it under aes 03" in err and "failed unknown_version: 15" in err, err)
    new = read_lines(out)
    for i in range(10, 40):
        want = lines[i] if i % 2 else "kb2:rsa:02:"
        check(new[i].startswith(want), "line %d: aes unchanged, rsa under 02: %s" % (i + 1, new[i][:40]))


def rewrap_bulk_progress_on_a_terminal(root):
    kb = Broker(root, Token(root))
    lines, _ = blobs(kb, 100)
    src, out = os.path.join(root, "blobs.txt"), os.path.join(root, "blobs.new")
    write_lines(src, lines)
    master, slave = pty.openpty()
    env = dict(kb.env, KEYBROKER_SOCKET=kb.sock)
    p = subprocess.Popen([CLI, "rewrap", "--in", src, "--out", out], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    check(p.wait(60) == 0, "the run succeeds")
    text = seen.decode(errors="replace")
    check("\r" in text and "100/100 lines" in text and "/s" in text and "0 errors" in text and "ETA" in text,
          "a progress line with done/total, rate, errors and ETA on a terminal:\n%r" % text)
    check("100 rewrapped" in text, "then the summary:\n%r" % text)


if __name__ == "__main__":
    kbtest.run(globals())
