#!/usr/bin/env python3
"""Rotation to an entirely new key (issue 26) against a real keybrokerd on a
SoftHSM token: every new blob carries the fingerprint of the key version that
wrapped it (format kb2), and a blob whose key moved is refused as such
(unknown_version, naming the fingerprint and the fix), never as bad_blob."""
import hashlib
import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kbtest  # noqa: E402
from kbtest import Broker, Token, b64, blob_fields, check, make_blob, wait_for  # noqa: E402


def fingerprint(material):
    """16 hex digits of SHA-256, as keyprint.h and the KMS face's key_id make them."""
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def reload(b, conf_text):
    """Writes conf_text and sends SIGHUP; waits until the daemon logged that it reloaded."""
    kbtest.write_atomic(b.conf, conf_text)
    n = b.log_text().count("SIGHUP: reloaded")
    b.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: b.log_text().count("SIGHUP: reloaded") > n or None, 60, "the reload")


def new_blobs_carry_the_wrapping_key_fingerprint(root):
    kb = Broker(root, Token(root))
    pem = kb.ok({"op": "get", "key": "rsa"})["public_key_pem"]
    rsa = blob_fields(kb.ok({"op": "wrap", "key": "rsa", "plaintext": b64(b"r" * 32)})["blob"])
    check(rsa["fp"] == fingerprint(pem), "an RSA blob's fingerprint is its public key's: %r" % rsa)
    aes1 = blob_fields(kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(b"a" * 32)})["blob"])
    aes2 = blob_fields(kb.ok({"op": "datakey", "key": "aes"})["blob"])
    check(aes1["fp"] and len(aes1["fp"]) == 16 and aes1["fp"] == aes2["fp"] and aes1["fp"] != rsa["fp"],
          "every AES blob of one version has that version's fingerprint: %r %r" % (aes1, aes2))
    # the same version name, another fingerprint: the key that wrapped it is not this one
    other = "0123456789abcdef"
    blob = make_blob("rsa", "01", rsa["alg"], rsa["ct"], other)
    e = kb.err({"op": "unwrap", "blob": blob}, "unknown_version")
    check(other in e["error"]["message"] and rsa["fp"] in e["error"]["message"] and "previous" in e["error"]["message"],
          "the refusal names both fingerprints and the fix: %s" % e["error"]["message"])


def moved_key_without_previous_is_unknown_version(root):
    """The issue's reproduction: a new RSA key with the same CKA_ID, the section moved to it, SIGHUP."""
    token = Token(root)
    kb = Broker(root, token)
    first = kb.ok({"op": "datakey", "key": "rsa"})["blob"]
    old_fp = blob_fields(first)["fp"]
    token.tool("--keypairgen", "--key-type", "rsa:2048", "--label", "rsa-new", "--id", "01")
    with open(kb.conf) as f:
        conf = f.read()
    check("object=rsa-kek" in conf, "the config names rsa-kek")
    reload(kb, conf.replace("object=rsa-kek", "object=rsa-new"))
    kb.ok({"op": "flush"})  # the first DEK is no longer cached: its blob goes to the key service
    e = kb.err({"op": "unwrap", "blob": first}, "unknown_version")
    check(old_fp in e["error"]["message"] and "previous" in e["error"]["message"] and "[key:rsa]" in e["error"]["message"],
          "the refusal names the blob's fingerprint and the fix: %s" % e["error"]["message"])
    # a new blob is under the new key, with another fingerprint, and unwraps
    second = kb.ok({"op": "datakey", "key": "rsa"})
    f2 = blob_fields(second["blob"])
    check(f2["version"] == "01" and f2["fp"] != old_fp, "the new key's blob has its own fingerprint: %r" % f2)
    check(kb.ok({"op": "unwrap", "blob": second["blob"]})["plaintext"] == second["plaintext"],
          "the new key's blob unwraps")


def move_rsa(kb, token, previous=True):
    """Makes rsa-new (same CKA_ID 01) and moves [key:rsa] to it, naming rsa-kek in previous."""
    token.tool("--keypairgen", "--key-type", "rsa:2048", "--label", "rsa-new", "--id", "01")
    with open(kb.conf) as f:
        conf = f.read()
    old = "uri = pkcs11:token=%s;object=rsa-kek\n" % token.label
    check(old in conf, "the config names rsa-kek")
    new = "uri = pkcs11:token=%s;object=rsa-new\n" % token.label
    if previous:
        new += "previous = pkcs11:token=%s;object=rsa-kek\n" % token.label
    reload(kb, conf.replace(old, new))
    kb.ok({"op": "flush"})  # cached DEKs are gone: every blob goes to the key service


