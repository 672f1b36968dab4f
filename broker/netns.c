/* netns.c - listening sockets bound inside another network namespace (see netns.h).
 *
 * The worker thread is the only code that ever runs inside the target namespace, and it runs
 * nothing but socket(2), setsockopt(2), bind(2), listen(2): the namespace is entered with
 * setns(CLONE_NEWNET), which affects the calling thread only, and the thread exits right after,
 * so no other thread of the broker ever sees the container's network. */
#include "netns.h"

#include "cleanup.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct bind_job {
    int nsfd; /* -1: stay in the current namespace */
    struct sockaddr_storage sa;
    socklen_t salen;
    int backlog;
    int fd;   /* result */
    int code; /* 0 or RC_E* */
    int sys;  /* errno of the failing step */
    const char *step;
} bind_job;

static void *bind_thread(void *arg)
{
    bind_job *j = arg;
    _cleanup_close_ int fd = -1;
    int one = 1;

    if (j->nsfd >= 0 && setns(j->nsfd, CLONE_NEWNET) < 0) {
        j->step = "setns";
        goto fail;
    }
    fd = socket(j->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        j->step = "socket";
        goto fail;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
        j->step = "setsockopt";
        goto fail;
    }
    if (bind(fd, (struct sockaddr *)&j->sa, j->salen) < 0) {
        j->step = "bind";
        goto fail;
    }
    if (listen(fd, j->backlog) < 0) {
        j->step = "listen";
        goto fail;
    }
    j->fd = take_fd(fd);
    return NULL;
fail:
    j->sys = errno;
    j->code = RC_EIO;
    return NULL;
}

static int ns_path(const char *ns, char *out, size_t n, rc_error *err)
{
    if (ns[0] == '/') {
        snprintf(out, n, "%s", ns);
        return 0;
    }
    if (!ns[0] || strcmp(ns, ".") == 0 || strcmp(ns, "..") == 0 || strlen(ns) > 64)
        return rc_error_set(err, RC_EINVAL, "netns: bad namespace name");
    for (const char *p = ns; *p; p++)
        if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return rc_error_set(err, RC_EINVAL, "netns: bad namespace name");
    snprintf(out, n, "/var/run/netns/%s", ns);
    return 0;
}

static int fill_addr(bind_job *j, const char *addr, uint16_t port, rc_error *err)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)&j->sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&j->sa;

    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        j->salen = sizeof *s4;
        return 0;
    }
    if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        j->salen = sizeof *s6;
        return 0;
    }
    return rc_error_set(err, RC_EINVAL, "netns: %s is not a numeric address", addr);
}

static int bound_port(int fd, uint16_t *ret)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    *ret = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                         : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

int rc_netns_listen_tcp(const char *ns, const char *addr, uint16_t port, int backlog, int *ret_fd,
                        uint16_t *ret_port, rc_error *err)
{
    _cleanup_close_ int nsfd = -1, fd = -1;
    bind_job j = {.nsfd = -1, .backlog = backlog, .fd = -1};
    char path[256];
    pthread_t t;
    uint16_t p = 0;
    int r;

    r = fill_addr(&j, addr, port, err);
    if (r < 0)
        return r;
    if (ns) {
        r = ns_path(ns, path, sizeof path, err);
        if (r < 0)
            return r;
        nsfd = open(path, O_RDONLY | O_CLOEXEC);
        if (nsfd < 0)
            return rc_error_sys(err, RC_EIO, "netns: cannot open %s", path);
        j.nsfd = nsfd;
    }
    r = pthread_create(&t, NULL, bind_thread, &j);
    if (r != 0) {
        errno = r;
        return rc_error_sys(err, RC_EIO, "netns: cannot start the bind thread");
    }
    pthread_join(t, NULL);
    if (j.code) {
        errno = j.sys;
        return rc_error_sys(err, j.code, "netns: %s of %s:%u failed", j.step, addr, port);
    }
    fd = j.fd;
    if (bound_port(fd, &p) < 0)
        return rc_error_sys(err, RC_EIO, "netns: getsockname failed");
    if (ret_port)
        *ret_port = p;
    *ret_fd = take_fd(fd);
    return 0;
}
