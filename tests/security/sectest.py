"""sectest: what the security tests add to kbtest's fixtures (it changes none).

- kbtest remembers every plaintext a test sends or receives through Conn,
  and every token PIN (kbtest.SECRETS). When a test ends, run() searches
  every log the test left (the daemon's log, audit logs) for them in raw,
  base64, base64url and hex forms. So each security test also checks that
  no secret reached a log.
- Peers as another user: as_peer() runs a small client under setpriv.
- Memory of the daemon: vmrss() and vmhwm() read /proc/PID/status.
- Cleanup kills only the processes this test started, by pid.
"""
import base64
import binascii
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from kbtest import (KEYBROKERD, SECRETS, STARTED, _MIN_SECRET, Broker, Conn, Failure, Token, b64,  # noqa: E402,F401
                    begin, check, remember, remember_b64, unb64, wait_for)

def forms(secret):
    """The ways a secret could be spelled in a log."""
    b = base64.b64encode(secret)
    out = {secret, b, b.rstrip(b"="), base64.urlsafe_b64encode(secret).rstrip(b"="),
           binascii.hexlify(secret), binascii.hexlify(secret).upper()}
    return {f for f in out if len(f) >= _MIN_SECRET}


def log_files(root):
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".log") or ".log." in f or f.startswith("audit"):
                yield os.path.join(dirpath, f)


def scan_for_secrets(root, secrets=None):
    """Fails if any secret, in any form, appears in any log under root."""
    secrets = SECRETS if secrets is None else secrets
    if not secrets:
        return
    wanted = set()
    for s in secrets:
        wanted |= forms(s)
    for path in log_files(root):
        with open(path, "rb") as f:
            data = f.read()
        for w in wanted:
            check(w not in data, "a secret (%r...) appears in %s" % (w[:6], os.path.basename(path)))


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise Failure("no %s in /proc/%d/status" % (field, pid))


def vmrss(pid):
    return proc_status(pid, "VmRSS")


def vmhwm(pid):
    return proc_status(pid, "VmHWM")


def audit_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


# A client for as_peer(): it runs as another user, so it is self-contained.
_PEER = r'''
import json, socket, sys
path, reqs = sys.argv[1], json.loads(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(path)
buf, out = b"", []
def line():
    global buf
    while b"\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None
        buf += d
    l, buf = buf.split(b"\n", 1)
    return json.loads(l)
if not reqs:
    out.append(line())
for i, r in enumerate(reqs):
    r["id"] = i + 1
    try:
        s.sendall(json.dumps(r).encode() + b"\n")
    except OSError:
        pass  # a refused peer: what the broker said first is still to read
    try:
        a = line()
    except OSError:
        a = None
    out.append(a)
    if a is None:
        break
# after the last answer: is the connection still open?
s.settimeout(0.3)
try:
    d = s.recv(1)
    out.append("eof" if d == b"" else "data")
except socket.timeout:
    out.append("open")
except OSError:
    out.append("eof")
print(json.dumps({"pid": __import__("os").getpid(), "answers": out}))
'''


def as_peer(sock, reqs, user="nobody", group="nogroup"):
    """Runs reqs, one at a time, on one connection as another user.

    Returns (pid, answers): one answer per request (None if the connection
    closed first) and then "eof" or "open" for the state after the last.
    With no requests, reads what the broker sends unasked. The plaintexts
    sent and received are remembered as secrets."""
    for r in reqs:
        if isinstance(r.get("plaintext"), str):
            remember_b64(r["plaintext"])
    p = subprocess.run(["setpriv", "--reuid", user, "--regid", group, "--clear-groups",
                        sys.executable, "-c", _PEER, sock, json.dumps(reqs)],
                       capture_output=True, timeout=60, cwd="/")
    check(p.returncode == 0, "peer as %s failed: %s" % (user, p.stderr.decode(errors="replace")))
    res = json.loads(p.stdout)
    for a in res["answers"]:
        if isinstance(a, dict) and isinstance(a.get("plaintext"), str):
            remember_b64(a["plaintext"])
    return res["pid"], res["answers"]


def shareable(root):
    """Lets another user reach the socket in root (the directory stays unwritable by others)."""
    os.chmod(root, 0o711)


def run(tests):
    """Runs the test function named in argv[1] in a fresh temp dir, then
    searches every log it left for the secrets it saw."""
    name, fn, root = begin(tests, "kbsec-")
    failed = False
    try:
        fn(root)
        for p in STARTED:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
        scan_for_secrets(root)
    except Exception:
        import traceback
        failed = True
        traceback.print_exc()
        for path in log_files(root):
            print("---- %s ----" % os.path.relpath(path, root))
            with open(path, "rb") as fh:
                print(fh.read().decode(errors="replace")[-6000:])
    finally:
        for p in STARTED:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(root, ignore_errors=True)
    if failed:
        sys.exit(1)
    print("ok: %s (%d secrets checked absent from the logs)" % (name, len(SECRETS)))