def moved_key_with_previous_keeps_unwrapping_and_rewraps(root):
    token = Token(root)
    kb = Broker(root, token)
    first = kb.ok({"op": "datakey", "key": "rsa"})
    old_fp = blob_fields(first["blob"])["fp"]
    move_rsa(kb, token)
    u = kb.ok({"op": "unwrap", "blob": first["blob"]})
    check(u["plaintext"] == first["plaintext"], "the first blob unwraps at its previous location")
    locs = [k for k in kb.status()["keys"] if k["name"] == "rsa"][0]["locations"]
    check(len(locs) == 2 and locs[0]["location"] == "current" and locs[0]["unwraps"] == 0 and
          locs[1]["location"] == "pkcs11:token=%s;object=rsa-kek" % token.label and locs[1]["unwraps"] == 1,
          "status counts the unwrap at the previous location: %r" % locs)
    text = kb.ok({"op": "metrics"})["text"]
    check('keybroker_location_unwraps_total{key="rsa",location="previous1"} 1' in text,
          "metrics count it too: %s" % [l for l in text.splitlines() if "location_unwraps" in l])
    new = kb.ok({"op": "datakey", "key": "rsa"})
    new_fp = blob_fields(new["blob"])["fp"]
    check(new_fp != old_fp, "new blobs are under the new key")
    moved = kb.ok({"op": "rewrap", "blob": first["blob"]})["blob"]
    check(blob_fields(moved)["fp"] == new_fp, "rewrap moves the blob to the current location: %s" % moved[:40])
    kb.ok({"op": "flush"})
    check(kb.ok({"op": "unwrap", "blob": moved})["plaintext"] == first["plaintext"], "the moved blob has the same DEK")
    # a blob under neither location is still refused as such
    other = make_blob("rsa", "01", "RSA-OAEP", blob_fields(first["blob"])["ct"], "0123456789abcdef")
    e = kb.err({"op": "unwrap", "blob": other}, "unknown_version")
    check("1 previous" in e["error"]["message"], "the refusal counts the previous locations: %s" % e["error"]["message"])


def bulk_rewrap_of_1000_blobs_across_a_move(root):
    token = Token(root)
    kb = Broker(root, token)
    lines, deks = [], []
    for i in range(1000):
        r = kb.ok({"op": "datakey", "key": "rsa"})
        lines.append(r["blob"])
        deks.append(r["plaintext"])
    move_rsa(kb, token)
    new_fp = blob_fields(kb.ok({"op": "datakey", "key": "rsa"})["blob"])["fp"]
    src, out = os.path.join(root, "blobs.txt"), os.path.join(root, "moved.txt")
    with open(src, "w") as f:
        f.write("\n".join(lines) + "\n")
    kb.cli("rewrap", "--in", src, "--out", out, check_rc=0)
    with open(out) as f:
        moved = [l.strip() for l in f if l.strip()]
    check(len(moved) == 1000, "every line is written: %d" % len(moved))
    check(all(blob_fields(m)["fp"] == new_fp for m in moved), "every line is at the new location")
    kb.ok({"op": "flush"})
    got = kb.ok({"op": "unwrap", "blobs": moved})
    items = got["results"]
    check(items is not None and len(items) == 1000, "a batch answer for every line: %s" % str(got)[:200])
    check(all(it.get("plaintext") == d for it, d in zip(items, deks)), "every DEK is unchanged")


def second_token(token, label):
    """Initializes the next free slot of token's SoftHSM as another token, with the same PINs."""
    env = token.env()
    with open(os.path.join(token.dir, "so.pin")) as f:
        env["KB_TEST_SO"] = f.read().strip()
    env["KB_TEST_PIN"] = token.pin
    base = ["pkcs11-tool", "--module", kbtest.MODULE]
    for args in (["--slot-index", "1", "--init-token", "--label", label, "--so-pin", "env:KB_TEST_SO"],
                 ["--token-label", label, "--login", "--login-type", "so", "--so-pin", "env:KB_TEST_SO",
                  "--init-pin", "--new-pin", "env:KB_TEST_PIN"],
                 ["--token-label", label, "--login", "--pin", "env:KB_TEST_PIN", "--keypairgen",
                  "--key-type", "rsa:2048", "--label", "rsa-kek", "--id", "01"]):
        p = subprocess.run(base + args, env=env, capture_output=True)
        check(p.returncode == 0, "pkcs11-tool %s: %s" % (args[0], p.stderr.decode()))


def moved_to_another_token_keeps_unwrapping_with_previous(root):
    token = Token(root)
    second_token(token, "kbtest2")  # before the daemon loads the module, which lists tokens once
    kb = Broker(root, token)
    first = kb.ok({"op": "datakey", "key": "rsa"})
    with open(kb.conf) as f:
        conf = f.read()
    old = "uri = pkcs11:token=kbtest;object=rsa-kek\n"
    reload(kb, conf.replace(old, "uri = pkcs11:token=kbtest2;object=rsa-kek\n"
                                 "previous = pkcs11:token=kbtest;object=rsa-kek\n"))
    kb.ok({"op": "flush"})
    check(kb.ok({"op": "unwrap", "blob": first["blob"]})["plaintext"] == first["plaintext"],
          "a blob of the old token unwraps there, though the new token has the same label and CKA_ID")
    moved = kb.ok({"op": "rewrap", "blob": first["blob"]})["blob"]
    check(blob_fields(moved)["fp"] != blob_fields(first["blob"])["fp"], "rewrap moves it to the new token")
    kb.ok({"op": "flush"})
    check(kb.ok({"op": "unwrap", "blob": moved})["plaintext"] == first["plaintext"], "with its DEK")


if __name__ == "__main__":
    kbtest.run({
        "new_blobs_carry_the_wrapping_key_fingerprint": new_blobs_carry_the_wrapping_key_fingerprint,
        "moved_key_without_previous_is_unknown_version": moved_key_without_previous_is_unknown_version,
        "moved_key_with_previous_keeps_unwrapping_and_rewraps": moved_key_with_previous_keeps_unwrapping_and_rewraps,
        "bulk_rewrap_of_1000_blobs_across_a_move": bulk_rewrap_of_1000_blobs_across_a_move,
        "moved_to_another_token_keeps_unwrapping_with_previous": moved_to_another_token_keeps_unwrapping_with_previous,
    })
