"""An Azure key whose vault is down at startup is an outage, not a config error
(issue 25, item 3): keybrokerd starts, serves its PKCS#11 key, answers the Azure
key's requests backend_unavailable with the cause, names it in status, /readyz and
doctor, and serves it by itself once the vault answers. Real emulator over TLS,
real SoftHSM token, real daemon; every wait is on a condition."""
import http.client
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import azfix  # noqa: E402
from azfix import Emu, check, free_port  # noqa: E402
import kbtest  # noqa: E402
from kbtest import Token, b64, wait_for  # noqa: E402


def key_state(b, name):
    for k in b.status()["keys"]:
        if k["name"] == name:
            return k
    raise kbtest.Failure("no key %s in status" % name)


def readyz(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/readyz")
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r.status, body


def startup_with_dead_vault_serves_pkcs11_and_azure_comes_up(root):
    emu = Emu(root)          # started once for its CA and fixed ports, then stopped: the vault is down
    emu.stop()
    tok = Token(root)
    mport = free_port()
    keys = (tok.key_section("p11", "rsa-kek", "RSA-OAEP") +
            azfix.key_section(emu, "az", root=root, timeout="1s", max_retries=1))
    b = kbtest.Broker(root, tok, keys=keys, broker_extra="metrics_listen = 127.0.0.1:%d\nhealth_interval = 1s" % mport)

    # the PKCS#11 key is served meanwhile
    w = b.ok({"op": "wrap", "key": "p11", "plaintext": b64(b"p" * 32)})
    check(b.ok({"op": "unwrap", "blob": w["blob"], "cache": False})["plaintext"] == b64(b"p" * 32),
          "the PKCS#11 key round-trips while the vault is down")
    # the Azure key is marked unavailable with its cause, and its requests say so
    k = key_state(b, "az")
    check(k["available"] is False and "no answer" in k["unavailable"], "status marks az unavailable: %s" % k)
    check(key_state(b, "p11")["available"] is True, "status marks p11 available")
    r = b.err({"op": "wrap", "key": "az", "plaintext": b64(b"a" * 32)}, "backend_unavailable")
    check("az" in r["error"]["message"] and "no answer" in r["error"]["message"],
          "the refusal names the key and the cause: %s" % r["error"])
    # /readyz is not ready and names the key that is down
    # (until its first check, the PKCS#11 key is named "not checked yet": wait for the check to pass)
    st, body = wait_for(lambda: (lambda s: s if s[0] == 503 and "key p11" not in s[1] else None)(readyz(mport)),
                        30, "/readyz naming only the keys that are not ready, p11 checked")
    check("key az: unavailable: backend_unavailable" in body, "/readyz names key az as unavailable: %s" % body)
    # doctor explains the state
    d = b.cli("doctor", "az")
    out = d.stdout.decode() + d.stderr.decode()
    check("unavailable" in out and "retries by itself" in out, "doctor explains the outage: %s" % out)
    check("is unavailable; serving the other keys" in b.log_text(), "the outage is logged")

    # the vault comes back: the key is served without a restart or a reload
    emu.start()
    wait_for(lambda: key_state(b, "az")["available"], 60, "key az available once the vault answers")
    w = b.ok({"op": "wrap", "key": "az", "plaintext": b64(b"a" * 32)})
    check(b.ok({"op": "unwrap", "blob": w["blob"], "cache": False})["plaintext"] == b64(b"a" * 32),
          "the Azure key round-trips once its vault is back")
    wait_for(lambda: readyz(mport)[0] == 200, 30, "/readyz ok once every key is served")
    check(b.log_text().count("its key service is back") == 1, "the key coming back is logged once")
    check(b.proc.poll() is None, "keybrokerd kept running")


def check_and_reload_accept_a_dead_vault(root):
    emu = Emu(root)
    emu.stop()
    tok = Token(root)
    keys = (tok.key_section("p11", "rsa-kek", "RSA-OAEP") +
            azfix.key_section(emu, "az", root=root, timeout="1s", max_retries=1))
    b = kbtest.Broker(root, tok, keys=keys, start=False)
    c = subprocess.run([kbtest.KEYBROKERD, "-c", b.conf, "--check"], env=b.env, capture_output=True)
    out = c.stdout.decode()
    check(c.returncode == 0, "--check accepts a config whose vault is down: %s %s" % (out, c.stderr.decode()))
    check("key az: UNAVAILABLE" in out and "key p11: ok" in out, "--check says which key is down: %s" % out)
    b.start()
    b.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: reloaded" in b.log_text() or "SIGHUP: the new config is refused" in b.log_text(),
             60, "the reload is judged")
    check("SIGHUP: reloaded" in b.log_text(), "SIGHUP is accepted while the vault is down:\n" + b.log_text())
    b.ok({"op": "wrap", "key": "p11", "plaintext": b64(b"p" * 32)})


azfix.run(globals())
