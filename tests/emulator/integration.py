"""Integration tests: the real akv-emulator over TLS on loopback.

Run as: integration.py CASE. Each CASE is one meson test named after the
behaviour a user observes (see meson.build).
"""
import json
import os
import socket
import ssl
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from emu_fixture import Emulator, b64u, unb64u  # noqa: E402
from kbtest import wait_for  # noqa: E402

API = "?api-version=7.6"


def check(cond, *what):
    if not cond:
        raise AssertionError(" ".join(str(w) for w in what))


def create(emu, tok, name, body, kind="vault"):
    st, _, data = emu.request("POST", emu.host(kind), "/keys/%s/create%s" % (name, API), body, tok)
    check(st == 200, "create", name, st, data)
    return data


def op(emu, tok, kid_path, what, alg, value, kind="vault", api=API, **extra):
    body = {"alg": alg, "value": value}
    body.update(extra)
    return emu.request("POST", emu.host(kind), "%s/%s%s" % (kid_path, what, api), body, tok)


def path_of(kid):
    return urllib.parse.urlparse(kid).path


def case_tls_verifies_with_ca():
    with Emulator() as emu:
        for host in ("dev.vault.localhost", "dev.managedhsm.localhost", "localhost"):
            with socket.create_connection(("127.0.0.1", emu.port)) as raw:
                with emu.ctx.wrap_socket(raw, server_hostname=host) as tls:
                    check(tls.version() is not None, host)
        bad = ssl.create_default_context()
        try:
            with socket.create_connection(("127.0.0.1", emu.port)) as raw:
                bad.wrap_socket(raw, server_hostname="dev.vault.localhost")
            check(False, "TLS verified without the emulator CA")
        except ssl.SSLError:
            pass
        check("dev.vault.localhost" in emu.banner and "ca.pem" in emu.banner and
              "/dev-tenant/oauth2/v2.0/token" in emu.banner and "https://localhost:%d/adfs " % emu.port in emu.banner,
              emu.banner)


def case_challenge():
    with Emulator() as emu:
        st, h, data = emu.request("GET", emu.host(), "/keys/x" + API)
        check(st == 401 and data["error"]["code"] == "Unauthorized", st, data)
        want = 'Bearer authorization="https://localhost:%d/dev-tenant", resource="https://vault.localhost:%d"' % (
            emu.port, emu.port)
        check(h.get("www-authenticate") == want, h.get("www-authenticate"))
        st, h, data = emu.request("GET", emu.host("mhsm"), "/keys/x" + API)
        check(st == 401 and data is None and 'resource="https://managedhsm.localhost:%d"' % emu.port in
              h["www-authenticate"], st, h, data)
        st, _, _ = emu.request("GET", emu.host(), "/keys/x" + API, token="not-a-token")
        check(st == 401, st)


def case_token_bound_to_scope():
    with Emulator() as emu:
        vt, mt = emu.token("vault"), emu.token("mhsm")
        st, _, _ = emu.request("GET", emu.host("mhsm"), "/keys" + API, token=vt)
        check(st == 401, "vault token on MHSM", st)
        st, _, _ = emu.request("GET", emu.host("vault"), "/keys" + API, token=mt)
        check(st == 401, "MHSM token on vault", st)
        st, _, _ = emu.request("GET", emu.host("mhsm"), "/keys" + API, token=mt)
        check(st == 200, st)


def token_form(emu, **fields):
    return emu.request("POST", emu.host("login"), "/dev-tenant/oauth2/v2.0/token",
                       body=urllib.parse.urlencode(fields),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})


def case_token_endpoint():
    with Emulator() as emu:
        scope = "https://vault.azure.net/.default"
        st, _, d = token_form(emu, grant_type="client_credentials", client_id="dev-client",
                              client_secret="dev-secret", scope=scope)
        check(st == 200 and d["token_type"] == "Bearer" and d["expires_in"] > 0, st, d)
        st, _, _ = emu.request("GET", emu.host(), "/keys" + API, token=d["access_token"])
        check(st == 200, "token for https://vault.azure.net works on a vault host", st)
        st, _, d = token_form(emu, grant_type="client_credentials", client_id="dev-client",
                              client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                              client_assertion="dev-assertion", scope=scope)
        check(st == 200, "client assertion", st, d)
        st, _, d = token_form(emu, grant_type="client_credentials", client_id="dev-client",
                              client_secret="wrong", scope=scope)
        check(st == 401 and d["error"] == "invalid_client", st, d)
        st, _, d = token_form(emu, grant_type="client_credentials", client_id="nobody",
                              client_secret="x", scope=scope)
        check(st == 400 and d["error"] == "unauthorized_client", st, d)
        st, _, d = token_form(emu, grant_type="client_credentials", client_id="dev-client",
                              client_secret="dev-secret", scope="https://storage.azure.com/.default")
        check(st == 400 and d["error"] == "invalid_scope", st, d)


def case_imds():
    with Emulator() as emu:
        path = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + \
            urllib.parse.quote("https://vault.azure.net")
        st, _, d = emu.request("GET", emu.host("login"), path)
        check(st == 400 and d["error"] == "invalid_request", st, d)
        st, _, d = emu.request("GET", emu.host("login"), path, headers={"Metadata": "true"})
        check(st == 200 and d["token_type"] == "Bearer" and d["client_id"] == "dev-client", st, d)
        st, _, _ = emu.request("GET", emu.host(), "/keys" + API, token=d["access_token"])
        check(st == 200, st)


def case_app_service_identity():
    with Emulator() as emu:
        res = urllib.parse.quote("https://vault.azure.net")
        path = "/msi/token?api-version=2019-08-01&resource=" + res
        st, _, d = emu.request("GET", emu.host("login"), path)
        check(st == 400 and "X-IDENTITY-HEADER" in d["error_description"], "no header", st, d)
        st, _, d = emu.request("GET", emu.host("login"), path, headers={"X-IDENTITY-HEADER": "guess"})
        check(st == 401, "a wrong header", st, d)
        st, _, d = emu.request("GET", emu.host("login"), "/msi/token?api-version=2018-02-01&resource=" + res,
                               headers={"X-IDENTITY-HEADER": "dev-identity-header"})
        check(st == 400 and "2019-08-01" in d["error_description"], "IMDS's api-version", st, d)
        st, _, d = emu.request("GET", emu.host("login"), path, headers={"X-IDENTITY-HEADER": "dev-identity-header"})
        now = time.time()
        check(st == 200 and d["token_type"] == "Bearer" and d["client_id"] == "dev-client" and
              "expires_in" not in d and abs(int(d["expires_on"]) - (now + 3600)) < 60, st, d)
        st, _, _ = emu.request("GET", emu.host(), "/keys" + API, token=d["access_token"])
        check(st == 200, "the token works on the vault", st)
        st, _, _ = emu.request("GET", emu.host("mhsm"), "/keys" + API, token=d["access_token"])
        check(st == 401, "and only there", st)
    conf = "[emulator]\nidentity_header = s3cret\n[vault:dev]\n[principal:app]\nsecret = x\n" \
           "[principal:other]\nsecret = y\n"
    with Emulator(config=conf) as emu:
        path = "/msi/token?api-version=2019-08-01&resource=" + urllib.parse.quote("https://vault.azure.net")
        st, _, d = emu.request("GET", emu.host("login"), path, headers={"X-IDENTITY-HEADER": "dev-identity-header"})
        check(st == 401, "the configured header replaces the default", st, d)
        st, _, d = emu.request("GET", emu.host("login"), path + "&client_id=other",
                               headers={"X-IDENTITY-HEADER": "s3cret"})
        check(st == 200 and d["client_id"] == "other", "a user-assigned identity by client_id", st, d)
        check("s3cret" not in emu.read_log(), "the header value is in no log")


def case_openid():
    with Emulator() as emu:
        st, _, d = emu.request("GET", emu.host("login"), "/dev-tenant/v2.0/.well-known/openid-configuration")
        check(st == 200 and d["token_endpoint"] == "https://localhost:%d/dev-tenant/oauth2/v2.0/token" % emu.port,
              st, d)
        check("authorization_endpoint" in d and "issuer" in d, d)
        st, _, _ = emu.request("GET", emu.host("login"), "/other-tenant/v2.0/.well-known/openid-configuration")
        check(st == 400, st)


