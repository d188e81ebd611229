#!/usr/bin/env python3
"""The Azure backend through the real keybrokerd against the real akv-emulator
over verified TLS: round trips, rotation, revocation, auth, faults, doctor."""
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from azfix import (ASSERTION, CLIENT, IDENTITY_HEADER, TENANT, Emu, b64, broker, check,  # noqa: E402
                   key_section, run, secret_file, unb64)
from kbtest import blob_fields  # noqa: E402

DEK = bytes(range(32))


def wrap(kb, key, pt=DEK, **kw):
    req = {"op": "wrap", "key": key, "plaintext": b64(pt)}
    req.update(kw)
    return kb.ok(req)


def unwrap_cold(kb, blob):
    """An unwrap that reaches the service: the cache is flushed first."""
    kb.ok({"op": "flush"})
    r = kb.ok({"op": "unwrap", "blob": blob})
    check(r["cached"] is False, "the unwrap reached the service")
    return unb64(r["plaintext"])


def wait_for(what, fn, limit):
    end = time.time() + limit
    while time.time() < end:
        r = fn()
        if r:
            return r
        time.sleep(0.1)
    raise AssertionError("not within %.1fs: %s" % (limit, what))


def round_trips(kb, key, alg, sizes=(16, 32, 64)):
    for n in sizes:
        pt = os.urandom(n)
        w = wrap(kb, key, pt)
        f = blob_fields(w["blob"])
        check(f["alg"] == alg and len(w["version"]) == 32, "%s wraps with %s: %s" % (key, alg, f))
        check(unwrap_cold(kb, w["blob"]) == pt, "%s: %d bytes round trip" % (key, n))
    d = kb.ok({"op": "datakey", "key": key, "bits": 256})
    check(unwrap_cold(kb, d["blob"]) == unb64(d["plaintext"]), "%s: datakey blob unwraps to its DEK" % key)
    r = kb.ok({"op": "rewrap", "blob": d["blob"]})
    check(unwrap_cold(kb, r["blob"]) == unb64(d["plaintext"]), "%s: rewrapped blob unwraps" % key)


def vault_rsa_round_trips(root):
    emu = Emu(root)
    kb = broker(root, key_section(emu, "oaep256", root=root) +
                key_section(emu, "oaep", root=root, extra="alg = RSA-OAEP") +
                key_section(emu, "remote", root=root, extra="local_wrap = no"))
    before = emu.count(r"/wrapkey ")
    round_trips(kb, "oaep256", "RSA-OAEP-256")
    round_trips(kb, "oaep", "RSA-OAEP")
    check(emu.count(r"/wrapkey ") == before, "RSA wraps are local: no wrapkey call reached the emulator")
    round_trips(kb, "remote", "RSA-OAEP-256", sizes=(32,))
    check(emu.count(r"/wrapkey 200") > before, "local_wrap = no sends wraps to the service")
    x = kb.ok({"op": "rewrap", "blob": wrap(kb, "oaep")["blob"], "key": "oaep256"})
    check(blob_fields(x["blob"])["alg"] == "RSA-OAEP-256" and unwrap_cold(kb, x["blob"]) == DEK, "cross-key rewrap")
    g = kb.ok({"op": "get", "key": "oaep256"})
    check(g["kty"] == "RSA" and g["bits"] == 2048 and "BEGIN PUBLIC KEY" in g["public_key_pem"] and
          "unwrapKey" in g["key_ops"] and g["latest"] == g["versions"][-1]["version"], "get: %s" % g)
    r = kb.err({"op": "wrap", "key": "oaep256", "plaintext": b64(os.urandom(191))}, "bad_request")
    check("190" in r["error"]["message"], "the message gives the maximum: %s" % r["error"])
    kb.err({"op": "wrap", "key": "oaep256", "alg": "A256KW", "plaintext": b64(DEK)}, "mechanism_unsupported")


def mhsm_aes_round_trips(root):
    emu = Emu(root)
    kb = broker(root, key_section(emu, "a256kw", kind="mhsm", root=root, extra="alg = A256KW") +
                key_section(emu, "kwp", kind="mhsm", root=root, extra="alg = CKM_AES_KEY_WRAP_PAD"))
    round_trips(kb, "a256kw", "A256KW", sizes=(16, 32, 64))
    round_trips(kb, "kwp", "AES-KWP", sizes=(1, 20, 32, 100))
    r = kb.err({"op": "wrap", "key": "a256kw", "plaintext": b64(os.urandom(20))}, "bad_request")
    check("CKM_AES_KEY_WRAP_PAD" in r["error"]["message"], "A256KW names the padded alternative: %s" % r["error"])
    g = kb.ok({"op": "get", "key": "kwp"})
    check(g["kty"] == "oct-HSM" and g["bits"] == 256 and "Managed HSM" in g["detail"], "get: %s" % g)
    check(emu.count(r"hsm.managedhsm.localhost:\d+/keys/aes/wrapkey 200") >= 8, "AES wraps go to the service")


