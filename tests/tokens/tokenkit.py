"""tokenkit: real PKCS#11 tokens other than a local SoftHSM, each started by the test.

- P11KitRemote: a SoftHSM token behind `p11-kit server`, reached through
  p11-kit-client.so with P11_KIT_SERVER_ADDRESS (the usual way to reach an HSM
  in another container or host).
- Tpm: tpm2-pkcs11 on a software TPM (`swtpm socket --tpm2`), token and RSA key
  made with pkcs11-tool, state under the test's temp dir. By default behind a
  resource manager (tpm2-abrmd on a private D-Bus), as on a real host where
  /dev/tpmrm0 is one: swtpm holds 3 loaded objects, and tpm2-pkcs11 keeps its
  primary, the token's seal object and each used key loaded, so creating a
  key in a process that has used one needs objects swapped out.

- ShimToken: a SoftHSM token seen through kbshim (tests/shim), which refuses
  key generation templates on command (strict_templates, refuse_generate).

Each object stops what it started (by its own pid) in stop().
"""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from kbtest import MODULE, Failure, ShimControl, Token, check  # noqa: E402

P11_MODULE_DIR = os.environ.get("KB_P11_MODULE_DIR", "/usr/lib/x86_64-linux-gnu/pkcs11")
CLIENT_MODULE = os.path.join(P11_MODULE_DIR, "p11-kit-client.so")
PROXY_MODULE = os.environ.get("KB_P11_PROXY_MODULE", "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so")
TPM_MODULE = os.path.join(P11_MODULE_DIR, "libtpm2_pkcs11.so")


