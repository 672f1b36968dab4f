/* state.c - what a session leaves on the host, and how to find and remove it.
 *
 * Every per-session artefact has a fixed path derived from the session id (launcher.h), so any
 * process - the shim at teardown, the daemon when a shim dies, the daemon at start after a crash
 * - can clean up a session knowing only its id, without any in-memory state. The session lock
 * (an flock the shim holds for its whole life) is the single source of truth for "a shim is
 * alive": the kernel drops it when the shim dies, however it dies. The work file is the only
 * place a session token is stored on disk: root-only (dir 0700, file 0600), written atomically,
 * removed as soon as the item is stopped. */
#include "launcher.h"
#include "skills.h"
#include "tlstrust.h"

#include "../oci/bundle.h"
#include "../oci/runc.h"
#include "../oci/spec.h"
#include "api.h"
#include "buf.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "webhook.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define INFO_MAX 4096
#define WORK_MAX (RC_WORKSECRET_PAYLOAD_MAX + 512)

static const rc_json_limits info_limits = {.max_size = INFO_MAX, .max_depth = 2};

/* ---- paths --------------------------------------------------------------------------------- */

int rc_launcher_path(const rc_launcher_config *c, const char *sid, int which, char *buf,
                     size_t bufsz, rc_error *err)
{
    const char *R = c->run_dir, *S = c->state_dir;
    int n;

    if (!rc_oci_session_id_valid(sid))
        return rc_error_set(err, RC_EINVAL, "malformed session id");
    switch (which) {
    case RC_LP_RUN_SESSION:
        n = snprintf(buf, bufsz, "%s/sessions/%s", R, sid);
        break;
    case RC_LP_LOCK:
        n = snprintf(buf, bufsz, "%s/sessions/%s/lock", R, sid);
        break;
    case RC_LP_STATE:
        n = snprintf(buf, bufsz, "%s/sessions/%s/state.json", R, sid);
        break;
    case RC_LP_API_DIR:
        n = snprintf(buf, bufsz, "%s/sessions/%s/api", R, sid);
        break;
    case RC_LP_API_SOCKET:
        n = snprintf(buf, bufsz, "%s/sessions/%s/api/api.sock", R, sid);
        break;
    case RC_LP_NETNS:
        n = snprintf(buf, bufsz, "%s/netns/%s", R, sid);
        break;
    case RC_LP_SECRET_DIR:
        n = snprintf(buf, bufsz, "%s/sessions/%s", S, sid);
        break;
    case RC_LP_WORK:
        n = snprintf(buf, bufsz, "%s/sessions/%s/work", S, sid);
        break;
    case RC_LP_HEARTBEAT:
        n = snprintf(buf, bufsz, "%s/sessions/%s/heartbeat", S, sid);
        break;
    case RC_LP_API_AUDIT:
        n = snprintf(buf, bufsz, "%s/sessions/%s/api-audit.jsonl", S, sid);
        break;
    case RC_LP_EGRESS_AUDIT:
        n = snprintf(buf, bufsz, "%s/sessions/%s/egress-audit.jsonl", S, sid);
        break;
    case RC_LP_SKILLS:
        n = snprintf(buf, bufsz, "%s/skills/%s", S, sid);
        break;
    case RC_LP_TLS:
        n = snprintf(buf, bufsz, "%s/tls/%s", S, sid);
        break;
    default:
        return rc_error_set(err, RC_EINVAL, "unknown launcher path %d", which);
    }
    if (n < 0 || (size_t)n >= bufsz)
        return rc_error_set(err, RC_ETOOBIG, "launcher path too long");
    return 0;
}

static int mkdir_mode(const char *path, mode_t mode, rc_error *err)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return rc_error_sys(err, RC_EIO, "mkdir %s", path);
    if (chmod(path, mode) < 0)
        return rc_error_sys(err, RC_EIO, "chmod %s", path);
    return 0;
}

/* `ip netns` makes its dir a shared mount point so that removing a namespace file propagates
 * into mount namespaces created meanwhile (a container's): do the same for R/netns. */
static int netns_dir_shared(const char *dir, rc_error *err)
{
    if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) == 0)
        return 0;
    if (errno != EINVAL)
        return rc_error_sys(err, RC_EIO, "make %s a shared mount", dir);
    if (mount(dir, dir, "none", MS_BIND | MS_REC, NULL) < 0)
        return rc_error_sys(err, RC_EIO, "bind mount %s", dir);
    if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) < 0)
        return rc_error_sys(err, RC_EIO, "make %s a shared mount", dir);
    return 0;
}

