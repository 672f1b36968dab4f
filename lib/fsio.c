/* fsio.c - whole-buffer writes and symlink-free directory walks (see fsio.h). */
#include "fsio.h"

#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int rc_fd_write_all(int fd, const void *p, size_t n, const char *what, rc_error *err)
{
    const char *c = p;

    while (n > 0) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return what ? rc_error_sys(err, RC_EIO, "write %s", what)
                        : rc_error_sys(err, RC_EIO, "write");
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

int rc_fs_open_parent(int root_fd, char *path, mode_t mode, const char **ret_leaf, rc_error *err)
{
    _cleanup_close_ int cur = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
    char *comp = path, *slash;

    if (cur < 0)
        return rc_error_sys(err, RC_EIO, "dup");
    while ((slash = strchr(comp, '/'))) {
        int next = -1;
        *slash = '\0';
        if (mkdirat(cur, comp, mode) == 0 || errno == EEXIST)
            next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        *slash = '/';
        if (next < 0)
            return rc_error_sys(err, RC_EIO, "cannot create the directories of %s", path);
        close(cur);
        cur = next;
        comp = slash + 1;
    }
    *ret_leaf = comp;
    return take_fd(cur);
}
