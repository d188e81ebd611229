#!/usr/bin/env python3
"""keybrokerd's own command line and config handling, driven as a user would: the real
daemon on a real SoftHSM token, --check, usage errors, comments, typos and the PIN file."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kbtest import KEYBROKERD, Broker, Token, b64, check, run, unb64  # noqa: E402


def keybrokerd(*args, env=None):
    return subprocess.run([KEYBROKERD] + list(args), env=env, capture_output=True, text=True, timeout=60)


def line_of(path, text):
    """The 1-based line of path that holds text."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if text in line:
                return n
    raise AssertionError("%s not in %s" % (text, path))


def check_reports_every_key_and_fails_if_one_does(root):
    token = Token(root)
    keys = (token.key_section("gone", "no-such-label", "AES-KWP") +
            token.key_section("typo", "aes-kek", "AES-KWP", "cache_tll = 5m") +
            token.key_section("rsa", "rsa-kek", "RSA-OAEP") +
            token.key_section("aes", "aes-kek", "AES-KWP"))
    kb = Broker(root, token, keys=keys, start=False)
    p = keybrokerd("-c", kb.conf, "--check", env=kb.env)
    check(p.returncode == 1, "--check with a failing key exits 1: %d %s" % (p.returncode, p.stderr))
    # a line for every key, the ones after a failure too
    check("key gone: FAIL: " in p.stderr and "no-such-label" in p.stderr, "the missing key's line: %r" % p.stderr)
    typo = line_of(kb.conf, "cache_tll")
    check("key typo: FAIL: bad_request: %s:%d: [key:typo] cache_tll: unknown option" % (kb.conf, typo) in p.stderr
          and "did you mean cache_ttl?" in p.stderr, "the misspelt option's line: %r" % p.stderr)
    check("key rsa: ok: pkcs11 RSA 2048-bit" in p.stdout and "key aes: ok: pkcs11 AES 256-bit" in p.stdout,
          "the good keys after the failing ones: %r" % p.stdout)
    check(p.stdout.rstrip().endswith("FAILED (4 keys)"), "the summary: %r" % p.stdout)
    good = Broker(root, token, start=False)
    p = keybrokerd("-c", good.conf, "--check", env=good.env)
    check(p.returncode == 0 and p.stdout.rstrip().endswith("ok (2 keys)"), "all keys ok: %r %r" % (p.stdout, p.stderr))


def check_refuses_a_socket_group_that_does_not_exist(root):
    token = Token(root)
    kb = Broker(root, token, broker_extra="socket_mode = 0660\nsocket_group = nosuchgroup-kb\n", start=False)
    n = line_of(kb.conf, "socket_group")
    p = keybrokerd("-c", kb.conf, "--check", env=kb.env)
    want = '%s:%d: [broker] socket_group: no group named "nosuchgroup-kb"' % (kb.conf, n)
    check(p.returncode == 1 and want in p.stderr, "--check names file, line and group: %d %r" % (p.returncode, p.stderr))
    # and so does the real start, before it makes a socket
    check(kb.start(expect_fail=True) == 1 and want in kb.log_text(), "startup: %r" % kb.log_text())
    check(not os.path.exists(kb.sock), "no socket was made")


def usage_errors_say_what_is_wrong_and_exit_2(root):
    conf = os.path.join(root, "kb.conf")
    with open(conf, "w") as f:
        f.write("[broker]\nsocket = %s\n" % os.path.join(root, "kb.sock"))
    cases = [
        ([], "no configuration given: name it with -c FILE"),
        (["--check"], "no configuration given"),
        (["--bogus"], "unknown option --bogus"),
        (["-x", "-c", conf], "unknown option -x"),
        (["-c"], "-c needs a value"),
        (["--config"], "--config needs a value"),
        (["--check=yes", "-c", conf], "--check=yes takes no value"),
        (["-c", conf, "extra"], 'unexpected argument "extra"'),
    ]
    for args, why in cases:
        p = keybrokerd(*args)
        check(p.returncode == 2, "keybrokerd %s exits 2: %d" % (" ".join(args), p.returncode))
        check(p.stderr.startswith("keybrokerd: " + why.split(":")[0]) and why in p.stderr,
              "keybrokerd %s says why first: %r" % (" ".join(args), p.stderr))
        check("usage: keybrokerd -c FILE" in p.stderr, "then the usage: %r" % p.stderr)
    p = keybrokerd("--help")
    check(p.returncode == 0 and p.stdout.startswith("usage: keybrokerd -c FILE") and p.stderr == "",
          "--help prints the usage and exits 0: %r" % p.stdout)
    p = keybrokerd("--version")
    check(p.returncode == 0 and p.stdout.startswith("keybrokerd ") and p.stderr == "", "--version: %r" % p.stdout)
    p = keybrokerd("-c", os.path.join(root, "nosuch.conf"))
    check(p.returncode == 1 and "nosuch.conf: cannot open the config: No such file or directory" in p.stderr,
          "a missing config names the file and errno: %r" % p.stderr)


