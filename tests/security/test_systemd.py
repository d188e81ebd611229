#!/usr/bin/env python3
"""The shipped systemd units: systemd-analyze verify, the hardening they promise, and the
daemon's side of the contract (socket activation, READY=1 / STATUS= / STOPPING=1)."""
import os
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sectest import KEYBROKERD, Broker, Conn, Token, check, run, wait_for  # noqa: E402

UNITS = os.environ.get("KB_SYSTEMD_DIR", os.path.join(os.environ.get("KB_BUILD_ROOT", "build"), "systemd"))
INSTALLED = os.environ.get("KB_INSTALLED_KEYBROKERD", "/usr/local/sbin/keybrokerd")


def units_for_verify(root):
    """The configured units, with ExecStart pointing at the built daemon: verify needs it to exist."""
    out = os.path.join(root, "units")
    os.mkdir(out)
    for name in ("keybrokerd.service", "keybrokerd.socket"):
        with open(os.path.join(UNITS, name)) as f:
            text = f.read()
        check("@" + "sbindir@" not in text, "%s has its paths filled in" % name)
        if name.endswith(".service"):
            check("ExecStart=%s " % INSTALLED in text, "ExecStart names the installed %s" % INSTALLED)
            text = text.replace("ExecStart=%s " % INSTALLED, "ExecStart=%s " % KEYBROKERD)
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
    return out


def directives(path):
    d = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[" or "=" not in line:
                continue
            k, v = line.split("=", 1)
            d.setdefault(k.strip(), []).append(v.strip())
    return d


def units_pass_systemd_analyze_verify(root):
    out = units_for_verify(root)
    p = subprocess.run(["systemd-analyze", "verify", "--man=no",
                        os.path.join(out, "keybrokerd.socket"), os.path.join(out, "keybrokerd.service")],
                       capture_output=True, timeout=60, cwd=out)
    text = (p.stdout + p.stderr).decode(errors="replace")
    check(p.returncode == 0, "systemd-analyze verify failed (%d):\n%s" % (p.returncode, text))
    check(text.strip() == "", "systemd-analyze verify warned:\n%s" % text)
    # verify is not blind: a unit whose ExecStart is missing fails it
    bad = os.path.join(out, "keybrokerd.service")
    with open(bad) as f:
        text = f.read().replace("ExecStart=%s " % KEYBROKERD, "ExecStart=/nonexistent/keybrokerd ")
    with open(bad, "w") as f:
        f.write(text)
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", os.path.join(out, "keybrokerd.socket"), bad],
                       capture_output=True, timeout=60, cwd=out)
    check(p.returncode != 0, "verify catches a missing ExecStart")


def units_carry_the_hardening(root):
    svc = directives(os.path.join(UNITS, "keybrokerd.service"))
    want = {
        "Type": "notify",
        "User": "keybroker",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "MemoryDenyWriteExecute": "yes",
        "CapabilityBoundingSet": "CAP_IPC_LOCK",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "RuntimeDirectory": "keybroker",
        "LimitCORE": "0",
    }
    for k, v in want.items():
        check(svc.get(k) == [v], "keybrokerd.service: %s=%s, found %s" % (k, v, svc.get(k)))
    check("LimitMEMLOCK" in svc, "keybrokerd.service sets LimitMEMLOCK")
    check(set(svc.get("AmbientCapabilities", ["CAP_IPC_LOCK"])) <= {"CAP_IPC_LOCK"},
          "no ambient capability beyond CAP_IPC_LOCK: %s" % svc.get("AmbientCapabilities"))
    check(any("kill -HUP $MAINPID" in v for v in svc.get("ExecReload", [])), "ExecReload sends SIGHUP")
    check("DynamicUser" not in svc or svc["DynamicUser"] == ["no"], "a static user (see the unit's comment)")
    sock = directives(os.path.join(UNITS, "keybrokerd.socket"))
    check(sock.get("ListenStream") == ["/run/keybroker/keybroker.sock"], "socket path: %s" % sock.get("ListenStream"))
    check(sock.get("SocketMode") == ["0660"], "socket mode 0660")
    check(sock.get("SocketGroup"), "socket group set")
    check(sock.get("SocketGroup") != ["keybroker"], "clients' group is not the broker's own (it reads the PIN)")


def socket_activation_and_notify(root):
    """keybrokerd takes the socket systemd passes, tells systemd READY=1 and STATUS=, STOPPING=1
    on SIGTERM, and leaves the socket file to systemd."""
    token = Token(root)
    kb = Broker(root, token, start=False)
    notify_path = os.path.join(root, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(0.2)
    env = dict(kb.env)
    env["NOTIFY_SOCKET"] = notify_path
    logf = open(kb.log, "ab")
    proc = subprocess.Popen(["systemd-socket-activate", "-l", kb.sock,
                             "-E", "SOFTHSM2_CONF", "-E", "NOTIFY_SOCKET",
                             KEYBROKERD, "-c", kb.conf], env=env, stdout=logf, stderr=logf)
    kb.proc = proc
    from sectest import STARTED
    STARTED.append(proc)
    got = []

    def drain():
        while True:
            try:
                got.append(notify.recv(4096).decode())
            except socket.timeout:
                return

    def saw(word):
        drain()
        return any(word in m for m in got)

    # like systemd, systemd-socket-activate starts the daemon on the first connection
    # the socket file exists from bind(); it takes connections once the tool says it listens
    wait_for(lambda: "Listening on" in kb.log_text(), 10, "systemd-socket-activate to listen")
    c = Conn(kb.sock)
    check(c.call({"op": "status"})["ok"], "the first client is served on the passed socket")
    c.close()
    wait_for(lambda: saw("READY=1") or proc.poll() is not None, 30, "READY=1")
    check(proc.poll() is None, "keybrokerd exited: %s" % kb.log_text())
    check(any("STATUS=" in m for m in got), "a STATUS= line: %s" % got)
    check("socket activation" in kb.log_text(), "the log says it took systemd's socket")
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=30)
    logf.close()
    check(rc == 0, "exit 0 on SIGTERM, got %d" % rc)
    check(saw("STOPPING=1"), "STOPPING=1 sent: %s" % got)
    check(os.path.exists(kb.sock), "the socket systemd made is left to systemd")


if __name__ == "__main__":
    run(globals())
