/* resolve.c - the egress proxy's resolver (see resolve.h).
 *
 * Jobs move through three lists under one mutex: queued -> (a worker runs getaddrinfo without
 * the lock) -> done. The event loop owns every job's cookie: cancelling clears it wherever the
 * job is, and rc_resolver_next frees cancelled jobs silently. Workers never touch a cookie. */
#include "resolve.h"

#include "cleanup.h"
#include "policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RESOLVE_THREADS_MAX 8u

typedef struct job {
    struct job *next;
    void *cookie; /* NULL: cancelled */
    char name[RC_POLICY_HOST_MAX + 1];
    uint16_t port;
    rc_resolve_result res;
} job;

typedef struct host_entry {
    char *name;
    rc_resolve_result addrs; /* ports filled per lookup */
} host_entry;

struct rc_resolver {
    host_entry *hosts; /* hosts-file mode when non-NULL */
    size_t n_hosts;
    int efd;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job *queued, *running, *done; /* running: singly linked, for cancel */
    size_t pending;
    bool stopping;
    pthread_t threads[RESOLVE_THREADS_MAX];
    unsigned n_threads;
};

/* ---- hosts file ---- */

static host_entry *host_find(rc_resolver *r, const char *name)
{
    for (size_t i = 0; i < r->n_hosts; i++)
        if (strcmp(r->hosts[i].name, name) == 0)
            return &r->hosts[i];
    return NULL;
}

static int parse_addr(const char *s, struct sockaddr_storage *ss)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, s, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        return 0;
    }
    return -1;
}

static int hosts_add(rc_resolver *r, const char *name, const struct sockaddr_storage *ss,
                     unsigned line, rc_error *err)
{
    host_entry *h = host_find(r, name);
    if (!h) {
        if (r->n_hosts == RC_RESOLVE_HOSTS_MAX)
            return rc_error_set(err, RC_ETOOBIG, "hosts file: more than %u names",
                                RC_RESOLVE_HOSTS_MAX);
        h = &r->hosts[r->n_hosts];
        h->name = strdup(name);
        if (!h->name)
            return rc_error_set(err, RC_ENOMEM, "hosts file: out of memory");
        r->n_hosts++;
    }
    if (h->addrs.n == RC_RESOLVE_ADDRS_MAX)
        return rc_error_set(err, RC_ETOOBIG, "hosts file line %u: more than %u addresses", line,
                            RC_RESOLVE_ADDRS_MAX);
    h->addrs.addr[h->addrs.n++] = *ss;
    return 0;
}

static int hosts_line(rc_resolver *r, char *s, unsigned line, rc_error *err)
{
    struct sockaddr_storage ss;
    char *save = NULL, *tok;
    int r2;

    s[strcspn(s, "#\r\n")] = '\0';
    tok = strtok_r(s, " \t", &save);
    if (!tok)
        return 0;
    if (parse_addr(tok, &ss) < 0)
        return rc_error_set(err, RC_EINVAL, "hosts file line %u: not a numeric address", line);
    tok = strtok_r(NULL, " \t", &save);
    if (!tok)
        return rc_error_set(err, RC_EINVAL, "hosts file line %u: no name", line);
    for (; tok; tok = strtok_r(NULL, " \t", &save)) {
        for (char *p = tok; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (!rc_policy_hostname_valid(tok))
            return rc_error_set(err, RC_EINVAL, "hosts file line %u: bad host name", line);
        r2 = hosts_add(r, tok, &ss, line, err);
        if (r2 < 0)
            return r2;
    }
    return 0;
}

static int hosts_load(rc_resolver *r, const char *path, rc_error *err)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    char buf[512];
    unsigned line = 0;

    if (!f)
        return rc_error_sys(err, RC_EIO, "hosts file: cannot open %s", path);
    r->hosts = calloc(RC_RESOLVE_HOSTS_MAX, sizeof *r->hosts);
    if (!r->hosts)
        return rc_error_set(err, RC_ENOMEM, "hosts file: out of memory");
    while (fgets(buf, sizeof buf, f)) {
        int rc;
        line++;
        if (line > RC_RESOLVE_HOSTS_MAX)
            return rc_error_set(err, RC_ETOOBIG, "hosts file: more than %u lines",
                                RC_RESOLVE_HOSTS_MAX);
        if (!strchr(buf, '\n') && !feof(f))
            return rc_error_set(err, RC_ETOOBIG, "hosts file line %u: too long", line);
        rc = hosts_line(r, buf, line, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void set_port(rc_resolve_result *res, uint16_t port)
{
    for (size_t i = 0; i < res->n; i++) {
        if (res->addr[i].ss_family == AF_INET)
            ((struct sockaddr_in *)&res->addr[i])->sin_port = htons(port);
        else
            ((struct sockaddr_in6 *)&res->addr[i])->sin6_port = htons(port);
    }
}

/* ---- DNS workers ---- */

static void lookup(job *j)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(j->name, NULL, &hints, &ai);

    j->res = (rc_resolve_result){0};
    if (rc != 0) {
        j->res.code = (rc == EAI_NONAME || rc == EAI_NODATA) ? RC_ENOTFOUND : RC_EIO;
        return;
    }
    for (struct addrinfo *p = ai; p && j->res.n < RC_RESOLVE_ADDRS_MAX; p = p->ai_next) {
        if ((p->ai_family != AF_INET && p->ai_family != AF_INET6) ||
            p->ai_addrlen > sizeof j->res.addr[0])
            continue;
        memcpy(&j->res.addr[j->res.n++], p->ai_addr, p->ai_addrlen);
    }
    freeaddrinfo(ai);
    if (j->res.n == 0)
        j->res.code = RC_ENOTFOUND;
    set_port(&j->res, j->port);
}

static void list_remove(job **head, job *j)
{
    for (job **pp = head; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            return;
        }
    }
}

static void *worker(void *arg)
{
    rc_resolver *r = arg;
    uint64_t one = 1;

    pthread_mutex_lock(&r->lock);
    for (;;) {
        job *j;
        while (!r->queued && !r->stopping)
            pthread_cond_wait(&r->cond, &r->lock);
        if (r->stopping)
            break;
        j = r->queued;
        r->queued = j->next;
        j->next = r->running;
        r->running = j;
        pthread_mutex_unlock(&r->lock);
        lookup(j);
        pthread_mutex_lock(&r->lock);
        list_remove(&r->running, j);
        j->next = r->done;
        r->done = j;
        if (write(r->efd, &one, sizeof one) < 0) {
            /* the counter cannot overflow in practice; the loop also polls on its timer */
        }
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* ---- API ---- */

int rc_resolver_new(const char *hosts_file, unsigned threads, rc_resolver **ret, rc_error *err)
{
    rc_resolver *r = calloc(1, sizeof *r);
    int rc;

    if (!r)
        return rc_error_set(err, RC_ENOMEM, "resolver: out of memory");
    r->efd = -1;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    if (hosts_file) {
        rc = hosts_load(r, hosts_file, err);
        if (rc < 0) {
            rc_resolver_free(r);
            return rc;
        }
        *ret = r;
        return 0;
    }
    r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->efd < 0) {
        rc = rc_error_sys(err, RC_EIO, "resolver: eventfd failed");
        rc_resolver_free(r);
        return rc;
    }
    if (threads == 0)
        threads = 2;
    if (threads > RESOLVE_THREADS_MAX)
        threads = RESOLVE_THREADS_MAX;
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&r->threads[i], NULL, worker, r) != 0) {
            rc = rc_error_set(err, RC_EIO, "resolver: cannot start a worker thread");
            rc_resolver_free(r);
            return rc;
        }
        r->n_threads++;
    }
    *ret = r;
    return 0;
}

