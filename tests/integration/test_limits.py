"""Limits that agree, and options from one table (issue 25, item 5). Real SoftHSM
token, real daemon, requests sent raw over the socket."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kbtest  # noqa: E402
from kbtest import Broker, Token, b64, check  # noqa: E402


def rsa_batch_of_max_batch_fits_the_defaults(root):
    """A batch of max_batch (1024) RSA-2048 blobs at the default limits is one line the broker takes."""
    tok = Token(root)
    b = Broker(root, tok)
    c = b.conn()
    blobs = [None] * 1024
    for start in range(0, 1024, 100):  # pipelined, within max_inflight
        want = {}
        for i in range(start, min(start + 100, 1024)):
            want[c.send({"op": "wrap", "key": "rsa", "plaintext": b64(i.to_bytes(4, "big") * 8)})] = i
        for _ in want:
            r = c.read_line()
            check(r.get("ok") is True, "wrap %s" % r)
            blobs[want[r["id"]]] = r["blob"]
    line = json.dumps({"id": "batch", "op": "unwrap", "blobs": blobs, "cache": False}).encode() + b"\n"
    check(len(line) > 65536, "the line is past the old 64 KiB default (%d bytes)" % len(line))
    c.send_raw(line)
    r = c.read_line()
    check(r.get("ok") is True and len(r["results"]) == 1024, "the batch is taken: %s" % str(r)[:300])
    for i, res in enumerate(r["results"]):
        check(res.get("plaintext") == b64(i.to_bytes(4, "big") * 8), "item %d unwraps: %s" % (i, res))
    c.close()


def misspelt_option_gets_a_suggestion_from_the_table(root):
    """Every [broker] option of the table is suggested for a near miss, the newer ones too."""
    conf = os.path.join(root, "k.conf")
    opts = subprocess.run([kbtest.KEYBROKERD, "--options"], check=True, capture_output=True, text=True).stdout
    names = [line.split("\t")[1] for line in opts.splitlines() if line.startswith("broker\t")]
    check("max_batch" in names and "request_timeout" in names, "the table has every option: %s" % names)
    for name, typo in [("max_batch", "max_btach")] + [(n, n[:-2] + n[-1] + n[-2]) for n in names]:
        with open(conf, "w") as f:
            f.write("[broker]\n%s = 1\n" % typo)
        p = subprocess.run([kbtest.KEYBROKERD, "-c", conf, "--check"], capture_output=True, text=True)
        check(p.returncode == 1 and ("did you mean %s?" % name) in p.stderr,
              "%s gets a suggestion of %s: %s" % (typo, name, p.stderr))


kbtest.run(globals())
