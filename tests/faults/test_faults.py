#!/usr/bin/env python3
"""Token faults through kbshim (tests/shim): keybrokerd's keys name the shim as
their module, and the shim forwards to a real SoftHSM token until its control
file says to fail. The token is pulled and put back, forgets its sessions, is
slow, or answers a device error, and the broker must answer every request,
keep serving cache hits, and recover without a restart."""
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from kbtest import BUILD, MODULE, Broker, Conn, ShimControl, Token, b64, check, run, unb64, wait_for  # noqa: E402

SHIM = os.environ.get("KB_SHIM", os.path.join(BUILD, "tests", "shim", "kbshim.so"))
UNAVAILABLE = "backend_unavailable"


def setup(root, broker_extra="cache_ttl = 60s"):
    """A token, the shim in front of it, and a broker whose rsa and aes keys use the shim."""
    token = Token(root)
    shim = ShimControl(os.path.join(root, "shim.control"))
    keys = "".join("[key:%s]\nbackend = pkcs11\nmodule = %s\nuri = pkcs11:token=%s;object=%s\n"
                   "pin_file = %s\nalg = %s\n\n" % (name, SHIM, token.label, label, token.pin_file, alg)
                   for name, label, alg in (("rsa", "rsa-kek", "RSA-OAEP"), ("aes", "aes-kek", "AES-KWP")))
    kb = Broker(root, token, broker_extra=broker_extra, keys=keys,
                env={"KB_SHIM_CONTROL": shim.path, "KB_SHIM_MODULE": MODULE})
    return token, shim, kb


def wrap(kb, key):
    pt = os.urandom(32)
    return pt, kb.ok({"op": "wrap", "key": key, "plaintext": b64(pt)})["blob"]


def unwrap_ok(kb, pt, blob, cached=None):
    r = kb.ok({"op": "unwrap", "blob": blob})
    check(unb64(r["plaintext"]) == pt, "unwrap returned another plaintext")
    if cached is not None:
        check(r["cached"] is cached, "expected cached=%s: %s" % (cached, r))
    return r


def unavailable(kb, token, req):
    """req fails with backend_unavailable, and the message names the token."""
    r = kb.err(req, UNAVAILABLE)
    check(token.label in r["error"]["message"], "the message names token %s: %s" % (token.label, r["error"]))
    return r


def health(kb):
    return {k["name"]: k["healthy"] for k in kb.status()["keys"]}


def token_removed_serves_hits_then_recovers(root):
    token, shim, kb = setup(root, broker_extra="cache_ttl = 3s")
    hit = {k: wrap(kb, k) for k in ("rsa", "aes")}
    miss = {k: wrap(kb, k) for k in ("rsa", "aes")}
    t0 = time.monotonic()
    for pt, blob in hit.values():
        unwrap_ok(kb, pt, blob, cached=False)

    shim.set("removed")
    for pt, blob in hit.values():
        unwrap_ok(kb, pt, blob, cached=True)
    for pt, blob in miss.values():
        unavailable(kb, token, {"op": "unwrap", "blob": blob})
    unavailable(kb, token, {"op": "wrap", "key": "aes", "plaintext": b64(os.urandom(32))})
    unavailable(kb, token, {"op": "datakey", "key": "aes"})
    check(health(kb) == {"rsa": False, "aes": False}, "status shows both keys unhealthy: %s" % kb.status()["keys"])
    for pt, blob in hit.values():
        unwrap_ok(kb, pt, blob, cached=True)
    check(time.monotonic() - t0 < 3.0, "test ran too slowly to see the live entries")

    # past the TTL the hits are gone and the token is still out
    wait_for(lambda: time.monotonic() >= t0 + 3.3, 4, "the TTL to pass")
    for pt, blob in hit.values():
        unavailable(kb, token, {"op": "unwrap", "blob": blob})

    # the token comes back: same daemon, new sessions, a new login
    shim.set("ok")
    for pt, blob in list(hit.values()) + list(miss.values()):
        unwrap_ok(kb, pt, blob, cached=False)
    wrap(kb, "aes")
    check(kb.ok({"op": "datakey", "key": "aes"})["plaintext"], "datakey after the token came back")
    check(health(kb) == {"rsa": True, "aes": True}, "both keys healthy again: %s" % kb.status()["keys"])
    check(kb.stop() == 0, "keybrokerd did not exit 0 on SIGTERM")


