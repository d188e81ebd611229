"""The Kubernetes KMS v2 face of keybrokerd, driven as kube-apiserver drives it.

Real parts: a fresh SoftHSM token, the real keybrokerd with a [kms:NAME]
socket, a gRPC client generated from proto/kms_v2.proto, the real akv-emulator
over TLS for the Azure key. Each function is one meson test()."""
import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kmsfix  # noqa: E402
from kmsfix import Kms, kms_section, wait_for  # noqa: E402
import kbtest  # noqa: E402
from kbtest import Broker, Failure, Token, b64, check, make_blob  # noqa: E402

import grpc  # noqa: E402

OK = None
NOBODY = 65534


def start(root, key="rsa", extra="", token=None, health_interval="1s"):
    token = token or Token(root)
    path, sec = kms_section(root, key)
    kb = Broker(root, token, broker_extra="health_interval = %s\naudit_log = %s\n%s" %
                (health_interval, os.path.join(root, "audit.log"), extra),
                keys=token.key_section("rsa", "rsa-kek", "RSA-OAEP") +
                token.key_section("aes", "aes-kek", "AES-KWP") + "\n" + sec)
    return kb, Kms(path), path


def healthy(kms):
    """Waits for Status "ok" (a channel still backing off from an earlier broker answers UNAVAILABLE)."""
    def ok():
        try:
            s = kms.status()
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNAVAILABLE, "Status failed: %s" % e)
            return None
        return s if s.healthz == "ok" else None
    return wait_for(ok, "Status ok")


def audit_lines(root):
    with open(os.path.join(root, "audit.log")) as f:
        return [json.loads(line) for line in f if line.strip()]


def kube_apiserver_flow_with_rotation(root):
    """Status, Encrypt a 32-byte DEK seed, Decrypt it with its key_id and
    annotations; rotate, Status's key_id changes, a new seed is encrypted
    under it, and the old ciphertext still decrypts."""
    kb, kms, _ = start(root)
    st = healthy(kms)
    check(st.version == "v2", "Status version is v2: %r" % st.version)
    check(st.key_id.startswith("kb1/rsa/"), "Status names the write key: %r" % st.key_id)
    seed = os.urandom(32)
    enc = kms.encrypt(seed, uid="8f2c1c5e-encrypt")
    check(enc.key_id == st.key_id, "Encrypt's key_id %r is Status's %r" % (enc.key_id, st.key_id))
    ann = dict(enc.annotations)
    check(ann.get("format.keybroker.io") == b"kb1" and ann.get("alg.keybroker.io") == b"RSA-OAEP",
          "annotations name the format and algorithm: %r" % ann)
    check(enc.ciphertext.startswith(b"kb2:rsa:") and len(enc.ciphertext) <= 1024,
          "the ciphertext is the self-describing blob, at most 1 kB")
    dec = kms.decrypt(enc.ciphertext, enc.key_id, ann, uid="8f2c1c5e-decrypt")
    check(dec.plaintext == seed, "Decrypt gives the seed back")
    # rotation: kube-apiserver sees a new key_id at its next Status
    kb.cli("rotate", "rsa", check_rc=0)
    st2 = wait_for(lambda: (lambda s: s if s.key_id != st.key_id and s.healthz == "ok" else None)(kms.status()),
                   "Status's key_id to follow the rotation", timeout=15)
    check(st2.key_id.split("/")[2] != st.key_id.split("/")[2], "the new key_id names the new version")
    seed2 = os.urandom(32)
    enc2 = kms.encrypt(seed2)
    check(enc2.key_id == st2.key_id, "a new seed is encrypted under the new key_id")
    check(kms.decrypt(enc2.ciphertext, enc2.key_id, dict(enc2.annotations)).plaintext == seed2, "new seed")
    check(kms.decrypt(enc.ciphertext, enc.key_id, ann).plaintext == seed,
          "the old ciphertext still decrypts under its old key_id (storage migration reads it)")
    # the calls are on record as requests of this peer, through the same path
    lines = audit_lines(root)
    kms_lines = [a for a in lines if a.get("face") == "kms:k8s"]
    ops = [(a["op"], a["key"], a["result"], a["request"]) for a in kms_lines]
    check(("wrap", "rsa", "ok", "8f2c1c5e-encrypt") in ops and ("unwrap", "rsa", "ok", "8f2c1c5e-decrypt") in ops,
          "KMS calls audited with kube-apiserver's uid: %s" % ops)
    check(all(a["uid"] == os.getuid() and a["pid"] == os.getpid() for a in kms_lines),
          "the audit names the peer on the KMS socket")
    check(any(a.get("face") == "health" for a in lines), "the health checks are on record too")
    metrics = kb.ok({"op": "metrics"})["text"]
    check('keybroker_kms_calls_total{method="encrypt"} 2' in metrics, "metrics count Encrypt")
    check('keybroker_kms_calls_total{method="decrypt"} 3' in metrics, "metrics count Decrypt")
    kms.close()
    check(kb.stop() == 0, "keybrokerd stops cleanly")
    check(not os.path.exists(os.path.join(root, "kms-k8s.sock")), "the KMS socket is removed")


