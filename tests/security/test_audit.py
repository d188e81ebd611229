#!/usr/bin/env python3
"""What is recorded: one audit line per operation, written before the answer leaves, with
the peer, the op, the key and version, a digest of the blob, the result, hit or miss and
the latency; never a secret. An audit log that cannot be written stops the operations."""
import hashlib
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sectest  # noqa: E402
from sectest import (Broker, Conn, Token, as_peer, audit_lines, b64, check, remember, run,  # noqa: E402
                     shareable, unb64, wait_for)

FIELDS = {"time", "uid", "gid", "pid", "exe", "op", "key", "version", "blob_sha256", "result", "cache",
          "latency_us", "request_id"}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def digest(blob):
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def check_line(line, want, peer=None):
    """want: the fields this line must have; peer: (uid, gid, pid, exe), default this process."""
    check(set(line) == FIELDS, "audit fields %s, want %s" % (sorted(line), sorted(FIELDS)))
    check(TIME.match(line["time"]), "time is RFC 3339 UTC with milliseconds: %r" % line["time"])
    t = time.mktime(time.strptime(line["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    check(abs(t - time.time()) < 120, "time is now: %s" % line["time"])
    uid, gid, pid, exe = peer or (os.getuid(), os.getgid(), os.getpid(), os.path.realpath("/proc/self/exe"))
    check((line["uid"], line["gid"], line["pid"]) == (uid, gid, pid),
          "peer uid/gid/pid %s, want %s" % ((line["uid"], line["gid"], line["pid"]), (uid, gid, pid)))
    check(line["exe"] == exe, "exe %r, want %r" % (line["exe"], exe))
    check(isinstance(line["latency_us"], int) and 0 <= line["latency_us"] < 60_000_000,
          "latency_us: %r" % line["latency_us"])
    check(line["request_id"] is None, "no key-service request id on PKCS#11: %r" % line["request_id"])
    for k, v in want.items():
        check(line[k] == v, "audit %s: %r, want %r in %s" % (k, line[k], v, line))


class Audited:
    """One connection whose every answer must already be on record when it arrives."""

    def __init__(self, kb, path):
        self.kb, self.path, self.c = kb, path, Conn(kb.sock)
        self.seen = len(audit_lines(path))

    def call(self, req, **want):
        r = self.c.call(req)
        lines = audit_lines(self.path)
        new = lines[self.seen:]
        # an admin operation that changes the key service may be put on record before it is
        # done (result "started"), so that it never happens off the record
        if (len(new) == 2 and req.get("op") == "rotate" and new[0]["result"] == "started" and
                new[0]["op"] == "rotate" and new[0]["key"] == req.get("key")):
            new = new[1:]
        check(len(new) == 1,
              "%s: %d new audit lines when its answer arrived, want 1" % (req.get("op"), len(new)))
        self.seen = len(lines)
        if "result" not in want:
            want["result"] = "ok" if r.get("ok") else r["error"]["code"]
        check_line(lines[-1], want)
        return r, lines[-1]


def every_operation_is_on_record_before_its_answer(root):
    token = Token(root)
    path = os.path.join(root, "audit.log")
    kb = Broker(root, token, broker_extra="audit_log = %s\n" % path)
    a = Audited(kb, path)
    pt = os.urandom(32)
    w, _ = a.call({"op": "wrap", "key": "aes", "plaintext": b64(pt)},
                  op="wrap", key="aes", version="01", cache=None)
    blob = w["blob"]
    a.call({"op": "wrap", "key": "rsa", "plaintext": b64(pt)}, op="wrap", key="rsa", version="01", cache=None)
    a.call({"op": "flush"}, op="flush", key=None, version=None, blob_sha256=None, cache=None)
    a.call({"op": "unwrap", "blob": blob}, op="unwrap", key="aes", version="01",
           blob_sha256=digest(blob), cache="miss")
    a.call({"op": "unwrap", "blob": blob}, op="unwrap", key="aes", version="01",
           blob_sha256=digest(blob), cache="hit")
    d, _ = a.call({"op": "datakey", "key": "aes"}, op="datakey", key="aes", version="01", cache=None)
    a.call({"op": "get", "key": "rsa"}, op="get", key="rsa", blob_sha256=None, cache=None)
    a.call({"op": "rotate", "key": "aes"}, op="rotate", key="aes", version="02", blob_sha256=None, cache=None)
    rw, line = a.call({"op": "rewrap", "blob": d["blob"]}, op="rewrap", key="aes", version="02")
    check(line["blob_sha256"] in (digest(d["blob"]), digest(rw["blob"])),
          "rewrap records the digest of the blob it took or the one it issued: %s" % line)
    a.call({"op": "flush", "key": "aes"}, op="flush", key="aes", blob_sha256=None, cache=None)
    # failures are on record with their code
    a.call({"op": "wrap", "key": "nope", "plaintext": b64(pt)}, op="wrap", key="nope", result="unknown_key")
    bad = blob[:-2] + ("AA" if not blob.endswith("AA") else "BB")
    a.call({"op": "unwrap", "blob": bad}, op="unwrap", result="bad_blob")
    a.call({"op": "wrap", "key": "aes"}, result="bad_request")
    text = open(path).read()
    check(blob not in text and d["blob"] not in text, "a blob itself is in the audit log")
    check(bad.split(":")[-2] not in text, "a ciphertext is in the audit log")


def audit_names_each_peer_and_each_issued_blob(root):
    """The audit log links a DEK handed out (wrap, datakey) to its later unwraps by the digest
    of the blob, and names every peer, including refused ones."""
    shareable(root)
    token = Token(root)
    path = os.path.join(root, "audit.log")
    kb = Broker(root, token, aes_extra="allow_unwrap = root\n",
                broker_extra="audit_log = %s\nsocket_mode = 0660\nsocket_group = nogroup\n"
                             "allow_uids = root nobody\n" % path)
    a = Audited(kb, path)
    pt = os.urandom(32)
    w, line = a.call({"op": "wrap", "key": "aes", "plaintext": b64(pt)})
    check(line["blob_sha256"] == digest(w["blob"]), "wrap records the digest of the blob it issued: %s" % line)
    d, line = a.call({"op": "datakey", "key": "rsa"})
    check(line["blob_sha256"] == digest(d["blob"]), "datakey records the digest of the blob it issued: %s" % line)
    pid, ans = as_peer(kb.sock, [{"op": "unwrap", "blob": w["blob"]}, {"op": "unwrap", "blob": d["blob"]}])
    check(ans[0]["error"]["code"] == "permission_denied" and ans[1]["ok"], "nobody: %s" % ans)
    lines = wait_for(lambda: len(audit_lines(path)) >= a.seen + 2 and audit_lines(path), 5, "nobody's audit lines")
    exe = os.path.realpath(sys.executable)
    check_line(lines[a.seen], {"op": "unwrap", "key": "aes", "result": "permission_denied",
                               "blob_sha256": digest(w["blob"])}, peer=(65534, 65534, pid, exe))
    check_line(lines[a.seen + 1], {"op": "unwrap", "key": "rsa", "result": "ok", "cache": "hit",
                                   "blob_sha256": digest(d["blob"])}, peer=(65534, 65534, pid, exe))


def audit_log_to_stderr(root):
    token = Token(root)
    kb = Broker(root, token, broker_extra="audit_log = -\n")
    pt = os.urandom(32)
    blob = kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(pt)})["blob"]
    kb.ok({"op": "unwrap", "blob": blob})
    lines = []
    for l in kb.log_text().splitlines():
        try:
            j = json.loads(l)
        except ValueError:
            continue
        if isinstance(j, dict) and "op" in j:
            lines.append(j)
    check([l["op"] for l in lines if l["op"] in ("wrap", "unwrap")] == ["wrap", "unwrap"],
          "audit lines on stderr: %s" % lines)
    check_line(lines[-1], {"op": "unwrap", "blob_sha256": digest(blob), "result": "ok"})


def unwritable_audit_log_stops_operations(root):
    """audit_log on /dev/full: every audited operation fails with audit_unavailable and hands
    out nothing; status is still served."""
    token = Token(root)
    kb = Broker(root, token)
    pt = os.urandom(32)
    blob = kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(pt)})["blob"]
    check(kb.stop() == 0, "stop")
    kb = Broker(root, token, broker_extra="audit_log = /dev/full\n")
    for req in ({"op": "unwrap", "blob": blob},
                {"op": "wrap", "key": "aes", "plaintext": b64(pt)},
                {"op": "datakey", "key": "aes"},
                {"op": "rewrap", "blob": blob},
                {"op": "get", "key": "aes"},
                {"op": "flush"}):
        r = kb.err(req, "audit_unavailable")
        check("plaintext" not in r and "blob" not in r, "%s: nothing handed out: %s" % (req["op"], r))
        check("audit" in r["error"]["message"], "the message names the audit log: %s" % r["error"])
    s = kb.status()
    check(s["ok"], "status is still served")
    check(kb.proc.poll() is None, "the daemon keeps running")
    check("audit" in kb.log_text(), "the daemon's log says the audit log failed")


