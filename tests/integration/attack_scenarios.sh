#!/usr/bin/env bash
# tests/integration/attack_scenarios.sh [NAME...] - escape and exfiltration attempts, as the
# agent (issue 9): every scenario of tests/scenarios/attack/ (attack-*.json; NAME picks some) is
# played through the real chain (emulator webhook -> nginx -> runcell-fcgi -> runcell-launcher ->
# shim -> runc -> runcell-runner) in a container from the minimal snapshot plus a static helper,
# /usr/local/bin/rc-attack, that makes the system calls bash cannot (ptrace, process_vm_readv,
# unshare, setns, mount, init_module, bpf, ... and an atomic directory/symlink swapper for races
# in the file tools). Each attack scenario's `expect` fields require the attempt to fail. Next to
# every attack, a benign session (attack-control) runs at the same time and must pass unchanged.
# After each pair, on the host: no container, mount, netns, bundle or work file left; no process
# in the sessions' host uid range; no cgroup of either session; available memory back; the host
# responsive; a canary file outside the state dir and the shared snapshot tree byte for byte
# unchanged; no credential (sk-ant-..., whsec_...) in either session's events; the container's
# output.log within its cap. Wall-clock: the launcher's summary line says end=wall_limit.
#
# Limits of this run (launcher configuration): wall clock 45 s, memory 768 MiB, pids 128, one
# CPU, /tmp 256 MiB (the default), and each session's workspace its own 64 MiB filesystem
# (RUNCELL_WORKSPACE_SIZE, docs/OCI.md). Root, runc, busybox-static and a C compiler that links
# -static.
#
# Never put these scenarios in tests/scenarios/ itself: the host-process runner suites play every
# *.json there outside any container.
. "$(dirname "$0")/launcher_lib.sh"

AT_DIR=tests/scenarios/attack
AT_UID_BASE=$((3000000 + ($$ % 200) * 65536)) # our own host id range: no other test's processes
AT_WALL_S=45
AT_MEM_MARGIN=${AT_MEM_MARGIN:-1024} # MiB
AT_CANARY=

# ---- the helper inside the snapshot ----
at_helper_source() {
    cat <<'EOF'
/* rc-attack: system calls an agent may try, each reported as "name=ok" or "name=ERRNO". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void say(const char *name, long rc)
{
    printf("%s=%s\n", name, rc >= 0 ? "ok" : strerrorname_np(errno));
    fflush(stdout);
}

static int pid_arg(int argc, char **argv) { return argc > 2 ? (int)strtol(argv[2], NULL, 10) : 1; }

static void cmd_proc(int pid)
{
    char path[64], b[64];
    const char *files[] = {"environ", "mem", "maps", "fd/0", "root/etc/hostname", "cwd/x", NULL};
    for (int i = 0; files[i]; i++) {
        snprintf(path, sizeof path, "/proc/%d/%s", pid, files[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        long rc = fd;
        if (fd >= 0) {
            rc = read(fd, b, sizeof b);
            close(fd);
        }
        snprintf(path, sizeof path, "open_%s", files[i]);
        say(path, rc);
    }
    struct iovec local = {b, sizeof b}, remote = {(void *)0x400000, sizeof b};
    say("process_vm_readv", process_vm_readv(pid, &local, 1, &remote, 1, 0));
    say("ptrace_attach", ptrace(PTRACE_ATTACH, pid, 0, 0));
    say("ptrace_seize", ptrace(PTRACE_SEIZE, pid, 0, 0));
    say("kill_0", kill(pid, 0));
}

static void cmd_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    say("connect", fd < 0 ? -1 : connect(fd, (struct sockaddr *)&sa, sizeof sa));
}

static void cmd_ns(void)
{
    static const struct { const char *n; int f; } fl[] = {
        {"unshare_user", CLONE_NEWUSER}, {"unshare_mnt", CLONE_NEWNS},
        {"unshare_net", CLONE_NEWNET},   {"unshare_pid", CLONE_NEWPID},
        {"unshare_uts", CLONE_NEWUTS},   {"unshare_ipc", CLONE_NEWIPC},
        {"unshare_cgroup", CLONE_NEWCGROUP}};
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) say(fl[i].n, unshare(fl[i].f));
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    say("clone_newuser", pid);
    int fd = open("/proc/1/ns/mnt", O_RDONLY | O_CLOEXEC);
    say("setns_init_mnt", fd < 0 ? -1 : setns(fd, 0));
    fd = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
    say("setns_own_user", fd < 0 ? -1 : setns(fd, CLONE_NEWUSER));
}

static void cmd_mount(void)
{
    mkdir("/tmp/m", 0700);
    say("mount_tmpfs", mount("none", "/tmp/m", "tmpfs", 0, NULL));
    say("mount_bind_root", mount("/", "/tmp/m", NULL, MS_BIND, NULL));
    say("mount_proc", mount("proc", "/tmp/m", "proc", 0, NULL));
    say("remount_root_rw", mount(NULL, "/", NULL, MS_REMOUNT, NULL));
    say("umount_workspace", umount2("/workspace", MNT_DETACH));
    say("umount_proc_mask", umount2("/proc/kcore", MNT_DETACH));
    say("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */));
    say("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
    say("chroot", chroot("/tmp"));
    say("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp/m"));
    say("mknod_blk", mknod("/tmp/sda", S_IFBLK | 0600, makedev(8, 0)));
}

