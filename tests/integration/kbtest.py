"""kbtest: fixtures for keybroker's integration tests.

Everything here is real: a fresh SoftHSMv2 token made in a temp dir by
scripts/softhsm-token, the real keybrokerd on a temp socket, and the real
keybroker CLI. Each test script calls run(globals()) and names one test
function on its command line (meson registers one test() per function).

Every fixture records what a test may need to check afterwards, for all
tests alike: SECRETS holds each plaintext sent or received through Conn and
each token PIN (tests/security searches the logs for them), STARTED each
daemon process started (so cleanup kills only those, by pid).
"""
import binascii
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("KB_SOURCE_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("KB_BUILD_ROOT", os.path.join(SRC, "build"))
KEYBROKERD = os.environ.get("KB_KEYBROKERD", os.path.join(BUILD, "keybrokerd"))
CLI = os.environ.get("KB_CLI", os.path.join(BUILD, "keybroker"))
MODULE = os.environ.get("KB_SOFTHSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")

SECRETS = set()          # bytes: plaintexts seen on the wire and PINs
STARTED = []             # Popen objects of the daemons this test started
_MIN_SECRET = 8          # shorter values match by chance in any log


def free_port():
    """A TCP port on loopback that nothing listens on now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Failure(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def b64(data):
    return base64.b64encode(data).decode()


def unb64(s):
    return base64.b64decode(s, validate=True)


def remember(secret):
    """Records a secret (str or bytes) for the log searches; short ones are ignored."""
    if isinstance(secret, str):
        secret = secret.encode()
    if secret and len(secret) >= _MIN_SECRET:
        SECRETS.add(bytes(secret))


def remember_b64(s):
    """Records the secret that s encodes in base64, if it is base64."""
    try:
        remember(unb64(s))
    except (binascii.Error, ValueError, TypeError):
        pass


def wait_for(cond, timeout, what, step=0.05):
    """Polls cond() until it returns something true, and returns that; fails after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Failure("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(step)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def make_blob(key, version, alg, ct, fp=None):
    """Builds a blob as docs/protocol.md defines it: format 2 with a fingerprint, else format 1."""
    if fp:
        head = "kb2:%s:%s:%s:%s:%s:" % (key, version, fp, alg, b64url(ct))
    else:
        head = "kb1:%s:%s:%s:%s:" % (key, version, alg, b64url(ct))
    return head + b64url(hashlib.sha256(head.encode()).digest()[:6])


def blob_fields(blob):
    """The fields of a kb1 or kb2 blob (fp is None for kb1)."""
    parts = blob.split(":")
    if len(parts) == 7 and parts[0] == "kb2":
        return {"key": parts[1], "version": parts[2], "fp": parts[3], "alg": parts[4], "ct": unb64url(parts[5])}
    check(len(parts) == 6 and parts[0] == "kb1", "not a kb1 or kb2 blob: %r" % blob)
    return {"key": parts[1], "version": parts[2], "fp": None, "alg": parts[3], "ct": unb64url(parts[4])}


class Token:
    """A fresh SoftHSM token: RSA-2048 rsa-kek and AES-256 aes-kek, CKA_ID 01."""

    def __init__(self, root, label="kbtest"):
        self.dir = os.path.join(root, "token")
        self.label = label
        subprocess.run([os.path.join(SRC, "scripts", "softhsm-token"), self.dir, label],
                       check=True, stdout=subprocess.DEVNULL)
        self.conf = os.path.join(self.dir, "softhsm2.conf")
        self.pin_file = os.path.join(self.dir, "user.pin")
        with open(self.pin_file) as f:
            self.pin = f.read().strip()
        remember(self.pin)
        with open(os.path.join(self.dir, "so.pin")) as f:
            remember(f.read().strip())

    def env(self):
        e = dict(os.environ)
        e["SOFTHSM2_CONF"] = self.conf
        return e

    def tool(self, *args, check_rc=True):
        """Runs pkcs11-tool logged in to this token; the PIN goes through the environment."""
        env = self.env()
        env["KB_TEST_PIN"] = self.pin
        cmd = ["pkcs11-tool", "--module", MODULE, "--token-label", self.label,
               "--login", "--pin", "env:KB_TEST_PIN"] + list(args)
        p = subprocess.run(cmd, env=env, capture_output=True)
        if check_rc and p.returncode != 0:
            raise Failure("pkcs11-tool %s failed: %s" % (" ".join(args), p.stderr.decode()))
        return p

    def key_section(self, name, label, alg, extra=""):
        return ("[key:%s]\nbackend = pkcs11\nmodule = %s\nuri = pkcs11:token=%s;object=%s\n"
                "pin_file = %s\nalg = %s\n%s\n" % (name, MODULE, self.label, label, self.pin_file, alg, extra))


class Broker:
    """keybrokerd on a temp socket, with the rsa and aes keys of a Token."""

    def __init__(self, root, token, broker_extra="", keys=None, rsa_extra="", aes_extra="",
                 start=True, env=None, prefix=None):
        self.root = root
        self.token = token
        self.sock = os.path.join(root, "kb.sock")
        self.conf = os.path.join(root, "keybrokerd.conf")
        self.log = os.path.join(root, "keybrokerd.log")
        if keys is None:
            keys = (token.key_section("rsa", "rsa-kek", "RSA-OAEP", rsa_extra) +
                    token.key_section("aes", "aes-kek", "AES-KWP", aes_extra))
        with open(self.conf, "w") as f:
            f.write("[broker]\nsocket = %s\nworkers = 2\nlog_level = debug\n%s\n\n%s" %
                    (self.sock, broker_extra, keys))
        self.env = token.env() if token else dict(os.environ)
        if env:
            self.env.update(env)
        self.prefix = prefix or []
        self.proc = None
        if start:
            self.start()

    def start(self, expect_fail=False):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.prefix + [KEYBROKERD, "-c", self.conf], env=self.env,
                                     stdout=self.logf, stderr=self.logf)
        STARTED.append(self.proc)
        if expect_fail:
            rc = self.proc.wait(timeout=30)
            self.logf.close()
            return rc
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise Failure("keybrokerd exited with %d:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                c = Conn(self.sock)
                c.call({"op": "status"})
                c.close()
                return None
            except OSError:
                time.sleep(0.05)
        raise Failure("keybrokerd did not answer within 30 s:\n" + self.log_text())

    def log_text(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    def conn(self):
        return Conn(self.sock)

    def call(self, req):
        c = Conn(self.sock)
        try:
            return c.call(req)
        finally:
            c.close()

    def ok(self, req):
        r = self.call(req)
        check(r.get("ok") is True, "expected ok for %s, got %s" % (req.get("op"), r))
        return r

    def err(self, req, code):
        r = self.call(req)
        check(r.get("ok") is False, "expected %s for %s, got ok: %s" % (code, req.get("op"), r))
        check(r["error"]["code"] == code, "expected %s, got %s" % (code, r["error"]))
        check(len(r["error"]["message"]) > 10, "error message too thin: %s" % r["error"])
        return r

    def status(self):
        return self.ok({"op": "status"})

    def backend_calls(self, key, op="unwrap"):
        text = self.ok({"op": "metrics"})["text"]
        want = 'keybroker_backend_calls_total{key="%s",op="%s"} ' % (key, op)
        for line in text.splitlines():
            if line.startswith(want):
                return int(float(line[len(want):]))
        raise Failure("no metric line %r" % want)

    def cli(self, *args, input=None, check_rc=None):
        env = dict(self.env)
        env["KEYBROKER_SOCKET"] = self.sock
        p = subprocess.run([CLI] + list(args), input=input, env=env, capture_output=True, timeout=60)
        if check_rc is not None and p.returncode != check_rc:
            raise Failure("keybroker %s exited %d (want %d): %s" %
                          (" ".join(args), p.returncode, check_rc, p.stderr.decode(errors="replace")))
        return p

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("keybrokerd did not stop on %s" % sig)
        self.logf.close()
        return rc

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.logf.close()


class Conn:
    """One connection speaking protocol v1, with pipelining."""

    def __init__(self, path, timeout=60):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        for attempt in range(200):
            try:
                self.s.connect(path)
                break
            except BlockingIOError:
                # the listen backlog is full for a moment: a client waits, as any would
                time.sleep(0.01)
        else:
            raise OSError("connect %s: backlog stayed full" % path)
        self.buf = b""
        self.next_id = 1

    def send_raw(self, data):
        self.s.sendall(data)

    def read_line(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("connection closed by keybrokerd")
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        r = json.loads(line)
        if isinstance(r, dict) and isinstance(r.get("plaintext"), str):
            remember_b64(r["plaintext"])
        return r

    def send(self, req):
        if isinstance(req, dict) and isinstance(req.get("plaintext"), str):
            remember_b64(req["plaintext"])
        req = dict(req)
        if "id" not in req:
            req["id"] = self.next_id
            self.next_id += 1
        self.s.sendall(json.dumps(req).encode() + b"\n")
        return req["id"]

    def call(self, req):
        rid = self.send(req)
        r = self.read_line()
        check(r.get("id") == rid, "response id %r for request id %r" % (r.get("id"), rid))
        return r

    def close(self):
        self.s.close()


def write_atomic(path, text):
    """Replaces path with text whole, so a reader (a preloaded shim) never sees half of it."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class ShimControl:
    """kbshim's control file (tests/shim): set() writes the mode the shim reads on each call."""

    def __init__(self, path):
        self.path = path
        self.set("ok")

    def set(self, mode):
        write_atomic(self.path, mode + "\n")


def begin(tests, prefix):
    """The name in argv[1], its test function and a fresh private temp dir for it;
    an unknown name exits 2, so a misspelt registration fails."""
    name = sys.argv[1]
    fn = tests.get(name)
    if fn is None:
        print("no test named %s" % name)
        sys.exit(2)
    root = tempfile.mkdtemp(prefix=prefix)
    os.chmod(root, 0o700)
    return name, fn, root


def run(tests):
    """Runs the test function named in argv[1] in a fresh temp dir."""
    name, fn, root = begin(tests, "kbtest-")
    try:
        fn(root)
    except Exception:
        import traceback
        traceback.print_exc()
        for dirpath, _, files in os.walk(root):
            for f in files:
                if f.endswith(".log"):
                    print("---- %s ----" % f)
                    with open(os.path.join(dirpath, f), "rb") as fh:
                        print(fh.read().decode(errors="replace")[-6000:])
        sys.exit(1)
    finally:
        subprocess.run(["pkill", "-f", "-KILL", os.path.join(root, "keybrokerd.conf")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)
    print("ok: %s" % name)
