#!/usr/bin/env python3
"""What survives: honest clients under hostile load, SIGKILL and restart under load, SIGTERM
under load, and a bounded soak (KB_SOAK_SECONDS, default 120)."""
import os
import random
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sectest import Broker, Conn, Token, b64, check, run, unb64, vmrss, wait_for  # noqa: E402

MB = 1024 * 1024


class Honest(threading.Thread):
    """A client doing a mix of operations one at a time, checking every answer."""

    def __init__(self, kb, n, stop, reconnect=False, admin=False):
        super().__init__(daemon=True)
        self.kb, self.n, self.stop, self.reconnect, self.admin = kb, n, stop, reconnect, admin
        self.rnd = random.Random(n)
        self.errors = []
        self.issued = []         # (blob, plaintext) for every blob handed out
        self.sent = 0
        self.slowest = 0.0
        self.conn_errors = 0

    def req(self, c, r):
        t = time.monotonic()
        self.sent += 1
        a = c.call(r)
        self.slowest = max(self.slowest, time.monotonic() - t)
        if not a.get("ok"):
            self.errors.append((r.get("op"), a))
            return None
        return a

    def step(self, c):
        rnd = self.rnd
        x = rnd.random()
        key = rnd.choice(("aes", "rsa"))
        if x < 0.35 or not self.issued:                       # wrap, then unwrap it: a miss
            pt = os.urandom(32)
            a = self.req(c, {"op": "wrap", "key": key, "plaintext": b64(pt)})
            if a:
                self.issued.append((a["blob"], pt))
                a = self.req(c, {"op": "unwrap", "blob": a["blob"]})
                if a and unb64(a["plaintext"]) != pt:
                    self.errors.append(("unwrap", "another DEK than was wrapped"))
        elif x < 0.65:                                        # unwrap of a recent blob: mostly hits
            blob, pt = rnd.choice(self.issued[-20:])
            a = self.req(c, {"op": "unwrap", "blob": blob})
            if a and unb64(a["plaintext"]) != pt:
                self.errors.append(("unwrap", "another DEK than was wrapped"))
        elif x < 0.85:
            a = self.req(c, {"op": "datakey", "key": key})
            if a:
                self.issued.append((a["blob"], unb64(a["plaintext"])))
        elif x < 0.97 or not self.admin:
            blob, pt = rnd.choice(self.issued[-20:])
            a = self.req(c, {"op": "rewrap", "blob": blob, "key": key})
            if a:
                self.issued.append((a["blob"], pt))
        else:
            self.req(c, {"op": "flush", "key": key})          # the next unwraps are misses
        if len(self.issued) > 200 and not self.reconnect:
            del self.issued[:100]

    def run(self):
        c = None
        while not self.stop.is_set():
            try:
                if c is None:
                    c = Conn(self.kb.sock, timeout=30)
                self.step(c)
            except (OSError, EOFError, ValueError) as e:
                if not self.reconnect:
                    self.errors.append(("connection", repr(e)))
                    return
                self.conn_errors += 1
                c = None
                time.sleep(0.05)
        if c:
            c.close()


def start_honest(kb, n, stop, **kw):
    clients = [Honest(kb, i, stop, **kw) for i in range(n)]
    for c in clients:
        c.start()
    return clients


def join_all(threads, timeout=60):
    for t in threads:
        t.join(timeout)
        check(not t.is_alive(), "a client thread hung")


