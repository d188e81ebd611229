#!/usr/bin/env python3
"""Misses at the speed of the key service: many unwraps in flight against the
real akv-emulator with a latency fault, batches, single flight across them,
and a client that leaves halfway. The broker runs with its default workers."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from azfix import Emu, b64, broker, check, key_section, run, unb64  # noqa: E402
from kbtest import Conn, make_blob  # noqa: E402
from test_azure import wait_for  # noqa: E402

LATENCY_MS = 20
MAX_THREADS = 8


def threads(kb):
    return len(os.listdir("/proc/%d/task" % kb.proc.pid))


def setup(root, n, broker_extra=""):
    """A broker on the emulator's vault key and n distinct blobs, none cached, behind a latency fault."""
    emu = Emu(root)
    kb = broker(root, key_section(emu, "rsa", root=root, timeout="60s"), broker_extra=broker_extra)
    deks = [os.urandom(32) for _ in range(n)]
    blobs = [kb.ok({"op": "wrap", "key": "rsa", "plaintext": b64(d)})["blob"] for d in deks]
    kb.ok({"op": "flush"})
    emu.admin("/admin/faults", {"latency_ms": LATENCY_MS})
    return emu, kb, deks, blobs


def cold_blobs_pipelined_on_8_connections(root):
    emu, kb, deks, blobs = setup(root, 1000)
    before = kb.backend_calls("rsa")
    conns = [Conn(kb.sock) for _ in range(8)]
    sent = {}
    for i, blob in enumerate(blobs):
        c = conns[i % 8]
        sent[(i % 8, c.send({"op": "unwrap", "blob": blob}))] = i
    most = 0
    for n, c in enumerate(conns):
        for _ in range(len(blobs) // 8):
            r = c.read_line()
            most = max(most, threads(kb))
            check(r.get("ok") is True, "every unwrap succeeds: %r" % r)
            check(unb64(r["plaintext"]) == deks[sent[(n, r["id"])]], "every answer is its own blob's DEK")
    check(kb.backend_calls("rsa") - before == len(blobs),
          "one backend call per blob (%d)" % (kb.backend_calls("rsa") - before))
    check(most <= MAX_THREADS, "keybrokerd stays within %d threads (saw %d)" % (MAX_THREADS, most))


def batch_answers_each_item_in_order(root):
    emu, kb, deks, blobs = setup(root, 4, broker_extra="max_batch = 8\n")
    corrupt = blobs[0][:-6] + "AAAAAA"
    unknown = make_blob("nosuch", "01", "RSA-OAEP", os.urandom(256))
    r = kb.ok({"op": "unwrap", "blobs": [blobs[0], corrupt, unknown, 42, blobs[1]]})
    res = r["results"]
    check(len(res) == 5, "one result per blob")
    check(res[0]["ok"] and unb64(res[0]["plaintext"]) == deks[0], "a good item unwraps")
    check(not res[1]["ok"] and res[1]["error"]["code"] == "bad_blob", "a corrupt item is bad_blob: %r" % res[1])
    check(not res[2]["ok"] and res[2]["error"]["code"] == "unknown_key", "an unknown key's item is unknown_key")
    check(not res[3]["ok"] and res[3]["error"]["code"] == "bad_blob", "an item that is no blob is bad_blob")
    check(res[4]["ok"] and unb64(res[4]["plaintext"]) == deks[1], "the last good item unwraps")
    check(kb.ok({"op": "unwrap", "blobs": []})["results"] == [], "an empty batch answers no results")
    e = kb.call({"op": "unwrap", "blobs": [blobs[2]] * 9})
    check(not e["ok"] and e["error"]["code"] == "too_large" and "max_batch" in e["error"]["message"],
          "a batch over max_batch is refused, naming it: %r" % e["error"])
    e = kb.call({"op": "unwrap", "blob": blobs[2], "blobs": [blobs[2]]})
    check(e["error"]["code"] == "bad_request", "blob and blobs together are refused")
    r = kb.ok({"op": "rewrap", "blobs": [blobs[2], corrupt]})["results"]
    check(r[0]["ok"] and r[0]["blob"].startswith("kb2:rsa:") and not r[1]["ok"], "rewrap takes blobs too")


def single_flight_across_batch_and_plain_requests(root):
    emu, kb, deks, blobs = setup(root, 1)
    before = kb.backend_calls("rsa")
    a, b = Conn(kb.sock), Conn(kb.sock)
    a.send({"op": "unwrap", "blobs": [blobs[0], blobs[0], blobs[0]]})
    b.send({"op": "unwrap", "blob": blobs[0]})
    ra, rb = a.read_line(), b.read_line()
    check(all(x["ok"] and unb64(x["plaintext"]) == deks[0] for x in ra["results"]), "every batch item unwraps")
    check(rb["ok"] and unb64(rb["plaintext"]) == deks[0], "the plain request unwraps")
    check(kb.backend_calls("rsa") - before == 1, "one backend call for them all (%d)" %
          (kb.backend_calls("rsa") - before))


def batch_client_leaves_halfway(root):
    emu, kb, deks, blobs = setup(root, 100)  # a 100-blob batch fits max_request_bytes
    base = kb.status()["connections"] if "connections" in kb.status() else None
    for _ in range(3):
        c = Conn(kb.sock)
        c.send({"op": "unwrap", "blobs": blobs})
        c.close()
    # the daemon keeps serving, and the calls of the gone clients finish and are counted
    r = kb.ok({"op": "unwrap", "blobs": blobs[:2]})
    check(all(x["ok"] for x in r["results"]), "a new client is served")
    wait_for("the gone clients' calls to finish", lambda: kb.backend_calls("rsa") >= 100, 30)
    st = kb.status()
    if base is not None:
        check(st["connections"] <= base + 1, "the gone clients' connections are closed")
    check(kb.stop() == 0, "keybrokerd stops cleanly")


if __name__ == "__main__":
    run(globals())