def config_refusals(root):
    emu = Emu(root)
    cases = [
        (key_section(emu, "k", root=root, extra="alg = A256KW"), "Managed HSM"),
        (key_section(emu, "k", root=root, extra="colour = blue"), "colour"),
        (key_section(emu, "k", root=root, extra="service = table"), "vault or managedhsm"),
        (key_section(emu, "k", root=root, extra="timeout = soon"), "timeout"),
        (key_section(emu, "k", auth="client_secret", root=None), "AZURE_CLIENT_SECRET"),
        (key_section(emu, "k", auth="token_file"), "token_file"),
        (key_section(emu, "k", auth="workload_identity"), "AZURE_FEDERATED_TOKEN_FILE"),
        (key_section(emu, "k", key="nope", root=root), "unknown_key|has no key nope"),
        (key_section(emu, "k", root=root, extra="ca_file = %s" % os.path.join(root, "no-such-ca.pem"))
         .replace("ca_file = %s\n" % emu.ca, ""), "cannot read"),
        (key_section(emu, "k", root=root, extra="alg = CKM_AES_KEY_WRAP_PAD"), "alg: CKM_AES_KEY_WRAP_PAD needs"),
    ]
    for keys, want in cases:
        kb = broker(root, keys, start=False)
        rc = kb.start(expect_fail=True)
        log = kb.log_text()
        check(rc != 0 and any(w in log for w in want.split("|")), "refused with %r: rc %s\n%s" % (want, rc, log))
        check(all(ln.count("keybrokerd.conf:") <= 1 for ln in log.splitlines()), "the location once:\n" + log)
        os.unlink(kb.log)
    # a vault whose certificate is not trusted is an outage the daemon names, not a refusal (issue 25)
    kb = broker(root, key_section(emu, "k", root=root).replace("ca_file = %s\n" % emu.ca, ""))
    k = kb.status()["keys"][0]
    check(k["available"] is False and "set ca_file to that CA's PEM file" in k["unavailable"], "named: %s" % k)
    kb.stop()


def rotation_picked_up_within_version_refresh(root):
    emu = Emu(root)
    kb = broker(root, key_section(emu, "rsa", root=root) + key_section(emu, "aes", kind="mhsm", root=root))
    for key, kind in (("rsa", "vault"), ("aes", "mhsm")):
        old = wrap(kb, key)
        new_version = emu.rest("POST", kind, "/keys/%s/rotate" % key)["key"]["kid"].rsplit("/", 1)[1]
        t0 = time.time()
        w = wait_for("new wraps use the rotated version",
                     lambda: (lambda w: w if w["version"] == new_version else None)(wrap(kb, key)), 3)
        check(time.time() - t0 < 2.5, "picked up within version_refresh (1s)")
        check(unwrap_cold(kb, old["blob"]) == DEK and unwrap_cold(kb, w["blob"]) == DEK, "old and new blobs unwrap")
        r = kb.ok({"op": "rotate", "key": key})
        check(wrap(kb, key)["version"] == r["version"], "a rotate through the broker applies at once")
        g = kb.ok({"op": "get", "key": key})
        check([v["version"] for v in g["versions"]][-2:] == [new_version, r["version"]] and len(g["versions"]) == 3,
              "get lists the versions oldest first: %s" % g["versions"])
        check(unwrap_cold(kb, old["blob"]) == DEK, "the first version still unwraps")


def revocation_disable_key_at_cache_ttl(root):
    emu = Emu(root)
    kb = broker(root, key_section(emu, "rsa", root=root), broker_extra="cache_ttl = 2s")
    blob = wrap(kb, "rsa")["blob"]
    check(unwrap_cold(kb, blob) == DEK, "cold unwrap")
    t0 = time.time()
    emu.admin("/admin/keys/disable", {"vault": "kv", "key": "rsa"})
    r = kb.ok({"op": "unwrap", "blob": blob})
    check(r["cached"] is True, "cached unwraps still succeed after the disable")
    e = wait_for("unwraps fail at the TTL", lambda: (lambda r: r if not r["ok"] else None)(
        kb.call({"op": "unwrap", "blob": blob})), 4)
    check(time.time() - t0 > 1.0, "not before the TTL")
    check(e["error"]["code"] == "key_disabled" and "rsa" in e["error"]["message"] and
          "request id" in e["error"]["message"], "key_disabled naming the key: %s" % e["error"])
    kb.err({"op": "wrap", "key": "rsa", "plaintext": b64(DEK)}, "key_disabled")
    emu.admin("/admin/keys/enable", {"vault": "kv", "key": "rsa"})
    check(unb64(kb.ok({"op": "unwrap", "blob": blob})["plaintext"]) == DEK, "re-enabled: unwraps succeed again")
    wait_for("wraps succeed again", lambda: kb.call({"op": "wrap", "key": "rsa", "plaintext": b64(DEK)})["ok"], 3)


