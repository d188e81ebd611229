"""A token that leaves is an outage, and startup, --check and SIGHUP judge a config
alike (issue 25, items 3 and 4). Real SoftHSM tokens, the real daemon."""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kbtest  # noqa: E402
from kbtest import Broker, Token, b64, check, wait_for  # noqa: E402


def token_removed_and_restored_while_serving(root):
    tok = Token(root)
    b = Broker(root, tok)
    rsa = b.ok({"op": "wrap", "key": "rsa", "plaintext": b64(b"r" * 32)})["blob"]
    aes = b.ok({"op": "wrap", "key": "aes", "plaintext": b64(b"a" * 32)})["blob"]
    # SoftHSM loses the token when its directory goes away, as a token pulled from its reader
    tokens = os.path.join(tok.dir, "tokens")
    os.rename(tokens, tokens + ".away")
    for req in ({"op": "unwrap", "blob": rsa, "cache": False}, {"op": "unwrap", "blob": aes, "cache": False},
                {"op": "wrap", "key": "aes", "plaintext": b64(b"x" * 32)}, {"op": "get", "key": "rsa"}):
        r = b.err(req, "backend_unavailable")
        check("token %s" % tok.label in r["error"]["message"] and "not present" in r["error"]["message"],
              "the refusal names the token that is away: %s" % r["error"])
    d = b.cli("doctor", "rsa")
    out = d.stdout.decode()
    check("token present" in out and "fail" in out, "doctor says the token is not present: %s" % out)
    # back again: the keys are served without a restart
    os.rename(tokens + ".away", tokens)

    def unwraps():
        r = b.call({"op": "unwrap", "blob": rsa, "cache": False})
        return r if r.get("ok") else None
    r = wait_for(unwraps, 30, "key rsa served again once the token is back", step=0.2)
    check(r["plaintext"] == b64(b"r" * 32), "the old blob unwraps to its DEK")
    check(b.ok({"op": "unwrap", "blob": aes, "cache": False})["plaintext"] == b64(b"a" * 32), "key aes too")
    check(b.proc.poll() is None, "keybrokerd kept running")


def kms_status(kms):
    """KMS v2 Status, or None while the channel still backs off."""
    import grpc
    try:
        return kms.status()
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.UNAVAILABLE, "Status failed: %s" % e)
        return None


def token_absent_at_startup_is_served_when_it_appears(root):
    sys.path.insert(0, os.path.join(kbtest.SRC, "tests", "kms"))
    from kmsfix import Kms, kms_section
    tok = Token(root)
    tokens = os.path.join(tok.dir, "tokens")
    uuid = os.listdir(tokens)[0]
    os.rename(os.path.join(tokens, uuid), os.path.join(tok.dir, uuid))
    path, sec = kms_section(root, "rsa")
    b = Broker(root, tok, broker_extra="health_interval = 1s",
               keys=tok.key_section("rsa", "rsa-kek", "RSA-OAEP") + tok.key_section("aes", "aes-kek", "AES-KWP") + sec)
    k = [k for k in b.status()["keys"] if k["name"] == "rsa"][0]
    check(k["available"] is False and "no initialized token" in k["unavailable"], "status marks rsa unavailable: %s" % k)
    b.err({"op": "wrap", "key": "rsa", "plaintext": b64(b"r" * 32)}, "backend_unavailable")
    # KMS v2 Status says the key is unavailable, and why (not that it is missing)
    kms = Kms(path)
    st = wait_for(lambda: (lambda s: s if s and s.healthz != "ok" and "backend_unavailable" in s.healthz else None)(
        kms_status(kms)), 30, "KMS Status names the outage")
    check("rsa" in st.healthz and "no initialized token" in st.healthz, "Status says why: %r" % st.healthz)
    os.rename(os.path.join(tok.dir, uuid), os.path.join(tokens, uuid))
    wait_for(lambda: all(k["available"] for k in b.status()["keys"]), 60, "every key available", step=0.2)
    w = b.ok({"op": "wrap", "key": "rsa", "plaintext": b64(b"r" * 32)})
    check(b.ok({"op": "unwrap", "blob": w["blob"], "cache": False})["plaintext"] == b64(b"r" * 32), "round trip")
    check(b.log_text().count("key rsa: its key service is back") == 1, "logged once when it came up")
    wait_for(lambda: (lambda s: s if s and s.healthz == "ok" else None)(kms_status(kms)), 30, "KMS Status ok again")


def check_mode(b):
    p = subprocess.run([kbtest.KEYBROKERD, "-c", b.conf, "--check"], env=b.env, capture_output=True)
    return p.returncode, p.stdout.decode() + p.stderr.decode()


def reload_verdict(b, conf_text):
    """Writes conf_text, sends SIGHUP and returns 'reloaded' or 'refused' as the daemon logged it."""
    kbtest.write_atomic(b.conf, conf_text)
    before = b.log_text()
    n_ok, n_no = before.count("SIGHUP: reloaded"), before.count("SIGHUP: the new config is refused")
    b.proc.send_signal(signal.SIGHUP)
    return wait_for(lambda: "reloaded" if b.log_text().count("SIGHUP: reloaded") > n_ok else
                    "refused" if b.log_text().count("SIGHUP: the new config is refused") > n_no else None,
                    60, "the reload is judged")


def reload_judges_as_check_and_startup_do(root):
    tok = Token(root)
    b = Broker(root, tok)
    with open(b.conf) as f:
        good = f.read()
    wrong_pin = os.path.join(root, "wrong.pin")
    fd = os.open(wrong_pin, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"0000000000000000\n")
    os.close(fd)
    cases = {
        "a wrong PIN": good.replace(tok.pin_file, wrong_pin),
        "a missing PIN file": good.replace(tok.pin_file, os.path.join(root, "missing.pin")),
        "a [kms] naming a removed key": good.split("[key:aes]")[0] +
        "\n[kms:k8s]\nsocket = %s\nkey = aes\n" % os.path.join(root, "kms.sock"),
    }
    for what, text in cases.items():
        kbtest.write_atomic(b.conf, text)
        rc, out = check_mode(b)
        check(rc == 1, "--check refuses %s: %s" % (what, out))
        verdict = reload_verdict(b, text)
        check(verdict == "refused", "SIGHUP refuses %s as --check does (%s)" % (what, verdict))
        b.ok({"op": "wrap", "key": "aes", "plaintext": b64(b"a" * 32)})  # the running config stays
    # and a good config is accepted by all three
    kbtest.write_atomic(b.conf, good)
    rc, out = check_mode(b)
    check(rc == 0, "--check accepts the good config: %s" % out)
    check(reload_verdict(b, good) == "reloaded", "SIGHUP accepts the good config")
    b.stop()
    for what, text in cases.items():
        kbtest.write_atomic(b.conf, text)
        check(b.start(expect_fail=True) == 1, "startup refuses %s as well" % what)


kbtest.run(globals())