def decrypt_is_served_from_the_cache(root):
    """A second Decrypt of one ciphertext is a cache hit: no second token call."""
    kb, kms, _ = start(root, health_interval="1h")  # no health check's unwrap in between
    healthy(kms)
    enc = kms.encrypt(os.urandom(32))
    before = kb.backend_calls("rsa")
    for _ in range(5):
        kms.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations))
    check(kb.backend_calls("rsa") - before == 1, "five Decrypts of one ciphertext make one backend unwrap")


def calls_at_once_from_many_threads(root):
    """KMS calls from several connections at once, beside NDJSON wraps and
    unwraps: gRPC's thread answers calls itself while the broker's loop
    sleeps and hands them to the loop while it is busy. Every answer is
    right, and each Encrypt and Decrypt is audited exactly once."""
    import threading
    kb, kms, path = start(root, health_interval="1h")
    healthy(kms)
    seeds = [os.urandom(32) for _ in range(8)]
    encs = [kms.encrypt(s) for s in seeds]
    errors, counts = [], {"kms": len(encs)}
    lock = threading.Lock()

    def kms_thread(n):
        k = Kms(path)
        made = 0
        try:
            for i in range(60):
                j = (n + i) % len(seeds)
                got = k.decrypt(encs[j].ciphertext, encs[j].key_id, dict(encs[j].annotations)).plaintext
                if got != seeds[j]:
                    errors.append("thread %d: Decrypt %d gave the wrong plaintext" % (n, i))
                made += 1
                if i % 10 == 0:
                    seed = os.urandom(32)
                    enc = k.encrypt(seed, uid="t%d-%d" % (n, i))
                    if k.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)).plaintext != seed:
                        errors.append("thread %d: a fresh seed did not round trip" % n)
                    made += 2
                if i % 15 == 0 and k.status().healthz != "ok":
                    errors.append("thread %d: Status not ok" % n)
        except Exception as e:  # a failed call is a finding, not a crash of the test
            errors.append("thread %d: %r" % (n, e))
        finally:
            k.close()
            with lock:
                counts["kms"] += made

    def ndjson_thread(n):
        try:
            c = kb.conn()
            for i in range(60):
                pt = os.urandom(32)
                w = c.call({"op": "wrap", "key": "aes", "plaintext": b64(pt)})
                u = c.call({"op": "unwrap", "blob": w.get("blob", "")})
                if not u.get("ok") or u.get("plaintext") != b64(pt):
                    errors.append("ndjson %d: %s / %s" % (n, w, u))
            c.close()
        except Exception as e:
            errors.append("ndjson %d: %r" % (n, e))

    threads = [threading.Thread(target=kms_thread, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=ndjson_thread, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check(not any(t.is_alive() for t in threads), "every thread finished")
    check(errors == [], "no wrong answer or failed call: %s" % errors[:5])
    audited = [a for a in audit_lines(root) if a.get("face") == "kms:k8s" and a.get("op") in ("wrap", "unwrap")]
    check(len(audited) == counts["kms"], "each of %d Encrypts and Decrypts audited once: %d lines" %
          (counts["kms"], len(audited)))
    check(all(a["result"] == "ok" for a in audited), "every audited KMS call succeeded: %s" %
          [a for a in audited if a["result"] != "ok"][:3])


def bad_input_gets_specific_codes(root):
    """A wrong key_id, a corrupt ciphertext, an unknown key, empty and
    oversized plaintexts, malformed annotations: each a specific gRPC code and
    message, never UNKNOWN, and both sockets keep serving."""
    kb, kms, _ = start(root, extra="max_request_bytes = 64k")  # the 70000-byte message is over it
    st = healthy(kms)
    seed = os.urandom(32)
    enc = kms.encrypt(seed)
    ann = dict(enc.annotations)
    ver, fp = enc.key_id.split("/")[2], enc.key_id.split("/")[3]
    cases = [
        ("a key_id of another version", (enc.ciphertext, "kb1/rsa/99/" + fp, ann), grpc.StatusCode.INVALID_ARGUMENT, "version 99"),
        ("a key_id of other key material", (enc.ciphertext, "kb1/rsa/%s/%s" % (ver, "0" * 16), ann),
         grpc.StatusCode.INVALID_ARGUMENT, "fingerprint"),
        ("a key_id keybroker never gave", (enc.ciphertext, "k8s-key-1", ann), grpc.StatusCode.INVALID_ARGUMENT, "key_id"),
        ("an empty key_id", (enc.ciphertext, "", ann), grpc.StatusCode.INVALID_ARGUMENT, "key_id"),
        ("a corrupt ciphertext", (enc.ciphertext[:-3] + b"AAA", enc.key_id, ann), grpc.StatusCode.INVALID_ARGUMENT, "bad_blob"),
        ("garbage as ciphertext", (os.urandom(200), enc.key_id, ann), grpc.StatusCode.INVALID_ARGUMENT, "bad_blob"),
        ("an empty ciphertext", (b"", enc.key_id, ann), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        ("a ciphertext of a key not configured here",
         (make_blob("ghost", "01", "RSA-OAEP", os.urandom(256)).encode(), "kb1/ghost/01/" + fp, ann),
         grpc.StatusCode.NOT_FOUND, "ghost"),
        ("an annotation key that is no DNS name", (enc.ciphertext, enc.key_id, {"keybroker.io/format": b"kb1"}),
         grpc.StatusCode.INVALID_ARGUMENT, "DNS"),
        ("annotations over 32 kB", (enc.ciphertext, enc.key_id, {"big.example.com": b"x" * 33000}),
         grpc.StatusCode.INVALID_ARGUMENT, "32768"),
    ]
    for what, args, want, word in cases:
        code, details = kms.code_of(kms.decrypt, *args)
        check(code == want, "%s: want %s, got %s (%s)" % (what, want, code, details))
        check(details and word in details and len(details) > 20, "%s: the message says why: %r" % (what, details))
    code, details = kms.code_of(kms.encrypt, b"")
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "empty" in details, "empty plaintext: %s %s" % (code, details))
    code, details = kms.code_of(kms.encrypt, os.urandom(2000))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "1024" in details, "2000-byte plaintext: %s %s" % (code, details))
    code, details = kms.code_of(kms.decrypt, os.urandom(70000), enc.key_id)
    check(code == grpc.StatusCode.RESOURCE_EXHAUSTED, "a message over max_request_bytes: %s %s" % (code, details))
    # nothing of that changed what works
    check(kms.decrypt(enc.ciphertext, enc.key_id, ann).plaintext == seed, "the KMS socket still serves")
    check(kms.status().key_id == st.key_id, "Status still answers")
    kb.ok({"op": "unwrap", "blob": enc.ciphertext.decode()})


def garbage_connections_keep_both_sockets_serving(root):
    """1,000 connections that send garbage (or nothing) and hang up; then both
    the KMS socket and the NDJSON socket still serve."""
    kb, kms, path = start(root)
    healthy(kms)
    for i in range(1000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        if i % 3 == 0:
            s.sendall(os.urandom(64 + i % 200))
        elif i % 3 == 1:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(50))
        s.close()
    seed = os.urandom(32)
    enc = kms.encrypt(seed)
    check(kms.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)).plaintext == seed, "KMS serves")
    kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(seed)})
    check(kb.proc.poll() is None, "keybrokerd is alive")


