#!/usr/bin/env python3
"""check-banned.py - fails on banned functions and on fds opened without close-on-exec.

Scans every C file of the project (not build/ or .deps/). Banned outright: sprintf, vsprintf,
strcpy, strcat, atoi, atol, atoll, gets, strtok, system, popen, tmpnam, mktemp, and accept, pipe,
creat, dup (use the CLOEXEC variants). Calls that create fds (open, openat, socket, socketpair,
accept4, pipe2, epoll_create1, eventfd, timerfd_create, signalfd, inotify_init1, memfd_create,
mkostemp, dup3, fcntl F_DUPFD) must pass a *CLOEXEC flag; fopen/fdopen modes must contain 'e'.
memcmp on anything named like a secret (sig, secret, key, token, mac, digest, passw) is banned:
use CRYPTO_memcmp. A line may opt out with a comment `banned-ok: <reason>`.
Usage: check-banned.py [files...]  (default: the whole tree). Exit 1 on any finding."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {"build", ".deps", ".git", "node_modules"}

BANNED = ["sprintf", "vsprintf", "strcpy", "strcat", "atoi", "atol", "atoll", "gets", "strtok",
          "system", "popen", "accept", "pipe", "creat", "dup", "tmpnam", "mktemp"]
NEED_CLOEXEC = ["open", "openat", "socket", "socketpair", "accept4", "pipe2", "epoll_create1",
                "eventfd", "timerfd_create", "signalfd", "inotify_init1", "memfd_create",
                "mkostemp", "dup3"]
SECRETISH = re.compile(r"sig|secret|key|token|mac|digest|passw", re.I)


def strip_comments_and_strings(src):
    """Blank out comments and string/char literal contents, keeping offsets and newlines."""
    out = list(src)
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                if out[k] != "\n":
                    out[k] = " "
            i = j
        elif src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = " "
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            for k in range(i + 1, min(j, n)):
                if out[k] != "\n":
                    out[k] = " "
            i = j + 1
        else:
            i += 1
    return "".join(out)


def call_args(code, start):
    """Text from the '(' at or after start to its matching ')'."""
    depth, i = 0, code.find("(", start)
    begin = i
    while 0 <= i < len(code):
        if code[i] == "(":
            depth += 1
        elif code[i] == ")":
            depth -= 1
            if depth == 0:
                return code[begin:i + 1]
        i += 1
    return code[begin:]


def check_file(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        src = f.read()
    code = strip_comments_and_strings(src)
    lines = src.split("\n")
    findings = []

    def report(pos, msg):
        lineno = code.count("\n", 0, pos) + 1
        if "banned-ok:" in lines[lineno - 1]:
            return
        findings.append(f"{os.path.relpath(path, ROOT)}:{lineno}: {msg}")

    for m in re.finditer(r"(?<![\w.>])(" + "|".join(BANNED) + r")\s*\(", code):
        report(m.start(), f"banned function {m.group(1)}()")
    for m in re.finditer(r"(?<![\w.>])(" + "|".join(NEED_CLOEXEC) + r")\s*\(", code):
        if "CLOEXEC" not in call_args(code, m.end() - 1):
            report(m.start(), f"{m.group(1)}() without a CLOEXEC flag")
    for m in re.finditer(r"(?<![\w.>])fcntl\s*\(", code):
        args = call_args(code, m.end() - 1)
        if "F_DUPFD" in args and "F_DUPFD_CLOEXEC" not in args:
            report(m.start(), "fcntl(F_DUPFD) without CLOEXEC")
    for m in re.finditer(r"(?<![\w.>])(fopen|fdopen|freopen)\s*\(", code):
        args = call_args(src, m.end() - 1)  # offsets match: the mode string is read from src
        modes = re.findall(r'"([rwa+bxe]*)"', args)
        if not modes or "e" not in modes[-1]:
            report(m.start(), f"{m.group(1)}() mode without 'e' (close-on-exec)")
    for m in re.finditer(r"(?<![\w.>])memcmp\s*\(", code):
        if SECRETISH.search(call_args(code, m.end() - 1)):
            report(m.start(), "memcmp() on a secret-like value: use CRYPTO_memcmp")
    return findings


def all_c_files():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for fn in filenames:
            if fn.endswith((".c", ".h")):
                yield os.path.join(dirpath, fn)


def main():
    files = sys.argv[1:] or sorted(all_c_files())
    findings = [f for path in files for f in check_file(path)]
    for f in findings:
        print(f)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
