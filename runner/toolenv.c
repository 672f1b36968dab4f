/* toolenv.c - what a tool's child process inherits (protocol 17.6) and how it is started.
 *
 * Every child (bash, rg) gets the toolbox's base environment minus every variable whose
 * upper-cased name starts with ANTHROPIC_ (the runner's credentials) and minus any configured
 * extra prefix. Children start through rc_toolenv_spawn: fork, then in the child only
 * async-signal-safe calls (the runner is multi-threaded): signals back to their defaults, a new
 * session, fds 0-2 from the caller and nothing else inherited, the tool user's ids through raw
 * system calls, the working directory, exec. A failure before exec comes back to the parent over
 * a close-on-exec pipe, so the caller sees "cannot start" rather than a silent exit 127. */
#include "tools_internal.h"

#include "cleanup.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- environment -------------------------------------------------------------------------- */

static bool name_has_prefix_nocase(const char *entry, size_t name_len, const char *prefix)
{
    size_t n = strlen(prefix);
    if (n == 0 || name_len < n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (toupper((unsigned char)entry[i]) != toupper((unsigned char)prefix[i]))
            return false;
    return true;
}

bool rc_toolenv_scrubbed(const char *entry, const char *const *extra_prefixes)
{
    const char *eq = strchr(entry, '=');
    size_t name_len = eq ? (size_t)(eq - entry) : strlen(entry);
    if (name_has_prefix_nocase(entry, name_len, "ANTHROPIC_"))
        return true;
    for (size_t i = 0; extra_prefixes && extra_prefixes[i]; i++)
        if (name_has_prefix_nocase(entry, name_len, extra_prefixes[i]))
            return true;
    return false;
}

void rc_toolenv_free(char **env)
{
    if (!env)
        return;
    for (char **p = env; *p; p++)
        free(*p);
    free(env);
}

static void envp_freep(char ***p)
{
    rc_toolenv_free(*p);
}

static size_t name_len_of(const char *entry)
{
    const char *eq = strchr(entry, '=');
    return eq ? (size_t)(eq - entry) : strlen(entry);
}

int rc_toolenv_build(const char *const *base, const char *const *extra_prefixes,
                     const char *const *set, char ***ret, rc_error *err)
{
    size_t nb = 0, ns = 0, n = 0;
    while (base && base[nb])
        nb++;
    while (set && set[ns])
        ns++;
    _cleanup_(envp_freep) char **env = calloc(nb + ns + 1, sizeof(char *));
    if (!env)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    for (size_t i = 0; i < nb; i++) {
        if (!strchr(base[i], '=') || base[i][0] == '=' ||
            rc_toolenv_scrubbed(base[i], extra_prefixes))
            continue;
        if (!(env[n++] = strdup(base[i])))
            return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < ns; i++) {
        size_t len = name_len_of(set[i]);
        char *copy = strdup(set[i]);
        if (!copy)
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        size_t j = 0;
        while (j < n && !(name_len_of(env[j]) == len && strncmp(env[j], set[i], len) == 0))
            j++;
        if (j < n)
            free(env[j]);
        else
            n++;
        env[j] = copy;
    }
    *ret = take_ptr(env);
    return 0;
}

const char *rc_toolenv_get(char *const *env, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], name, len) == 0 && env[i][len] == '=')
            return env[i] + len + 1;
    return NULL;
}

/* ---- spawning ----------------------------------------------------------------------------- */

struct child_report {
    int stage; /* which step failed */
    int errnum;
};

enum { STAGE_SETSID = 1, STAGE_FDS, STAGE_IDS, STAGE_CWD, STAGE_EXEC };

static const char *stage_name(int stage)
{
    switch (stage) {
    case STAGE_SETSID:
        return "setsid";
    case STAGE_FDS:
        return "set up stdio";
    case STAGE_IDS:
        return "switch to the tool user";
    case STAGE_CWD:
        return "enter the working directory";
    default:
        return "exec";
    }
}

static __attribute__((noreturn)) void child_fail(int errfd, int stage)
{
    struct child_report rep = {stage, errno};
    ssize_t n = write(errfd, &rep, sizeof(rep));
    (void)n;
    _exit(127);
}

static void child_close_fds(int keep, int maxfd)
{
    if (keep > 3)
        (void)syscall(SYS_close_range, 3u, (unsigned)keep - 1, 0u);
    if (syscall(SYS_close_range, (unsigned)keep + 1, ~0u, 0u) == 0)
        return;
    for (int fd = 3; fd < maxfd; fd++)
        if (fd != keep)
            close(fd);
}

/* Runs in the forked child: async-signal-safe calls only. */
static __attribute__((noreturn)) void child_exec(const rc_spawn *s, const int fds[3], int errfd,
                                                 int maxfd)
{
    sigset_t none;
    sigemptyset(&none);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (setsid() < 0)
        child_fail(errfd, STAGE_SETSID);
    int moved[3];
    for (int i = 0; i < 3; i++)
        if ((moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3)) < 0)
            child_fail(errfd, STAGE_FDS);
    for (int i = 0; i < 3; i++)
        if (dup2(moved[i], i) < 0)
            child_fail(errfd, STAGE_FDS);
    child_close_fds(errfd, maxfd);
    if (s->set_ids) {
        gid_t g = s->gid;
        if (syscall(SYS_setgroups, 1, &g) < 0 || syscall(SYS_setresgid, g, g, g) < 0 ||
            syscall(SYS_setresuid, s->uid, s->uid, s->uid) < 0)
            child_fail(errfd, STAGE_IDS);
    }
    if (s->cwd && chdir(s->cwd) < 0)
        child_fail(errfd, STAGE_CWD);
    execve(s->path, s->argv, s->envp);
    child_fail(errfd, STAGE_EXEC);
}

