"""Every command the tests, the scripts and the doc pages run comes from the build, or from a Debian
package that scripts/packages/*.txt names (or that a fresh minbase root already has).

What is read: the shell blocks of README.md and docs/*.md that the docs test runs, every shell
script under scripts/, tests/ and bench/, the argv lists and shutil.which names of the Python under
tests/ and bench/, and the find_program names of every meson.build. Each command is looked up on a
fresh root's login PATH and its file's package asked of dpkg. A command found nowhere fails too,
when it is surely a command (a shell command word, an argv given to subprocess): on a fresh root its
test would fail. And since tests/package builds the Debian packages, dpkg-buildpackage's own needs
(build-essential and debian/control's Build-Depends) must be in the lists as well.
"""
import glob
import os
import re
import sys

import debpkg

sys.path.insert(0, os.path.join(debpkg.SRC, "tests", "docs"))
import run_docs  # noqa: E402

SRC = debpkg.SRC
# commands a test runs only when they are there, with what it does otherwise
OPTIONAL = {
    "git": "tests/package/test_debs.sh copies the tree with git ls-files inside a clone, else with cp",
}


def shell_files():
    out = []
    for top in ("scripts", "tests", "bench"):
        for path in sorted(glob.glob(os.path.join(SRC, top, "**"), recursive=True)):
            if not os.path.isfile(path) or "/corpus/" in path:
                continue
            if path.endswith(".sh"):
                out.append(path)
                continue
            with open(path, "rb") as f:
                first = f.readline()
            if re.match(rb"#!\s*(/usr)?/bin/(env\s+)?(ba)?sh\b", first):
                out.append(path)
    return out


def sources():
    """[(where, sure, name)] of every command named anywhere."""
    found = []
    for doc in ["README.md"] + sorted(os.path.relpath(p, SRC) for p in glob.glob(os.path.join(SRC, "docs", "*.md"))):
        blocks = run_docs.parse(os.path.join(SRC, doc), [])
        text = "\n".join("\n".join(t for _, t in b.commands()) for b in blocks if b.kind == "shell" and not b.skip)
        found += [(doc, True, n) for n in debpkg.shell_commands(text)]
    scripts = shell_files()
    functions = set()
    for path in scripts:
        with open(path) as f:
            functions |= debpkg.shell_functions(f.read())
    for path in scripts:
        with open(path) as f:
            found += [(os.path.relpath(path, SRC), True, n) for n in debpkg.shell_commands(f.read(), functions)]
    for top in ("tests", "bench"):
        for path in sorted(glob.glob(os.path.join(SRC, top, "**"), recursive=True)):
            if not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                python = path.endswith(".py") or f.readline().startswith(b"#!/usr/bin/env python3")
            if python:
                found += [(os.path.relpath(path, SRC), sure, n) for sure, n in debpkg.python_commands(path)]
    for path in sorted(glob.glob(os.path.join(SRC, "**", "meson.build"), recursive=True)):
        if os.path.relpath(path, SRC).startswith("build"):
            continue
        with open(path) as f:
            for m in re.finditer(r"find_program\(\s*'([^']+)'", f.read()):
                found.append((os.path.relpath(path, SRC), True, m.group(1)))
    return found


def main():
    listed = set().union(*debpkg.lists().values())
    base = debpkg.base()
    built = debpkg.built_programs()
    have = debpkg.closure(listed)
    problems, checked, where, look = [], {}, {}, {}
    for src, sure, name in sources():
        where.setdefault(name, []).append(src)
        if name in checked or name in look:
            continue
        if not name.startswith("/") and "/" in name:
            checked[name] = "the project's own file"
        elif os.path.basename(name) in built:
            checked[name] = "the build"
        elif name in debpkg.builtins() or name in debpkg.KEYWORDS:
            checked[name] = "a shell builtin"
        elif name in OPTIONAL:
            checked[name] = "optional: " + OPTIONAL[name]
        else:
            path = name if name.startswith("/") else debpkg.which(name)
            if path is not None and os.path.exists(path):
                look[name] = path
            elif sure:
                checked[name] = "MISSING"
                problems.append("%s (run by %s) is not on this machine, so its test fails on a fresh root too: "
                                "add its package to scripts/packages/" % (name, src))
    owner = debpkg.owners(sorted(set(look.values())))
    for name, path in sorted(look.items()):
        pkg = owner[path]
        if pkg is None:
            checked[name] = "%s, from no package" % path
            problems.append("%s (run by %s) is %s, which no Debian package installed: a fresh root has no "
                            "such file" % (name, where[name][0], path))
        elif pkg in listed:
            checked[name] = "%s, from %s (listed)" % (path, pkg)
        elif pkg in base:
            checked[name] = "%s, from %s (in every Debian root)" % (path, pkg)
        elif pkg in have:
            checked[name] = "%s, from %s (a listed package depends on it)" % (path, pkg)
        else:
            checked[name] = "%s, from %s: NOT LISTED" % (path, pkg)
            problems.append("%s (run by %s) is %s, from the package %s, which no scripts/packages/*.txt names"
                            % (name, ", ".join(sorted(set(where[name]))[:3]), path, pkg))
    if "dpkg-buildpackage" in where:
        with open(os.path.join(SRC, "debian", "control")) as f:
            m = re.search(r"^Build-Depends:(.*?)^\S", f.read(), re.S | re.M)
        needs = {"build-essential"} | {re.split(r"[\s(]", d.strip())[0] for d in m.group(1).split(",") if d.strip()}
        for need in sorted(needs - have - base):
            if need.startswith("debhelper-compat"):
                need = "debhelper"
                if need in have:
                    continue
            problems.append("dpkg-buildpackage (tests/package/test_debs.sh) needs %s (%s), which the lists do not "
                            "install" % (need, "its build-essential check" if need == "build-essential"
                                         else "debian/control Build-Depends"))
    for name in sorted(checked):
        print("%-28s %s" % (name, checked[name]))
    if problems:
        print("\nFAIL: %d commands or needs come from no listed package:" % len(problems))
        for p in problems:
            print("  " + p)
        return 1
    print("\n%d commands: each from the build, a listed package, or every Debian root" % len(checked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
