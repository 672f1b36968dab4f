/* sdlisten.c - the socket passed by systemd socket activation (see sdlisten.h). */
#include "sdlisten.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* LISTEN_PID is this process and LISTEN_FDS a count; -1 when activation does not apply. */
static long activated_fd_count(rc_error *err)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    char *end = NULL;
    long p, n;

    if (!pid || !fds)
        return -1;
    errno = 0;
    p = strtol(pid, &end, 10);
    if (errno || end == pid || *end || p != (long)getpid())
        return -1;
    errno = 0;
    n = strtol(fds, &end, 10);
    if (errno || end == fds || *end || n < 0)
        return rc_error_set(err, RC_EINVAL, "socket activation: LISTEN_FDS is not a count");
    return n;
}

static int check_listening(int fd, int want_type, rc_error *err)
{
    int type = 0, listening = 0, fdfl;
    socklen_t n = sizeof type, m = sizeof listening;

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &n) < 0)
        return rc_error_sys(err, RC_EINVAL, "socket activation: fd %d is not a socket", fd);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &m) < 0 || type != want_type ||
        !listening)
        return rc_error_set(err, RC_EINVAL, "socket activation: fd %d is not a listening %s socket",
                            fd, want_type == SOCK_SEQPACKET ? "seqpacket" : "stream");
    fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
        return rc_error_sys(err, RC_EIO, "socket activation: fcntl");
    return 0;
}

int rc_sd_listen_fd(int sock_type, int *ret_fd, rc_error *err)
{
    long n = activated_fd_count(err);
    int r;

    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (n < -1)
        return (int)n;
    if (n == -1 || n == 0)
        return 0;
    if (n != 1)
        return rc_error_set(err, RC_EINVAL,
                            "socket activation passed %ld sockets; exactly one is taken", n);
    if ((r = check_listening(RC_SD_LISTEN_FD, sock_type, err)) < 0)
        return r;
    *ret_fd = RC_SD_LISTEN_FD;
    return 1;
}
