#!/usr/bin/env python3
"""libkeybroker's ABI as installed: where its headers go, what the library
exports, the values of kb_code and kb_version().

    check_abi.py stage BUILD_ROOT CHECK   `meson install --destdir` of BUILD_ROOT
                                           into a temp dir, then CHECK on it
    check_abi.py system CHECK             CHECK on what the packages installed

CHECK is one of the functions below, or `all`. The staged form runs without
dpkg or root, so the checks run in every build; tests/package/test_debs.sh
runs them all again on the installed libkeybroker-dev."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))

# Uses every kind of thing keybroker.h brings: the version macros and
# kb_version(), kb_code values and names, the socket header.
PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include <keybroker.h>

int main(void)
{
	char sock[KB_SOCKET_PATH_MAX + 1];

	printf("compiled %d.%d.%d %s\n", KB_VERSION_MAJOR, KB_VERSION_MINOR, KB_VERSION_PATCH, KB_VERSION_STRING);
	printf("runs %s\n", kb_version());
	printf("socket %d\n", kb_default_socket(sock, sizeof(sock)) > 0);
	for (int i = 0; i < KB_CODE_COUNT; i++)
		printf("code %d %s\n", i, kb_code_name((kb_code)i));
	return strcmp(kb_version(), KB_VERSION_STRING) != 0;
}
"""


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Install:
    """What pkg-config says of the keybroker.pc under root (None: the system's)."""

    def __init__(self, root):
        self.env = dict(os.environ)
        if root is not None:
            pcs = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f == "keybroker.pc"]
            check(len(pcs) == 1, "one keybroker.pc under %s, found %s" % (root, pcs))
            self.env.update(PKG_CONFIG_SYSROOT_DIR=root, PKG_CONFIG_PATH=os.path.dirname(pcs[0]))
        self.includedir = self.pkg("--variable=includedir")
        self.libdir = self.pkg("--variable=libdir")
        self.lib = os.path.join(self.libdir, "libkeybroker.so.0")

    def pkg(self, *args):
        p = subprocess.run(["pkg-config"] + list(args) + ["keybroker"], env=self.env, capture_output=True, text=True)
        check(p.returncode == 0, "pkg-config %s keybroker: %s" % (" ".join(args), p.stderr))
        return p.stdout.strip()

    def header(self, rel):
        path = os.path.join(self.includedir, rel)
        check(os.path.isfile(path), "%s is installed" % path)
        with open(path) as f:
            return f.read()

    def run_program(self):
        """PROGRAM built with `cc $(pkg-config --cflags --libs keybroker)` and run on this library."""
        d = tempfile.mkdtemp(prefix="kb-abi-")
        try:
            with open(os.path.join(d, "abi.c"), "w") as f:
                f.write(PROGRAM)
            cmd = ([os.environ.get("CC", "cc"), "-Wall", "-Wextra", "-Werror", os.path.join(d, "abi.c")] +
                   self.pkg("--cflags", "--libs").split() + ["-o", os.path.join(d, "abi")])
            p = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
            check(p.returncode == 0, "%s:\n%s" % (" ".join(cmd), p.stderr))
            p = subprocess.run([os.path.join(d, "abi")], env=dict(self.env, LD_LIBRARY_PATH=self.libdir),
                               capture_output=True, text=True)
            check(p.returncode == 0, "the program runs and kb_version() is KB_VERSION_STRING:\n" + p.stdout)
            return p.stdout.splitlines()
        finally:
            shutil.rmtree(d, ignore_errors=True)


def headers_are_under_keybroker_and_keybroker_h_finds_them(inst):
    for rel in ("keybroker.h", "keybroker/kb_codes.h", "keybroker/kb_socket.h", "keybroker/kb_version.h"):
        check(os.path.isfile(os.path.join(inst.includedir, rel)), "%s/%s is installed" % (inst.includedir, rel))
    for rel in ("kb_codes.h", "kb_socket.h", "kb_version.h", "b64.h"):
        check(not os.path.exists(os.path.join(inst.includedir, rel)),
              "%s/%s: no header of ours at the top but keybroker.h" % (inst.includedir, rel))
    top = inst.header("keybroker.h")
    for h in ("kb_codes.h", "kb_socket.h", "kb_version.h"):
        check("#include <keybroker/%s>" % h in top, "keybroker.h includes <keybroker/%s>" % h)
    cflags = inst.pkg("--cflags").split()
    check(inst.includedir == "/usr/include" or "-I" + inst.includedir in cflags,
          "pkg-config --cflags names %s: %s" % (inst.includedir, cflags))
    out = inst.run_program()
    check("socket 1" in out, "a program including only <keybroker.h> builds and runs: %s" % out)
    print("headers: keybroker.h and keybroker/{kb_codes,kb_socket,kb_version}.h under %s" % inst.includedir)


