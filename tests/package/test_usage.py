#!/usr/bin/env python3
"""--help, --version and a usage error, on every binary and every keybroker
subcommand, with the exit codes the man pages document: 0 for --help and
--version (on stdout, nothing on stderr), 2 for a usage error (on stderr,
nothing on stdout). keybroker's subcommands are read from keybroker --help.

usage: test_usage.py BINARY_NAME (the KB_* paths in the environment)
"""
import os
import re
import subprocess
import sys

VERSION = os.environ["KB_VERSION"]
BINARIES = {
    "keybrokerd": os.environ["KB_KEYBROKERD"],
    "keybroker": os.environ["KB_CLI"],
    "akv-emulator": os.environ["KB_AKV_EMULATOR"],
    "kb-bench-compare": os.environ["KB_BENCH_COMPARE"],
}


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    return p.returncode, p.stdout, p.stderr


def expect(argv, rc, out_re=None, err_re=None, problems=None):
    got, out, err = run(argv)
    what = " ".join([os.path.basename(argv[0])] + argv[1:])
    if got != rc:
        problems.append("%s exited %d, want %d (stderr: %s)" % (what, got, rc, err.strip()[:200]))
    if out_re is not None and not re.search(out_re, out):
        problems.append("%s: stdout %r lacks %r" % (what, out[:200], out_re))
    if out_re is None and out:
        problems.append("%s: wrote to stdout: %r" % (what, out[:200]))
    if err_re is not None and not re.search(err_re, err):
        problems.append("%s: stderr %r lacks %r" % (what, err[:200], err_re))
    if err_re is None and err:
        problems.append("%s: wrote to stderr: %r" % (what, err[:200]))
    return out


def check_binary(name):
    path = BINARIES[name]
    problems = []
    expect([path, "--help"], 0, r"^usage: %s" % re.escape(name), None, problems)
    expect([path, "--version"], 0, r"^%s %s\n$" % (re.escape(name), re.escape(VERSION)), None, problems)
    expect([path, "--no-such-option"], 2, None, r"no-such-option", problems)
    if name == "keybroker":
        top = expect([path, "--help"], 0, r"^usage:", None, [])
        cmds = re.findall(r"^  ([a-z][a-z-]*) ", top.split("commands:", 1)[1].split("\n\n", 1)[0], re.M)
        if len(cmds) < 10:
            problems.append("keybroker --help lists only %s" % cmds)
        for cmd in cmds:
            expect([path, cmd, "--help"], 0, r"^usage: keybroker %s\b" % cmd, None, problems)
            expect([path, "help", cmd], 0, r"^usage: keybroker %s\b" % cmd, None, problems)
            expect([path, cmd, "--version"], 0, r"^keybroker %s\n$" % re.escape(VERSION), None, problems)
            expect([path, cmd, "--no-such-option"], 2, None,
                   r"keybroker %s: unknown option --no-such-option\nTry 'keybroker %s --help'" % (cmd, cmd),
                   problems)
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print("ok: %s" % name)


if __name__ == "__main__":
    check_binary(sys.argv[1])
