#!/usr/bin/env python3
"""Hostile peers of the HTTP operator face (metrics_listen) and a few protocol points: /healthz
answers each probe within 1 s through slowloris connections and 5,000 idle ones; a flood of
/metrics scrapes leaves the NDJSON p50 within 2x of its idle value (measured in the same run);
the port shows no peer uid/pid and /readyz no message; metrics_listen is checked as startup
checks it; a reload that revokes a uid closes its open connections; a field given twice is
refused."""
import json
import os
import re
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sectest import (KEYBROKERD, Broker, Conn, Token, audit_lines, b64, check, run, shareable,  # noqa: E402
                     wait_for)
from kbtest import free_port, wait_for  # noqa: E402

PROBE_S = 1.0  # the bound the issue states for each /healthz probe


def ops_broker(root, token=None, extra="", keys=None):
    token = token or Token(root)
    port = free_port()
    kb = Broker(root, token, keys=keys,
                broker_extra="health_interval = 1s\nmetrics_listen = 127.0.0.1:%d\n%s" % (port, extra))
    return kb, port


def http_get(port, path, timeout=PROBE_S):
    """(status, body, seconds) of one GET on a new connection, the whole exchange within timeout;
    status is None when it did not complete in time."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET %s HTTP/1.0\r\nHost: probe\r\n\r\n" % path.encode())
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                s.settimeout(left)
                d = s.recv(65536)
                if not d:
                    break
                data += d
    except OSError as e:
        return None, repr(e), time.monotonic() - t0
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None, repr(data[:80]), time.monotonic() - t0
    return status, body.decode(errors="replace"), time.monotonic() - t0


def probes_answer_in_time(port, seconds, what):
    """Probes /healthz for `seconds`, one probe after another: each must be 200 within PROBE_S."""
    end = time.monotonic() + seconds
    n, slowest = 0, 0.0
    while time.monotonic() < end:
        st, body, took = http_get(port, "/healthz")
        check(st == 200 and body == "ok\n",
              "%s: probe %d got %s %r after %.2f s (each must answer within %.0f s)" % (what, n + 1, st, body, took,
                                                                                      PROBE_S))
        n += 1
        slowest = max(slowest, took)
        time.sleep(0.1)
    print("%s: %d probes, slowest %.3f s" % (what, n, slowest))


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def healthz_answers_through_slowloris(root):
    """128 connections that each send a header line every second, and reconnect at once when
    closed, keep no /healthz probe waiting past 1 s; the daemon holds a bounded number of them."""
    kb, port = ops_broker(root)
    stop = threading.Event()
    closed = [0]

    def loris():
        s = None
        while not stop.is_set():
            try:
                if s is None:
                    s = socket.create_connection(("127.0.0.1", port), timeout=2)
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: loris\r\n")
                s.sendall(b"X-Drip: %d\r\n" % int(time.monotonic()))
            except OSError:
                if s is not None:
                    s.close()
                    closed[0] += 1
                s = None
                time.sleep(0.2)
                continue
            stop.wait(1.0)
        if s is not None:
            s.close()

    threads = [threading.Thread(target=loris, daemon=True) for _ in range(128)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)  # every dripper is in
        probes_answer_in_time(port, 12, "slowloris")  # past the 5 s bound on a whole request
        check(closed[0] > 0, "the daemon closed drippers (whole-request bound, eviction): %d" % closed[0])
        fds = open_fds(kb.proc.pid)
        check(fds < 200, "the daemon holds a bounded number of descriptors: %d" % fds)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    check(kb.stop() == 0, "keybrokerd exits 0")


def healthz_answers_while_5000_idle_connections_are_held(root):
    """5,000 TCP connections opened at once and held without a byte: once the daemon has taken
    the burst, each /healthz probe answers within 1 s, and the daemon's descriptors stay bounded.
    (Before, no probe was answered while they were held.)"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 6000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    kb, port = ops_broker(root)
    held = []
    try:
        for _ in range(5000):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            held.append(s)
        # the burst itself: the daemon takes the 5,000 from its backlog (0.1 to 0.2 s here, longer
        # under ASan, when the backlog overflows and a probe waits for a SYN retry); then, while
        # they are held, every probe answers within the bound
        t0 = time.monotonic()
        st, body, took = http_get(port, "/healthz", 10)
        check(st == 200, "the first probe after the burst: %s %r after %.2f s" % (st, body, took))
        print("the first probe after the burst of 5,000 answered in %.3f s" % (time.monotonic() - t0))
        probes_answer_in_time(port, 8, "5,000 idle connections held")
        fds = open_fds(kb.proc.pid)
        check(fds < 200, "the daemon holds a bounded number of descriptors: %d" % fds)
        check(kb.ok({"op": "status"})["ok"], "the socket serves")
    finally:
        for s in held:
            s.close()
    check(kb.stop() == 0, "keybrokerd exits 0")


