#!/usr/bin/env python3
"""The CMK operations of a managed service through the real keybrokerd against
the real akv-emulator: the key triplet, the same-tenant rule, the 24-hour rule
after a rotation, bulk rewrap and outage grace."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from azfix import TENANT, Emu, b64, broker, check, key_section, run, unb64  # noqa: E402

DEK = bytes(range(32))


def wrap(kb, key, pt=DEK):
    return kb.ok({"op": "wrap", "key": key, "plaintext": b64(pt)})


def wait_for(what, fn, limit):
    end = time.time() + limit
    while time.time() < end:
        if fn():
            return
        time.sleep(0.1)
    raise AssertionError("not within %.1fs: %s" % (limit, what))


def write_token(path, token):
    with open(path + ".tmp", "w") as f:
        f.write(token + "\n")
    os.rename(path + ".tmp", path)


def doctor(kb, key, rc):
    p = kb.cli("--json", "doctor", key, check_rc=rc)
    return {c["check"]: c for c in json.loads(p.stdout)["checks"]}


def triplet_section(emu, name, version=None, root=None):
    """key_section with url replaced by key_vault_uri, key_name and key_version."""
    s = key_section(emu, name, root=root)
    trip = "key_vault_uri = https://%s/\nkey_name = rsa\n" % emu.host()
    if version is not None:
        trip += "key_version = %s\n" % version
    return s.replace("url = %s\n" % emu.url(), trip)


def key_triplet_round_trips_and_pins(root):
    emu = Emu(root)
    first = emu.rest("GET", "vault", "/keys/rsa")["key"]["kid"].rsplit("/", 1)[1]
    kb = broker(root, triplet_section(emu, "latest", root=root) + triplet_section(emu, "pinned", first, root))
    new = emu.rest("POST", "vault", "/keys/rsa/rotate")["key"]["kid"].rsplit("/", 1)[1]
    kb.ok({"op": "flush"})
    p = wrap(kb, "pinned")
    check(p["version"] == first, "key_version pins wraps to %s after a rotation: %s" % (first, p["version"]))
    check(unb64(kb.ok({"op": "unwrap", "blob": p["blob"]})["plaintext"]) == DEK, "pinned round trip")
    kb.ok({"op": "rotate", "key": "latest"})
    latest = wrap(kb, "latest")
    check(latest["version"] not in (first, new), "without key_version, the latest version: %s" % latest["version"])
    check(doctor(kb, "pinned", 0)["config"]["status"] == "pass", "doctor passes the triplet")
    kb.stop()
    # both forms at once: refused, saying which to keep
    both = triplet_section(emu, "k", root=root).replace("key_name = rsa\n", "key_name = rsa\nurl = %s\n" % emu.url())
    kb2 = broker(root, both, start=False)
    check(kb2.start(expect_fail=True) != 0, "url and the triplet together stop startup")
    log = kb2.log_text().split("SIGTERM")[-1]
    check("keep url, or keep the three key_* options and remove url" in log and "[key:k]" in log,
          "the error says which to keep:\n" + log)


def doctor_fails_vault_in_another_tenant(root):
    emu = Emu(root)
    tok = os.path.join(root, "vault.token")
    write_token(tok, emu.token("vault"))
    other = key_section(emu, "other", auth="token_file", extra="token_file = %s\ntenant_id = contoso-tenant" % tok)
    same = key_section(emu, "same", auth="token_file", extra="token_file = %s\ntenant_id = %s" % (tok, TENANT))
    kb = broker(root, other + same)
    log = kb.log_text()
    check("error: azure key other" in log and "is in tenant %s" % TENANT in log and "configured for tenant contoso-tenant" in log,
          "startup logs the mismatch as an error, naming both tenants:\n" + log)
    check("configured for tenant %s" % TENANT not in log, "no error for the key in the vault's tenant:\n" + log)
    t = doctor(kb, "other", 1)["tenant"]
    check(t["status"] == "fail" and TENANT in t["detail"] and "contoso-tenant" in t["detail"] and
          "same Entra ID tenant" in t["detail"] and "token in %s" % tok in t["detail"] and t["fix"],
          "doctor fails, naming both tenants and where the token comes from: %s" % t)
    t = doctor(kb, "same", 0)["tenant"]
    check(t["status"] == "pass" and TENANT in t["detail"], "doctor passes the same tenant: %s" % t)
    kb.stop()
    # client_secret from AZURE_TENANT_ID: the token is asked of that tenant, and the log says so
    sec = key_section(emu, "sec", root=root, ids=False) + "client_id = kb-app\n"
    kb2 = broker(root, sec, env={"AZURE_TENANT_ID": "contoso-tenant"}, start=False)
    check(kb2.start(expect_fail=True) != 0, "a token from another tenant stops startup")
    log = kb2.log_text().split("SIGTERM")[-1]
    check("is in tenant %s" % TENANT in log and "contoso-tenant (AZURE_TENANT_ID)" in log,
          "the startup error names the vault's tenant, the configured one and its source:\n" + log)


def version_of(bundle):
    return bundle["key"]["kid"].rsplit("/", 1)[1]


def doctor_fails_rotation_that_breaks_the_24_hour_rule(root):
    emu = Emu(root)
    old = version_of(emu.rest("GET", "vault", "/keys/rsa"))
    kb = broker(root, key_section(emu, "rsa", root=root))
    check("24-hour rule" not in doctor(kb, "rsa", 0), "one version: nothing was superseded")
    new = version_of(emu.rest("POST", "vault", "/keys/rsa/rotate"))
    r = doctor(kb, "rsa", 0)["24-hour rule"]
    check(r["status"] == "pass" and old in r["detail"] and new in r["detail"], "old version kept: pass: %s" % r)
    emu.admin("/admin/keys/disable", {"vault": "kv", "key": "rsa", "version": old})
    r = doctor(kb, "rsa", 1)["24-hour rule"]
    check(r["status"] == "fail" and old in r["detail"] and "disabled" in r["detail"] and " min ago" in r["detail"]
          and "less than 24 hours" in r["detail"] and "--enabled true" in r["fix"],
          "disabling the superseded version within 24 h fails, naming it and the age: %s" % r)
    emu.admin("/admin/keys/enable", {"vault": "kv", "key": "rsa", "version": old})
    emu.rest("PATCH", "vault", "/keys/rsa/%s" % old, {"key_ops": ["wrapKey"]})
    r = doctor(kb, "rsa", 1)["24-hour rule"]
    check(r["status"] == "fail" and old in r["detail"] and "lack unwrapKey" in r["detail"],
          "a superseded version without unwrapKey fails: %s" % r)


def bulk_rewrap_under_throttle_has_no_failures(root):
    """The vault admits 100 operations a second and the broker gives up on a
    throttled unwrap after one retry: the bulk rewrap sends those lines again
    with backoff, and ends with every line moved and none failed."""
    emu = Emu(root)
    kb = broker(root, key_section(emu, "rsa", root=root, max_retries=1), broker_extra="cache_ttl = 1s")
    lines, deks = [], []
    for _ in range(600):
        r = kb.ok({"op": "datakey", "key": "rsa"})
        lines.append(r["blob"])
        deks.append(r["plaintext"])
    new = version_of(emu.rest("POST", "vault", "/keys/rsa/rotate"))
    wait_for("the rotation reaches new wraps (version_refresh)", lambda: wrap(kb, "rsa")["version"] == new, 5)
    kb.ok({"op": "flush"})
    src, out = os.path.join(root, "blobs.txt"), os.path.join(root, "blobs.new")
    with open(src, "w") as f:
        f.write("\n".join(lines) + "\n")
    emu.admin("/admin/throttle", {"vault": "kv", "limit": 100, "window_ms": 1000, "retry_after": "none"})
    p = kb.cli("rewrap", "--in", src, "--out", out, "--concurrency", "8", "--to-version", new)
    err = p.stderr.decode()
    check(p.returncode == 0 and "600 rewrapped" in err and "0 of 600 lines failed" in err,
          "every line moved, none failed (rc %d):\n%s" % (p.returncode, err[-2000:]))
    check(emu.count(r"unwrapkey 429") > 0, "the vault did throttle the run")
    emu.admin("/admin/throttle", {"vault": "kv", "limit": 0})
    with open(out) as f:
        moved = f.read().splitlines()
    kb.ok({"op": "flush"})
    for i in range(0, 600, 37):
        r = kb.ok({"op": "unwrap", "blob": moved[i]})
        check(r["version"] == new and r["plaintext"] == deks[i], "line %d moved to %s with its DEK" % (i + 1, new))


if __name__ == "__main__":
    run(globals())