def disabled_current_version_is_never_wrapped_after_first_sign(root):
    """The service's current version is disabled while an older one stays
    enabled. Key "slow" (version_refresh 60s) keeps its confirmed copy until
    the first sign, an unwrap the service refuses, then refuses wraps at once;
    key "fast" (version_refresh 1s) has no sign and refuses them within 1s.
    Neither ever falls back to the older version: both answer key_disabled,
    as Azure does for the disabled current version."""
    emu = Emu(root)
    slow = key_section(emu, "slow", root=root).replace("version_refresh = 1s", "version_refresh = 60s")
    kb = broker(root, slow + key_section(emu, "fast", root=root), broker_extra="cache_ttl = 1h")
    v1 = wrap(kb, "slow")["version"]
    v2 = kb.ok({"op": "rotate", "key": "slow"})["version"]
    blob = wrap(kb, "slow")["blob"]
    check(blob_fields(blob)["version"] == v2 != v1, "wraps use the new version at once")
    wait_for("fast follows the rotation", lambda: wrap(kb, "fast")["version"] == v2, 3)
    kb.ok({"op": "flush"})
    emu.admin("/admin/keys/disable", {"vault": "kv", "key": "rsa", "version": v2})
    t0 = time.time()
    # the window docs/azure.md describes: before any sign, a copy confirmed less than version_refresh ago
    check(wrap(kb, "slow")["version"] == v2, "slow: within version_refresh and before a sign, its confirmed copy")
    e = kb.err({"op": "unwrap", "blob": blob}, "key_disabled")
    check(v2 in e["error"]["message"], "the unwrap names the disabled version: %s" % e["error"])
    for op in ({"op": "wrap", "key": "slow", "plaintext": b64(DEK)}, {"op": "datakey", "key": "slow", "bits": 256}):
        e = kb.err(op, "key_disabled")
        check("current version" in e["error"]["message"], "after the first sign, %s asks the service: %s" %
              (op["op"], e["error"]))
    versions = []

    def fast_refuses():
        r = kb.call({"op": "wrap", "key": "fast", "plaintext": b64(DEK)})
        if r["ok"]:
            versions.append(r["version"])
            return None
        return r
    e = wait_for("fast refuses wraps within version_refresh", fast_refuses, 3)
    check(time.time() - t0 < 2.0, "within version_refresh (1s) of the disable: %.2fs" % (time.time() - t0))
    check(e["error"]["code"] == "key_disabled", "fast: key_disabled, not a fallback: %s" % e["error"])
    check(set(versions) <= {v2}, "no blob ever named the older version: %s" % versions)
    kb.err({"op": "get", "key": "fast"}, "key_disabled")
    checks = doctor_json(kb, "fast", 1)
    check(checks["key enabled"]["status"] == "fail" and "versions" not in checks,
          "doctor fails the key and says nothing of older versions: %s" % checks)
    emu.admin("/admin/keys/enable", {"vault": "kv", "key": "rsa", "version": v2})
    check(wrap(kb, "slow")["version"] == v2, "re-enabled: slow wraps under it again at once")
    check(unwrap_cold(kb, blob) == DEK, "the blob from before the disable unwraps again")


def revocation_unwrap_permission_at_cache_ttl(root):
    emu = Emu(root)
    kb = broker(root, key_section(emu, "rsa", root=root), broker_extra="cache_ttl = 2s")
    blob = wrap(kb, "rsa")["blob"]
    check(unwrap_cold(kb, blob) == DEK, "cold unwrap")
    emu.admin("/admin/permissions/revoke", {"principal": CLIENT, "vault": "kv", "key": "rsa",
                                            "permissions": ["unwrapKey"]})
    check(kb.ok({"op": "unwrap", "blob": blob})["cached"] is True, "cached unwraps succeed")
    e = wait_for("unwraps fail at the TTL", lambda: (lambda r: r if not r["ok"] else None)(
        kb.call({"op": "unwrap", "blob": blob})), 4)
    m = e["error"]["message"]
    check(e["error"]["code"] == "permission_denied" and "unwrapKey" in m and CLIENT in m and "rsa" in m,
          "permission_denied names the permission, principal and key: %s" % e["error"])
    emu.admin("/admin/permissions/grant", {"principal": CLIENT, "vault": "kv", "key": "rsa",
                                           "permissions": ["unwrapKey"]})
    check(unb64(kb.ok({"op": "unwrap", "blob": blob})["plaintext"]) == DEK, "granted again: unwraps succeed")


def soft_delete_and_recover(root):
    emu = Emu(root)
    kb = broker(root, key_section(emu, "rsa", root=root), broker_extra="cache_ttl = 2s")
    blob = wrap(kb, "rsa")["blob"]
    check(unwrap_cold(kb, blob) == DEK, "cold unwrap")
    emu.admin("/admin/keys/delete", {"vault": "kv", "key": "rsa"})
    check(kb.ok({"op": "unwrap", "blob": blob})["cached"] is True, "cached until the TTL")
    e = wait_for("unwraps fail at the TTL", lambda: (lambda r: r if not r["ok"] else None)(
        kb.call({"op": "unwrap", "blob": blob})), 4)
    check(e["error"]["code"] == "unknown_key" and "recover" in e["error"]["message"],
          "a deleted key is unknown_key, with the way back: %s" % e["error"])
    emu.admin("/admin/keys/recover", {"vault": "kv", "key": "rsa"})
    check(unb64(kb.ok({"op": "unwrap", "blob": blob})["plaintext"]) == DEK, "recovered: unwraps succeed")