int rc_launcher_state_init(const rc_launcher_config *c, rc_error *err)
{
    char p[RC_LAUNCHER_PATH_MAX];
    int r;

    /* 0711: the container's root (an unprivileged host uid) must traverse to the API socket. */
    if ((r = mkdir_mode(c->run_dir, 0711, err)) < 0)
        return r;
    snprintf(p, sizeof p, "%s/sessions", c->run_dir);
    if ((r = mkdir_mode(p, 0711, err)) < 0)
        return r;
    snprintf(p, sizeof p, "%s/netns", c->run_dir);
    if ((r = mkdir_mode(p, 0700, err)) < 0 || (r = netns_dir_shared(p, err)) < 0)
        return r;
    if ((r = rc_bundle_state_init(c->state_dir, err)) < 0)
        return r;
    snprintf(p, sizeof p, "%s/sessions", c->state_dir);
    return mkdir_mode(p, 0700, err);
}

/* ---- the session lock ---------------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rc_launcher_session_lock(const rc_launcher_config *c, const char *sid, int64_t wait_ms,
                             int *ret_fd, rc_error *err)
{
    char dir[RC_LAUNCHER_PATH_MAX], lock[RC_LAUNCHER_PATH_MAX];
    _cleanup_close_ int fd = -1;
    int64_t deadline = mono_ms() + wait_ms;
    int r;

    if ((r = rc_launcher_path(c, sid, RC_LP_RUN_SESSION, dir, sizeof dir, err)) < 0 ||
        (r = rc_launcher_path(c, sid, RC_LP_LOCK, lock, sizeof lock, err)) < 0)
        return r;
    for (;;) {
        struct stat st_fd, st_path;
        if ((r = mkdir_mode(dir, 0711, err)) < 0)
            return r;
        fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return rc_error_sys(err, RC_EIO, "open %s", lock);
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            /* The previous holder may have removed the file after we opened it: retry on the
             * new one, or two holders would each lock a different inode. */
            if (fstat(fd, &st_fd) == 0 && stat(lock, &st_path) == 0 &&
                st_fd.st_ino == st_path.st_ino && st_fd.st_dev == st_path.st_dev) {
                *ret_fd = take_fd(fd);
                return 0;
            }
        } else if (errno != EWOULDBLOCK) {
            return rc_error_sys(err, RC_EIO, "flock %s", lock);
        }
        close(take_fd(fd));
        if (mono_ms() >= deadline)
            return rc_error_set(err, RC_ETIMEOUT, "session %s is still held by another shim", sid);
        usleep(50 * 1000);
    }
}

int rc_launcher_session_locked(const rc_launcher_config *c, const char *sid, rc_error *err)
{
    char lock[RC_LAUNCHER_PATH_MAX];
    _cleanup_close_ int fd = -1;
    int r;

    if ((r = rc_launcher_path(c, sid, RC_LP_LOCK, lock, sizeof lock, err)) < 0)
        return r;
    fd = open(lock, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : rc_error_sys(err, RC_EIO, "open %s", lock);
    if (flock(fd, LOCK_SH | LOCK_NB) == 0)
        return 0; /* released when fd closes */
    if (errno == EWOULDBLOCK)
        return 1;
    return rc_error_sys(err, RC_EIO, "flock %s", lock);
}

/* ---- files --------------------------------------------------------------------------------- */

/* Write data to path atomically (temp + fsync + rename) with mode. */
static int write_atomic(const char *path, const char *data, size_t len, mode_t mode, rc_error *err)
{
    char tmp[RC_LAUNCHER_PATH_MAX + 8];
    _cleanup_close_ int fd = -1;
    size_t off = 0;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return rc_error_set(err, RC_ETOOBIG, "path too long");
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "create %s", tmp);
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int r = rc_error_sys(err, RC_EIO, "write %s", tmp);
            unlink(tmp);
            return r;
        }
        off += (size_t)n;
    }
    if (fchmod(fd, mode) < 0 || fsync(fd) < 0 || rename(tmp, path) < 0) {
        int r = rc_error_sys(err, RC_EIO, "write %s", path);
        unlink(tmp);
        return r;
    }
    return 0;
}