int rc_toolenv_spawn(const rc_spawn *s, pid_t *ret_pid, rc_error *err)
{
    _cleanup_close_ int devnull = -1, rep_rd = -1, rep_wr = -1;
    if (s->stdin_fd < 0 || s->stdout_fd < 0 || s->stderr_fd < 0) {
        devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0)
            return rc_error_sys(err, RC_EIO, "open /dev/null");
    }
    int fds[3] = {s->stdin_fd >= 0 ? s->stdin_fd : devnull,
                  s->stdout_fd >= 0 ? s->stdout_fd : devnull,
                  s->stderr_fd >= 0 ? s->stderr_fd : devnull};
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return rc_error_sys(err, RC_EIO, "pipe2");
    rep_rd = p[0];
    rep_wr = p[1];
    long open_max = sysconf(_SC_OPEN_MAX);
    int maxfd = open_max > 0 && open_max < 65536 ? (int)open_max : 65536;
    pid_t pid = fork();
    if (pid < 0)
        return rc_error_sys(err, RC_EIO, "fork");
    if (pid == 0)
        child_exec(s, fds, rep_wr, maxfd);
    close(take_fd(rep_wr));
    struct child_report rep;
    ssize_t n;
    do
        n = read(rep_rd, &rep, sizeof(rep));
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(rep)) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        errno = rep.errnum;
        return rc_error_sys(err, RC_EIO, "cannot %s for %s", stage_name(rep.stage), s->path);
    }
    *ret_pid = pid;
    return 0;
}

int rc_toolenv_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
    long fd = syscall(SYS_pidfd_open, pid, 0); /* pidfds are always close-on-exec */
    return fd >= 0 ? (int)fd : -1;
#else
    (void)pid;
    return -1;
#endif
}

int rc_toolenv_kill_group(pid_t pid, int pidfd, int wait_ms)
{
    if (pid <= 0)
        return -1;
    /* The leader is not reaped yet, so its process group id cannot have been reused. */
    if (kill(-pid, SIGKILL) < 0)
        (void)kill(pid, SIGKILL);
    int64_t deadline = rc_tools_now_ms() + wait_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1; /* ECHILD: reaped elsewhere (SIGCHLD ignored) */
        int64_t left = deadline - rc_tools_now_ms();
        if (left <= 0)
            return -1;
        if (pidfd >= 0) {
            struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
            (void)poll(&pfd, 1, (int)(left < 100 ? left : 100));
        } else {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/* ---- finding an executable ---------------------------------------------------------------- */

static bool within_folded(const char *root, const char *p)
{
    _cleanup_free_ char *r = strdup(root), *q = strdup(p);
    if (!r || !q)
        return true; /* no telling: treat as inside */
    for (char *c = r; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    for (char *c = q; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return rc_pathconf_within(r, q);
}

/* 1 when real lies inside one of dirs, or when one of them cannot be resolved. */
static bool inside_any(const char *real, const char *const *dirs)
{
    for (size_t i = 0; dirs && dirs[i]; i++) {
        _cleanup_free_ char *lex = NULL, *canon = NULL;
        if (rc_pathconf_lexical("/", dirs[i], &lex, NULL) < 0 ||
            rc_pathconf_canonicalize(lex, &canon, NULL) < 0)
            return true;
        if (within_folded(canon, real))
            return true;
    }
    return false;
}

/* A PATH entry counts when absolute and already in lexical form (as the SDK requires). */
static bool usable_path_entry(const char *dir)
{
    if (dir[0] != '/')
        return false;
    _cleanup_free_ char *lex = NULL;
    return rc_pathconf_lexical("/", dir, &lex, NULL) == 0 && strcmp(lex, dir) == 0;
}

int rc_toolenv_find_exec(const char *name, const char *path_var, const char *const *not_inside,
                         char **ret, rc_error *err)
{
    _cleanup_free_ char *copy = strdup(path_var ? path_var : "");
    if (!copy)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    for (char *dir = copy, *next; dir; dir = next) {
        char *colon = strchr(dir, ':');
        next = colon ? colon + 1 : NULL;
        if (colon)
            *colon = '\0';
        if (!usable_path_entry(dir))
            continue;
        char cand[PATH_MAX];
        int n = snprintf(cand, sizeof(cand), "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name);
        struct stat st;
        if (n < 0 || (size_t)n >= sizeof(cand) || access(cand, X_OK) < 0 || stat(cand, &st) < 0 ||
            !S_ISREG(st.st_mode))
            continue;
        _cleanup_free_ char *real = realpath(cand, NULL);
        if (!real || inside_any(real, not_inside))
            continue;
        *ret = take_ptr(real);
        return 0;
    }
    return rc_error_set(err, RC_ENOTFOUND, "%s not found on PATH", name);
}