def api_functions(inst):
    """The functions the installed headers mark KB_API."""
    text = "".join(inst.header(h) for h in ("keybroker.h", "keybroker/kb_codes.h", "keybroker/kb_socket.h"))
    return set(re.findall(r"^KB_API\b[^;(]*?\b(kb_[a-z_0-9]+)\(", text, re.M))


def library_exports_exactly_the_documented_api(inst):
    p = subprocess.run(["nm", "-D", "--defined-only", inst.lib], capture_output=True, text=True)
    check(p.returncode == 0, "nm -D %s: %s" % (inst.lib, p.stderr))
    exported = {f[2] for f in (l.split() for l in p.stdout.splitlines()) if len(f) == 3 and f[1] in "TWiDBR"}
    declared = api_functions(inst)
    with open(os.path.join(SRC, "debian", "libkeybroker0.symbols")) as f:
        listed = set(re.findall(r"^ (\w+)@Base ", f.read(), re.M))
    check(len(declared) >= 20, "the headers mark the API KB_API: found only %s" % sorted(declared))
    check(exported == declared, "%s exports what the headers declare KB_API, and only that: exported but not "
          "declared %s, declared but not exported %s" % (inst.lib, sorted(exported - declared),
                                                         sorted(declared - exported)))
    check(listed == exported, "debian/libkeybroker0.symbols lists the exports: missing %s, stale %s"
          % (sorted(exported - listed), sorted(listed - exported)))
    check(not any(s.startswith("kb_b64") for s in exported), "no kb_b64_* is exported")
    print("exports: %d functions, as keybroker.h declares and the symbols file lists" % len(exported))


def kb_codes_keep_their_golden_values(inst):
    with open(os.path.join(HERE, "kb_codes.golden")) as f:
        golden = [l.split() for l in f if l.strip() and not l.startswith("#")]
    values = re.findall(r"^\s*(KB_(?:OK|E_[A-Z_]+))\s*=\s*(\d+)\s*,", inst.header("keybroker/kb_codes.h"), re.M)
    names = dict(l.split()[1:3] for l in inst.run_program() if l.startswith("code "))
    now = [[e, v, names.get(v, "?")] for e, v in values]
    check(len(set(v for _, v in values)) == len(values), "every kb_code has a value of its own: %s" % values)
    for i, g in enumerate(golden):
        check(i < len(now) and now[i] == g, "kb_code %s keeps value %s and name %s (kb_codes.h has %s)"
              % (g[0], g[1], g[2], now[i] if i < len(now) else "nothing"))
    check(len(now) == len(golden), "a new kb_code is appended to tests/package/kb_codes.golden too: %s"
          % now[len(golden):])
    print("codes: %d, each with its golden value and name" % len(now))


def kb_version_is_the_project_version(inst):
    out = inst.run_program()
    want = os.environ.get("KB_VERSION")
    if want is None:
        with open(os.path.join(SRC, "meson.build")) as f:
            want = re.search(r"version\s*:\s*'([0-9.]+)'", f.read()).group(1)
    major, minor, patch = want.split(".")
    check("compiled %s.%s.%s %s" % (major, minor, patch, want) in out, "KB_VERSION_* are %s: %s" % (want, out))
    check("runs %s" % want in out, "kb_version() is %s: %s" % (want, out))
    print("version: %s, compiled and run" % want)


CHECKS = [headers_are_under_keybroker_and_keybroker_h_finds_them, library_exports_exactly_the_documented_api,
          kb_codes_keep_their_golden_values, kb_version_is_the_project_version]


def main(argv):
    if len(argv) < 2 or argv[0] not in ("stage", "system") or (argv[0] == "stage" and len(argv) != 3):
        print(__doc__)
        return 2
    name = argv[-1]
    checks = CHECKS if name == "all" else [c for c in CHECKS if c.__name__ == name]
    if not checks:
        print("no check named %s" % name)
        return 2
    stage = None
    try:
        if argv[0] == "stage":
            stage = tempfile.mkdtemp(prefix="kb-stage-")
            p = subprocess.run(["meson", "install", "-C", argv[1], "--no-rebuild", "--destdir", stage],
                               capture_output=True, text=True)
            check(p.returncode == 0, "meson install --destdir: %s" % (p.stdout + p.stderr)[-3000:])
        inst = Install(stage)
        for c in checks:
            c(inst)
    except Failure as e:
        print("FAIL: %s" % e)
        return 1
    finally:
        if stage:
            shutil.rmtree(stage, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