# A flood of /metrics scrapes: CONNS keep-alive connections in one process, each asking again
# as soon as its answer is whole; prints the number of answers when told to stop (stdin closes).
_FLOOD = r'''
import selectors, socket, sys, threading
port, conns = int(sys.argv[1]), int(sys.argv[2])
REQ = b"GET /metrics HTTP/1.1\r\nHost: flood\r\n\r\n"
sel = selectors.DefaultSelector()
done = [0]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
def start():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(REQ)
    sel.register(s, selectors.EVENT_READ, [b""])
for _ in range(conns):
    start()
print("ready", flush=True)
while not stop.is_set():
    for key, _ in sel.select(0.2):
        s, st = key.fileobj, key.data
        d = s.recv(262144)
        if not d:
            sel.unregister(s); s.close(); start(); continue
        st[0] += d
        while True:
            head, sep, rest = st[0].partition(b"\r\n\r\n")
            if not sep:
                break
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            if len(rest) < n:
                break
            st[0] = rest[n:]
            done[0] += 1
            s.sendall(REQ)
print(done[0], flush=True)
'''


def p50_us(c, blob, n):
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = c.call({"op": "unwrap", "blob": blob})
        lat.append((time.perf_counter() - t0) * 1e6)
        check(r["ok"], "unwrap: %s" % r)
    return statistics.median(lat)


