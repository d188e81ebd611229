"""azfix: the real akv-emulator over verified TLS on loopback, for the Azure
backend's tests through the real keybrokerd.

Each test gets its own emulator (its own CA from --init-tls, a free port, the
admin endpoint on another free port) and a broker whose [key:] sections point
at it. Nothing is mocked.
"""
import base64
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "emulator"))
import emu_fixture  # noqa: E402  (it also sends *.localhost to loopback, as curl does)
import kbtest  # noqa: E402
from kbtest import Broker, check, free_port  # noqa: E402,F401

# emu_fixture starts $AKV_EMULATOR; meson sets it, a hand run finds the build's
os.environ.setdefault("AKV_EMULATOR", os.path.join(kbtest.BUILD, "emulator", "akv-emulator"))

# the tests set every AZURE_* variable they rely on themselves
for _name in [n for n in os.environ if n.startswith("AZURE_")]:
    del os.environ[_name]

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


_live = []  # every Emu a test made, stopped when it ends


class Emu(emu_fixture.Emulator):
    """One akv-emulator with a vault kv (key rsa) and a Managed HSM hsm (key aes), on
    ports fixed for its life so the broker's URLs hold across a restart; started at once."""

    tenant, client, secret = TENANT, CLIENT, SECRET
    timeout = 30

    def __init__(self, root, lifetime=3600, state=False, extra_config=""):
        workdir = os.path.join(root, "emu")
        os.makedirs(workdir, exist_ok=True)
        config = CONFIG % {"tenant": TENANT, "lifetime": lifetime, "client": CLIENT, "secret": SECRET,
                           "assertion": ASSERTION, "identity_header": IDENTITY_HEADER} + extra_config
        super().__init__(config=config, admin=True, workdir=workdir,
                         state=os.path.join(workdir, "state.json") if state else None,
                         port=free_port(), admin_port=free_port())
        self.tls = os.path.join(self.dir, "tls")
        _live.append(self)
        self.start()

    def count(self, pattern):
        return len(re.findall(pattern, self.read_log()))

    def host(self, kind="vault"):
        return super().host(kind, "hsm" if kind == "mhsm" else "kv")

    def host_named(self, name, kind="vault"):
        """The host of another vault (or Managed HSM) name of this emulator."""
        return super().host(kind, name)

    def url(self, kind="vault", key=None):
        return "https://%s/keys/%s" % (self.host(kind), key or ("aes" if kind == "mhsm" else "rsa"))

    def rest(self, method, kind, path, body=None):
        st, _, data = self.request(method, self.host(kind), path + "?api-version=7.4", body, self.token(kind))
        check(200 <= st < 300, "%s %s: %s %s" % (method, path, st, data))
        return data

    def admin(self, path, body=None, method="POST"):
        st, data = super().admin(method, path, body)
        check(st == 200, "admin %s: %s %s" % (path, st, data))
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
