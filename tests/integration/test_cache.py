#!/usr/bin/env python3
"""The DEK cache on a real SoftHSM token: TTL as the revocation point, refresh-ahead,
single flight, capacity, data-key reuse, locked memory and core-dump hardening."""
import json
import os
import pwd
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kbtest import Broker, Conn, Token, b64, check, run, unb64, wait_for  # noqa: E402

REFUSED = ("key_unavailable", "key_disabled", "permission_denied", "unknown_version")


def wrap(kb, key, pt=None):
    pt = pt or os.urandom(32)
    return pt, kb.ok({"op": "wrap", "key": key, "plaintext": b64(pt)})["blob"]


def delete_key(token, key):
    if key == "aes":
        token.tool("--delete-object", "--type", "secrkey", "--label", "aes-kek")
    else:
        token.tool("--delete-object", "--type", "privkey", "--label", "rsa-kek")


def expect_refused(kb, blob):
    r = kb.call({"op": "unwrap", "blob": blob})
    check(r["ok"] is False and r["error"]["code"] in REFUSED, "after revocation: %s" % r)
    msg = r["error"]["message"].lower()
    check("token" in msg or "key service" in msg, "message says the key service refused: %s" % r["error"])
    return r


def revocation_at_end_of_ttl(root):
    token = Token(root)
    kb = Broker(root, token, broker_extra="cache_ttl = 2s")
    pt, blob = wrap(kb, "aes")
    t0 = time.monotonic()
    u = kb.ok({"op": "unwrap", "blob": blob})
    check(u["cached"] is False and unb64(u["plaintext"]) == pt, "first unwrap asks the token")
    delete_key(token, "aes")
    u = kb.ok({"op": "unwrap", "blob": blob})
    check(u["cached"] is True and unb64(u["plaintext"]) == pt, "still unwraps while the entry lives")
    check(time.monotonic() - t0 < 2.0, "test ran too slowly to see the live entry")
    wait_for(lambda: time.monotonic() >= t0 + 2.2, 3, "the 2 s TTL to pass")
    expect_refused(kb, blob)
    # flush makes the failure immediate
    pt2, blob2 = wrap(kb, "rsa")
    check(kb.ok({"op": "unwrap", "blob": blob2})["cached"] is False, "rsa miss")
    delete_key(token, "rsa")
    check(kb.ok({"op": "unwrap", "blob": blob2})["cached"] is True, "rsa hit after delete")
    check(kb.ok({"op": "flush", "key": "rsa"})["flushed"] == 1, "flush rsa evicts one entry")
    expect_refused(kb, blob2)
    c = kb.status()["counters"]
    check(c["evicted_ttl"] >= 1 and c["evicted_flush"] == 1, "evictions by cause: %s" % c)


def cached_for_refresh(root):
    """A broker whose aes key has a 2 s TTL refreshed from its second half, and one aes
    blob cached at t0: returns token, broker, plaintext, blob, t0."""
    token = Token(root)
    kb = Broker(root, token, broker_extra="cache_ttl = 2s", aes_extra="cache_refresh_fraction = 0.5")
    pt, blob = wrap(kb, "aes")
    t0 = time.monotonic()
    kb.ok({"op": "unwrap", "blob": blob})
    return token, kb, pt, blob, t0


def refresh_ahead_renews_on_success(root):
    _, kb, pt, blob, t0 = cached_for_refresh(root)
    wait_for(lambda: time.monotonic() >= t0 + 1.3, 2, "the last half of the TTL")
    check(kb.ok({"op": "unwrap", "blob": blob})["cached"] is True, "hit inside refresh window")
    check(kb.status()["counters"]["refreshes"] == 1, "refresh counted")
    wait_for(lambda: kb.backend_calls("aes") >= 2, 5, "the background refresh to reach the token")
    calls = kb.backend_calls("aes")
    check(calls == 2, "one miss plus one refresh reached the token, saw %d" % calls)
    check(time.monotonic() - t0 < 2.0, "test ran too slowly to renew before the original expiry")
    wait_for(lambda: time.monotonic() >= t0 + 2.5, 3, "the original expiry (2 s TTL) to pass")
    u = kb.ok({"op": "unwrap", "blob": blob})
    check(u["cached"] is True and unb64(u["plaintext"]) == pt, "a successful refresh renewed the entry: %s" % u)


