#!/usr/bin/env bash
# tests/check/format.sh - every C file follows the checked-in .clang-format (make check-format).
cd "$(dirname "$0")/../.."
. tests/lib.sh
if ! command -v clang-format >/dev/null; then
    t_skip clang_format "clang-format not installed"
elif out=$(git ls-files -co --exclude-standard '*.c' '*.h' | xargs -r clang-format --dry-run --Werror 2>&1); then
    t_ok clang_format
else
    t_fail clang_format "$(head -n 20 <<<"$out")"
fi
t_done
