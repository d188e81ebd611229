#!/usr/bin/env python3
"""Rotation to an entirely new key on Azure (issue 26), against akv-emulator over TLS:
a key moved to another vault keeps unwrapping its old blobs with previous naming
the old key, bulk rewrap moves them, and the old key can then be disabled."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import azfix  # noqa: E402
from azfix import Emu, b64, broker, check, key_section  # noqa: E402
from kbtest import blob_fields  # noqa: E402
from test_rotation import reload  # noqa: E402  (tests/integration)

SECOND_VAULT = """
[vault:kv2]
[key:vault.kv2.rsa]
kty = RSA
size = 2048
"""


def moved_to_another_vault_keeps_unwrapping_with_previous(root):
    emu = Emu(root, extra_config=SECOND_VAULT)
    old_url = emu.url("vault")
    new_url = "https://%s/keys/rsa" % emu.host_named("kv2")
    kb = broker(root, key_section(emu, "rsa", root=root))
    first = [kb.ok({"op": "datakey", "key": "rsa"}) for _ in range(20)]
    old_fp = blob_fields(first[0]["blob"])["fp"]
    with open(kb.conf) as f:
        conf = f.read()
    # without previous: the old blobs are unknown_version, naming the fingerprint and the fix
    reload(kb, conf.replace("url = %s\n" % old_url, "url = %s\n" % new_url))
    kb.ok({"op": "flush"})
    e = kb.err({"op": "unwrap", "blob": first[0]["blob"]}, "unknown_version")
    check(old_fp in e["error"]["message"] and "previous" in e["error"]["message"], e["error"]["message"])
    # with previous: they unwrap at the old vault, and new blobs are wrapped in the new one
    reload(kb, conf.replace("url = %s\n" % old_url, "url = %s\nprevious = %s\n" % (new_url, old_url)))
    kb.ok({"op": "flush"})
    for r in first:
        check(kb.ok({"op": "unwrap", "blob": r["blob"]})["plaintext"] == r["plaintext"], "an old blob unwraps")
    new_fp = blob_fields(kb.ok({"op": "datakey", "key": "rsa"})["blob"])["fp"]
    check(new_fp != old_fp, "new blobs are under the new vault's key")
    # a bulk rewrap moves every blob; then the old key is disabled and nothing breaks
    src, out = os.path.join(root, "blobs.txt"), os.path.join(root, "moved.txt")
    with open(src, "w") as f:
        f.write("".join(r["blob"] + "\n" for r in first))
    kb.cli("rewrap", "--in", src, "--out", out, check_rc=0)
    with open(out) as f:
        moved = [l.strip() for l in f if l.strip()]
    check(len(moved) == 20 and all(blob_fields(m)["fp"] == new_fp for m in moved), "every line is at the new vault")
    emu.admin("/admin/keys/disable", {"vault": "kv", "key": "rsa"})
    kb.ok({"op": "flush"})
    for m, r in zip(moved, first):
        check(kb.ok({"op": "unwrap", "blob": m})["plaintext"] == r["plaintext"], "a moved blob keeps its DEK")
    locs = [k for k in kb.status()["keys"] if k["name"] == "rsa"][0]["locations"]
    check(locs[1]["location"] == old_url and locs[1]["unwraps"] >= 20, "status counts the old vault's unwraps: %r" % locs)


if __name__ == "__main__":
    azfix.run({
        "moved_to_another_vault_keeps_unwrapping_with_previous": moved_to_another_vault_keeps_unwrapping_with_previous,
    })
