/* bundle.c - per-session bundle directories, workspaces and their retention (see bundle.h).
 *
 * Creation is ordered so a failure never leaves a half-made bundle: the bundle directory is
 * claimed with mkdir (EEXIST = someone else's bundle), everything after that is undone by
 * remove_bundle_dir() on failure. Removal is idempotent and unmounts before deleting, so a tree
 * walk can never descend into a mounted snapshot. Trees are deleted with rc_tar_remove_tree()
 * (no symlink is ever followed: the workspace's contents were written by the container).
 *
 * A workspace with a size cap is an ext4 image (fs.img, sparse) made by mkfs.ext4 on first use
 * and loop-mounted on its data/ for the life of the bundle. The loop device is attached with
 * LO_FLAGS_AUTOCLEAR and our descriptor closed once mounted, so the kernel frees it with the
 * last unmount: rc_bundle_remove_id() (every removal and cleanup path of the launcher goes
 * through it) unmounts the workspace first, and nothing else has to track loop devices. */
#include "bundle.h"

#include "buf.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "tar.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CONFIG_NAME      "config.json"
#define SNAPSHOT_NAME    "snapshot"
#define ENDED_NAME       "ended"
#define IMAGE_NAME       "fs.img"
#define IMAGE_NEW_NAME   "fs.img.new" /* being made: renamed to IMAGE_NAME when complete */
#define MKFS_ERR_MAX     512
#define LOOP_TRIES       16
#define LOOP_BUSY        1 /* loop_attach: the device was taken meanwhile, try another */
#define CONFIG_MAX       (4u << 20)
#define OVERLAY_OPTS_MAX 12288

struct rc_bundle {
    char *state_dir;
    char *session_id;
    char *dir;       /* <state>/bundles/<session> */
    char *workspace; /* <state>/workspaces/<session>/data */
    char *rootfs;
    char digest[RC_SNAPSHOT_DIGEST_SIZE];
    int hold_fd;
};

/* ---- paths ----------------------------------------------------------------------------------- */

static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *pathf(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

static const char *state_or_default(const char *state_dir)
{
    return state_dir ? state_dir : RC_BUNDLE_DEFAULT_STATE_DIR;
}

static int state_dir_check(const char *state_dir, rc_error *err)
{
    if (state_dir[0] != '/' || strlen(state_dir) > 1024)
        return rc_error_set(err, RC_EINVAL, "state dir must be an absolute path");
    /* It ends up in overlay mount options and runc's argv. */
    if (strpbrk(state_dir, ",:\\\n"))
        return rc_error_set(err, RC_EINVAL, "state dir may not contain ',', ':' or '\\'");
    return 0;
}

static int path_into(const char *state_dir, const char *sub, char *buf, size_t bufsz, rc_error *err)
{
    const char *s = state_or_default(state_dir);
    int r = state_dir_check(s, err);
    if (r < 0)
        return r;
    int n = snprintf(buf, bufsz, "%s/%s", s, sub);
    if (n < 0 || (size_t)n >= bufsz)
        return rc_error_set(err, RC_ETOOBIG, "path too long");
    return 0;
}

int rc_bundle_runc_root(const char *state_dir, char *buf, size_t bufsz, rc_error *err)
{
    return path_into(state_dir, "runc", buf, bufsz, err);
}

int rc_bundle_snapshot_dir(const char *state_dir, char *buf, size_t bufsz, rc_error *err)
{
    return path_into(state_dir, "snapshots", buf, bufsz, err);
}

const char *rc_bundle_dir(const rc_bundle *b)
{
    return b->dir;
}

const char *rc_bundle_session_id(const rc_bundle *b)
{
    return b->session_id;
}

const char *rc_bundle_workspace_dir(const rc_bundle *b)
{
    return b->workspace;
}

const char *rc_bundle_rootfs(const rc_bundle *b)
{
    return b->rootfs;
}

const char *rc_bundle_snapshot_digest(const rc_bundle *b)
{
    return b->digest;
}

void rc_bundle_free(rc_bundle *b)
{
    if (!b)
        return;
    free(b->state_dir);
    free(b->session_id);
    free(b->dir);
    free(b->workspace);
    free(b->rootfs);
    if (b->hold_fd >= 0)
        close(b->hold_fd);
    free(b);
}

/* ---- directories ----------------------------------------------------------------------------- */

/* A directory at dirfd/name with exactly this mode and owner (uid -1: leave), never a symlink. */
static int ensure_dir_at(int dirfd, const char *name, mode_t mode, uid_t uid, gid_t gid,
                         rc_error *err)
{
    struct stat st;
    if (mkdirat(dirfd, name, mode) < 0 && errno != EEXIST)
        return rc_error_sys(err, RC_EIO, "mkdir %s", name);
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
        return rc_error_sys(err, RC_EIO, "%s is not a directory", name);
    if (uid != (uid_t)-1 && (st.st_uid != uid || st.st_gid != gid) && fchown(fd, uid, gid) < 0)
        return rc_error_sys(err, RC_EIO, "chown %s", name);
    if ((st.st_mode & 07777) != mode && fchmod(fd, mode) < 0)
        return rc_error_sys(err, RC_EIO, "chmod %s", name);
    return 0;
}

/* The state dir itself: created 0711, or given search permission for others if it exists. */
static int ensure_state_dir(const char *state_dir, int *ret_fd, rc_error *err)
{
    struct stat st;
    if (mkdir(state_dir, 0711) < 0 && errno != EEXIST)
        return rc_error_sys(err, RC_EIO, "create state dir %s", state_dir);
    _cleanup_close_ int fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
        return rc_error_sys(err, RC_EIO, "open state dir %s", state_dir);
    if ((st.st_mode & 0011) != 0011 && fchmod(fd, (st.st_mode & 07777) | 0011) < 0)
        return rc_error_sys(err, RC_EIO, "chmod state dir %s", state_dir);
    *ret_fd = take_fd(fd);
    return 0;
}

static int open_sub(const char *state_dir, const char *sub, bool create, int *ret_fd, rc_error *err)
{
    _cleanup_close_ int sfd = -1;
    int r;
    if (create) {
        if ((r = ensure_state_dir(state_dir, &sfd, err)) < 0 ||
            (r = ensure_dir_at(sfd, sub, 0711, 0, 0, err)) < 0)
            return r;
    } else {
        sfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (sfd < 0)
            return rc_error_sys(err, errno == ENOENT ? RC_ENOTFOUND : RC_EIO, "open %s", state_dir);
    }
    int fd = openat(sfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return rc_error_sys(err, errno == ENOENT ? RC_ENOTFOUND : RC_EIO, "open %s/%s", state_dir,
                            sub);
    *ret_fd = fd;
    return 0;
}

static int write_file_at(int dirfd, const char *name, const char *text, rc_error *err)
{
    _cleanup_close_ int fd =
        openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    size_t n = strlen(text);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "create %s", name);
    if (write(fd, text, n) != (ssize_t)n)
        return rc_error_sys(err, RC_EIO, "write %s", name);
    return 0;
}

static int read_file_at(int dirfd, const char *name, rc_buf *out, rc_error *err)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    char chunk[8192];
    if (fd < 0)
        return rc_error_sys(err, errno == ENOENT ? RC_ENOTFOUND : RC_EIO, "open %s", name);
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return rc_error_sys(err, RC_EIO, "read %s", name);
        if (n == 0)
            return 0;
        int r = rc_buf_append(out, chunk, (size_t)n, err);
        if (r < 0)
            return r;
    }
}

