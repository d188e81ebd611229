"""Hostile peers on the KMS v2 socket: what one allowed uid can make the daemon hold.

Each test runs an attack from this test's uid (root) against a real keybrokerd with a
[kms:k8s] section on a SoftHSM token, watches the daemon's RSS (VmRSS, sampled while the
attack runs) and its descriptors (/proc/PID/fd), and checks that another uid (nobody) is
still served on the NDJSON socket within 2 s, and that a fresh KMS connection still gets
Status within 15 s (one gRPC server works through the flood first). The raw HTTP/2 peer is h2flood.py. The sizes are smaller than the issue's
(100,000 streams, 20,000 connections, 30 s of rapid reset) where a smaller one proves the
bound: each test says which.
"""
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "kms"))
from sectest import Broker, Token, as_peer, check, run, shareable, vmrss, wait_for  # noqa: E402
from kmsfix import Kms, kms_section  # noqa: E402

SHARED = "socket_mode = 0660\nsocket_group = nogroup\nallow_uids = root, nobody\n"
FLOOD = os.path.join(HERE, "h2flood.py")
MB = 1024 * 1024  # vmrss is in bytes
# Under the sanitizers (scripts/test-sanitizers sets ASAN_OPTIONS) the daemon runs about three
# times slower, each allocation takes up to four times its size in RSS (redzones, shadow), and
# ASan's quarantine keeps up to 256 MB of freed memory out of reuse: the bounds on time and RSS
# grow by that, and by nothing else (the old build grew 1.3 GB unsanitized in the streams case).
SANITIZED = "ASAN_OPTIONS" in os.environ
SERVED_WITHIN = 2.0 * (3 if SANITIZED else 1)  # seconds: another uid's NDJSON status during the attack
# seconds: a fresh KMS connection's Status while one gRPC server works through the flood
KMS_SERVED_WITHIN = 15.0 * (4 if SANITIZED else 1)
RSS_SLACK = 256 if SANITIZED else 0  # MB
RSS_BOUND = (120 * (4 if SANITIZED else 1) + RSS_SLACK) * MB


def start(root, extra=""):
    shareable(root)
    token = Token(root)
    path, sec = kms_section(root, "rsa")
    kb = Broker(root, token, broker_extra=SHARED + "health_interval = 1s\n" + extra,
                keys=token.key_section("rsa", "rsa-kek", "RSA-OAEP") + "\n" + sec)
    os.chmod(path, 0o666)
    return kb, path


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def healthy_status(path):
    """A fresh KMS connection's Status, retried while the socket is busy; returns the seconds it took."""
    t0 = time.monotonic()
    kms = Kms(path)
    try:
        def ok():
            try:
                return kms.status().healthz == "ok"
            except Exception:  # noqa: BLE001 - UNAVAILABLE while the channel backs off
                return False
        wait_for(ok, KMS_SERVED_WITHIN + 15, "a fresh KMS connection's Status ok")
    finally:
        kms.close()
    return time.monotonic() - t0


def other_uid_served(kb):
    """nobody's status on the NDJSON socket; returns the seconds it took."""
    t0 = time.monotonic()
    _, a = as_peer(kb.sock, [{"op": "status"}])
    took = time.monotonic() - t0
    check(isinstance(a[0], dict) and a[0].get("ok"), "nobody is answered: %s" % a)
    return took


class Watch:
    """Samples the daemon's RSS and descriptors every 50 ms; stop() returns the peaks."""

    def __init__(self, pid, rss_limit):
        self.pid, self.rss_limit = pid, rss_limit
        self.rss = self.fds = 0
        self.done = threading.Event()
        self.over = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.done.is_set():
            try:
                self.rss = max(self.rss, vmrss(self.pid))
                self.fds = max(self.fds, fds(self.pid))
            except (OSError, TypeError, ValueError):
                return
            if self.rss > self.rss_limit:
                self.over.set()  # the attack is stopped at once: the machine is not made to swap
            time.sleep(0.05)

    def stop(self):
        self.done.set()
        self.t.join(5)
        return self.rss, self.fds


def baseline(kb, path):
    healthy_status(path)
    other_uid_served(kb)
    return vmrss(kb.proc.pid), fds(kb.proc.pid)


