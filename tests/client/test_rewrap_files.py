#!/usr/bin/env python3
"""Bulk rewrap (`keybroker rewrap --in`) and the files it writes, against a
real keybrokerd on a SoftHSM token (the fixtures of tests/integration): it
never writes a file it reads, whatever name the file goes by, and it resumes
only an --out that its journal proves is this input's, line by line.

Every case checks what a careless operator must be able to count on: no
input line lost, no --out line holding another DEK than its input line, and
an exit status that is not 0 whenever a line was not moved."""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import kbtest  # noqa: E402
from kbtest import CLI, Broker, Token, check  # noqa: E402

BAD = "kb1:aes:01:AES-KWP:AAAA:zzzzzzzz"


def make_input(kb, root, name, n, newline_at_end=True, bad_at=None):
    """A file of n fresh blobs (aes and rsa alternating), rotated past: (path, its lines)."""
    lines = [kb.ok({"op": "datakey", "key": "aes" if i % 2 else "rsa"})["blob"] for i in range(n)]
    if bad_at is not None:
        lines[bad_at] = BAD
    path = os.path.join(root, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + ("\n" if newline_at_end else ""))
    return path, lines


def rotate(kb):
    kb.ok({"op": "rotate", "key": "aes"})
    kb.ok({"op": "rotate", "key": "rsa"})


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def read_lines(path):
    return read_bytes(path).decode().splitlines()


def deks(kb, blobs):
    """The DEK inside each blob (None for one the broker refuses), by batch unwraps after a flush."""
    kb.ok({"op": "flush"})
    out = []
    for i in range(0, len(blobs), 64):
        r = kb.ok({"op": "unwrap", "blobs": blobs[i:i + 64]})
        out += [x.get("plaintext") if x["ok"] else None for x in r["results"]]
    return out


def check_out_matches(kb, in_lines, out_lines, moved=None):
    """--out answers the input line by line: as many lines, each the same DEK as its input line."""
    check(len(out_lines) == len(in_lines), "--out has %d lines for %d input lines" % (len(out_lines), len(in_lines)))
    want, got = deks(kb, in_lines), deks(kb, out_lines)
    for i, (a, b) in enumerate(zip(want, got)):
        check(a == b, "--out line %d holds another DEK than input line %d" % (i + 1, i + 1))
    if moved is not None:
        for i in moved:
            check(":02:" in out_lines[i], "--out line %d moved to version 02: %s" % (i + 1, out_lines[i][:30]))


