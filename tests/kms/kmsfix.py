"""kmsfix: a kube-apiserver stand-in for keybroker's KMS v2 face.

The client is generated at test time from the project's own proto/kms_v2.proto
with Debian's python3-grpc-tools, and speaks to keybrokerd's [kms:NAME] socket
with python3-grpcio, as kube-apiserver does (unix:// target, 3 s deadline).
"""
import importlib
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
import kbtest  # noqa: E402

import grpc  # noqa: E402
from grpc_tools import protoc  # noqa: E402

PROTO_DIR = os.path.join(kbtest.SRC, "proto")
_gen = {}


def stubs():
    """(kms_v2_pb2, kms_v2_pb2_grpc), generated once per process into a temp dir."""
    if not _gen:
        out = tempfile.mkdtemp(prefix="kms-pb-")
        import grpc_tools
        include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        args = ["protoc", "-I" + PROTO_DIR, "-I" + include, "--python_out=" + out,
                "--grpc_python_out=" + out, os.path.join(PROTO_DIR, "kms_v2.proto")]
        if not os.path.isdir(include):
            args.remove("-I" + include)
        rc = protoc.main(args)
        kbtest.check(rc == 0, "grpc_tools.protoc failed on kms_v2.proto (%d)" % rc)
        sys.path.insert(0, out)
        _gen["pb2"] = importlib.import_module("kms_v2_pb2")
        _gen["grpc"] = importlib.import_module("kms_v2_pb2_grpc")
    return _gen["pb2"], _gen["grpc"]


class Kms:
    """A KMS v2 client on a Unix socket, as kube-apiserver holds one."""

    # kube-apiserver's default call timeout; a sanitizer build runs several times slower
    # (scripts/test-sanitizers sets KB_TEST_SLOWDOWN)
    TIMEOUT = 3.0 * float(os.environ.get("KB_TEST_SLOWDOWN", "1"))

    def __init__(self, path):
        self.pb2, pb2_grpc = stubs()
        self.channel = grpc.insecure_channel("unix://" + path)
        self.stub = pb2_grpc.KeyManagementServiceStub(self.channel)

    def status(self):
        return self.stub.Status(self.pb2.StatusRequest(), timeout=self.TIMEOUT)

    def encrypt(self, plaintext, uid="uid-1"):
        return self.stub.Encrypt(self.pb2.EncryptRequest(plaintext=plaintext, uid=uid), timeout=self.TIMEOUT)

    def decrypt(self, ciphertext, key_id, annotations=None, uid="uid-2"):
        return self.stub.Decrypt(self.pb2.DecryptRequest(ciphertext=ciphertext, uid=uid, key_id=key_id,
                                                         annotations=annotations or {}),
                                 timeout=self.TIMEOUT)

    def code_of(self, fn, *args, **kw):
        """The gRPC status code fn raises (None if it succeeds) and its details."""
        try:
            fn(*args, **kw)
        except grpc.RpcError as e:
            return e.code(), e.details()
        return None, None

    def close(self):
        self.channel.close()


def kms_section(root, key="rsa", name="k8s"):
    path = os.path.join(root, "kms-%s.sock" % name)
    return path, "[kms:%s]\nsocket = %s\nkey = %s\n" % (name, path, key)


def wait_for(cond, what, timeout=30.0, step=0.1):
    """Waits for cond() to be true (polling; never sleeps and hopes)."""
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise kbtest.Failure("timed out waiting for " + what)
