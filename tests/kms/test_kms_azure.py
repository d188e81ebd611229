"""The KMS v2 face on an Azure Key Vault key, against the real akv-emulator
over TLS on loopback: Status reports the key's real health."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "azure"))
import azfix  # noqa: E402
from azfix import Emu, broker, key_section  # noqa: E402
from kmsfix import Kms, kms_section, wait_for  # noqa: E402
from kbtest import check  # noqa: E402


def status_not_ok_while_azure_key_disabled(root):
    """kube-apiserver's Status says what is wrong while the vault key is
    disabled, and "ok" again once it is enabled; Encrypt and Decrypt follow."""
    emu = Emu(root)
    path, sec = kms_section(root, "rsa")
    # the wrap goes to the vault (not to the public key here): it has an Azure request id
    audit = os.path.join(root, "audit.log")
    kb = broker(root, key_section(emu, "rsa", root=root, extra="local_wrap = false\n") + sec,
                broker_extra="health_interval = 1s\ncache_ttl = 1s\naudit_log = %s\n" % audit)
    kms = Kms(path)
    st = wait_for(lambda: (lambda s: s if s.healthz == "ok" else None)(kms.status()), "Status ok")
    check(st.key_id.startswith("kb1/rsa/"), "key_id of the vault key: %s" % st.key_id)
    seed = os.urandom(32)
    enc = kms.encrypt(seed)
    check(kms.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)).plaintext == seed, "round trip")
    rid = dict(enc.annotations).get("request-id.keybroker.io", b"").decode()
    with open(audit) as f:
        wraps = [json.loads(line) for line in f if '"op":"wrap"' in line and '"face":"kms:' in line]
    check(rid != "" and rid in [w.get("request_id") for w in wraps],
          "Encrypt's request-id annotation %r is the audited wrap's Azure request id (%s)" %
          (rid, [w.get("request_id") for w in wraps]))
    checks_before = emu.count(r"unwrapkey")
    emu.admin("/admin/keys/disable", {"vault": "kv", "key": "rsa"})
    bad = wait_for(lambda: (lambda s: s if s.healthz != "ok" else None)(kms.status()),
                   "Status not ok while the key is disabled", timeout=20)
    check("rsa" in bad.healthz and "disabled" in bad.healthz, "healthz names the key and why: %r" % bad.healthz)
    check(bad.key_id == st.key_id, "the key_id stays the last one known")
    code, details = kms.code_of(kms.decrypt, enc.ciphertext, enc.key_id, dict(enc.annotations))
    wait_for(lambda: kms.code_of(kms.decrypt, enc.ciphertext, enc.key_id, dict(enc.annotations))[0] is not None,
             "Decrypt to fail once the cached DEK's TTL is over", timeout=10)
    code, details = kms.code_of(kms.decrypt, enc.ciphertext, enc.key_id, dict(enc.annotations))
    check(code is not None and code.name == "FAILED_PRECONDITION" and "key_disabled" in details,
          "Decrypt of a disabled key: %s %s" % (code, details))
    emu.admin("/admin/keys/enable", {"vault": "kv", "key": "rsa"})
    wait_for(lambda: kms.status().healthz == "ok", "Status ok again after the key is enabled", timeout=20)
    check(kms.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)).plaintext == seed, "decrypts again")
    # Status answered from the last check: many Status calls are not many vault calls
    n0 = emu.count(r"unwrapkey")
    for _ in range(50):
        kms.status()
    check(emu.count(r"unwrapkey") - n0 <= 3, "50 Status calls made at most a few checks (%d unwraps)" %
          (emu.count(r"unwrapkey") - n0))
    check(checks_before >= 1, "the health check went to the vault")


if __name__ == "__main__":
    azfix.run({"status_not_ok_while_azure_key_disabled": status_not_ok_while_azure_key_disabled})
