#!/usr/bin/env python3
"""keybroker on PKCS#11 tokens other than a local SoftHSM: each test starts its token
(p11-kit server in front of SoftHSM, or swtpm under tpm2-pkcs11) and the real keybrokerd."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenkit import PROXY_MODULE, P11KitRemote, ShimToken, Tpm, key_section  # noqa: E402
from kbtest import Broker, b64, blob_fields, check, run, unb64  # noqa: E402


def broker(root, tok, keys):
    return Broker(root, tok, keys="".join(key_section(tok, *k) for k in keys))


def refused_at_start(root, tok, keys):
    """Starts keybrokerd expecting it to refuse; returns its output."""
    kb = Broker(root, tok, keys="".join(key_section(tok, *k) for k in keys), start=False)
    check(kb.start(expect_fail=True) != 0, "keybrokerd started; it should have refused")
    return kb.log_text()


def doctor_passes(kb):
    checks = json.loads(kb.cli("--json", "doctor", "rsa", check_rc=0).stdout)["checks"]
    bad = [c for c in checks if c["status"] == "fail"]
    check(not bad and any(c["check"] == "wrap/unwrap round trip" for c in checks), "doctor passes: %s" % bad)


def rsa_operations(kb, tok, alg, rotates=True):
    """datakey, unwrap after a flush, 16 and 20 bytes, get, rotate, old blob, rewrap, doctor.
    On a token that cannot make a key pair in the broker's process, rotate's refusal is checked."""
    d = kb.ok({"op": "datakey", "key": "rsa"})
    check(blob_fields(d["blob"])["alg"] == alg, "datakey under %s: %s" % (alg, d["blob"][:40]))
    kb.ok({"op": "flush"})
    u = kb.ok({"op": "unwrap", "blob": d["blob"]})
    check(unb64(u["plaintext"]) == unb64(d["plaintext"]) and u["cached"] is False,
          "the datakey blob unwraps from the token after a flush")
    old = {}
    for n in (16, 20):
        pt = os.urandom(n)
        old[n] = (pt, kb.ok({"op": "wrap", "key": "rsa", "alg": alg, "plaintext": b64(pt)})["blob"])
        kb.ok({"op": "flush"})
        check(unb64(kb.ok({"op": "unwrap", "blob": old[n][1]})["plaintext"]) == pt, "%d bytes round trip" % n)
    g = kb.ok({"op": "get", "key": "rsa"})
    check(g["kty"] == "RSA" and g["bits"] == 2048 and g["latest"] == "01" and "BEGIN PUBLIC KEY" in g["public_key_pem"],
          "get: %s" % {k: g[k] for k in ("kty", "bits", "latest")})
    doctor_passes(kb)
    if not rotates:
        r = kb.err({"op": "rotate", "key": "rsa"}, "mechanism_unsupported")["error"]["message"]
        check("rotate" in r and "C_GenerateKeyPair" in r and "label rsa-kek" in r and "resource manager" in r
              and "internal" not in r, "rotate's refusal names the operation, the call and the fix: %s" % r)
        return
    r = kb.ok({"op": "rotate", "key": "rsa"})
    check(r["version"] == "02", "rotate made version %s" % r["version"])
    check([v["version"] for v in kb.ok({"op": "get", "key": "rsa"})["versions"]] == ["01", "02"],
          "get lists both versions after rotate")
    new = kb.ok({"op": "wrap", "key": "rsa", "alg": alg, "plaintext": b64(b"n" * 32)})
    check(new["version"] == "02", "new wraps use the new version")
    kb.ok({"op": "flush"})
    for pt, blob in old.values():
        check(unb64(kb.ok({"op": "unwrap", "blob": blob})["plaintext"]) == pt, "a blob of 01 unwraps after rotate")
    rw = kb.ok({"op": "rewrap", "blob": old[16][1]})
    check(blob_fields(rw["blob"])["version"] == "02", "rewrap moves the blob to 02")
    kb.ok({"op": "flush"})
    check(unb64(kb.ok({"op": "unwrap", "blob": rw["blob"]})["plaintext"]) == old[16][0], "the rewrapped blob unwraps")
    doctor_passes(kb)


def p11kit_rsa_operations(root):
    tok = P11KitRemote(root)
    try:
        kb = broker(root, tok, [("rsa", "rsa-kek")])
        # SoftHSM behind the server: RSA-OAEP (SHA-1) only, as locally
        r = kb.err({"op": "wrap", "key": "rsa", "alg": "RSA-OAEP-256", "plaintext": b64(b"k" * 32)},
                   "mechanism_unsupported")
        check("SHA-1" in r["error"]["message"], "names what the token can do: %s" % r["error"])
        rsa_operations(kb, tok, "RSA-OAEP")
        kb.stop()
    finally:
        tok.stop()


def p11kit_aes_refused_clearly(root):
    """p11-kit 0.24's remoting passes no AES wrap mechanism: AES keys are refused at startup."""
    tok = P11KitRemote(root)
    try:
        out = refused_at_start(root, tok, [("aes", "aes-kek")])
        check("keybrokerd.conf:" in out and "[key:aes]:" in out and "offers none of AES-KWP, AES-GCM, AES-KW" in out
              and "another alg" not in out, "no alg: names the section, what the token lacks, no other alg: %s" % out)
        out = refused_at_start(root, tok, [("aes", "aes-kek", "AES-GCM")])
        check("[key:aes] alg = AES-GCM:" in out and "CKM_AES_GCM" in out and "offers none" in out,
              "alg set: names the alg line and the mechanism: %s" % out)
    finally:
        tok.stop()


