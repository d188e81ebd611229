#!/usr/bin/env python3
"""Broker core on a real SoftHSM token: round trips, rotation, errors, interop."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kbtest import (KEYBROKERD, Broker, Conn, Token, b64, blob_fields, check, make_blob, run, unb64)  # noqa: E402

KEYS = ("rsa", "aes")


def setup(root, **kw):
    token = Token(root)
    return token, Broker(root, token, **kw)


def wrap_unwrap_round_trip(root):
    _, kb = setup(root)
    sizes = {"rsa": (1, 16, 32, 64, 190, 214), "aes": (8, 16, 24, 32, 64, 1024)}
    for key in KEYS:
        for n in sizes[key]:
            pt = os.urandom(n)
            w = kb.ok({"op": "wrap", "key": key, "plaintext": b64(pt)})
            check(w["key"] == key and w["version"] == "01", "wrap fields: %s" % w)
            f = blob_fields(w["blob"])
            check(f["key"] == key and f["version"] == "01", "blob fields: %s" % f)
            u = kb.ok({"op": "unwrap", "blob": w["blob"]})
            check(unb64(u["plaintext"]) == pt, "%s: plaintext differs after round trip" % key)
            check(u["key"] == key and u["version"] == "01", "unwrap fields: %s" % u)
    r = kb.err({"op": "wrap", "key": "rsa", "plaintext": b64(os.urandom(215))}, "bad_request")
    check("214" in r["error"]["message"], "the message gives the maximum: %s" % r["error"])
    # SoftHSM 2.6.1 returns RFC 5649 unwraps with their padding, so odd sizes are refused up front
    r = kb.err({"op": "wrap", "key": "aes", "plaintext": b64(os.urandom(5))}, "bad_request")
    check("multiple" in r["error"]["message"], "the message says why: %s" % r["error"])
    check(kb.stop() == 0, "keybrokerd did not exit 0 on SIGTERM")


def cli_round_trip(root):
    _, kb = setup(root)
    for key in KEYS:
        pt = os.urandom(32)
        w = kb.cli("wrap", key, input=pt, check_rc=0)
        blob = w.stdout.decode().strip()
        check(blob.startswith("kb2:%s:01:" % key), "cli wrap printed %r" % blob)
        u = kb.cli("unwrap", blob, check_rc=0)
        check(u.stdout == pt, "cli unwrap returned other bytes")
        u = kb.cli("unwrap", input=(blob + "\n").encode(), check_rc=0)
        check(u.stdout == pt, "cli unwrap from stdin returned other bytes")
    s = kb.cli("--json", "status", check_rc=0)
    check(b'"ok":true' in s.stdout, "status --json: %r" % s.stdout)
    bad = kb.cli("unwrap", "kb1:nope", check_rc=1)
    check(b"bad_blob" in bad.stderr, "cli error names the code: %r" % bad.stderr)


def datakey_then_unwrap(root):
    _, kb = setup(root)
    for key in KEYS:
        for bits in (128, 256, 512):
            d = kb.ok({"op": "datakey", "key": key, "bits": bits})
            pt = unb64(d["plaintext"])
            check(len(pt) == bits // 8, "datakey length %d for %d bits" % (len(pt), bits))
            kb.ok({"op": "flush"})  # make the unwrap reach the token
            u = kb.ok({"op": "unwrap", "blob": d["blob"]})
            check(unb64(u["plaintext"]) == pt and u["cached"] is False, "datakey blob unwraps to its DEK")
        d = kb.ok({"op": "datakey", "key": key})
        check(len(unb64(d["plaintext"])) == 32, "default datakey is 256 bits")


def rotate_keeps_old_versions(root):
    _, kb = setup(root)
    for key in KEYS:
        pt = os.urandom(32)
        old = kb.ok({"op": "wrap", "key": key, "plaintext": b64(pt)})["blob"]
        r = kb.ok({"op": "rotate", "key": key})
        check(r["version"] == "02", "rotate made version %s" % r["version"])
        g = kb.ok({"op": "get", "key": key})
        check(g["latest"] == "02" and [v["version"] for v in g["versions"]] == ["01", "02"],
              "get after rotate: %s" % g)
        new = kb.ok({"op": "wrap", "key": key, "plaintext": b64(pt)})
        check(new["version"] == "02" and blob_fields(new["blob"])["version"] == "02",
              "new wraps use the new version")
        kb.ok({"op": "flush"})
        check(unb64(kb.ok({"op": "unwrap", "blob": old})["plaintext"]) == pt, "old blob still unwraps")
        check(unb64(kb.ok({"op": "unwrap", "blob": new["blob"]})["plaintext"]) == pt, "new blob unwraps")
        r = kb.cli("rotate", key, check_rc=0)
        check(b"03" in r.stdout, "cli rotate prints the new version: %r" % r.stdout)


def rewrap_moves_to_latest(root):
    _, kb = setup(root)
    pt = os.urandom(32)
    old = kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(pt)})["blob"]
    kb.ok({"op": "rotate", "key": "aes"})
    r = kb.ok({"op": "rewrap", "blob": old})
    check(r["version"] == "02" and "plaintext" not in r, "rewrap answer: %s" % r)
    check(unb64(kb.ok({"op": "unwrap", "blob": r["blob"]})["plaintext"]) == pt, "rewrapped blob unwraps")
    # rewrap across keys: an AES-wrapped DEK moves to the RSA key
    x = kb.ok({"op": "rewrap", "blob": old, "key": "rsa"})
    check(blob_fields(x["blob"])["key"] == "rsa", "rewrap to another key")
    kb.ok({"op": "flush"})
    check(unb64(kb.ok({"op": "unwrap", "blob": x["blob"]})["plaintext"]) == pt, "cross-key rewrap unwraps")


def unknown_key_and_version(root):
    token, kb = setup(root)
    kb.err({"op": "wrap", "key": "nope", "plaintext": b64(b"x")}, "unknown_key")
    kb.err({"op": "get", "key": "nope"}, "unknown_key")
    ct = blob_fields(kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(b"k" * 32)})["blob"])["ct"]
    kb.err({"op": "unwrap", "blob": make_blob("aes", "7f", "AES-KWP", ct)}, "unknown_version")
    kb.err({"op": "unwrap", "blob": make_blob("other", "01", "AES-KWP", ct)}, "unknown_key")


def oaep256_unsupported_on_softhsm(root):
    _, kb = setup(root)
    r = kb.err({"op": "wrap", "key": "rsa", "alg": "RSA-OAEP-256", "plaintext": b64(b"k" * 32)},
               "mechanism_unsupported")
    check("SHA-1" in r["error"]["message"], "message names what the token can do: %s" % r["error"])
    ct = blob_fields(kb.ok({"op": "wrap", "key": "rsa", "plaintext": b64(b"k" * 32)})["blob"])["ct"]
    kb.err({"op": "unwrap", "blob": make_blob("rsa", "01", "RSA-OAEP-256", ct)}, "mechanism_unsupported")


def tampered_blob_is_bad_blob(root):
    _, kb = setup(root)
    for key in KEYS:
        blob = kb.ok({"op": "wrap", "key": key, "plaintext": b64(b"s" * 32)})["blob"]
        f = blob_fields(blob)
        ct = bytearray(f["ct"])
        ct[len(ct) // 2] ^= 1
        # a consistent blob around an altered ciphertext: only the wrap itself can tell
        kb.err({"op": "unwrap", "blob": make_blob(key, "01", f["alg"], bytes(ct), f["fp"])}, "bad_blob")
        kb.err({"op": "unwrap", "blob": blob[:-3]}, "bad_blob")
        kb.err({"op": "unwrap", "blob": blob[:-1] + ("A" if blob[-1] != "A" else "B")}, "bad_blob")


def interop_pkcs11_tool_decrypts_broker_blob(root):
    token, kb = setup(root)
    pt = os.urandom(32)
    ct = blob_fields(kb.ok({"op": "wrap", "key": "rsa", "plaintext": b64(pt)})["blob"])["ct"]
    ctf, ptf = os.path.join(root, "ct.bin"), os.path.join(root, "pt.bin")
    with open(ctf, "wb") as f:
        f.write(ct)
    token.tool("--decrypt", "-m", "RSA-PKCS-OAEP", "--hash-algorithm", "SHA-1", "--mgf", "MGF1-SHA1",
               "--label", "rsa-kek", "--input-file", ctf, "--output-file", ptf)
    with open(ptf, "rb") as f:
        check(f.read() == pt, "pkcs11-tool recovered another DEK than the broker wrapped")


def interop_broker_unwraps_openssl_ciphertext(root):
    _, kb = setup(root)
    pem = kb.ok({"op": "get", "key": "rsa"})["public_key_pem"]
    pemf, ptf, ctf = (os.path.join(root, n) for n in ("pub.pem", "pt.bin", "ct.bin"))
    pt = os.urandom(32)
    with open(pemf, "w") as f:
        f.write(pem)
    with open(ptf, "wb") as f:
        f.write(pt)
    subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", pemf, "-in", ptf, "-out", ctf,
                    "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha1"], check=True)
    with open(ctf, "rb") as f:
        ct = f.read()
    u = kb.ok({"op": "unwrap", "blob": make_blob("rsa", "01", "RSA-OAEP", ct)})
    check(unb64(u["plaintext"]) == pt, "broker recovered another DEK than openssl wrapped")


def golden_blobs_unwrap(root):
    """Blobs written by release 0.1 (kb1) and later (kb2) under known imported keys must unwrap forever."""
    token = Token(root)
    golden = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")
    for name, typ in (("rsa-kek.der", "privkey"), ("rsa-kek.pub.der", "pubkey")):
        token.tool("--write-object", os.path.join(golden, name), "--type", typ,
                   "--label", "golden-rsa", "--id", "01", "--usage-decrypt")
    token.tool("--write-object", os.path.join(golden, "aes-kek.bin"), "--type", "secrkey",
               "--key-type", "AES:32", "--label", "golden-aes", "--id", "01", "--usage-decrypt", "--usage-wrap")
    keys = (token.key_section("golden-rsa", "golden-rsa", "RSA-OAEP") +
            token.key_section("golden-aes", "golden-aes", "AES-KWP"))
    kb = Broker(root, token, keys=keys)
    with open(os.path.join(golden, "e2e-blobs.txt")) as f:
        lines = [l.split() for l in f if l.strip() and not l.startswith("#")]
    check(len(lines) >= 2, "golden file has blobs")
    for blob, want in lines:
        u = kb.ok({"op": "unwrap", "blob": blob})
        check(u["plaintext"] == want, "golden blob %s... unwrapped to another DEK" % blob[:30])


def check_mode_validates(root):
    token = Token(root)
    kb = Broker(root, token, start=False)
    p = subprocess.run([KEYBROKERD, "-c", kb.conf, "--check"], env=kb.env, capture_output=True)
    check(p.returncode == 0, "--check on a good config exits 0: %s" % p.stderr.decode())
    check(b"key rsa: ok" in p.stdout and b"key aes: ok" in p.stdout, "--check lists keys: %r" % p.stdout)
    bad = Broker(root, token, start=False, rsa_extra="colour = blue")
    p = subprocess.run([KEYBROKERD, "-c", bad.conf, "--check"], env=kb.env,
                       capture_output=True)
    err = p.stderr.decode()
    check(p.returncode == 1 and "keybrokerd.conf:" in err and "colour" in err and "unknown option" in err,
          "--check names file, line and option: %r" % err)
    missing = Broker(root, token, start=False, keys=token.key_section("gone", "no-such-label", "AES-KWP"))
    p = subprocess.run([KEYBROKERD, "-c", missing.conf, "--check"], env=kb.env,
                       capture_output=True)
    check(p.returncode == 1 and b"no-such-label" in p.stderr, "--check names a missing key: %r" % p.stderr)


def bad_config_stops_startup(root):
    token = Token(root)
    kb = Broker(root, token, start=False, broker_extra="cache_ttl = 5 minutes")
    rc = kb.start(expect_fail=True)
    log = kb.log_text()
    check(rc != 0 and "keybrokerd.conf:" in log and "cache_ttl" in log, "startup error: %r" % log)


def sigterm_removes_socket(root):
    _, kb = setup(root)
    check(os.path.exists(kb.sock), "socket exists while serving")
    check(kb.stop() == 0, "exit 0 on SIGTERM")
    check(not os.path.exists(kb.sock), "socket removed on exit")


def stale_socket_replaced_live_refused(root):
    token, kb = setup(root)
    second = Broker(root, token, start=False)
    rc = second.start(expect_fail=True)
    check(rc != 0 and "already serving" in second.log_text(), "a live socket is refused")
    kb.kill()  # leaves the socket file behind
    check(os.path.exists(kb.sock), "SIGKILL leaves a stale socket")
    third = Broker(root, token)
    check(third.ok({"op": "status"})["ok"], "a stale socket is replaced")
    check("stale" in third.log_text(), "the log says the stale socket was replaced")


def bad_input_keeps_serving(root):
    _, kb = setup(root, broker_extra="max_request_bytes = 4096")

    def still_serves():
        pt = os.urandom(32)
        blob = kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(pt)})["blob"]
        check(unb64(kb.ok({"op": "unwrap", "blob": blob})["plaintext"]) == pt, "normal request after bad input")

    cases = [
        (b"{not json\n", "bad_request"),
        (b"[1,2]\n", "bad_request"),
        (b'{"id":1}\n', "bad_request"),
        (b'{"id":1,"op":"launch"}\n', "unknown_op"),
        (b'{"id":1,"op":"wrap","key":7,"plaintext":"AA=="}\n', "bad_request"),
        (b'{"id":1,"op":"wrap","key":"aes"}\n', "bad_request"),
        (b'{"id":1,"op":"wrap","key":"aes","plaintext":"***"}\n', "bad_request"),
        (b'{"id":1,"op":"wrap","key":"aes","plaintext":""}\n', "bad_request"),
        (b'{"id":1,"op":"unwrap","blob":12}\n', "bad_request"),
        (b'{"id":1,"op":"datakey","key":"aes","bits":"256"}\n', "bad_request"),
        (b'{"id":1,"op":"unwrap","blob":"kb1:garbage"}\n', "bad_blob"),
        (b"\x00\xff\xfe\n", "bad_request"),
    ]
    for raw, code in cases:
        c = Conn(kb.sock)
        c.send_raw(raw)
        r = c.read_line()
        check(r["ok"] is False and r["error"]["code"] == code, "%r -> %s, want %s" % (raw, r, code))
        # the same connection keeps working after a bad line
        check(c.call({"op": "status"})["ok"], "connection usable after %r" % raw)
        c.close()
        still_serves()
    # a line over the limit is refused as it grows, and only that connection is closed
    c = Conn(kb.sock)
    c.send_raw(b'{"op":"status","pad":"' + b"x" * 8192)
    r = c.read_line()
    check(r["error"]["code"] == "too_large", "over-limit line: %s" % r)
    c.close()
    still_serves()
    # closed mid-line
    c = Conn(kb.sock)
    c.send_raw(b'{"op":"wrap","key":"aes","plain')
    c.close()
    still_serves()
    # 1,000 garbage connections
    for i in range(1000):
        c = Conn(kb.sock)
        c.send_raw(os.urandom(64).replace(b"\n", b" ") + (b"\n" if i % 2 else b""))
        c.close()
    still_serves()
    check(kb.proc.poll() is None, "keybrokerd still running")


def pipelined_requests_match_by_id(root):
    _, kb = setup(root)
    c = kb.conn()
    blobs = {}
    for i in range(50):
        pt = os.urandom(32)
        blobs[i] = (pt, kb.ok({"op": "wrap", "key": "rsa" if i % 2 else "aes", "plaintext": b64(pt)})["blob"])
    for i in range(50):
        c.send({"id": "r%d" % i, "op": "unwrap", "blob": blobs[i][1]})
    seen = set()
    for _ in range(50):
        r = c.read_line()
        i = int(r["id"][1:])
        check(unb64(r["plaintext"]) == blobs[i][0], "pipelined answer %s matches its request" % r["id"])
        seen.add(i)
    check(len(seen) == 50, "every pipelined request answered once")


def half_closed_client_gets_its_answers(root):
    """A client that sends its requests and then shuts down its sending side (as
    `echo ... | socat - UNIX-CONNECT:...` does in docs/protocol.md) still gets every answer,
    including those that wait for the token."""
    import socket as sk
    _, kb = setup(root)
    blob = kb.ok({"op": "wrap", "key": "rsa", "plaintext": b64(b"k" * 32)})["blob"]
    kb.ok({"op": "flush"})
    c = Conn(kb.sock)
    c.send({"id": 1, "op": "datakey", "key": "aes"})
    c.send({"id": 2, "op": "unwrap", "blob": blob})
    c.send({"id": 3, "op": "status"})
    c.s.shutdown(sk.SHUT_WR)
    got = {c.read_line()["id"] for _ in range(3)}
    check(got == {1, 2, 3}, "every answer arrives after the half-close: %s" % got)
    check(c.s.recv(1) == b"", "then the broker closes")
    p = subprocess.run(["socat", "-", "UNIX-CONNECT:" + kb.sock],
                       input=b'{"id":9,"op":"datakey","key":"rsa"}\n', capture_output=True, timeout=30)
    check(b'"id":9,"ok":true' in p.stdout, "the socat example of docs/protocol.md works: %r" % p.stdout)


def libkeybroker_round_trip(root):
    _, kb = setup(root)
    exe = os.environ["KB_LIBKB_TEST"]
    p = subprocess.run([exe, kb.sock], capture_output=True, timeout=120)
    check(p.returncode == 0, "libkeybroker test failed: %s %s" % (p.stdout.decode(), p.stderr.decode()))


def concurrent_mixed_clients(root):
    import random
    import threading
    _, kb = setup(root, broker_extra="max_connections = 64")
    errors = []

    def client(n):
        rnd = random.Random(n)
        c = kb.conn()
        mine = []
        try:
            for i in range(500):
                key = "rsa" if (n + i) % 2 else "aes"
                op = rnd.choice(("wrap", "unwrap", "unwrap", "datakey", "rewrap")) if mine else "wrap"
                if op == "wrap":
                    pt = os.urandom(32)
                    r = c.call({"op": "wrap", "key": key, "plaintext": b64(pt)})
                    if r.get("ok"):
                        mine.append((pt, r["blob"]))
                elif op == "datakey":
                    r = c.call({"op": "datakey", "key": key})
                    if r.get("ok"):
                        mine.append((unb64(r["plaintext"]), r["blob"]))
                elif op == "rewrap":
                    pt, blob = rnd.choice(mine)
                    r = c.call({"op": "rewrap", "blob": blob})
                    if r.get("ok"):
                        mine.append((pt, r["blob"]))
                else:
                    pt, blob = rnd.choice(mine)
                    r = c.call({"op": "unwrap", "blob": blob})
                    if r.get("ok") and unb64(r["plaintext"]) != pt:
                        errors.append("client %d: wrong plaintext" % n)
                if not r.get("ok"):
                    errors.append("client %d op %s: %s" % (n, op, r.get("error")))
        except Exception as e:  # noqa: BLE001
            errors.append("client %d: %r" % (n, e))
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, "%d errors, first: %s" % (len(errors), errors[:3]))
    s = kb.status()["counters"]
    check(s["requests"] >= 32 * 500, "counters saw every request: %s" % s)


if __name__ == "__main__":
    run(globals())