def case_rsa_algorithms():
    with Emulator() as emu:
        tok = emu.token()
        for size in (2048, 3072):
            k = create(emu, tok, "rsa%d" % size, {"kty": "RSA-HSM", "key_size": size})
            check(k["key"]["kty"] == "RSA-HSM" and len(unb64u(k["key"]["n"])) * 8 == size, k)
            check("=" not in k["key"]["n"] and len(k["key"]["kid"].rsplit("/", 1)[1]) == 32, k)
        kid = path_of(k["key"]["kid"])
        versionless = kid.rsplit("/", 1)[0]
        dek = os.urandom(32)
        for alg in ("RSA1_5", "RSA-OAEP", "RSA-OAEP-256"):
            for what, back in (("wrapkey", "unwrapkey"), ("encrypt", "decrypt")):
                st, _, w = op(emu, tok, versionless, what, alg, b64u(dek))
                check(st == 200 and w["kid"] == k["key"]["kid"] and "=" not in w["value"], alg, st, w)
                padded = w["value"] + "=" * (-len(w["value"]) % 4)
                # mixed-case path segments, as SDKs send them
                st, _, u = op(emu, tok, kid.replace("/keys/", "/Keys/"), back.replace("key", "Key"), alg, padded)
                check(st == 200 and unb64u(u["value"]) == dek, alg, what, st, u)
        st, _, d = op(emu, tok, kid, "wrapkey", "A256KW", b64u(dek))
        check(st == 400 and d["error"]["code"] == "BadParameter", st, d)


def case_mhsm_aes():
    with Emulator() as emu:
        tok = emu.token("mhsm")
        dek = os.urandom(32)
        for size, algs in ((128, ["A128KW"]), (192, ["A192KW"]), (256, ["A256KW", "CKM_AES_KEY_WRAP",
                                                                       "CKM_AES_KEY_WRAP_PAD"])):
            k = create(emu, tok, "aes%d" % size, {"kty": "oct-HSM", "key_size": size}, kind="mhsm")
            check(k["key"]["kty"] == "oct-HSM" and "k" not in k["key"], k)
            kid = path_of(k["key"]["kid"])
            for alg in algs:
                st, _, w = op(emu, tok, kid, "wrapkey", alg, b64u(dek), kind="mhsm")
                check(st == 200 and len(unb64u(w["value"])) == 40, alg, st, w)
                st, _, u = op(emu, tok, kid, "unwrapkey", alg, w["value"], kind="mhsm")
                check(st == 200 and unb64u(u["value"]) == dek, alg, st, u)
        st, _, w = op(emu, tok, kid, "wrapkey", "CKM_AES_KEY_WRAP_PAD", b64u(b"seven!!"), kind="mhsm")
        check(st == 200 and len(unb64u(w["value"])) == 16, st, w)
        st, _, d = op(emu, tok, kid, "wrapkey", "A128KW", b64u(dek), kind="mhsm")
        check(st == 400, "A128KW with a 256-bit key", st, d)
        st, _, e = op(emu, tok, kid, "encrypt", "A256GCM", b64u(b"hello"), kind="mhsm")
        check(st == 200 and "iv" in e and "tag" in e, st, e)
        st, _, d = op(emu, tok, kid, "decrypt", "A256GCM", e["value"], kind="mhsm", iv=e["iv"], tag=e["tag"])
        check(st == 200 and unb64u(d["value"]) == b"hello", st, d)
        k = create(emu, tok, "rsahsm", {"kty": "RSA-HSM"}, kind="mhsm")
        st, _, d = emu.request("POST", emu.host("mhsm"), "/keys/plain/create" + API, {"kty": "RSA"}, tok)
        check(st == 400 and d["error"]["innererror"]["code"] == "KeyTypeNotSupported", st, d)


def case_vault_refuses_oct():
    with Emulator() as emu:
        tok = emu.token()
        st, _, d = emu.request("POST", emu.host(), "/keys/aes/create" + API, {"kty": "oct-HSM"}, tok)
        check(st == 400 and d["error"]["code"] == "BadParameter" and
              d["error"]["innererror"]["code"] == "KeyTypeNotSupported", st, d)


def case_list_versions_paging():
    with Emulator() as emu:
        tok = emu.token()
        made = [create(emu, tok, "paged", {"kty": "RSA"})["key"]["kid"]]
        for _ in range(4):
            st, _, d = emu.request("POST", emu.host(), "/keys/paged/rotate" + API, None, tok)
            check(st == 200, st, d)
            made.append(d["key"]["kid"])
        seen, url, pages = [], "/keys/paged/versions" + API + "&maxresults=2", 0
        while url:
            st, _, d = emu.request("GET", emu.host(), url, token=tok)
            check(st == 200 and len(d["value"]) <= 2, st, d)
            seen += [v["kid"] for v in d["value"]]
            pages += 1
            url = d["nextLink"] and path_of(d["nextLink"]) + "?" + urllib.parse.urlparse(d["nextLink"]).query
        check(sorted(seen) == sorted(made) and pages == 3, pages, seen)
        st, _, d = emu.request("GET", emu.host(), "/keys/paged/" + API, token=tok)
        check(d["key"]["kid"] == made[-1], "versionless get is the newest", d)


def case_forbidden_states():
    with Emulator() as emu:
        tok = emu.token()
        k = create(emu, tok, "states", {"kty": "RSA", "key_ops": ["wrapKey", "unwrapKey"]})
        kid = path_of(k["key"]["kid"])
        dek = b64u(os.urandom(16))
        st, _, d = op(emu, tok, kid, "encrypt", "RSA-OAEP", dek)
        check(st == 403 and d["error"]["code"] == "Forbidden", "key_ops", st, d)
        for attrs, what in (({"nbf": int(time.time()) + 3600}, "not yet valid"),
                            ({"nbf": None, "exp": int(time.time()) - 10}, "expired"),
                            ({"exp": None, "enabled": False}, "disabled")):
            st, _, d = emu.request("PATCH", emu.host(), kid + API, {"attributes": attrs}, tok)
            check(st == 200, st, d)
            st, _, d = op(emu, tok, kid, "wrapkey", "RSA-OAEP", dek)
            check(st == 403 and d["error"]["code"] == "Forbidden", what, st, d)
        st, _, d = emu.request("GET", emu.host(), kid + API, token=tok)
        check(st == 403 and d["error"]["code"] == "Forbidden", "get disabled", st, d)
        st, _, d = emu.request("PATCH", emu.host(), kid + API, {"attributes": {"enabled": True}}, tok)
        check(st == 200 and d["attributes"]["enabled"] is True, st, d)
        st, _, d = op(emu, tok, kid, "wrapkey", "RSA-OAEP", dek)
        check(st == 200, st, d)


def case_disabled_current_version_stays_current():
    """As in Azure: disabling the newest version does not make an older one
    current; versionless get, wrapkey and unwrapkey answer 403 Forbidden."""
    with Emulator() as emu:
        tok = emu.token()
        old = create(emu, tok, "cur", {"kty": "RSA"})["key"]["kid"]
        st, _, d = emu.request("POST", emu.host(), "/keys/cur/rotate" + API, None, tok)
        check(st == 200, st, d)
        new = d["key"]["kid"]
        st, _, d = emu.request("PATCH", emu.host(), path_of(new) + API, {"attributes": {"enabled": False}}, tok)
        check(st == 200 and d["attributes"]["enabled"] is False, st, d)
        st, _, d = emu.request("GET", emu.host(), "/keys/cur" + API, token=tok)
        check(st == 403 and d["error"]["code"] == "Forbidden" and
              d["error"]["message"] == "Operation get is not allowed on a disabled key.",
              "versionless get of a disabled current version", st, d)
        dek = b64u(os.urandom(32))
        st, _, d = op(emu, tok, "/keys/cur", "wrapkey", "RSA-OAEP", dek)
        check(st == 403 and "disabled" in d["error"]["message"], "versionless wrapkey", st, d)
        st, _, d = op(emu, tok, path_of(old), "wrapkey", "RSA-OAEP", dek)
        check(st == 200 and d["kid"] == old, "the older version still works by name", st, d)
        st, _, d = emu.request("PATCH", emu.host(), path_of(new) + API, {"attributes": {"enabled": True}}, tok)
        st, _, d = emu.request("GET", emu.host(), "/keys/cur" + API, token=tok)
        check(st == 200 and d["key"]["kid"] == new, "enabled again, it answers", st, d)