def token_not_present_is_unavailable_then_recovers(root):
    token, shim, kb = setup(root)
    pt_hit, hit = wrap(kb, "aes")
    unwrap_ok(kb, pt_hit, hit, cached=False)
    blobs = [wrap(kb, k) for k in ("rsa", "aes")]

    shim.set("token_not_present")
    for pt, blob in blobs:
        r = unavailable(kb, token, {"op": "unwrap", "blob": blob})
        check("CKR_TOKEN_NOT_PRESENT" in r["error"]["message"], "the message gives the token's answer: %s" % r)
    unwrap_ok(kb, pt_hit, hit, cached=True)
    check(kb.status()["ok"], "the daemon keeps serving")

    shim.set("ok")
    for pt, blob in blobs:
        unwrap_ok(kb, pt, blob, cached=False)
    check(kb.stop() == 0, "keybrokerd did not exit 0 on SIGTERM")


def _burst(kb, reqs):
    """Sends each request on its own connection at once; returns the answers in order."""
    conns = [kb.conn() for _ in reqs]
    ids = [c.send(r) for c, r in zip(conns, reqs)]
    out = []
    for c, i in zip(conns, ids):
        r = c.read_line()
        check(r.get("id") == i, "answer %r for request %r" % (r.get("id"), i))
        out.append(r)
        c.close()
    return out


def session_invalid_is_retried_on_a_new_session(root):
    # backend.c run(): a lost session (CKR_SESSION_HANDLE_INVALID) is reopened,
    # logged in again and the call retried once, so no request sees the fault
    token, shim, kb = setup(root)
    blobs = [wrap(kb, k) for k in ("rsa", "aes") for _ in range(8)]
    warm = [wrap(kb, k) for k in ("rsa", "aes") for _ in range(4)]
    out = _burst(kb, [{"op": "unwrap", "blob": b} for _, b in warm])  # every worker has its sessions
    check(all(r["ok"] for r in out), "warm-up unwraps: %s" % out)
    before = {k: kb.backend_calls(k) for k in ("rsa", "aes")}

    shim.set("session_invalid")
    pt, blob = blobs[0]
    unwrap_ok(kb, pt, blob, cached=False)
    wrap(kb, "aes")
    out = _burst(kb, [{"op": "unwrap", "blob": b} for _, b in blobs[1:]])
    for (pt, _), r in zip(blobs[1:], out):
        check(r["ok"] and unb64(r["plaintext"]) == pt, "unwrap after the token forgot its sessions: %s" % r)
    check(health(kb) == {"rsa": True, "aes": True}, "keys stay healthy: %s" % kb.status()["keys"])
    text = kb.ok({"op": "metrics"})["text"]
    check('keybroker_backend_errors_total{key="rsa",op="unwrap"} 0' in text and
          'keybroker_backend_errors_total{key="aes",op="unwrap"} 0' in text,
          "no backend call failed:\n%s" % "\n".join(l for l in text.splitlines() if "errors_total" in l))
    check(sum(kb.backend_calls(k) - before[k] for k in before) == len(blobs), "one backend call per miss")
    check(kb.stop() == 0, "keybrokerd did not exit 0 on SIGTERM")


def slow_token_does_not_delay_cache_hits(root):
    token, shim, kb = setup(root)
    pt_hit, hit = wrap(kb, "rsa")
    unwrap_ok(kb, pt_hit, hit, cached=False)
    slow = [wrap(kb, k) for k in ("rsa", "aes", "rsa")]  # more misses than workers

    shim.set("slow 1500")
    misses = kb.status()["counters"]["misses"]
    conns = [kb.conn() for _ in slow]
    t0 = time.monotonic()
    ids = [c.send({"op": "unwrap", "blob": b}) for c, (_, b) in zip(conns, slow)]
    wait_for(lambda: kb.status()["counters"]["misses"] >= misses + len(slow), 1.0,
             "the misses to be on the token, every worker busy")
    for _ in range(5):
        t = time.monotonic()
        unwrap_ok(kb, pt_hit, hit, cached=True)
        check(time.monotonic() - t < 0.5, "a cache hit took %.2f s behind a slow token" % (time.monotonic() - t))
    hits_done = time.monotonic() - t0
    for c, i, (pt, _) in zip(conns, ids, slow):
        r = c.read_line()
        check(r.get("id") == i and r["ok"] and unb64(r["plaintext"]) == pt, "slow unwrap: %s" % r)
        c.close()
    slow_done = time.monotonic() - t0
    check(slow_done >= 1.5 and hits_done < slow_done - 1.0,
          "hits answered at %.2f s, before the slow unwraps at %.2f s" % (hits_done, slow_done))
    shim.set("ok")
    check(kb.stop() == 0, "keybrokerd did not exit 0 on SIGTERM")