def metrics_flood_leaves_ndjson_p50_within_twice_idle(root):
    """A flood of /metrics scrapes (two processes of 8 keep-alive connections, each asking again
    as soon as answered) leaves the NDJSON p50 of cached unwraps at most 2x its idle value,
    measured in the same run: the loop renders the exposition at most every 250 ms, and the
    HTTP face has its own thread. Five idle and flooded rounds alternate and the medians are
    compared, so a noisy neighbour on this shared host hits both sides."""
    kb, port = ops_broker(root)
    blob = kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(os.urandom(32))})["blob"]
    c = Conn(kb.sock)
    p50_us(c, blob, 500)  # warm
    idle, flooded, rates = [], [], []
    for _ in range(5):
        idle.append(p50_us(c, blob, 1500))
        fl = [subprocess.Popen([sys.executable, "-c", _FLOOD, str(port), "8"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(2)]
        for f in fl:
            check(f.stdout.readline().strip() == b"ready", "the flooder connected")
        time.sleep(0.5)
        t0 = time.monotonic()
        flooded.append(p50_us(c, blob, 1500))
        took = time.monotonic() - t0
        n = 0
        for f in fl:
            f.stdin.close()
            n += int(f.stdout.readline())
            f.wait(10)
        rates.append(n / (took + 0.5))
    print("NDJSON unwrap p50 idle %s us, under a /metrics flood %s us; flood rates %s/s" %
          (["%.0f" % x for x in idle], ["%.0f" % x for x in flooded], ["%.0f" % r for r in rates]))
    # a real flood: 1,000 to 16,000 a second here, a few hundred under ASan on a loaded host
    check(statistics.median(rates) > 200, "the flood ran (scrapes/s): %s" % rates)
    ratio = statistics.median(flooded) / statistics.median(idle)
    check(ratio <= 2.0, "NDJSON p50 under the /metrics flood is %.2fx its idle value (at most 2x)" % ratio)
    c.close()


def http_port_shows_no_peer_and_readyz_no_message(root):
    """/metrics on the HTTP port has no uid/pid series (the socket's `metrics` keeps them);
    /readyz names the failing key, step and code, not the message; status keeps the detail."""
    token = Token(root)
    keys = (token.key_section("aes", "aes-kek", "AES-KWP") +
            token.key_section("narrow", "rsa-kek", "RSA-OAEP", "allow_wrap = nobody\n"))
    kb, port = ops_broker(root, token=token, keys=keys,
                          extra="max_connections_per_peer = 1\nreserved_connections = 0\n")
    # a refusal of this process's second connection: a per-peer series with its uid and pid
    held = Conn(kb.sock)
    held.call({"op": "status"})
    extra = Conn(kb.sock)
    line = extra.read_line()
    check(line["error"]["code"] == "busy", "the second connection is refused busy: %s" % line)
    extra.close()
    sock_text = held.call({"op": "metrics"})["text"]
    check('keybroker_peer_busy_refusals_total{uid="0",pid="%d"' % os.getpid() in sock_text,
          "the socket's metrics name the peer: %s" % [l for l in sock_text.splitlines() if "peer" in l])
    # the HTTP text may be up to 250 ms old: wait until it counts the refusal
    def refusal_shown():
        st, text, _ = http_get(port, "/metrics", 10)
        refused = re.search(r'^keybroker_busy_refusals_total\{[^}]*\} [1-9]', text, re.M)
        return text if st == 200 and refused else None
    text = wait_for(refusal_shown, 10, "/metrics on the HTTP port counting the busy refusal")
    # no pid anywhere; a uid only in the per-uid queue waits that issue 24 asks /metrics to show
    named = [l for l in text.splitlines()
             if "pid=" in l or ("uid=" in l and not l.startswith("keybroker_queue_wait"))]
    check(not named, "/metrics on the HTTP port names no peer: %s" % named)

    def readyz_fails():
        st, body, _ = http_get(port, "/readyz", 10)
        return (st, body) if st == 503 and "narrow" in body else None

    st, body = wait_for(readyz_fails, 20, "/readyz 503 naming the narrow key")
    check(body == "key narrow: wrap failed: permission_denied\n", "/readyz names key, step and code only: %r" % body)
    keys = {k["name"]: k for k in held.call({"op": "status"})["keys"]}
    detail = keys["narrow"].get("check_error", "")
    check(keys["narrow"].get("check") == "failed" and detail.startswith("key narrow: wrap failed: permission_denied: ")
          and len(detail) > len(body) + 20, "status keeps the detail: %s" % keys["narrow"])
    held.close()


def check_conf(root, value):
    conf = os.path.join(root, "check-%d.conf" % abs(hash(value)))
    with open(conf, "w") as f:
        f.write("[broker]\nsocket = %s\nmetrics_listen = %s\n" % (os.path.join(root, "x.sock"), value))
    return subprocess.run([KEYBROKERD, "--check", "-c", conf], capture_output=True, timeout=30)


def metrics_listen_is_checked_as_startup_checks_it(root):
    """--check and startup refuse a port over 65535 and an empty host; :0 logs the port it got;
    every interface is warned of and shown in status."""
    for bad in ("127.0.0.1:99999", ":9464", "127.0.0.1:", "::1:9464"):
        p = check_conf(root, bad)
        out = (p.stdout + p.stderr).decode(errors="replace")
        check(p.returncode != 0 and "metrics_listen" in out, "--check refuses %r: rc %d %s" % (bad, p.returncode, out))
    p = check_conf(root, "[::1]:9464")
    check(p.returncode == 0, "--check takes [::1]:9464: %s" % (p.stdout + p.stderr).decode(errors="replace"))
    token = Token(root)
    kb = Broker(root, token, broker_extra="metrics_listen = 127.0.0.1:99999\n", start=False)
    check(kb.start(expect_fail=True) != 0, "startup refuses port 99999")
    check("metrics_listen" in kb.log_text() and "65535" in kb.log_text(), "it says why: %s" % kb.log_text()[-400:])
    os.unlink(kb.log)

    kb = Broker(root, token, broker_extra="metrics_listen = 127.0.0.1:0\n")
    got = wait_for(lambda: [l for l in kb.log_text().splitlines() if "http://127.0.0.1:" in l], 10,
                   "the log names the address")
    port = int(got[0].rsplit(":", 1)[1])
    check(port != 0, "the log names the port the kernel picked: %s" % got[0])
    st, body, _ = http_get(port, "/healthz", 5)
    check(st == 200, "/healthz on the logged port: %s %r" % (st, body))
    check(kb.status()["metrics_listen"] == {"address": "127.0.0.1:0", "every_interface": False},
          "status: %s" % kb.status().get("metrics_listen"))
    check("every interface" not in kb.log_text(), "no warning on loopback")
    check(kb.stop() == 0, "exits 0")
    os.unlink(kb.log)

    port = free_port()
    kb = Broker(root, token, broker_extra="metrics_listen = 0.0.0.0:%d\n" % port)
    check("every interface" in kb.log_text(), "a warning for 0.0.0.0: %s" % kb.log_text()[-600:])
    check(kb.status()["metrics_listen"] == {"address": "0.0.0.0:%d" % port, "every_interface": True},
          "status says every interface: %s" % kb.status().get("metrics_listen"))
    check(kb.stop() == 0, "exits 0")


# A peer of another uid that holds one connection: it asks status, says what it got, then waits
# for a line on stdin and asks again, reporting the answer, or "eof".
_HOLDER = r'''
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
f = s.makefile("rb")
def ask(i):
    try:
        s.sendall(json.dumps({"id": i, "op": "status"}).encode() + b"\n")
    except OSError:
        pass
    out = []
    while True:
        try:
            l = f.readline()
        except OSError:
            l = b""
        if not l:
            out.append("eof")
            break
        a = json.loads(l)
        out.append(a)
        if a.get("id") == i:
            break
    print(json.dumps(out), flush=True)
ask(1)
sys.stdin.readline()
ask(2)
'''


def reload_that_revokes_a_uid_closes_its_connections(root):
    """A SIGHUP that drops nobody from allow_uids closes the connection nobody holds open, with
    a permission_denied line, one audit line and one log line; root's open connection stays."""
    shareable(root)
    token = Token(root)
    audit = os.path.join(root, "audit.log")
    shared = "socket_mode = 0660\nsocket_group = nogroup\naudit_log = %s\n" % audit
    kb = Broker(root, token, broker_extra=shared + "allow_uids = root nobody\n")
    mine = Conn(kb.sock)
    check(mine.call({"op": "status"})["ok"], "root's connection")
    peer = subprocess.Popen(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                             sys.executable, "-c", _HOLDER, kb.sock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            cwd="/")
    try:
        first = json.loads(peer.stdout.readline())
        check(first[0]["ok"], "nobody is served before the reload: %s" % first)
        Broker(root, token, broker_extra=shared + "allow_uids = root\n", start=False)
        kb.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: reloaded" in kb.log_text(), 10, "the reload")
        peer.stdin.write(b"go\n")
        peer.stdin.flush()
        second = json.loads(peer.stdout.readline())
        check(second[-1] == "eof", "nobody's open connection is closed by the reload: %s" % second)
        check(all(isinstance(a, dict) and a["error"]["code"] == "permission_denied" for a in second[:-1]) and
              len(second) == 2, "it is told permission_denied first: %s" % second)
    finally:
        peer.kill()
        peer.wait()
    check(mine.call({"op": "status"})["ok"], "root's open connection stays served")
    revoked = [l for l in audit_lines(audit) if l.get("op") == "disconnect"]
    check(len(revoked) == 1 and revoked[0]["uid"] == 65534 and revoked[0]["result"] == "permission_denied",
          "one audit line for the closed connection: %s" % revoked)
    logged = [l for l in kb.log_text().splitlines() if "closing a connection of uid 65534" in l]
    check(len(logged) == 1, "one log line: %s" % logged)
    mine.close()


# A KMS v2 client of another uid (kube-apiserver's stand-in, tests/kms/kmsfix.py) that holds its
# channel: Status, then on a line on stdin Status again; each result is printed as [code, details].
_KMS_HOLDER = r'''
import json, sys
sys.path.insert(0, sys.argv[2])
import kmsfix
k = kmsfix.Kms(sys.argv[1])
def ask():
    code, details = k.code_of(k.status)
    print(json.dumps([code.name if code else None, details]), flush=True)
ask()
sys.stdin.readline()
ask()
'''


def reload_that_revokes_a_uid_closes_its_kms_connections(root):
    """The same on a KMS v2 socket: the connection nobody's gRPC client holds is shut down by the
    reload (gRPC then reconnects and is refused at connect), with one audit line naming the face."""
    shareable(root)
    token = Token(root)
    audit = os.path.join(root, "audit.log")
    kms_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kms")
    sys.path.insert(0, kms_dir)
    import kmsfix  # noqa: E402
    path, section = kmsfix.kms_section(root)
    shared = "socket_mode = 0660\nsocket_group = nogroup\naudit_log = %s\n" % audit
    keys = token.key_section("rsa", "rsa-kek", "RSA-OAEP") + section
    kb = Broker(root, token, keys=keys, broker_extra=shared + "allow_uids = root nobody\n")
    mine = kmsfix.Kms(path)
    wait_for(lambda: mine.code_of(mine.status)[0] is None, 20, "root's KMS Status")
    peer = subprocess.Popen(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                             sys.executable, "-c", _KMS_HOLDER, path, kms_dir], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, cwd="/")
    try:
        first = json.loads(peer.stdout.readline())
        check(first[0] is None, "nobody's KMS Status before the reload: %s" % first)
        Broker(root, token, keys=keys, broker_extra=shared + "allow_uids = root\n", start=False)
        kb.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: reloaded" in kb.log_text(), 10, "the reload")
        peer.stdin.write(b"go\n")
        peer.stdin.flush()
        second = json.loads(peer.stdout.readline())
        check(second[0] == "UNAVAILABLE", "nobody's KMS connection is gone after the reload: %s" % second)
    finally:
        peer.kill()
        peer.wait()
    check(mine.code_of(mine.status)[0] is None, "root's KMS channel still serves")
    revoked = [l for l in audit_lines(audit) if l.get("op") == "disconnect"]
    check(len(revoked) == 1 and revoked[0]["uid"] == 65534 and revoked[0].get("face") == "kms:k8s" and
          revoked[0]["result"] == "permission_denied", "one audit line for the KMS connection: %s" % revoked)
    logged = [l for l in kb.log_text().splitlines() if "closing a kms:k8s connection of uid 65534" in l]
    check(len(logged) == 1, "one log line: %s" % logged)
    mine.close()


def field_given_twice_is_refused(root):
    """{"op":"status","op":"rotate"} and every other name given twice in one object (escaped or
    nested too) is refused bad_request naming it; the connection keeps serving."""
    token = Token(root)
    kb = Broker(root, token)
    c = Conn(kb.sock)
    pt = b64(os.urandom(32))
    for raw, name in ((b'{"op":"status","op":"rotate"}', "op"),
                      (b'{"id":1,"op":"flush","id":2}', "id"),
                      (b'{"op":"status","o\\u0070":"rotate"}', "op"),
                      (('{"op":"wrap","key":"aes","plaintext":"%s","key":"rsa"}' % pt).encode(), "key"),
                      (b'{"op":"status","x":{"a":1,"a":2}}', "a")):
        c.send_raw(raw + b"\n")
        a = c.read_line()
        check(a["ok"] is False and a["error"]["code"] == "bad_request" and '"%s"' % name in a["error"]["message"],
              "%s is refused naming %r: %s" % (raw, name, a))
    check(c.call({"op": "status"})["ok"], "the connection keeps serving")
    check(kb.status()["counters"]["evicted_flush"] == 0, "no flush was done")


if __name__ == "__main__":
    run({f.__name__: f for f in (healthz_answers_through_slowloris,
                                 healthz_answers_while_5000_idle_connections_are_held,
                                 metrics_flood_leaves_ndjson_p50_within_twice_idle,
                                 http_port_shows_no_peer_and_readyz_no_message,
                                 metrics_listen_is_checked_as_startup_checks_it,
                                 reload_that_revokes_a_uid_closes_its_connections,
                                 reload_that_revokes_a_uid_closes_its_kms_connections,
                                 field_given_twice_is_refused)})