def run_emulator(*args, timeout=20):
    import subprocess
    return subprocess.run([os.environ.get("AKV_EMULATOR", "akv-emulator")] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def case_cli_help_version_and_usage_reasons():
    p = run_emulator("--help")
    check(p.returncode == 0 and p.stdout.startswith("usage: akv-emulator"), "--help", p)
    p = run_emulator("--version")
    check(p.returncode == 0 and p.stdout.startswith("akv-emulator "), "--version", p)
    p = run_emulator("--init-only")
    check(p.returncode == 2 and "--init-only needs --init-tls DIR" in p.stderr, "--init-only alone says why", p)
    p = run_emulator("stray")
    check(p.returncode == 2 and "unexpected argument 'stray'" in p.stderr, "a stray argument is named", p)


def case_port_in_use_names_the_port():
    import tempfile
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        with tempfile.TemporaryDirectory() as d:
            p = run_emulator("--init-tls", os.path.join(d, "tls"), "--listen", "127.0.0.1:%d" % port)
            check(p.returncode == 1 and ("port %d is in use" % port) in p.stderr and "--listen 127.0.0.1:PORT" in p.stderr
                  and "Failed to bind" not in p.stderr, "names the port and the way out", p)
            p = run_emulator("--init-tls", os.path.join(d, "tls"), "--listen", "127.0.0.1:0",
                             "--admin", "127.0.0.1:%d" % port)
            check(p.returncode == 1 and ("port %d is in use" % port) in p.stderr and "--admin 127.0.0.1:PORT" in p.stderr,
                  "the admin endpoint's too", p)
    finally:
        busy.close()


def case_not_found():
    with Emulator() as emu:
        tok = emu.token()
        st, _, d = emu.request("GET", emu.host(), "/keys/nope" + API, token=tok)
        check(st == 404 and d["error"]["code"] == "KeyNotFound", st, d)
        k = create(emu, tok, "there", {"kty": "RSA"})
        st, _, d = emu.request("GET", emu.host(), "/keys/there/" + "0" * 32 + API, token=tok)
        check(st == 404 and d["error"]["code"] == "KeyNotFound", st, d)
        st, _, d = op(emu, tok, "/keys/there/" + "f" * 32, "unwrapkey", "RSA-OAEP", "AAAA")
        check(st == 404 and d["error"]["code"] == "KeyNotFound", st, d)
        check(k["key"]["kid"].startswith("https://dev.vault.localhost:%d/keys/there/" % emu.port), k)


def case_api_versions():
    with Emulator() as emu:
        tok = emu.token()
        for v in ("7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "7.4-preview.1"):
            st, _, d = emu.request("GET", emu.host(), "/keys?api-version=" + v, token=tok)
            check(st == 200, v, st, d)
        for q in ("?api-version=6.0", "?api-version=7.7", ""):
            st, _, d = emu.request("GET", emu.host(), "/keys" + q, token=tok)
            check(st == 400 and d["error"]["code"] == "BadParameter", q, st, d)


def case_bad_input():
    with Emulator() as emu:
        tok = emu.token()
        kid = path_of(create(emu, tok, "victim", {"kty": "RSA"})["key"]["kid"])
        conn = emu.connect(emu.host())
        cases = [
            ("malformed JSON", "{not json", 400, "BadParameter"),
            ("wrong alg for the key type", {"alg": "A256KW", "value": "AAAA"}, 400, "BadParameter"),
            ("unknown alg", {"alg": "ROT13", "value": "AAAA"}, 400, "BadParameter"),
            ("bad base64url", {"alg": "RSA-OAEP", "value": "a+b/c"}, 400, "BadParameter"),
            ("garbage ciphertext", {"alg": "RSA-OAEP", "value": b64u(b"x" * 256)}, 400, "BadParameter"),
            # read and dropped, so the client that is still sending sees the 413
            ("body over the limit", json.dumps({"alg": "RSA-OAEP", "value": "A" * 70000}), 413,
             "RequestEntityTooLarge"),
        ]
        for what, body, want, code in cases:
            st, _, d = emu.request("POST", emu.host(), kid + "/unwrapkey" + API, body, tok,
                                   conn=None if want == 413 else conn)
            check(st == want and d["error"]["code"] == code, what, st, d)
        # a body declared far over the limit is answered at once, before it is sent
        with socket.create_connection(("127.0.0.1", emu.port)) as raw:
            with emu.ctx.wrap_socket(raw, server_hostname="dev.vault.localhost") as tls:
                tls.sendall(("POST %s/unwrapkey%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                             "Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
                             % (kid, API, emu.host(), tok)).encode())
                head = tls.recv(4096).decode(errors="replace")
        check(head.startswith("HTTP/1.1 413"), "early 413", head[:80])
        st, _, d = emu.request("GET", emu.host(), "/keys/bad_name!" + API, token=tok)
        check(st == 400, "bad key name", st, d)
        st, _, d = emu.request("GET", "evil.example:%d" % emu.port, "/keys" + API, token=tok, conn=conn)
        check(st == 400, "unknown host", st, d)
        st, _, d = op(emu, tok, kid, "wrapkey", "RSA-OAEP", b64u(b"still serving"))
        check(st == 200, "server keeps serving", st, d)


def case_soft_delete():
    with Emulator() as emu:
        tok = emu.token()
        create(emu, tok, "gone", {"kty": "RSA"})
        st, _, d = emu.request("DELETE", emu.host(), "/keys/gone" + API, token=tok)
        check(st == 200 and d["recoveryId"].endswith("/deletedkeys/gone") and "scheduledPurgeDate" in d, st, d)
        st, _, d = emu.request("GET", emu.host(), "/keys/gone" + API, token=tok)
        check(st == 404 and d["error"]["code"] == "KeyNotFound", st, d)
        st, _, d = emu.request("POST", emu.host(), "/keys/gone/create" + API, {"kty": "RSA"}, tok)
        check(st == 409 and d["error"]["code"] == "Conflict", st, d)
        st, _, d = emu.request("GET", emu.host(), "/deletedkeys/gone" + API, token=tok)
        check(st == 200 and d["key"]["kid"], st, d)
        st, _, d = emu.request("GET", emu.host(), "/deletedkeys" + API, token=tok)
        check(st == 200 and len(d["value"]) == 1, st, d)
        st, _, d = emu.request("POST", emu.host(), "/deletedkeys/gone/recover" + API, None, tok)
        check(st == 200, st, d)
        st, _, d = emu.request("GET", emu.host(), "/keys/gone" + API, token=tok)
        check(st == 200, "recovered", st, d)
        emu.request("DELETE", emu.host(), "/keys/gone" + API, token=tok)
        st, _, d = emu.request("DELETE", emu.host(), "/deletedkeys/gone" + API, token=tok)
        check(st == 204 and d is None, st, d)
        st, _, d = emu.request("GET", emu.host(), "/deletedkeys/gone" + API, token=tok)
        check(st == 404, st, d)
        create(emu, tok, "gone", {"kty": "RSA"})


THROTTLED = """
[vault:dev]
throttle = 5
retry_after = true
[principal:dev-client]
secret = dev-secret
"""


def case_throttle():
    with Emulator(config=THROTTLED, admin=True) as emu:
        tok = emu.token()
        conn = emu.connect(emu.host())
        codes = [emu.request("GET", emu.host(), "/keys" + API, token=tok, conn=conn)[0] for _ in range(5)]
        check(codes == [200] * 5, codes)
        st, h, d = emu.request("GET", emu.host(), "/keys" + API, token=tok, conn=conn)
        check(st == 429 and d["error"]["code"] == "Throttled" and 1 <= int(h["retry-after"]) <= 10, st, h, d)
        st, _ = emu.admin("POST", "/admin/throttle", {"vault": "dev", "limit": 2, "retry_after": False})
        check(st == 200, st)
        codes = [emu.request("GET", emu.host(), "/keys" + API, token=tok, conn=conn) for _ in range(3)]
        check([c[0] for c in codes] == [200, 200, 429] and "retry-after" not in codes[2][1], codes)
        emu.admin("POST", "/admin/throttle", {"vault": "dev", "limit": 0})
        codes = [emu.request("GET", emu.host(), "/keys" + API, token=tok, conn=conn)[0] for _ in range(10)]
        check(codes == [200] * 10, "throttling stopped", codes)


PROTECTED = """
[vault:dev]
purge_protection = yes
soft_delete_retention_days = 30
[vault:plain]
[mhsm:dev]
purge_protection = yes
[principal:dev-client]
secret = dev-secret
"""


def case_purge_protection():
    with Emulator(config=PROTECTED, admin=True) as emu:
        tok = emu.token()
        k = create(emu, tok, "kept", {"kty": "RSA"})
        a = k["attributes"]
        check(a["recoveryLevel"] == "CustomizedRecoverable" and a["recoverableDays"] == 30, a)
        st, _, d = emu.request("GET", emu.host(), "/keys/kept/versions" + API, token=tok)
        check(st == 200 and d["value"][0]["attributes"]["recoveryLevel"] == "CustomizedRecoverable", st, d)
        st, _, d = emu.request("DELETE", emu.host(), "/keys/kept" + API, token=tok)
        check(st == 200 and d["scheduledPurgeDate"] - d["deletedDate"] == 30 * 86400, st, d)
        st, _, d = emu.request("DELETE", emu.host(), "/deletedkeys/kept" + API, token=tok)
        check(st == 403 and d["error"]["code"] == "Forbidden" and "purge protection" in d["error"]["message"],
              "purge is refused", st, d)
        st, d = emu.admin("POST", "/admin/keys/purge", {"vault": "dev", "key": "kept"})
        check(st == 403, "the admin purge is refused too", st, d)
        st, _, d = emu.request("GET", emu.host(), "/deletedkeys/kept" + API, token=tok)
        check(st == 200, "the key is still there to recover", st, d)
        st, _, d = emu.request("POST", emu.host(), "/deletedkeys/kept/recover" + API, None, tok)
        check(st == 200 and d["attributes"]["recoveryLevel"] == "CustomizedRecoverable", st, d)
        # a Managed HSM at the default 90 days: Recoverable
        mtok = emu.token("mhsm")
        m = create(emu, mtok, "mkept", {"kty": "oct-HSM", "key_size": 256}, kind="mhsm")
        check(m["attributes"]["recoveryLevel"] == "Recoverable" and m["attributes"]["recoverableDays"] == 90, m)
        # a vault without it: Recoverable+Purgeable, 90 days
        st, _, d = emu.request("POST", emu.host(name="plain"), "/keys/loose/create" + API, {"kty": "RSA"}, tok)
        check(st == 200 and d["attributes"]["recoveryLevel"] == "Recoverable+Purgeable" and
              d["attributes"]["recoverableDays"] == 90, st, d)
        # the admin switch: off, then purge works; the level follows at once
        st, d = emu.admin("POST", "/admin/purge_protection", {"vault": "dev", "enabled": False})
        check(st == 200 and d["recoveryLevel"] == "CustomizedRecoverable+Purgeable", st, d)
        st, _, d = emu.request("GET", emu.host(), "/keys/kept" + API, token=tok)
        check(d["attributes"]["recoveryLevel"] == "CustomizedRecoverable+Purgeable", d)
        emu.request("DELETE", emu.host(), "/keys/kept" + API, token=tok)
        st, _, d = emu.request("DELETE", emu.host(), "/deletedkeys/kept" + API, token=tok)
        check(st == 204, "purge allowed once protection is off", st, d)
        st, d = emu.admin("POST", "/admin/purge_protection",
                          {"vault": "plain", "enabled": True, "soft_delete_retention_days": 90})
        check(st == 200 and d["recoveryLevel"] == "Recoverable" and d["soft_delete_retention_days"] == 90, st, d)
        for bad in ({"vault": "plain", "soft_delete_retention_days": 6}, {"vault": "plain", "enabled": "yes"},
                    {"vault": "plain", "soft_delete_retention_days": 91}):
            st, d = emu.admin("POST", "/admin/purge_protection", bad)
            check(st == 400, bad, st, d)
        st, d = emu.admin("GET", "/admin/state")
        plain = [v for v in d["vaults"] if v.get("vault") == "plain"][0]
        check(plain["purge_protection"] is True and plain["recoveryLevel"] == "Recoverable", plain)
    for bad in ("soft_delete_retention_days = 6", "soft_delete_retention_days = 91", "purge_protection = maybe"):
        emu = Emulator(config="[vault:dev]\n%s\n" % bad)
        try:
            emu.start()
            check(False, "config accepted:", bad)
        except RuntimeError as e:
            check("not valid" in str(e), bad, e)
        finally:
            emu.stop()
            __import__("shutil").rmtree(emu.dir, ignore_errors=True)


WINDOWED = """
[vault:dev]
throttle = 2
throttle_window_ms = 1000
retry_after = retry-after-ms
[principal:dev-client]
secret = dev-secret
"""


def case_throttle_window_and_retry_styles():
    with Emulator(config=WINDOWED, admin=True) as emu:
        tok = emu.token()
        conn = emu.connect(emu.host())

        def burst(n):
            return [emu.request("GET", emu.host(), "/keys" + API, token=tok, conn=conn) for _ in range(n)]
        t0 = time.time()
        r = burst(3)
        check([x[0] for x in r] == [200, 200, 429], [x[0] for x in r])
        h = r[2][1]
        check(0 < int(h["retry-after-ms"]) <= 1000 and "retry-after" not in h, "retry-after-ms alone", h)
        check("2 requests per 1000 ms" in r[2][2]["error"]["message"], r[2][2])
        time.sleep(max(0, t0 + int(h["retry-after-ms"]) / 1000 + 0.05 - time.time()))
        check(burst(1)[0][0] == 200, "a new window once the wait has passed")
        for style, header in (("x-ms-retry-after-ms", "x-ms-retry-after-ms"), ("Retry-After", "retry-after"),
                              (True, "retry-after"), ("none", None), (False, None)):
            st, d = emu.admin("POST", "/admin/throttle", {"vault": "dev", "limit": 1, "retry_after": style})
            check(st == 200, style, st, d)
            r = burst(2)
            h = r[1][1]
            names = [n for n in ("retry-after", "retry-after-ms", "x-ms-retry-after-ms") if n in h]
            check(r[1][0] == 429 and names == ([header] if header else []), style, r[1][0], h)
            if header == "retry-after":
                check(h[header] == "1", "seconds round up", h)
        st, d = emu.admin("POST", "/admin/throttle", {"vault": "dev", "limit": 1, "window_ms": 10000,
                                                       "retry_after": "retry-after-ms"})
        r = burst(2)
        check(r[1][0] == 429 and 9000 < int(r[1][1]["retry-after-ms"]) <= 10000, "the window is 10 s again", r[1][1])
        st, d = emu.admin("GET", "/admin/state")
        dev = [v for v in d["vaults"] if v.get("vault") == "dev"][0]
        check(dev["window_ms"] == 10000 and dev["retry_after"] == "retry-after-ms", dev)
        for bad in ({"vault": "dev", "limit": 1, "retry_after": "sometimes"},
                    {"vault": "dev", "limit": 1, "window_ms": 5}):
            st, d = emu.admin("POST", "/admin/throttle", bad)
            check(st == 400, bad, st, d)
    with Emulator(config="[vault:dev]\nthrottle = 1\n[principal:dev-client]\nsecret = dev-secret\n") as emu:
        tok = emu.token()
        conn = emu.connect(emu.host())
        r = [emu.request("GET", emu.host(), "/keys" + API, token=tok, conn=conn) for _ in range(2)]
        check(r[1][0] == 429 and 9 <= int(r[1][1]["retry-after"]) <= 10, "by default 10 s and Retry-After", r[1][1])


def case_admin_off_by_default():
    with Emulator() as emu:
        check(emu.admin_port is None and "admin            off" in emu.banner, emu.banner)
    with Emulator(admin=True) as emu:
        st, d = emu.admin("GET", "/admin/health")
        check(st == 200 and d["ok"], st, d)


def case_admin_revocation():
    with Emulator(admin=True) as emu:
        tok = emu.token()
        k = create(emu, tok, "kek", {"kty": "RSA"})
        kid = path_of(k["key"]["kid"])
        dek = b64u(os.urandom(32))
        st, _, w = op(emu, tok, kid, "wrapkey", "RSA-OAEP-256", dek)
        conn = emu.connect(emu.host())

        def unwrap():
            return emu.request("POST", emu.host(), kid + "/unwrapkey" + API,
                               {"alg": "RSA-OAEP-256", "value": w["value"]}, tok, conn=conn)
        check(unwrap()[0] == 200)
        st, d = emu.admin("POST", "/admin/permissions/revoke",
                          {"principal": "dev-client", "vault": "dev", "permissions": ["unwrapKey"]})
        check(st == 200 and "unwrapKey" not in d["effective"], st, d)
        st, _, d = unwrap()
        check(st == 403 and d["error"]["innererror"]["code"] == "ForbiddenByPolicy" and
              "unwrapKey" in d["error"]["message"], st, d)
        emu.admin("POST", "/admin/permissions/grant", {"principal": "dev-client", "vault": "dev",
                                                      "permissions": "unwrapKey"})
        check(unwrap()[0] == 200, "granted back")
        emu.admin("POST", "/admin/permissions/revoke", {"principal": "dev-client", "vault": "dev",
                                                       "key": "kek", "permissions": "unwrapKey"})
        check(unwrap()[0] == 403, "revoked on the key only")
        emu.admin("POST", "/admin/permissions/grant", {"principal": "dev-client", "vault": "dev",
                                                      "key": "kek", "permissions": "unwrapKey"})
        st, d = emu.admin("POST", "/admin/keys/disable", {"vault": "dev", "key": "kek"})
        check(st == 200 and d["versions"] == 1, st, d)
        st, _, d = unwrap()
        check(st == 403 and d["error"]["code"] == "Forbidden" and "disabled" in d["error"]["message"], st, d)
        emu.admin("POST", "/admin/keys/enable", {"vault": "dev", "key": "kek"})
        check(unwrap()[0] == 200, "enabled again")
        st, d = emu.admin("POST", "/admin/keys/delete", {"vault": "dev", "key": "kek"})
        check(st == 200 and unwrap()[0] == 404, "deleted")
        emu.admin("POST", "/admin/keys/recover", {"vault": "dev", "key": "kek"})
        check(unwrap()[0] == 200, "recovered")
        st, d = emu.admin("POST", "/admin/tokens/revoke", {"principal": "dev-client"})
        check(st == 200 and d["revoked"] >= 1 and unwrap()[0] == 401, st, d)
        st, d = emu.admin("GET", "/admin/state")
        check(st == 200 and d["vaults"][0]["keys"][0]["name"] == "kek", d)


def case_admin_faults():
    with Emulator(admin=True) as emu:
        tok = emu.token()
        st, d = emu.admin("POST", "/admin/faults", {"latency_ms": 300, "jitter_ms": 50})
        check(st == 200 and d["latency_ms"] == 300, st, d)
        t0 = time.time()
        st, _, _ = emu.request("GET", emu.host(), "/keys" + API, token=tok)
        took = time.time() - t0
        check(st == 200 and 0.3 <= took < 2.0, "latency", took)
        emu.admin("POST", "/admin/faults", {"latency_ms": 0, "jitter_ms": 0, "fail_next": 3, "fail_status": 503})
        codes = [emu.request("GET", emu.host(), "/keys" + API, token=tok)[0] for _ in range(4)]
        check(codes == [503, 503, 503, 200], "503 burst", codes)
        emu.admin("POST", "/admin/faults", {"drop_next": 1})
        try:
            emu.request("GET", emu.host(), "/keys" + API, token=tok)
            check(False, "connection was not dropped")
        except (ConnectionError, OSError, http_client_errors()):
            pass
        check(emu.request("GET", emu.host(), "/keys" + API, token=tok)[0] == 200, "after the drop")
        emu.admin("POST", "/admin/faults", {"error500_rate": 1.0})
        check(emu.request("GET", emu.host(), "/keys" + API, token=tok)[0] == 500, "500 rate")
        st, d = emu.admin("DELETE", "/admin/faults")
        check(st == 200 and d["error500_rate"] == 0, d)
        check(emu.request("GET", emu.host(), "/keys" + API, token=tok)[0] == 200, "faults cleared")
        st, d = emu.admin("POST", "/admin/faults", {"error503_rate": 2})
        check(st == 400, "out of range", st, d)
        # token service is never faulted
        emu.admin("POST", "/admin/faults", {"error503_rate": 1.0})
        emu.token()


def http_client_errors():
    import http.client
    return http.client.HTTPException


def case_state_survives_kill():
    work = __import__("tempfile").mkdtemp(prefix="akv-emu-state-")
    state = os.path.join(work, "state.json")
    emu = Emulator(state=state, workdir=work).start()
    try:
        tok, mtok = emu.token(), emu.token("mhsm")
        k1 = create(emu, tok, "kept", {"kty": "RSA"})
        st, _, k2 = emu.request("POST", emu.host(), "/keys/kept/rotate" + API, None, tok)
        aes = create(emu, mtok, "aes", {"kty": "oct-HSM"}, kind="mhsm")
        create(emu, tok, "dropped", {"kty": "RSA"})
        emu.request("DELETE", emu.host(), "/keys/dropped" + API, token=tok)
        dek = b64u(os.urandom(32))
        _, _, w1 = op(emu, tok, path_of(k1["key"]["kid"]), "wrapkey", "RSA-OAEP-256", dek)
        _, _, wa = op(emu, mtok, path_of(aes["key"]["kid"]), "wrapkey", "A256KW", dek, kind="mhsm")
    finally:
        emu.stop(kill=True)
    check(not os.path.exists(state + ".tmp"), "temp file left behind")
    check(oct(os.stat(state).st_mode & 0o777) == "0o600", "state file mode")
    emu = Emulator(state=state, workdir=work).start()
    try:
        tok, mtok = emu.token(), emu.token("mhsm")
        st, _, d = emu.request("GET", emu.host(), "/keys/kept/versions" + API, token=tok)
        check(st == 200 and sorted(v["kid"].rsplit("/", 1)[1] for v in d["value"]) ==
              sorted([k1["key"]["kid"].rsplit("/", 1)[1], k2["key"]["kid"].rsplit("/", 1)[1]]), st, d)
        st, _, u = op(emu, tok, path_of(k1["key"]["kid"]), "unwrapkey", "RSA-OAEP-256", w1["value"])
        check(st == 200 and u["value"] == dek, "old version unwraps after restart", st, u)
        st, _, u = op(emu, mtok, path_of(aes["key"]["kid"]), "unwrapkey", "A256KW", wa["value"], kind="mhsm")
        check(st == 200 and u["value"] == dek, st, u)
        st, _, d = emu.request("GET", emu.host(), "/deletedkeys/dropped" + API, token=tok)
        check(st == 200, "soft-deleted key stays deleted", st, d)
    finally:
        emu.stop()
        __import__("shutil").rmtree(work, ignore_errors=True)


def case_request_log():
    with Emulator() as emu:
        tok = emu.token()
        k = create(emu, tok, "logged", {"kty": "RSA"})
        dek = b64u(b"0123456789abcdef0123456789abcdef")
        _, _, w = op(emu, tok, path_of(k["key"]["kid"]), "wrapkey", "RSA-OAEP", dek)
        emu.stop()
        log = emu.read_log()
        line = [ln for ln in log.splitlines() if "/wrapkey" in ln]
        check(len(line) == 1 and " POST " in line[0] and " 200 " in line[0] and "principal=dev-client" in line[0]
              and line[0].endswith("ms") and "api-version" not in line[0], line)
        for secret in (tok, "dev-secret", dek, w["value"], k["key"]["n"][:40]):
            check(secret not in log, "log leaks", secret[:12])


DAY = 86400


def advance(emu, seconds):
    st, d = emu.admin("POST", "/admin/clock", {"advance_s": seconds})
    check(st == 200 and d["ok"], "advance", st, d)
    return d


def case_clock():
    with Emulator(admin=True) as emu:
        st, d = emu.admin("GET", "/admin/clock")
        check(st == 200 and d["offset_s"] == 0 and abs(d["now"] - time.time()) < 5, st, d)
        for bad in ({"advance_s": -1}, {"advance_s": "1d"}, {"advance_s": 1.5}, {}):
            st, d = emu.admin("POST", "/admin/clock", bad)
            check(st == 400, "bad advance", bad, st, d)
        tok = emu.token()
        soon = int(time.time()) + 3600
        k = create(emu, tok, "dated", {"kty": "RSA", "attributes": {"exp": soon}})
        kid = path_of(k["key"]["kid"])
        dek = b64u(os.urandom(32))
        st, _, w = op(emu, tok, kid, "wrapkey", "RSA-OAEP-256", dek)
        check(st == 200, st, w)
        d = advance(emu, 2 * 3600)
        check(d["offset_s"] == 7200 and abs(d["now"] - time.time() - 7200) < 5, d)
        # tokens stay on real time (the client checks them on its own clock): the old one still works
        st, _, d = op(emu, tok, kid, "unwrapkey", "RSA-OAEP-256", w["value"])
        check(st == 403 and "expired" in d["error"]["message"], "exp passed on the moved clock", st, d)
        k2 = create(emu, tok, "later", {"kty": "RSA"})
        check(abs(k2["attributes"]["created"] - (time.time() + 7200)) < 5, "created follows the clock", k2)
        # soft-delete retention ends on the moved clock: the key is purged and its name is free
        st, _, d = emu.request("DELETE", emu.host(), "/keys/later" + API, token=tok)
        check(st == 200 and d["scheduledPurgeDate"] - d["deletedDate"] == 90 * DAY, st, d)
        advance(emu, 89 * DAY)
        tok = emu.token()
        st, _, _ = emu.request("GET", emu.host(), "/deletedkeys/later" + API, token=tok)
        check(st == 200, "still recoverable on day 89", st)
        advance(emu, 2 * DAY)
        tok = emu.token()
        st, _, _ = emu.request("GET", emu.host(), "/deletedkeys/later" + API, token=tok)
        check(st == 404, "purged once the retention ended", st)
        create(emu, tok, "later", {"kty": "RSA"})
        st, d = emu.admin("GET", "/admin/clock")
        check(d["offset_s"] == 7200 + 91 * DAY, d)


def policy(rotate=None, notify=None, expiry=None):
    acts = []
    if rotate:
        acts.append({"trigger": rotate, "action": {"type": "Rotate"}})
    if notify:
        acts.append({"trigger": notify, "action": {"type": "Notify"}})
    body = {"lifetimeActions": acts}
    if expiry:
        body["attributes"] = {"expiryTime": expiry}
    return body


def case_rotation_policy():
    with Emulator(admin=True) as emu:
        tok = emu.token()
        k = create(emu, tok, "auto", {"kty": "RSA"})
        path = "/keys/auto/rotationpolicy" + API
        st, _, d = emu.request("GET", emu.host(), path, token=tok)
        check(st == 200 and d["id"].endswith("/keys/auto/rotationpolicy") and d["lifetimeActions"] == [
            {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}], "default policy", st, d)
        bad = [
            (policy(rotate={"timeAfterCreate": "P6D"}), "7 days"),
            (policy(rotate={"timeAfterCreate": "P90D"}, expiry="P27D"), "28 days"),
            (policy(rotate={"timeAfterCreate": "P30D"}, expiry="P35D"), "7 days before the expiry"),
            (policy(rotate={"timeAfterCreate": "P30D", "timeBeforeExpiry": "P30D"}), "exactly one"),
            (policy(rotate={"timeAfterCreate": "90 days"}), "ISO 8601"),
            (policy(notify={"timeBeforeExpiry": "P3D"}), "7 days"),
            (policy(notify={"timeAfterCreate": "P30D"}), "Notify"),
            ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Delete"}}]}, "Rotate"),
        ]
        for body, why in bad:
            st, _, d = emu.request("PUT", emu.host(), path, body, tok)
            check(st == 400 and d["error"]["code"] == "BadParameter" and why in d["error"]["message"], body, st, d)
        good = policy(rotate={"timeAfterCreate": "P90D"}, notify={"timeBeforeExpiry": "P30D"}, expiry="P180D")
        st, _, d = emu.request("PUT", emu.host(), path, good, tok)
        check(st == 200 and d["lifetimeActions"] == good["lifetimeActions"] and
              d["attributes"]["expiryTime"] == "P180D" and d["attributes"]["created"] > 0, st, d)
        st, _, got = emu.request("GET", emu.host(), path, token=tok)
        check(got == d, got, d)
        dek = b64u(os.urandom(32))
        st, _, w = op(emu, tok, path_of(k["key"]["kid"]), "wrapkey", "RSA-OAEP-256", dek)

        def versions():
            st, _, d = emu.request("GET", emu.host(), "/keys/auto/versions" + API, token=emu.token())
            check(st == 200, st, d)
            return d["value"]
        advance(emu, 89 * DAY)
        check(len(versions()) == 1, "no rotation before day 90")
        advance(emu, 2 * DAY)
        vs = versions()
        check(len(vs) == 2, "rotated on day 90", vs)
        tok = emu.token()
        st, _, latest = emu.request("GET", emu.host(), "/keys/auto" + API, token=tok)
        a = latest["attributes"]
        check(latest["key"]["kid"] != k["key"]["kid"] and a["created"] == k["attributes"]["created"] + 90 * DAY and
              a["exp"] == a["created"] + 180 * DAY, "the new version is dated when due, with the policy's expiry", latest)
        st, _, d = op(emu, tok, path_of(k["key"]["kid"]), "unwrapkey", "RSA-OAEP-256", w["value"])
        check(st == 200 and d["value"] == dek, "the old version still unwraps", st, d)
        # a jump over several periods catches up, one version per period
        advance(emu, 3 * 90 * DAY)
        check(len(versions()) == 5, "caught up over 270 days", len(versions()))
        st, d = emu.admin("GET", "/admin/state")
        ko = [k for k in d["vaults"][0]["keys"] if k["name"] == "auto"][0]
        check(ko["rotation_policy"]["attributes"]["expiryTime"] == "P180D" and len(ko["versions"]) == 5 and
              d["clock"]["offset_s"] == 361 * DAY, "admin state shows the policy, versions and clock", d)
        # a rotation by hand also gets the policy's expiryTime
        st, _, r = emu.request("POST", emu.host(), "/keys/auto/rotate" + API, None, emu.token())
        check(st == 200 and r["attributes"]["exp"] == r["attributes"]["created"] + 180 * DAY, st, r)
        # Notify: the service's notice 30 days before exp goes to the emulator's log (no Event Grid here)
        tok = emu.token()
        now = emu.admin("GET", "/admin/clock")[1]["now"]
        create(emu, tok, "ending", {"kty": "RSA", "attributes": {"exp": now + 32 * DAY}})
        st, _, _ = emu.request("PUT", emu.host(), "/keys/ending/rotationpolicy" + API,
                               policy(notify={"timeBeforeExpiry": "P30D"}), tok)
        check(st == 200 and "notify: dev/ending" not in emu.read_log(), st)
        advance(emu, 3 * DAY)
        emu.request("GET", emu.host(), "/keys/ending" + API, token=emu.token())
        check(emu.read_log().count("notify: dev/ending") == 1, "notified once", emu.read_log()[-400:])
        st, _, d = emu.request("GET", emu.host(), "/keys/nope/rotationpolicy" + API, token=emu.token())
        check(st == 404 and d["error"]["code"] == "KeyNotFound", st, d)


def case_state_keeps_policies_clock_backups_and_imports():
    import tempfile
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    dek = os.urandom(32)
    outside = priv.public_key().encrypt(dek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                         algorithm=hashes.SHA256(), label=None))
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "state.json")
        with Emulator(admin=True, state=state) as emu:
            tok = emu.token()
            create(emu, tok, "kept", {"kty": "RSA"})
            st, _, _ = emu.request("PUT", emu.host(), "/keys/kept/rotationpolicy" + API,
                                   policy(rotate={"timeAfterCreate": "P30D"}), tok)
            check(st == 200, st)
            st, _, b = emu.request("POST", emu.host(), "/keys/kept/backup" + API, None, tok)
            check(st == 200, st, b)
            st, _, d = emu.request("PUT", emu.host(), "/keys/byok" + API, {"key": rsa_jwk(priv)}, tok)
            check(st == 200, st, d)
            byok = path_of(d["key"]["kid"])
            advance(emu, 10 * DAY)
        with Emulator(admin=True, state=state) as emu:
            tok = emu.token()
            st, d = emu.admin("GET", "/admin/clock")
            check(d["offset_s"] == 10 * DAY, "the clock's offset survives a restart", d)
            st, _, d = emu.request("GET", emu.host(), "/keys/kept/rotationpolicy" + API, token=tok)
            check(st == 200 and d["lifetimeActions"][0]["trigger"] == {"timeAfterCreate": "P30D"}, st, d)
            st, _, u = op(emu, tok, byok, "unwrapkey", "RSA-OAEP-256", b64u(outside))
            check(st == 200 and unb64u(u["value"]) == dek, "an imported key survives a restart", st, u)
            advance(emu, 21 * DAY)
            st, _, d = emu.request("GET", emu.host(), "/keys/kept/versions" + API, token=tok)
            check(len(d["value"]) == 2, "rotated after the restart", d)
            # the backup secret was kept: a backup from before the restart restores
            emu.request("DELETE", emu.host(), "/keys/kept" + API, token=tok)
            emu.request("DELETE", emu.host(), "/deletedkeys/kept" + API, token=tok)
            st, _, d = emu.request("POST", emu.host(), "/keys/restore" + API, b, tok)
            check(st == 200 and d["key"]["kid"].split("/")[-2] == "kept", "a backup from before the restart", st, d)