def auth_round_trip(kb, emu):
    for key in ("rsa", "aes"):
        w = wrap(kb, key)
        check(unwrap_cold(kb, w["blob"]) == DEK, "%s round trip" % key)


def auth_client_secret(root):
    emu = Emu(root)
    env = {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT, "AZURE_CLIENT_SECRET": "kb-secret"}
    kb = broker(root, key_section(emu, "rsa", ids=False) + key_section(emu, "aes", kind="mhsm", ids=False), env=env)
    auth_round_trip(kb, emu)
    check(emu.count(r"oauth2/v2.0/token 200 principal=%s" % CLIENT) == 2, "one token per audience")
    kb.stop()
    check("kb-secret" not in kb.log_text() and "kb-secret" not in emu.read_log(), "the secret is in no log")
    # a wrong secret in the file: auth_failed at startup, naming method, tenant and authority
    bad = secret_file(root, "bad.secret", "wrong")
    kb2 = broker(os.path.join(root), key_section(emu, "rsa", extra="client_secret_file = %s" % bad),
                 start=False)
    check(kb2.start(expect_fail=True) != 0, "a wrong secret stops startup")
    log = kb2.log_text().split("SIGTERM")[-1]
    check("client_secret" in log and TENANT in log and "https://localhost:%d" % emu.port in log,
          "the message names method, tenant and authority:\n" + log)


class Listener:
    """A real HTTPS server on loopback with the emulator's certificate that
    records every connection and request it gets. As a hostile vault it
    answers every request 401 with a challenge whose authorization points
    at evil (another Listener); as that evil authority it answers 400."""

    def __init__(self, emu, challenge_to=None):
        import http.server
        import ssl
        self.conns, self.requests = 0, []
        me = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                me.requests.append((self.command, self.path, self.rfile.read(n).decode(errors="replace")))
                if challenge_to:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Bearer authorization="https://localhost:%d/evil-tenant", '
                                     'resource="https://vault.localhost"' % challenge_to.port)
                else:
                    self.send_response(400)
                self.send_header("Content-Length", "0")
                self.end_headers()
            do_GET = do_POST = answer

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                me.conns += 1
                return ctx.wrap_socket(sock, server_side=True), addr

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(emu.tls, "server.pem"), os.path.join(emu.tls, "server-key.pem"))
        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def hostile_challenge_gets_nothing(root, auth, credential, env=None):
    """A key host that is no Azure cloud's answers 401 pointing authorization
    at another server: the broker sends the credential only to the configured
    authority (here the real emulator), never where the challenge points, and
    without authority_host it refuses to start, naming the option."""
    emu = Emu(root)
    evil = Listener(emu)
    vault = Listener(emu, challenge_to=evil)
    url = "https://kv.vault.localhost:%d/keys/rsa" % vault.port
    base = key_section(emu, "k", auth=auth, root=root, authority=False).replace("url = %s" % emu.url(), "url = " + url)
    try:
        kb = broker(root, base, env=env, start=False)
        check(kb.start(expect_fail=True) != 0, "no authority_host: startup refused")
        log = kb.log_text()
        check("authority_host" in log and "kv.vault.localhost" in log and "401 challenge" in log,
              "the refusal names authority_host and the host:\n" + log)
        check(vault.conns == 0, "refused before any request to the key host")
        os.unlink(kb.log)
        for tenant in (True, False):
            keys = base.replace("auth = %s" % auth, "auth = %s\nauthority_host = https://localhost:%d" % (auth, emu.port))
            if not tenant:
                keys = keys.replace("tenant_id = %s\n" % TENANT, "")
            kb = broker(root, keys, env=env, start=False)
            check(kb.start(expect_fail=True) != 0, "the hostile vault refuses every token, so startup fails")
            check(vault.requests, "the hostile vault was asked for its challenge")
            want = TENANT if tenant else "evil-tenant"
            check(emu.count(r"POST localhost:\d+/%s/oauth2/v2.0/token" % want) >= 1,
                  "the token request went to the configured authority (tenant %s):\n%s" % (want, emu.read_log()))
            kb.stop()
            os.unlink(kb.log)
        check(evil.conns == 0 and not evil.requests,
              "nothing reached the authority the challenge named: %d connections, %s" % (evil.conns, evil.requests))
        check(not any(credential in r[2] for r in vault.requests), "the key host never saw the %s" % auth)
    finally:
        vault.close()
        evil.close()


def hostile_challenge_gets_no_client_secret(root):
    hostile_challenge_gets_nothing(root, "client_secret", "kb-secret")


def hostile_challenge_gets_no_assertion(root):
    fed = secret_file(root, "federated.token", ASSERTION)
    hostile_challenge_gets_nothing(root, "workload_identity", ASSERTION, env={"AZURE_FEDERATED_TOKEN_FILE": fed})