static int read_small(const char *path, rc_buf *out, rc_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    int r;
    if (fd < 0)
        return errno == ENOENT ? rc_error_set(err, RC_ENOTFOUND, "%s: not found", path)
                               : rc_error_sys(err, RC_EIO, "open %s", path);
    for (;;) {
        if ((r = rc_buf_reserve(out, 1024, err)) < 0)
            return r;
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return rc_error_sys(err, RC_EIO, "read %s", path);
        if (n == 0)
            break;
        out->len += (size_t)n;
        if (out->len > out->max)
            return rc_error_set(err, RC_ETOOBIG, "%s is too large", path);
        out->data[out->len] = '\0';
    }
    return 0;
}

int rc_launcher_info_write(const rc_launcher_config *c, const rc_launcher_session_info *info,
                           rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(INFO_MAX);
    char path[RC_LAUNCHER_PATH_MAX];
    int r;

    /* Every string is an id ([A-Za-z0-9_]) or a fixed phase word: nothing needs escaping. */
    if ((r = rc_launcher_path(c, info->session_id, RC_LP_STATE, path, sizeof path, err)) < 0 ||
        (r = rc_buf_appendf(&b, err,
                            "{\"session_id\":\"%s\",\"work_id\":\"%s\",\"environment_id\":\"%s\","
                            "\"pid\":%ld,\"started_at\":%lld,\"phase\":\"%s\"}\n",
                            info->session_id, info->work_id, info->environment_id, (long)info->pid,
                            (long long)info->started_at, info->phase)) < 0)
        return r;
    return write_atomic(path, b.data, b.len, 0644, err);
}

static void copy_field(char *dst, size_t dstsz, const char *src)
{
    snprintf(dst, dstsz, "%s", src ? src : "");
}

int rc_launcher_info_read(const rc_launcher_config *c, const char *sid,
                          rc_launcher_session_info *ret, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(INFO_MAX);
    _cleanup_json_ cJSON *root = NULL;
    char path[RC_LAUNCHER_PATH_MAX];
    rc_launcher_session_info info = {0};
    const char *s = NULL, *w = NULL, *e = NULL, *ph = NULL;
    int64_t pid = 0, started = 0;
    int r;

    if ((r = rc_launcher_path(c, sid, RC_LP_STATE, path, sizeof path, err)) < 0 ||
        (r = read_small(path, &b, err)) < 0 ||
        (r = rc_json_parse(rc_buf_cstr(&b), b.len, &info_limits, &root, err)) < 0)
        return r;
    if ((r = rc_json_get_string(root, "session_id", &s, err)) < 0 ||
        (r = rc_json_get_string(root, "work_id", &w, err)) < 0 ||
        (r = rc_json_get_string(root, "environment_id", &e, err)) < 0 ||
        (r = rc_json_get_string(root, "phase", &ph, err)) < 0 ||
        (r = rc_json_get_int64(root, "pid", &pid, err)) < 0 ||
        (r = rc_json_get_int64(root, "started_at", &started, err)) < 0)
        return r;
    copy_field(info.session_id, sizeof info.session_id, s);
    copy_field(info.work_id, sizeof info.work_id, w);
    copy_field(info.environment_id, sizeof info.environment_id, e);
    copy_field(info.phase, sizeof info.phase, ph);
    info.pid = (pid_t)pid;
    info.started_at = started;
    *ret = info;
    return 0;
}

int rc_launcher_work_write(const rc_launcher_config *c, const char *sid, const char *env_id,
                           const char *work_id, const char *token, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(WORK_MAX);
    char dir[RC_LAUNCHER_PATH_MAX], path[RC_LAUNCHER_PATH_MAX];
    int r;

    if ((r = rc_launcher_path(c, sid, RC_LP_SECRET_DIR, dir, sizeof dir, err)) < 0 ||
        (r = rc_launcher_path(c, sid, RC_LP_WORK, path, sizeof path, err)) < 0 ||
        (r = mkdir_mode(dir, 0700, err)) < 0)
        return r;
    /* Sized up front: a realloc would leave an unwiped copy of the token behind. */
    if ((r = rc_buf_reserve(&b, WORK_MAX, err)) < 0 ||
        (r = rc_buf_appendf(&b, err, "%s\n%s\n", env_id, work_id)) < 0 ||
        (r = rc_buf_append_str(&b, token ? token : "", err)) < 0 ||
        (r = rc_buf_putc(&b, '\n', err)) < 0)
        return r;
    return write_atomic(path, b.data, b.len, 0600, err);
}

/* Next '\n'-terminated line of *p as a C string (in place). */
static char *next_line(char **p)
{
    char *s = *p, *nl = s ? strchr(s, '\n') : NULL;
    if (!nl)
        return NULL;
    *nl = '\0';
    *p = nl + 1;
    return s;
}

