"""debpkg: where the programs, files and libraries the project uses come from, as Debian sees it.

scripts/packages/*.txt are the lists scripts/install-deps installs. A fresh Debian 12 root
(debootstrap --variant=minbase) has only its Essential and Priority: required packages, so
everything else a build, test or page uses must be in a list, or it works here only because this
machine happens to carry it. The package tests (test_commands_packaged.py,
test_start_packages.py) ask dpkg who owns each file, and apt for what a list pulls in.

It also reads the commands out of shell text (shell_commands) and Python test code
(python_commands), which is what those tests need to know what the project calls.
"""
import ast
import json
import os
import re
import shlex
import subprocess

SRC = os.environ.get("KB_SOURCE_ROOT",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("KB_BUILD_ROOT", os.path.join(SRC, "build"))
LISTS = os.path.join(SRC, "scripts", "packages")
# where a command is looked up: a login's PATH on a fresh root (root's, so sbin too)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def lists(names=None):
    """{list name: set of packages} of scripts/packages/NAME.txt, for names (default: every list)."""
    if names is None:
        names = sorted(f[:-4] for f in os.listdir(LISTS) if f.endswith(".txt"))
    out = {}
    for name in names:
        with open(os.path.join(LISTS, name + ".txt")) as f:
            out[name] = {w for line in f for w in line.split("#", 1)[0].split()}
    return out


def installable(names):
    """What scripts/install-deps installs for these list names (it prints them with --print)."""
    r = subprocess.run([os.path.join(SRC, "scripts", "install-deps"), "--print"] + list(names),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("scripts/install-deps --print %s: %s" % (" ".join(names), r.stderr.strip()))
    return set(r.stdout.split())


def base():
    """The packages a minbase root has before anything is installed: Essential, or Priority required."""
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Essential}\t${Priority}\n"],
                       capture_output=True, text=True, check=True)
    out = set()
    for line in r.stdout.splitlines():
        name, essential, priority = (line.split("\t") + ["", ""])[:3]
        if essential == "yes" or priority == "required":
            out.add(name)
    return out


def closure(packages):
    """packages and everything they Depend or Pre-Depend on, recursively, among the packages
    installed here (where scripts/install-deps has installed every list): what apt installs for them
    with --no-install-recommends, with the names they Provide (pkgconf provides pkg-config, which
    meets a Build-Depends on it). A virtual package counts as its installed providers."""
    r = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Depends}, ${Pre-Depends}"
                        "\t${Provides}\n"], capture_output=True, text=True, check=True)
    deps, providers, provided = {}, {}, {}
    for line in r.stdout.splitlines():
        status, name, depends, provides = line.split("\t")
        if not status.startswith("ii"):
            continue
        deps[name] = [[re.split(r"[\s(:]", alt.strip())[0] for alt in dep.split("|")]
                      for dep in depends.split(",") if dep.strip()]
        for prov in provides.split(","):
            if prov.strip():
                virtual = re.split(r"[\s(]", prov.strip())[0]
                providers.setdefault(virtual, []).append(name)
                provided.setdefault(name, []).append(virtual)
    out, todo = set(), list(packages)
    while todo:
        name = todo.pop()
        for real in ([name] if name in deps else providers.get(name, [])):
            if real in out:
                continue
            out.add(real)
            for alts in deps[real]:
                have = [a for a in alts if a in deps or a in providers]
                todo += have[:1]
    return out | set(packages) | {v for name in out for v in provided.get(name, [])}


def _merged(path):
    """path and its other name across the usr merge (/bin/x and /usr/bin/x)."""
    out = [path]
    for a, b in (("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/"), ("/usr/lib/", "/lib/")):
        if path.startswith(a):
            out.append(b + path[len(a):])
        elif path.startswith(b):
            out.append(a + path[len(b):])
    return out