int rc_bundle_state_init(const char *state_dir, rc_error *err)
{
    _cleanup_close_ int sfd = -1;
    int r;
    state_dir = state_or_default(state_dir);
    if ((r = state_dir_check(state_dir, err)) < 0 ||
        (r = ensure_state_dir(state_dir, &sfd, err)) < 0 ||
        (r = ensure_dir_at(sfd, "bundles", 0711, 0, 0, err)) < 0 ||
        (r = ensure_dir_at(sfd, "workspaces", 0711, 0, 0, err)) < 0 ||
        (r = ensure_dir_at(sfd, "runc", 0700, 0, 0, err)) < 0)
        return r;
    return 0;
}

/* ---- the snapshot ---------------------------------------------------------------------------- */

/* Whether the rootfs has the directory abs (an absolute path inside it), not through a symlink. */
static bool rootfs_has_dir(const char *rootfs, const char *abs)
{
    _cleanup_close_ int root = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    return root >= 0 && fstatat(root, abs + 1, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
           S_ISDIR(st.st_mode);
}

/* Every mount point of the config must already be a directory in a shared read-only root. */
static int mount_points_check(const char *lower, const rc_oci_config *cfg, rc_error *err)
{
    _cleanup_close_ int root = open(lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (root < 0)
        return rc_error_sys(err, RC_EIO, "open snapshot rootfs");
    for (size_t i = 0; rc_oci_mount_points[i]; i++) {
        const char *p = rc_oci_mount_points[i];
        if (fstatat(root, p + 1, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
            return rc_error_set(err, RC_EINVAL,
                                "snapshot has no directory %s (a mount point runc would have "
                                "to create in the shared snapshot)",
                                p);
    }
    if (fstatat(root, cfg->workdir + 1, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "snapshot has no directory %s (the workdir)",
                            cfg->workdir);
    return 0;
}

static int snapshot_resolve(rc_snapshot_store *store, const char *digest, rc_bundle *b,
                            rc_error *err)
{
    char path[PATH_MAX];
    int r;
    if (!store || !digest)
        return rc_error_set(err, RC_EINVAL, "a snapshot store and digest are required");
    if ((r = rc_snapshot_digest_parse(digest, b->digest, err)) < 0 ||
        (r = rc_snapshot_rootfs_path(store, b->digest, path, sizeof path, err)) < 0 ||
        (r = rc_snapshot_hold(store, b->digest, &b->hold_fd, err)) < 0)
        return r;
    if (path[0] != '/' || strpbrk(path, ",:\\\n"))
        return rc_error_set(err, RC_EINVAL, "snapshot path must be absolute, without ',' ':' '\\'");
    if (!(b->rootfs = strdup(path)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    return 0;
}

/* ---- idmapped root ---------------------------------------------------------------------------
 *
 * The snapshot keeps the archive's owners (root is 0 on disk), which the container's user
 * namespace does not map: unmodified, every file would show as the overflow id "nobody". An
 * idmapped bind mount of the snapshot (mount_setattr MOUNT_ATTR_IDMAP, kernel 5.12+, ext4, xfs,
 * btrfs, tmpfs...) shows on-disk id N as host id map_host + N, which the container maps back to
 * N: root-owned files are the container root's, without copying or chowning the shared tree. */

/* A user namespace whose only mapping is 0 -> host, size; held by a child that exits as soon as
 * we have its fd. */
static int userns_open(const rc_oci_config *cfg, int *ret_fd, rc_error *err)
{
    int hold[2];
    char path[64], map[64];
    if (pipe2(hold, O_CLOEXEC) < 0)
        return rc_error_sys(err, RC_EIO, "pipe2");
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) { /* only raw system calls from here */
        char b;
        close(hold[1]);
        while (read(hold[0], &b, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    close(hold[0]);
    if (pid < 0) {
        close(hold[1]);
        return rc_error_sys(err, RC_EIO, "clone(CLONE_NEWUSER)");
    }
    int r = 0, fd = -1;
    const char *names[2] = {"uid_map", "gid_map"};
    uint32_t hosts[2] = {cfg->map_host_uid, cfg->map_host_gid};
    for (int i = 0; i < 2 && r == 0; i++) {
        snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, names[i]);
        snprintf(map, sizeof map, "0 %u %u\n", hosts[i], cfg->map_size);
        _cleanup_close_ int mfd = open(path, O_WRONLY | O_CLOEXEC);
        if (mfd < 0 || write(mfd, map, strlen(map)) != (ssize_t)strlen(map))
            r = rc_error_sys(err, RC_EIO, "write %s of the idmap namespace", names[i]);
    }
    if (r == 0) {
        snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            r = rc_error_sys(err, RC_EIO, "open the idmap namespace");
    }
    close(hold[1]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (r < 0)
        return r;
    *ret_fd = fd;
    return 0;
}

/* Bind src on target (an empty dir) through the namespace's mapping; nosuid, nodev, ro. */
static int idmapped_bind(const char *src, const char *target, int userns_fd, rc_error *err)
{
    _cleanup_close_ int tree = (int)open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0)
        return rc_error_sys(err, RC_EIO, "open_tree of the snapshot");
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        .userns_fd = (uint64_t)userns_fd,
    };
    if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
        return rc_error_sys(err, RC_EIO, "idmap the snapshot mount");
    if (move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return rc_error_sys(err, RC_EIO, "attach the idmapped snapshot");
    return 0;
}

/* Mount the snapshot idmapped at <bundle>/<name>; the bundle's root (or overlay lower) becomes
 * that path. With RC_BUNDLE_IDMAP_AUTO a kernel or filesystem without idmapped mounts leaves the
 * snapshot path as it is (files show as nobody) and says so. */
static int idmap_setup(rc_bundle *b, int bfd, const char *name, int mode, const rc_oci_config *cfg,
                       rc_error *err)
{
    _cleanup_close_ int nsfd = -1;
    _cleanup_free_ char *target = pathf("%s/%s", b->dir, name);
    int r;
    if (mode == RC_BUNDLE_IDMAP_OFF)
        return 0;
    if (!target)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if ((r = ensure_dir_at(bfd, name, 0755, 0, 0, err)) < 0)
        return r;
    rc_error e = {0};
    r = userns_open(cfg, &nsfd, &e);
    if (r == 0)
        r = idmapped_bind(b->rootfs, target, nsfd, &e);
    if (r < 0) {
        (void)unlinkat(bfd, name, AT_REMOVEDIR);
        if (mode == RC_BUNDLE_IDMAP_ON)
            return rc_error_set(err, e.code ? e.code : RC_EIO, "%s", e.msg);
        rc_log_warn("bundle %s: no idmapped snapshot mount (%s); snapshot files show as "
                    "nobody in the container",
                    b->session_id, e.msg);
        return 0;
    }
    free(b->rootfs);
    b->rootfs = take_ptr(target);
    return 0;
}

/* ---- overlay --------------------------------------------------------------------------------- */

/* The snapshot store strips write bits from every directory, so an overlay over it alone makes
 * only "/" writable. Before the mount, agent_dirs_prepare() pre-creates directories in upper
 * (their parents with the snapshot's owner and mode): an upper directory without the opaque
 * xattr merges with the lower one, so the snapshot's files stay visible, and its owner and mode
 * are what the container sees.
 *   - shared trees (/usr/local, /opt, /var/tmp): every directory the container root's, mode
 *     01777, like /tmp: the agent creates files and directories anywhere in them but cannot
 *     remove or replace what the snapshot put there (the sticky bit), e.g. the runner's own
 *     binary /usr/local/bin/runcell-runner;
 *   - the agent's home (from the snapshot's /etc/passwd): every directory the agent's. */
static const char *const shared_trees[] = {"usr/local", "opt", "var/tmp", NULL};
#define AGENT_DIRS_MAX  4096u /* directories copied up per session (a huge /opt: warn, stop) */
#define AGENT_DEPTH_MAX 32u
#define PASSWD_MAX      (1u << 20)

typedef struct {
    uid_t agent_uid, root_uid;
    gid_t agent_gid, root_gid;
    unsigned dirs;
    bool shared; /* the tree being copied: shared (01777, root) or the agent's own */
} agent_dirs;

static mode_t tree_mode(const agent_dirs *a, mode_t lower_mode)
{
    return a->shared ? 01777 : (lower_mode & 0755) | 0700;
}

/* Open rel (no "..", no symlink anywhere) beneath rootfd. */
static int open_beneath(int rootfd, const char *rel, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                      RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    return (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
}

/* upfd/name as a directory with this owner and mode; a non-directory there is an error. */
static int upper_dir(int upfd, const char *name, mode_t mode, uid_t uid, gid_t gid, int *ret_fd,
                     rc_error *err)
{
    int r = ensure_dir_at(upfd, name, mode, uid, gid, err);
    if (r < 0)
        return r;
    int fd = openat(upfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "open upper dir %s", name);
    *ret_fd = fd;
    return 0;
}

/* Copy the directory structure of lowfd (-1: nothing below) into upfd, as tree_mode() says. */
static int agent_tree_copy(agent_dirs *a, int lowfd, int upfd, unsigned depth, rc_error *err)
{
    if (lowfd < 0)
        return 0;
    if (depth >= AGENT_DEPTH_MAX)
        return 0;
    int dupfd = fcntl(lowfd, F_DUPFD_CLOEXEC, 0);
    if (dupfd < 0)
        return rc_error_sys(err, RC_EIO, "dup");
    DIR *d = fdopendir(dupfd);
    if (!d) {
        close(dupfd);
        return rc_error_sys(err, RC_EIO, "opendir");
    }
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        struct stat st;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (fstatat(lowfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
            continue;
        if (++a->dirs > AGENT_DIRS_MAX) {
            if (a->dirs == AGENT_DIRS_MAX + 1)
                rc_log_warn("writable root: more than %u directories under the agent's trees; "
                            "the rest stay read-only",
                            AGENT_DIRS_MAX);
            break;
        }
        _cleanup_close_ int cl =
            openat(lowfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_close_ int cu = -1;
        if ((r = upper_dir(upfd, de->d_name, tree_mode(a, st.st_mode),
                           a->shared ? a->root_uid : a->agent_uid,
                           a->shared ? a->root_gid : a->agent_gid, &cu, err)) == 0)
            r = agent_tree_copy(a, cl, cu, depth + 1, err);
    }
    closedir(d);
    return r;
}

/* Pre-create /rel in upper: parents as in the snapshot (or the container root's 0755 where the
 * snapshot has none), the last component and every directory below it as tree_mode() says. A
 * path that the snapshot has as a symlink or a file is left alone. */
static int agent_tree(agent_dirs *a, int lowroot, int uproot, const char *rel, rc_error *err)
{
    _cleanup_close_ int lowfd = fcntl(lowroot, F_DUPFD_CLOEXEC, 0),
                        upfd = fcntl(uproot, F_DUPFD_CLOEXEC, 0);
    char comp[NAME_MAX + 1];
    if (lowfd < 0 || upfd < 0)
        return rc_error_sys(err, RC_EIO, "dup");
    for (const char *p = rel; *p;) {
        size_t n = strcspn(p, "/");
        bool last = p[n] == '\0';
        if (n == 0 || n > NAME_MAX)
            return rc_error_set(err, RC_EINVAL, "bad writable-root path %s", rel);
        memcpy(comp, p, n);
        comp[n] = '\0';
        if (!strcmp(comp, ".") || !strcmp(comp, ".."))
            return rc_error_set(err, RC_EINVAL, "bad writable-root path %s", rel);
        struct stat st;
        bool in_lower = lowfd >= 0 && fstatat(lowfd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (in_lower && !S_ISDIR(st.st_mode))
            return 0; /* a symlink (e.g. /opt -> /usr/opt) or a file: not ours to shadow */
        mode_t mode;
        uid_t uid = a->root_uid;
        gid_t gid = a->root_gid;
        if (!last) {
            mode = in_lower ? st.st_mode & 07777 : 0755;
            if (in_lower)
                uid = st.st_uid, gid = st.st_gid;
        } else {
            mode = tree_mode(a, in_lower ? st.st_mode : 0755);
            if (!a->shared)
                uid = a->agent_uid, gid = a->agent_gid;
        }
        int nl =
            in_lower ? openat(lowfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
        int nu = -1, r = upper_dir(upfd, comp, mode, uid, gid, &nu, err);
        if (r < 0) {
            if (nl >= 0)
                close(nl);
            return r;
        }
        if (lowfd >= 0)
            close(lowfd);
        close(upfd);
        lowfd = nl;
        upfd = nu;
        p += n + (last ? 0 : 1);
        if (last)
            return agent_tree_copy(a, lowfd, upfd, 0, err);
    }
    return 0;
}

/* The agent's home directory from the snapshot's /etc/passwd, relative ("home/agent"); empty
 * when there is none, or it is "/", a mount point or below one, or not a plain absolute path. */
static bool home_usable(const char *home, const char *workdir)
{
    size_t n = strlen(home);
    if (home[0] != '/' || n < 2 || n > 255 || strstr(home, "//") || strstr(home, "/./") ||
        strstr(home, "/../") || (n >= 2 && !strcmp(home + n - 2, "/.")) ||
        (n >= 3 && !strcmp(home + n - 3, "/..")) || home[n - 1] == '/')
        return false;
    for (size_t i = 0; rc_oci_mount_points[i]; i++) {
        size_t m = strlen(rc_oci_mount_points[i]);
        if (!strncmp(home, rc_oci_mount_points[i], m) && (home[m] == '\0' || home[m] == '/'))
            return false;
    }
    size_t w = strlen(workdir);
    return !(!strncmp(home, workdir, w) && (home[w] == '\0' || home[w] == '/'));
}

static int agent_home(int lowroot, const rc_oci_config *cfg, char *buf, size_t bufsz, rc_error *err)
{
    _cleanup_close_ int fd = open_beneath(lowroot, "etc/passwd", O_RDONLY | O_NOFOLLOW);
    _cleanup_(rc_buf_free) rc_buf text = RC_BUF_INIT(PASSWD_MAX);
    char chunk[4096];
    buf[0] = '\0';
    if (fd < 0)
        return 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (rc_buf_append(&text, chunk, (size_t)n, NULL) < 0)
            return 0; /* too big to be a passwd file: no home */
    }
    if (rc_buf_putc(&text, '\0', err) < 0)
        return -RC_ENOMEM;
    for (char *line = text.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *f[7] = {0};
        size_t nf = 0;
        for (char *p = line; nf < 7; nf++) {
            f[nf] = p;
            char *c = strchr(p, ':');
            if (!c) {
                nf++;
                break;
            }
            *c = '\0';
            p = c + 1;
        }
        if (nf < 6)
            continue;
        char *end = NULL;
        errno = 0;
        unsigned long uid = strtoul(f[2], &end, 10);
        if (errno || end == f[2] || *end || uid != cfg->agent_uid)
            continue;
        if (home_usable(f[5], cfg->workdir) && strlen(f[5]) < bufsz)
            snprintf(buf, bufsz, "%s", f[5] + 1);
        return 0;
    }
    return 0;
}

/* Make the writable root useful to the agent: see shared_trees above. */
static int agent_dirs_prepare(const char *lower, int upperfd, const rc_oci_config *cfg,
                              rc_error *err)
{
    _cleanup_close_ int lowroot = open(lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char home[256];
    agent_dirs a = {
        .agent_uid = cfg->map_host_uid + cfg->agent_uid,
        .agent_gid = cfg->map_host_gid + cfg->agent_gid,
        .root_uid = cfg->map_host_uid + cfg->runner_uid,
        .root_gid = cfg->map_host_gid + cfg->runner_gid,
    };
    int r;
    if (lowroot < 0)
        return rc_error_sys(err, RC_EIO, "open snapshot rootfs");
    a.shared = true;
    for (size_t i = 0; shared_trees[i]; i++)
        if ((r = agent_tree(&a, lowroot, upperfd, shared_trees[i], err)) < 0)
            return r;
    a.shared = false;
    if ((r = agent_home(lowroot, cfg, home, sizeof home, err)) < 0)
        return r;
    return home[0] ? agent_tree(&a, lowroot, upperfd, home, err) : 0;
}

static int overlay_setup(rc_bundle *b, int bfd, const rc_oci_config *cfg, rc_error *err)
{
    struct stat lst;
    int r;
    if (stat(b->rootfs, &lst) < 0)
        return rc_error_sys(err, RC_EIO, "stat snapshot rootfs");
    uid_t root_uid = cfg->map_host_uid + cfg->runner_uid;
    gid_t root_gid = cfg->map_host_gid + cfg->runner_gid;
    _cleanup_close_ int ofd = -1;
    if ((r = ensure_dir_at(bfd, "overlay", 0711, 0, 0, err)) < 0)
        return r;
    ofd = openat(bfd, "overlay", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (ofd < 0)
        return rc_error_sys(err, RC_EIO, "open overlay dir");
    /* upper's root gives the merged root its owner and mode: the container's root, lower's mode
     * plus the owner's write bit (the store strips write bits from the snapshot's directories;
     * below "/" the snapshot's own modes and owners still decide who may write where). */
    mode_t upper_mode = (lst.st_mode & 0755) | 0200;
    if ((r = ensure_dir_at(ofd, "upper", upper_mode, root_uid, root_gid, err)) < 0 ||
        (r = ensure_dir_at(ofd, "work", 0700, 0, 0, err)) < 0 ||
        (r = ensure_dir_at(ofd, "merged", 0755, 0, 0, err)) < 0)
        return r;
    _cleanup_close_ int upfd =
        openat(ofd, "upper", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (upfd < 0)
        return rc_error_sys(err, RC_EIO, "open overlay upper dir");
    if ((r = agent_dirs_prepare(b->rootfs, upfd, cfg, err)) < 0)
        return r;
    _cleanup_free_ char *opts = pathf(
        "lowerdir=%s,upperdir=%s/overlay/upper,workdir=%s/overlay/work", b->rootfs, b->dir, b->dir);
    _cleanup_free_ char *merged = pathf("%s/overlay/merged", b->dir);
    if (!opts || !merged)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if (strlen(opts) > OVERLAY_OPTS_MAX)
        return rc_error_set(err, RC_ETOOBIG, "overlay paths too long");
    if (mount("overlay", merged, "overlay", MS_NOSUID | MS_NODEV, opts) < 0)
        return rc_error_sys(err, RC_EIO, "mount overlay root");
    free(b->rootfs);
    b->rootfs = take_ptr(merged);
    return 0;
}

/* Unmount <bundle>/<rel> while it is a mount point; a busy mount is detached. */
static int unmount_one(const char *bundle_dir, const char *rel, rc_error *err)
{
    _cleanup_free_ char *path = pathf("%s/%s", bundle_dir, rel);
    if (!path)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    for (int i = 0; i < 8; i++) { /* stacked mounts, if anyone mounted twice */
        if (umount2(path, UMOUNT_NOFOLLOW) == 0)
            continue;
        if (errno == EINVAL || errno == ENOENT || errno == ENOTDIR)
            return 0;
        if (errno == EBUSY && umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
            continue;
        return rc_error_sys(err, RC_EIO, "unmount %s", path);
    }
    return rc_error_set(err, RC_EIO, "%s still mounted", path);
}

/* Every mount a bundle may hold, top first: nothing below is ever walked while mounted. */
static int unmount_all(const char *bundle_dir, rc_error *err)
{
    static const char *const mounts[] = {"overlay/merged", "lower", "rootfs", NULL};
    int r;
    for (size_t i = 0; mounts[i]; i++)
        if ((r = unmount_one(bundle_dir, mounts[i], err)) < 0)
            return r;
    return 0;
}

/* ---- workspace image ------------------------------------------------------------------------- */

static const char *mkfs_path(void)
{
    static const char *const paths[] = {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", NULL};
    for (size_t i = 0; paths[i]; i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

/* In the child between fork and execve: async-signal-safe calls only. */
static void __attribute__((noreturn))
mkfs_child(const char *path, char *const argv[], int nullfd, int errfd)
{
    static char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
    sigset_t none;
    if (dup2(nullfd, 0) < 0 || dup2(errfd, 1) < 0 || dup2(errfd, 2) < 0)
        _exit(127);
    close_range(3, ~0U, 0);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execve(path, argv, envp);
    _exit(127);
}

/* Read the child's output (bounded, first line kept) until EOF, then reap it. 0 when it exited
 * 0. */
static int mkfs_wait(pid_t pid, int errfd, char *msg, size_t msgsz)
{
    size_t len = 0;
    char chunk[256];
    int status = 0;
    for (;;) {
        ssize_t n = read(errfd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t take = (size_t)n < msgsz - 1 - len ? (size_t)n : msgsz - 1 - len;
        memcpy(msg + len, chunk, take);
        len += take;
    }
    msg[len] = '\0';
    msg[strcspn(msg, "\n")] = '\0';
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* mkfs.ext4 on image: root directory owned by uid:gid, no reserved blocks (the container's
 * root is not host root and could not use them), lazy inode table and journal init (a 10 GiB
 * image is made in tens of milliseconds and costs a few MiB), no discard pass. */
static int run_mkfs(const char *image, uid_t uid, gid_t gid, rc_error *err)
{
    const char *path = mkfs_path();
    char ext[128], msg[MKFS_ERR_MAX];
    int errp[2];
    if (!path)
        return rc_error_set(err, RC_ENOTFOUND,
                            "mkfs.ext4 is not installed (e2fsprogs; needed for the workspace "
                            "size cap, a workspace size of 0 turns the cap off)");
    snprintf(ext, sizeof ext, "root_owner=%u:%u,lazy_itable_init=1,lazy_journal_init=1,nodiscard",
             (unsigned)uid, (unsigned)gid);
    char *const argv[] = {"mkfs.ext4", "-q", "-F", "-m", "0", "-E", ext, (char *)image, NULL};
    _cleanup_close_ int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nullfd < 0)
        return rc_error_sys(err, RC_EIO, "open /dev/null");
    if (pipe2(errp, O_CLOEXEC) < 0)
        return rc_error_sys(err, RC_EIO, "pipe2");
    pid_t pid = fork();
    if (pid == 0)
        mkfs_child(path, argv, nullfd, errp[1]);
    close(errp[1]);
    _cleanup_close_ int errfd = errp[0];
    if (pid < 0)
        return rc_error_sys(err, RC_EIO, "cannot start mkfs.ext4");
    if (mkfs_wait(pid, errfd, msg, sizeof msg) < 0)
        return rc_error_set(err, RC_EIO, "mkfs.ext4 of the workspace image failed: %s",
                            msg[0] ? msg : "no message");
    return 0;
}

/* Size, format and sync the new image (open as fd at path). */
static int image_format(int fd, const char *path, uint64_t size, uid_t uid, gid_t gid,
                        rc_error *err)
{
    struct statvfs vfs;
    int r;
    if (ftruncate(fd, (off_t)size) < 0)
        return rc_error_sys(err, RC_EIO, "size workspace image %s", path);
    if (fstatvfs(fd, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < size)
        rc_log_warn("workspace image %s: a cap of %llu bytes but %llu free under it: the "
                    "filesystem may fill before the cap",
                    path, (unsigned long long)size,
                    (unsigned long long)vfs.f_bavail * vfs.f_frsize);
    if ((r = run_mkfs(path, uid, gid, err)) < 0)
        return r;
    if (fsync(fd) < 0)
        return rc_error_sys(err, RC_EIO, "sync workspace image %s", path);
    return 0;
}

/* Make <workspace>/fs.img, a sparse file of size bytes: formatted under a temporary name and
 * renamed when complete, so a crash never leaves a half-made image behind the real name. */
static int image_create(int sfd, const char *wsdir, uint64_t size, uid_t uid, gid_t gid,
                        rc_error *err)
{
    _cleanup_free_ char *tmp = pathf("%s/%s", wsdir, IMAGE_NEW_NAME);
    int r;
    if (!tmp)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if (unlinkat(sfd, IMAGE_NEW_NAME, 0) < 0 && errno != ENOENT)
        return rc_error_sys(err, RC_EIO, "remove %s", tmp);
    _cleanup_close_ int fd =
        openat(sfd, IMAGE_NEW_NAME, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "create workspace image %s", tmp);
    r = image_format(fd, tmp, size, uid, gid, err);
    if (r == 0 && renameat(sfd, IMAGE_NEW_NAME, sfd, IMAGE_NAME) < 0)
        r = rc_error_sys(err, RC_EIO, "rename workspace image %s", tmp);
    if (r < 0)
        (void)unlinkat(sfd, IMAGE_NEW_NAME, 0);
    return r;
}

/* Bind a loop device to imgfd the pre-5.8 way (two steps); LOOP_BUSY when it was taken. */
static int loop_configure_old(int lfd, int imgfd, const char *dev, rc_error *err)
{
    if (ioctl(lfd, LOOP_SET_FD, imgfd) < 0)
        return errno == EBUSY ? LOOP_BUSY : rc_error_sys(err, RC_EIO, "attach %s", dev);
    struct loop_info64 li = {.lo_flags = LO_FLAGS_AUTOCLEAR};
    if (ioctl(lfd, LOOP_SET_STATUS64, &li) < 0) {
        int r = rc_error_sys(err, RC_EIO, "set autoclear on %s", dev);
        (void)ioctl(lfd, LOOP_CLR_FD, 0);
        return r;
    }
    return 0;
}

/* A free loop device bound to imgfd, freed by the kernel at its last close (autoclear). Another
 * process may take the device LOOP_CTL_GET_FREE named first: then try the next one. */
static int loop_attach(int imgfd, int *ret_fd, char *dev, size_t devsz, rc_error *err)
{
    _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return rc_error_sys(err, RC_EIO,
                            "open /dev/loop-control (loop devices are needed for the workspace "
                            "size cap)");
    for (int i = 0; i < LOOP_TRIES; i++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE), r = 0;
        if (n < 0)
            return rc_error_sys(err, RC_EIO, "no free loop device");
        snprintf(dev, devsz, "/dev/loop%d", n);
        _cleanup_close_ int lfd = open(dev, O_RDWR | O_CLOEXEC);
        if (lfd < 0)
            return rc_error_sys(err, RC_EIO, "open %s", dev);
        struct loop_config lc = {.fd = (uint32_t)imgfd, .info.lo_flags = LO_FLAGS_AUTOCLEAR};
        if (ioctl(lfd, LOOP_CONFIGURE, &lc) < 0)
            r = errno == EBUSY                       ? LOOP_BUSY
                : errno == EINVAL || errno == ENOTTY ? loop_configure_old(lfd, imgfd, dev, err)
                                                     : rc_error_sys(err, RC_EIO, "attach %s", dev);
        if (r == LOOP_BUSY)
            continue;
        if (r < 0)
            return r;
        *ret_fd = take_fd(lfd);
        return 0;
    }
    return rc_error_set(err, RC_EIO, "no free loop device after %d tries", LOOP_TRIES);
}

/* Is sfd/data a directory with something in it (the workspace of a session from before it had
 * a cap: an image mounted over it would hide the agent's files)? */
static bool data_has_files(int sfd)
{
    int fd = openat(sfd, "data", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;
    bool any = false;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    while (!any && (de = readdir(d)))
        any = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return any;
}

/* Loop-mount sfd/fs.img on b->workspace; a fresh image loses mkfs's lost+found (the agent's
 * /workspace starts empty; e2fsck makes one again if it ever needs it). */
static int image_mount(rc_bundle *b, int sfd, bool fresh, rc_error *err)
{
    char dev[64];
    _cleanup_close_ int lfd = -1;
    _cleanup_close_ int imgfd = openat(sfd, IMAGE_NAME, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    int r;
    if (imgfd < 0)
        return rc_error_sys(err, RC_EIO, "open workspace image of %s", b->session_id);
    if ((r = unmount_one(b->workspace, "", err)) < 0) /* a stale mount: never stack */
        return r;
    if ((r = loop_attach(imgfd, &lfd, dev, sizeof dev, err)) < 0)
        return r;
    if (mount(dev, b->workspace, "ext4", MS_NODEV | MS_NOSUID, NULL) < 0)
        return rc_error_sys(err, RC_EIO, "mount workspace image of %s", b->session_id);
    /* lfd closes on return: the mount keeps the device, autoclear frees it at the unmount. */
    if (fresh) {
        _cleanup_close_ int dfd =
            openat(sfd, "data", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd >= 0)
            (void)unlinkat(dfd, "lost+found", AT_REMOVEDIR);
    }
    return 0;
}

/* The workspace's cap: mount its image, made first when size asks for one and there is none. A
 * workspace that is already a non-empty plain directory keeps working without a cap. */
static int workspace_image(rc_bundle *b, int sfd, uint64_t size, const rc_oci_config *cfg,
                           rc_error *err)
{
    struct stat st;
    int r;
    if (fstatat(sfd, IMAGE_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISREG(st.st_mode))
            return rc_error_set(err, RC_EINVAL, "workspace image of %s is not a file",
                                b->session_id);
        return image_mount(b, sfd, false, err);
    }
    if (errno != ENOENT)
        return rc_error_sys(err, RC_EIO, "stat workspace image of %s", b->session_id);
    if (size == 0)
        return 0;
    if (data_has_files(sfd)) {
        rc_log_warn("bundle %s: the workspace holds files from before its size cap; it keeps "
                    "working without one (purge it to get a capped workspace)",
                    b->session_id);
        return 0;
    }
    if (size < RC_BUNDLE_MIN_WORKSPACE_SIZE || size > (uint64_t)INT64_MAX)
        return rc_error_set(err, RC_EINVAL, "workspace size must be 0 or at least %llu bytes",
                            (unsigned long long)RC_BUNDLE_MIN_WORKSPACE_SIZE);
    _cleanup_free_ char *wsdir = pathf("%s/workspaces/%s", b->state_dir, b->session_id);
    if (!wsdir)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if ((r = image_create(sfd, wsdir, size, cfg->map_host_uid + cfg->agent_uid,
                          cfg->map_host_gid + cfg->agent_gid, err)) < 0)
        return r;
    return image_mount(b, sfd, true, err);
}

/* Unmount <state>/workspaces/<session>/data when it is a mount (its loop device goes with the
 * last unmount). Before that, a best-effort FITRIM punches the blocks of deleted files out of
 * the sparse image, so they go back to the host. Idempotent. */
static int workspace_unmount(const char *state_dir, const char *session_id, rc_error *err)
{
    _cleanup_free_ char *ws = pathf("%s/workspaces/%s", state_dir, session_id);
    struct stat top, data;
    if (!ws)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    _cleanup_close_ int sfd = open(ws, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0)
        return 0;
    _cleanup_close_ int dfd = openat(sfd, "data", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 || fstat(sfd, &top) < 0 || fstat(dfd, &data) < 0 || top.st_dev == data.st_dev)
        return 0;
    struct fstrim_range range = {.start = 0, .len = UINT64_MAX, .minlen = 0};
    (void)ioctl(dfd, FITRIM, &range);
    close(dfd);
    dfd = -1;
    return unmount_one(ws, "data", err);
}

/* ---- workspace ------------------------------------------------------------------------------- */

static int workspace_setup(rc_bundle *b, const rc_oci_config *cfg, uint64_t size, rc_error *err)
{

    _cleanup_close_ int wfd = -1, sfd = -1;
    int r;
    if ((r = open_sub(b->state_dir, "workspaces", true, &wfd, err)) < 0 ||
        (r = ensure_dir_at(wfd, b->session_id, 0711, 0, 0, err)) < 0)
        return r;
    sfd = openat(wfd, b->session_id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0)
        return rc_error_sys(err, RC_EIO, "open workspace of %s", b->session_id);
    /* data/ keeps the owner the agent gave it on a re-claim; it is created for the agent. */
    if (mkdirat(sfd, "data", 0755) == 0) {
        if (fchownat(sfd, "data", cfg->map_host_uid + cfg->agent_uid,
                     cfg->map_host_gid + cfg->agent_gid, AT_SYMLINK_NOFOLLOW) < 0)
            return rc_error_sys(err, RC_EIO, "chown workspace");
    } else if (errno != EEXIST) {
        return rc_error_sys(err, RC_EIO, "create workspace");
    }
    struct stat st;
    if (fstatat(sfd, "data", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "workspace of %s is not a directory", b->session_id);
    if (unlinkat(sfd, ENDED_NAME, 0) < 0 && errno != ENOENT)
        return rc_error_sys(err, RC_EIO, "clear workspace end mark");
    if (!(b->workspace = pathf("%s/workspaces/%s/data", b->state_dir, b->session_id)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    return workspace_image(b, sfd, size, cfg, err);
}

/* ---- create ---------------------------------------------------------------------------------- */

static int bundle_new(const char *state_dir, const char *session_id, rc_bundle **ret, rc_error *err)
{
    int r = state_dir_check(state_dir, err);
    if (r < 0)
        return r;
    if (!rc_oci_session_id_valid(session_id))
        return rc_error_set(err, RC_EINVAL, "session id must be 1..128 of [A-Za-z0-9_-]");
    rc_bundle *b = calloc(1, sizeof *b);
    if (!b)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    b->hold_fd = -1;
    b->state_dir = strdup(state_dir);
    b->session_id = strdup(session_id);
    b->dir = pathf("%s/bundles/%s", state_dir, session_id);
    if (!b->state_dir || !b->session_id || !b->dir) {
        rc_bundle_free(b);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    *ret = b;
    return 0;
}

/* cgroup v1 without swap accounting has no memory.memsw.* files, and runc fails on a swap
 * limit there: such a host gets none (and a warning). v2 hosts are left to runc. */
static bool swap_limit_supported(void)
{
    if (access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK) < 0)
        return true;
    return access("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", F_OK) == 0;
}

static int write_config(rc_bundle *b, int bfd, const rc_oci_config *cfg, rc_error *err)
{
    _cleanup_free_ char *state = pathf("%s/state", b->dir);
    _cleanup_json_ cJSON *spec = NULL;
    if (!state)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    rc_oci_config c = *cfg;
    c.rootfs = b->rootfs;
    c.workspace_host = b->workspace;
    c.state_host = state;
    c.memory_mount = c.writable_root || rootfs_has_dir(b->rootfs, RC_OCI_MEMORY_DIR);
    if (c.swap_limit >= 0 && c.memory_limit > 0 && !swap_limit_supported()) {
        rc_log_warn("bundle %s: no swap accounting on this host (cgroup v1 without memsw): "
                    "no swap limit",
                    b->session_id);
        c.swap_limit = -1;
    }
    int r = rc_oci_spec_build(&c, &spec, err);
    if (r < 0)
        return r;
    return rc_oci_spec_write(spec, bfd, CONFIG_NAME, err);
}

static int bundle_fill(rc_bundle *b, int bfd, const rc_bundle_opts *opts, const rc_oci_config *cfg,
                       rc_error *err)
{
    char digest_line[RC_SNAPSHOT_DIGEST_SIZE + 2];
    int r;
    if ((r = snapshot_resolve(opts->store, opts->snapshot_digest, b, err)) < 0 ||
        (r = idmap_setup(b, bfd, cfg->writable_root ? "lower" : "rootfs", opts->idmap, cfg, err)) <
            0)
        return r;
    if (!cfg->writable_root && (r = mount_points_check(b->rootfs, cfg, err)) < 0)
        return r;
    if ((r = ensure_dir_at(bfd, "state", 0700, cfg->map_host_uid + cfg->runner_uid,
                           cfg->map_host_gid + cfg->runner_gid, err)) < 0 ||
        (r = workspace_setup(b, cfg, opts->workspace_size, err)) < 0)
        return r;
    snprintf(digest_line, sizeof digest_line, "%s\n", b->digest);
    if ((r = write_file_at(bfd, SNAPSHOT_NAME, digest_line, err)) < 0)
        return r;
    if (cfg->writable_root && (r = overlay_setup(b, bfd, cfg, err)) < 0)
        return r;
    return write_config(b, bfd, cfg, err);
}

static void remove_bundle_dir(const char *state_dir, const char *session_id)
{
    rc_error ignored;
    (void)rc_bundle_remove_id(state_dir, session_id, false, &ignored);
}

int rc_bundle_create(const rc_bundle_opts *opts, const rc_oci_config *cfg, rc_bundle **ret,
                     rc_error *err)
{
    _cleanup_(rc_bundle_freep) rc_bundle *b = NULL;
    _cleanup_close_ int bsfd = -1, bfd = -1;
    const char *state_dir = state_or_default(opts ? opts->state_dir : NULL);
    int r;
    if (!opts || !cfg)
        return rc_error_set(err, RC_EINVAL, "bundle options and config are required");
    if ((r = bundle_new(state_dir, cfg->session_id, &b, err)) < 0 ||
        (r = open_sub(state_dir, "bundles", true, &bsfd, err)) < 0)
        return r;
    if (mkdirat(bsfd, b->session_id, 0711) < 0)
        return errno == EEXIST
                   ? rc_error_set(err, RC_EINVAL, "a bundle for %s already exists (rm it first)",
                                  b->session_id)
                   : rc_error_sys(err, RC_EIO, "create bundle dir");
    bfd = openat(bsfd, b->session_id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (bfd < 0)
        r = rc_error_sys(err, RC_EIO, "open bundle dir");
    else if (fchmod(bfd, 0711) < 0) /* umask */
        r = rc_error_sys(err, RC_EIO, "chmod bundle dir");
    else
        r = bundle_fill(b, bfd, opts, cfg, err);
    if (r < 0) {
        remove_bundle_dir(state_dir, b->session_id);
        return r;
    }
    *ret = take_ptr(b);
    return 0;
}

/* ---- open ------------------------------------------------------------------------------------ */

static int read_config(int bfd, cJSON **ret, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf text = RC_BUF_INIT(CONFIG_MAX);
    rc_json_limits lim = {.max_size = CONFIG_MAX, .max_depth = 32};
    int r = read_file_at(bfd, CONFIG_NAME, &text, err);
    if (r < 0)
        return r;
    return rc_json_parse(text.data ? text.data : "", text.len, &lim, ret, err);
}

static int load_existing(rc_bundle *b, int bfd, rc_snapshot_store *store, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf dg = RC_BUF_INIT(256);
    _cleanup_json_ cJSON *spec = NULL;
    const cJSON *root = NULL;
    const char *path = NULL;
    int r;
    if ((r = read_config(bfd, &spec, err)) < 0 ||
        (r = rc_json_get_object(spec, "root", &root, err)) < 0 ||
        (r = rc_json_get_string(root, "path", &path, err)) < 0)
        return rc_error_wrap(err, RC_EPARSE, "bundle config.json");
    if (!(b->rootfs = strdup(path)) ||
        !(b->workspace = pathf("%s/workspaces/%s/data", b->state_dir, b->session_id)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if ((r = read_file_at(bfd, SNAPSHOT_NAME, &dg, err)) < 0)
        return r;
    dg.len = strcspn(rc_buf_cstr(&dg), "\n");
    dg.data[dg.len] = '\0';
    if ((r = rc_snapshot_digest_parse(dg.data, b->digest, err)) < 0)
        return r;
    if (store && (r = rc_snapshot_hold(store, b->digest, &b->hold_fd, err)) < 0)
        return r;
    return 0;
}

int rc_bundle_open(const char *state_dir, rc_snapshot_store *store, const char *session_id,
                   rc_bundle **ret, rc_error *err)
{
    _cleanup_(rc_bundle_freep) rc_bundle *b = NULL;
    _cleanup_close_ int bsfd = -1, bfd = -1;
    state_dir = state_or_default(state_dir);
    int r;
    if ((r = bundle_new(state_dir, session_id, &b, err)) < 0 ||
        (r = open_sub(state_dir, "bundles", false, &bsfd, err)) < 0)
        return r;
    bfd = openat(bsfd, session_id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (bfd < 0)
        return errno == ENOENT ? rc_error_set(err, RC_ENOTFOUND, "no bundle for %s", session_id)
                               : rc_error_sys(err, RC_EIO, "open bundle of %s", session_id);
    if ((r = load_existing(b, bfd, store, err)) < 0)
        return r;
    *ret = take_ptr(b);
    return 0;
}

void rc_bundle_list_free(rc_bundle **list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        rc_bundle_free(list[i]);
    free(list);
}

static int list_add(rc_bundle ***list, size_t *n, size_t *cap, rc_bundle *b, rc_error *err)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        rc_bundle **nl = reallocarray(*list, ncap, sizeof *nl);
        if (!nl) {
            rc_bundle_free(b);
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        }
        *list = nl;
        *cap = ncap;
    }
    (*list)[(*n)++] = b;
    return 0;
}

int rc_bundle_open_all(const char *state_dir, rc_snapshot_store *store, rc_bundle ***ret_list,
                       size_t *ret_n, rc_error *err)
{
    _cleanup_close_ int bsfd = -1;
    rc_bundle **list = NULL;
    size_t n = 0, cap = 0;
    int r;
    state_dir = state_or_default(state_dir);
    if ((r = open_sub(state_dir, "bundles", false, &bsfd, err)) < 0 && r != -RC_ENOTFOUND)
        return r;
    DIR *d = bsfd >= 0 ? fdopendir(bsfd) : NULL;
    if (bsfd >= 0 && !d)
        return rc_error_sys(err, RC_EIO, "read bundles dir");
    bsfd = -1; /* owned by d */
    struct dirent *de;
    r = 0;
    while (d && (de = readdir(d))) {
        rc_bundle *b = NULL;
        if (!rc_oci_session_id_valid(de->d_name) ||
            rc_bundle_open(state_dir, store, de->d_name, &b, NULL) < 0)
            continue;
        if ((r = list_add(&list, &n, &cap, b, err)) < 0)
            break;
    }
    if (d)
        closedir(d);
    if (r < 0) {
        rc_bundle_list_free(list, n);
        return r;
    }
    *ret_list = list;
    *ret_n = n;
    return 0;
}

int rc_bundle_set_args(rc_bundle *b, const char *const *args, rc_error *err)
{
    _cleanup_close_ int bfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    _cleanup_json_ cJSON *spec = NULL;
    int r;
    if (bfd < 0)
        return rc_error_sys(err, RC_EIO, "open bundle of %s", b->session_id);
    if ((r = read_config(bfd, &spec, err)) < 0 || (r = rc_oci_spec_set_args(spec, args, err)) < 0)
        return r;
    return rc_oci_spec_write(spec, bfd, CONFIG_NAME, err);
}

/* ---- remove and retention -------------------------------------------------------------------- */

static int mark_ended(int wfd, const char *session_id, rc_error *err)
{
    char when[32];
    _cleanup_close_ int sfd =
        openat(wfd, session_id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0)
        return errno == ENOENT ? 0 : rc_error_sys(err, RC_EIO, "open workspace");
    snprintf(when, sizeof when, "%lld\n", (long long)time(NULL));
    return write_file_at(sfd, ENDED_NAME, when, err);
}

int rc_bundle_remove_id(const char *state_dir, const char *session_id, bool purge_workspace,
                        rc_error *err)
{
    _cleanup_close_ int bsfd = -1, wfd = -1;
    _cleanup_free_ char *dir = NULL;
    int r;
    state_dir = state_or_default(state_dir);
    if ((r = state_dir_check(state_dir, err)) < 0)
        return r;
    if (!rc_oci_session_id_valid(session_id))
        return rc_error_set(err, RC_EINVAL, "session id must be 1..128 of [A-Za-z0-9_-]");
    if (!(dir = pathf("%s/bundles/%s", state_dir, session_id)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    r = open_sub(state_dir, "bundles", false, &bsfd, err);
    if (r < 0 && r != -RC_ENOTFOUND)
        return r;
    /* The workspace first: a crash after it still leaves the bundle for reconcile to find. */
    if ((r = workspace_unmount(state_dir, session_id, err)) < 0)
        return r;
    if (bsfd >= 0) {
        if ((r = unmount_all(dir, err)) < 0 || (r = rc_tar_remove_tree(bsfd, session_id, err)) < 0)
            return r;
    }
    r = open_sub(state_dir, "workspaces", false, &wfd, err);
    if (r == -RC_ENOTFOUND)
        return 0;
    if (r < 0)
        return r;
    return purge_workspace ? rc_tar_remove_tree(wfd, session_id, err)
                           : mark_ended(wfd, session_id, err);
}

int rc_bundle_remove(rc_bundle *b, bool purge_workspace, rc_error *err)
{
    if (b->hold_fd >= 0) {
        close(b->hold_fd);
        b->hold_fd = -1;
    }
    return rc_bundle_remove_id(b->state_dir, b->session_id, purge_workspace, err);
}

/* 1 removed, 0 kept, negative on error. */
static int prune_one(const char *state_dir, int bsfd, int wfd, const char *name,
                     int64_t retention_s, int64_t now, rc_error *err)
{
    struct stat st;
    char ended[300];
    if (!rc_oci_session_id_valid(name))
        return 0;
    if (fstatat(bsfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 0; /* the session still has a bundle */
    snprintf(ended, sizeof ended, "%s/%s", name, ENDED_NAME);
    if (fstatat(wfd, ended, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno != ENOENT)
            return rc_error_sys(err, RC_EIO, "stat end mark of %s", name);
        int r = mark_ended(wfd, name, err); /* orphan: the clock starts now */
        return r < 0 ? r : 0;
    }
    if (now - (int64_t)st.st_mtime < retention_s)
        return 0;
    int r = workspace_unmount(state_dir, name, err); /* a leak: the bundle is gone */
    if (r == 0)
        r = rc_tar_remove_tree(wfd, name, err);
    return r < 0 ? r : 1;
}

int rc_bundle_prune_workspaces(const char *state_dir, int64_t retention_s, int64_t now,
                               rc_error *err)
{
    _cleanup_close_ int bsfd = -1, wfd = -1;
    int r, removed = 0;
    state_dir = state_or_default(state_dir);
    if ((r = state_dir_check(state_dir, err)) < 0)
        return r;
    if ((r = open_sub(state_dir, "workspaces", false, &wfd, err)) < 0)
        return r == -RC_ENOTFOUND ? 0 : r;
    if ((r = open_sub(state_dir, "bundles", true, &bsfd, err)) < 0)
        return r;
    int dfd = fcntl(wfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return rc_error_sys(err, RC_EIO, "read workspaces dir");
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        r = prune_one(state_dir, bsfd, wfd, de->d_name, retention_s, now, err);
        if (r < 0)
            break;
        removed += r;
    }
    closedir(d);
    return r < 0 ? r : removed;
}