def silent_connection_is_closed_after_idle_timeout(root):
    """A connection to the KMS socket that never speaks HTTP/2 (or makes no
    call) is closed after idle_timeout, as a silent one is on the main socket
    (client_timeout when idle_timeout is 0); gRPC clients just connect again."""
    import time
    kb, kms, path = start(root, extra="idle_timeout = 1s\n")
    healthy(kms)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    t0 = time.monotonic()
    while s.recv(4096):
        pass  # gRPC may greet first; the close is what counts
    waited = time.monotonic() - t0
    check(0.5 < waited < 15, "closed after about idle_timeout (1 s): %.1f s" % waited)
    check(kms.status().healthz == "ok", "the KMS socket still serves")


_PEER = r"""
import socket, sys, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
got = b""
try:
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
except OSError:
    pass  # closed already
end = "eof"
try:
    while True:
        d = s.recv(4096)
        if not d:
            break
        got += d
except ConnectionResetError:
    end = "reset"  # closed with the preface unread: a reset, still nothing from gRPC
print(json.dumps({"bytes": len(got), "end": end}))
"""


def refused_peer_on_kms_socket(root):
    """A peer the policy refuses is closed on the KMS socket before gRPC sees
    a byte (not even its SETTINGS frame), and the refusal is logged; the
    daemon's own uid still is served."""
    os.chmod(root, 0o711)
    kb, kms, path = start(root, extra="socket_mode = 0660\nsocket_group = nogroup\n")
    healthy(kms)
    check(oct(os.stat(path).st_mode & 0o777) == "0o660", "the KMS socket has the main socket's mode")
    p = subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                        sys.executable, "-c", _PEER, path], capture_output=True, timeout=60, cwd="/")
    check(p.returncode == 0, "peer ran: %s" % p.stderr.decode(errors="replace"))
    r = json.loads(p.stdout)
    check(r["bytes"] == 0 and r["end"] in ("eof", "reset"), "the refused peer got nothing, then the close: %s" % r)
    wait_for(lambda: "kms k8s: refused a connection from uid %d" % NOBODY in kb.log_text(), "the refusal in the log")
    healthy(kms)
    check(kb.status()["counters"]["connections_refused"] >= 1, "the refusal is counted")