def refresh_ahead_never_outlives_refusal(root):
    token, kb, pt, blob, t0 = cached_for_refresh(root)
    delete_key(token, "aes")
    wait_for(lambda: time.monotonic() >= t0 + 1.3, 2, "the last half of the TTL")
    check(kb.ok({"op": "unwrap", "blob": blob})["cached"] is True, "hit inside the refresh window")
    wait_for(lambda: kb.status()["counters"]["refresh_failures"] >= 1, 5, "the refused refresh to be counted")
    check(time.monotonic() - t0 < 2.0, "test ran too slowly to see the entry outlive the refusal")
    check(kb.ok({"op": "unwrap", "blob": blob})["cached"] is True, "entry lives until its original expiry")
    wait_for(lambda: time.monotonic() >= t0 + 2.1, 3, "the original expiry (2 s TTL) to pass")
    expect_refused(kb, blob)


def _burst(sock, reqs):
    """Sends each request on its own connection, all but the newline first,
    then every newline at once, so the broker sees them together."""
    conns = [Conn(sock) for _ in reqs]
    for c, r in zip(conns, reqs):
        c.send_raw(json.dumps(r).encode())
    for c in conns:
        c.send_raw(b"\n")
    out = [c.read_line() for c in conns]
    for c in conns:
        c.close()
    return out


def single_flight_one_call_per_blob(root):
    token = Token(root)
    kb = Broker(root, token)
    pt, blob = wrap(kb, "rsa")
    before = kb.backend_calls("rsa")
    hits0 = kb.status()["counters"]["hits"]
    out = _burst(kb.sock, [{"id": i, "op": "unwrap", "blob": blob} for i in range(64)])
    check(all(r["ok"] and unb64(r["plaintext"]) == pt for r in out), "all 64 unwraps succeed")
    calls = kb.backend_calls("rsa") - before
    counters = kb.status()["counters"]
    joins, hits = counters["joins"], counters["hits"] - hits0
    check(calls == 1, "64 concurrent unwraps of one cold blob made %d backend calls" % calls)
    # the other 63 joined the call while it ran, or (when the loop made the short call itself, or a
    # loaded machine read the burst in pieces) came after it and hit the cache: never a second call
    check(joins + hits == 63, "63 requests joined the one call or hit its answer, saw %d joins and %d hits"
          % (joins, hits))
    print("single flight: 64 unwraps of one blob -> %d backend call, %d joins, %d hits" % (calls, joins, hits))

    blobs = [wrap(kb, "rsa") for _ in range(64)]
    before = kb.backend_calls("rsa")
    out = _burst(kb.sock, [{"id": i, "op": "unwrap", "blob": b} for i, (_, b) in enumerate(blobs)])
    check(all(r["ok"] and unb64(r["plaintext"]) == blobs[r["id"]][0] for r in out), "64 distinct unwraps")
    calls = kb.backend_calls("rsa") - before
    check(calls == 64, "64 distinct cold blobs made %d backend calls" % calls)
    print("single flight: 64 distinct blobs -> %d backend calls" % calls)


def capacity_evicts_least_recently_used(root):
    token = Token(root)
    kb = Broker(root, token, broker_extra="cache_capacity = 4")
    blobs = [wrap(kb, "aes") for _ in range(5)]
    for _, b in blobs[:4]:
        kb.ok({"op": "unwrap", "blob": b})
    check(kb.ok({"op": "unwrap", "blob": blobs[0][1]})["cached"], "b0 is cached (and now most recent)")
    kb.ok({"op": "unwrap", "blob": blobs[4][1]})  # the fifth entry: evicts b1, the least recent
    s = kb.status()
    check(s["cache"]["entries"] == 4 and s["cache"]["capacity"] == 4, "4 entries held: %s" % s["cache"])
    check(s["counters"]["evicted_lru"] == 1, "one lru eviction: %s" % s["counters"])
    check(kb.ok({"op": "unwrap", "blob": blobs[0][1]})["cached"] is True, "recently used b0 stayed")
    check(kb.ok({"op": "unwrap", "blob": blobs[1][1]})["cached"] is False, "least recently used b1 was evicted")
    print("capacity 4: after 5 blobs, entries=%d, lru evictions=%d" %
          (s["cache"]["entries"], s["counters"]["evicted_lru"]))