def hostile_load_leaves_honest_clients_unharmed(root):
    """200 slowloris connections, a client that never reads, and 10 MB lines, while 8 honest
    clients run a mix for about 15 s: the honest clients see zero errors."""
    token = Token(root)
    kb = Broker(root, token, broker_extra="client_timeout = 4s\n")
    stop = threading.Event()
    stats = {"slowloris_closed": 0, "big_refused": 0, "nonreader_closed": 0}

    def slowloris():
        conns = {}

        def fresh(i):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(kb.sock)
            except (BlockingIOError, InterruptedError):
                pass
            conns[i] = [s, time.monotonic() + random.uniform(0, 2.5), True]

        for i in range(200):
            fresh(i)
        while not stop.is_set():
            now = time.monotonic()
            for i, (s, due, first) in list(conns.items()):
                if now < due:
                    continue
                try:
                    if s.recv(4096, socket.MSG_DONTWAIT) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:
                    stats["slowloris_closed"] += 1
                    s.close()
                    fresh(i)
                    continue
                try:
                    s.send(b"{" if first else b" ")
                    conns[i][1:] = [now + random.uniform(2.0, 3.0), False]
                except BlockingIOError:
                    conns[i][1] = now + 0.5
                except OSError:
                    stats["slowloris_closed"] += 1
                    s.close()
                    fresh(i)
            time.sleep(0.05)
        for s, _, _ in conns.values():
            s.close()

    def nonreader():
        while not stop.is_set():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(kb.sock)
            s.setblocking(False)
            reqs = b'{"op":"get","key":"rsa"}\n' * 200
            try:
                while not stop.is_set():
                    try:
                        s.send(reqs)
                    except BlockingIOError:
                        time.sleep(0.05)
            except OSError:
                stats["nonreader_closed"] += 1
            s.close()

    def bigline():
        while not stop.is_set():
            c = Conn(kb.sock)
            try:
                c.s.sendall(b'{"op":"status","pad":"')
                for _ in range(160):
                    c.s.sendall(b"B" * 65536)
            except OSError:
                pass
            try:
                r = c.read_line()
                if r.get("error", {}).get("code") == "too_large":
                    stats["big_refused"] += 1
            except (OSError, EOFError):
                pass
            c.close()
            time.sleep(0.2)

    hostile = [threading.Thread(target=f, daemon=True) for f in (slowloris, nonreader, bigline)]
    for t in hostile:
        t.start()
    time.sleep(1.0)  # the attack is on before the honest clients come
    honest = start_honest(kb, 8, stop, admin=True)
    time.sleep(15)
    stop.set()
    join_all(honest)
    join_all(hostile)
    errors = [e for c in honest for e in c.errors]
    check(not errors, "honest clients saw %d errors, e.g. %s" % (len(errors), errors[:3]))
    done = [c.sent for c in honest]
    check(min(done) >= 50, "every honest client made progress: %s requests" % done)
    slowest = max(c.slowest for c in honest)
    check(slowest < 5.0, "no honest request waited %.1f s" % slowest)
    check(stats["big_refused"] >= 1, "10 MB lines were refused: %s" % stats)
    check(stats["slowloris_closed"] >= 100, "slowloris connections were closed by client_timeout: %s" % stats)
    check(stats["nonreader_closed"] >= 1, "the non-reader was closed by client_timeout: %s" % stats)
    check(kb.proc.poll() is None, "the daemon is running (it exited with %s)" % kb.proc.returncode)
    check(kb.ok({"op": "status"})["ok"], "the daemon still serves")
    print("hostile load: honest requests %s, slowest %.3f s, %s" % (done, slowest, stats))


def sigkill_under_load_loses_no_dek(root):
    """SIGKILL the daemon under load, restart it: clients reconnect, and every blob it handed
    out before (across a rotate) still unwraps to its DEK."""
    token = Token(root)
    kb = Broker(root, token)
    stop = threading.Event()
    clients = start_honest(kb, 8, stop, reconnect=True)

    def rotator():
        while not stop.is_set():
            try:
                kb.call({"op": "rotate", "key": "aes"})
            except (OSError, EOFError):
                pass
            time.sleep(0.7)

    rot = threading.Thread(target=rotator, daemon=True)
    rot.start()
    time.sleep(3)
    kb.proc.send_signal(signal.SIGKILL)
    kb.proc.wait()
    kb.logf.close()
    issued_before = sum(len(c.issued) for c in clients)
    time.sleep(0.5)
    kb.start()
    time.sleep(3)
    stop.set()
    join_all(clients)
    rot.join(10)
    check(issued_before > 50, "load before the kill issued %d blobs" % issued_before)
    check(all(c.conn_errors >= 1 for c in clients), "every client saw the kill")
    after = [len(c.issued) for c in clients]
    check(sum(after) > issued_before, "clients reconnected and went on after the restart")
    bad = [e for c in clients for e in c.errors if e[0] not in ("connection",)]
    check(not bad, "no error but lost connections: %s" % bad[:3])
    # a fresh daemon, nothing cached: every blob ever handed out goes to the token
    kb.stop()
    kb.start()
    c = kb.conn()
    lost = 0
    total = 0
    for cl in clients:
        for blob, pt in cl.issued:
            total += 1
            r = c.call({"op": "unwrap", "blob": blob})
            if not r.get("ok") or unb64(r["plaintext"]) != pt:
                lost += 1
    check(lost == 0, "%d of %d blobs handed out no longer unwrap to their DEK" % (lost, total))
    print("crash and restart: %d blobs, all recovered" % total)


