/* fixture_http.c - the scripted HTTP/1.1 test server (see fixture_http.h).
 *
 * One acceptor thread polls the listening sockets and a stop eventfd and starts one thread per
 * connection. A connection thread reads a request with bounded buffers (64 KiB of headers, 8 MiB
 * of Content-Length body, no chunked uploads), records it, takes the next script entry and
 * answers. Every wait (delay, chunk pause, hold) also watches the stop eventfd, so stopping the
 * server never waits out a scripted pause. All symbols are static or prefixed fixture_http_. */
#include "fixture_http.h"

#include "buf.h"
#include "cleanup.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HEADER_CAP (64 * 1024)
#define BODY_CAP   (8 * 1024 * 1024)
#define MAX_CONNS  256

struct conn {
    pthread_t thread;
    int fd;
    fixture_http *fx;
    bool used;
};

struct fixture_http {
    int tcp_fd, unix_fd, stop_fd;
    int port;
    char url[64];
    char unix_path[108];
    pthread_t acceptor;
    atomic_bool stopping;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    fixture_http_response *script;
    size_t script_len, script_next;
    fixture_http_request **reqs;
    size_t nreqs;
    struct conn conns[MAX_CONNS];
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleep up to ms; false when the server is stopping. */
static bool fx_sleep(fixture_http *fx, int ms)
{
    int64_t end = mono_ms() + ms;
    while (!atomic_load(&fx->stopping)) {
        int64_t left = end - mono_ms();
        struct pollfd p = {.fd = fx->stop_fd, .events = POLLIN};
        if (left <= 0)
            return true;
        poll(&p, 1, (int)left);
    }
    return false;
}

static bool send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

/* ---- script ----------------------------------------------------------------------------- */

static char *dup_or_null(const char *s, size_t n)
{
    char *d;
    if (!s)
        return NULL;
    d = malloc(n + 1);
    if (!d)
        abort();
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void response_free(fixture_http_response *r)
{
    free((char *)r->headers);
    free((char *)r->body);
    if (r->chunks) {
        for (const char *const *c = r->chunks; *c; c++)
            free((char *)*c);
        free((void *)r->chunks);
    }
}

/* Deep copy: every answering thread owns its copy, so the test may push or reset meanwhile. */
static void response_clone(const fixture_http_response *r, fixture_http_response *copy)
{
    size_t blen = r->body ? (r->body_len ? r->body_len : strlen(r->body)) : 0;

    *copy = *r;
    copy->headers = r->headers ? dup_or_null(r->headers, strlen(r->headers)) : NULL;
    copy->body = dup_or_null(r->body, blen);
    copy->body_len = blen;
    if (r->chunks) {
        size_t n = 0;
        const char **c;
        while (r->chunks[n])
            n++;
        c = calloc(n + 1, sizeof *c);
        if (!c)
            abort();
        for (size_t i = 0; i < n; i++)
            c[i] = dup_or_null(r->chunks[i], strlen(r->chunks[i]));
        copy->chunks = c;
    }
}

void fixture_http_push(fixture_http *fx, const fixture_http_response *r)
{
    fixture_http_response copy;
    response_clone(r, &copy);
    pthread_mutex_lock(&fx->lock);
    fx->script = realloc(fx->script, (fx->script_len + 1) * sizeof *fx->script);
    if (!fx->script)
        abort();
    fx->script[fx->script_len++] = copy;
    pthread_mutex_unlock(&fx->lock);
}

void fixture_http_push_simple(fixture_http *fx, int status, const char *headers, const char *body)
{
    fixture_http_response r = {.status = status, .headers = headers, .body = body};
    fixture_http_push(fx, &r);
}

static void request_free(fixture_http_request *q)
{
    if (!q)
        return;
    free(q->headers);
    free(q->body);
    free(q);
}

void fixture_http_reset(fixture_http *fx)
{
    pthread_mutex_lock(&fx->lock);
    for (size_t i = 0; i < fx->script_len; i++)
        response_free(&fx->script[i]);
    free(fx->script);
    fx->script = NULL;
    fx->script_len = fx->script_next = 0;
    for (size_t i = 0; i < fx->nreqs; i++)
        request_free(fx->reqs[i]);
    free(fx->reqs);
    fx->reqs = NULL;
    fx->nreqs = 0;
    pthread_mutex_unlock(&fx->lock);
}

/* Record q and copy the next script entry into ret (false when the script is exhausted). */
static bool record_and_next(fixture_http *fx, fixture_http_request *q, fixture_http_response *ret)
{
    bool have = false;
    pthread_mutex_lock(&fx->lock);
    fx->reqs = realloc(fx->reqs, (fx->nreqs + 1) * sizeof *fx->reqs);
    if (!fx->reqs)
        abort();
    fx->reqs[fx->nreqs++] = q;
    if (fx->script_next < fx->script_len) {
        response_clone(&fx->script[fx->script_next++], ret);
        have = true;
    }
    pthread_cond_broadcast(&fx->cond);
    pthread_mutex_unlock(&fx->lock);
    return have;
}

size_t fixture_http_count(fixture_http *fx)
{
    size_t n;
    pthread_mutex_lock(&fx->lock);
    n = fx->nreqs;
    pthread_mutex_unlock(&fx->lock);
    return n;
}

const fixture_http_request *fixture_http_get(fixture_http *fx, size_t i)
{
    const fixture_http_request *q = NULL;
    pthread_mutex_lock(&fx->lock);
    if (i < fx->nreqs)
        q = fx->reqs[i];
    pthread_mutex_unlock(&fx->lock);
    return q;
}

bool fixture_http_wait(fixture_http *fx, size_t n, int timeout_ms)
{
    struct timespec ts;
    bool ok;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&fx->lock);
    while (fx->nreqs < n)
        if (pthread_cond_timedwait(&fx->cond, &fx->lock, &ts) != 0)
            break;
    ok = fx->nreqs >= n;
    pthread_mutex_unlock(&fx->lock);
    return ok;
}

/* ---- header lookup ------------------------------------------------------------------------ */

static const char *next_header(const char *p, const char *name, const char **ret_val,
                               size_t *ret_len)
{
    size_t nlen = strlen(name);
    while (p && *p) {
        const char *eol = strstr(p, "\r\n");
        size_t llen = eol ? (size_t)(eol - p) : strlen(p);
        if (llen > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            size_t vlen = llen - nlen - 1;
            while (vlen > 0 && (*v == ' ' || *v == '\t')) {
                v++;
                vlen--;
            }
            *ret_val = v;
            *ret_len = vlen;
            return eol ? eol + 2 : p + llen;
        }
        p = eol ? eol + 2 : NULL;
    }
    return NULL;
}

const char *fixture_http_header(const fixture_http_request *req, const char *name, char *buf,
                                size_t bufsz)
{
    const char *v;
    size_t vlen;
    if (!req || !next_header(req->headers, name, &v, &vlen))
        return NULL;
    snprintf(buf, bufsz, "%.*s", (int)vlen, v);
    return buf;
}

int fixture_http_header_count(const fixture_http_request *req, const char *name)
{
    const char *p = req ? req->headers : NULL, *v;
    size_t vlen;
    int n = 0;
    while ((p = next_header(p, name, &v, &vlen)) != NULL)
        n++;
    return n;
}

/* ---- request reading ---------------------------------------------------------------------- */

/* Read more bytes into in; false on EOF, error, cap or stop. */
static bool read_more(fixture_http *fx, int fd, rc_buf *in)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = fx->stop_fd, .events = POLLIN}};
        ssize_t n;
        if (atomic_load(&fx->stopping))
            return false;
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            return false;
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        if (rc_buf_reserve(in, 4096, NULL) < 0)
            return false;
        n = recv(fd, in->data + in->len, 4096, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        in->len += (size_t)n;
        in->data[in->len] = '\0';
        return true;
    }
}