def unrecorded_rotate_is_not_done(root):
    """A rotate that cannot be put on record does not make a new key version."""
    token = Token(root)
    kb = Broker(root, token, broker_extra="audit_log = /dev/full\n")
    kb.err({"op": "rotate", "key": "aes"}, "audit_unavailable")
    objs = token.tool("--list-objects", "--type", "secrkey").stdout.decode()
    n = objs.count("label:      aes-kek") or objs.count("aes-kek")
    check(n == 1, "the token holds %d versions of aes-kek after a rotate that was not recorded" % n)


def data_lines(path):
    return [l for l in audit_lines(path) if l["op"] not in ("status", "metrics")]


def sighup_reopens_the_audit_log(root):
    token = Token(root)
    path = os.path.join(root, "audit.log")
    kb = Broker(root, token, broker_extra="audit_log = %s\n" % path)
    c = Conn(kb.sock)
    pt = os.urandom(32)
    blob = c.call({"op": "wrap", "key": "aes", "plaintext": b64(pt)})["blob"]
    check(len(data_lines(path)) == 1, "one line")
    os.rename(path, path + ".1")          # what logrotate does
    check(c.call({"op": "unwrap", "blob": blob})["ok"], "unwrap")
    check(len(data_lines(path + ".1")) == 2 and not os.path.exists(path), "before HUP: the open file")
    kb.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: os.path.exists(path), 5, "a new audit log after SIGHUP")
    for _ in range(3):
        check(c.call({"op": "unwrap", "blob": blob})["ok"], "unwrap on the same connection after HUP")
    new = data_lines(path)
    check(len(new) == 3 and all(l["op"] == "unwrap" for l in new), "new lines go to the new file: %s" % new)
    check(len(data_lines(path + ".1")) == 2, "nothing more goes to the rotated file")
    check(os.stat(path).st_mode & 0o777 == 0o600, "the new audit log is mode 0600")