def sigterm_under_load_answers_what_is_in_flight(root):
    """SIGTERM while requests are in flight: each is answered, then exit 0 and the socket is gone."""
    token = Token(root)
    kb = Broker(root, token)
    pts = [os.urandom(32) for _ in range(8 * 16)]
    blobs = [kb.ok({"op": "wrap", "key": "rsa", "plaintext": b64(p)})["blob"] for p in pts]
    kb.ok({"op": "flush"})
    conns = [Conn(kb.sock) for _ in range(8)]
    for n, c in enumerate(conns):
        c.send_raw(b"".join(b'{"id":%d,"op":"unwrap","blob":"%s"}\n' % (i, blobs[i].encode())
                            for i in range(n * 16, n * 16 + 16)))
    first = [c.read_line() for c in conns]     # each batch is in the daemon
    kb.proc.send_signal(signal.SIGTERM)
    answered = 0
    for n, c in enumerate(conns):
        got = [first[n]] + [c.read_line() for _ in range(15)]
        for r in got:
            check(r.get("ok") is True, "an in-flight request was not answered ok: %s" % r)
            check(unb64(r["plaintext"]) == pts[r["id"]], "answer matches its request")
        answered += len(got)
        check(sorted(r["id"] for r in got) == list(range(n * 16, n * 16 + 16)), "every request answered")
        try:
            c.read_line()
            raise AssertionError("an answer nobody asked for")
        except (EOFError, ConnectionResetError):
            pass
    rc = kb.proc.wait(timeout=30)
    kb.logf.close()
    check(rc == 0, "exit 0 on SIGTERM, got %d" % rc)
    check(not os.path.exists(kb.sock), "the socket is removed")
    log = kb.log_text()
    check("zero" in log.lower() or "wipe" in log.lower(), "the log says the cache was zeroed")
    print("graceful stop: %d in-flight requests answered" % answered)


# SoftHSM 2.6.1 (Debian 12) keeps every session object it ever made until C_Finalize,
# destroyed or not (about 190 bytes each, measured), and each AES-KWP wrap or unwrap
# makes one. The soak allows for that much growth per AES backend call, so what it
# measures is the broker's own memory; aes_operations_do_not_grow_the_daemon shows the
# token's growth by itself.
SOFTHSM_BYTES_PER_OBJECT = 256


def aes_objects(kb):
    return kb.backend_calls("aes", "wrap") + kb.backend_calls("aes", "unwrap")


