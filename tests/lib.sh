# tests/lib.sh - helpers for shell tests: the same TAP-style lines as the C harness, so
# tests/run.sh counts both alike. Source it, then call t_ok / t_fail / t_skip / t_check.
T_SUITE=${T_SUITE:-$(basename "$0" .sh)}
T_FAILED=0

t_ok() { echo "ok - $T_SUITE.$1"; }
t_fail() { echo "not ok - $T_SUITE.$1"; shift; [ $# -gt 0 ] && echo "#   $*"; T_FAILED=1; }
t_skip() { echo "ok - $T_SUITE.$1 # SKIP $2"; }
# t_check NAME CMD...: ok when CMD succeeds.
t_check() { local n=$1; shift; if "$@"; then t_ok "$n"; else t_fail "$n" "command failed: $*"; fi; }
t_done() { exit "$T_FAILED"; }