static bool parse_request_line(const char *line, size_t len, fixture_http_request *q)
{
    const char *sp1 = memchr(line, ' ', len), *sp2;
    if (!sp1)
        return false;
    sp2 = memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line));
    if (!sp2 || (size_t)(sp1 - line) >= sizeof q->method ||
        (size_t)(sp2 - sp1 - 1) >= sizeof q->target)
        return false;
    memcpy(q->method, line, (size_t)(sp1 - line));
    memcpy(q->target, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    return true;
}

static bool parse_content_length(const fixture_http_request *q, size_t *ret)
{
    char v[32];
    char *end;
    unsigned long long n;
    if (fixture_http_header(q, "transfer-encoding", v, sizeof v))
        return false; /* chunked uploads are not needed by the tests */
    if (!fixture_http_header(q, "content-length", v, sizeof v)) {
        *ret = 0;
        return true;
    }
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno || end == v || *end || n > BODY_CAP)
        return false;
    *ret = (size_t)n;
    return true;
}

/* Read one request from in (refilled from fd); consumed bytes are dropped from in. */
static fixture_http_request *read_request(fixture_http *fx, int fd, rc_buf *in)
{
    char *hdr_end, *eol;
    size_t hlen, blen;
    fixture_http_request *q;

    while (!(hdr_end = strstr(rc_buf_cstr(in), "\r\n\r\n")))
        if (in->len > HEADER_CAP || !read_more(fx, fd, in))
            return NULL;
    hlen = (size_t)(hdr_end - in->data) + 4;
    q = calloc(1, sizeof *q);
    if (!q)
        abort();
    eol = strstr(in->data, "\r\n");
    if (!parse_request_line(in->data, (size_t)(eol - in->data), q)) {
        request_free(q);
        return NULL;
    }
    q->headers = dup_or_null(eol + 2, (size_t)(hdr_end + 2 - (eol + 2)));
    if (!parse_content_length(q, &blen)) {
        request_free(q);
        return NULL;
    }
    while (in->len < hlen + blen)
        if (!read_more(fx, fd, in)) {
            request_free(q);
            return NULL;
        }
    q->body = dup_or_null(in->data + hlen, blen);
    q->body_len = blen;
    q->received_ms = mono_ms();
    rc_buf_consume(in, hlen + blen);
    return q;
}

