"""The docs test gives a page what a reader has, and no more: a new login's PATH (no build directory
on it, whatever the test's own PATH holds), plus what the page sets and what the prerequisite it names
sets; and a prerequisite the page does not tell its reader about (no link to it) is refused.

Each case is a small tree of pages run by run_docs.py as the docs test runs them.
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ["KB_BUILD_ROOT"]

SETUP = """# Setup

<!-- docs-test: name=shell -->
```sh
export GREETING=hello PATH=$PWD/bin:$PATH
```
"""
CASES = {
    "a page without a prerequisite has a login's PATH: no build directory, none of the test's own": (
        """# Plain

```sh
case ":$PATH:" in *build*|*kb-docs-test-path*) echo "PATH=$PATH"; exit 1 ;; esac
! command -v keybroker
test -z "${GREETING:-}"
```
""", 0, "blocks ran"),
    "a named prerequisite's block runs first, in the page's session": (
        """# Uses setup

<!-- docs-test: prerequisite=SETUP.md:shell -->
Run this in the shell of [the setup](SETUP.md).

```sh
test "$GREETING" = hello
case ":$PATH:" in *"/bin:"*) ;; *) exit 1 ;; esac
```
""", 0, "(1 of them prerequisites)"),
    "a prerequisite the paragraph does not link to is refused": (
        """# Hides it

<!-- docs-test: prerequisite=SETUP.md:shell -->
Run this where the greeting is set.

```sh
test "$GREETING" = hello
```
""", 1, "does not link to SETUP.md"),
    "a prerequisite after the first block is refused": (
        """# Late

```sh
true
```

<!-- docs-test: prerequisite=SETUP.md:shell -->
Run this in the shell of [the setup](SETUP.md).
""", 1, "comes before the page's first shell block"),
    "a prerequisite naming no block is refused": (
        """# Wrong name

<!-- docs-test: prerequisite=SETUP.md:nothing -->
Run this in the shell of [the setup](SETUP.md).

```sh
true
```
""", 1, "SETUP.md has no block that runs with <!-- docs-test: name=nothing -->"),
}


def main():
    failed = 0
    for what, (page, rc_want, text_want) in CASES.items():
        src = tempfile.mkdtemp(prefix="kb-docs-harness-")
        try:
            with open(os.path.join(src, "SETUP.md"), "w") as f:
                f.write(SETUP)
            with open(os.path.join(src, "PAGE.md"), "w") as f:
                f.write(page)
            env = dict(os.environ, KB_SOURCE_ROOT=src, KB_BUILD_ROOT=BUILD,
                       PATH=os.path.join(BUILD, "kb-docs-test-path") + ":" + BUILD + ":" + os.environ["PATH"])
            p = subprocess.run([sys.executable, os.path.join(HERE, "run_docs.py"), "PAGE.md"], env=env,
                               capture_output=True, text=True, timeout=120)
            out = p.stdout + p.stderr
            ok = (p.returncode == 0) == (rc_want == 0) and text_want in out
            print("%s: %s" % ("ok" if ok else "FAIL", what))
            if not ok:
                failed += 1
                print("  exit %d, wanted %d and %r in:\n%s" % (p.returncode, rc_want, text_want, out))
        finally:
            shutil.rmtree(src, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