def auth_workload_identity(root):
    emu = Emu(root)
    fed = secret_file(root, "federated.token", ASSERTION)
    kb = broker(root, key_section(emu, "rsa", auth="workload_identity") +
                key_section(emu, "aes", kind="mhsm", auth="workload_identity"),
                env={"AZURE_FEDERATED_TOKEN_FILE": fed})
    auth_round_trip(kb, emu)
    check(ASSERTION not in kb.log_text(), "the assertion is in no log")


def auth_managed_identity(root):
    emu = Emu(root)
    imds = "imds_endpoint = https://localhost:%d/metadata/identity/oauth2/token\n" % emu.port
    kb = broker(root, key_section(emu, "rsa", auth="managed_identity", extra=imds) +
                key_section(emu, "aes", kind="mhsm", auth="managed_identity", extra=imds + "client_id = %s" % CLIENT))
    auth_round_trip(kb, emu)
    check(emu.count(r"/metadata/identity/oauth2/token 200") == 2, "tokens came from IMDS")


def auth_managed_identity_app_service(root):
    emu = Emu(root)
    env = {"IDENTITY_ENDPOINT": "https://localhost:%d/msi/token" % emu.port, "IDENTITY_HEADER": IDENTITY_HEADER}
    keys = (key_section(emu, "rsa", auth="managed_identity") +
            key_section(emu, "aes", kind="mhsm", auth="managed_identity", extra="client_id = %s" % CLIENT))
    kb = broker(root, keys, env=env)
    auth_round_trip(kb, emu)
    check(emu.count(r"GET localhost:\d+/msi/token 200") == 2 and emu.count(r"/metadata/identity") == 0,
          "with IDENTITY_ENDPOINT and IDENTITY_HEADER, tokens come from the App Service endpoint:\n" + emu.read_log())
    d = kb.cli("--json", "doctor", "rsa", check_rc=0).stdout
    check(b"App Service" in d, "doctor names the flavour: %s" % d)
    kb.stop()
    check(IDENTITY_HEADER not in kb.log_text() and IDENTITY_HEADER not in emu.read_log(), "the header is in no log")
    # a wrong IDENTITY_HEADER: auth_failed at startup, naming the endpoint
    kb2 = broker(root, key_section(emu, "rsa", auth="managed_identity"),
                 env=dict(env, IDENTITY_HEADER="not-the-header"), start=False)
    check(kb2.start(expect_fail=True) != 0, "a wrong IDENTITY_HEADER stops startup")
    log = kb2.log_text().split("SIGTERM")[-1]
    check("/msi/token" in log and "401" in log and "not-the-header" not in log, "names the endpoint:\n" + log)
    kb2.stop()
    os.unlink(kb2.log)
    # an imds_endpoint in the section is more specific than the environment
    imds = "imds_endpoint = https://localhost:%d/metadata/identity/oauth2/token\n" % emu.port
    kb3 = broker(root, key_section(emu, "rsa", auth="managed_identity", extra=imds), env=env)
    auth_round_trip_one(kb3, "rsa")
    check(emu.count(r"/metadata/identity/oauth2/token 200") == 1, "imds_endpoint wins over IDENTITY_ENDPOINT")


def auth_round_trip_one(kb, key):
    check(unwrap_cold(kb, wrap(kb, key)["blob"]) == DEK, "%s round trip" % key)


def write_token(path, token):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(token + "\n")
    os.rename(tmp, path)


def auth_token_file(root):
    emu = Emu(root)
    vt, mt = os.path.join(root, "vault.token"), os.path.join(root, "mhsm.token")
    write_token(vt, emu.token("vault"))
    write_token(mt, emu.token("mhsm"))
    kb = broker(root, key_section(emu, "rsa", auth="token_file", extra="token_file = %s" % vt) +
                key_section(emu, "aes", kind="mhsm", auth="token_file", extra="token_file = %s" % mt))
    auth_round_trip(kb, emu)
    blob = wrap(kb, "aes")["blob"]
    emu.admin("/admin/tokens/revoke", {})
    kb.ok({"op": "flush"})
    e = kb.err({"op": "unwrap", "blob": blob}, "auth_failed")
    check(mt in e["error"]["message"], "auth_failed names the token file: %s" % e["error"])
    write_token(mt, emu.token("mhsm"))
    check(unb64(kb.ok({"op": "unwrap", "blob": blob})["plaintext"]) == DEK, "the changed file is read again")


def wrong_scope_token_is_auth_failed(root):
    emu = Emu(root)
    vt = os.path.join(root, "vault.token")
    write_token(vt, emu.token("mhsm"))  # a Managed HSM token for a vault key
    kb = broker(root, key_section(emu, "rsa", auth="token_file", extra="token_file = %s" % vt), start=False)
    check(kb.start(expect_fail=True) != 0, "a wrong-audience token stops startup")
    check("refused the token (401)" in kb.log_text() and "https://vault.localhost" in kb.log_text(),
          "the message names what the service wants:\n" + kb.log_text())
    write_token(vt, emu.token("vault"))
    kb.start()
    blob = wrap(kb, "rsa")["blob"]
    write_token(vt, emu.token("mhsm"))
    kb.ok({"op": "flush"})
    e = kb.err({"op": "unwrap", "blob": blob}, "auth_failed")
    check("token_file" in e["error"]["message"] and "request id" in e["error"]["message"], "%s" % e["error"])


