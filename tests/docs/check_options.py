#!/usr/bin/env python3
"""check_options.py: keybrokerd.conf(5) and docs/configuration.md document the
options table (broker/options.c, printed by `keybrokerd --options`), row for row.

For each section ([broker], [key:NAME], [kms:NAME]) both documents must name
every option of the table, with the table's default in its entry, and name no
option the table lacks. Backend options ([key:NAME] of pkcs11 or azure) are the
backends' own and live in their subsections, which are not compared.

usage: check_options.py KEYBROKERD SOURCE_ROOT
"""
import os
import re
import subprocess
import sys

HEADS = {"broker": "[broker]", "key": "[key:NAME]", "kms": "[kms:NAME]"}


def plain(text):
    """Markup-free text: no backquotes, emphasis or escapes, spaces folded."""
    text = re.sub(r"[`*\\]", "", text)
    return " ".join(re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", "", text).split())


def table():
    out = subprocess.run([sys.argv[1], "--options"], check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        section, name, typ, default, limits, doc = line.split("\t")
        rows.setdefault(section, {})[name] = default
    return rows


def doc_entries(path):
    """{section: {option: entry text}} of docs/configuration.md's option tables (first column)."""
    entries, section = {}, None
    for line in open(path, encoding="utf-8"):
        m = re.match(r"^##+ (.*)", line)
        if m:
            head = plain(m.group(1))
            section = next((s for s, h in HEADS.items() if head == h), None) if line.startswith("## ") else None
            continue
        if section and line.startswith("| `"):
            first = line.split("|")[1]
            for name in re.findall(r"`([a-z_]+)`", first):
                entries.setdefault(section, {})[name] = plain(line)
    return entries


def man_entries(path):
    """{section: {option: entry text}} of the man page's OPTIONS sections (*name* = _TYPE_ and its paragraph)."""
    entries, section, names = {}, None, []
    for line in open(path, encoding="utf-8"):
        if line.startswith("# "):
            head = line[2:].strip()
            section = next((s for s, h in HEADS.items() if head == h + " OPTIONS"), None)
            names = []
            continue
        m = re.match(r"^(\*[a-z_]+\*(?:, \*[a-z_]+\*)*) = ", line)
        if section and m:
            names = re.findall(r"\*([a-z_]+)\*", m.group(1))
            for name in names:
                entries.setdefault(section, {})[name] = ""
        elif section and names:
            for name in names:
                entries[section][name] += " " + line
    return {s: {n: plain(t) for n, t in e.items()} for s, e in entries.items()}


def main():
    src = sys.argv[2]
    rows = table()
    problems = []
    for what, entries in (("docs/configuration.md", doc_entries(os.path.join(src, "docs", "configuration.md"))),
                          ("keybrokerd.conf(5)", man_entries(os.path.join(src, "man", "keybrokerd.conf.5.scd")))):
        for section, opts in rows.items():
            got = entries.get(section, {})
            for name, default in opts.items():
                if name not in got:
                    problems.append("%s: [%s] %s is not documented" % (what, section, name))
                elif plain(default) not in got[name]:
                    problems.append("%s: [%s] %s does not give the default %r: %s" %
                                    (what, section, name, default, got[name][:160]))
            for name in got:
                if name not in opts:
                    problems.append("%s: [%s] %s is documented but not in the options table" % (what, section, name))
    for p in problems:
        print(p)
    print("%d options, %d problems" % (sum(len(o) for o in rows.values()), len(problems)))
    return 1 if problems else 0


sys.exit(main())
