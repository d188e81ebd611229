#!/usr/bin/env python3
"""SIGHUP reloads keys and policy without dropping connections; a bad new config is refused
and the old one stays in force."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sectest import Broker, Conn, Token, as_peer, b64, check, run, shareable, unb64, wait_for  # noqa: E402

SHARED = "socket_mode = 0660\nsocket_group = nogroup\n"


def rewrite(root, token, **kw):
    """Writes a new keybrokerd.conf in root (the running daemon's file) without starting one."""
    Broker(root, token, start=False, **kw)


def hup(kb):
    kb.proc.send_signal(signal.SIGHUP)


def sighup_adds_a_key_without_dropping_connections(root):
    token = Token(root)
    only_rsa = token.key_section("rsa", "rsa-kek", "RSA-OAEP")
    kb = Broker(root, token, keys=only_rsa)
    c = Conn(kb.sock)
    pt = os.urandom(32)
    blobs = [c.call({"op": "wrap", "key": "rsa", "plaintext": b64(os.urandom(32))})["blob"] for _ in range(40)]
    rsa_blob = c.call({"op": "wrap", "key": "rsa", "plaintext": b64(pt)})["blob"]
    r = c.call({"op": "wrap", "key": "aes", "plaintext": b64(pt)})
    check(r["ok"] is False and r["error"]["code"] == "unknown_key", "no aes key yet: %s" % r)
    c.call({"op": "flush"})
    rewrite(root, token)  # rsa and aes
    # requests in flight while the reload happens are all answered
    for i, b in enumerate(blobs):
        c.send({"id": "p%d" % i, "op": "unwrap", "blob": b})
    hup(kb)
    answers = [c.read_line() for _ in blobs]
    check(all(a["ok"] for a in answers), "requests in flight across SIGHUP: %s" %
          [a for a in answers if not a["ok"]][:3])

    def aes_works():
        r = c.call({"op": "wrap", "key": "aes", "plaintext": b64(pt)})
        return r["ok"] and r

    w = wait_for(aes_works, 10, "the aes key after SIGHUP, on the same connection")
    check(unb64(c.call({"op": "unwrap", "blob": w["blob"]})["plaintext"]) == pt, "the new key unwraps")
    check(unb64(c.call({"op": "unwrap", "blob": rsa_blob})["plaintext"]) == pt, "the old key still unwraps")
    check(kb.proc.poll() is None, "the daemon kept running")
    names = sorted(k["name"] for k in c.call({"op": "status"})["keys"])
    check(names == ["aes", "rsa"], "status lists the reloaded keys: %s" % names)
    # and a key removed by a reload is gone for new requests, while its blobs are refused cleanly
    rewrite(root, token, keys=token.key_section("aes", "aes-kek", "AES-KWP"))
    hup(kb)
    wait_for(lambda: c.call({"op": "get", "key": "rsa"}).get("ok") is False, 10, "rsa removed by SIGHUP")
    r = c.call({"op": "unwrap", "blob": rsa_blob})
    check(r["ok"] is False and r["error"]["code"] == "unknown_key", "a removed key's blob: %s" % r)
    check(c.call({"op": "unwrap", "blob": w["blob"]})["ok"], "aes still unwraps")


def bad_config_on_sighup_is_refused_and_the_old_stays(root):
    token = Token(root)
    kb = Broker(root, token, broker_extra="cache_ttl = 60s\n")
    c = Conn(kb.sock)
    pt = os.urandom(32)
    blob = c.call({"op": "wrap", "key": "aes", "plaintext": b64(pt)})["blob"]
    bad_configs = [
        dict(broker_extra="colour = blue\n"),                          # unknown option
        dict(broker_extra="cache_ttl = five minutes\n"),               # bad value
        dict(aes_extra="allow_unwrap = no-such-user-kb\n"),            # unknown user in a policy
        dict(keys=token.key_section("aes", "aes-kek", "AES-KWP") + "[key:bad name]\nbackend = pkcs11\n"),
    ]
    for n, bad in enumerate(bad_configs):
        before = len(kb.log_text())
        rewrite(root, token, **bad)
        hup(kb)
        word = ["colour", "cache_ttl", "no-such-user-kb", "bad name"][n]
        wait_for(lambda: word in kb.log_text()[before:], 10, "the refused config (%s) in the log" % word)
        # the old config is in force, on the same connection and on new ones
        check(unb64(c.call({"op": "unwrap", "blob": blob})["plaintext"]) == pt, "old keys still unwrap")
        check(kb.ok({"op": "wrap", "key": "rsa", "plaintext": b64(pt)})["version"] == "01", "old keys still wrap")
        check(kb.status()["cache"]["ttl_s"] == 60, "the old cache_ttl is in force")
        check(kb.proc.poll() is None, "the daemon survived a bad config")
    # a good config after bad ones is taken
    rewrite(root, token, broker_extra="cache_ttl = 90s\n")
    hup(kb)
    wait_for(lambda: kb.status()["cache"]["ttl_s"] == 90, 10, "the good config after bad ones")
    check(c.call({"op": "unwrap", "blob": blob})["ok"], "same connection still served")


def sighup_reloads_policy(root):
    shareable(root)
    token = Token(root)
    kb = Broker(root, token, broker_extra=SHARED + "allow_uids = root nobody\n")
    pt = os.urandom(32)
    blob = kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(pt)})["blob"]
    _, a = as_peer(kb.sock, [{"op": "unwrap", "blob": blob}])
    check(a[0]["ok"], "nobody unwraps before the reload: %s" % a)
    # narrow aes unwrap to root
    rewrite(root, token, broker_extra=SHARED + "allow_uids = root nobody\n", aes_extra="allow_unwrap = root\n")
    hup(kb)

    def narrowed():
        _, a = as_peer(kb.sock, [{"op": "unwrap", "blob": blob}])
        return a[0].get("ok") is False and a[0]["error"]["code"] == "permission_denied"

    wait_for(narrowed, 10, "allow_unwrap from the reloaded config", step=0.2)
    _, a = as_peer(kb.sock, [{"op": "wrap", "key": "aes", "plaintext": b64(pt)}])
    check(a[0]["ok"], "nobody still wraps: %s" % a)
    # drop nobody from the broker: new connections are refused
    rewrite(root, token, broker_extra=SHARED + "allow_uids = root\n")
    hup(kb)

    def refused():
        _, a = as_peer(kb.sock, [])
        return isinstance(a[0], dict) and a[0]["error"]["code"] == "permission_denied"

    wait_for(refused, 10, "allow_uids from the reloaded config", step=0.2)
    check(unb64(kb.ok({"op": "unwrap", "blob": blob})["plaintext"]) == pt, "root still served")


def sigterm_after_sighup_removes_the_socket(root):
    token = Token(root)
    kb = Broker(root, token)
    for n in range(1, 4):
        hup(kb)
        wait_for(lambda: kb.log_text().count("SIGHUP: reloaded") == n, 10, "reload %d in the log" % n)
    kb.ok({"op": "status"})
    check(kb.stop() == 0, "SIGTERM after SIGHUP exits 0")
    # the server keeps its own copy of the path: the config it came from was freed by the reload
    check(not os.path.exists(kb.sock), "the socket is gone after SIGTERM: %s" % os.listdir(root))
    check("no longer accepting" in kb.log_text(), "the stop was the graceful one")


if __name__ == "__main__":
    run(globals())
