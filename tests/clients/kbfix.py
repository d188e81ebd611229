"""kbfix: the real brokers the client tests talk to, for pytest and for Go.

softhsm(root, extra): a fresh SoftHSM token (scripts/softhsm-token) and the
real keybrokerd on a temp socket, with keys rsa (RSA-OAEP) and aes (AES-KWP),
through tests/integration/kbtest. azure(root, extra): the real akv-emulator
over TLS (tests/azure/azfix) and keybrokerd with its vault key az (RSA) and
Managed HSM key hsm (AES). Nothing is mocked.

Run as a program (`kbfix.py softhsm|azure [BROKER_EXTRA]`), it starts one,
prints one JSON line {"socket": ..., ...} and then obeys commands on stdin,
one a line, answering each with one JSON line: stop, start, admin PATH JSON
(the emulator's admin endpoint), rest METHOD PATH JSON, emu-stop, quit. The Go tests
drive it so.
"""
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
for sub in ("integration", "emulator", "azure"):
    sys.path.insert(0, os.path.join(TESTS, sub))
sys.path.insert(0, os.path.join(os.path.dirname(TESTS), "client", "python"))

import kbtest  # noqa: E402
from kbtest import Broker, Token  # noqa: E402

AZ_CONF = """
[key:vault.kv.gone]
kty = RSA
size = 2048
"""


def softhsm(root, extra=""):
    return Broker(root, Token(root), broker_extra=extra)


def azure(root, extra=""):
    import azfix
    emu = azfix.Emu(root, extra_config=AZ_CONF)
    keys = (azfix.key_section(emu, "az", root=root, timeout="2s") +
            azfix.key_section(emu, "hsm", kind="mhsm", key="aes", root=root, timeout="2s"))
    b = azfix.broker(root, keys, broker_extra=extra)
    b.emu = emu
    return b


def stop_all():
    """Stops every daemon and emulator started here (by their objects, never by name)."""
    for p in kbtest.STARTED:
        if p.poll() is None:
            p.kill()
            p.wait()
    try:
        import azfix
        for emu in azfix._live:
            emu.stop()
    except ImportError:
        pass


def serve(kind, extra):
    root = tempfile.mkdtemp(prefix="kbfix-")
    b = softhsm(root, extra) if kind == "softhsm" else azure(root, extra)
    out = {"socket": b.sock, "root": root}
    if kind == "azure":
        out["az_url"] = b.emu.url("vault")
    print(json.dumps(out), flush=True)
    for line in sys.stdin:
        cmd = line.split(" ", 2)
        try:
            if cmd[0].strip() == "stop":
                b.stop()
                r = {"ok": True}
            elif cmd[0].strip() == "start":
                b.start()
                r = {"ok": True}
            elif cmd[0].strip() == "emu-stop":
                b.emu.stop()
                r = {"ok": True}
            elif cmd[0] == "admin":
                r = {"ok": True, "data": b.emu.admin(cmd[1], json.loads(cmd[2]))}
            elif cmd[0] == "rest":
                method, path, body = line.split(" ", 3)[1:]
                r = {"ok": True, "data": b.emu.rest(method, "vault", path, json.loads(body))}
            elif cmd[0].strip() == "quit":
                break
            else:
                r = {"ok": False, "error": "unknown command %r" % line}
        except Exception as e:  # the Go test reads the failure
            r = {"ok": False, "error": str(e)}
        print(json.dumps(r), flush=True)
    stop_all()
    import shutil
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
