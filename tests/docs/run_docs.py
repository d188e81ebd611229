#!/usr/bin/env python3
"""run_docs: run one Markdown document's shell and INI blocks as written.

usage: run_docs.py [--broker] [--emulator] [--free-ports N,M,...] DOC

Every fenced block tagged sh, bash, shell or console (its "$ " lines) is run,
and every block tagged ini is written to the file its marker names, in
document order, as one reader's session: one bash process for the whole
document, so the working directory and every variable carry over from block
to block. Each complete command of a block must succeed (set -e and pipefail,
and a failing "a && b" list counts too), and an answer of the broker's protocol
with "ok":false in a block's output is a failure too. The first failure ends
the run with the file, the block's line, the command's line and the block's
output. Blocks of other kinds (json, c, python, untagged output) are not run.

A Markdown comment on the line before a block (blank lines between are fine)
changes how it is taken:
  <!-- docs-test: skip: REASON -->          not run; REASON is printed
  <!-- docs-test: file=PATH -->             an ini block: written to PATH
                                            (relative to the session's
                                            working directory; ~ is $HOME)
  <!-- docs-test: exit=N -->                 the block's last command shows a
                                            refusal: it must exit N
  <!-- docs-test: background until=TEXT --> the block serves in the
                                            foreground: run it in the
                                            background, wait for a line TEXT
                                            on its output, go on; it is
                                            stopped when the document ends
  <!-- docs-test: name=NAME -->             a shell block other pages may name
                                            as their prerequisite
A page names what it needs from elsewhere with a marker of its own, before its
first shell block that runs, on the line before the paragraph that tells the
reader (which must link to that page):
  <!-- docs-test: prerequisite=PAGE:NAME -->  the block NAME of PAGE (a path
                                            from the source root) runs first,
                                            in this page's session
A marker anywhere else, or an unknown one, is an error, so every skip is
visible in the document and has a reason.

The session is what a reader has, and no more: a fresh shell in a fresh
directory laid out like a clone (the source tree's top-level entries linked in,
build/ linked to the meson build tree, its own state/ and $HOME), with the
environment of a new login (its PATH is what a login shell's /etc/profile
gives, so no build directory is on it), plus what the page sets and what its
prerequisites set. --broker runs scripts/start there, as README.md's first
command does in the reader's other shell, and waits until the broker answers
on state/keybroker.sock; the page (or its prerequisite, README.md's tour
shell) names the socket and puts keybroker on PATH itself.
--emulator runs a zero-config akv-emulator with its admin endpoint. Fixed
ports named with --free-ports (and the emulator's 8443 and 8444) are replaced
in the blocks by free consecutive ones, and an akv-emulator command without
--listen gets one, which is what the docs tell a reader to do when 8443 is
taken; /home/me becomes the session's $HOME.
Every process the session started (found by a variable only its processes
carry) is stopped at the end, and the directory removed.
"""
import argparse
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("KB_SOURCE_ROOT",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("KB_BUILD_ROOT", os.path.join(SRC, "build"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from kbtest import free_port  # noqa: E402

SHELL_LANGS = {"sh", "bash", "shell", "console"}
INI_LANGS = {"ini"}
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^`\s]*)[^`]*$")
SCRIPT_TIMEOUT = float(os.environ.get("KB_DOCS_TIMEOUT", "150"))


class DocError(Exception):
    pass


class Block:
    def __init__(self, line, lang, lines, marker):
        self.line = line          # 1-based line of the opening fence
        self.lang = lang
        self.lines = lines        # [(doc line, text)]
        self.skip = None
        self.file = None
        self.background = None
        self.exit = None
        self.name = None
        self.kind = "shell" if lang in SHELL_LANGS else "ini" if lang in INI_LANGS else None
        if marker is not None:
            self._take_marker(*marker)

    def _take_marker(self, mline, text):
        where = "line %d" % mline
        if self.kind is None:
            raise DocError("%s: a docs-test marker on a %s block, which is never run" %
                           (where, self.lang or "untagged"))
        if text.startswith("skip:"):
            self.skip = text[5:].strip()
            if not self.skip:
                raise DocError("%s: 'skip:' needs a reason" % where)
            return
        for word in shlex.split(text):
            key, _, value = word.partition("=")
            if key == "file" and value and self.kind == "ini":
                self.file = value
            elif key == "background" and not value and self.kind == "shell":
                self.background = self.background or ""
            elif key == "until" and value and self.kind == "shell":
                self.background = value
            elif key == "exit" and value.isdigit() and self.kind == "shell":
                self.exit = int(value)
            elif key == "name" and value and self.kind == "shell":
                self.name = value
            else:
                raise DocError("%s: unknown docs-test marker %r for a %s block" % (where, word, self.kind))
        if self.background == "":
            raise DocError("%s: 'background' needs until=TEXT, the line that says it is ready" % where)

    def commands(self):
        """The block's shell text as [(doc line, text)]: for console, only its "$ " lines."""
        if self.lang != "console":
            return self.lines
        return [(n, t[2:]) for n, t in self.lines if t.startswith("$ ")]


PREREQ = re.compile(r"^prerequisite=([^\s:]+\.md):(\S+)$")


def prerequisite(text, mline, paragraph):
    """A page-level prerequisite marker: (PAGE, NAME), checked against the paragraph it heads."""
    m = PREREQ.match(text)
    if not m:
        raise DocError("line %d: a prerequisite is prerequisite=PAGE.md:NAME" % mline)
    page, name = m.group(1), m.group(2)
    if not re.search(r"\]\([^)]*\b%s\b[^)]*\)" % re.escape(os.path.basename(page)), paragraph):
        raise DocError("line %d: prerequisite %s, but the paragraph after it does not link to %s" %
                       (mline, text[len("prerequisite="):], page))
    return (page, name)


def parse(path, prereqs=None):
    """The fenced blocks of a Markdown file, with the marker before each; page-level prerequisite
    markers are appended to prereqs (a list), in order."""
    with open(path) as f:
        text = f.read().split("\n")
    blocks, marker, i = [], None, 0
    while i < len(text):
        line = text[i]
        m = MARKER.match(line)
        if m and m.group(1).startswith("prerequisite") and marker is None:
            para, j = [], i + 1
            while j < len(text) and text[j].strip() and not FENCE.match(text[j]) and not MARKER.match(text[j]):
                para.append(text[j])
                j += 1
            if not para:
                raise DocError("line %d: a prerequisite marker heads the paragraph that tells the reader" % (i + 1))
            if any(b.kind == "shell" and not b.skip for b in blocks):
                raise DocError("line %d: a prerequisite comes before the page's first shell block that runs" %
                               (i + 1))
            if prereqs is None:
                raise DocError("line %d: a page named as a prerequisite has prerequisites of its own, "
                               "which are not followed: name them in the page that needs them" % (i + 1))
            prereqs.append(prerequisite(m.group(1), i + 1, " ".join(para)))
            i += 1
            continue
        if m:
            if marker is not None:
                raise DocError("line %d: a docs-test marker not followed by a block" % marker[0])
            marker = (i + 1, m.group(1))
            i += 1
            continue
        f = FENCE.match(line)
        if f:
            indent, fence, lang = f.group(1), f.group(2), f.group(3).lower()
            body, j = [], i + 1
            while j < len(text):
                close = text[j].strip()
                if close.startswith(fence[0] * len(fence)) and close.strip(fence[0]) == "":
                    break
                body.append((j + 1, text[j][len(indent):] if text[j].startswith(indent) else text[j]))
                j += 1
            else:
                raise DocError("line %d: a fenced block that never closes" % (i + 1))
            blocks.append(Block(i + 1, lang, body, marker))
            marker, i = None, j + 1
            continue
        if marker is not None and line.strip():
            raise DocError("line %d: a docs-test marker not followed by a block" % marker[0])
        i += 1
    if marker is not None:
        raise DocError("line %d: a docs-test marker not followed by a block" % marker[0])
    return blocks


def complete(text):
    """Whether bash reads text as whole commands (no open quote, block or here-document)."""
    r = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    return r.returncode == 0 and "here-document" not in r.stderr


def split_commands(lines):
    """Groups a block's lines into complete commands: [(first doc line, text)]."""
    groups, cur, first = [], [], None
    for n, t in lines:
        if not cur and (not t.strip() or t.lstrip().startswith("#")):
            continue
        if not cur:
            first = n
        cur.append(t)
        if not t.rstrip().endswith("\\") and complete("\n".join(cur) + "\n"):
            groups.append((first, "\n".join(cur)))
            cur = []
    if cur:
        raise DocError("line %d: the block ends inside a command" % first)
    return groups


PRELUDE = r"""
set -e -o pipefail
__kb_block() { exec >"$KB_DOCS_OUT/$1.out" 2>&1; }
__kb_fail() { echo "$2 $1" >"$KB_DOCS_OUT/failed"; exit 1; }
__kb_wait() {  # PID FILE TEXT LINE: wait until the background block prints TEXT
	local deadline=$((SECONDS + 30))
	until grep -qxF -- "$3" "$2" 2>/dev/null; do
		kill -0 "$1" 2>/dev/null || { cat "$2"; echo "(it exited before printing '$3')"; __kb_fail 1 "$4"; }
		[ "$SECONDS" -lt "$deadline" ] || { cat "$2"; echo "(no '$3' within 30 s)"; __kb_fail 1 "$4"; }
		sleep 0.05
	done
}
"""


def script_for(steps, subst):
    """One bash script that runs the steps, [(key, block)], in order."""
    out = [PRELUDE]
    for idx, b in steps:
        if b.skip or b.kind is None:
            continue
        out.append("__kb_block %s" % idx)
        if b.kind == "ini":
            path = b.file
            qpath = '"$HOME"/' + shlex.quote(path[2:]) if path.startswith("~/") else shlex.quote(path)
            body = "\n".join(subst(t) for _, t in b.lines)
            out.append('mkdir -p "$(dirname -- %s)"' % qpath)
            out.append("cat > %s <<'__KB_DOCS_INI__'\n%s\n__KB_DOCS_INI__" % (qpath, body))
            continue
        cmds = split_commands([(n, subst(t)) for n, t in b.commands()])
        if b.background is not None:
            inner = "\n".join("{ %s\n} || exit $?" % t for _, t in cmds)
            out.append("( %s\n) > \"$KB_DOCS_OUT/%s.bg\" 2>&1 < /dev/null &" % (inner, idx))
            out.append("__kb_wait $! \"$KB_DOCS_OUT/%s.bg\" %s %d" % (idx, shlex.quote(b.background), cmds[-1][0]))
            continue
        for k, (n, t) in enumerate(cmds):
            if b.exit is not None and k == len(cmds) - 1:
                out.append("if { %s\n}; then __kb_fail 0 %d; else [ $? -eq %d ] || __kb_fail $? %d; fi" %
                           (t, n, b.exit, n))
            else:
                out.append("{ %s\n} || __kb_fail $? %d" % (t, n))
    out.append("__kb_block done")
    return "\n".join(out) + "\n"


class Session:
    """A reader's directory, environment and the processes started for them."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kb-docs-")
        self.token = "kb-docs-%d-%s" % (os.getpid(), os.path.basename(self.dir))
        for name in os.listdir(SRC):
            if name in (".git", "state") or name.startswith("build"):
                continue
            os.symlink(os.path.join(SRC, name), os.path.join(self.dir, name))
        os.symlink(os.path.abspath(BUILD), os.path.join(self.dir, "build"))
        self.home = os.path.join(self.dir, "home")
        self.out = os.path.join(self.dir, ".docs-test")
        run = os.path.join(self.dir, "run")
        for d in (self.home, self.out, run):
            os.mkdir(d, 0o700)
        self.env = login_env(self.home)
        self.env.update(XDG_RUNTIME_DIR=run, KB_DOCS_OUT=self.out, KB_DOCS_SESSION=self.token)
        self.ports = {}

    def start(self, argv, log, ready):
        """Starts argv in the session; ready(proc) says when it is up (waits at most 30 s)."""
        logf = open(os.path.join(self.dir, log), "w")
        proc = subprocess.Popen(argv, cwd=self.dir, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while not ready(proc):
            if proc.poll() is not None or time.time() > deadline:
                with open(os.path.join(self.dir, log)) as f:
                    raise DocError("%s did not come up:\n%s" % (" ".join(argv), f.read()[-4000:]))
            time.sleep(0.05)
        return proc

    def broker(self):
        sock = os.path.join(self.dir, "state", "keybroker.sock")

        def answers(_proc):
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(sock)
                return True
            except OSError:
                return False
        self.start(["scripts/start"], "start.log", answers)

    def free_ports(self, fixed):
        """Picks len(fixed) consecutive free loopback ports for the document's fixed ones."""
        for _ in range(100):
            base = free_port()
            if base + len(fixed) > 65535:
                continue
            try:
                for k in range(1, len(fixed)):
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", base + k))
            except OSError:
                continue
            self.ports.update({p: base + k for k, p in enumerate(fixed)})
            return
        raise DocError("no %d consecutive free ports" % len(fixed))

    def emulator(self):
        if "8443" not in self.ports:
            self.free_ports(["8443", "8444"])
        log = os.path.join(self.dir, "emulator.log")

        def ready(_proc):
            with open(log) as f:
                return "ready\n" in f.read()
        self.start([os.path.join(BUILD, "emulator", "akv-emulator"), "--listen", "127.0.0.1:%d" % self.ports["8443"],
                    "--admin", "127.0.0.1:%d" % self.ports["8444"]], "emulator.log", ready)

    def subst(self, text):
        """The harness's placeholders: free ports for fixed ones, our $HOME for /home/me."""
        text = text.replace("/home/me", self.home)
        if self.ports:
            text = re.sub(r"\b(%s)\b" % "|".join(self.ports), lambda m: str(self.ports[m.group(1)]), text)
            if "8443" in self.ports and re.match(r"\s*akv-emulator(\s|$)", text) and "--listen" not in text:
                text = re.sub(r"akv-emulator", "akv-emulator --listen 127.0.0.1:%d" % self.ports["8443"], text, 1)
        return text

    def stop(self):
        """Stops every process that carries this session's token, then removes the directory."""
        mine = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open("/proc/%s/environ" % pid, "rb") as f:
                    if ("KB_DOCS_SESSION=" + self.token).encode() in f.read().split(b"\0"):
                        mine.append(int(pid))
            except OSError:
                pass
        for pid in mine:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        while mine and time.time() < deadline:
            mine = [p for p in mine if os.path.exists("/proc/%d" % p) and not zombie(p)]
            time.sleep(0.05)
        for pid in mine:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not os.environ.get("KB_DOCS_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def login_env(home):
    """The environment of a new login of this user, with home as its $HOME: the PATH a login shell
    gets from /etc/profile (and /etc/profile.d), nothing from the environment this runs in."""
    pw = pwd.getpwuid(os.getuid())
    env = {"HOME": home, "USER": pw.pw_name, "LOGNAME": pw.pw_name, "SHELL": pw.pw_shell or "/bin/sh",
           "LANG": os.environ.get("LANG", "C.UTF-8")}
    login = subprocess.run(["/bin/bash", "-l", "-c", 'printf %s "$PATH"'], env=env, cwd=home,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if login.returncode != 0 or not login.stdout:
        raise DocError("a login shell gave no PATH: %s" % login.stderr.strip())
    env["PATH"] = login.stdout
    return env


def zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def refusal(path):
    """A protocol answer with "ok":false in a block's output (an item of a batch may fail; an answer may not)."""
    with open(path, errors="replace") as f:
        for line in f:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("ok") is False:
                return line.strip()
    return None


def tail(path, n=60):
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return "(no output)"
    return "\n".join(lines[-n:]) or "(no output)"


def named_block(page, name):
    """The block NAME of PAGE, which another page names as its prerequisite."""
    try:
        found = [b for b in parse(os.path.join(SRC, page)) if b.name == name]
    except OSError as e:
        raise DocError("prerequisite %s:%s: %s" % (page, name, e.strerror))
    except DocError as e:
        raise DocError("prerequisite %s:%s: %s:%s" % (page, name, page, e))
    if len(found) != 1 or found[0].skip:
        raise DocError("prerequisite %s:%s: %s has %s block that runs with <!-- docs-test: name=%s -->" %
                       (page, name, page, "no" if not found else "more than one", name))
    return found[0]


def main():
    ap = argparse.ArgumentParser(description="Run a Markdown document's shell and INI blocks as written.")
    ap.add_argument("--broker", action="store_true", help="run scripts/start first")
    ap.add_argument("--emulator", action="store_true", help="run a zero-config akv-emulator first")
    ap.add_argument("--free-ports", action="append", default=[], metavar="N,M,...",
                    help="replace these fixed ports in the document by a run of free consecutive ones")
    ap.add_argument("doc", help="the document, relative to the source root")
    args = ap.parse_args()
    name = args.doc
    prereqs = []
    try:
        blocks = parse(os.path.join(SRC, name), prereqs)
        # steps: (key of its output file, the page it is from, the block), prerequisites first
        steps = [("p%d" % k, page, named_block(page, want)) for k, (page, want) in enumerate(prereqs)]
    except DocError as e:
        print("%s:%s" % (name, e))
        return 1
    steps += [(str(i), name, b) for i, b in enumerate(blocks) if b.kind and not b.skip]
    for b in blocks:
        if b.kind == "ini" and not b.skip and not b.file:
            print("%s:%d: an ini block needs <!-- docs-test: file=PATH --> or a skip with a reason" % (name, b.line))
            return 1
    if not any(page == name for _, page, _ in steps):
        print("%s: no block to run" % name)
        return 1
    session = Session()
    try:
        for group in args.free_ports:
            session.free_ports(group.split(","))
        if args.broker:
            session.broker()
        if args.emulator:
            session.emulator()
        script = os.path.join(session.out, "doc.sh")
        with open(script, "w") as f:
            f.write(script_for([(key, b) for key, _, b in steps], session.subst))
        t0 = time.time()
        try:
            rc = subprocess.run(["bash", script], cwd=session.dir, env=session.env,
                                stdin=subprocess.DEVNULL, timeout=SCRIPT_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        failed = None
        if os.path.exists(os.path.join(session.out, "failed")):
            with open(os.path.join(session.out, "failed")) as f:
                line, code = f.read().split()
            failed = (int(line), code)
        for b in blocks:
            if b.skip:
                print("%s:%d: skipped (%s): %s" % (name, b.line, b.lang, b.skip))
        keys = [key for key, _, _ in steps] + ["done"]
        for k, (key, page, b) in enumerate(steps):
            out = os.path.join(session.out, "%s.out" % key)
            if not os.path.exists(out):
                break
            what = "%s:%d: %s" % (page, b.line, "prerequisite block" if page != name else "block")
            finished = os.path.exists(os.path.join(session.out, "%s.out" % keys[k + 1]))
            if failed and not finished:
                print("%s FAILED: the command at line %d exited %s; its output:" % (what, failed[0], failed[1]))
                print(tail(out))
                return 1
            if not finished:
                print("%s did not finish (%s); its output:" % (what, rc))
                print(tail(out))
                return 1
            refused = refusal(out)
            if refused:
                print("%s FAILED: the broker refused a documented request:\n%s" % (what, refused))
                return 1
            print("%s ran (%s%s)" % (what, b.lang, ", in the background" if b.background else ""))
        if rc != 0 or not os.path.exists(os.path.join(session.out, "done.out")):
            print("%s: the session ended with %s before its last block" % (name, rc))
            return 1
        skipped = [b for b in blocks if b.skip]
        print("%s: %d blocks ran (%d of them prerequisites), %d skipped, in %.1f s" %
              (name, len(steps), len(steps) - len([1 for _, page, _ in steps if page == name]),
               len(skipped), time.time() - t0))
        return 0
    except DocError as e:
        print("%s: %s" % (name, e))
        return 1
    finally:
        session.stop()


if __name__ == "__main__":
    sys.exit(main())