int rc_launcher_work_read(const rc_launcher_config *c, const char *sid, char *ret_env,
                          char *ret_work, size_t idsz, char **ret_token, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(WORK_MAX);
    char path[RC_LAUNCHER_PATH_MAX];
    char *p, *env, *work, *token;
    int r;

    if ((r = rc_launcher_path(c, sid, RC_LP_WORK, path, sizeof path, err)) < 0 ||
        (r = rc_buf_reserve(&b, WORK_MAX, err)) < 0 || (r = read_small(path, &b, err)) < 0)
        return r;
    p = b.data;
    env = next_line(&p);
    work = next_line(&p);
    token = next_line(&p);
    if (!env || !work || !token || strlen(env) >= idsz || strlen(work) >= idsz)
        return rc_error_set(err, RC_EPARSE, "%s is malformed", path);
    char *t = *token ? strdup(token) : NULL;
    if (*token && !t)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    snprintf(ret_env, idsz, "%s", env);
    snprintf(ret_work, idsz, "%s", work);
    *ret_token = t;
    return 0;
}

/* ---- network namespaces -------------------------------------------------------------------- */

static int loopback_up(void)
{
    struct ifreq ifr = {0};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int r = -1;
    if (fd < 0)
        return -1;
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    close(fd);
    return r;
}

/* In a child: a new network namespace with lo up, bind-mounted onto path (the mount namespace is
 * the host's, so the mount is visible everywhere). The child exits at once; the mount keeps the
 * namespace alive. */
int rc_launcher_netns_create(const char *path, rc_error *err)
{
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    int status = 0;
    pid_t pid;

    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "create %s", path);
    close(fd);
    pid = fork();
    if (pid < 0) {
        unlink(path);
        return rc_error_sys(err, RC_EIO, "fork");
    }
    if (pid == 0) {
        if (unshare(CLONE_NEWNET) < 0)
            _exit(1);
        if (loopback_up() < 0)
            _exit(2);
        if (mount("/proc/self/ns/net", path, "none", MS_BIND, NULL) < 0)
            _exit(3);
        _exit(0);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        unlink(path);
        return rc_error_set(err, RC_EIO, "network namespace %s: %s failed", path,
                            !WIFEXITED(status)         ? "the helper"
                            : WEXITSTATUS(status) == 1 ? "unshare(CLONE_NEWNET)"
                            : WEXITSTATUS(status) == 2 ? "bringing lo up"
                                                       : "the bind mount");
    }
    return 0;
}

int rc_launcher_netns_remove(const char *path, rc_error *err)
{
    if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
        return rc_error_sys(err, RC_EIO, "umount %s", path);
    if (unlink(path) < 0 && errno != ENOENT)
        return rc_error_sys(err, RC_EIO, "unlink %s", path);
    return 0;
}

/* ---- force-stop ---------------------------------------------------------------------------- */

/* A client for the item's own calls, with the session token. */
static int item_api_new(const rc_launcher_config *c, const char *token, rc_api **ret, rc_error *err)
{
    rc_api_config ac = {.http = {.base_url = c->base_url,
                                 .ca_file = c->ca_file,
                                 .user_agent = "runcell-launcher",
                                 .timeout_ms = 10000,
                                 .max_attempts = 3},
                        .credential = token};
    if (!token || !*token)
        return rc_error_set(err, RC_EAUTH, "no session token for the work item");
    return rc_api_new(&ac, ret, err);
}

int rc_launcher_lease_check(const rc_launcher_config *c, const char *env_id, const char *work_id,
                            const char *token, const char *expected, long *ret_status,
                            rc_error *err)
{
    rc_api_result res = RC_API_RESULT_INIT;
    rc_api *api = NULL;
    int r;

    if ((r = item_api_new(c, token, &api, err)) < 0)
        return r;
    r = rc_api_work_heartbeat(api, env_id, work_id, expected, 0, 0, &res, err);
    long status = res.status;
    rc_api_result_free(&res);
    rc_api_free(api);
    if (status > 0 && ret_status)
        *ret_status = status;
    if (r == 0)
        return RC_LAUNCHER_LEASE_OURS;
    switch (status) {
    case 404: /* the item is gone */
    case 409:
    case 410:
    case 412: /* 5.4.3: the lease belongs to someone else now, or to the queue */
        return RC_LAUNCHER_LEASE_LOST;
    case 401: /* a token dies with its item */
    case 403:
        return RC_LAUNCHER_LEASE_REFUSED;
    default:
        return r;
    }
}

