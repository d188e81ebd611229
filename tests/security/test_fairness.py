#!/usr/bin/env python3
"""Misses are shared fairly between uids: four processes of root flooding RSA misses, each
within its per-peer limits, leave another uid's (nobody's) misses waiting for at most one
key-service round trip beyond their own share; /metrics shows each uid's waits
(keybroker_queue_wait_seconds). Real SoftHSM RSA-2048 keys; nobody through setpriv."""
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sectest import Broker, Token, b64, check, run, shareable  # noqa: E402

NOBODY = 65534
SHARED = "socket_mode = 0660\nsocket_group = nogroup\nallow_uids = root, nobody\n"
DEPTH = 16  # misses each flooding process keeps in flight (max_inflight_per_peer is 2048)

# one flooding process: DEPTH misses in flight, round and round its blobs, flushing the
# cache after each pass so every unwrap stays a miss; writes "ok N" after its first DEPTH answers
_FLOOD = r'''
import json, socket, sys
path, blobs = sys.argv[1], json.load(open(sys.argv[2]))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
buf, n, answered, bad = b"", 0, 0, 0
def send(req):
    s.sendall(json.dumps(req).encode() + b"\n")
def read():
    global buf
    while b"\n" not in buf:
        d = s.recv(65536)
        if not d:
            sys.exit(3)
        buf += d
    l, buf = buf.split(b"\n", 1)
    return json.loads(l)
for _ in range(DEPTH):
    send({"op": "unwrap", "blob": blobs[n % len(blobs)]}); n += 1
while True:
    r = read()
    if r.get("id") == "flush":
        continue
    answered += 1
    if not r.get("ok"):
        bad += 1
        sys.stderr.write("flood: %s\n" % r)
    if answered == DEPTH:
        print("ok", flush=True)
    if n % len(blobs) == 0:
        send({"id": "flush", "op": "flush"})
    send({"op": "unwrap", "blob": blobs[n % len(blobs)]}); n += 1
'''.replace("DEPTH", str(DEPTH))

# nobody's misses, one at a time, each timed from its send to its answer
_TIMED = r'''
import json, socket, sys, time
path, blobs = sys.argv[1], json.loads(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(60)
s.connect(path)
buf, took, ok = b"", [], 0
for i, blob in enumerate(blobs):
    t0 = time.monotonic()
    s.sendall(json.dumps({"id": i, "op": "unwrap", "blob": blob}).encode() + b"\n")
    while b"\n" not in buf:
        buf += s.recv(65536)
    l, buf = buf.split(b"\n", 1)
    took.append(time.monotonic() - t0)
    r = json.loads(l)
    ok += bool(r.get("ok")) and r.get("cached") is False
print(json.dumps({"took": took, "ok": ok}))
'''


def timed_misses(sock, blobs):
    """nobody's unwraps of blobs, one at a time: their latencies in seconds (each must be a miss)."""
    p = subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                        sys.executable, "-c", _TIMED, sock, json.dumps(blobs)],
                       capture_output=True, timeout=120, cwd="/")
    check(p.returncode == 0, "nobody's misses failed: %s" % p.stderr.decode(errors="replace"))
    res = json.loads(p.stdout)
    check(res["ok"] == len(blobs), "nobody's %d unwraps were all answered, uncached: %d" % (len(blobs), res["ok"]))
    return res["took"]


def sample(text, name, labels):
    """The value of name{labels} in Prometheus text (0 if absent)."""
    for line in text.splitlines():
        if line.startswith("%s{%s} " % (name, labels)):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def figures(kb):
    """What the test reads from /metrics: the rsa key's calls and each uid's queue waits."""
    text = kb.call({"op": "metrics"})["text"]
    out = {"calls_s": sample(text, "keybroker_backend_latency_seconds_sum", 'key="rsa"'),
           "calls": sample(text, "keybroker_backend_latency_seconds_count", 'key="rsa"')}
    for who, uid in (("root", 0), ("nobody", NOBODY)):
        out[who + "_wait_s"] = sample(text, "keybroker_queue_wait_seconds_sum", 'uid="%d"' % uid)
        out[who + "_waits"] = sample(text, "keybroker_queue_wait_seconds_count", 'uid="%d"' % uid)
        out[who + "_max_s"] = sample(text, "keybroker_queue_wait_max_seconds", 'uid="%d"' % uid)
    return out


