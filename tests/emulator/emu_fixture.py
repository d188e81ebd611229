"""emu_fixture: start the real akv-emulator over TLS on a free loopback port.

Used by the integration tests and the SDK conformance script. The emulator
binary comes from $AKV_EMULATOR (meson sets it). Every instance gets its own
temp dir with its own CA (--init-tls), so tests run in parallel.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse

_orig_getaddrinfo = socket.getaddrinfo


def _loopback_getaddrinfo(host, *args, **kwargs):
    # curl resolves *.localhost by itself; Python asks the system resolver,
    # which may not. Inside this process, send every *.localhost to 127.0.0.1.
    if isinstance(host, (str, bytes)):
        name = host.decode() if isinstance(host, bytes) else host
        if name == "localhost" or name.endswith(".localhost"):
            host = "127.0.0.1"
    return _orig_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_getaddrinfo


class Emulator:
    # who token() asks for and as whom, and how long a request may take; a subclass with
    # another config sets its own
    tenant, client, secret = "dev-tenant", "dev-client", "dev-secret"
    timeout = 20

    def __init__(self, config=None, admin=False, state=None, workdir=None, args=(), port=0, admin_port=0):
        # port, admin_port: 0 for any free one; a fixed one keeps its URLs across a restart
        self.own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="akv-emu-")
        self.config = config
        self.admin_on = admin
        self.state = state
        self.args = list(args)
        self.listen_port = port
        self.admin_listen_port = admin_port
        self.proc = None
        self.port = None
        self.admin_port = None
        self.ca = os.path.join(self.dir, "tls", "ca.pem")
        self.log_path = os.path.join(self.dir, "emulator.log")
        self.ctx = None

    def start(self):
        cmd = [os.environ.get("AKV_EMULATOR", "akv-emulator"),
               "--init-tls", os.path.join(self.dir, "tls"), "--listen", "127.0.0.1:%d" % self.listen_port]
        if self.config is not None:
            path = os.path.join(self.dir, "emulator.ini")
            with open(path, "w") as f:
                f.write(self.config)
            cmd += ["--config", path]
        if self.admin_on:
            cmd += ["--admin", "127.0.0.1:%d" % self.admin_listen_port]
        if self.state:
            cmd += ["--state", self.state]
        cmd += self.args
        self.logf = open(self.log_path, "a")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.logf, text=True)
        banner = []
        deadline = time.time() + 20
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("emulator exited: " + "".join(banner) + self.read_log())
            banner.append(line)
            if line.startswith("akv-emulator") and "(port " in line:
                self.port = int(line.rsplit("(port ", 1)[1].split(")")[0])
            if line.strip().startswith("admin") and "(port " in line:
                self.admin_port = int(line.rsplit("(port ", 1)[1].split(")")[0])
            if line.strip() == "ready":
                break
        self.banner = "".join(banner)
        self.ctx = ssl.create_default_context(cafile=self.ca)
        return self

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self, kill=False):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(10)
        if self.proc:
            self.proc.stdout.close()
            self.logf.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- HTTP helpers -----------------------------------------------------
    def host(self, kind="vault", name="dev"):
        if kind == "login":
            return "localhost:%d" % self.port
        return "%s.%s.localhost:%d" % (name, "managedhsm" if kind == "mhsm" else "vault", self.port)

    def connect(self, host):
        name = host.split(":")[0]
        return http.client.HTTPSConnection(name, self.port, context=self.ctx, timeout=self.timeout)

    def request(self, method, host, path, body=None, token=None, headers=None, conn=None):
        """One HTTPS request; returns (status, headers dict (lower case), parsed JSON or raw)."""
        own = conn is None
        conn = conn or self.connect(host)
        hdrs = {"Host": host}
        if token:
            hdrs["Authorization"] = "Bearer " + token
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        h = {k.lower(): v for k, v in resp.getheaders()}
        if own:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw
        return resp.status, h, data

    def token(self, kind="vault", client=None, secret=None):
        scope = "https://%s.localhost:%d/.default" % ("managedhsm" if kind == "mhsm" else "vault", self.port)
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client or self.client,
                                       "client_secret": secret or self.secret, "scope": scope})
        st, _, data = self.request("POST", self.host("login"), "/%s/oauth2/v2.0/token" % self.tenant, body=form,
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert st == 200, (st, data)
        return data["access_token"]

    def admin(self, method, path, body=None, timeout=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout or self.timeout)
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read() or b"null")
        conn.close()
        return resp.status, data


def b64u(data):
    import base64
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64u(s):
    import base64
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