int rc_launcher_force_stop(const rc_launcher_config *c, const char *env_id, const char *work_id,
                           const char *token, rc_error *err)
{
    rc_api_result res = RC_API_RESULT_INIT;
    rc_api *api = NULL;
    int r;

    if (!token || !*token)
        return rc_error_set(err, RC_EAUTH, "no session token to stop the item with");
    if ((r = item_api_new(c, token, &api, err)) < 0)
        return r;
    r = rc_api_work_stop(api, env_id, work_id, true, &res, err);
    if (r < 0 && res.status == 409) /* already stopped: success (5.5.4) */
        r = 0;
    else if (r < 0 && res.status == 401) /* a token dies with its item: stopped already */
        r = rc_error_set(err, RC_EAUTH,
                         "the session token was refused (the item is most likely "
                         "stopped already)");
    rc_api_result_free(&res);
    rc_api_free(api);
    return r;
}

/* ---- cleanup ------------------------------------------------------------------------------- */

static void note(int *first, rc_error *err, int r, const rc_error *step)
{
    if (r >= 0)
        return;
    rc_log_warn("cleanup: %s", step->msg);
    if (*first == 0) {
        *first = r;
        if (err)
            *err = *step;
    }
}

static int container_delete(const rc_launcher_config *c, const char *sid, rc_error *err)
{
    _cleanup_(rc_runc_container_freep) rc_runc_container *ct = NULL;
    char root[RC_LAUNCHER_PATH_MAX], bundle[RC_LAUNCHER_PATH_MAX];
    int status = RC_RUNC_ABSENT, r;
    pid_t pid = 0;

    if ((r = rc_bundle_runc_root(c->state_dir, root, sizeof root, err)) < 0)
        return r;
    snprintf(bundle, sizeof bundle, "%s/bundles/%s", c->state_dir, sid);
    rc_runc_opts ro = {.runc_path = c->runc_path, .root = root, .echo_fd = -1};
    if ((r = rc_runc_container_new(&ro, sid, bundle, &ct, err)) < 0)
        return r;
    if ((r = rc_runc_state(ct, &status, &pid, err)) < 0)
        return r;
    if (status == RC_RUNC_ABSENT)
        return 0;
    if (status == RC_RUNC_RUNNING || status == RC_RUNC_PAUSED || status == RC_RUNC_CREATED)
        (void)rc_runc_kill(ct, SIGKILL, true, NULL);
    return rc_runc_delete(ct, err);
}

static void unlink_quiet(const char *path)
{
    if (unlink(path) < 0 && errno != ENOENT)
        rc_log_warn("cleanup: unlink %s: %s", path, strerror(errno));
}

static void rmdir_quiet(const char *path)
{
    if (rmdir(path) < 0 && errno != ENOENT)
        rc_log_warn("cleanup: rmdir %s: %s", path, strerror(errno));
}

void rc_launcher_keep_output(const rc_launcher_config *c, const char *sid)
{
    char from[RC_LAUNCHER_PATH_MAX], to[RC_LAUNCHER_PATH_MAX];
    if (rc_launcher_path(c, sid, RC_LP_SECRET_DIR, to, sizeof to, NULL) < 0)
        return;
    size_t n = strlen(to);
    if ((size_t)snprintf(from, sizeof from, "%s/bundles/%s/%s", c->state_dir, sid,
                         RC_RUNC_OUTPUT_LOG) >= sizeof from ||
        (size_t)snprintf(to + n, sizeof to - n, "/%s", RC_RUNC_OUTPUT_LOG) >= sizeof to - n)
        return;
    if (rename(from, to) < 0 && errno != ENOENT)
        rc_log_warn("keeping the container output: %s", strerror(errno));
}

