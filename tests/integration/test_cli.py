#!/usr/bin/env python3
"""The keybroker CLI against a real keybrokerd: on a SoftHSM token, `--out
FILE` replaces the file whole by a new 0600 file, leaves it as it was on a
failure, and refuses untouched anything that is not a regular file; on the
real akv-emulator, `get` shows a version's times in ISO 8601 UTC."""
import json
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "azure"))
import azfix  # noqa: E402
from kbtest import CLI, Broker, Token, check  # noqa: E402


def setup(root):
    return Broker(root, Token(root))


def blob_and_dek(kb, root):
    """A fresh datakey's blob and its DEK, through the CLI (the DEK via --out of a new file)."""
    path = os.path.join(root, "fresh.dek")
    blob = kb.cli("datakey", "aes", "--out", path, check_rc=0).stdout.decode().strip()
    with open(path, "rb") as f:
        dek = f.read()
    os.unlink(path)
    check(len(dek) == 32, "datakey --out wrote 32 bytes, got %d" % len(dek))
    return blob, dek


def leftovers(d):
    return [n for n in os.listdir(d) if n.startswith(".")]


def snapshot(path):
    st = os.lstat(path)
    return (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns)


def out_replaces_a_regular_file_with_a_new_0600_file(root):
    kb = setup(root)
    outdir = os.path.join(root, "out")
    os.mkdir(outdir)
    target = os.path.join(outdir, "dek.bin")
    blob, dek = blob_and_dek(kb, root)
    for args in (["unwrap", "--out", target, blob], ["unwrap", "-o", target, blob]):
        with open(target, "wb") as f:
            f.write(b"an older and longer file that is not a key" * 10)
        os.chmod(target, 0o644)
        ino = os.stat(target).st_ino
        kb.cli(*args, check_rc=0)
        st = os.stat(target)
        check(stat.S_IMODE(st.st_mode) == 0o600, "mode %o, want 600" % stat.S_IMODE(st.st_mode))
        check(st.st_ino != ino, "the file was rewritten in place, not replaced by a new one")
        with open(target, "rb") as f:
            check(f.read() == dek, "the file holds the DEK and nothing else")
        check(leftovers(outdir) == [], "no temporary file is left: %s" % leftovers(outdir))
    # datakey --out replaces an existing file the same way, and prints the blob
    os.chmod(target, 0o644)
    p = kb.cli("datakey", "aes", "--out", target, check_rc=0)
    check(p.stdout.decode().startswith("kb2:aes:"), "datakey --out prints the blob: %r" % p.stdout)
    check(stat.S_IMODE(os.stat(target).st_mode) == 0o600, "datakey --out made a 0600 file")
    # a relative path lands in the working directory
    subprocess.run([CLI, "unwrap", "--out", "rel.bin", blob], cwd=outdir, check=True,
                   env=dict(kb.env, KEYBROKER_SOCKET=kb.sock))
    with open(os.path.join(outdir, "rel.bin"), "rb") as f:
        check(f.read() == dek, "a relative --out holds the DEK")


def out_failure_leaves_the_existing_file_as_it_was(root):
    kb = setup(root)
    target = os.path.join(root, "keep.bin")
    old = b"the user's file\n"
    with open(target, "wb") as f:
        f.write(old)
    os.chmod(target, 0o640)
    before = snapshot(target)
    blob, _ = blob_and_dek(kb, root)

    def small_files():
        # a 32-byte DEK cannot be written whole: write() fails with EFBIG halfway
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))

    p = subprocess.run([CLI, "unwrap", "--out", target, blob], env=dict(kb.env, KEYBROKER_SOCKET=kb.sock),
                       capture_output=True, preexec_fn=small_files, timeout=60)
    err = p.stderr.decode()
    check(p.returncode == 1, "a failed write exits 1, got %d: %s" % (p.returncode, err))
    check("cannot write %s" % target in err and "left as it was" in err, "the message says so: %s" % err)
    check(snapshot(target) == before, "the existing file is untouched")
    with open(target, "rb") as f:
        check(f.read() == old, "the existing file keeps its content")
    check(leftovers(root) == [], "the temporary file is removed: %s" % leftovers(root))
    # a directory that does not exist is an error naming the path, not a crash
    missing = os.path.join(root, "nodir", "dek.bin")
    p = kb.cli("unwrap", "--out", missing, blob, check_rc=1)
    check(missing in p.stderr.decode(), "names the path: %r" % p.stderr)