def wait_until(what, ready, proc, log, timeout=30):
    """Polls ready() until true; fails at once if proc died, or after timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise Failure("%s exited with %d:\n%s" % (what, proc.returncode, read(log)))
        if ready():
            return
        time.sleep(0.02)
    raise Failure("%s not ready within %d s:\n%s" % (what, timeout, read(log)))


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]
    except OSError:
        return ""


def connects(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.connect(addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port_pair():
    """Two consecutive free loopback ports N, N+1 (swtpm's server and control)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            n = a.getsockname()[1]
            if n >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", n + 1))
                except OSError:
                    continue
        return n
    raise Failure("no two consecutive free ports")


def stop_proc(p):
    if p is not None and p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


SHIM = os.environ.get("KB_SHIM", "")


class ShimToken(Token):
    """A SoftHSM token (scripts/softhsm-token) through kbshim; set() writes the shim's mode atomically."""

    module = SHIM
    kind = "kbshim"

    def __init__(self, root, label="kbtest"):
        super().__init__(root, label)
        check(os.path.exists(SHIM), "KB_SHIM names no built kbshim: %r" % SHIM)
        self.shim = ShimControl(os.path.join(root, "shim.control"))
        self.control = self.shim.path

    def set(self, mode):
        self.shim.set(mode)

    def env(self):
        e = Token.env(self)
        e["KB_SHIM_CONTROL"], e["KB_SHIM_MODULE"] = self.control, MODULE
        return e

    def stop(self):
        pass


class P11KitRemote(Token):
    """A SoftHSM token (scripts/softhsm-token) served by p11-kit server on a Unix socket."""

    module = CLIENT_MODULE
    kind = "p11-kit remoting"

    def __init__(self, root, label="kbtest"):
        super().__init__(root, label)
        self.addr_path = os.path.join(root, "p11-kit.sock")
        self.address = "unix:path=" + self.addr_path
        log = os.path.join(root, "p11-kit-server.log")
        env = Token.env(self)
        self.logf = open(log, "ab")
        self.proc = subprocess.Popen(["p11-kit", "server", "-f", "-n", self.addr_path, "--provider", MODULE,
                                      "pkcs11:token=" + label], env=env, stdout=self.logf, stderr=self.logf)
        try:
            wait_until("p11-kit server", lambda: connects(socket.AF_UNIX, self.addr_path), self.proc, log)
        except BaseException:
            self.stop()
            raise

    def env(self):
        # the client needs only the server's address: no SoftHSM config on this side
        e = dict(os.environ)
        e.pop("SOFTHSM2_CONF", None)
        e["P11_KIT_SERVER_ADDRESS"] = self.address
        return e

    def stop(self):
        stop_proc(self.proc)
        self.logf.close()


BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy>
</busconfig>
"""


class Tpm:
    """tpm2-pkcs11 on swtpm: token `label` with an RSA-2048 key rsa-kek, CKA_ID 01.
    rm=True puts tpm2-abrmd between them (on a D-Bus of the test's own); rm=False talks to
    swtpm directly, as a host without a resource manager would."""

    module = TPM_MODULE
    kind = "tpm2-pkcs11"

    def __init__(self, root, label="kbtpm", rm=True):
        self.label = label
        self.dir = os.path.join(root, "tpm")
        state, self.store = os.path.join(self.dir, "state"), os.path.join(self.dir, "store")
        os.makedirs(state)
        os.makedirs(self.store)
        self.port = free_port_pair()
        self.procs, self.logs = [], []
        try:
            self.start(root, state, label, rm)
        except BaseException:
            self.stop()  # what started before the failure stops with it
            raise

    def start(self, root, state, label, rm):
        self.proc = self.spawn(root, "swtpm", [
            "swtpm", "socket", "--tpm2", "--server", "type=tcp,port=%d,bindaddr=127.0.0.1" % self.port,
            "--ctrl", "type=tcp,port=%d,bindaddr=127.0.0.1" % (self.port + 1),
            "--flags", "not-need-init,startup-clear", "--tpmstate", "dir=" + state])
        for port in (self.port, self.port + 1):
            wait_until("swtpm port %d" % port, lambda p=port: connects(socket.AF_INET, ("127.0.0.1", p)),
                       self.proc, self.logs[-1])
        self.tcti = "swtpm:port=%d" % self.port
        self.bus = None
        if rm:
            self.start_resource_manager(root)
        self.so_pin = os.urandom(8).hex()
        self.pin = os.urandom(8).hex()
        self.pin_file = os.path.join(self.dir, "user.pin")
        fd = os.open(self.pin_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (self.pin + "\n").encode())
        os.close(fd)
        self.p11("--init-token", "--label", label, "--so-pin", "env:KB_SO_PIN", token=False)
        self.p11("--login", "--login-type", "so", "--so-pin", "env:KB_SO_PIN", "--init-pin",
                 "--new-pin", "env:KB_TEST_PIN")
        self.tool("--keypairgen", "--key-type", "rsa:2048", "--label", "rsa-kek", "--id", "01")

    def spawn(self, root, name, cmd, env=None):
        log = os.path.join(root, name + ".log")
        f = open(log, "ab")
        self.logs.append(log)
        try:
            p = subprocess.Popen(cmd, stdout=f, stderr=f, env=env)
        finally:
            f.close()
        self.procs.append(p)
        return p

    def start_resource_manager(self, root):
        """dbus-daemon on a socket under root, then tpm2-abrmd on it owning a name of its own."""
        sock = os.path.join(self.dir, "bus")
        conf = os.path.join(self.dir, "bus.conf")
        with open(conf, "w") as f:
            f.write(BUS_CONF % sock)
        bus = self.spawn(root, "dbus-daemon", ["dbus-daemon", "--config-file=" + conf, "--nofork"])
        wait_until("dbus-daemon", lambda: connects(socket.AF_UNIX, sock), bus, self.logs[-1])
        self.bus = "unix:path=" + sock
        name = "com.intel.tss2.Tabrmd.kb%d" % self.port
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=self.bus)
        abrmd = self.spawn(root, "tpm2-abrmd", ["tpm2-abrmd", "--session", "--allow-root", "--dbus-name=" + name,
                                               "--tcti=" + self.tcti], env=env)

        def owned():
            p = subprocess.run(["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
                                "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", "string:" + name],
                               env=env, capture_output=True)
            return b"boolean true" in p.stdout
        wait_until("tpm2-abrmd", owned, abrmd, self.logs[-1])
        self.tcti = "tabrmd:bus_type=session,bus_name=" + name

    def env(self):
        e = dict(os.environ)
        e["TPM2_PKCS11_TCTI"] = self.tcti
        if self.bus:
            e["DBUS_SESSION_BUS_ADDRESS"] = self.bus
        e["TPM2_PKCS11_STORE"] = self.store
        e["TSS2_LOG"] = "all+NONE"  # the TSS logs every probe of a TCTI it does not use
        return e

    def p11(self, *args, token=True, check_rc=True):
        env = self.env()
        env["KB_SO_PIN"], env["KB_TEST_PIN"] = self.so_pin, self.pin
        cmd = ["pkcs11-tool", "--module", self.module] + (["--token-label", self.label] if token else [])
        p = subprocess.run(cmd + list(args), env=env, capture_output=True)
        if check_rc and p.returncode != 0:
            raise Failure("pkcs11-tool %s failed: %s" % (" ".join(args), p.stderr.decode()))
        return p

    def tool(self, *args, check_rc=True):
        return self.p11("--login", "--pin", "env:KB_TEST_PIN", *args, check_rc=check_rc)

    def stop(self):
        for p in reversed(self.procs):
            stop_proc(p)


def key_section(tok, name, label, alg=None, extra=""):
    return ("[key:%s]\nbackend = pkcs11\nmodule = %s\nuri = pkcs11:token=%s;object=%s\npin_file = %s\n%s%s\n" %
            (name, tok.module, tok.label, label, tok.pin_file, "alg = %s\n" % alg if alg else "", extra))