def device_error_on_unwrap_is_unavailable_once(root):
    token, shim, kb = setup(root)
    for key in ("rsa", "aes"):
        # one CKR_DEVICE_ERROR: the backend reopens its session and retries
        pt, blob = wrap(kb, key)
        shim.set("fail_decrypt 1")
        unwrap_ok(kb, pt, blob, cached=False)
        # the retry fails too: backend_unavailable, not bad_blob, and the next unwrap works
        pt, blob = wrap(kb, key)
        shim.set("fail_decrypt 2")
        r = unavailable(kb, token, {"op": "unwrap", "blob": blob})
        check("CKR_DEVICE_ERROR" in r["error"]["message"], "the message gives the token's answer: %s" % r)
        check(health(kb)[key] is False, "%s unhealthy after a device error" % key)
        unwrap_ok(kb, pt, blob, cached=False)
        check(health(kb)[key] is True, "%s healthy after it worked again" % key)
    shim.set("ok")
    check(kb.stop() == 0, "keybrokerd did not exit 0 on SIGTERM")


def no_request_lost_while_token_flaps(root):
    import random
    token, shim, kb = setup(root, broker_extra="cache_ttl = 1s")
    blobs = [wrap(kb, k) for k in ("rsa", "aes") for _ in range(60)]
    stop = threading.Event()
    errors = []
    counts = {"ok": 0, UNAVAILABLE: 0}
    lock = threading.Lock()

    def client(n):
        rnd = random.Random(n)
        c = Conn(kb.sock, timeout=20)  # a hang fails the client
        sent = 0
        try:
            while not stop.is_set():
                op = rnd.choice(("unwrap", "unwrap", "unwrap", "wrap", "datakey"))
                key = rnd.choice(("rsa", "aes"))
                if op == "unwrap":
                    pt, blob = rnd.choice(blobs)
                    r = c.call({"op": "unwrap", "blob": blob})
                    if r.get("ok") and unb64(r["plaintext"]) != pt:
                        errors.append("client %d: wrong plaintext" % n)
                elif op == "wrap":
                    r = c.call({"op": "wrap", "key": key, "plaintext": b64(os.urandom(32))})
                else:
                    r = c.call({"op": "datakey", "key": key})
                sent += 1
                code = "ok" if r.get("ok") else r.get("error", {}).get("code")
                if code not in counts:
                    errors.append("client %d %s: %s" % (n, op, r.get("error")))
                    continue
                with lock:
                    counts[code] += 1
            # the token is back: this client's next requests all work
            for pt, blob in rnd.sample(blobs, 5):
                r = c.call({"op": "unwrap", "blob": blob})
                if not (r.get("ok") and unb64(r["plaintext"]) == pt):
                    errors.append("client %d after recovery: %s" % (n, r.get("error")))
            r = c.call({"op": "status"})  # the next answer is this one: nothing extra was queued
            if not r.get("ok"):
                errors.append("client %d: status %s" % (n, r))
        except Exception as e:  # noqa: BLE001 - a hang, a drop or an id mismatch
            errors.append("client %d after %d requests: %r" % (n, sent, e))
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    def answered():
        with lock:
            return sum(counts.values())

    # each state of the token lasts until the clients got 200 more answers in it
    for mode in ("removed", "ok", "removed", "ok", "removed", "ok", "session_invalid", "ok"):
        n = answered()
        wait_for(lambda: answered() >= n + 200 or errors, 30, "200 answers before the token goes %s" % mode)
        shim.set(mode)
    n = answered()
    wait_for(lambda: answered() >= n + 200 or errors, 30, "200 answers after the token is back")
    stop.set()
    for t in threads:
        t.join(timeout=60)
    check(not any(t.is_alive() for t in threads), "a client hung")
    check(not errors, "%d errors, first: %s" % (len(errors), errors[:3]))
    check(counts["ok"] > 100 and counts[UNAVAILABLE] > 0, "both outcomes were seen: %s" % counts)
    print("flapping token: %s" % counts)
    check(kb.proc.poll() is None, "keybrokerd died")
    check(kb.stop(signal.SIGTERM) == 0, "keybrokerd did not exit 0 on SIGTERM")


def counter(c, name):
    """A counter of status, asked on c itself: another connection would count as a second client."""
    r = c.call({"op": "status"})
    check(r.get("ok"), "status: %s" % r)
    return r["counters"][name]


def loop_calls(c):
    return counter(c, "loop_calls")


def metric(kb, name):
    """The value of one metric line of the Prometheus text."""
    m = [ln for ln in kb.ok({"op": "metrics"})["text"].splitlines() if ln.startswith(name + " ")]
    check(len(m) == 1, "one %s line: %s" % (name, m))
    return float(m[0].split()[1])