/* ---- answering ---------------------------------------------------------------------------- */

static bool send_head(int fd, const fixture_http_response *r, int status)
{
    _cleanup_(rc_buf_free) rc_buf h = RC_BUF_INIT(HEADER_CAP);
    bool ok = rc_buf_appendf(&h, NULL, "HTTP/1.1 %d Fixture\r\n", status) == 0 &&
              rc_buf_append_str(&h, r->headers ? r->headers : "", NULL) == 0;
    if (r->chunks)
        ok = ok && rc_buf_append_str(&h, "Transfer-Encoding: chunked\r\n", NULL) == 0;
    else if (r->no_content_length)
        ok = ok && rc_buf_append_str(&h, "Connection: close\r\n", NULL) == 0;
    else if (status != 204 && status != 304)
        ok = ok && rc_buf_appendf(&h, NULL, "Content-Length: %zu\r\n", r->body_len) == 0;
    ok = ok && rc_buf_append_str(&h, "\r\n", NULL) == 0;
    return ok && send_all(fd, h.data, h.len);
}

static bool send_chunks(fixture_http *fx, int fd, const fixture_http_response *r)
{
    for (const char *const *c = r->chunks; *c; c++) {
        char size[32];
        int n;
        if (r->chunk_pause_ms > 0 && !fx_sleep(fx, r->chunk_pause_ms))
            return false;
        n = snprintf(size, sizeof size, "%zx\r\n", strlen(*c));
        if (!send_all(fd, size, (size_t)n) || !send_all(fd, *c, strlen(*c)) ||
            !send_all(fd, "\r\n", 2))
            return false;
    }
    if (r->hold_ms > 0) {
        fx_sleep(fx, r->hold_ms);
        return false; /* close without the final chunk */
    }
    return send_all(fd, "0\r\n\r\n", 5);
}

/* Answer one request; false when the connection must be closed afterwards. */
static bool answer(fixture_http *fx, int fd, const fixture_http_response *r)
{
    static const fixture_http_response exhausted = {
        .status = 500,
        .headers = "Content-Type: text/plain\r\nx-should-retry: false\r\n",
        .body = "fixture: script exhausted",
        .body_len = 25,
    };
    int status;

    if (!r)
        r = &exhausted;
    status = r->status ? r->status : 200;
    if (r->delay_ms > 0 && !fx_sleep(fx, r->delay_ms))
        return false;
    if (r->close_without_answer)
        return false;
    if (!send_head(fd, r, status))
        return false;
    if (r->chunks)
        return send_chunks(fx, fd, r);
    if (r->body_len && !send_all(fd, r->body, r->body_len))
        return false;
    return !r->no_content_length;
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    _cleanup_(rc_buf_free) rc_buf in = RC_BUF_INIT(HEADER_CAP + BODY_CAP);

    for (;;) {
        fixture_http_request *q = read_request(c->fx, c->fd, &in);
        fixture_http_response r;
        bool have, keep;
        if (!q)
            break;
        have = record_and_next(c->fx, q, &r);
        keep = answer(c->fx, c->fd, have ? &r : NULL);
        if (have)
            response_free(&r);
        if (!keep)
            break;
    }
    shutdown(c->fd, SHUT_RDWR);
    return NULL;
}