def recreated_key_gets_a_new_key_id(root):
    """A key made anew under the same name and version (a fresh token with the
    same labels and CKA_IDs) never gets the key_id of the one before."""
    kb, kms, _ = start(root)
    first = healthy(kms).key_id
    kb.stop()
    import shutil
    shutil.rmtree(os.path.join(root, "token"))
    kb2, kms2, _ = start(root)
    second = healthy(kms2).key_id
    check(first.split("/")[:3] == second.split("/")[:3], "same key and version: %s %s" % (first, second))
    check(first != second, "a different fingerprint: %s vs %s" % (first, second))


def recreated_aes_key_on_the_same_token_gets_a_new_key_id(root):
    """An AES key deleted and made again on the same token, with the same
    label and CKA_ID (so the same name and version), gets a new key_id: the
    fingerprint covers the key material, not where it lives."""
    token = Token(root)
    kb, kms, _ = start(root, key="aes", token=token)
    first = healthy(kms).key_id
    kb.stop()
    token.tool("--delete-object", "--type", "secrkey", "--label", "aes-kek")
    token.tool("--keygen", "--key-type", "AES:32", "--label", "aes-kek", "--id", "01")
    kb2, kms2, _ = start(root, key="aes", token=token)
    second = healthy(kms2).key_id
    check(first.split("/")[:3] == second.split("/")[:3], "same key and version: %s %s" % (first, second))
    check(first != second, "a different fingerprint for new key material: %s vs %s" % (first, second))