int rc_launcher_session_cleanup(const rc_launcher_config *c, const char *sid, bool purge,
                                bool keep_lock, rc_error *err)
{
    char p[RC_LAUNCHER_PATH_MAX];
    rc_error step = {0};
    int first = 0, r;

    if ((r = rc_launcher_path(c, sid, RC_LP_NETNS, p, sizeof p, err)) < 0)
        return r;
    note(&first, err, container_delete(c, sid, &step), &step);
    note(&first, err, rc_bundle_remove_id(c->state_dir, sid, purge, &step), &step);
    note(&first, err, rc_launcher_netns_remove(p, &step), &step);
    rc_launcher_path(c, sid, RC_LP_SKILLS, p, sizeof p, NULL);
    note(&first, err, rc_skills_remove(p, &step), &step);
    rc_launcher_path(c, sid, RC_LP_TLS, p, sizeof p, NULL);
    note(&first, err, rc_tlstrust_remove(p, &step), &step);
    rc_launcher_path(c, sid, RC_LP_API_SOCKET, p, sizeof p, NULL);
    unlink_quiet(p);
    rc_launcher_path(c, sid, RC_LP_API_DIR, p, sizeof p, NULL);
    rmdir_quiet(p);
    rc_launcher_path(c, sid, RC_LP_STATE, p, sizeof p, NULL);
    unlink_quiet(p);
    rc_launcher_path(c, sid, RC_LP_WORK, p, sizeof p, NULL);
    unlink_quiet(p);
    rc_launcher_path(c, sid, RC_LP_HEARTBEAT, p, sizeof p, NULL);
    unlink_quiet(p);
    char tmp[RC_LAUNCHER_PATH_MAX + 8]; /* the API channel's half-written record, if any */
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    unlink_quiet(tmp);
    if (keep_lock)
        return first;
    /* The lock file goes last, while its holder (the caller) still holds it. */
    rc_launcher_path(c, sid, RC_LP_LOCK, p, sizeof p, NULL);
    unlink_quiet(p);
    rc_launcher_path(c, sid, RC_LP_RUN_SESSION, p, sizeof p, NULL);
    rmdir_quiet(p);
    return first;
}

/* ---- listing ------------------------------------------------------------------------------- */

typedef char sid_t_[RC_LAUNCHER_SESSION_ID_MAX + 1];

static int add_id(sid_t_ **ids, size_t *n, size_t *cap, const char *id, rc_error *err)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*ids)[i], id) == 0)
            return 0;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        sid_t_ *p = reallocarray(*ids, nc, sizeof **ids);
        if (!p)
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        *ids = p;
        *cap = nc;
    }
    snprintf((*ids)[(*n)++], sizeof **ids, "%s", id);
    return 0;
}

/* Entries of dir that are valid session ids; with need_file, only those holding that file. */
static int scan_dir(const char *dir, const char *need_file, sid_t_ **ids, size_t *n, size_t *cap,
                    rc_error *err)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int r = 0;
    if (!d)
        return errno == ENOENT ? 0 : rc_error_sys(err, RC_EIO, "opendir %s", dir);
    while (r == 0 && (de = readdir(d))) {
        char p[RC_LAUNCHER_PATH_MAX];
        if (de->d_name[0] == '.' || !rc_oci_session_id_valid(de->d_name) ||
            strlen(de->d_name) > RC_LAUNCHER_SESSION_ID_MAX)
            continue;
        if (need_file) {
            snprintf(p, sizeof p, "%s/%s/%s", dir, de->d_name, need_file);
            if (access(p, F_OK) < 0)
                continue;
        }
        r = add_id(ids, n, cap, de->d_name, err);
    }
    closedir(d);
    return r;
}

int rc_launcher_session_ids(const rc_launcher_config *c,
                            char (**ret)[RC_LAUNCHER_SESSION_ID_MAX + 1], size_t *ret_n,
                            rc_error *err)
{
    sid_t_ *ids = NULL;
    size_t n = 0, cap = 0;
    char p[RC_LAUNCHER_PATH_MAX];
    int r;

    snprintf(p, sizeof p, "%s/sessions", c->run_dir);
    if ((r = scan_dir(p, NULL, &ids, &n, &cap, err)) < 0)
        goto fail;
    snprintf(p, sizeof p, "%s/sessions", c->state_dir);
    if ((r = scan_dir(p, "work", &ids, &n, &cap, err)) < 0)
        goto fail;
    snprintf(p, sizeof p, "%s/bundles", c->state_dir);
    if ((r = scan_dir(p, NULL, &ids, &n, &cap, err)) < 0)
        goto fail;
    snprintf(p, sizeof p, "%s/runc", c->state_dir); /* runc state of a container, if any */
    if ((r = scan_dir(p, NULL, &ids, &n, &cap, err)) < 0)
        goto fail;
    snprintf(p, sizeof p, "%s/tls", c->state_dir); /* a session CA's files, if any */
    if ((r = scan_dir(p, NULL, &ids, &n, &cap, err)) < 0)
        goto fail;
    *ret = ids;
    *ret_n = n;
    return (int)n;
fail:
    free(ids);
    return r;
}