def p11kit_server_gone_names_the_address(root):
    tok = P11KitRemote(root)
    tok.stop()
    # a server that is down is an outage, not a config error: the daemon starts and names the cause
    kb = broker(root, tok, [("rsa", "rsa-kek")])
    k = kb.status()["keys"][0]
    out = k.get("unavailable", "")
    check(k["available"] is False and "P11_KIT_SERVER_ADDRESS" in out and tok.address in out and
          "check token=" not in out, "names the server address, not the uri: %s" % k)
    r = kb.err({"op": "wrap", "key": "rsa", "plaintext": b64(b"r" * 32)}, "backend_unavailable")
    check("P11_KIT_SERVER_ADDRESS" in r["error"]["message"], "the refusal names the cause: %s" % r["error"])


def p11kit_proxy_module(root):
    """p11-kit-proxy.so (the system's registered modules, SoftHSM among them) hands out a fresh list per call."""
    from kbtest import Token
    tok = Token(root)
    tok.module = PROXY_MODULE
    kb = broker(root, tok, [("rsa", "rsa-kek")])
    pt = os.urandom(20)
    blob = kb.ok({"op": "wrap", "key": "rsa", "plaintext": b64(pt)})["blob"]
    kb.ok({"op": "flush"})
    check(unb64(kb.ok({"op": "unwrap", "blob": blob})["plaintext"]) == pt, "round trip through the proxy")


def tpm_rsa_operations(root):
    tok = Tpm(root)  # behind tpm2-abrmd, as a real host has /dev/tpmrm0
    try:
        kb = broker(root, tok, [("rsa", "rsa-kek")])
        rsa_operations(kb, tok, "RSA-OAEP")
        kb.stop()
    finally:
        tok.stop()


def tpm_rsa_oaep_256_operations(root):
    tok = Tpm(root)
    try:
        kb = broker(root, tok, [("rsa", "rsa-kek", "RSA-OAEP-256")])
        rsa_operations(kb, tok, "RSA-OAEP-256")
        kb.stop()
    finally:
        tok.stop()


def tpm_without_resource_manager(root):
    """swtpm alone holds 3 loaded objects and nothing swaps them out: tpm2-pkcs11 keeps its
    primary, the seal object and rsa-kek loaded, so C_GenerateKeyPair in the broker's process
    finds the TPM full (out of memory for object contexts). Everything else works; rotate
    is refused naming the operation, the call and the fix."""
    tok = Tpm(root, rm=False)
    try:
        kb = broker(root, tok, [("rsa", "rsa-kek")])
        rsa_operations(kb, tok, "RSA-OAEP", rotates=False)
        kb.stop()
    finally:
        tok.stop()


def tpm_aes_refused_clearly(root):
    """tpm2-pkcs11 makes no AES key through C_GenerateKey, and offers no AES wrap mechanism."""
    tok = Tpm(root)
    try:
        p = tok.tool("--keygen", "--key-type", "AES:32", "--label", "aes-kek", "--id", "01", check_rc=False)
        check(p.returncode != 0 and b"CKR_FUNCTION_NOT_SUPPORTED" in p.stderr,
              "tpm2-pkcs11 1.9 refuses AES keygen through PKCS#11: %s" % p.stderr.decode())
        mechs = tok.p11("-M").stdout.decode()
        for absent in ("AES-KEY-WRAP", "AES-GCM"):
            check(absent not in mechs, "the TPM token offers %s after all:\n%s" % (absent, mechs))
    finally:
        tok.stop()