def out_refuses_what_is_not_a_regular_file_and_leaves_it_alone(root):
    kb = setup(root)
    blob, _ = blob_and_dek(kb, root)
    d = os.path.join(root, "adir")
    os.mkdir(d, 0o755)
    fifo = os.path.join(root, "afifo")
    os.mkfifo(fifo, 0o644)
    real = os.path.join(root, "real.txt")
    with open(real, "wb") as f:
        f.write(b"not a key\n")
    os.chmod(real, 0o644)
    link = os.path.join(root, "alink")
    os.symlink(real, link)
    cases = [(d, "a directory"), (fifo, "a FIFO"), (link, "a symbolic link"),
             ("/dev/null", "a character device")]
    for path, what in cases:
        before = snapshot(path)
        real_before = snapshot(real)
        for args in (["unwrap", "--out", path, blob], ["datakey", "aes", "--out", path]):
            p = kb.cli(*args, check_rc=2)
            err = p.stderr.decode()
            check("--out %s is %s" % (path, what) in err and "regular file" in err,
                  "%s: the refusal says what it is: %s" % (path, err))
            check(snapshot(path) == before, "%s keeps its mode and stays as it was" % path)
            check(snapshot(real) == real_before, "the symlink's target is untouched")
    check(os.listdir(d) == [], "nothing was written into the directory")
    check(os.path.islink(link) and os.readlink(link) == real, "the link is still the same link")
    check(sorted(os.listdir(root)) == sorted(["adir", "afifo", "alink", "real.txt", "token", "kb.sock",
                                              "keybrokerd.conf", "keybrokerd.log"]),
          "no file was left beside them: %s" % os.listdir(root))


def get_shows_version_times_in_iso_8601_utc(root):
    emu = azfix.Emu(root)
    kb = azfix.broker(root, azfix.key_section(emu, "rsa", root=root))
    version = kb.ok({"op": "get", "key": "rsa"})["latest"]
    nbf, exp = int(time.time()) - 86400, int(time.time()) + 365 * 86400
    emu.rest("PATCH", "vault", "/keys/rsa/" + version, {"attributes": {"nbf": nbf, "exp": exp}})
    kb.cli("flush", check_rc=0)
    for _ in range(100):  # version_refresh is 1 s: wait until the broker has seen the new times
        v = json.loads(kb.cli("--json", "get", "rsa", check_rc=0).stdout)["versions"][-1]
        if v.get("exp") == exp:
            break
        time.sleep(0.1)
    check(isinstance(v["created"], int) and v["nbf"] == nbf and v["exp"] == exp,
          "--json keeps Unix seconds: %s" % v)
    text = kb.cli("get", "rsa", check_rc=0).stdout.decode()
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    row = [line for line in text.splitlines() if line.startswith(version + " ")]
    check(len(row) == 1, "one row for version %s:\n%s" % (version, text))
    for t in (v["created"], nbf, exp):
        check(iso(t) in row[0], "%s (%d) in the row: %s" % (iso(t), t, row[0]))
    check(not re.search(r"\b1[0-9]{9}\b", text), "no raw Unix time in the text:\n%s" % text)


def rewrap_in_file_keeps_line_order_and_reports_failures(root):
    kb = setup(root)
    deks, lines = [], []
    for i in range(300):  # more than one batch's bytes
        r = kb.ok({"op": "datakey", "key": "aes" if i % 2 else "rsa"})
        deks.append(r["plaintext"])
        lines.append(r["blob"])
    lines[7] = "kb1:aes:01:AES-KWP:AAAA:zzzzzzzz"
    kb.ok({"op": "rotate", "key": "aes"})
    kb.ok({"op": "rotate", "key": "rsa"})
    path = os.path.join(root, "blobs.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    p = kb.cli("rewrap", "--in", path, check_rc=1)
    out = p.stdout.decode().splitlines()
    check(len(out) == 300, "one line out per line in (%d)" % len(out))
    check(out[7] == lines[7], "the failed line is written out unchanged")
    check("line 8: bad_blob" in p.stderr.decode() and "1 of 300 lines failed" in p.stderr.decode(),
          "stderr names the failed line and the count: %r" % p.stderr.decode()[-300:])
    kb.ok({"op": "flush"})
    for i, blob in enumerate(out):
        if i == 7:
            continue
        check(":02:" in blob, "line %d moved to version 02" % (i + 1))
        check(kb.ok({"op": "unwrap", "blob": blob})["plaintext"] == deks[i], "line %d keeps its DEK" % (i + 1))
    p = kb.cli("rewrap", "--in", "-", input=("\n".join(out[:3]) + "\n").encode(), check_rc=0)
    check(len(p.stdout.decode().splitlines()) == 3, "--in - reads stdin")


if __name__ == "__main__":
    azfix.run(globals())