def status_not_ok_while_token_removed(root):
    """With the token pulled (the fault shim in front of SoftHSM), Status says
    so at the next check, Encrypt fails UNAVAILABLE; once it is back, Status is
    "ok" again with the same key_id."""
    shim_path = os.environ.get("KB_SHIM", os.path.join(kbtest.BUILD, "tests", "shim", "kbshim.so"))
    control = os.path.join(root, "shim.control")

    def shim(mode):
        with open(control + ".tmp", "w") as f:
            f.write(mode + "\n")
        os.replace(control + ".tmp", control)
    shim("ok")
    token = Token(root)
    path, sec = kms_section(root, "rsa")
    keys = ("[key:rsa]\nbackend = pkcs11\nmodule = %s\nuri = pkcs11:token=%s;object=rsa-kek\npin_file = %s\n\n" %
            (shim_path, token.label, token.pin_file)) + sec
    kb = Broker(root, token, broker_extra="health_interval = 1s\n", keys=keys,
                env={"KB_SHIM_CONTROL": control, "KB_SHIM_MODULE": kbtest.MODULE})
    kms = Kms(path)
    st = healthy(kms)
    seed = os.urandom(32)
    enc = kms.encrypt(seed)  # a wrap is not cached: its Decrypt needs the token
    shim("removed")
    bad = wait_for(lambda: (lambda s: s if s.healthz != "ok" else None)(kms.status()), "Status not ok", timeout=15)
    check("rsa" in bad.healthz and "backend_unavailable" in bad.healthz, "healthz says why: %r" % bad.healthz)
    code, details = kms.code_of(kms.decrypt, enc.ciphertext, enc.key_id, dict(enc.annotations))
    check(code == grpc.StatusCode.UNAVAILABLE and "backend_unavailable" in details,
          "Decrypt with the token out: %s %s" % (code, details))
    shim("ok")
    back = healthy(kms)
    check(back.key_id == st.key_id, "the same key_id once the token is back")
    check(kms.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)).plaintext == seed, "decrypts again")


def reload_keeps_the_kms_socket_serving(root):
    """SIGHUP while kube-apiserver is connected: the KMS socket keeps serving
    on the same channel; a reload that removes the KMS key is refused, as
    startup and --check refuse it, and the running key goes on serving."""
    import signal
    token = Token(root)
    kb, kms, path = start(root, token=token)
    st = healthy(kms)
    seed = os.urandom(32)
    enc = kms.encrypt(seed)
    with open(kb.conf) as f:
        full = f.read()

    def reload(text, n):
        with open(kb.conf, "w") as f:
            f.write(text)
        kb.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: kb.log_text().count("SIGHUP: reloaded") >= n, "reload %d" % n)
    reload(full, 1)
    check(kms.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)).plaintext == seed, "Decrypt after SIGHUP")
    check(healthy(kms).key_id == st.key_id, "Status after SIGHUP")
    with open(kb.conf, "w") as f:
        f.write(full.replace("[key:rsa]", "[key:gone]"))
    kb.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: the new config is refused" in kb.log_text(), "the reload refused")
    check("[kms:" in kb.log_text().split("SIGHUP: the new config is refused")[1].splitlines()[0],
          "the refusal names the [kms] section: %s" % kb.log_text())
    check(healthy(kms).key_id == st.key_id, "Status still ok: the running config stays")
    check(kms.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)).plaintext == seed, "Decrypt still works")
    reload(full, 2)
    check(healthy(kms).key_id == st.key_id, "the key back, Status ok with the same key_id")
    check(kms.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)).plaintext == seed, "and Decrypt")
    check(kb.stop() == 0, "keybrokerd stops cleanly after the reloads")


def bench_measures_kms_decrypt_and_encrypt(root):
    """keybroker bench --op kms-decrypt and kms-encrypt run against the KMS
    socket with no errors; Decrypts are all cache hits (no backend unwrap)."""
    kb, kms, path = start(root, health_interval="1h")  # no health check's unwrap inside the window
    healthy(kms)
    for op in ("kms-decrypt", "kms-encrypt"):
        before = kb.backend_calls("rsa")
        p = kb.cli("bench", "--op", op, "--kms-socket", path, "--requests", "200", "--warmup", "0",
                   "--json", check_rc=0)
        s = json.loads(p.stdout)["series"][0]
        check(s["requests"] == 200 and s["errors"] == 0, "%s: %s" % (op, s))
        if op == "kms-decrypt":
            # 64 ciphertexts made and decrypted once before the window, then only hits
            check(kb.backend_calls("rsa") - before == 64, "kms-decrypt's window made no backend unwrap")
    p = kb.cli("bench", "--op", "kms-decrypt", "--requests", "5")
    check(p.returncode == 2 and b"--kms-socket" in p.stderr, "kms ops need --kms-socket: %s" % p.stderr)


if __name__ == "__main__":
    kbtest.run({k: v for k, v in globals().items() if callable(v) and not k.startswith("_") and
                k not in ("start", "healthy", "audit_lines", "check", "make_blob", "b64", "wait_for")})