def other_uid_waits_one_round_trip_beyond_its_share(root):
    """Four root processes keep 16 RSA misses in flight each (64 queued for 2 workers) while
    nobody makes 20 misses one at a time. The round trip RT is the RSA call time the daemon
    measured during the flood, in the same run; nobody's own share is its miss on the idle
    broker, measured first. Taken by turns, nobody's miss is next when a worker frees: it waits
    in the queue for at most the call a worker is finishing, one RT. A first-come queue makes
    it wait for the 64 ahead, 32 RTs on 2 workers (4.7 s was measured before)."""
    shareable(root)
    token = Token(root)
    kb = Broker(root, token, broker_extra=SHARED)
    mine = kb.conn()
    pts = [os.urandom(32) for _ in range(4 * 64 + 25)]
    blobs = [mine.call({"op": "wrap", "key": "rsa", "plaintext": b64(pt)})["blob"] for pt in pts]
    theirs = blobs[4 * 64:]
    idle = timed_misses(kb.sock, theirs[:5])

    floods = []
    try:
        for i in range(4):
            path = os.path.join(root, "blobs%d.json" % i)
            with open(path, "w") as f:
                json.dump(blobs[64 * i:64 * (i + 1)], f)
            floods.append(subprocess.Popen([sys.executable, "-c", _FLOOD, kb.sock, path],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for p in floods:
            check(p.stdout.readline().strip() == b"ok", "a flooding process got its first answers")
        before = figures(mine)
        took = timed_misses(kb.sock, theirs[5:])
        after = figures(mine)
        for p in floods:
            check(p.poll() is None, "the flooding processes kept going (exit %s)" % p.poll())
    finally:
        for p in floods:
            p.kill()
            p.wait()
    errs = b"".join(p.stderr.read() for p in floods)
    check(errs == b"", "every flooded miss was answered ok: %s" % errs[:500])

    calls = after["calls"] - before["calls"]
    rt = (after["calls_s"] - before["calls_s"]) / calls
    waits = after["nobody_waits"] - before["nobody_waits"]
    mean_wait = (after["nobody_wait_s"] - before["nobody_wait_s"]) / waits if waits else float("inf")
    flood_waits = after["root_waits"] - before["root_waits"]
    flood_wait = (after["root_wait_s"] - before["root_wait_s"]) / flood_waits if flood_waits else float("inf")
    print("fairness: RSA round trip during the flood %.2f ms (%d calls), idle misses p50 %.2f ms; "
          "nobody's 20 misses p50 %.2f ms, max %.2f ms, queue wait mean %.2f ms, max %.2f ms; "
          "root's flooded misses waited %.2f ms on average"
          % (rt * 1e3, calls, statistics.median(idle) * 1e3, statistics.median(took) * 1e3,
             max(took) * 1e3, mean_wait * 1e3, after["nobody_max_s"] * 1e3, flood_wait * 1e3))
    check(waits == 20, "each of nobody's misses is counted in its uid's queue waits: %d" % waits)
    check(calls > 50, "the flood kept both workers busy while nobody asked (%d calls)" % calls)
    check(flood_wait > 5 * rt, "the flood queued deep enough to matter: root's jobs waited %.2f ms, RT %.2f ms"
          % (flood_wait * 1e3, rt * 1e3))
    # a worker is finishing one call when nobody's job comes: one RT in the queue at most, on average
    # (a single wait can be longer when the host descheduled the worker: the maximum is printed)
    check(mean_wait <= rt, "nobody's misses waited in the queue one round trip at most: mean %.2f ms, RT %.2f ms"
          % (mean_wait * 1e3, rt * 1e3))
    # as nobody sees it: its own share is its miss on the idle broker, measured first; beyond it,
    # the call a worker is finishing, and one round trip
    check(statistics.median(took) <= statistics.median(idle) + 2 * rt,
          "nobody's miss took its idle time and 2 round trips at most: p50 %.2f ms, idle %.2f ms, RT %.2f ms"
          % (statistics.median(took) * 1e3, statistics.median(idle) * 1e3, rt * 1e3))


if __name__ == "__main__":
    run(globals())
