#!/usr/bin/env python3
"""The dense DEK cache: 100,000 cached 256-bit DEKs in the 8 MiB RLIMIT_MEMLOCK an
unprivileged user gets by default, on the real keybrokerd and a SoftHSM token."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kbtest import Broker, Conn, Token, check, run, unb64  # noqa: E402

MEMLOCK = 8 * 1024 * 1024
ENTRIES = 100000
CONNS = 4
WINDOW = 100  # requests in flight per connection, under max_inflight (128)


def pipelined(sock, requests):
    """Sends requests over CONNS connections, WINDOW at a time on each, and returns
    the responses in request order."""
    answers = [None] * len(requests)
    errors = []

    def worker(part):
        try:
            c = Conn(sock)
            for start in range(0, len(part), WINDOW):
                chunk = part[start:start + WINDOW]
                ids = {}
                for i in chunk:
                    ids[c.send(dict(requests[i], id=i))] = i
                for _ in chunk:
                    r = c.read_line()
                    check(r.get("id") in ids, "an answer to no request: %r" % r)
                    answers[r["id"]] = r
            c.close()
        except Exception as e:  # reported by the main thread
            errors.append(e)

    parts = [list(range(k, len(requests), CONNS)) for k in range(CONNS)]
    threads = [threading.Thread(target=worker, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return answers


def locked_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int([l for l in f if l.startswith("VmLck:")][0].split()[1])


def hundred_thousand_deks_under_8_mib_memlock(root):
    token = Token(root)
    # root holds CAP_IPC_LOCK, which ignores RLIMIT_MEMLOCK: drop it, so the limit binds
    prefix = ["setpriv", "--bounding-set", "-ipc_lock", "--inh-caps", "-ipc_lock",
              "prlimit", "--memlock=%d:%d" % (MEMLOCK, MEMLOCK), "--"]
    kb = Broker(root, token, prefix=prefix,
                broker_extra="cache_capacity = %d\ncache_ttl = 1h\nlog_level = info" % ENTRIES)
    with open("/proc/%d/limits" % kb.proc.pid) as f:
        lim = [l for l in f if l.startswith("Max locked memory")][0].split()
    check(lim[3] == str(MEMLOCK), "keybrokerd runs under RLIMIT_MEMLOCK %d: %s" % (MEMLOCK, lim))

    t0 = time.monotonic()
    made = pipelined(kb.sock, [{"op": "datakey", "key": "aes"}] * ENTRIES)
    t_fill = time.monotonic() - t0
    for r in made:
        check(r["ok"] is True and r["reused"] is False, "datakey: %s" % r)
    deks = [unb64(r["plaintext"]) for r in made]
    blobs = [r["blob"] for r in made]
    check(all(len(d) == 32 for d in deks), "every DEK is 256 bits")
    check(len(set(deks)) == ENTRIES and len(set(blobs)) == ENTRIES, "100,000 distinct DEKs and blobs")

    s = kb.status()
    cache = s["cache"]
    check(s["memory_locked"] is True, "the cache is in locked memory")
    check(cache["capacity"] == ENTRIES and cache["entries"] == ENTRIES, "the cache holds them all: %s" % cache)
    check(s["counters"]["evicted_lru"] == 0, "nothing was evicted: %s" % s["counters"])
    classes = cache["classes"]
    check(classes[0]["dek_bytes"] == 32 and classes[0]["entries"] == ENTRIES,
          "every 256-bit DEK is in the 32-byte class: %s" % classes)
    check(all(c["entries"] == 0 for c in classes[1:]), "the larger classes are empty: %s" % classes)
    check(classes[-1]["dek_bytes"] == 1024, "DEKs up to 1024 bytes have a class: %s" % classes)
    check(sum(c["locked_bytes"] for c in classes) == cache["locked_bytes"],
          "the classes' locked bytes add up: %s" % cache)
    check(0 < cache["locked_bytes"] <= MEMLOCK, "locked bytes fit 8 MiB: %d" % cache["locked_bytes"])
    vmlck = locked_kib(kb.proc.pid) * 1024
    check(cache["locked_bytes"] <= vmlck <= MEMLOCK,
          "the kernel counts %d bytes locked for %d reported" % (vmlck, cache["locked_bytes"]))

    before = s["counters"]
    calls = kb.backend_calls("aes")
    t0 = time.monotonic()
    back = pipelined(kb.sock, [{"op": "unwrap", "blob": b} for b in blobs])
    t_read = time.monotonic() - t0
    for i, r in enumerate(back):
        check(r["ok"] is True and r["cached"] is True, "unwrap %d is a cache hit: %s" % (i, r))
        check(unb64(r["plaintext"]) == deks[i], "unwrap %d gives the DEK datakey made" % i)
    after = kb.status()["counters"]
    check(after["hits"] - before["hits"] == ENTRIES and after["misses"] == before["misses"],
          "100,000 hits and no miss: %s -> %s" % (before, after))
    check(kb.backend_calls("aes") == calls, "no read reached the token")

    per_class = ", ".join("%d B: %d/%d entries, %d locked" % (c["dek_bytes"], c["entries"], c["slots"],
                                                             c["locked_bytes"]) for c in classes)
    print("100,000 cached 256-bit DEKs: %d bytes locked (kernel VmLck %d, limit %d); fill %.1f s, read %.1f s"
          % (cache["locked_bytes"], vmlck, MEMLOCK, t_fill, t_read))
    print("classes: " + per_class)


if __name__ == "__main__":
    run(globals())
