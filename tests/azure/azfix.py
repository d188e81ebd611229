"""azfix: the real akv-emulator over verified TLS on loopback, for the Azure
backend's tests through the real keybrokerd.

Each test gets its own emulator (its own CA from --init-tls, a free port, the
admin endpoint on another free port) and a broker whose [key:] sections point
at it. Nothing is mocked.
"""
import base64
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import kbtest  # noqa: E402
from kbtest import Broker, check, free_port  # noqa: E402,F401

AKV_EMULATOR = os.environ.get("AKV_EMULATOR", os.path.join(kbtest.BUILD, "emulator", "akv-emulator"))

# the tests set every AZURE_* variable they rely on themselves
for _name in [n for n in os.environ if n.startswith("AZURE_")]:
    del os.environ[_name]

_orig_getaddrinfo = socket.getaddrinfo


def _loopback_getaddrinfo(host, *args, **kwargs):
    # curl resolves *.localhost to loopback itself; Python asks the system resolver
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and (name == "localhost" or name.endswith(".localhost")):
        host = "127.0.0.1"
    return _orig_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_getaddrinfo

TENANT = "kb-tenant"
CLIENT = "kb-app"
SECRET = "kb-secret"
ASSERTION = "kb-assertion"

IDENTITY_HEADER = "kb-identity-header"

CONFIG = """
[emulator]
tenant = %(tenant)s
token_lifetime = %(lifetime)d
identity_header = %(identity_header)s
[vault:kv]
[mhsm:hsm]
[principal:%(client)s]
secret = %(secret)s
assertion = %(assertion)s
permissions = all
[principal:no-unwrap]
secret = nu-secret
permissions = get wrapKey
[principal:wrapper]
secret = wrapper-secret
permissions = wrapKey unwrapKey
[key:vault.kv.rsa]
kty = RSA
size = 2048
[key:mhsm.hsm.aes]
kty = oct-HSM
size = 256
"""


class Emu:
    """One akv-emulator with a vault kv (key rsa) and a Managed HSM hsm (key aes)."""

    def __init__(self, root, lifetime=3600, state=False, extra_config=""):
        self.dir = os.path.join(root, "emu")
        os.makedirs(self.dir, exist_ok=True)
        self.tls = os.path.join(self.dir, "tls")
        self.ca = os.path.join(self.tls, "ca.pem")
        self.conf = os.path.join(self.dir, "emulator.ini")
        self.state = os.path.join(self.dir, "state.json") if state else None
        self.log_path = os.path.join(root, "emulator.log")
        with open(self.conf, "w") as f:
            f.write(CONFIG % {"tenant": TENANT, "lifetime": lifetime, "client": CLIENT, "secret": SECRET,
                              "assertion": ASSERTION, "identity_header": IDENTITY_HEADER} + extra_config)
        self.port = free_port()
        self.admin_port = free_port()
        self.proc = None
        self.start()

    def start(self):
        cmd = [AKV_EMULATOR, "--config", self.conf, "--init-tls", self.tls,
               "--listen", "127.0.0.1:%d" % self.port, "--admin", "127.0.0.1:%d" % self.admin_port]
        if self.state:
            cmd += ["--state", self.state]
        self.logf = open(self.log_path, "a")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.logf, text=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise kbtest.Failure("akv-emulator exited:\n" + self.log())
            if line.strip() == "ready":
                break
        self.ctx = ssl.create_default_context(cafile=self.ca)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        if self.proc:
            self.proc.stdout.close()
            self.logf.close()
        self.proc = None

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def count(self, pattern):
        return len(re.findall(pattern, self.log()))

    def host(self, kind="vault"):
        return "%s.%s.localhost:%d" % ("hsm" if kind == "mhsm" else "kv",
                                       "managedhsm" if kind == "mhsm" else "vault", self.port)

    def url(self, kind="vault", key=None):
        return "https://%s/keys/%s" % (self.host(kind), key or ("aes" if kind == "mhsm" else "rsa"))

    def request(self, method, host, path, body=None, token=None, form=False):
        conn = http.client.HTTPSConnection(host.split(":")[0], self.port, context=self.ctx, timeout=30)
        hdrs = {"Host": host}
        if token:
            hdrs["Authorization"] = "Bearer " + token
        if form:
            body = urllib.parse.urlencode(body)
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        return resp.status, (json.loads(raw) if raw else None)

    def token(self, kind="vault", client=CLIENT, secret=SECRET):
        scope = "https://%s.localhost:%d/.default" % ("managedhsm" if kind == "mhsm" else "vault", self.port)
        st, data = self.request("POST", "localhost:%d" % self.port, "/%s/oauth2/v2.0/token" % TENANT,
                                {"grant_type": "client_credentials", "client_id": client,
                                 "client_secret": secret, "scope": scope}, form=True)
        check(st == 200, "token endpoint: %s %s" % (st, data))
        return data["access_token"]

    def rest(self, method, kind, path, body=None):
        st, data = self.request(method, self.host(kind), path + "?api-version=7.4", body, self.token(kind))
        check(200 <= st < 300, "%s %s: %s %s" % (method, path, st, data))
        return data

    def admin(self, path, body=None, method="POST"):
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=30)
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read() or b"null")
        conn.close()
        check(resp.status == 200, "admin %s: %s %s" % (path, resp.status, data))
        return data


def secret_file(root, name="client.secret", value=SECRET):
    path = os.path.join(root, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (value + "\n").encode())
    os.close(fd)
    return path


def key_section(emu, name, kind="vault", key=None, auth="client_secret", extra="", root=None,
                client=CLIENT, ids=True, timeout="5s", max_retries=6, authority=True):
    lines = ["[key:%s]" % name, "backend = azure", "url = %s" % emu.url(kind, key),
             "ca_file = %s" % emu.ca, "auth = %s" % auth, "timeout = %s" % timeout,
             "max_retries = %d" % max_retries, "version_refresh = 1s"]
    if authority and auth in ("client_secret", "workload_identity"):
        # the emulator's hosts are no Azure cloud's: secrets go only to a configured authority
        lines.append("authority_host = https://localhost:%d" % emu.port)
    if ids and auth in ("client_secret", "workload_identity"):
        lines += ["tenant_id = %s" % TENANT, "client_id = %s" % client]
    if auth == "client_secret" and root:
        lines.append("client_secret_file = %s" % secret_file(root, "%s.secret" % client,
                                                             SECRET if client == CLIENT else "nu-secret"))
    return "\n".join(lines) + "\n" + extra + "\n"


def broker(root, keys, broker_extra="", env=None, start=True):
    return Broker(root, None, broker_extra=broker_extra, keys=keys, env=env, start=start)


def b64(data):
    return base64.b64encode(data).decode()


def unb64(s):
    return base64.b64decode(s)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_live = []
_orig_emu_init = Emu.__init__


def _tracked_init(self, *a, **kw):
    _live.append(self)
    _orig_emu_init(self, *a, **kw)


Emu.__init__ = _tracked_init


def run(tests):
    """kbtest.run, and every emulator a test started is stopped when it ends."""
    def wrap(fn):
        def inner(root):
            try:
                fn(root)
            finally:
                for emu in _live:
                    emu.stop()
        return inner
    kbtest.run({name: wrap(fn) for name, fn in tests.items() if callable(fn)})
