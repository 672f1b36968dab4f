/* seccomp.c - the container's seccomp profile, kept as data.
 *
 * Derived from Docker's default profile (moby profiles/seccomp/default.json) and flattened to
 * plain runtime-spec form for runcell's container: the conditional blocks of Docker's profile
 * ("includes"/"excludes" by capability, architecture and kernel version) are resolved for the
 * capabilities rc_oci_kept_caps leaves (CAP_SETUID, CAP_SETGID, CAP_KILL: none of Docker's
 * capability-gated groups apply) and for the architecture this file is compiled for.
 *
 * Default action: SCMP_ACT_ERRNO (EPERM). Deviations from Docker, each a narrowing:
 *   - io_uring_setup/enter/register are not allowed (Docker 25 dropped them too: a large kernel
 *     attack surface that bypasses the per-syscall filter);
 *   - only the native architecture is listed, so 32-bit and x32 entry points are refused;
 *   - clone3 fails with ENOSYS so libcs fall back to clone, whose flags the filter can inspect
 *     (no new namespaces), exactly as Docker does without CAP_SYS_ADMIN.
 * Names this kernel or libseccomp does not know (the 32-bit variants in the shared list) are
 * skipped by runc, as in Docker. */
#include "spec.h"

#include "cleanup.h"
#include "json.h"

#include <stdbool.h>
#include <stddef.h>

static const char *const allow_always[] = {
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset", "chdir",
    "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
    "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
    "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
    "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
    "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl",
    "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr",
    "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64",
    "futex", "futex_time64", "futex_waitv", "futimesat", "getcpu", "getcwd", "getdents",
    "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
    "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid",
    "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit",
    "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area",
    "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup", "io_submit",
    "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
    "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr",
    "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "membarrier",
    "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock",
    "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
    "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink",
    "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2",
    "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev",
    "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
    "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename",
    "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget",
    "semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg",
    "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
    "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit",
    "set_robust_list", "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid",
    "setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack",
    "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice",
    "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname",
    "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice",
    "wait4", "waitid", "waitpid", "write", "writev",
    /* Docker: "minKernel 4.8" (ptrace no longer bypasses seccomp) */
    "process_vm_readv", "process_vm_writev", "ptrace", NULL};

#if defined(__x86_64__)
static const char *const arch_names[] = {"SCMP_ARCH_X86_64", NULL};
static const char *const allow_arch[] = {"arch_prctl", "modify_ldt", NULL};
#define CLONE_FLAGS_ARG 0
#elif defined(__aarch64__)
static const char *const arch_names[] = {"SCMP_ARCH_AARCH64", NULL};
static const char *const allow_arch[] = {"arm_fadvise64_64",
                                         "arm_sync_file_range",
                                         "sync_file_range2",
                                         "breakpoint",
                                         "cacheflush",
                                         "set_tls",
                                         NULL};
#define CLONE_FLAGS_ARG 0
#else
#error "seccomp profile: add this architecture's names (see Docker's default profile)"
#endif

/* personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
 * and 0xffffffff (query). */
static const double personality_values[] = {0, 8, 131072, 131080, 4294967295.0};

/* CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET: clone is allowed only when none of
 * these bits is set. */
#define CLONE_NS_MASK 2114060288.0
#define AF_VSOCK_NUM  40
#define ENOSYS_NUM    38

static cJSON *names_array(const char *const *names)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && names[i]; i++) {
        cJSON *s = cJSON_CreateString(names[i]);
        if (!s || !cJSON_AddItemToArray(a, s)) {
            cJSON_Delete(s);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

/* Add a names array under key; false (nothing leaked) on allocation failure. */
static bool add_names(cJSON *obj, const char *key, const char *const *names)
{
    cJSON *a = names_array(names);
    if (!a || !cJSON_AddItemToObject(obj, key, a)) {
        cJSON_Delete(a);
        return false;
    }
    return true;
}

/* One rule {names, action[, errnoRet][, args:[{index, value, valueTwo?, op}]]}. */
static cJSON *rule(const char *const *names, const char *action, int errno_ret, int arg_index,
                   double value, double value_two, const char *op)
{
    cJSON *r = cJSON_CreateObject();
    bool ok = r && add_names(r, "names", names) && cJSON_AddStringToObject(r, "action", action);
    if (ok && errno_ret > 0)
        ok = cJSON_AddNumberToObject(r, "errnoRet", errno_ret) != NULL;
    if (ok && op) {
        cJSON *args = cJSON_AddArrayToObject(r, "args");
        cJSON *a = cJSON_CreateObject();
        ok = args && a && cJSON_AddItemToArray(args, a);
        if (!ok)
            cJSON_Delete(a);
        ok = ok && cJSON_AddNumberToObject(a, "index", arg_index) &&
             cJSON_AddNumberToObject(a, "value", value) &&
             (value_two == 0 || cJSON_AddNumberToObject(a, "valueTwo", value_two)) &&
             cJSON_AddStringToObject(a, "op", op);
    }
    if (!ok) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

static bool add_rule(cJSON *arr, cJSON *r)
{
    if (!r || !cJSON_AddItemToArray(arr, r)) {
        cJSON_Delete(r);
        return false;
    }
    return true;
}

static bool add_rules(cJSON *syscalls)
{
    static const char *const socket_[] = {"socket", NULL};
    static const char *const personality[] = {"personality", NULL};
    static const char *const clone_[] = {"clone", NULL};
    static const char *const clone3[] = {"clone3", NULL};
    bool ok =
        add_rule(syscalls, rule(allow_always, "SCMP_ACT_ALLOW", 0, 0, 0, 0, NULL)) &&
        add_rule(syscalls, rule(allow_arch, "SCMP_ACT_ALLOW", 0, 0, 0, 0, NULL)) &&
        /* every socket family but AF_VSOCK (a channel to the hypervisor) */
        add_rule(syscalls, rule(socket_, "SCMP_ACT_ALLOW", 0, 0, AF_VSOCK_NUM, 0, "SCMP_CMP_NE")) &&
        add_rule(syscalls, rule(clone_, "SCMP_ACT_ALLOW", 0, CLONE_FLAGS_ARG, CLONE_NS_MASK, 0,
                                "SCMP_CMP_MASKED_EQ")) &&
        add_rule(syscalls, rule(clone3, "SCMP_ACT_ERRNO", ENOSYS_NUM, 0, 0, 0, NULL));
    for (size_t i = 0; ok && i < sizeof personality_values / sizeof personality_values[0]; i++)
        ok = add_rule(syscalls, rule(personality, "SCMP_ACT_ALLOW", 0, 0, personality_values[i], 0,
                                     "SCMP_CMP_EQ"));
    return ok;
}

int rc_oci_seccomp_build(cJSON **ret, rc_error *err)
{
    _cleanup_json_ cJSON *s = cJSON_CreateObject();
    bool ok = s && cJSON_AddStringToObject(s, "defaultAction", "SCMP_ACT_ERRNO") &&
              add_names(s, "architectures", arch_names);
    cJSON *syscalls = ok ? cJSON_AddArrayToObject(s, "syscalls") : NULL;
    if (!syscalls || !add_rules(syscalls))
        return rc_error_set(err, RC_ENOMEM, "out of memory building the seccomp profile");
    *ret = take_ptr(s);
    return 0;
}