def soak(root):
    """64 clients run unwrap-hit, unwrap-miss, datakey and rewrap for KB_SOAK_SECONDS (default
    120): zero errors, RSS flat within 10% after warm-up, and the status counters match."""
    seconds = float(os.environ.get("KB_SOAK_SECONDS", "120"))
    token = Token(root)
    kb = Broker(root, token, broker_extra="log_level = info\n")
    pid = kb.proc.pid
    before = kb.status()["counters"]
    own = 0                       # our own metrics requests, counted by the daemon too
    stop = threading.Event()
    clients = start_honest(kb, 64, stop, admin=True)
    warmup = max(10.0, seconds * 0.25)
    samples = []                  # (RSS, RSS less what SoftHSM keeps)
    objs0 = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(2.0)
        check(kb.proc.poll() is None, "the daemon died during the soak")
        if time.monotonic() - t0 >= warmup:
            objs = aes_objects(kb)
            own += 2              # backend_calls asks for metrics twice
            if objs0 is None:
                objs0 = objs
            rss = vmrss(pid)
            samples.append((rss, rss - SOFTHSM_BYTES_PER_OBJECT * (objs - objs0)))
    stop.set()
    join_all(clients)
    after = kb.status()["counters"]
    errors = [e for c in clients for e in c.errors]
    sent = sum(c.sent for c in clients)
    check(not errors, "soak: %d errors in %d requests, e.g. %s" % (len(errors), sent, errors[:3]))
    check(len(samples) >= 3, "the soak is long enough to sample RSS after warm-up")
    adj = [a for _, a in samples]
    lo, hi = min(adj), max(adj)
    check(hi <= lo * 1.10, "RSS after warm-up, less SoftHSM's objects, moved from %.1f to %.1f MB "
          "(more than 10%%); raw RSS %.1f -> %.1f MB" % (lo / MB, hi / MB, samples[0][0] / MB, samples[-1][0] / MB))
    delta = after["requests"] - before["requests"]
    # the two status requests: one is counted in the difference either way
    check(delta == sent + own + 1, "status counts %d requests; the clients sent %d, the test %d (+1 status)" %
          (delta, sent, own))
    check(after["errors"] == before["errors"], "the error counter moved: %s -> %s" % (before["errors"], after["errors"]))
    print("soak: %.0f s, %d requests (%.0f/s), RSS %.1f -> %.1f MB (%.1f -> %.1f MB less SoftHSM), slowest %.3f s" %
          (seconds, sent, sent / seconds, samples[0][0] / MB, samples[-1][0] / MB, adj[0] / MB, adj[-1] / MB,
           max(c.slowest for c in clients)))


def daemon_growth_is_only_softhsm_session_objects(root):
    """The broker itself does not grow under load. SoftHSM 2.6.1 keeps every session object it
    ever made until C_Finalize (about 190 B each; an AES-KWP wrap makes one), so 24,000 AES wraps
    may grow the process by that much and no more; 4,000 uncached RSA unwraps (C_Decrypt, no
    objects) must not grow it at all."""
    token = Token(root)
    kb = Broker(root, token, broker_extra="log_level = info\n")
    pid = kb.proc.pid

    def in_clients(n, fn):
        def one():
            c = Conn(kb.sock)
            for _ in range(n):
                fn(c)
            c.close()
        ts = [threading.Thread(target=one) for _ in range(8)]
        for t in ts:
            t.start()
        join_all(ts, 120)

    def aes_wrap(c):
        check(c.call({"op": "wrap", "key": "aes", "plaintext": b64(os.urandom(32))})["ok"], "wrap")

    in_clients(500, aes_wrap)
    rss0 = vmrss(pid)
    in_clients(3000, aes_wrap)
    rss1 = vmrss(pid)
    allowance = 24000 * 256 + 1 * MB
    check(rss1 - rss0 < allowance, "24,000 AES wraps grew the daemon by %.1f MB, more than SoftHSM's "
          "session objects explain (%.1f MB)" % ((rss1 - rss0) / MB, allowance / MB))

    blobs = [kb.ok({"op": "wrap", "key": "rsa", "plaintext": b64(os.urandom(32))})["blob"] for _ in range(500)]

    def rsa_unwraps(c):
        for b in blobs[:50]:
            check(c.call({"op": "unwrap", "blob": b})["ok"], "unwrap")
        c.call({"op": "flush"})

    in_clients(1, rsa_unwraps)
    rss2 = vmrss(pid)
    in_clients(10, rsa_unwraps)
    rss3 = vmrss(pid)
    check(rss3 - rss2 < 1 * MB, "4,000 RSA unwraps grew the daemon by %.1f MB" % ((rss3 - rss2) / MB))


if __name__ == "__main__":
    run(globals())
