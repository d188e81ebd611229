"""scripts/start installs what building and running the broker needs, and nothing more.

The time to a served socket from a fresh root is mostly what scripts/start installs and builds
(README.md states the figure; /work-style fresh-root runs measure it), so this checks what decides
it, on the real script and the real build:
  - scripts/start is run up to its install and configure steps in a copy of the tree whose
    scripts/install-deps and meson only write down how they were called: that gives the lists it
    installs and the options it builds with;
  - the needs are asked of the build itself: every header the non-test objects include (ninja's
    deps), every program a build configured with start's options (and no optional feature) runs,
    its C compiler, meson, ninja and pkg-config; the libraries
    keybrokerd and keybroker load (ldd); the SoftHSM module of start's config; and the programs
    scripts/start, scripts/softhsm-token and README.md's tour run.
It fails when a need comes from no package that start's lists install (or a fresh root has), and
when start's lists name a package that no need comes from (a test-time package belongs in a test
list, which scripts/test installs).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import debpkg

sys.path.insert(0, os.path.join(debpkg.SRC, "tests", "docs"))
import run_docs  # noqa: E402

SRC, BUILD = debpkg.SRC, debpkg.BUILD


def start_calls():
    """(the list names scripts/start gives install-deps, the options of its meson setup)."""
    top = tempfile.mkdtemp(prefix="kb-start-")
    try:
        for name in os.listdir(SRC):
            if name not in (".git", "scripts", "state") and not name.startswith("build"):
                os.symlink(os.path.join(SRC, name), os.path.join(top, name))
        os.mkdir(os.path.join(top, "scripts"))
        for name in os.listdir(os.path.join(SRC, "scripts")):
            if name != "install-deps":
                os.symlink(os.path.join(SRC, "scripts", name), os.path.join(top, "scripts", name))
        stubs = os.path.join(top, "stubs")
        os.mkdir(stubs)
        for path, rc in ((os.path.join(top, "scripts", "install-deps"), 0), (os.path.join(stubs, "meson"), 3)):
            with open(path, "w") as f:
                f.write('#!/bin/sh\nprintf "%%s\\n" "$@" > "%s.args"\nexit %d\n' % (path, rc))
            os.chmod(path, 0o755)
        env = dict(os.environ, PATH=stubs + ":" + os.environ["PATH"])
        p = subprocess.run([os.path.join(top, "scripts", "start")], cwd=top, env=env, capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=120)
        calls = []
        for path in (os.path.join(top, "scripts", "install-deps"), os.path.join(stubs, "meson")):
            if not os.path.exists(path + ".args"):
                sys.exit("FAIL: scripts/start never ran %s (exit %d):\n%s" %
                         (os.path.basename(path), p.returncode, p.stderr[-2000:]))
            with open(path + ".args") as f:
                calls.append([a for a in f.read().split("\n") if a])
        setup = calls[1]
        if setup[:1] != ["setup"] or setup[-1] != "build":
            sys.exit("FAIL: scripts/start ran meson %s, not meson setup ... build" % " ".join(setup))
        return calls[0], setup[1:-1]
    finally:
        shutil.rmtree(top, ignore_errors=True)


def build_needs(options):
    """{file: why} of what a build configured with options needs, and no optional feature."""
    needs = {}
    tmp = tempfile.mkdtemp(prefix="kb-start-build-")
    try:
        p = subprocess.run(["meson", "setup"] + options + ["-Dauto_features=disabled", tmp, SRC],
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            sys.exit("FAIL: meson setup %s failed:\n%s" % (" ".join(options), p.stdout[-3000:] + p.stderr[-2000:]))
        for prog in ("meson", "ninja", "pkg-config"):
            needs[debpkg.which(prog)] = "the build runs %s" % prog
        with open(os.path.join(tmp, "build.ninja")) as f:
            ninja = f.read()
            for lang, cc in re.findall(r"^rule (\w+)_COMPILER\n command = (\S+)", ninja, re.M):
                needs[debpkg.which(cc) or cc] = "the %s compiler" % lang
            for m in re.finditer(r"^ COMMAND = (\S+)", ninja, re.M):
                if m.group(1).startswith("/") and os.path.basename(m.group(1)) not in ("meson", "python3"):
                    needs[m.group(1)] = "a build step runs it"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # the headers the daemon, the CLI, the library, the emulator and the bench include (ninja records
    # them as it compiles; the tests' own objects are not start's)
    p = subprocess.run(["ninja", "-C", BUILD, "-t", "deps"], capture_output=True, text=True, check=True)
    target = None
    for line in p.stdout.splitlines():
        if line and not line[0].isspace():
            target = line.split(":")[0]
        elif target and not target.startswith("tests/") and line.strip().startswith("/usr/"):
            needs.setdefault(line.strip(), "a header %s includes" % target)
    return needs


def run_needs():
    """{file: why} of what running start's broker, making its token and the README's tour need."""
    needs = {}
    for exe in ("keybrokerd", "keybroker"):
        p = subprocess.run(["ldd", os.path.join(BUILD, exe)], capture_output=True, text=True, check=True)
        for m in re.finditer(r"=> (/\S+)", p.stdout):
            if not m.group(1).startswith(BUILD):
                needs[m.group(1)] = "%s loads it" % exe
    with open(os.path.join(SRC, "scripts", "start")) as f:
        start = f.read()
    for module in re.findall(r"^module = (\S+)", start, re.M):
        needs[module] = "scripts/start's config names it"
    texts = {"scripts/start": start}
    with open(os.path.join(SRC, "scripts", "softhsm-token")) as f:
        texts["scripts/softhsm-token"] = f.read()
    tour = run_docs.parse(os.path.join(SRC, "README.md"), [])
    texts["README.md's tour"] = "\n".join("\n".join(t for _, t in b.commands()) for b in tour
                                          if b.kind == "shell" and not b.skip)
    built = debpkg.built_programs()
    for who, text in texts.items():
        for name in debpkg.shell_commands(text):
            if "/" in name or name in built or name in debpkg.builtins():
                continue
            path = debpkg.which(name)
            if path is None:
                sys.exit("FAIL: %s runs %s, which is not on this machine" % (who, name))
            needs.setdefault(path, "%s runs %s" % (who, name))
    return needs


def main():
    names, options = start_calls()
    print("scripts/start installs the lists: %s; configures with: meson setup %s build" %
          (" ".join(names) or "(every list)", " ".join(options)))
    if not names:
        print("FAIL: scripts/start runs install-deps without list names, so it installs every list, the test lists too")
        return 1
    start_set = debpkg.installable(names)
    needs = build_needs(options)
    needs.update(run_needs())
    owner = debpkg.owners(sorted(needs))
    have = debpkg.closure(start_set)
    base = debpkg.base()
    direct, problems = {}, []
    for path, why in sorted(needs.items()):
        pkg = owner[path]
        if pkg is None:
            problems.append("%s (%s) comes from no Debian package" % (path, why))
            continue
        direct.setdefault(pkg, why)
        if pkg not in have and pkg not in base:
            problems.append("start misses %s: %s is from it (%s)" % (pkg, path, why))
    for pkg in sorted(direct):
        print("%-24s %s%s" % (pkg, direct[pkg], "" if pkg in start_set else "  (pulled in, or in every root)"))
    for pkg in sorted(start_set - set(direct)):
        problems.append("start installs %s, which neither the build nor the broker's run needs: a test-time "
                        "package goes in a test list (scripts/test installs every list)" % pkg)
    if problems:
        print("\nFAIL:\n  " + "\n  ".join(problems))
        return 1
    print("\nscripts/start installs %d packages, each a need of the build or the run, and misses none" %
          len(start_set))
    return 0


if __name__ == "__main__":
    sys.exit(main())