def misses_of_one_client(root, broker_extra):
    """100 fresh AES blobs unwrapped one after another on one connection, each right: (kb, c)."""
    token, shim, kb = setup(root, broker_extra=broker_extra)
    blobs = [wrap(kb, "aes") for _ in range(100)]
    kb.ok({"op": "flush"})
    c = kb.conn()
    for pt, blob in blobs:
        r = c.call({"op": "unwrap", "blob": blob})
        check(r.get("ok") and unb64(r["plaintext"]) == pt, "unwrap: %s" % r)
    return kb, c


def short_calls_run_on_the_loop_until_the_token_turns_slow(root):
    """One client's AES misses are short calls the loop makes itself (broker/schedule.h); each
    answer is still right. Once the token turns slow, the first slow call moves the key's average
    past loop_call_max and the calls after it go to the workers, so the loop is held at most once.
    loop_call_max is 50ms here, not the default 200us, so that a slow machine or a sanitizer build
    (SoftHSM's calls then take a millisecond) is still a token with short calls."""
    token, shim, kb = setup(root, broker_extra="cache_ttl = 60s\nloop_call_max = 50ms")
    blobs = [wrap(kb, "aes") for _ in range(400)]
    kb.ok({"op": "flush"})
    c = kb.conn()
    before, ran, i = loop_calls(c), 0, 0
    # until a quiet spell after the other connection's requests has passed (and the key has an average)
    while ran < 20 and i < len(blobs) - 10:
        for pt, blob in blobs[i:i + 10]:
            r = c.call({"op": "unwrap", "blob": blob})
            check(r.get("ok") and r["cached"] is False and unb64(r["plaintext"]) == pt, "unwrap: %s" % r)
        i += 10
        ran = loop_calls(c) - before
    check(ran >= 20, "the loop made %d of %d sequential AES misses itself" % (ran, i))

    shim.set("slow 500")  # one call lifts the average to about 500/8 ms, past 50ms
    before = loop_calls(c)
    for pt, blob in blobs[i:i + 4]:
        r = c.call({"op": "unwrap", "blob": blob})
        check(r.get("ok") and unb64(r["plaintext"]) == pt, "slow unwrap: %s" % r)
    slow_on_loop = loop_calls(c) - before
    check(slow_on_loop <= 1, "%d of 4 slow calls ran on the loop (at most the first may)" % slow_on_loop)
    shim.set("ok")
    c.close()
    check(kb.stop() == 0, "keybrokerd did not exit 0 on SIGTERM")


def loop_call_max_0_keeps_every_call_on_the_workers(root):
    kb, c = misses_of_one_client(root, "cache_ttl = 60s\nloop_call_max = 0")
    check(loop_calls(c) == 0, "loop_call_max = 0, yet the loop made calls")
    check(metric(kb, "keybroker_loop_calls_total") == 0, "the metric says the same")
    c.close()
    check(kb.stop() == 0, "keybrokerd did not exit 0 on SIGTERM")


def one_cpu_budget_never_waits_awake(root):
    """The CPU budget is keybrokerd's affinity mask cut to its cgroup's cpu.max (schedule.h). With
    one CPU, from `taskset -c 0` or from a cpu.max of one CPU (KB_SCHED_CPU_MAX names a fake one;
    read only in builds with asserts on), the loop has no CPU of its own while a worker runs one
    client's call, so it never polls for it: loop_waits stays 0 over 40 sequential misses that a
    budget of two waits for (the test above). The startup log names the budget."""
    if len(os.sched_getaffinity(0)) < 2:
        print("skipped: one CPU only, so there is no budget of two to cut")
        sys.exit(77)
    fake = os.path.join(root, "cpu.max")
    with open(fake, "w") as f:
        f.write("100000 100000\n")
    for how, prefix, env in (("taskset -c 0", ["taskset", "-c", "0"], {}),
                             ("a cpu.max of one CPU", [], {"KB_SCHED_CPU_MAX": fake})):
        sub = os.path.join(root, how.replace(" ", "_").replace(".", ""))
        os.mkdir(sub)
        token = Token(sub)
        shim = ShimControl(os.path.join(sub, "shim.control"))
        keys = ("[key:aes]\nbackend = pkcs11\nmodule = %s\nuri = pkcs11:token=%s;object=aes-kek\n"
                "pin_file = %s\nalg = AES-KWP\n\n" % (SHIM, token.label, token.pin_file))
        e = {"KB_SHIM_CONTROL": shim.path, "KB_SHIM_MODULE": MODULE}
        e.update(env)
        kb = Broker(sub, token, broker_extra="cache_ttl = 60s\nloop_call_max = 0\nloop_wait_max = 50ms",
                    keys=keys, env=e, prefix=prefix)
        blobs = [wrap(kb, "aes") for _ in range(60)]
        kb.ok({"op": "flush"})
        c = kb.conn()
        before = counter(c, "loop_waits")
        for pt, blob in blobs[:40]:
            r = c.call({"op": "unwrap", "blob": blob})
            check(r.get("ok") and r["cached"] is False and unb64(r["plaintext"]) == pt, "unwrap: %s" % r)
        waited = counter(c, "loop_waits") - before
        check(waited == 0, "%s: the loop waited awake for %d of 40 misses on one CPU" % (how, waited))
        check("and a CPU budget of 1 " in kb.log_text(), "%s: the log names a CPU budget of 1:\n%s"
              % (how, kb.log_text()[-2000:]))
        c.close()
        kb.stop()


