#!/usr/bin/env python3
"""keybroker's bash completion, driven in a real bash: bash-completion's
bash_completion and completion/keybroker.bash are sourced, COMP_WORDS and
COMP_CWORD set as readline sets them for a command line, _keybroker called,
and COMPREPLY compared with what keybroker --help and a real keybrokerd (on a
SoftHSM token) say.

usage: test_completion.py TEST (KB_* in the environment, as kbtest wants)
"""
import os
import re
import subprocess
import sys

SRC = os.environ["KB_SOURCE_ROOT"]
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
from kbtest import CLI, Broker, Token, check, run  # noqa: E402

BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"
SCRIPT = os.path.join(SRC, "completion", "keybroker.bash")

# the command line up to the cursor becomes COMP_WORDS the way readline splits it
DRIVER = r'''
source "$1"
source "$2"
line=$3
read -ra COMP_WORDS <<< "$line"
[[ $line == *" " || -z $line ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE=$line
COMP_POINT=${#line}
complete -p keybroker >/dev/null || exit 3
_keybroker
printf '%s\n' "${COMPREPLY[@]}"
'''


def complete(line, env=None, cwd=None):
    """The completions bash offers for line (the cursor at its end)."""
    e = dict(env or os.environ)
    e["PATH"] = os.path.dirname(CLI) + ":" + e.get("PATH", "/usr/bin:/bin")
    p = subprocess.run(["bash", "-c", DRIVER, "driver", BASH_COMPLETION, SCRIPT, line],
                       capture_output=True, text=True, env=e, cwd=cwd, timeout=60)
    check(p.returncode == 0, "bash exited %d on %r: %s" % (p.returncode, line, p.stderr))
    return [w for w in p.stdout.splitlines() if w]


def help_of(*args):
    return subprocess.run([CLI] + list(args) + ["--help"], capture_output=True, text=True).stdout


def subcommands_are_those_keybroker_help_lists(root):
    listed = re.findall(r"^  ([a-z][a-z-]*) ", help_of().split("commands:", 1)[1].split("\n\n", 1)[0], re.M)
    got = complete("keybroker ")
    check(sorted(got) == sorted(listed + ["help"]), "offered %s, keybroker --help lists %s" % (got, listed))
    check(complete("keybroker do") == ["doctor"], "keybroker do<Tab>: %s" % complete("keybroker do"))
    check(sorted(complete("keybroker help ")) == sorted(listed), "help <Tab>: %s" % complete("keybroker help "))


def options_are_the_subcommands_own_and_the_global_ones(root):
    for cmd in ("unwrap", "datakey", "rewrap", "bench"):
        want = set(re.findall(r"^ +(?:-[a-z], )?(--[a-z-]+)", help_of(cmd), re.M)) | {"--help"}
        got = set(complete("keybroker %s --" % cmd))
        check(got == want, "keybroker %s --<Tab> offered %s, its --help has %s" % (cmd, sorted(got), sorted(want)))
    check(set(complete("keybroker --")) == {"--socket", "--json", "--help", "--version"},
          "keybroker --<Tab>: %s" % complete("keybroker --"))
    check(complete("keybroker unwrap --fo") == ["--force-tty"], "--fo<Tab>: %s" % complete("keybroker unwrap --fo"))


def key_names_come_from_the_running_broker(root):
    kb = Broker(root, Token(root))
    try:
        env = dict(kb.env)
        env["KEYBROKER_SOCKET"] = kb.sock
        names = sorted(k["name"] for k in kb.status()["keys"])
        check(names == ["aes", "rsa"], "the broker has keys %s" % names)
        for line in ("keybroker doctor ", "keybroker rotate ", "keybroker --json get ",
                     "keybroker wrap --alg RSA-OAEP ", "keybroker bench --key ", "keybroker bench --op wrap -k "):
            got = sorted(complete(line, env))
            check(got == names, "%r offered %s, want the broker's keys %s" % (line, got, names))
        check(complete("keybroker rotate a", env) == ["aes"], "rotate a<Tab>")
        # -s on the line is the broker asked, not $KEYBROKER_SOCKET
        env_elsewhere = dict(env, KEYBROKER_SOCKET="/nonexistent/kb.sock")
        check(sorted(complete("keybroker -s %s flush " % kb.sock, env_elsewhere)) == names, "-s PATH flush <Tab>")
        check(complete("keybroker flush ", env_elsewhere) == [], "no broker, no key names")
        # a blob, a second key or a value that is no key gets no key names
        for line in ("keybroker unwrap ", "keybroker get rsa ", "keybroker datakey aes --bits "):
            check(complete(line, env) == [], "%r offered %s" % (line, complete(line, env)))
    finally:
        kb.stop()


def option_values_are_completed_by_kind(root):
    os.mkdir(os.path.join(root, "dir"))
    open(os.path.join(root, "dek.bin"), "w").close()
    got = sorted(complete("keybroker unwrap --out ", cwd=root))
    check("dek.bin" in got and "dir" in got, "--out <Tab> in a dir with dek.bin: %s" % got)
    check(sorted(complete("keybroker unwrap --out=d", cwd=root)) == ["dek.bin", "dir"],
          "--out=d<Tab>: %s" % complete("keybroker unwrap --out=d", cwd=root))
    ops = complete("keybroker bench --op ")
    want = re.search(r"^ +--op OP +(.*)", help_of("bench"), re.M).group(1).replace(",", "").split()
    check(ops == want, "--op <Tab>: %s, bench --help says %s" % (ops, want))
    check(complete("keybroker wrap --alg RSA-OAEP-") == ["RSA-OAEP-256"], "--alg RSA-OAEP-<Tab>")
    # the algorithms are the names broker/alg.c knows, no more, no fewer
    with open(os.path.join(SRC, "broker", "alg.c")) as f:
        names = re.findall(r'{ KB_ALG_[A-Z0-9_]+, "([^"]+)" }', f.read())
    check(len(names) >= 8, "found only %s in broker/alg.c" % names)
    got = complete("keybroker wrap --alg ")
    check(sorted(got) == sorted(names), "--alg <Tab> offers %s, broker/alg.c has %s" % (got, names))


if __name__ == "__main__":
    run(globals())