def owners(paths):
    """{path: the package that installed it, or None when none did (a file under /usr/local, a pyenv,
    a tarball)}, following the usr merge and symlinks that no package owns (alternatives). One dpkg
    call per round of symlinks, as dpkg -S reads its whole database each time."""
    result, todo = {}, {p: p for p in paths}  # asked path -> the path to look up now
    for _ in range(8):
        if not todo:
            break
        ask = sorted({c for p in todo.values() for c in _merged(p)})
        r = subprocess.run(["dpkg", "-S"] + ask, capture_output=True, text=True)
        owned = {}
        for line in r.stdout.splitlines():
            pkgs, _, f = line.rpartition(": ")
            if not pkgs.startswith("diversion by"):
                owned[f] = pkgs.split(",")[0].strip().split(":")[0]
        nxt = {}
        for asked, now in todo.items():
            hit = [owned[c] for c in _merged(now) if c in owned]
            if hit:
                result[asked] = hit[0]
            elif os.path.islink(now):
                nxt[asked] = os.path.normpath(os.path.join(os.path.dirname(now), os.readlink(now)))
            else:
                result[asked] = None
        todo = nxt
    for asked in todo:
        result[asked] = None
    return result


def which(name):
    """name's path on a fresh root's login PATH, or None."""
    for d in SYSTEM_PATH.split(":"):
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def built_programs():
    """The names of the programs the build makes (they come from the build, not from a package)."""
    with open(os.path.join(BUILD, "meson-info", "intro-targets.json")) as f:
        return {os.path.basename(fn) for t in json.load(f) if t["type"] == "executable" for fn in t["filename"]}


# --- what shell text runs -------------------------------------------------

_BUILTINS = None
KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "case", "esac", "in",
            "{", "}", "!", "[[", "]]", "time", "function", "select", "coproc", "for"}
SEPARATORS = {";", "&", "&&", "||", "|", "|&", "(", ")", ";;", ";&", ";;&"}
# programs that run the program named after their own options
WRAPPERS = {"sudo": {"-u", "-g"}, "env": {"-u", "--unset", "-C", "--chdir"}, "exec": set(), "nice": {"-n"}, "timeout": {"-s", "-k", "--signal",
            "--kill-after"}, "xargs": {"-I", "-n", "-P", "-d", "-L", "-s", "-E", "-a"}, "nohup": set(),
            "command": set(), "setsid": set(), "stdbuf": {"-i", "-o", "-e"}}


def builtins():
    global _BUILTINS
    if _BUILTINS is None:
        r = subprocess.run(["bash", "-c", "compgen -b; compgen -k"], capture_output=True, text=True, check=True)
        _BUILTINS = set(r.stdout.split())
    return _BUILTINS