static void cmd_kernel(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    say("init_module", syscall(SYS_init_module, "", 0, ""));
    say("finit_module", syscall(SYS_finit_module, fd, "", 0));
    say("delete_module", syscall(SYS_delete_module, "ext4", O_NONBLOCK));
    say("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    say("bpf", syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a));
    struct perf_event_attr pe;
    memset(&pe, 0, sizeof pe);
    pe.size = sizeof pe;
    pe.type = PERF_TYPE_SOFTWARE;
    say("perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
    say("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0));
    say("add_key", syscall(SYS_add_key, "user", "x", "y", 1, -3));
    say("userfaultfd", syscall(SYS_userfaultfd, 0));
    say("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
    say("swapon", syscall(SYS_swapon, "/tmp/swap", 0));
    say("syslog_read", syscall(SYS_syslog, 3, NULL, 0));
    say("iopl", syscall(SYS_iopl, 3));
    say("ioperm", syscall(SYS_ioperm, 0x80, 1, 1));
    say("settimeofday", syscall(SYS_settimeofday, NULL, NULL));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    say("clock_settime", clock_settime(CLOCK_REALTIME, &ts));
    say("sethostname", sethostname("evil", 4));
    say("setuid0", setuid(0));
    say("acct", syscall(SYS_acct, "/tmp/acct"));
    say("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, 0));
}

/* Swap DIR (a real directory) and LINK (a symlink out of the workdir) atomically, for S seconds:
 * a file tool resolving DIR/... meanwhile must never land outside. */
static void cmd_flip(const char *dir, const char *link, int secs)
{
    time_t end = time(NULL) + secs;
    long n = 0;
    while (time(NULL) < end) {
        if (syscall(SYS_renameat2, AT_FDCWD, dir, AT_FDCWD, link, 2 /* RENAME_EXCHANGE */) == 0)
            n++;
    }
    printf("flips=%ld\n", n);
}

/* Touch MB MiB in 64 MiB steps, saying how far it got (the OOM killer ends it in a cgroup). */
static void cmd_memhog(long mb)
{
    for (long done = 0; done < mb; done += 64) {
        char *p = malloc(64L << 20);
        if (!p) {
            printf("hog=ENOMEM at %ld MiB\n", done);
            return;
        }
        memset(p, 1, 64L << 20);
        printf("hog=%ld\n", done + 64);
        fflush(stdout);
    }
    printf("hog=done\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "proc")) cmd_proc(pid_arg(argc, argv));
    else if (!strcmp(argv[1], "connect") && argc == 3) cmd_connect(argv[2]);
    else if (!strcmp(argv[1], "ns")) cmd_ns();
    else if (!strcmp(argv[1], "mount")) cmd_mount();
    else if (!strcmp(argv[1], "kernel")) cmd_kernel();
    else if (!strcmp(argv[1], "memhog") && argc == 3) cmd_memhog(strtol(argv[2], NULL, 10));
    else if (!strcmp(argv[1], "flip") && argc == 5) cmd_flip(argv[2], argv[3], (int)strtol(argv[4], NULL, 10));
    else return 2;
    return 0;
}
EOF
}

# at_snapshot: the minimal snapshot with rc-attack appended; sets LT_SNAPSHOT.
at_snapshot() {
    local extra=$LT/extra
    mkdir -p "$extra/usr/local/bin"
    at_helper_source >"$LT/rc-attack.c"
    if ! cc -static -O1 -o "$extra/usr/local/bin/rc-attack" "$LT/rc-attack.c" 2>"$LT/cc.err"; then
        t_skip all "cannot link the helper -static: $(head -c 200 "$LT/cc.err")"
        exit 0
    fi
    lt_snapshot attack
    tar --append -f "$LT/attack.tar" -C "$extra" --numeric-owner --owner=0 --group=0 \
        --mode=0755 ./usr/local/bin/rc-attack
    # shellcheck disable=SC2034 # read by lt_launcher_start (launcher_lib.sh)
    LT_SNAPSHOT=$LT/attack.tar
}

at_load_scenarios() {
    local f
    for f in "$AT_DIR"/*.json; do
        api POST /_emulator/v1/scenarios "$(cat "$f")"
        [ "$ST" = 200 ] || [ "$ST" = 201 ] || {
            t_fail "load.$(basename "$f" .json)" "status $ST: $(head -c 200 "$EM_DIR/body")"
        }
    done
}

# at_session VAR NAME: like lt_session, for a scenario of $AT_DIR.
at_session() {
    local file=$AT_DIR/$2.json tools agent
    tools=$(jq -c '.agent.tools' "$file")
    api POST /v1/agents "$(jq -cn --arg n "at-$2" --argjson t "$tools" \
        '{name: $n, model: "claude-sonnet-4-6", tools: $t}')"
    agent=$(jb .id)
    api POST /v1/sessions "$(jq -cn --arg a "$agent" --arg e "$ENV" --arg s "$2" \
        '{agent: $a, environment_id: $e, metadata: {scenario: $s}}')"
    printf -v "$1" '%s' "$(jb .id)"
}

# Failed steps of a session's verdict, one "#" line each.
at_failed_steps() {
    api GET "/_emulator/v1/sessions/$1/verdict"
    jq -r '.steps[] | select(.passed | not) | "#     turn \(.turn) step \(.step): \(.detail)"' \
        "$EM_DIR/body" 2>/dev/null | cut -c1-400 | head -n 8
}

# All events of a session, concatenated (the emulator pages with limit/page).
at_events() {
    local page='' n=0
    : >"$LT/events.$1"
    while [ $n -lt 50 ]; do
        api GET "/v1/sessions/$1/events?limit=100${page:+&page=$page}"
        cat "$EM_DIR/body" >>"$LT/events.$1"
        page=$(jb '.next_page // empty')
        [ -n "$page" ] || break
        n=$((n + 1))
    done
    echo "$LT/events.$1"
}

at_leftovers() { lt_leftovers; }
at_wait_clean() {
    local end=$((SECONDS + $1)) left
    while :; do
        left=$(at_leftovers)
        [ -z "${left// /}" ] && return 0
        [ $SECONDS -ge $end ] && break
        sleep 0.3
    done
    echo "$left"
    return 1
}

# Processes whose host uid is in our sessions' range (container ids 0..65535).
at_procs() {
    ps -eo uid=,pid=,comm= | awk -v lo="$AT_UID_BASE" -v hi=$((AT_UID_BASE + 65536)) \
        '$1 >= lo && $1 < hi {print $2 "/" $3}' | tr '\n' ' '
}
at_cgroups() {
    local s
    for s in "$@"; do
        ls -d /sys/fs/cgroup/runcell/"$s" /sys/fs/cgroup/*/runcell/"$s" 2>/dev/null
    done | tr '\n' ' '
}
# wait_empty SECONDS FUNC ARGS...: until FUNC prints nothing; prints what is left.
wait_empty() {
    local end=$((SECONDS + $1)) out
    shift
    while :; do
        out=$("$@")
        [ -z "${out// /}" ] && return 0
        [ $SECONDS -ge $end ] && break
        sleep 0.5
    done
    echo "$out"
    return 1
}
mem_available_mb() { awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo; }

# The whole shared snapshot tree: names, types, modes, owners, sizes and contents.
tree_sum() {
    (
        cd "$1" || exit 1
        find . -printf '%p %y %m %U:%G %s\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    ) | sha256sum | cut -d' ' -f1
}
canary_sum() { { sha256sum "$AT_CANARY"; stat -c '%s %Y %i %a %u' "$AT_CANARY"; } | tr '\n' ' '; }

at_cleanup() {
    [ -n "$AT_CANARY" ] && rm -f "$AT_CANARY"
    lt_cleanup # unmounts everything under $LT
}
trap at_cleanup EXIT

# ---- one attack next to the control session ----
run_attack() {
    local name=$1 asid csid va vc t0 dt left f mem mem0
    t0=$SECONDS
    mem0=$(mem_available_mb)
    at_session asid "$name"
    at_session csid attack-control
    if [ -z "$asid" ] || [ "$asid" = null ] || [ -z "$csid" ] || [ "$csid" = null ]; then
        t_fail "$name" "sessions not created: $(head -c 200 "$EM_DIR/body")"
        return
    fi
    va=$(wait_verdict "$asid" 240)
    dt=$((SECONDS - t0))
    vc=$(wait_verdict "$csid" 60)
    if [ "$va" = passed ]; then
        t_ok "$name.attempts_fail"
    else
        t_fail "$name.attempts_fail" "verdict $va (session $asid, ${dt}s)"
        at_failed_steps "$asid"
    fi
    if [ "$vc" = passed ]; then
        t_ok "$name.other_session_unaffected"
    else
        t_fail "$name.other_session_unaffected" "control verdict $vc (session $csid)"
        at_failed_steps "$csid"
    fi
    if grep -qE 'sk-ant-|whsec_' "$(at_events "$asid")" "$(at_events "$csid")"; then
        t_fail "$name.no_credential_in_results" \
            "$(grep -ohE '.{60}(sk-ant-|whsec_).{0,4}' "$LT/events.$asid" "$LT/events.$csid" | head -n 2)"
    else
        t_ok "$name.no_credential_in_results"
    fi
    if left=$(at_wait_clean 60); then t_ok "$name.nothing_left"; else t_fail "$name.nothing_left" "$left"; fi
    if left=$(wait_empty 20 at_procs); then t_ok "$name.no_process_left"; else t_fail "$name.no_process_left" "$left"; fi
    if left=$(wait_empty 20 at_cgroups "$asid" "$csid"); then t_ok "$name.no_cgroup_left"; else t_fail "$name.no_cgroup_left" "$left"; fi
    # Host load back to normal: available memory back near what it was before this pair (the
    # margin is for the other work on a shared test host), a fork+exec answers at once.
    mem=$(mem_available_mb)
    for _ in $(seq 30); do
        [ "$mem" -ge $((mem0 - AT_MEM_MARGIN)) ] && break
        sleep 1
        mem=$(mem_available_mb)
    done
    if [ "$mem" -ge $((mem0 - AT_MEM_MARGIN)) ] && timeout 5 /bin/true; then
        t_ok "$name.host_load_normal"
    else
        t_fail "$name.host_load_normal" "MemAvailable ${mem} MiB (before: ${mem0} MiB)"
    fi
    check "$name.host_canary_unchanged" test "$(canary_sum)" = "$AT_CANARY0"
    check "$name.snapshot_unchanged" test "$(tree_sum "$AT_SNAPDIR")" = "$AT_SNAP0"
    f=$(ls "$LT_STATE"/sessions/"$asid"/output.log 2>/dev/null)
    if [ -z "$f" ] || [ "$(stat -c %s "$f")" -le $((8 * 1024 * 1024 + 4096)) ]; then
        t_ok "$name.container_output_capped"
    else
        t_fail "$name.container_output_capped" "$f is $(stat -c %s "$f") bytes"
    fi
    case $name in
    attack-wall-clock)
        if grep -q "\"session_id\":\"$asid\".*session ended: end=wall_limit" "$LT_LOG" &&
            [ "$dt" -le $((AT_WALL_S + 20)) ]; then
            t_ok "$name.stopped_at_wall_limit"
        else
            t_fail "$name.stopped_at_wall_limit" "after ${dt}s: $(grep "\"session_id\":\"$asid\".*session ended" "$LT_LOG" | tail -n 1)"
        fi
        ;;
    *)
        if grep -q "\"session_id\":\"$asid\".*session ended: end=exit" "$LT_LOG"; then
            t_ok "$name.runner_exited_normally"
        else
            t_fail "$name.runner_exited_normally" "$(grep "\"session_id\":\"$asid\".*session ended" "$LT_LOG" | tail -n 1)"
        fi
        ;;
    esac
    echo "# $name: ${dt}s"
}

# ---- setup ----
lt_require
at_snapshot
# shellcheck disable=SC2034 # read by lt_setup (launcher_lib.sh)
LT_LAUNCHER_ENV=("RUNCELL_SESSION_WALL_LIMIT_S=$AT_WALL_S" RUNCELL_MEMORY=768M RUNCELL_PIDS=128
    RUNCELL_CPUS=1 "RUNCELL_UID_BASE=$AT_UID_BASE" RUNCELL_PURGE_WORKSPACE=1
    RUNCELL_WORKSPACE_SIZE=64M)
lt_setup
at_load_scenarios

AT_CANARY=$(mktemp /tmp/rc-attack-canary.XXXXXX)
head -c 4096 /dev/urandom >"$AT_CANARY"
chmod 0644 "$AT_CANARY"
AT_CANARY0=$(canary_sum)
AT_SNAPDIR=$(find "$LT_STATE/snapshots/sha256" -mindepth 2 -maxdepth 2 -name rootfs 2>/dev/null | head -n 1)
if [ -z "$AT_SNAPDIR" ]; then
    t_fail snapshot_store "no extracted snapshot under $LT_STATE/snapshots"
    t_done
fi
AT_SNAP0=$(tree_sum "$AT_SNAPDIR")

if [ $# -gt 0 ]; then
    names=("$@")
else
    names=()
    for f in "$AT_DIR"/attack-*.json; do
        n=$(basename "$f" .json)
        [ "$n" = attack-control ] || names+=("$n")
    done
fi
for n in "${names[@]}"; do
    if [ -f "$AT_DIR/$n.json" ]; then run_attack "$n"; else t_skip "$n" "no such scenario"; fi
done
t_done