def hits_cut_backend_calls(root):
    token = Token(root)
    kb = Broker(root, token)
    pt, blob = wrap(kb, "aes")
    before = kb.backend_calls("aes")
    for _ in range(100):
        check(unb64(kb.ok({"op": "unwrap", "blob": blob})["plaintext"]) == pt, "unwrap")
    calls = kb.backend_calls("aes") - before
    c = kb.status()["counters"]
    check(calls == 1 and c["hits"] == 99 and c["misses"] == 1, "100 unwraps: %d calls, %s" % (calls, c))
    text = kb.ok({"op": "metrics"})["text"]
    check("keybroker_cache_hits_total 99" in text and "keybroker_cache_misses_total 1" in text,
          "metrics show hits and misses")
    m = kb.cli("metrics", check_rc=0).stdout.decode()
    check("# TYPE keybroker_backend_latency_seconds histogram" in m, "CLI prints Prometheus text")
    print("100 unwraps of one blob: hits=%d misses=%d backend calls=%d" % (c["hits"], c["misses"], calls))


def ttl_jitter_spreads_expiry_and_never_lengthens_it(root):
    """cache_ttl_jitter = 0.5 on an 8 s TTL: 40 DEKs cached by one batch at once leave the
    cache spread over seconds, each no sooner than half the TTL and none after the TTL.
    Without the jitter they would all go within the batch's own spread and one sweep (1 s)."""
    token = Token(root)
    ttl, jitter, n = 8.0, 0.5, 40
    kb = Broker(root, token, broker_extra="cache_ttl = 8s\ncache_ttl_jitter = %g" % jitter)
    blobs = [wrap(kb, "aes")[1] for _ in range(n)]
    kb.ok({"op": "flush"})
    c = Conn(kb.sock)
    start = time.monotonic()
    r = c.call({"op": "unwrap", "blobs": blobs})
    end = time.monotonic()
    check(r["ok"] and all(x["ok"] and x["cached"] is False for x in r["results"]), "one batch caches every DEK")
    check(c.call({"op": "status"})["cache"]["entries"] == n, "%d DEKs cached" % n)
    # every eviction is the sweep's (nothing looks these DEKs up again): note when the count drops
    drops, last = [], n
    while last and time.monotonic() - end < ttl + 3:
        left = c.call({"op": "status"})["cache"]["entries"]
        if left < last:
            drops.append(time.monotonic())
            last = left
        time.sleep(0.05)
    check(last == 0, "every DEK gone by the TTL and a sweep: %d left" % last)
    first, final = drops[0] - start, drops[-1] - start
    print("%d DEKs cached within %.2fs: evictions from %.2fs to %.2fs (TTL %gs, jitter %g)"
          % (n, end - start, first, final, ttl, jitter))
    check(first >= ttl * (1 - jitter), "no TTL cut by more than the jitter: the first left at %.2fs" % first)
    check(final <= (end - start) + ttl + 1.5, "no TTL lengthened: the last left at %.2fs" % final)
    check(final - first > (end - start) + 1.2,
          "the jitter spreads the expiry: %.2fs from first to last, the batch took %.2fs" % (final - first, end - start))