def inline_comments_are_ignored_as_the_docs_write_them(root):
    token = Token(root)
    rsa = token.key_section("rsa", "rsa-kek", "RSA-OAEP").replace(
        "pin_file = %s\n" % token.pin_file, "pin_file = %s     # holds: the user PIN\n" % token.pin_file)
    kb = Broker(root, token, broker_extra="cache_ttl = 90s   # a minute and a half\nworkers = 1 ; one\n",
                keys=rsa)
    pt = os.urandom(32)
    blob = kb.ok({"op": "wrap", "key": "rsa", "plaintext": b64(pt)})["blob"]
    check(unb64(kb.ok({"op": "unwrap", "blob": blob})["plaintext"]) == pt, "the key with a commented pin_file works")
    check(kb.status()["cache"]["ttl_s"] == 90, "cache_ttl without its comment")
    check(kb.stop() == 0, "stop")
    # a # with no space before it is part of the value: refused, with a hint
    bad = Broker(root, token, broker_extra="cache_ttl = 90s# a minute and a half\n", keys=rsa, start=False)
    n = line_of(bad.conf, "cache_ttl")
    p = keybrokerd("-c", bad.conf, "--check", env=bad.env)
    check(p.returncode == 1 and "%s:%d: [broker] cache_ttl:" % (bad.conf, n) in p.stderr and
          "a comment starts with # or ; after a space or tab" in p.stderr, "the hint: %r" % p.stderr)


def misspelt_options_get_a_suggestion(root):
    token = Token(root)
    kb = Broker(root, token, broker_extra="cache_tll = 5m\n", start=False)
    check(kb.start(expect_fail=True) == 1, "a misspelt [broker] option stops startup")
    check("[broker] cache_tll: unknown option; did you mean cache_ttl?" in kb.log_text(), kb.log_text())
    # a misspelt backend option: the backend misses pin_file, and the typo is named too
    aes = token.key_section("aes", "aes-kek", "AES-KWP").replace("pin_file =", "pin_flie =")
    kb = Broker(root, token, keys=aes, start=False)
    p = keybrokerd("-c", kb.conf, "--check", env=kb.env)
    check(p.returncode == 1 and "pin_flie: unknown option for backend pkcs11; did you mean pin_file?" in p.stderr,
          "the backend option's suggestion: %r" % p.stderr)


def pin_file_readable_by_others_is_warned(root):
    token = Token(root)
    os.chmod(token.pin_file, 0o644)
    kb = Broker(root, token, start=False)
    want = "pin_file %s, mode 0644: chmod 600 %s: other users can read the PIN" % (token.pin_file, token.pin_file)
    p = keybrokerd("-c", kb.conf, "--check", env=kb.env)
    check(p.returncode == 0 and "key rsa: ok" in p.stdout, "the PIN still works: %r" % p.stderr)
    check(want in p.stderr, "--check warns: %r" % p.stderr)
    kb.start()
    check("key rsa: " + want in kb.log_text(), "startup warns: %r" % kb.log_text())
    check(kb.stop() == 0, "stop")
    os.chmod(token.pin_file, 0o600)
    p = keybrokerd("-c", kb.conf, "--check", env=kb.env)
    check(p.returncode == 0 and "chmod 600" not in p.stderr, "a private PIN file is not warned about: %r" % p.stderr)


if __name__ == "__main__":
    run(globals())