/* ---- listening ---------------------------------------------------------------------------- */

static void start_conn(fixture_http *fx, int fd)
{
    pthread_mutex_lock(&fx->lock);
    for (int i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &fx->conns[i];
        if (c->used)
            continue;
        c->used = true;
        c->fd = fd;
        c->fx = fx;
        if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
            c->used = false;
            close(fd);
        }
        pthread_mutex_unlock(&fx->lock);
        return;
    }
    pthread_mutex_unlock(&fx->lock);
    close(fd); /* too many connections for one test */
}

static void *acceptor_main(void *arg)
{
    fixture_http *fx = arg;
    while (!atomic_load(&fx->stopping)) {
        struct pollfd p[3] = {{.fd = fx->stop_fd, .events = POLLIN},
                              {.fd = fx->tcp_fd, .events = POLLIN},
                              {.fd = fx->unix_fd, .events = POLLIN}};
        if (poll(p, fx->unix_fd >= 0 ? 3 : 2, -1) < 0)
            continue;
        for (int i = 1; i < 3; i++) {
            int fd;
            if (!(p[i].revents & POLLIN))
                continue;
            fd = accept4(p[i].fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0)
                continue;
            if (i == 1) /* head and body go out in separate writes: no Nagle delay */
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
            start_conn(fx, fd);
        }
    }
    return NULL;
}

static int listen_tcp(int *ret_port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        close(fd);
        return -1;
    }
    *ret_port = ntohs(a.sin_port);
    return fd;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd;
    if (strlen(path) >= sizeof a.sun_path)
        return -1;
    memcpy(a.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

fixture_http *fixture_http_start(const char *unix_path)
{
    fixture_http *fx = calloc(1, sizeof *fx);
    if (!fx)
        return NULL;
    pthread_mutex_init(&fx->lock, NULL);
    pthread_cond_init(&fx->cond, NULL);
    atomic_init(&fx->stopping, false);
    fx->unix_fd = -1;
    fx->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    fx->tcp_fd = listen_tcp(&fx->port);
    if (unix_path) {
        snprintf(fx->unix_path, sizeof fx->unix_path, "%s", unix_path);
        fx->unix_fd = listen_unix(unix_path);
    }
    if (fx->stop_fd < 0 || fx->tcp_fd < 0 || (unix_path && fx->unix_fd < 0) ||
        pthread_create(&fx->acceptor, NULL, acceptor_main, fx) != 0) {
        fprintf(stderr, "fixture_http: cannot listen: %s\n", strerror(errno));
        if (fx->stop_fd >= 0)
            close(fx->stop_fd);
        if (fx->tcp_fd >= 0)
            close(fx->tcp_fd);
        if (fx->unix_fd >= 0)
            close(fx->unix_fd);
        free(fx);
        return NULL;
    }
    snprintf(fx->url, sizeof fx->url, "http://127.0.0.1:%d", fx->port);
    return fx;
}

void fixture_http_stop(fixture_http *fx)
{
    uint64_t one = 1;
    if (!fx)
        return;
    atomic_store(&fx->stopping, true);
    if (write(fx->stop_fd, &one, sizeof one) < 0) {
    }
    pthread_join(fx->acceptor, NULL);
    for (int i = 0; i < MAX_CONNS; i++) {
        if (!fx->conns[i].used)
            continue;
        shutdown(fx->conns[i].fd, SHUT_RDWR);
        pthread_join(fx->conns[i].thread, NULL);
        close(fx->conns[i].fd);
    }
    close(fx->tcp_fd);
    if (fx->unix_fd >= 0) {
        close(fx->unix_fd);
        unlink(fx->unix_path);
    }
    close(fx->stop_fd);
    fixture_http_reset(fx);
    pthread_cond_destroy(&fx->cond);
    pthread_mutex_destroy(&fx->lock);
    free(fx);
}

int fixture_http_port(const fixture_http *fx)
{
    return fx->port;
}

const char *fixture_http_url(const fixture_http *fx)
{
    return fx->url;
}
