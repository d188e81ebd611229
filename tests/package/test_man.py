#!/usr/bin/env python3
"""The man pages against the one place each thing they document is defined.

Option names are read at test time from the code that reads them (broker/
options.c, config.c, keyconf.c, keys.c, pkcs11/conf.c, hsm/conf.c), and
subcommands and command-line options from the binaries' own --help, so a new
option that the man page does not describe fails here, and so does a man page
entry for an option the code no longer reads.

usage: test_man.py TEST (KB_SOURCE_ROOT, KB_BUILD_ROOT and the KB_* binaries in
the environment).
"""
import os
import re
import subprocess
import sys

SRC = os.environ["KB_SOURCE_ROOT"]
BUILD = os.environ["KB_BUILD_ROOT"]
MAN = os.path.join(SRC, "man")


class Failure(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def read(*path):
    with open(os.path.join(SRC, *path)) as f:
        return f.read()


def scd(page):
    return read("man", page + ".scd")


def function_body(text, signature):
    """The text of the C function whose definition starts with signature."""
    start = text.index(signature)
    m = re.search(r"\n}\n", text[start:])
    return text[start:start + m.end()]


def quoted_array(text, name):
    """The string literals of the C array named name."""
    m = re.search(re.escape(name) + r"\[[^\]]*\]\s*=\s*{(.*?)};", text, re.S)
    check(m is not None, "no array %s" % name)
    return re.findall(r'"([a-z][a-z0-9_]*)"', m.group(1))


def code_options():
    """{man page section: set of option names}, as the code reads them."""
    config = read("broker", "config.c")
    # [broker] is parsed through the options table's rows (broker/options.c)
    broker = set(re.findall(r'\{ B, "([a-z0-9_]+)"', read("broker", "options.c")))
    key = set(quoted_array(read("broker", "keyconf.c"), "kb_keyconf_core"))
    key |= set(re.findall(r'!strcmp\(name, "([a-z0-9_]+)"\)',
                          function_body(config, "static int key_option(")))
    key |= set(re.findall(r'"(allow_[a-z]+)"', read("broker", "keys.c")))
    key |= set(re.findall(r'kb_keyconf_take\(kc, "([a-z_]+)"', read("broker", "keys.c")))
    taking = re.compile(r'\b(?:kb_keyconf_take|opt_or_env|take_[a-z]+)\(\s*(?:kc,\s*)?"([a-z][a-z0-9_]*)"')
    pkcs11 = set(taking.findall(read("pkcs11", "conf.c")))
    azure = set(taking.findall(read("hsm", "conf.c")))
    found = {"[broker] OPTIONS": broker, "[key:NAME] OPTIONS": key, "PKCS#11 KEYS": pkcs11,
             "AZURE KEYS": azure}
    # the readers themselves are checked: a pattern that stopped matching must not pass silently
    for sect, must in (("[broker] OPTIONS", "cache_ttl"), ("[key:NAME] OPTIONS", "backend"),
                       ("[key:NAME] OPTIONS", "allow_unwrap"), ("PKCS#11 KEYS", "pin_file"),
                       ("AZURE KEYS", "url"), ("AZURE KEYS", "max_retries")):
        check(must in found[sect], "the test no longer finds %s in the code of %s" % (must, sect))
    return found


def man_sections(page):
    """{section heading: text} of a scdoc page."""
    out, head = {}, None
    for line in scd(page).splitlines():
        if line.startswith("# "):
            head = line[2:].strip()
            out[head] = ""
        elif head:
            out[head] += line + "\n"
    return out


def man_entries(text):
    """{option name: its entry's text} of the '*name* = VALUE' entries in text."""
    out, names = {}, []
    for line in text.splitlines():
        if re.match(r"\*[a-z]", line) and " = " in line:
            names = re.findall(r"\*([a-z][a-z0-9_]*)\*", line.split(" = ")[0])
            for n in names:
                out[n] = ""
        elif line.startswith("\t"):
            for n in names:
                out[n] += line + "\n"
        else:
            names = []
    return out


def conf_page_names_every_option_the_code_reads():
    sections = man_sections("keybrokerd.conf.5")
    missing = []
    for sect, names in code_options().items():
        check(sect in sections, "keybrokerd.conf.5 has no section %s" % sect)
        documented = man_entries(sections[sect])
        missing += ["%s %s" % (sect, n) for n in sorted(names - set(documented))]
    check(not missing, "keybrokerd.conf(5) lacks options the code reads: %s" % ", ".join(missing))


def conf_page_names_no_option_the_code_does_not_read():
    sections = man_sections("keybrokerd.conf.5")
    extra = []
    for sect, names in code_options().items():
        extra += ["%s %s" % (sect, n) for n in sorted(set(man_entries(sections[sect])) - names)]
    check(not extra, "keybrokerd.conf(5) documents options no code reads: %s" % ", ".join(extra))


def conf_page_gives_every_option_a_default():
    sections = man_sections("keybrokerd.conf.5")
    lacking = []
    for sect in code_options():
        for name, text in man_entries(sections[sect]).items():
            if "Default:" not in text:
                lacking.append(name)
    check(not lacking, "keybrokerd.conf(5) entries without 'Default:': %s" % ", ".join(lacking))


def conf_page_names_every_algorithm():
    names = re.findall(r'{ KB_ALG_[A-Z0-9_]+, "([^"]+)" }', read("broker", "alg.c"))
    check(len(names) >= 8, "found only %s in broker/alg.c" % names)
    entry = man_entries(man_sections("keybrokerd.conf.5")["[key:NAME] OPTIONS"])["alg"].replace("\\_", "_")
    missing = [n for n in names if "*%s*" % n not in entry]
    check(not missing, "keybrokerd.conf(5)'s alg lacks %s" % ", ".join(missing))


def help_text(binary, *args):
    p = subprocess.run([binary] + list(args) + ["--help"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    check(p.returncode == 0, "%s %s --help exited %d" % (binary, " ".join(args), p.returncode))
    return p.stdout


def long_options(help_out):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_out))


def page_has_option(text, opt):
    return re.search(r"\*%s\*" % re.escape(opt), text) is not None


def keybroker_page_documents_every_subcommand_and_its_options():
    cli = os.environ["KB_CLI"]
    top = help_text(cli)
    cmds = re.findall(r"^  ([a-z][a-z-]*) ", top.split("commands:", 1)[1].split("\n\n", 1)[0], re.M)
    check(len(cmds) >= 10, "keybroker --help lists only %s" % cmds)
    sections = man_sections("keybroker.1")
    page = scd("keybroker.1")
    problems = []
    for opt in long_options(top):
        if not page_has_option(sections.get("GLOBAL OPTIONS", ""), opt):
            problems.append("global option " + opt)
    subs = re.split(r"^## ", sections.get("COMMANDS", ""), flags=re.M)
    by_name = {s.split("\n", 1)[0].strip(): s for s in subs[1:]}
    for cmd in cmds:
        if cmd not in by_name:
            problems.append("subcommand " + cmd)
            continue
        for opt in long_options(help_text(cli, cmd)) - long_options(top):
            if not page_has_option(by_name[cmd], opt):
                problems.append("%s %s" % (cmd, opt))
    for cmd in by_name:
        if cmd not in cmds:
            problems.append("subcommand %s, which keybroker no longer has" % cmd)
    check(not problems, "keybroker(1) and keybroker --help differ: %s" % ", ".join(problems))
    check("EXIT STATUS" in page, "keybroker(1) has no EXIT STATUS")


def binary_page_documents_every_option(binary, page):
    text = scd(page)
    missing = [o for o in sorted(long_options(help_text(binary))) if not page_has_option(text, o)]
    check(not missing, "%s lacks options %s --help lists: %s" % (page, binary, ", ".join(missing)))
    for code in ("0", "1", "2"):
        check(re.search(r"^\*%s\*$" % code, man_sections(page).get("EXIT STATUS", ""), re.M),
              "%s's EXIT STATUS does not describe %s" % (page, code))


def keybrokerd_page_documents_every_option_and_exit_status():
    binary_page_documents_every_option(os.environ["KB_KEYBROKERD"], "keybrokerd.8")


def akv_emulator_page_documents_every_option_and_exit_status():
    binary_page_documents_every_option(os.environ["KB_AKV_EMULATOR"], "akv-emulator.1")


def libkeybroker_page_documents_every_exported_function():
    header = read("client", "keybroker.h") + read("common", "keybroker", "kb_codes.h")
    names = set(re.findall(r"KB_API[^;{]*?\b(kb_[a-z_0-9]+)\(", header, re.S))
    names |= set(re.findall(r"^[a-z_ ]+\*?\s*(kb_code_[a-z_]+)\(", read("common", "keybroker", "kb_codes.h"), re.M))
    check(len(names) >= 15, "found only %s in keybroker.h" % sorted(names))
    page = scd("libkeybroker.3")
    missing = sorted(n for n in names if not re.search(r"\b%s\(" % n, page))
    check(not missing, "libkeybroker(3) lacks: %s" % ", ".join(missing))


def man_pages_render_without_groff_warnings():
    pages = os.environ["KB_MAN_PAGES"].split(":")
    check(len(pages) == 5, "expected 5 built pages, got %s" % pages)
    for p in pages:
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", p], capture_output=True, text=True)
        check(r.returncode == 0 and r.stderr == "", "%s: groff says %s" % (p, r.stderr))
        with open(p) as f:
            check(f.read().startswith(".\\\" Generated by scdoc"), "%s is not scdoc's output" % p)


def meson_install_puts_pages_completion_units_header_and_pc_in_place():
    import tempfile
    import shutil
    dest = tempfile.mkdtemp(prefix="kb-install-")
    try:
        r = subprocess.run(["meson", "install", "-C", BUILD, "--no-rebuild", "--destdir", dest],
                           capture_output=True, text=True)
        check(r.returncode == 0, "meson install failed: %s" % (r.stdout + r.stderr)[-3000:])
        got = set()
        for d, _, files in os.walk(dest):
            for f in files:
                got.add(os.path.relpath(os.path.join(d, f), dest))
        want = ["man/man1/keybroker.1", "man/man1/akv-emulator.1", "man/man3/libkeybroker.3",
                "man/man5/keybrokerd.conf.5", "man/man8/keybrokerd.8",
                "bash-completion/completions/keybroker", "systemd/system/keybrokerd.service",
                "systemd/system/keybrokerd.socket", "sysusers.d/keybroker.conf",
                "include/keybroker.h", "pkgconfig/keybroker.pc", "sbin/keybrokerd", "bin/keybroker",
                "bin/akv-emulator"]
        missing = [w for w in want if not any(g.endswith(w) for g in got)]
        check(not missing, "meson install did not install %s; it installed %s" % (missing, sorted(got)))
    finally:
        shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    name = sys.argv[1]
    fn = globals().get(name)
    if fn is None or name.startswith("_"):
        print("no test named %s" % name)
        sys.exit(2)
    try:
        fn()
    except Failure as e:
        print("FAIL: %s" % e)
        sys.exit(1)
    print("ok: %s" % name)