def token_expiry_refreshed_mid_run(root):
    emu = Emu(root, lifetime=4)
    kb = broker(root, key_section(emu, "rsa", root=root))
    blob = wrap(kb, "rsa")["blob"]
    end, n = time.time() + 10, 0
    while time.time() < end:
        kb.ok({"op": "flush"})
        r = kb.call({"op": "unwrap", "blob": blob})
        check(r["ok"], "request %d failed across a token expiry: %s" % (n, r))
        n += 1
        time.sleep(0.1)
    tokens = emu.count(r"oauth2/v2.0/token 200")
    check(tokens >= 3, "tokens were refreshed (%d token requests)" % tokens)
    check(emu.count(r"unwrapkey 401") == 0, "refreshed before expiry: no request was refused")


def burst_makes_one_token_request(root):
    emu = Emu(root)
    kb = broker(root, key_section(emu, "a", root=root) + key_section(emu, "b", root=root))
    check(emu.count(r"oauth2/v2.0/token 200") == 1, "two keys on one vault share one token")
    blobs = [wrap(kb, k, os.urandom(32))["blob"] for k in ("a", "b") for _ in range(16)]
    emu.admin("/admin/tokens/revoke", {})
    kb.ok({"op": "flush"})
    results = []

    def one(blob):
        results.append(kb.call({"op": "unwrap", "blob": blob}))
    threads = [threading.Thread(target=one, args=(b,)) for b in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(all(r["ok"] for r in results) and len(results) == 32, "every unwrap of the burst succeeds")
    check(emu.count(r"unwrapkey 401") >= 1, "the revoked token was refused")
    check(emu.count(r"oauth2/v2.0/token 200") == 2, "a burst after a refusal makes one token request, not %d" %
          (emu.count(r"oauth2/v2.0/token 200") - 1))


def throttle(emu, limit, retry_after, window_ms=2000):
    """A fresh throttle window on vault kv: limit operations per window_ms."""
    emu.admin("/admin/throttle", {"vault": "kv", "limit": 0})
    emu.admin("/admin/throttle", {"vault": "kv", "limit": limit, "window_ms": window_ms, "retry_after": retry_after})


def faults_429_retried_within_deadline(root):
    emu = Emu(root)
    kb = broker(root, key_section(emu, "rsa", root=root, timeout="10s", max_retries=30))
    blob = wrap(kb, "rsa")["blob"]
    for retry_after in (True, False):
        throttle(emu, 2, retry_after)
        before = emu.count(r"unwrapkey 429")
        t0 = time.time()
        for _ in range(3):
            check(unwrap_cold(kb, blob) == DEK, "throttled unwraps end in success")
        check(emu.count(r"unwrapkey 429") > before, "the emulator throttled (Retry-After %s)" % retry_after)
        check(time.time() - t0 < 10, "within the deadline")
    emu.admin("/admin/throttle", {"vault": "kv", "limit": 0})


def honours_ms_header(root, header):
    """One unwrap per 2 s window, the wait named in header: the broker sleeps
    exactly that long, so each throttled unwrap meets one 429, not a backoff's
    several, and ends in success within the deadline."""
    emu = Emu(root)
    kb = broker(root, key_section(emu, "rsa", root=root, timeout="5s"))
    blob = wrap(kb, "rsa")["blob"]
    throttle(emu, 1, header)
    check(unwrap_cold(kb, blob) == DEK, "the window's one unwrap")
    for n in range(2):
        before = emu.count(r"unwrapkey 429")
        t0 = time.time()
        check(unwrap_cold(kb, blob) == DEK, "a throttled unwrap ends in success (%s)" % header)
        took = time.time() - t0
        check(emu.count(r"unwrapkey 429") - before == 1,
              "one 429, then the wait %s named: %d 429s" % (header, emu.count(r"unwrapkey 429") - before))
        check(1.0 < took < 3.0, "waited for the window to end, within the deadline: %.2fs" % took)


def faults_429_retry_after_ms_honoured(root):
    honours_ms_header(root, "retry-after-ms")


def faults_429_x_ms_retry_after_ms_honoured(root):
    honours_ms_header(root, "x-ms-retry-after-ms")


def long_outage_is_throttled(root):
    emu = Emu(root)
    kb = broker(root, key_section(emu, "rsa", root=root, timeout="2s"))
    blob = wrap(kb, "rsa")["blob"]
    for retry_after in (True, False):
        emu.admin("/admin/throttle", {"vault": "kv", "limit": 1, "retry_after": retry_after})
        kb.ok({"op": "flush"})
        kb.call({"op": "unwrap", "blob": blob})  # spends the window's one request
        kb.ok({"op": "flush"})
        t0 = time.time()
        e = kb.err({"op": "unwrap", "blob": blob}, "throttled")
        check(time.time() - t0 < 3.5 and "429" in e["error"]["message"], "throttled at the deadline: %s" % e["error"])
        emu.admin("/admin/throttle", {"vault": "kv", "limit": 0})


def faults_503_and_drops_retried(root):
    emu = Emu(root)
    kb = broker(root, key_section(emu, "rsa", root=root) + key_section(emu, "aes", kind="mhsm", root=root))
    blobs = {k: wrap(kb, k)["blob"] for k in ("rsa", "aes")}
    emu.admin("/admin/faults", {"fail_next": 3, "fail_status": 503})
    check(unwrap_cold(kb, blobs["rsa"]) == DEK, "a 503 burst is retried")
    check(emu.count(r"unwrapkey 503") == 3, "three 503s were answered")
    emu.admin("/admin/faults", {"drop_next": 2})
    check(unwrap_cold(kb, blobs["aes"]) == DEK, "dropped connections are retried")
    check(emu.count(r"unwrapkey dropped") == 2, "two connections were dropped")
    emu.admin("/admin/faults", {"drop_next": 1})
    check(wrap(kb, "aes")["blob"], "a dropped wrap is retried")
    emu.admin("/admin/faults", {"fail_next": 50, "fail_status": 500})
    kb.ok({"op": "flush"})
    e = kb.err({"op": "unwrap", "blob": blobs["rsa"]}, "backend_unavailable")
    check("500" in e["error"]["message"] and "request id" in e["error"]["message"], "%s" % e["error"])
    emu.admin("/admin/faults", method="DELETE")


def latency_beyond_timeout_is_backend_unavailable(root):
    emu = Emu(root)
    kb = broker(root, key_section(emu, "rsa", root=root, timeout="1s"))
    blob = wrap(kb, "rsa")["blob"]
    emu.admin("/admin/faults", {"latency_ms": 2500})
    kb.ok({"op": "flush"})
    answered = emu.count(r"unwrapkey 200")
    t0 = time.time()
    e = kb.err({"op": "unwrap", "blob": blob}, "backend_unavailable")
    check(time.time() - t0 < 2.0, "answered at the timeout, not after the latency")
    check("no answer" in e["error"]["message"] and "request id" in e["error"]["message"], "%s" % e["error"])
    emu.admin("/admin/faults", method="DELETE")
    # the slow request the broker gave up on is over only when the emulator has answered it
    wait_for("the emulator answers the slow unwrap", lambda: emu.count(r"unwrapkey 200") > answered, 30)
    check(unwrap_cold(kb, blob) == DEK, "fine once the latency is gone")


def emulator_restart_survived(root):
    emu = Emu(root, state=True)
    kb = broker(root, key_section(emu, "rsa", root=root, timeout="10s") +
                key_section(emu, "aes", kind="mhsm", root=root, timeout="10s"))
    blobs = {k: wrap(kb, k)["blob"] for k in ("rsa", "aes")}
    emu.stop()
    kb.ok({"op": "flush"})
    # each attempt of an unwrap, as keybrokerd logs it at log_level debug: HTTP status, attempt number
    attempt = re.compile(r"azure key rsa: POST \S+/unwrapkey\S* -> (\d+), attempt (\d+)")
    before = len(attempt.findall(kb.log_text()))
    results = []
    t = threading.Thread(target=lambda: results.append(kb.call({"op": "unwrap", "blob": blobs["rsa"]})))
    t.start()
    # the unwrap is in flight across the restart: its first attempt met the stopped emulator
    wait_for("an unwrap attempt refused by the stopped emulator",
             lambda: [a for a in attempt.findall(kb.log_text())[before:] if a[0] != "200"], 9)
    check(t.is_alive() and not results, "the unwrap is still in flight when the emulator restarts: %s" % results)
    emu.start()
    t.join()
    check(results[0]["ok"] and unb64(results[0]["plaintext"]) == DEK, "an unwrap across the restart: %s" % results)
    tries = attempt.findall(kb.log_text())[before:]
    check(tries[0][0] != "200" and tries[-1][0] == "200", "a retry after the restart answered it: %s" % tries)
    check(unwrap_cold(kb, blobs["aes"]) == DEK, "the Managed HSM key survived the restart")
    check(unwrap_cold(kb, wrap(kb, "rsa")["blob"]) == DEK, "new wraps after the restart")


def doctor_json(kb, key, rc):
    p = kb.cli("--json", "doctor", key, check_rc=rc)
    return {c["check"]: c for c in json.loads(p.stdout)["checks"]}


def doctor_names_missing_permission(root):
    emu = Emu(root)
    kb = broker(root, key_section(emu, "rsa", root=root, client="no-unwrap"))
    checks = doctor_json(kb, "rsa", 1)
    u = checks["unwrap"]
    check(u["status"] == "fail" and "unwrapKey" in u["detail"] and "no-unwrap" in u["detail"] and
          "unwrapKey" in u["fix"], "doctor names the missing permission and principal: %s" % u)
    check(checks["get permission"]["status"] == "pass", "get works: %s" % checks["get permission"])
    text = kb.cli("doctor", "rsa", check_rc=1).stdout.decode()
    check("unwrapKey" in text and "fail" in text, "the table says it too:\n" + text)


def doctor_passes_healthy_key_and_warns_on_purge_protection(root):
    emu = Emu(root)
    kb = broker(root, key_section(emu, "rsa", root=root) + key_section(emu, "aes", kind="mhsm", root=root))
    for key in ("rsa", "aes"):
        checks = doctor_json(kb, key, 0)
        want = ["config", "service", "authority", "tenant", "token", "get permission", "key enabled", "key type", "key_ops", "wrap",
                "unwrap", "soft delete", "versions"]
        check(list(checks) == want, "the checks in order: %s" % list(checks))
        s = checks.pop("soft delete")
        check(s["status"] == "warn" and "purge protection" in s["detail"] and "Recoverable+Purgeable" in s["detail"]
              and s["fix"], "warns: %s" % s)
        cmd = ("az keyvault update --name kv " if key == "rsa" else "az keyvault update-hsm --hsm-name hsm ")
        check(cmd + "--enable-purge-protection true" in s["fix"], "the fix is the command for this service: %s" % s)
        bad = [c for c in checks.values() if c["status"] != "pass"]
        check(not bad, "every other check passes on a healthy key: %s" % bad)
        size = "RSA 2048 bits" if key == "rsa" else "oct-HSM AES-256, alg CKM_AES_KEY_WRAP_PAD"
        check(size in checks["key type"]["detail"], "doctor names the size: %s" % checks["key type"])


def doctor_passes_every_check_with_purge_protection(root):
    emu = Emu(root, extra_config="[vault:kv]\npurge_protection = yes\n"
                                 "[mhsm:hsm]\npurge_protection = yes\nsoft_delete_retention_days = 28\n")
    kb = broker(root, key_section(emu, "rsa", root=root) + key_section(emu, "aes", kind="mhsm", root=root))
    for key, level, days in (("rsa", "Recoverable", 90), ("aes", "CustomizedRecoverable", 28)):
        checks = doctor_json(kb, key, 0)
        bad = [c for c in checks.values() if c["status"] != "pass"]
        check(len(checks) == 13 and not bad, "every check passes in a purge-protected %s: %s" % (key, bad))
        s = checks["soft delete"]
        check(("recoveryLevel %s (%d days)" % (level, days)) in s["detail"] and "purge protection are on" in s["detail"],
              "soft delete names the level: %s" % s)
        text = kb.cli("doctor", key, check_rc=0).stdout.decode()
        check("warn" not in text and "fail" not in text, "the table has no warning:\n" + text)


def interop_with_azure_sdk(root):
    from azure.identity import ClientSecretCredential
    from azure.identity._internal import msal_credentials
    from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
    import inspect

    emu = Emu(root)
    os.environ["REQUESTS_CA_BUNDLE"] = emu.ca
    params = inspect.signature(msal_credentials.MsalCredential.__init__).parameters
    switch = ({"disable_instance_discovery": True} if "disable_instance_discovery" in params
              else {"instance_discovery": False})
    # "wrapper" may not get keys, so the SDK cannot wrap locally and asks the service
    # (with get, it "wraps" an oct-HSM key locally although the service sends no k)
    cred = ClientSecretCredential(TENANT, "wrapper", "wrapper-secret", authority="https://localhost:%d" % emu.port,
                                  **switch)
    kb = broker(root, key_section(emu, "rsa", root=root) +
                key_section(emu, "aes", kind="mhsm", root=root, extra="alg = A256KW"))
    for key, kind, alg in (("rsa", "vault", KeyWrapAlgorithm.rsa_oaep_256), ("aes", "mhsm", KeyWrapAlgorithm.aes_256)):
        # broker -> SDK: the SDK unwraps a DEK the broker wrapped
        w = wrap(kb, key)
        f = blob_fields(w["blob"])
        kid = "%s/%s" % (emu.url(kind, key), f["version"])
        got = CryptographyClient(kid, cred).unwrap_key(alg, f["ct"]).key
        check(got == DEK, "the SDK unwraps the broker's %s blob" % key)
        # SDK -> broker: the broker unwraps Azure's raw {kid, alg, value}
        res = CryptographyClient(kid, cred).wrap_key(alg, DEK)
        raw = {"kid": res.key_id, "alg": str(alg.value), "value": __import__("azfix").b64url(res.encrypted_key)}
        kb.ok({"op": "flush"})
        r = kb.ok({"op": "unwrap", "blob": raw})
        check(unb64(r["plaintext"]) == DEK and r["key"] == key, "the broker unwraps the SDK's raw %s form" % key)
        r = kb.ok({"op": "unwrap", "blob": json.dumps(raw)})
        check(unb64(r["plaintext"]) == DEK, "also as a JSON string")


if __name__ == "__main__":
    run(globals())