def shim_rotate_retries_without_optional_attributes(root):
    """A token that refuses CKA_SIGN/CKA_VERIFY/CKA_EXTRACTABLE in a template (as tpm2-pkcs11
    refuses CKA_SIGN=FALSE): rotate makes the key pair and the AES key without them."""
    tok = ShimToken(root)
    kb = broker(root, tok, [("rsa", "rsa-kek", "RSA-OAEP"), ("aes", "aes-kek", "AES-KWP")])
    old = {k: kb.ok({"op": "wrap", "key": k, "plaintext": b64(b"o" * 32)})["blob"] for k in ("rsa", "aes")}
    tok.set("strict_templates")
    for key, call in (("rsa", "C_GenerateKeyPair"), ("aes", "C_GenerateKey")):
        check(kb.ok({"op": "rotate", "key": key})["version"] == "02", "%s rotates to 02" % key)
        check("kbshim: strict_templates: %s refused a template with" % call in kb.log_text(),
              "the first %s asked for the optional attributes and was refused" % call)
        new = kb.ok({"op": "wrap", "key": key, "plaintext": b64(b"n" * 32)})
        check(blob_fields(new["blob"])["version"] == "02", "%s wraps under the new version" % key)
        kb.ok({"op": "flush"})
        check(unb64(kb.ok({"op": "unwrap", "blob": new["blob"]})["plaintext"]) == b"n" * 32,
              "the new %s version unwraps" % key)
        check(unb64(kb.ok({"op": "unwrap", "blob": old[key]})["plaintext"]) == b"o" * 32,
              "a blob of %s 01 unwraps after rotate" % key)
    kb.stop()


def shim_rotate_refused_names_the_call(root):
    """A token that makes no keys at all: rotate's error names rotate, the PKCS#11 call, the
    label and the fix, is never internal, and rotate works once the token does again."""
    tok = ShimToken(root)
    kb = broker(root, tok, [("rsa", "rsa-kek", "RSA-OAEP"), ("aes", "aes-kek", "AES-KWP")])
    tok.set("refuse_generate")
    for key, call, label in (("rsa", "C_GenerateKeyPair", "rsa-kek"), ("aes", "C_GenerateKey", "aes-kek")):
        m = kb.err({"op": "rotate", "key": key}, "mechanism_unsupported")["error"]["message"]
        check("during rotate" in m and "CKR_GENERAL_ERROR from %s" % call in m and "label %s" % label in m
              and "the next CKA_ID" in m and "internal" not in m and "resource manager" not in m,
              "the refusal names rotate, %s, the label and the fix: %s" % (call, m))
        p = kb.cli("rotate", key)
        err = p.stderr.decode()
        check(p.returncode != 0 and call in err and "internal" not in err, "the CLI shows it: %s" % err)
    tok.set("ok")
    check(kb.ok({"op": "rotate", "key": "rsa"})["version"] == "02", "rotate works once the token makes keys")
    kb.stop()


def softhsm_answer_follows_its_bookkeeping(root):
    """A worker answers a PKCS#11 miss itself when the loop sleeps (broker/finish.h). Whoever
    answers, the answer comes after the bookkeeping: a client that asks again at once finds the
    DEK it was given in the cache, the counters already counting its miss, and its connection
    free for more (the in-flight count). 4 clients at once, so some answers come from workers
    and some from the loop."""
    import threading
    from kbtest import MODULE, Token
    tok = Token(root)
    tok.module = MODULE
    kb = broker(root, tok, [("rsa", "rsa-kek", "RSA-OAEP"), ("aes", "aes-kek", "AES-KWP")])
    kb.ok({"op": "flush"})
    fails = []

    def client(key):
        c = kb.conn()
        try:
            for _ in range(60):
                d = c.call({"op": "datakey", "key": key})
                u = c.call({"op": "unwrap", "blob": d["blob"]})
                if not (u.get("ok") and u["cached"] is True and u["plaintext"] == d["plaintext"]):
                    fails.append("a datakey's blob right after it: %s" % u)
                w = c.call({"op": "rewrap", "blob": d["blob"]})
                u = c.call({"op": "unwrap", "blob": w["blob"]})
                if not (u.get("ok") and u["cached"] is True and u["plaintext"] == d["plaintext"]):
                    fails.append("a rewrapped blob right after it: %s" % u)
        except Exception as e:  # noqa: BLE001 (reported below)
            fails.append(repr(e))
        finally:
            c.close()
    threads = [threading.Thread(target=client, args=(k,)) for k in ("rsa", "aes", "rsa", "aes")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not fails, "%d answers came before their bookkeeping, first: %s" % (len(fails), fails[:1]))
    # misses, each counted by the time it is answered; pipelined, all 32 at once on one connection
    blobs = [kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(bytes([i]) * 32)})["blob"] for i in range(32)]
    kb.ok({"op": "flush"})
    before = kb.backend_calls("aes")
    c = kb.conn()
    for b in blobs:
        c.send({"op": "unwrap", "blob": b})
    got = sorted(unb64(c.read_line()["plaintext"])[0] for _ in blobs)
    check(got == list(range(32)), "every pipelined miss answered once, right: %s" % got)
    check(kb.backend_calls("aes") - before == 32, "the 32 misses counted by the time they were answered")
    c.close()
    kb.stop()


if __name__ == "__main__":
    run(globals())