def _strip_heredocs(text):
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        out.append(lines[i])
        ends = re.findall(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1", lines[i])
        i += 1
        for _, word in ends:
            while i < len(lines) and lines[i].strip() != word:
                i += 1
            i += 1
    return "\n".join(out)


def _closing(text, i, open_, close):
    """The index after the bracket that closes the one before i."""
    depth = 1
    while i < len(text) and depth:
        depth += {open_: 1, close: -1}.get(text[i], 0)
        i += 1
    return i


def _substitutions(text, found):
    """text with each $(...) and `...` replaced by a plain word (their insides appended to found), and
    each ${...} by a plain word; single-quoted text is kept as it is, comments are dropped, and a
    newline outside quotes becomes ";", as it ends a command."""
    out, i, dquote = [], 0, False
    while i < len(text):
        if text[i] == "#" and not dquote and (i == 0 or text[i - 1] in " \t\n;|&("):
            j = text.find("\n", i)
            i = len(text) if j < 0 else j
        elif text[i] == "\n" and not dquote:
            out.append(" ; ")
            i += 1
        elif text[i] == "'" and not dquote:
            j = text.find("'", i + 1)
            j = len(text) if j < 0 else j + 1
            out.append(text[i:j])
            i = j
        elif text[i] == "\\" and i + 1 < len(text):
            out.append(text[i:i + 2])
            i += 2
        elif text[i] == '"':
            dquote = not dquote
            out.append('"')
            i += 1
        elif text.startswith("${", i):
            i = _closing(text, i + 2, "{", "}")
            out.append("$PARAM")
        elif text.startswith("$((", i):
            depth, j = 0, i + 1
            while j < len(text):
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
                if depth == 0:
                    break
            out.append("0")
            i = j
        elif text.startswith("$(", i):
            j = _closing(text, i + 2, "(", ")")
            found.append(text[i + 2:j - 1])
            out.append("SUBST")
            i = j
        elif text[i] == "`":
            j = text.find("`", i + 1)
            j = len(text) if j < 0 else j
            found.append(text[i + 1:j])
            out.append("SUBST")
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _words(text):
    lex = shlex.shlex(text.replace("\\\n", " "), posix=True, punctuation_chars=";&|()<>")
    lex.whitespace_split = True
    lex.commenters = ""
    out = []
    try:
        for tok in lex:
            out.append(tok)
    except ValueError:
        pass  # an unclosed quote at the end of a fragment: what came before still counts
    return out


def shell_functions(text):
    """The names of the shell functions text defines."""
    words = _words(_substitutions(_strip_heredocs(text), []))
    return {words[k] for k in range(len(words) - 1)
            if words[k + 1] == "()" or words[k + 1:k + 3] == ["(", ")"]}


def shell_commands(text, functions=frozenset()):
    """The names of the programs shell text runs, in order (builtins, keywords, the functions it or
    functions names define, and words known only at run time, such as $VAR, left out)."""
    subs = []
    body = _substitutions(_strip_heredocs(text), subs)
    words = _words(body)
    names = []
    functions = set(functions) | shell_functions(text)
    state, wrapper_args = "start", set()
    i = 0
    while i < len(words):
        w = words[i]
        i += 1
        if w == "((":
            while i < len(words) and words[i] != "))":
                i += 1
            i += 1
            continue
        if w in SEPARATORS or w == "()":
            if state == "pattern" and w == ")":
                state = "start"
            elif w in (";;", ";&", ";;&"):
                state = "pattern"
            elif state not in ("for", "case", "pattern"):
                state = "start"
            continue
        if state == "for":
            if w == "do":
                state = "start"
            continue
        if state in ("case", "pattern"):
            if w == "in":
                state = "pattern"
            elif state == "pattern" and w == "esac":
                state = "start"
            continue
        if state == "args":
            if w in (">", "<", ">>", ">&", "<&", "<<", "<<<"):
                i += 1
            continue
        # state start or wrapped: the command word, after assignments, keywords and redirections
        if w.isdigit() and i < len(words) and words[i][:1] in "<>":
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=", w):
            continue
        if w == "for":
            state = "for"
            continue
        if w == "case":
            state = "case"
            continue
        if w in KEYWORDS:
            continue
        if state == "wrapped" and w.startswith("-"):
            if w in wrapper_args and i < len(words):
                i += 1
            continue
        if state == "wrapped" and wrapper_args is WRAPPERS["timeout"] and re.match(r"^[0-9.]+[smhd]?$", w):
            continue
        if w in WRAPPERS:
            if w not in builtins():
                names.append(w)
            state, wrapper_args = "wrapped", WRAPPERS[w]
            continue
        state = "args"
        if w in (">", "<", ">>", ">&", "<&"):
            i += 1
            state = "start"
            continue
        if w in builtins() or w in functions or "$" in w or w == "SUBST" or w.startswith("-"):
            continue
        names.append(w)
    for sub in subs:
        names += shell_commands(sub, functions)
    return names


SPAWNERS = {"subprocess.run", "subprocess.Popen", "subprocess.check_output", "subprocess.check_call",
            "subprocess.call", "shutil.which", "os.execvp", "os.execlp"}


def python_commands(path):
    """The program names a Python file runs, as (sure, name): sure when name is a string given to
    shutil.which or the first item of a literal argv given to subprocess (or a "bash -c" script's
    command); not sure when it is only the first item of a literal list given to another call or bound
    to a name (which may be an argv, or a plain list of words)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = []
    for node in ast.walk(tree):
        lists_ = []
        if isinstance(node, ast.Call) and node.args:
            sure = ast.unparse(node.func) in SPAWNERS
            arg = node.args[0]
            if sure and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.append((True, arg.value))
            lists_.append((sure, arg))
        elif isinstance(node, ast.Assign):
            lists_.append((False, node.value))
        for sure, lst in lists_:
            while isinstance(lst, ast.BinOp):
                lst = lst.left
            if not isinstance(lst, (ast.List, ast.Tuple)) or not lst.elts:
                continue
            first = lst.elts[0]
            if not isinstance(first, ast.Constant) or not isinstance(first.value, str):
                continue
            names.append((sure, first.value))
            if first.value in ("bash", "sh", "/bin/bash", "/bin/sh") and len(lst.elts) > 2 \
                    and isinstance(lst.elts[1], ast.Constant) and lst.elts[1].value in ("-c", "-lc") \
                    and isinstance(lst.elts[2], ast.Constant) and isinstance(lst.elts[2].value, str):
                names += [(True, n) for n in shell_commands(lst.elts[2].value)]
    return names