static void free_jobs(job *j)
{
    while (j) {
        job *next = j->next;
        free(j);
        j = next;
    }
}

/* Waits for running lookups to return (getaddrinfo cannot be interrupted). */
void rc_resolver_free(rc_resolver *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    for (unsigned i = 0; i < r->n_threads; i++)
        pthread_join(r->threads[i], NULL);
    free_jobs(r->queued);
    free_jobs(r->running);
    free_jobs(r->done);
    for (size_t i = 0; i < r->n_hosts; i++)
        free(r->hosts[i].name);
    free(r->hosts);
    if (r->efd >= 0)
        close(r->efd);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}

int rc_resolver_fd(const rc_resolver *r)
{
    return r->efd;
}

int rc_resolver_start(rc_resolver *r, const char *name, uint16_t port, void *cookie,
                      rc_resolve_result *ret, rc_error *err)
{
    job *j;

    if (r->hosts) {
        host_entry *h = host_find(r, name);
        *ret = (rc_resolve_result){0};
        if (h)
            *ret = h->addrs;
        else
            ret->code = RC_ENOTFOUND;
        set_port(ret, port);
        return 1;
    }
    if (r->pending >= RC_RESOLVE_PENDING_MAX)
        return rc_error_set(err, RC_ETOOBIG, "resolver: too many pending lookups");
    j = calloc(1, sizeof *j);
    if (!j)
        return rc_error_set(err, RC_ENOMEM, "resolver: out of memory");
    snprintf(j->name, sizeof j->name, "%s", name);
    j->port = port;
    j->cookie = cookie;
    pthread_mutex_lock(&r->lock);
    j->next = r->queued;
    r->queued = j;
    r->pending++;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

int rc_resolver_next(rc_resolver *r, void **ret_cookie, rc_resolve_result *ret)
{
    uint64_t count;
    job *j;

    if (!r->hosts && read(r->efd, &count, sizeof count) < 0) {
        /* EAGAIN: nothing new signalled; results may still be waiting from an earlier call */
    }
    for (;;) {
        pthread_mutex_lock(&r->lock);
        j = r->done;
        if (j) {
            r->done = j->next;
            r->pending--;
        }
        pthread_mutex_unlock(&r->lock);
        if (!j)
            return 0;
        if (j->cookie) {
            *ret_cookie = j->cookie;
            *ret = j->res;
            free(j);
            return 1;
        }
        free(j);
    }
}

static void cancel_in(job *j, void *cookie)
{
    for (; j; j = j->next)
        if (j->cookie == cookie)
            j->cookie = NULL;
}

void rc_resolver_cancel(rc_resolver *r, void *cookie)
{
    if (r->hosts)
        return;
    pthread_mutex_lock(&r->lock);
    cancel_in(r->queued, cookie);
    cancel_in(r->running, cookie);
    cancel_in(r->done, cookie);
    pthread_mutex_unlock(&r->lock);
}