def rewrap(kb, *args, stdout=None, timeout=60):
    """keybroker rewrap ARGS; a run that does not end within timeout counts as a failure of the test."""
    env = dict(kb.env, KEYBROKER_SOCKET=kb.sock)
    try:
        return subprocess.run([CLI, "rewrap"] + list(args), env=env, stdin=subprocess.DEVNULL,
                              stdout=stdout if stdout is not None else subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise kbtest.Failure("keybroker rewrap %s did not end within %d s" % (" ".join(args), timeout))


def refused(p, what, want=None):
    err = p.stderr.decode(errors="replace")
    check(p.returncode == 2, "%s: refused with exit status 2, got %d:\n%s" % (what, p.returncode, err))
    if want:
        check(want in err, "%s: the refusal says %r:\n%s" % (what, want, err))


def failed_naming_the_input_is_refused_and_the_input_kept(root):
    kb = Broker(root, Token(root))
    src, lines = make_input(kb, root, "in.txt", 300)
    rotate(kb)
    before = read_bytes(src)
    os.link(src, os.path.join(root, "hard.txt"))
    os.symlink(src, os.path.join(root, "link.txt"))
    os.chdir(root)
    for name in ("in.txt", "./in.txt", src, "hard.txt", "link.txt"):
        p = rewrap(kb, "--in", src, "--out", os.path.join(root, "new.txt"), "--failed", name)
        refused(p, "--failed %s" % name, "symbolic link" if name == "link.txt" else "same file as --in")
        check(read_bytes(src) == before, "--failed %s: the input keeps its 300 lines" % name)
        check(not os.path.exists(os.path.join(root, "new.txt")), "--failed %s: nothing written" % name)
    # the same run with a --failed of its own moves every line
    p = rewrap(kb, "--in", src, "--out", "new.txt", "--failed", "failed.txt")
    check(p.returncode == 0, p.stderr.decode())
    check_out_matches(kb, lines, read_lines("new.txt"), moved=range(300))


def out_naming_the_input_is_refused_and_no_blob_is_cut(root):
    kb = Broker(root, Token(root))
    src, lines = make_input(kb, root, "in.txt", 300, newline_at_end=False)
    rotate(kb)
    before = read_bytes(src)
    os.link(src, os.path.join(root, "hard.txt"))
    os.symlink(src, os.path.join(root, "link.txt"))
    os.chdir(root)
    for name in ("in.txt", "./in.txt", "hard.txt", "link.txt", os.path.join(root, ".", "in.txt")):
        p = rewrap(kb, "--in", "in.txt", "--out", name)
        refused(p, "--out %s" % name, "symbolic link" if name == "link.txt" else "same file as --in")
        check(read_bytes(src) == before, "--out %s: the input keeps all 300 blobs, the last one whole" % name)
    # the input as the journal of --out
    shutil.copy(src, "x.journal")
    p = rewrap(kb, "--in", "x.journal", "--out", "x")
    refused(p, "--in is the journal of --out", "same file as --in")
    # stdout appended to the input (>> in.txt)
    with open(src, "ab") as f:
        p = rewrap(kb, "--in", "in.txt", stdout=f)
    refused(p, "stdout appending to the input", "same file as --in")
    check(read_bytes(src) == before, "stdout >> input: the input is unchanged")
    # without a trailing newline, every blob moves, the last one whole
    p = rewrap(kb, "--in", "in.txt", "--out", "new.txt")
    check(p.returncode == 0, p.stderr.decode())
    check_out_matches(kb, lines, read_lines("new.txt"), moved=range(300))


def symlinked_outputs_are_refused_and_their_targets_kept(root):
    kb = Broker(root, Token(root))
    src, lines = make_input(kb, root, "in.txt", 40)
    rotate(kb)
    target = os.path.join(root, "precious.txt")
    with open(target, "w") as f:
        f.write("what another job keeps here\n")
    os.symlink(target, os.path.join(root, "failed-link"))
    os.symlink(target, os.path.join(root, "out-link"))
    os.symlink(os.path.join(root, "nowhere"), os.path.join(root, "dangling"))
    os.chdir(root)
    for args in (["--failed", "failed-link", "--out", "new.txt"], ["--out", "out-link"],
                 ["--out", "dangling"], ["--out", "new.txt", "--failed", "dangling"]):
        p = rewrap(kb, "--in", src, *args)
        refused(p, " ".join(args), "symbolic link")
        check(read_bytes(target) == b"what another job keeps here\n", "%s: the link's target is kept" % " ".join(args))
        check(not os.path.exists(os.path.join(root, "nowhere")), "%s: the dangling link made no file" % " ".join(args))
    # --out and --failed one file
    p = rewrap(kb, "--in", src, "--out", "a.txt", "--failed", "./a.txt")
    refused(p, "--out and --failed one file", "same file as --out")


def resume_refuses_an_out_of_another_input_naming_the_line(root):
    kb = Broker(root, Token(root))
    a_src, a_lines = make_input(kb, root, "a.txt", 200)
    b_src, b_lines = make_input(kb, root, "b.txt", 200)
    rotate(kb)
    a_out, b_out = os.path.join(root, "a.new"), os.path.join(root, "b.new")
    check(rewrap(kb, "--in", a_src, "--out", a_out).returncode == 0, "the run of a.txt")
    # the case: the head of another run's output, no journal
    stale = os.path.join(root, "stale.out")
    with open(stale, "w") as f:
        f.write("\n".join(read_lines(a_out)[:100]) + "\n")
    before = read_bytes(stale)
    p = rewrap(kb, "--in", b_src, "--out", stale)
    refused(p, "an --out without a journal", "not known to be this input's output")
    check(read_bytes(stale) == before, "the stale --out is left as it was")
    # another run's output with its journal
    shutil.copy(a_out, stale)
    shutil.copy(a_out + ".journal", stale + ".journal")
    p = rewrap(kb, "--in", b_src, "--out", stale)
    refused(p, "another input's --out and journal", "line 1 answers another line than line 1 of")
    check(read_bytes(stale) == read_bytes(a_out), "it is left as it was")
    # this input's journal, but --out holds another run's lines from line 51 on
    check(rewrap(kb, "--in", b_src, "--out", b_out).returncode == 0, "the run of b.txt")
    mixed = read_lines(b_out)[:50] + read_lines(a_out)[50:100]
    with open(b_out, "w") as f:
        f.write("\n".join(mixed) + "\n")
    p = rewrap(kb, "--in", b_src, "--out", b_out)
    refused(p, "an --out changed from line 51 on", "line 51 is not the line keybroker rewrap wrote there")
    check(read_lines(b_out) == mixed, "it is left as it was")
    # this input's --out and journal, the journal of other options
    check(rewrap(kb, "--in", a_src, "--out", a_out, "--to-version", "02").returncode == 2, "other options refused")
    # a line the journal has no record of
    with open(a_out, "a") as f:
        f.write(b_lines[0] + "\n")
    p = rewrap(kb, "--in", a_src, "--out", a_out)
    refused(p, "an --out longer than its journal", "line 201 is not in its journal")


def resume_after_a_crash_moves_every_line_and_keeps_failures_failing(root):
    kb = Broker(root, Token(root))
    src, lines = make_input(kb, root, "in.txt", 300, newline_at_end=False, bad_at=7)
    rotate(kb)
    out, failed = os.path.join(root, "in.new"), os.path.join(root, "in.failed")
    p = rewrap(kb, "--in", src, "--out", out, "--failed", failed)
    check(p.returncode == 1, "line 8 fails: exit 1:\n" + p.stderr.decode())
    full = read_lines(out)
    # as if the run had died in the middle of line 121, its journal a batch ahead
    with open(out, "w") as f:
        f.write("\n".join(full[:120]) + "\n" + full[120][:40])
    p = rewrap(kb, "--in", src, "--out", out, "--failed", failed)
    err = p.stderr.decode()
    check(p.returncode == 1, "line 8 still not moved: exit 1, got %d:\n%s" % (p.returncode, err))
    check("120 lines skipped" in err and "1 of them failed in an earlier run" in err, err)
    again = read_lines(out)
    check(again[:120] == full[:120] and again[7] == BAD, "the 120 lines done are kept, line 8 unchanged")
    check(read_lines(failed) == [BAD], "--failed still lists line 8: %s" % read_lines(failed))
    ok = [i for i in range(300) if i != 7]
    check_out_matches(kb, [lines[i] for i in ok], [again[i] for i in ok], moved=range(299))
    # the journal of a finished run: nothing left to do, line 8 still counts
    p = rewrap(kb, "--in", src, "--out", out)
    check(p.returncode == 1 and "300 lines skipped" in p.stderr.decode(), p.stderr.decode())
    check(read_lines(out) == again, "a finished --out is left as it was")


if __name__ == "__main__":
    kbtest.run(globals())
