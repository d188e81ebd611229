"""The operator endpoints (metrics_listen): /metrics, /healthz, /readyz, with
Debian's real Prometheus scraping them and promtool checking the exposition."""
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmsfix import wait_for  # noqa: E402
import kbtest  # noqa: E402
from kbtest import Broker, Token, b64, check, free_port  # noqa: E402

STARTED = []


def get(url):
    """(status, body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def start(root, extra_keys="", token=None):
    token = token or Token(root)
    port = free_port()
    kb = Broker(root, token, broker_extra="health_interval = 1s\nmetrics_listen = 127.0.0.1:%d\n" % port,
                keys=token.key_section("rsa", "rsa-kek", "RSA-OAEP") +
                token.key_section("aes", "aes-kek", "AES-KWP") + extra_keys)
    return kb, "http://127.0.0.1:%d" % port


def prometheus_scrapes_keybroker_metrics(root):
    """A real Prometheus scrapes /metrics and answers keybroker_cache_hits_total
    through its query API; promtool accepts the exposition."""
    kb, base = start(root)
    check(get(base + "/healthz") == (200, "ok\n"), "/healthz serves")
    wait_for(lambda: get(base + "/readyz")[0] == 200, "/readyz 200 once every key's check passed")
    blob = kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(os.urandom(32))})["blob"]
    for _ in range(7):
        kb.ok({"op": "unwrap", "blob": blob})
    hits = kb.status()["counters"]["hits"]
    check(hits >= 6, "hits counted: %d" % hits)
    status, text = get(base + "/metrics")
    check(status == 200 and "keybroker_cache_hits_total %d" % hits in text, "/metrics: %s" % text[:300])
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True)
    check(p.returncode == 0, "promtool check metrics: %s %s" % (p.stdout.decode(), p.stderr.decode()))
    check(get(base + "/nothing")[0] == 404, "an unknown path is 404")

    prom_port = free_port()
    conf = os.path.join(root, "prometheus.yml")
    with open(conf, "w") as f:
        f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: keybroker\n"
                "    static_configs:\n      - targets: ['%s']\n" % base[len("http://"):])
    log = open(os.path.join(root, "prometheus.log"), "wb")
    prom = subprocess.Popen(["prometheus", "--config.file=" + conf, "--storage.tsdb.path=" + os.path.join(root, "tsdb"),
                             "--web.listen-address=127.0.0.1:%d" % prom_port], stdout=log, stderr=log)
    STARTED.append(prom)
    papi = "http://127.0.0.1:%d" % prom_port
    wait_for(lambda: get(papi + "/-/ready")[0] == 200, "Prometheus ready", timeout=60)

    def scraped():
        st, body = get(papi + "/api/v1/query?" + urllib.parse.urlencode({"query": "keybroker_cache_hits_total"}))
        if st != 200:
            return None
        res = json.loads(body)["data"]["result"]
        return res[0] if res and int(float(res[0]["value"][1])) >= hits else None
    r = wait_for(scraped, "Prometheus to have scraped keybroker_cache_hits_total", timeout=60)
    check(r["metric"]["job"] == "keybroker", "the series comes from the keybroker job: %s" % r)
    st, body = get(papi + "/api/v1/query?" + urllib.parse.urlencode({"query": "keybroker_key_check_ok"}))
    keys = {x["metric"]["key"]: x["value"][1] for x in json.loads(body)["data"]["result"]}
    check(keys == {"rsa": "1", "aes": "1"}, "both keys healthy in Prometheus: %s" % keys)


def readyz_names_a_key_whose_check_fails(root):
    """/readyz is 503 and names the key while one configured key fails its
    check (here its policy refuses the broker's own wrap), /healthz stays 200."""
    token = Token(root)
    kb, base = start(root, extra_keys="\n" + token.key_section("narrow", "rsa-kek", "RSA-OAEP",
                                                             "allow_wrap = nobody\n"), token=token)
    st, body = wait_for(lambda: (lambda r: r if r[0] == 503 and "key narrow: wrap failed" in r[1] else None)(get(base + "/readyz")),
                        "/readyz 503 naming the failing key")
    check("permission_denied" in body, "/readyz says why: %r" % body)
    check(get(base + "/healthz")[0] == 200, "/healthz: the process serves")
    status, text = get(base + "/metrics")
    check('keybroker_key_check_ok{key="narrow"} 0' in text and 'keybroker_key_check_ok{key="rsa"} 1' in text,
          "keybroker_key_check_ok per key")


def healthz_answers_again_after_a_burst_past_the_connection_limit(root):
    """libmicrohttpd takes its listening socket out of its epoll set at its connection limit (64)
    and puts it back only on a later run: once a burst of idle connections (with a probe that
    gave up waiting behind them) goes, /healthz must answer again, not stay dark for good."""
    import socket
    kb, base = start(root)
    port = int(base.rsplit(":", 1)[1])

    def probe(timeout):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
                c.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                return c.recv(64)
        except OSError as e:
            return repr(e).encode()

    check(probe(5).startswith(b"HTTP/1.1 200"), "/healthz before the burst")
    for n in (64, 100):
        held = []
        for _ in range(n):
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break  # the backlog is full: enough
        gave_up = probe(1)  # waits in the backlog behind the held connections, then gives up
        for s in held:
            s.close()
        got = wait_for(lambda: (lambda r: r if r.startswith(b"HTTP/1.1 200") else None)(probe(1)),
                       "/healthz to answer again after a burst of %d" % n, timeout=15)
        check(got.startswith(b"HTTP/1.1 200"), "after %d held connections (a probe meanwhile: %r)" % (n, gave_up))
    check(kb.stop() == 0, "keybrokerd did not exit 0 on SIGTERM")


if __name__ == "__main__":
    name = sys.argv[1]
    fns = {"prometheus_scrapes_keybroker_metrics": prometheus_scrapes_keybroker_metrics,
           "readyz_names_a_key_whose_check_fails": readyz_names_a_key_whose_check_fails,
           "healthz_answers_again_after_a_burst_past_the_connection_limit":
           healthz_answers_again_after_a_burst_past_the_connection_limit}
    try:
        kbtest.run(fns)
    finally:
        for p in STARTED:
            if p.poll() is None:
                p.terminate()
                p.wait(30)