def case_backup_restore():
    with Emulator(admin=True) as emu, Emulator() as other:
        tok = emu.token()
        k1 = create(emu, tok, "safe", {"kty": "RSA"})
        dek = b64u(os.urandom(32))
        st, _, w = op(emu, tok, path_of(k1["key"]["kid"]), "wrapkey", "RSA-OAEP-256", dek)
        st, _, k2 = emu.request("POST", emu.host(), "/keys/safe/rotate" + API, None, tok)
        st, _, b = emu.request("POST", emu.host(), "/keys/safe/backup" + API, None, tok)
        check(st == 200 and isinstance(b["value"], str) and "=" not in b["value"], st, b)
        check(k1["key"]["n"] not in b["value"], "the blob is sealed")
        st, _, d = emu.request("POST", emu.host(), "/keys/restore" + API, b, tok)
        check(st == 409 and d["error"]["code"] == "Conflict", "restore over an existing key", st, d)
        emu.request("DELETE", emu.host(), "/keys/safe" + API, token=tok)
        st, _, d = emu.request("POST", emu.host(), "/keys/restore" + API, b, tok)
        check(st == 409, "restore over a soft-deleted key", st, d)
        st, _, _ = emu.request("DELETE", emu.host(), "/deletedkeys/safe" + API, token=tok)
        check(st == 204, st)
        st, _, d = emu.request("POST", emu.host(), "/keys/restore" + API, b, tok)
        check(st == 200 and d["key"]["kid"] == k2["key"]["kid"], "restored, newest version current", st, d)
        st, _, vs = emu.request("GET", emu.host(), "/keys/safe/versions" + API, token=tok)
        check(sorted(v["kid"] for v in vs["value"]) == sorted([k1["key"]["kid"], k2["key"]["kid"]]), vs)
        st, _, d = op(emu, tok, path_of(k1["key"]["kid"]), "unwrapkey", "RSA-OAEP-256", w["value"])
        check(st == 200 and d["value"] == dek, "the restored key unwraps what the original wrapped", st, d)
        # only into this emulator, and only into the kind it came from
        st, _, d = emu.request("POST", emu.host("mhsm"), "/keys/restore" + API, b, emu.token("mhsm"))
        check(st == 400 and d["error"]["code"] == "BadParameter", "vault backup into a managed HSM", st, d)
        st, _, d = other.request("POST", other.host(), "/keys/restore" + API, b, other.token())
        check(st == 400 and "not made by this" in d["error"]["message"], "backup into another emulator", st, d)
        raw = bytearray(unb64u(b["value"]))
        raw[40] ^= 1
        emu.request("DELETE", emu.host(), "/keys/safe" + API, token=tok)
        emu.request("DELETE", emu.host(), "/deletedkeys/safe" + API, token=tok)
        st, _, d = emu.request("POST", emu.host(), "/keys/restore" + API, {"value": b64u(bytes(raw))}, tok)
        check(st == 400, "a damaged blob", st, d)
        st, _, d = emu.request("POST", emu.host(), "/keys/restore" + API, {}, tok)
        check(st == 400, st, d)
        # Managed HSM: an AES key's backup restores and unwraps
        mt = emu.token("mhsm")
        a = create(emu, mt, "aes", {"kty": "oct-HSM", "key_size": 256}, kind="mhsm")
        st, _, w = op(emu, mt, path_of(a["key"]["kid"]), "wrapkey", "A256KW", dek, kind="mhsm")
        st, _, b = emu.request("POST", emu.host("mhsm"), "/keys/aes/backup" + API, None, mt)
        emu.request("DELETE", emu.host("mhsm"), "/keys/aes" + API, token=mt)
        emu.request("DELETE", emu.host("mhsm"), "/deletedkeys/aes" + API, token=mt)
        st, _, d = emu.request("POST", emu.host("mhsm"), "/keys/restore" + API, b, mt)
        check(st == 200, st, d)
        st, _, d = op(emu, mt, path_of(a["key"]["kid"]), "unwrapkey", "A256KW", w["value"], kind="mhsm")
        check(st == 200 and d["value"] == dek, st, d)