def kms_rapid_reset_keeps_memory_bounded(root):
    """HEADERS, half a DATA, RST_STREAM, repeated for 10 s (the issue ran 33 s:
    the growth was 250 MB/s, so 10 s shows it): the daemon closes the connection, RSS grows by
    less than 120 MB, and another uid and a fresh KMS connection are served within 2 s."""
    kb, path = start(root)
    rss0, fd0 = baseline(kb, path)
    w = Watch(kb.proc.pid, rss0 + 400 * MB + RSS_BOUND)
    p = subprocess.Popen([sys.executable, FLOOD, "reset", path, "10"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # two seconds into the attack: the figures below are taken under it
        took_other = other_uid_served(kb)
        took_kms = healthy_status(path)
        while p.poll() is None and not w.over.is_set():
            time.sleep(0.1)
    finally:
        if p.poll() is None:
            p.kill()
        out = p.communicate(timeout=30)[0]
        rss, nfd = w.stop()
    print("rapid reset: %s; RSS %d -> peak %d bytes, fds %d -> peak %d; nobody served in %.2f s, KMS Status in %.2f s"
          % (out.strip(), rss0, rss, fd0, nfd, took_other, took_kms))
    check(not w.over.is_set(), "RSS stayed under %d bytes: it passed it" % w.rss_limit)
    check(rss - rss0 < RSS_BOUND, "RSS grew by less than %d MB: %d bytes" % (RSS_BOUND // MB, rss - rss0))
    check(nfd < fd0 + 50, "descriptors stayed bounded: %d -> %d" % (fd0, nfd))
    check(took_other < SERVED_WITHIN, "another uid served within %.0f s: %.2f s" % (SERVED_WITHIN, took_other))
    check(took_kms < KMS_SERVED_WITHIN, "a fresh KMS connection served within %.0f s: %.2f s" % (KMS_SERVED_WITHIN, took_kms))
    # under the sanitizers the flood is too slow to reach the heap budget in 10 s: the bounds above still hold
    check(SANITIZED or '"closed": 0' not in out, "the daemon closed the resetting connection: %s" % out.strip())


def kms_100000_streams_on_one_connection_keep_memory_bounded(root):
    """One connection opens 100,000 streams (HEADERS of a Decrypt, never a body) and never
    acknowledges SETTINGS_MAX_CONCURRENT_STREAMS: RSS grows by less than 120 MB (it grew
    1.3 GB), the connection is closed, and another uid and a fresh KMS connection are served."""
    kb, path = start(root)
    rss0, fd0 = baseline(kb, path)
    w = Watch(kb.proc.pid, rss0 + 400 * MB + RSS_BOUND)
    p = subprocess.Popen([sys.executable, FLOOD, "streams", path, "100000"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        sent = p.stdout.readline().strip()
        took_other = other_uid_served(kb)
        took_kms = healthy_status(path)
    finally:
        p.stdin.close()
        p.wait(30)
        rss, nfd = w.stop()
    print("100000 streams: %s written; RSS %d -> peak %d bytes, fds %d -> peak %d; nobody served in %.2f s, "
          "KMS Status in %.2f s" % (sent, rss0, rss, fd0, nfd, took_other, took_kms))
    check(not w.over.is_set(), "RSS stayed under %d bytes: it passed it" % w.rss_limit)
    check(rss - rss0 < RSS_BOUND, "RSS grew by less than %d MB: %d bytes" % (RSS_BOUND // MB, rss - rss0))
    check(nfd < fd0 + 50, "descriptors stayed bounded: %d -> %d" % (fd0, nfd))
    check(took_other < SERVED_WITHIN, "another uid served within %.0f s: %.2f s" % (SERVED_WITHIN, took_other))
    check(took_kms < KMS_SERVED_WITHIN, "a fresh KMS connection served within %.0f s: %.2f s" % (KMS_SERVED_WITHIN, took_kms))


def kms_connection_flood_leaves_the_reserve_to_another_uid(root):
    """One process opens 2,000 KMS connections with max_connections = 200 and
    reserved_connections = 20 (the issue opened 20,000 against the default 1,024: the count,
    not the size, is what is bounded): at most 180 are kept, the daemon holds fewer than
    2 descriptors per kept connection beyond its start, and nobody is still served."""
    kb, path = start(root, "max_connections = 200\nreserved_connections = 20\n")
    rss0, fd0 = baseline(kb, path)
    socks = []
    for _ in range(2000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError:
            s.close()
            continue
        socks.append(s)

    def kept():
        # a refused connection is closed at once: it reads EOF
        n = 0
        for s in socks:
            s.setblocking(False)
            try:
                n += s.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                n += 1
            except OSError:
                pass
        return n
    wait_for(lambda: kept() <= 180, 30, "the refusals to land")
    n, nfd = kept(), fds(kb.proc.pid)
    took_other = other_uid_served(kb)
    print("2000 KMS connections: %d kept, fds %d -> %d, nobody served in %.2f s" % (n, fd0, nfd, took_other))
    check(n <= 180, "at most max_connections - reserved_connections (180) kept: %d" % n)
    check(nfd <= fd0 + 2 * 180 + 10, "the daemon's descriptors stay bounded: %d -> %d" % (fd0, nfd))
    check(took_other < SERVED_WITHIN, "nobody served within %.0f s: %.2f s" % (SERVED_WITHIN, took_other))
    for s in socks:
        s.close()


def kms_unfinished_call_is_closed_after_idle_timeout(root):
    """A KMS call left unfinished (HEADERS of a Decrypt, no message) keeps its connection open
    no longer than idle_timeout (2 s) and the sweep's grace: closed within 8 s (it stayed open)."""
    kb, path = start(root, "idle_timeout = 2s\n")
    baseline(kb, path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    sys.path.insert(0, HERE)
    import h2flood
    s.sendall(h2flood.PREFACE + h2flood.SettingsFrame(0).serialize() +
              h2flood.HeadersFrame(1, data=h2flood.header_block(), flags=["END_HEADERS"]).serialize())
    s.settimeout(20)
    t0 = time.monotonic()
    try:
        while s.recv(65536):
            pass  # gRPC's SETTINGS; the close is what counts
    except (socket.timeout, ConnectionResetError):
        pass
    took = time.monotonic() - t0
    print("an unfinished call's connection closed after %.1f s" % took)
    check(took < 8, "closed after idle_timeout (2 s) and the grace: %.1f s" % took)
    check(healthy_status(path) < SERVED_WITHIN, "the KMS socket still serves")


def heap_holds(pid, secret):
    """Where secret's bytes are in the daemon's writable memory but the main thread's stack (root
    reads /proc/PID/mem). The stack is left out: when the loop makes a PKCS#11 call itself
    (loopcall.h), the token library's own frames hold the key it unwrapped until a later call
    overwrites them (seen under ASan, whose frames differ); every copy the broker, protobuf-c and
    gRPC make is on the heap."""
    found = []
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            if "w" not in f[1] or hi - lo > 1 << 31 or f[-1] == "[stack]":
                continue
            try:
                mem.seek(lo)
                chunk = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            if secret in chunk:
                found.append(line.strip())
    return found


def kms_decrypt_plaintext_is_not_left_in_memory_after_flush(root):
    """After a KMS Encrypt and Decrypt of a 32-byte DEK seed and a flush, the seed's bytes are
    nowhere in the daemon's heap and mappings (heap_holds): not in the cache (zeroed), nor in what gRPC and
    protobuf-c were handed (the request, the unpacked message, the packed answer), nor in the
    answer's path through the core. The same holds for an NDJSON unwrap, checked beside it."""
    from sectest import Conn, b64
    kb, path = start(root)
    healthy_status(path)
    seed, other = os.urandom(32), os.urandom(32)
    kms = Kms(path)
    try:
        enc = kms.encrypt(seed)
        dec = kms.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations))
        check(dec.plaintext == seed, "the seed decrypts")
        dec = kms.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations))  # a hit, too
        check(dec.plaintext == seed, "the seed decrypts from the cache")
    finally:
        kms.close()
    c = Conn(kb.sock)
    blob = c.call({"op": "wrap", "key": "rsa", "plaintext": b64(other)})["blob"]
    check(c.call({"op": "unwrap", "blob": blob}).get("ok"), "the NDJSON unwrap")
    check(c.call({"op": "flush"}).get("ok"), "flush")
    c.close()
    where = heap_holds(kb.proc.pid, seed)
    check(where == [], "the KMS seed is not in the daemon's memory after flush: %s" % where[:3])
    where = heap_holds(kb.proc.pid, other)
    check(where == [], "the NDJSON DEK is not in the daemon's memory after flush: %s" % where[:3])


if __name__ == "__main__":
    run(globals())