def datakey_reuse_limits(root):
    token = Token(root)
    keys = (token.key_section("uses", "aes-kek", "AES-KWP", "datakey_max_age = 1h\ndatakey_max_uses = 3") +
            token.key_section("bytes", "aes-kek", "AES-KWP", "datakey_max_age = 1h\ndatakey_max_bytes = 1000") +
            token.key_section("age", "aes-kek", "AES-KWP", "datakey_max_age = 3s") +
            token.key_section("none", "aes-kek", "AES-KWP"))
    kb = Broker(root, token, keys=keys)

    def dk(key, **kw):
        r = kb.ok(dict({"op": "datakey", "key": key}, **kw))
        return r["blob"], r["reused"], unb64(r["plaintext"])

    a = [dk("uses") for _ in range(4)]
    check([x[1] for x in a] == [False, True, True, False], "uses: reuse flags %s" % [x[1] for x in a])
    check(a[0][0] == a[1][0] == a[2][0] != a[3][0] and a[0][2] == a[2][2], "uses: same DEK thrice, then new")
    b = [dk("bytes", bytes=400) for _ in range(3)]
    check([x[1] for x in b] == [False, True, False], "bytes: reuse flags %s" % [x[1] for x in b])
    # a 3 s max age: c2 comes well inside it even on a loaded machine; then ask until a new DEK
    # comes, which must be no sooner than the max age after c1
    t1 = time.monotonic()
    c1, c2 = dk("age"), dk("age")
    check(c2[1] and c1[0] == c2[0], "age: reused within max age")
    c3 = wait_for(lambda: (lambda d: None if d[1] else d)(dk("age")), 10, "a new DEK after max age", step=0.1)
    check(c3[0] != c1[0] and time.monotonic() - t1 >= 3.0, "age: reuse ends at max age, not before")
    n1, n2 = dk("none"), dk("none")
    check(not n1[1] and not n2[1] and n1[0] != n2[0], "no reuse by default")
    u = kb.ok({"op": "unwrap", "blob": a[0][0]})
    check(u["cached"] is True and unb64(u["plaintext"]) == a[0][2], "a handed-out DEK is in the unwrap cache")


def mlock_refusal_and_unlocked_option(root):
    token = Token(root)
    # root holds CAP_IPC_LOCK, which ignores RLIMIT_MEMLOCK: drop it for this run
    prefix = ["setpriv", "--bounding-set", "-ipc_lock", "--inh-caps", "-ipc_lock",
              "prlimit", "--memlock=0:0", "--"]
    kb = Broker(root, token, start=False, prefix=prefix)
    rc = kb.start(expect_fail=True)
    log = kb.log_text()
    check(rc != 0, "refuses to start without locked memory")
    for words in ("RLIMIT_MEMLOCK", "ulimit -l", "LimitMEMLOCK", "CAP_IPC_LOCK", "allow_unlocked_memory"):
        check(words in log, "the message names %s: %r" % (words, log))
    kb2 = Broker(root, token, prefix=prefix, broker_extra="allow_unlocked_memory = yes")
    s = kb2.status()
    check(s["memory_locked"] is False, "status says memory_locked false")
    check("UNLOCKED" in kb2.log_text(), "a warning is logged")


def no_core_dumps(root):
    token = Token(root)
    nobody = pwd.getpwnam("nobody")
    # run as nobody so /proc ownership shows the dumpable flag (a non-dumpable
    # process's /proc files belong to root)
    subprocess.run(["chown", "-R", "nobody:nogroup", root], check=True)
    kb = Broker(root, token, prefix=["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--"],
                broker_extra="allow_uids = 0, nobody\nallow_unlocked_memory = yes")
    pid = kb.proc.pid
    check(os.stat("/proc/%d/status" % pid).st_uid == 0, "daemon is not dumpable (its /proc files are root's)")
    with open("/proc/%d/status" % pid) as f:
        uid_line = [l for l in f if l.startswith("Uid:")][0]
    check(str(nobody.pw_uid) in uid_line, "daemon runs as nobody: %s" % uid_line)
    with open("/proc/%d/limits" % pid) as f:
        core = [l for l in f if l.startswith("Max core file size")][0].split()
    check(core[4] == "0" and core[5] == "0", "RLIMIT_CORE is 0: %s" % core)


def locked_bytes_reported(root):
    token = Token(root)
    kb = Broker(root, token)
    s = kb.status()
    check(s["memory_locked"] is True and s["cache"]["locked_bytes"] > 0, "locked: %s" % s["cache"])
    check(s["cache"]["locked_bytes"] <= 8 * 1024 * 1024, "the default fits an 8 MiB RLIMIT_MEMLOCK")
    check("bytes locked" in kb.log_text(), "startup log reports locked bytes")
    print("default capacity %d: %d bytes locked" % (s["cache"]["capacity"], s["cache"]["locked_bytes"]))


if __name__ == "__main__":
    run(globals())