def no_secret_reaches_any_log(root):
    """A debug-level run of every operation, errors included (a wrong PIN too), leaves no DEK,
    PIN or plaintext in the daemon's log or the audit log, in any spelling."""
    token = Token(root)
    path = os.path.join(root, "audit.log")
    kb = Broker(root, token, broker_extra="audit_log = %s\ncache_ttl = 1s\n" % path,
                aes_extra="datakey_max_age = 10s\n")
    c = Conn(kb.sock)

    def ok(req):
        # a request that failed early would log nothing worth searching: each must do its work
        r = c.call(req)
        check(r.get("ok") is True, "%s answered %s" % (req["op"], r.get("error")))
        return r

    blobs = {}  # each blob, and the DEK or plaintext in it
    for key in ("aes", "rsa"):
        for pt in [os.urandom(n) for n in (16, 24, 32, 64)] + [b"correct horse battery staple, 32"]:
            blobs[ok({"op": "wrap", "key": key, "plaintext": b64(pt)})["blob"]] = pt
        for _ in range(3):
            r = ok({"op": "datakey", "key": key, "bits": 256})
            blobs[r["blob"]] = unb64(r["plaintext"])
    for b, pt in blobs.items():
        check(unb64(ok({"op": "unwrap", "blob": b})["plaintext"]) == pt, "unwrap gives the DEK back")
        check(ok({"op": "unwrap", "blob": b})["cached"] is True, "the second unwrap is a cache hit")
        ok({"op": "rewrap", "blob": b, "key": "rsa"})
    ok({"op": "rotate", "key": "aes"})
    ok({"op": "flush"})
    for b, pt in blobs.items():
        r = ok({"op": "unwrap", "blob": b})
        check(r["cached"] is False and unb64(r["plaintext"]) == pt, "after flush the token is asked again")
    # past the TTL the sweep evicts (and zeroes) every DEK: wait for it, then the next unwrap is a miss
    cached = ok({"op": "status"})["cache"]["entries"]
    check(cached >= len(blobs), "every DEK is cached: %d of %d" % (cached, len(blobs)))
    wait_for(lambda: ok({"op": "status"})["cache"]["entries"] == 0, 10, "the sweep evicting every DEK past cache_ttl")
    check(ok({"op": "unwrap", "blob": next(iter(blobs))})["cached"] is False, "past the TTL, a miss")
    ok({"op": "metrics"})
    ok({"op": "status"})
    # malformed requests carrying a plaintext
    secret = os.urandom(32)
    remember(secret)
    c.send_raw(b'{"op":"wrap","key":"nope","plaintext":"%s"}\n' % b64(secret).encode())
    r = c.read_line()
    check(r["error"]["code"] == "unknown_key", "a wrap with an unknown key: %s" % r)
    c.send_raw(b'{"op":"wrap","key":"aes","plaintext":"%s","bogus":1\n' % b64(secret).encode())
    r = c.read_line()
    check(r["error"]["code"] == "bad_request", "a line that is not JSON: %s" % r)
    c.close()
    kb.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: reloaded" in kb.log_text(), 10, "the SIGHUP reload to be logged")
    check(kb.stop() == 0, "stop")
    # a wrong PIN: it must not be logged either
    wrong = os.path.join(root, "wrong.pin")
    with open(wrong, "w") as f:
        f.write("a1b2c3d4e5f60718\n")
    remember("a1b2c3d4e5f60718")
    os.chmod(wrong, 0o600)
    bad = Broker(root, token, start=False,
                 keys=token.key_section("aes", "aes-kek", "AES-KWP").replace(token.pin_file, wrong))
    run_with_wrong_pin(bad)
    check(len(sectest.SECRETS) >= 15, "the run saw its secrets: %d" % len(sectest.SECRETS))
    check(len(audit_lines(path)) > 50, "the run is on record")
    # sectest.run searches every log of the run; do it here too, to fail with this test's name
    sectest.scan_for_secrets(root)


def run_with_wrong_pin(kb):
    """Starts kb, whose PIN is wrong: either startup stops, or a wrap fails; both are logged."""
    import subprocess
    with open(kb.log, "ab") as logf:
        p = subprocess.Popen([sectest.KEYBROKERD, "-c", kb.conf], env=kb.env, stdout=logf, stderr=logf)
    sectest.STARTED.append(p)
    try:
        p.wait(timeout=5)
        return
    except subprocess.TimeoutExpired:
        pass
    r = kb.call({"op": "wrap", "key": "aes", "plaintext": b64(os.urandom(32))})
    check(r["ok"] is False, "a wrap with a wrong PIN failed: %s" % r)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)


if __name__ == "__main__":
    run(globals())
