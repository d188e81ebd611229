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


TTL, GRACE = 2.0, 4.0


def grace_broker(root, emu, extra=""):
    audit = os.path.join(root, "audit.jsonl")
    keys = (key_section(emu, "rsa", root=root, timeout="1s", max_retries=1) +
            key_section(emu, "nograce", root=root, timeout="1s", max_retries=1, extra="outage_grace = 0"))
    kb = broker(root, keys, broker_extra="cache_ttl = %ds\noutage_grace = %ds\naudit_log = %s\n%s" %
                (TTL, GRACE, audit, extra))
    return kb, audit


def timeline(kb, blob, limit):
    """Unwraps blob every 50 ms from now until it fails or limit passes: the
    times (from now) of the first stale answer and of the first failure."""
    t0, first_stale, fail = time.time(), None, None
    while time.time() - t0 < limit:
        r = kb.call({"op": "unwrap", "blob": blob})
        t = time.time() - t0
        if not r["ok"]:
            fail = (t, r["error"]["code"])
            break
        check(unb64(r["plaintext"]) == DEK and r["cached"], "every answer before the failure is the cached DEK: %s" % r)
        if r.get("stale") and first_stale is None:
            first_stale = t
        check(r.get("stale") or first_stale is None, "once stale, stale until the end: %s" % r)
        time.sleep(0.05)
    return first_stale, fail


def outage_grace_serves_stale_through_an_outage(root):
    emu = Emu(root, state=True)  # its keys survive the restart below
    kb, audit = grace_broker(root, emu)
    blob, other = wrap(kb, "rsa")["blob"], wrap(kb, "nograce")["blob"]
    kb.ok({"op": "flush"})
    before = time.time()
    check(not kb.ok({"op": "unwrap", "blob": blob}).get("stale"), "cached fresh")
    after = time.time()
    kb.ok({"op": "unwrap", "blob": other})
    # every request to the vault fails with 503 from now on: the service cannot answer
    emu.admin("/admin/faults", {"error503_rate": 1.0})
    t0 = time.time()
    stale_at, fail = timeline(kb, blob, TTL + GRACE + 5)
    check(stale_at is not None and fail is not None, "stale, then a failure: %s %s" % (stale_at, fail))
    # times from the moment the DEK was cached, somewhere between before and after
    stale_at, failed_at = t0 + stale_at, t0 + fail[0]
    print("outage (503): TTL %gs, outage_grace %gs: first stale answer %.2fs after the DEK was cached, failure (%s) at %.2fs"
          % (TTL, GRACE, stale_at - after, fail[1], failed_at - after))
    check(stale_at - before >= TTL and stale_at - after <= TTL + 1.5,
          "stale from the TTL on: %.2fs after the DEK was cached" % (stale_at - after))
    check(fail[1] == "backend_unavailable" and failed_at - before >= TTL + GRACE and failed_at - after <= TTL + GRACE + 1.5,
          "backend_unavailable once the grace is over: %s at %.2fs" % (fail[1], failed_at - after))
    e = kb.err({"op": "unwrap", "blob": other}, "backend_unavailable")
    check("503" in e["error"]["message"], "outage_grace = 0 on a key: it fails at the TTL: %s" % e["error"])
    st = kb.ok({"op": "status"})
    m = kb.ok({"op": "metrics"})["text"]
    n = [ln for ln in m.splitlines() if ln.startswith("keybroker_cache_stale_answers_total ")]
    check(n and float(n[0].split()[1]) >= 5 and st["counters"]["stale_answers"] == int(float(n[0].split()[1])),
          "status and metrics count the stale answers: %s %s" % (n, st["counters"]))
    with open(audit) as f:
        rec = [json.loads(ln) for ln in f if '"stale"' in ln]
    check(rec and all(r["cache"] == "stale" and r["result"] == "ok" for r in rec) and "plaintext" not in json.dumps(rec),
          "the audit log records each stale answer: %s" % rec[:1])
    # the service comes back: a refresh in the background takes over from the stale entry
    emu.admin("/admin/faults", method="DELETE")
    check(unb64(kb.ok({"op": "unwrap", "blob": blob})["plaintext"]) == DEK, "the service answers again")
    # connection refused: the emulator is stopped; the entry serves stale, then the restart refreshes it
    emu.stop()
    stale_at, fail = timeline(kb, blob, TTL + 1.0)
    check(stale_at is not None and fail is None, "refused connections: stale after the TTL (%s, %s)" % (stale_at, fail))
    emu.start()
    end = time.time() + 5
    while time.time() < end:
        r = kb.ok({"op": "unwrap", "blob": blob})
        if not r.get("stale"):
            break
        time.sleep(0.1)
    check(not r.get("stale") and r["cached"], "a background refresh renewed the entry once the service was back: %s" % r)