def rsa_jwk(key):
    n = key.private_numbers()
    pub = n.public_numbers

    def enc(i):
        return b64u(i.to_bytes((i.bit_length() + 7) // 8, "big"))
    return {"kty": "RSA", "n": enc(pub.n), "e": enc(pub.e), "d": enc(n.d), "p": enc(n.p), "q": enc(n.q),
            "dp": enc(n.dmp1), "dq": enc(n.dmq1), "qi": enc(n.iqmp)}


def case_import_byok():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
    with Emulator() as emu:
        tok = emu.token()
        priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        dek = os.urandom(32)
        outside = priv.public_key().encrypt(dek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                             algorithm=hashes.SHA256(), label=None))
        jwk = rsa_jwk(priv)
        st, _, d = emu.request("PUT", emu.host(), "/keys/byok" + API, {"key": jwk}, tok)
        check(st == 200 and d["key"]["kty"] == "RSA" and d["key"]["n"] == jwk["n"] and "d" not in d["key"], st, d)
        st, _, u = op(emu, tok, path_of(d["key"]["kid"]), "unwrapkey", "RSA-OAEP-256", b64u(outside))
        check(st == 200 and unb64u(u["value"]) == dek, "unwraps what was wrapped outside", st, u)
        st, _, d2 = emu.request("PUT", emu.host(), "/keys/byok" + API, {"key": jwk, "Hsm": True}, tok)
        check(st == 200 and d2["key"]["kty"] == "RSA-HSM" and d2["key"]["kid"] != d["key"]["kid"], st, d2)
        st, _, vs = emu.request("GET", emu.host(), "/keys/byok/versions" + API, token=tok)
        check(len(vs["value"]) == 2, "an import under an existing name adds a version", vs)
        other = rsa_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        for bad in (dict(jwk, d=other["d"]), {k: v for k, v in jwk.items() if k != "qi"}, dict(jwk, p="***")):
            st, _, d = emu.request("PUT", emu.host(), "/keys/bad" + API, {"key": bad}, tok)
            check(st == 400 and d["error"]["code"] == "BadParameter", "bad JWK", st, d)
        small = rsa_jwk(rsa.generate_private_key(public_exponent=65537, key_size=1024))
        st, _, d = emu.request("PUT", emu.host(), "/keys/bad" + API, {"key": small}, tok)
        check(st == 400 and "2048" in d["error"]["message"], st, d)
        k = os.urandom(32)
        st, _, d = emu.request("PUT", emu.host(), "/keys/aes" + API, {"key": {"kty": "oct", "k": b64u(k)}}, tok)
        check(st == 400 and d["error"]["innererror"]["code"] == "KeyTypeNotSupported", "oct on a vault", st, d)
        mt = emu.token("mhsm")
        st, _, d = emu.request("PUT", emu.host("mhsm"), "/keys/aes" + API,
                               {"key": {"kty": "oct-HSM", "k": b64u(k), "key_ops": ["wrapKey", "unwrapKey"]}}, mt)
        check(st == 200 and d["key"]["kty"] == "oct-HSM" and d["key"]["key_ops"] == ["wrapKey", "unwrapKey"] and
              "k" not in d["key"], st, d)
        wrapped = aes_key_wrap_with_padding(k, dek)
        st, _, u = op(emu, mt, path_of(d["key"]["kid"]), "unwrapkey", "CKM_AES_KEY_WRAP_PAD", b64u(wrapped), kind="mhsm")
        check(st == 200 and unb64u(u["value"]) == dek, st, u)
        st, _, d = emu.request("PUT", emu.host("mhsm"), "/keys/aes" + API, {"key": {"kty": "oct", "k": b64u(k[:20])}}, mt)
        check(st == 400, "an AES key of 20 bytes", st, d)


def case_rng():
    with Emulator() as emu:
        mt = emu.token("mhsm")
        for n in (1, 32, 128):
            st, _, d = emu.request("POST", emu.host("mhsm"), "/rng" + API, {"count": n}, mt)
            check(st == 200 and len(unb64u(d["value"])) == n, n, st, d)
        st, _, a = emu.request("POST", emu.host("mhsm"), "/rng" + API, {"count": 32}, mt)
        st, _, b = emu.request("POST", emu.host("mhsm"), "/rng" + API, {"count": 32}, mt)
        check(a["value"] != b["value"], "two draws differ")
        for bad in ({"count": 0}, {"count": 129}, {"count": 1.5}, {}):
            st, _, d = emu.request("POST", emu.host("mhsm"), "/rng" + API, bad, mt)
            check(st == 400 and "1 to 128" in d["error"]["message"], bad, st, d)
        st, _, d = emu.request("POST", emu.host(), "/rng" + API, {"count": 8}, emu.token())
        check(st == 400 and "Managed HSM" in d["error"]["message"], "rng on a vault", st, d)


def case_unsupported_operations():
    with Emulator() as emu:
        tok = emu.token()
        k = create(emu, tok, "rsa", {"kty": "RSA"})
        kid = path_of(k["key"]["kid"])
        for method, path, body in (("POST", kid + "/sign", {"alg": "RS256", "value": b64u(b"x" * 32)}),
                                   ("POST", "/keys/rsa/verify", {"alg": "RS256", "digest": "", "value": ""}),
                                   ("POST", kid + "/release", {"target": "x"}),
                                   ("GET", "/keys/rsa/attestation", None)):
            st, _, d = emu.request(method, emu.host(), path + API, body, tok)
            check(st == 400 and d["error"]["code"] == "BadParameter" and
                  d["error"]["innererror"]["code"] == "OperationNotSupported", path, st, d)
        for kty in ("EC", "EC-HSM"):
            st, _, d = emu.request("POST", emu.host(), "/keys/ec/create" + API, {"kty": kty, "crv": "P-256"}, tok)
            check(st == 400 and d["error"]["innererror"]["code"] == "KeyTypeNotSupported", kty, st, d)


# --- what Azure's own CLI (az 2.45) asks of the emulator --------------------

ARM_SCOPE = "https://management.localhost/.default"  # the cloud's activeDirectoryResourceId, as docs/emulator.md registers it


def msal_app(emu, authority):
    """The MSAL client az builds for a service principal, trusting the emulator's CA."""
    import msal
    os.environ["REQUESTS_CA_BUNDLE"] = emu.ca  # as docs/emulator.md tells az users
    return msal.ConfidentialClientApplication("dev-client", client_credential="dev-secret", authority=authority)


def case_adfs_token_flow():
    with Emulator() as emu:
        base = "https://localhost:%d" % emu.port
        # az login --tenant dev-tenant: a tenant that is not a GUID is resolved under the authority first,
        # and the 4th part of the issuer becomes the tenant az uses ("adfs": discarded for AD FS)
        st, _, d = emu.request("GET", emu.host("login"), "/adfs/dev-tenant/.well-known/openid-configuration")
        check(st == 200 and d["issuer"].split("/")[3] == "adfs", st, d)
        st, _, d = emu.request("GET", emu.host("login"), "/adfs/other-tenant/.well-known/openid-configuration")
        check(st == 400, "another tenant", st, d)
        st, _, d = emu.request("GET", emu.host("login"), "/adfs/.well-known/openid-configuration")
        check(st == 200 and d["token_endpoint"] == base + "/adfs/oauth2/token" and
              d["authorization_endpoint"] == base + "/adfs/oauth2/authorize", st, d)
        # MSAL, as az drives it: an /adfs authority skips Microsoft's instance discovery
        app = msal_app(emu, base + "/adfs")
        arm = app.acquire_token_for_client([ARM_SCOPE])
        check("access_token" in arm, "an ARM token through /adfs", arm)
        vault = app.acquire_token_for_client(["https://vault.localhost:%d/.default" % emu.port])
        check("access_token" in vault, vault)
        st, _, d = emu.request("GET", emu.host(), "/keys" + API, token=vault["access_token"])
        check(st == 200, "the /adfs vault token works on the vault", st, d)
        st, _, d = emu.request("GET", emu.host(), "/keys" + API, token=arm["access_token"])
        check(st == 401, "and the ARM token does not", st, d)
        log = emu.read_log()
        check("GET localhost:%d/adfs/.well-known/openid-configuration 200" % emu.port in log and
              "POST localhost:%d/adfs/oauth2/token 200 principal=dev-client" % emu.port in log, log)
        st, _, d = token_form(emu, grant_type="client_credentials", client_id="dev-client", client_secret="wrong",
                              scope=ARM_SCOPE)
        check(st == 401 and d["error"] == "invalid_client", st, d)


def case_arm_lists():
    with Emulator() as emu:
        arm = msal_app(emu, "https://localhost:%d/adfs" % emu.port).acquire_token_for_client([ARM_SCOPE])
        tok = arm["access_token"]
        # az login lists subscriptions (and, for users, tenants) with the ARM token
        for path in ("/subscriptions", "/tenants"):
            st, _, d = emu.request("GET", emu.host("login"), path + "?api-version=2022-12-01", token=tok)
            check(st == 200 and d["value"] == [], path, st, d)
            st, h, d = emu.request("GET", emu.host("login"), path + "?api-version=2022-12-01")
            check(st == 401 and d["error"]["code"] == "AuthenticationFailed" and
                  "authorization_uri=" in h.get("www-authenticate", ""), path, "without a token", st, h, d)
            st, _, d = emu.request("GET", emu.host("login"), path + "?api-version=2022-12-01", token=emu.token())
            check(st == 401, path, "with a vault token", st, d)
            st, _, d = emu.request("GET", emu.host("login"), path, token=tok)
            check(st == 400 and d["error"]["code"] == "MissingApiVersionParameter", path, st, d)


def case_cached_token_survives_restart():
    import shutil
    import tempfile
    work = tempfile.mkdtemp(prefix="akv-emu-tok-")
    state = os.path.join(work, "state.json")
    try:
        emu = Emulator(admin=True, state=state, workdir=work).start()
        try:
            vt, mt = emu.token(), emu.token("mhsm")
            create(emu, vt, "kept", {"kty": "RSA"})
            other = emu.token(client="dev-client")
        finally:
            emu.stop(kill=True)
        # the tokens az and the SDKs cached before the restart are still good after it
        emu = Emulator(admin=True, state=state, workdir=work, port=emu.port).start()
        try:
            st, _, d = emu.request("GET", emu.host(), "/keys/kept" + API, token=vt)
            check(st == 200, "a cached vault token after a restart with --state", st, d)
            st, _, d = emu.request("GET", emu.host("mhsm"), "/keys" + API, token=mt)
            check(st == 200, "a cached Managed HSM token", st, d)
            st, _, d = emu.request("GET", emu.host("mhsm"), "/keys" + API, token=vt)
            check(st == 401, "still bound to its audience", st, d)
            # a revocation ends every token issued before it, and stays in force over a restart
            st, d = emu.admin("POST", "/admin/tokens/revoke", {"principal": "dev-client"})
            check(st == 200, st, d)
            for tok in (vt, other):
                st, _, d = emu.request("GET", emu.host(), "/keys/kept" + API, token=tok)
                check(st == 401 and "AKV10032" in d["error"]["message"], "revoked", st, d)
            fresh = emu.token()
        finally:
            emu.stop()
        emu = Emulator(admin=True, state=state, workdir=work, port=emu.port).start()
        try:
            st, _, _ = emu.request("GET", emu.host(), "/keys/kept" + API, token=vt)
            check(st == 401, "a revoked token stays revoked after a restart", st)
            st, _, d = emu.request("GET", emu.host(), "/keys/kept" + API, token=fresh)
            check(st == 200, "one issued after the revocation works", st, d)
        finally:
            emu.stop()
        # without --state a restart is a new service: it forgot its keys, and its tokens with them
        with Emulator() as emu:
            tok = emu.token()
            emu.stop()
            emu.start()
            st, _, d = emu.request("GET", emu.host(), "/keys" + API, token=tok)
            check(st == 401 and "AKV10032" in d["error"]["message"], "without --state", st, d)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def case_disabled_key_inner_error():
    with Emulator(admin=True) as emu:
        tok = emu.token()
        k = create(emu, tok, "off", {"kty": "RSA"})
        kid = path_of(k["key"]["kid"])
        emu.admin("POST", "/admin/keys/disable", {"vault": "dev", "key": "off"})
        for st, _, d in (emu.request("GET", emu.host(), kid + API, token=tok),
                         op(emu, tok, kid, "wrapkey", "RSA-OAEP-256", b64u(os.urandom(32)))):
            check(st == 403 and d["error"]["code"] == "Forbidden" and
                  d["error"]["innererror"]["code"] == "KeyDisabled" and "disabled" in d["error"]["message"], st, d)


def case_transfer_blob_refused():
    with Emulator() as emu:
        tok = emu.token()
        # what az keyvault key import --byok-file sends: the key wrapped for an HSM's key exchange key
        blob = {"kid": "https://dev.vault.localhost/keys/kek/0123", "kty": "RSA-HSM", "key_ops": ["unwrapKey"],
                "t": b64u(os.urandom(600))}
        st, _, d = emu.request("PUT", emu.host(), "/keys/byok" + API, {"key": blob}, tok)
        check(st == 400 and d["error"]["innererror"]["code"] == "OperationNotSupported" and
              "transfer blob" in d["error"]["message"] and "not supported" in d["error"]["message"], st, d)
        mt = emu.token("mhsm")
        st, _, d = emu.request("PUT", emu.host("mhsm"), "/keys/byok" + API,
                               {"key": {"kty": "oct-HSM", "t": b64u(os.urandom(100))}}, mt)
        check(st == 400 and "transfer blob" in d["error"]["message"], st, d)


def case_oversize_rsa_refused_before_validation():
    with Emulator() as emu:
        tok = emu.token()
        # a 16,384-bit modulus with parts that belong to no key: refused for its size, so it was never validated
        # (validating a real one took 30 s, with every other request waiting)
        n = (1 << 16383) | int.from_bytes(os.urandom(2048), "big")
        junk = b64u(os.urandom(1024))
        jwk = {"kty": "RSA", "n": b64u(n.to_bytes(2048, "big")), "e": "AQAB", "d": junk, "p": junk, "q": junk,
               "dp": junk, "dq": junk, "qi": junk}
        st, _, d = emu.request("PUT", emu.host(), "/keys/huge" + API, {"key": jwk}, tok)
        check(st == 400 and d["error"]["code"] == "BadParameter" and "16384" in d["error"]["message"] and
              "2048, 3072 or 4096" in d["error"]["message"], st, d)
        # a leading zero byte does not make a 2,048-bit modulus bigger
        from cryptography.hazmat.primitives.asymmetric import rsa
        good = rsa_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        good["n"] = b64u(b"\0" + unb64u(good["n"]))
        st, _, d = emu.request("PUT", emu.host(), "/keys/fine" + API, {"key": good}, tok)
        check(st == 200, st, d)


def versions_of(emu, name):
    st, d = emu.admin("GET", "/admin/state")
    check(st == 200, st, d)
    return len([k for k in d["vaults"][0]["keys"] if k["name"] == name][0]["versions"])


def case_served_during_key_generation():
    import threading
    with Emulator(admin=True) as emu:
        tok = emu.token()
        create(emu, tok, "busy", {"kty": "RSA", "key_size": 2048})
        create(emu, tok, "idle", {"kty": "RSA"})
        st, _, d = emu.request("PUT", emu.host(), "/keys/busy/rotationpolicy" + API,
                               policy(rotate={"timeAfterCreate": "P7D"}), tok)
        check(st == 200, st, d)
        # a jump over 20 rotation periods: the catch-up makes 20 RSA keys, each a while
        done = {}
        t = threading.Thread(target=lambda: done.update(
            r=emu.admin("POST", "/admin/clock", {"advance_s": 20 * 7 * DAY}, timeout=300)))
        t.start()
        wait_for(lambda: "rotation policy: rotated dev/busy" in emu.read_log(), 60, "the first rotation")
        # while the catch-up runs, a token, a key of the same vault and the admin's view are all answered...
        fresh = emu.token()
        st, _, d = emu.request("GET", emu.host(), "/keys/idle" + API, token=fresh)
        check(st == 200, "a request during the catch-up", st, d)
        during = versions_of(emu, "busy")
        # ...and that view shows the catch-up half done: they did not wait for it to end
        t.join(300)
        check(not t.is_alive() and done["r"][0] == 200, "the clock advance ended", done)
        after = versions_of(emu, "busy")
        check(1 < during < after == 21, "answered during the catch-up", during, after)


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    CASES[sys.argv[1]]()
    print("ok:", sys.argv[1])
