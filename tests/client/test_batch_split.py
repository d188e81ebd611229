#!/usr/bin/env python3
"""libkeybroker's batches (kb_unwrap_many, kb_rewrap_many) and the CLI's bulk
rewrap split a large batch themselves, whatever the broker's max_batch and
max_request_bytes: 1,024 RSA blobs in one call, against a real keybrokerd on
a SoftHSM token (the fixtures of tests/integration), at its defaults and at
limits far below them."""
import hashlib
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import kbtest  # noqa: E402
from kbtest import Broker, Token, check, unb64  # noqa: E402

LIBKB_BATCH = os.environ.get("KB_LIBKB_BATCH", os.path.join(kbtest.BUILD, "tests", "client", "libkb_batch"))
N = 1024


def rsa_blobs(kb, root):
    """N fresh RSA data keys: (the file of their blobs, the blobs, the SHA-256 of each DEK)."""
    c = kb.conn()
    blobs, digests = [], []
    for _ in range(N):
        r = c.call({"op": "datakey", "key": "rsa"})
        check(r.get("ok") is True, "datakey: %s" % r)
        blobs.append(r["blob"])
        digests.append(hashlib.sha256(unb64(r["plaintext"])).hexdigest())
    c.close()
    path = os.path.join(root, "rsa.txt")
    with open(path, "w") as f:
        f.write("\n".join(blobs) + "\n")
    check(sum(len(b) for b in blobs) > 4 * 65536, "the batch is several times the default max_request_bytes")
    return path, blobs, digests


def libkb(kb, mode, path):
    p = subprocess.run([LIBKB_BATCH, kb.sock, mode, path], capture_output=True, timeout=120)
    check(p.returncode == 0, "one kb_%s_many call of %d blobs: %s" % (mode, N, p.stderr.decode()))
    lines = p.stdout.decode().splitlines()
    check(len(lines) == N, "one result per blob: %d" % len(lines))
    bad = [(i + 1, l) for i, l in enumerate(lines) if not l.startswith("ok ")]
    check(not bad, "every item answered ok, not %s" % bad[:3])
    return [l[3:] for l in lines]


def check_batches_go_through(kb, root):
    path, blobs, digests = rsa_blobs(kb, root)
    kb.ok({"op": "flush"})
    check(libkb(kb, "unwrap", path) == digests, "kb_unwrap_many gives each blob's own DEK, in order")
    kb.ok({"op": "rotate", "key": "rsa"})
    moved = libkb(kb, "rewrap", path)
    check(all(b.startswith("kb2:rsa:02:") for b in moved), "kb_rewrap_many moves every blob to 02")
    moved_path = os.path.join(root, "moved.txt")
    with open(moved_path, "w") as f:
        f.write("\n".join(moved) + "\n")
    kb.ok({"op": "flush"})
    check(libkb(kb, "unwrap", moved_path) == digests, "each moved blob holds its own DEK")
    # the CLI, one connection, the same file
    out = os.path.join(root, "rsa.new")
    p = kb.cli("rewrap", "--in", path, "--out", out, "--concurrency", "1")
    check(p.returncode == 0, "keybroker rewrap --in of %d RSA blobs: %s" % (N, p.stderr.decode()))
    with open(out) as f:
        new = f.read().splitlines()
    check(len(new) == N and all(b.startswith("kb2:rsa:02:") for b in new), "the CLI moves every line")
    with open(moved_path, "w") as f:
        f.write("\n".join(new) + "\n")
    kb.ok({"op": "flush"})
    check(libkb(kb, "unwrap", moved_path) == digests, "each line the CLI moved holds its own DEK")


def library_and_cli_take_1024_rsa_blobs_at_the_defaults(root):
    check_batches_go_through(Broker(root, Token(root)), root)


def library_and_cli_split_for_a_broker_with_low_limits(root):
    kb = Broker(root, Token(root), broker_extra="max_request_bytes = 4096\nmax_batch = 5")
    check_batches_go_through(kb, root)


if __name__ == "__main__":
    kbtest.run(globals())