def one_clients_misses_are_waited_for_awake_until_the_token_turns_slow(root):
    """With calls kept off the loop (loop_call_max = 0), one client's AES misses go to the workers
    and the loop polls for each answer instead of sleeping (loop_wait_max, broker/schedule.h); every
    answer is right. A token turned slow lifts the key's average past loop_wait_max after one call,
    and a second client speaking in turn stops the waits. loop_wait_max is 50ms, not the default
    2ms, so that a sanitizer build on a loaded machine is still a token with short calls."""
    token, shim, kb = setup(root, broker_extra="cache_ttl = 60s\nloop_call_max = 0\nloop_wait_max = 50ms")
    blobs = [wrap(kb, "aes") for _ in range(400)]
    kb.ok({"op": "flush"})
    c = kb.conn()
    before, waited, i = counter(c, "loop_waits"), 0, 0
    # until a quiet spell after the wrapping connection has passed (and the key has an average)
    while waited < 20 and i < 300:
        for pt, blob in blobs[i:i + 10]:
            r = c.call({"op": "unwrap", "blob": blob})
            check(r.get("ok") and r["cached"] is False and unb64(r["plaintext"]) == pt, "unwrap: %s" % r)
        i += 10
        waited = counter(c, "loop_waits") - before
    check(waited >= 20, "the loop waited awake for %d of %d sequential misses" % (waited, i))
    check(counter(c, "loop_calls") == 0, "loop_call_max = 0, yet the loop made calls")

    # two clients taking turns: neither's CPU is free, so the loop sleeps
    d = kb.conn()
    before = counter(c, "loop_waits")
    for n, (pt, blob) in enumerate(blobs[i:i + 40]):
        r = (c if n % 2 else d).call({"op": "unwrap", "blob": blob})
        check(r.get("ok") and unb64(r["plaintext"]) == pt, "unwrap of two clients: %s" % r)
    i += 40
    two = counter(c, "loop_waits") - before
    check(two <= 1, "the loop waited awake for %d of 40 misses of two clients (at most the first)" % two)
    d.close()

    # one client alone again: the waits come back once the other has been quiet for a spell
    before, back = counter(c, "loop_waits"), 0
    while back < 5 and i < len(blobs) - 10:
        for pt, blob in blobs[i:i + 5]:
            r = c.call({"op": "unwrap", "blob": blob})
            check(r.get("ok") and unb64(r["plaintext"]) == pt, "unwrap: %s" % r)
        i += 5
        back = counter(c, "loop_waits") - before
    check(back >= 5, "the loop did not wait awake again for one client alone (%d)" % back)

    shim.set("slow 500")  # one call lifts the average to about 500/8 ms, past 50ms
    before = counter(c, "loop_waits")
    for pt, blob in blobs[i:i + 4]:
        r = c.call({"op": "unwrap", "blob": blob})
        check(r.get("ok") and unb64(r["plaintext"]) == pt, "slow unwrap: %s" % r)
    slow = counter(c, "loop_waits") - before
    check(slow <= 1, "the loop waited awake for %d of 4 slow calls (at most the first)" % slow)
    shim.set("ok")
    check(metric(kb, "keybroker_loop_waits_total") >= 20, "the metric counts the waits")
    c.close()
    check(kb.stop() == 0, "keybrokerd did not exit 0 on SIGTERM")


def loop_wait_max_0_never_waits_awake(root):
    kb, c = misses_of_one_client(root, "cache_ttl = 60s\nloop_call_max = 0\nloop_wait_max = 0")
    check(counter(c, "loop_waits") == 0, "loop_wait_max = 0, yet the loop waited awake")
    c.close()
    check(kb.stop() == 0, "keybrokerd did not exit 0 on SIGTERM")


if __name__ == "__main__":
    run(globals())
