#!/usr/bin/env python3
"""keybroker's tables on a terminal and in a pipe, against a real keybrokerd
on a SoftHSM token. The terminal is a pty (its size set with TIOCSWINSZ, or
left 0x0 so that COLUMNS counts): every line fits its width, and the detail
and fix of a doctor check wrap under their row with no word lost. In a pipe,
each row is one line however long; --json is the same either way; bench's
progress line appears on a terminal only.

usage: test_terminal.py TEST (KB_* in the environment, as kbtest wants)
"""
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios

SRC = os.environ["KB_SOURCE_ROOT"]
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
from kbtest import CLI, Broker, Token, check, run  # noqa: E402


def setup(root):
    """A broker whose rsa key's pin_file is readable by others, so doctor warns with a fix."""
    token = Token(root)
    os.chmod(token.pin_file, 0o644)
    kb = Broker(root, token)
    env = dict(kb.env)
    env["KEYBROKER_SOCKET"] = kb.sock
    env.pop("COLUMNS", None)
    return kb, env


def on_pty(args, env, cols, rows=24):
    """Runs keybroker ARGS with stdin, stdout and stderr on a new pty of cols
    columns (None: 0x0, as a terminal that never said); returns (status, text)."""
    master, slave = pty.openpty()
    if cols is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    p = subprocess.Popen([CLI] + list(args), stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            d = os.read(master, 65536)
        except OSError:  # EIO: every writer has closed the pty
            break
        if not d:
            break
        out += d
    rc = p.wait(timeout=60)
    os.close(master)
    return rc, out.decode().replace("\r\n", "\n")


def piped(args, env):
    p = subprocess.run([CLI] + list(args), env=env, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def words(text):
    return " ".join(text.split())


def doctor_checks(env):
    rc, out, _ = piped(["--json", "doctor", "rsa"], env)
    checks = json.loads(out)["checks"]
    for c in checks:
        c["fix"] = c.get("fix") or "-"  # null when there is nothing to fix; shown as -
    check(any(c["status"] == "warn" and c["fix"] != "-" for c in checks),
          "doctor rsa has no warning with a fix to wrap: %s" % checks)
    check(max(len(c["detail"]) for c in checks) > 60, "no detail is longer than 60 columns")
    return checks


def fits(text, width):
    long = [line for line in text.splitlines() if len(line) > width]
    check(not long, "lines longer than %d columns:\n%s" % (width, "\n".join(long)))


def doctor_on_a_terminal_fits_its_width_and_loses_no_word(root):
    kb, env = setup(root)
    try:
        checks = doctor_checks(env)
        rc, out = on_pty(["doctor", "rsa"], env, 60)
        check(rc == 0, "doctor exited %d:\n%s" % (rc, out))
        fits(out, 60)
        check(out.splitlines()[0].split() == ["CHECK", "STATUS"], "header: %r" % out.splitlines()[0])
        flat = words(out)
        for c in checks:
            check(words(c["check"]) in flat, "check %r is missing" % c["check"])
            check(words("detail: " + c["detail"]) in flat, "the detail of %r is not whole under its row:\n%s"
                  % (c["check"], out))
            if c["fix"] != "-":
                check(words("fix: " + c["fix"]) in flat, "the fix of %r is not whole:\n%s" % (c["check"], out))
    finally:
        kb.stop()


def columns_sets_the_width_of_a_terminal_that_has_none(root):
    kb, env = setup(root)
    try:
        doctor_checks(env)
        rc, out = on_pty(["doctor", "rsa"], env, None)
        fits(out, 80)
        check(max(len(line) for line in out.splitlines()) > 70, "a 0x0 terminal without COLUMNS is not 80 wide")
        rc, out = on_pty(["doctor", "rsa"], dict(env, COLUMNS="50"), None)
        fits(out, 50)
        # the terminal's own size wins over COLUMNS
        rc, out = on_pty(["doctor", "rsa"], dict(env, COLUMNS="50"), 72)
        fits(out, 72)
        check(max(len(line) for line in out.splitlines()) > 50, "COLUMNS overrode the terminal's size")
    finally:
        kb.stop()


def status_on_a_terminal_fits_its_width(root):
    kb, env = setup(root)
    try:
        rc, out_pipe, _ = piped(["status"], env)
        check(rc == 0, "status exited %d" % rc)
        check(max(len(line) for line in out_pipe.splitlines()) > 100, "status has no line over 100 to wrap")
        rc, out = on_pty(["status"], env, 44)
        check(rc == 0, "status exited %d:\n%s" % (rc, out))
        fits(out, 44)
        for key in ("rsa", "aes"):
            check(any(line.split()[:1] == [key] for line in out.splitlines()), "key %s has no row:\n%s" % (key, out))
        for field in ("requests=", "backend_calls=", "connections_refused="):
            check(field in out, "%s is lost:\n%s" % (field, out))
    finally:
        kb.stop()


def piped_tables_keep_one_row_per_line(root):
    kb, env = setup(root)
    try:
        checks = doctor_checks(env)
        rc, out, err = piped(["doctor", "rsa"], env)
        lines = out.splitlines()
        check(len(lines) == 1 + len(checks), "%d lines for %d checks:\n%s" % (len(lines), len(checks), out))
        check(lines[0].split() == ["CHECK", "STATUS", "DETAIL", "FIX"], "header: %r" % lines[0])
        for line, c in zip(lines[1:], checks):
            check(line.startswith(c["check"]) and c["detail"] in line and line.endswith(c["fix"]),
                  "row of %r is not one line holding it all: %r" % (c["check"], line))
        rc, out, err = piped(["status"], env)
        rows = out.split("\nkeys:\n", 1)[1].splitlines()
        check(len(rows) == 3 and rows[1].split()[0] == "rsa" and rows[2].split()[0] == "aes",
              "keys table piped: %s" % rows)
    finally:
        kb.stop()


def json_is_the_same_on_a_terminal_and_in_a_pipe(root):
    kb, env = setup(root)
    try:
        rc, out_pipe, _ = piped(["--json", "doctor", "rsa"], env)
        rc, out_tty = on_pty(["--json", "doctor", "rsa"], env, 40)
        check(len(out_tty.splitlines()) == 1, "--json on a terminal is not one line:\n%s" % out_tty)
        a, b = json.loads(out_pipe), json.loads(out_tty)
        a.pop("id", None)
        b.pop("id", None)
        check(a == b, "--json differs:\npipe: %s\ntty: %s" % (a, b))
    finally:
        kb.stop()


def bench_progress_shows_on_a_terminal_only(root):
    kb, env = setup(root)
    try:
        args = ["bench", "--key", "aes", "--op", "unwrap-hit", "--duration", "3.5", "--warmup", "0"]  # progress starts after 2 s
        rc, out, err = piped(args, env)
        check(rc == 0, "bench exited %d: %s" % (rc, err))
        check("\r" not in out + err and " requests, " not in err, "progress in a pipe:\n%r" % err)
        rc, out = on_pty(args, env, 100)
        check(rc == 0, "bench on a terminal exited %d:\n%s" % (rc, out))
        check("\r" in out and " requests, " in out, "no progress line on a terminal:\n%r" % out)
    finally:
        kb.stop()


if __name__ == "__main__":
    run(globals())
