#!/usr/bin/env python3
"""Allocation failures on the request path, SQLite style: kballocfail
(tests/shim/allocfail.c) is preloaded into the real keybrokerd and makes the
Nth allocation of the daemon's own code fail, for N = 1, 2, ... until a
request no longer reaches an Nth allocation. The count starts once the
connection is accepted: what a failed accept does is the connection's
business, not the request's. Each failed request must be
answered ok or with internal or busy (never a crash, a hang, a dropped
connection or a wrong plaintext), the next request must work, and at the
end as many of the daemon's own allocations are alive as before: a failure
leaks none of them. The libraries' allocations (OpenSSL, the PKCS#11 module)
are neither failed nor counted here.

The count is taken when the daemon is quiet: no connection but the observer's
open, and the same count twice in a row. A connection the test closed a moment
ago may not yet be freed (its buffers, its struct), and counting it on one side
only made the walk pass or fail by the machine's speed."""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from kbtest import BUILD, Broker, Conn, Failure, Token, b64, check, run, unb64, wait_for, write_atomic  # noqa: E402

ALLOCFAIL = os.environ.get("KB_ALLOCFAIL", os.path.join(BUILD, "tests", "shim", "kballocfail.so"))
REFUSALS = ("internal", "busy")
MAX_N = 2000  # a request of the daemon's own makes far fewer allocations


class AllocFail:
    """Arms and disarms the preloaded library through its control file and SIGUSR2."""

    def __init__(self, root):
        self.ctl = os.path.join(root, "allocfail.control")
        self.ack = os.path.join(root, "allocfail.ack")
        self.seq = 0
        self.pid = None

    def env(self):
        return {"LD_PRELOAD": ALLOCFAIL, "KB_ALLOCFAIL_CONTROL": self.ctl, "KB_ALLOCFAIL_ACK": self.ack}

    def _say(self, cmd):
        self.seq += 1
        write_atomic(self.ctl, "%s %d\n" % (cmd, self.seq))
        os.kill(self.pid, signal.SIGUSR2)

        def acked():
            try:
                with open(self.ack) as f:
                    words = f.read().split()
            except FileNotFoundError:
                return None
            if len(words) == 9 and words[0] == str(self.seq):
                return {"live": int(words[2]), "own": int(words[4]), "failed": int(words[6]),
                        "left": int(words[8])}
            return None
        return wait_for(acked, 10, "kballocfail to answer %r" % cmd)

    def fail(self, n):
        return self._say("fail %d" % n)

    def off(self):
        return self._say("off")


def answer(kb, req, arm=None):
    """One request on a connection the daemon has already accepted (a status
    answered first), with arm() called just before it is sent."""
    c = Conn(kb.sock, timeout=30)
    try:
        check(c.call({"op": "status"}).get("ok") is True, "status before %s" % req["op"])
        if arm:
            arm()
        rid = c.send(req)
        r = c.read_line()
        # an error the daemon met before it could read the id carries a null id
        check(r.get("id") == rid or (r.get("id") is None and r.get("ok") is False),
              "response id %r for request id %r: %s" % (r.get("id"), rid, r))
        return r
    except (EOFError, ConnectionResetError) as e:
        raise Failure("keybrokerd dropped the connection instead of answering %s: %r" % (req["op"], e))
    finally:
        c.close()


def each_failure(kb, af, name, prepare, req, good):
    """Fails the Nth allocation of req for every N it reaches; returns how many it failed."""
    n = 0
    while True:
        n += 1
        check(n < MAX_N, "%s: still failing allocations after %d" % (name, MAX_N))
        prepare()
        r = answer(kb, req, lambda: af.fail(n))
        st = af.off()
        check(kb.proc.poll() is None, "%s: keybrokerd died when allocation %d failed" % (name, n))
        if st["failed"] == 0:
            check(r.get("ok") is True and good(r), "%s: the request without a failure: %s" % (name, r))
            return n - 1
        if not r.get("ok"):
            check(r["error"]["code"] in REFUSALS,
                  "%s: allocation %d failed, answer %s (want ok, internal or busy)" % (name, n, r["error"]))
        else:
            check(good(r), "%s: allocation %d failed and the answer is ok but wrong: %s" % (name, n, r))
        prepare()
        r = answer(kb, req)
        check(r.get("ok") is True and good(r), "%s: the next request after failure %d: %s" % (name, n, r))


def every_allocation_failure_on_the_request_path_is_answered_and_leaks_nothing(root):
    token = Token(root)
    af = AllocFail(root)
    kb = Broker(root, token, broker_extra="cache_ttl = 60s", env=af.env())
    af.pid = kb.proc.pid
    pt = os.urandom(32)
    blob = kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(pt)})["blob"]
    unwrapped = lambda r: unb64(r["plaintext"]) == pt  # noqa: E731

    def flush():
        kb.ok({"op": "flush", "key": "aes"})

    cases = [
        ("cache hit", lambda: None, {"op": "unwrap", "blob": blob}, unwrapped),
        ("cache miss", flush, {"op": "unwrap", "blob": blob}, unwrapped),
        ("wrap", lambda: None, {"op": "wrap", "key": "aes", "plaintext": b64(pt)}, lambda r: r["blob"]),
        ("status", lambda: None, {"op": "status"}, lambda r: "counters" in r),
    ]
    observer = Conn(kb.sock, timeout=30)

    def own_alive():
        """The daemon's own allocations alive once it is quiet: only the observer connected
        (every other connection closed and freed), and the count the same twice running."""
        wait_for(lambda: observer.call({"op": "status"})["counters"]["connections"] == 1, 10,
                 "every connection but the observer's closed")
        last = [af.off()["own"]]

        def steady():
            n = af.off()["own"]
            same, last[0] = n == last[0], n
            return same
        wait_for(steady, 10, "the count of live allocations to hold still")
        return last[0]

    # warm up: sessions, caches of the libraries, the daemon's own pools
    for _, prepare, req, good in cases * 3:
        prepare()
        check(good(answer(kb, req)), "warm-up %s" % req["op"])
    before = own_alive()
    total = 0
    for name, prepare, req, good in cases:
        k = each_failure(kb, af, name, prepare, req, good)
        if name == "cache hit":
            # a hit allocates nothing at all (issue 11: no allocation per request on the hit path)
            check(k == 0, "cache hit: %d allocations on the hit path, want none" % k)
        elif name != "status":  # status renders into the connection's buffers: it may need none either
            check(k > 0, "%s: no allocation of the daemon's was failed; is kballocfail preloaded?" % name)
        print("%s: %d allocations, each failed once, all answered" % (name, k))
        total += k
    check(total > 0, "no allocation of the daemon's was failed; is kballocfail preloaded?")
    # the same requests once more, then count what is alive
    for _, prepare, req, good in cases:
        prepare()
        check(good(answer(kb, req)), "after the failures: %s" % req["op"])
    after = own_alive()
    print("the daemon's own allocations alive: %d before the failures, %d after %d failures" % (before, after, total))
    check(after <= before, "%d allocations leaked over %d failures" % (after - before, total))
    observer.close()
    check(kb.stop() == 0, "keybrokerd did not exit 0 on SIGTERM")


if __name__ == "__main__":
    run(globals())