def ends_at_the_ttl(kb, blob, revoke, code, what):
    """Caches blob's DEK, revokes the key with revoke(), and unwraps until the first failure:
    it must come with code (None: any refusal, not an outage), never after a stale answer,
    no sooner than the TTL after the DEK was cached and at most 1.5 s past it (a loaded machine
    still answers a 50 ms poll and one refusal by then)."""
    kb.ok({"op": "flush"})
    before = time.time()
    check(kb.ok({"op": "unwrap", "blob": blob})["cached"] is False, "%s: the DEK is cached afresh" % what)
    after = time.time()
    revoke()
    t0 = time.time()
    stale_at, fail = timeline(kb, blob, TTL + 3)
    check(stale_at is None and fail is not None, "%s: a refusal by TTL + 3 s, never stale: %s %s" % (what, stale_at, fail))
    check((code is None or fail[1] == code) and fail[1] not in ("backend_unavailable", "throttled"),
          "%s: the refusal names it: %s" % (what, fail))
    ended = t0 + fail[0]
    check(ended - before >= TTL and ended - after <= TTL + 1.5,
          "%s: the DEK ends at the TTL (%gs): %.2fs after it was cached" % (what, TTL, ended - after))
    print("%s: %s %.2fs after the DEK was cached (TTL %gs), no stale answer" % (what, fail[1], ended - after, TTL))


def outage_grace_never_extends_a_revocation(root):
    emu = Emu(root)
    kb, _ = grace_broker(root, emu)
    blobs = [wrap(kb, "rsa")["blob"] for _ in range(3)]  # RSA-OAEP: three different blobs
    # disabled: a definite answer at the TTL ends the DEK, no stale answer
    ends_at_the_ttl(kb, blobs[0], lambda: emu.admin("/admin/keys/disable", {"vault": "kv", "key": "rsa"}),
                    "key_disabled", "disabled")
    emu.admin("/admin/keys/enable", {"vault": "kv", "key": "rsa"})
    # an outage first (stale answers), then the key is disabled: the refresh's answer ends it at once
    kb.ok({"op": "flush"})
    kb.ok({"op": "unwrap", "blob": blobs[1]})
    emu.admin("/admin/faults", {"error503_rate": 1.0})
    end = time.time() + TTL + 2
    while time.time() < end and not kb.ok({"op": "unwrap", "blob": blobs[1]}).get("stale"):
        time.sleep(0.05)
    check(kb.ok({"op": "unwrap", "blob": blobs[1]}).get("stale"), "stale during the outage")
    emu.admin("/admin/keys/disable", {"vault": "kv", "key": "rsa"})
    emu.admin("/admin/faults", method="DELETE")
    # a refresh still out when the faults ended may answer stale once more; the next one's
    # key_disabled ends the DEK at once, well inside the grace
    codes, t0 = [], time.time()
    end = time.time() + 3
    while time.time() < end:
        r = kb.call({"op": "unwrap", "blob": blobs[1]})
        codes.append("stale" if r["ok"] else r["error"]["code"])
        if not r["ok"]:
            break
        time.sleep(0.05)
    took = time.time() - t0
    check(codes[-1] == "key_disabled" and took < 2.5 and GRACE > 2.5,
          "within the grace, the service's key_disabled ends the DEK (%.2fs): %s" % (took, codes))
    print("stale during an outage, then disabled: key_disabled %.2fs after the faults ended (%d stale answers meanwhile)"
          % (took, codes.count("stale")))
    check(kb.call({"op": "unwrap", "blob": blobs[1]})["error"]["code"] == "key_disabled", "and stays ended")
    emu.admin("/admin/keys/enable", {"vault": "kv", "key": "rsa"})
    # unwrapKey revoked (403) and the key deleted (404 after soft delete): the same
    ends_at_the_ttl(kb, blobs[2], lambda: emu.admin("/admin/permissions/revoke", {
        "principal": "kb-app", "vault": "kv", "permissions": ["unwrapKey"]}), "permission_denied", "unwrapKey revoked")
    emu.admin("/admin/permissions/grant", {"principal": "kb-app", "vault": "kv", "permissions": ["unwrapKey"]})
    ends_at_the_ttl(kb, blobs[2], lambda: emu.admin("/admin/keys/delete", {"vault": "kv", "key": "rsa"}),
                    None, "deleted")

if __name__ == "__main__":
    run(globals())
