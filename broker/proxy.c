/* proxy.c - the egress proxy's event loop and connection state machine (see proxy.h).
 *
 * One thread, one epoll set, level-triggered. A connection moves through
 *   HEAD -> (decide) -> RESOLVE -> CONNECT -> [TLS] -> RELAY -> closed
 * or, when refused or answered locally, HEAD -> FLUSH -> DRAIN -> closed. Each state says which
 * events it wants (conn_update_events); every event of a connection runs its state's step
 * function, and RELAY's step ("pump") moves bytes in both directions until nothing moves.
 * Closed connections are only unlinked during an epoll batch and freed after it, so a second
 * event of the same batch never touches freed memory. Every connection that carried a request
 * ends with exactly one audit line. */
#include "proxy.h"

#include "buf.h"
#include "ca.h"
#include "cleanup.h"
#include "forward.h"
#include "httpreq.h"
#include "log.h"
#include "resolve.h"
#include "scan.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RELAY_BUF_MAX  ((size_t)64 * 1024)
#define C2U_BUF_MAX    (RELAY_BUF_MAX + 64 * 1024) /* room for the rewritten head too */
#define DRAIN_MS       2000u
#define OWN_REFRESH_MS 2000u
#define EPOLL_BATCH    64

/* S_ACK, S_CL_TLS and S_IHEAD belong to an intercepted CONNECT: the 200 goes out, the client's
 * TLS handshake is answered with a leaf from the session CA, and the request inside is read. */
enum state {
    S_HEAD,
    S_ACK,
    S_CL_TLS,
    S_IHEAD,
    S_RESOLVE,
    S_CONNECT,
    S_TLS,
    S_RELAY,
    S_FLUSH,
    S_DRAIN,
    S_CLOSED
};

struct conn;

typedef struct endpoint {
    struct conn *c;
    int fd;
    uint32_t events; /* currently registered */
    bool registered;
} endpoint;

typedef struct conn {
    struct conn *prev, *next;
    struct rc_proxy *px;
    endpoint cl, up;
    SSL *ssl;
    int ssl_rd_want, ssl_wr_want; /* EPOLLIN / EPOLLOUT the last SSL call asked for, or 0 */
    SSL *cl_ssl;                  /* intercepted CONNECT: our TLS server side to the client */
    int cl_rd_want, cl_wr_want;
    bool intercept;    /* CONNECT to a domain with rules, terminated with the session CA */
    bool cl_tls_ready; /* the client handshake completed: answers go through cl_ssl */
    char tunnel_host[RC_POLICY_HOST_MAX + 1];
    unsigned tunnel_port;
    /* where the request goes: the request's host, or a forwardURL rule's target */
    const char *dial_host;
    unsigned dial_port;
    bool dial_host_is_ip;
    bool forward;             /* a forwardURL rule matched: dial the operator's proxy */
    char token[512];          /* forwardURL: the signed token sent with the request */
    rc_scan scan;             /* injected values to look for in the response */
    rc_audit_call_ids *calls; /* running tool calls when an injection was decided, or NULL */
    bool scanning;
    bool resp_head_seen;  /* the response head is complete (see u2c_sendable) */
    size_t resp_head_end; /* its length: bytes of the response up to and with its blank line */
    bool reflected;       /* the response carried an injected value: cut */
    uint64_t bytes_to_client;
    int state;
    uint64_t deadline_ms;
    rc_buf in, c2u, u2c;
    bool have_req;
    rc_httpreq req;
    rc_httpbody body;
    const rc_policy_domain *domain;
    const rc_policy_rule *rule;
    bool upstream_tls;
    bool cl_eof, up_eof, up_shut, cl_shut, up_hup, up_failed;
    rc_resolve_result addrs;
    size_t addr_i;
    bool resolving;
    struct sockaddr_storage dialled;
    /* audit */
    const char *decision, *reason, *action, *end;
    char reason_buf[RC_ERR_MSG_MAX];
    char rule_name[RC_POLICY_HOST_MAX + 16];
    char addr_text[INET6_ADDRSTRLEN];
    int status;
    uint64_t bytes_up, bytes_down, start_us;
    /* upstream response status sniffing (plain HTTP) */
    char sniff[40];
    size_t sniff_len;
    int sniff_state;
    uint32_t sniff_tail;
} conn;

struct rc_proxy {
    rc_proxy_config cfg;
    int lfd, epfd, stopfd;
    endpoint lep, stopep, resep;
    rc_resolver *resolver;
    SSL_CTX *tls;
    SSL_CTX *tls_srv; /* interception: our server side towards the client */
    rc_forward_key fwd_key;
    bool have_fwd_key;
    conn *conns;
    conn *zombies;
    size_t n_conns;
    rc_policy_hostaddrs own;
    uint64_t own_at_ms;
};

static void X509_freep(X509 **x)
{
    X509_free(*x);
}

static void EVP_PKEY_freep(EVP_PKEY **k)
{
    EVP_PKEY_free(*k);
}

/* ---- time ---- */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_ms(void)
{
    return now_us() / 1000u;
}

/* ---- epoll bookkeeping ---- */

static void ep_set(rc_proxy *px, endpoint *ep, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = ep};
    if (ep->fd < 0)
        return;
    if (!ep->registered) {
        if (epoll_ctl(px->epfd, EPOLL_CTL_ADD, ep->fd, &ev) == 0) {
            ep->registered = true;
            ep->events = events;
        }
        return;
    }
    if (ep->events != events && epoll_ctl(px->epfd, EPOLL_CTL_MOD, ep->fd, &ev) == 0)
        ep->events = events;
}

/* Stop watching an fd without closing it (an fd that reports HUP while we want nothing from it
 * would otherwise wake every epoll_wait). */
static void ep_park(rc_proxy *px, endpoint *ep)
{
    if (ep->fd >= 0 && ep->registered) {
        epoll_ctl(px->epfd, EPOLL_CTL_DEL, ep->fd, NULL);
        ep->registered = false;
        ep->events = 0;
    }
}

static void ep_close(rc_proxy *px, endpoint *ep)
{
    if (ep->fd < 0)
        return;
    if (ep->registered)
        epoll_ctl(px->epfd, EPOLL_CTL_DEL, ep->fd, NULL);
    close(ep->fd);
    ep->fd = -1;
    ep->registered = false;
    ep->events = 0;
}

/* ---- audit and teardown ---- */

static void conn_audit(conn *c)
{
    const char *injected[RC_POLICY_HEADERS_MAX];
    const char *calls[RC_AUDIT_CALLS_MAX];
    rc_audit_record rec = {0};
    size_t n = 0;

    if (!c->px->cfg.audit || (!c->have_req && c->in.len == 0 && !c->status))
        return;
    if (c->rule && c->rule->action == RC_POLICY_ACTION_TRANSFORM && c->decision &&
        (strcmp(c->decision, "allow") == 0 || c->scanning))
        for (; n < c->rule->n_set_headers; n++)
            injected[n] = c->rule->set_headers[n].name;
    rec.kind = c->intercept                                       ? "https"
               : c->have_req && c->req.form == RC_HTTPREQ_CONNECT ? "connect"
                                                                  : "http";
    rec.decision = c->decision ? c->decision : "error";
    rec.reason = c->reason;
    rec.end = c->end;
    rec.rule = c->rule_name[0] ? c->rule_name : NULL;
    rec.action = c->action;
    rec.injected = injected;
    rec.n_injected = n;
    if (c->calls) {
        for (size_t i = 0; i < c->calls->n; i++)
            calls[i] = c->calls->ids[i];
        rec.has_tool_calls = true;
        rec.tool_calls = calls;
        rec.n_tool_calls = c->calls->n;
    }
    if (c->have_req) {
        rec.host = c->req.host;
        rec.port = c->req.port;
        if (c->req.form != RC_HTTPREQ_CONNECT) {
            rec.method = c->req.method;
            rec.path = c->req.path;
        }
    }
    if (c->intercept) {
        rec.host = c->tunnel_host;
        rec.port = c->tunnel_port;
    }
    rec.addr = c->addr_text[0] ? c->addr_text : NULL;
    rec.status = c->status;
    rec.bytes_up = c->bytes_up;
    rec.bytes_down = c->bytes_down;
    rec.duration_us = now_us() - c->start_us;
    rc_error err = {0};
    if (rc_audit_write(c->px->cfg.audit, &rec, &err) < 0)
        rc_log_error("egress: audit line lost: %s", err.msg);
}

static void conn_close(conn *c)
{
    rc_proxy *px = c->px;
    if (c->state == S_CLOSED)
        return;
    conn_audit(c);
    if (c->resolving)
        rc_resolver_cancel(px->resolver, c);
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->cl_ssl) {
        if (c->cl_tls_ready && !c->reflected)
            (void)SSL_shutdown(c->cl_ssl); /* best effort close_notify; never waits */
        SSL_free(c->cl_ssl);
        c->cl_ssl = NULL;
    }
    ep_close(px, &c->cl);
    ep_close(px, &c->up);
    c->state = S_CLOSED;
    if (c->prev)
        c->prev->next = c->next;
    else
        px->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    px->n_conns--;
    c->prev = NULL;
    c->next = px->zombies;
    px->zombies = c;
}

static void conn_free(conn *c)
{
    rc_buf_free(&c->in);
    rc_buf_free(&c->c2u);
    rc_buf_free(&c->u2c);
    if (c->have_req)
        rc_httpreq_free(&c->req);
    rc_scan_free(&c->scan);
    free(c->calls);
    explicit_bzero(c->token, sizeof c->token);
    free(c);
}

static void free_zombies(rc_proxy *px)
{
    while (px->zombies) {
        conn *c = px->zombies;
        px->zombies = c->next;
        conn_free(c);
    }
}

/* ---- events wanted per state ---- */

static bool client_read_wanted(const conn *c)
{
    if (c->cl_eof || c->c2u.len >= RELAY_BUF_MAX)
        return false;
    if (c->req.form != RC_HTTPREQ_CONNECT && c->body.done)
        return false; /* one request per connection: later bytes are never forwarded */
    return true;
}

/* Bytes at the start of u2c that may go to the client: while a response is scanned for injected
 * values, the last few bytes wait until more arrives (a value split across reads) or the
 * upstream ends, and nothing goes before the whole response head is there: a cut then either
 * comes before any byte (a clean 502) or after a complete head (the client sees a body shorter
 * than announced), never after half a head (which clients take for an empty 200). */
static size_t u2c_sendable(const conn *c)
{
    size_t hold, n, head_left;
    if (!c->scanning || c->up_eof)
        return c->u2c.len;
    if (!c->resp_head_seen)
        return c->u2c.len < RELAY_BUF_MAX ? 0 : c->u2c.len - rc_scan_holdback(&c->scan);
    hold = rc_scan_holdback(&c->scan);
    n = c->u2c.len > hold ? c->u2c.len - hold : 0;
    /* The head itself is never held back: a value cannot straddle its blank line, and the head
     * was scanned whole when it arrived. */
    head_left = c->resp_head_end > c->bytes_to_client ? c->resp_head_end - c->bytes_to_client : 0;
    return head_left > n && head_left <= c->u2c.len ? head_left : n;
}

static uint32_t client_events(const conn *c, bool want_read, bool want_write)
{
    uint32_t ev = 0;
    if (!c->cl_ssl || !c->cl_tls_ready)
        return (want_read ? EPOLLIN : 0) | (want_write ? EPOLLOUT : 0);
    if (want_read)
        ev |= c->cl_rd_want ? (uint32_t)c->cl_rd_want : EPOLLIN;
    if (want_write)
        ev |= c->cl_wr_want ? (uint32_t)c->cl_wr_want : EPOLLOUT;
    return ev;
}

static uint32_t upstream_events(const conn *c)
{
    uint32_t ev = 0;
    bool want_read = !c->up_eof && c->u2c.len < RELAY_BUF_MAX;
    bool want_write = c->c2u.len > 0;
    if (!c->ssl)
        return (want_read ? EPOLLIN : 0) | (want_write ? EPOLLOUT : 0);
    if (want_read)
        ev |= c->ssl_rd_want ? (uint32_t)c->ssl_rd_want : EPOLLIN;
    if (want_write)
        ev |= c->ssl_wr_want ? (uint32_t)c->ssl_wr_want : EPOLLOUT;
    return ev;
}

static void conn_update_events(conn *c)
{
    rc_proxy *px = c->px;
    switch (c->state) {
    case S_HEAD:
    case S_DRAIN:
        ep_set(px, &c->cl, EPOLLIN);
        break;
    case S_ACK:
        ep_set(px, &c->cl, EPOLLOUT);
        break;
    case S_CL_TLS:
        ep_set(px, &c->cl,
               c->cl_rd_want | c->cl_wr_want ? (uint32_t)(c->cl_rd_want | c->cl_wr_want) : EPOLLIN);
        break;
    case S_IHEAD:
        ep_set(px, &c->cl, client_events(c, true, false));
        break;
    case S_RESOLVE:
        ep_set(px, &c->cl, 0);
        break;
    case S_CONNECT:
        ep_set(px, &c->cl, 0);
        ep_set(px, &c->up, EPOLLOUT);
        break;
    case S_TLS:
        ep_set(px, &c->cl, 0);
        ep_set(px, &c->up,
               c->ssl_rd_want | c->ssl_wr_want ? (uint32_t)(c->ssl_rd_want | c->ssl_wr_want)
                                               : EPOLLOUT);
        break;
    case S_RELAY: {
        uint32_t ue = upstream_events(c);
        ep_set(px, &c->cl, client_events(c, client_read_wanted(c), u2c_sendable(c) > 0));
        if (c->up_hup && ue == 0)
            ep_park(px, &c->up);
        else
            ep_set(px, &c->up, ue);
        break;
    }
    case S_FLUSH:
        ep_set(px, &c->cl, client_events(c, false, true));
        break;
    default:
        break;
    }
}

/* ---- local responses ---- */

static const char *status_text(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

/* Stop talking to any upstream and send the client what is queued in u2c, then close. */
static void conn_flush_and_close(conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    ep_close(c->px, &c->up);
    if (c->resolving) {
        rc_resolver_cancel(c->px->resolver, c);
        c->resolving = false;
    }
    rc_buf_reset(&c->c2u);
    c->state = S_FLUSH;
    c->deadline_ms = now_ms() + DRAIN_MS;
    conn_update_events(c);
}

/* A refusal or error generated by the proxy itself. reason is static text. */
static void conn_refuse(conn *c, int status, const char *decision, const char *reason)
{
    rc_buf_reset(&c->u2c);
    c->status = status;
    c->decision = decision;
    c->reason = reason;
    if (strcmp(decision, "deny") == 0)
        c->action = NULL;
    if (c->intercept && !c->cl_tls_ready) {
        c->status = 0; /* no HTTP can reach a client we have no TLS session with */
        conn_close(c);
        return;
    }
    if (rc_buf_appendf(&c->u2c, NULL,
                       "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                       "%s: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n"
                       "runcell egress proxy: %s\n",
                       status, status_text(status), RC_PROXY_DENY_HEADER, reason,
                       strlen("runcell egress proxy: \n") + strlen(reason), reason) < 0) {
        conn_close(c);
        return;
    }
    conn_flush_and_close(c);
}

/* The answer of a policy `response` rule. */
static void conn_policy_response(conn *c, const rc_policy_rule *r)
{
    rc_buf *b = &c->u2c;
    int rc;

    rc_buf_reset(b);
    c->status = r->status;
    c->decision = "response";
    c->reason = "answered by a policy response rule";
    c->action = "response";
    rc = rc_buf_appendf(b, NULL, "HTTP/1.1 %d %s\r\n", r->status, status_text(r->status));
    if (rc >= 0 && r->content_type)
        rc = rc_buf_appendf(b, NULL, "Content-Type: %s\r\n", r->content_type);
    for (size_t i = 0; rc >= 0 && i < r->n_resp_headers; i++)
        rc = rc_buf_appendf(b, NULL, "%s: %s\r\n", r->resp_headers[i].name,
                            r->resp_headers[i].value);
    if (rc >= 0)
        rc = rc_buf_appendf(b, NULL, "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                            r->body_len);
    if (rc >= 0 && r->body_len)
        rc = rc_buf_append(b, r->body, r->body_len, NULL);
    if (rc < 0) {
        conn_refuse(c, 502, "error", "policy response too large");
        return;
    }
    conn_flush_and_close(c);
}

/* ---- the upstream request ---- */

static bool header_overridden(const rc_policy_rule *r, const rc_policy_kv *h)
{
    if (!r || r->action != RC_POLICY_ACTION_TRANSFORM)
        return false;
    for (size_t i = 0; i < r->n_set_headers; i++)
        if (strlen(r->set_headers[i].name) == h->key_len &&
            strncasecmp(r->set_headers[i].name, h->key, h->key_len) == 0)
            return true;
    return false;
}

static int append_authority(rc_buf *b, const char *name, const char *host, unsigned port,
                            unsigned default_port)
{
    const char *fmt = strchr(host, ':') ? "%s: [%s]" : "%s: %s";
    int rc = rc_buf_appendf(b, NULL, fmt, name, host);
    if (rc >= 0 && port != default_port)
        rc = rc_buf_appendf(b, NULL, ":%u", port);
    if (rc >= 0)
        rc = rc_buf_append_str(b, "\r\n", NULL);
    return rc;
}

static int append_host(conn *c, rc_buf *b)
{
    if (c->forward)
        return append_authority(b, "Host", c->rule->fwd_host, c->rule->fwd_port, 443);
    return append_authority(b, "Host", c->req.host, c->req.port, c->upstream_tls ? 443 : 80);
}

static bool header_is(const rc_policy_kv *h, const char *lname)
{
    size_t n = strlen(lname);
    return h->key_len == n && strncasecmp(h->key, lname, n) == 0;
}

/* Headers the proxy sets itself on a forwarded request: the client's copies are dropped. */
static bool header_is_forwarding(const rc_policy_kv *h)
{
    return h->key_len >= 17 && strncasecmp(h->key, "x-runcell-forward", 17) == 0;
}

/* x-runcell-forwarded-{host,scheme,port,path} and the signed token (forwardURL rules). */
static int append_forwarding(conn *c, rc_buf *b)
{
    const rc_httpreq *q = &c->req;
    int rc = append_authority(b, "x-runcell-forwarded-host", q->host, 0, 0);
    if (rc >= 0)
        rc = rc_buf_appendf(b, NULL,
                            "x-runcell-forwarded-scheme: %s\r\nx-runcell-forwarded-port: %u\r\n"
                            "x-runcell-forwarded-path: %s%s%.*s\r\n" RC_FORWARD_TOKEN_HEADER
                            ": %s\r\n",
                            c->intercept ? "https" : "http", q->port, q->path, q->query ? "?" : "",
                            (int)q->query_len, q->query ? q->query : "", c->token);
    return rc;
}

/* Rewrite the request head for the upstream: origin form, our own Host, no hop-by-hop or
 * Proxy-* headers, the rule's headers replacing any of the same name, Connection: close. */
static int build_upstream_head(conn *c)
{
    const rc_httpreq *q = &c->req;
    rc_buf *b = &c->c2u;
    int rc;

    if (c->forward)
        rc = rc_buf_appendf(b, NULL, "%s %s HTTP/1.1\r\n", q->method, c->rule->fwd_path);
    else
        rc = rc_buf_appendf(b, NULL, "%s %s%s%.*s HTTP/1.1\r\n", q->method, q->path,
                            q->query ? "?" : "", (int)q->query_len, q->query ? q->query : "");
    if (rc >= 0)
        rc = append_host(c, b);
    for (size_t i = 0; rc >= 0 && i < q->n_headers; i++) {
        const rc_policy_kv *h = &q->headers[i];
        if (header_is(h, "host") || rc_httpreq_is_hop_header(q, h->key, h->key_len) ||
            header_overridden(c->rule, h) || (c->forward && header_is_forwarding(h)) ||
            (c->scanning && header_is(h, "accept-encoding")))
            continue;
        rc = rc_buf_appendf(b, NULL, "%.*s: %.*s\r\n", (int)h->key_len, h->key, (int)h->value_len,
                            h->value);
    }
    if (c->rule && c->rule->action == RC_POLICY_ACTION_TRANSFORM)
        for (size_t i = 0; rc >= 0 && i < c->rule->n_set_headers; i++)
            rc = rc_buf_appendf(b, NULL, "%s: %s\r\n", c->rule->set_headers[i].name,
                                c->rule->set_headers[i].value);
    /* a compressed echo would hide the value from the response scan */
    if (rc >= 0 && c->scanning)
        rc = rc_buf_append_str(b, "Accept-Encoding: identity\r\n", NULL);
    if (rc >= 0 && c->forward)
        rc = append_forwarding(c, b);
    if (rc >= 0)
        rc = rc_buf_append_str(b, "Connection: close\r\n\r\n", NULL);
    return rc;
}

/* Move client bytes (after the head) that belong to the request body into c2u. */
static int take_body(conn *c, const char *data, size_t len)
{
    rc_error err = {0};
    ssize_t n = rc_httpbody_feed(&c->body, data, len, &err);
    if (n < 0)
        return (int)n;
    return rc_buf_append(&c->c2u, data, (size_t)n, NULL);
}

/* ---- dialling ---- */

static void refresh_own_addresses(rc_proxy *px)
{
    struct ifaddrs *ifa = NULL;
    uint64_t t = now_ms();

    if (px->own_at_ms && t - px->own_at_ms < OWN_REFRESH_MS)
        return;
    px->own_at_ms = t;
    if (getifaddrs(&ifa) < 0)
        return; /* keep the previous list */
    px->own.n = 0;
    for (struct ifaddrs *p = ifa; p && px->own.n < RC_POLICY_HOSTADDR_MAX; p = p->ifa_next) {
        rc_policy_cidr *a = &px->own.addr[px->own.n];
        if (!p->ifa_addr)
            continue;
        if (p->ifa_addr->sa_family == AF_INET) {
            *a = (rc_policy_cidr){.family = AF_INET, .prefix = 32};
            memcpy(a->addr, &((struct sockaddr_in *)p->ifa_addr)->sin_addr, 4);
        } else if (p->ifa_addr->sa_family == AF_INET6) {
            *a = (rc_policy_cidr){.family = AF_INET6, .prefix = 128};
            memcpy(a->addr, &((struct sockaddr_in6 *)p->ifa_addr)->sin6_addr, 16);
        } else {
            continue;
        }
        px->own.n++;
    }
    freeifaddrs(ifa);
}

static void addr_to_text(const struct sockaddr_storage *ss, char *out, size_t n)
{
    const void *a = ss->ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (!inet_ntop(ss->ss_family, a, out, (socklen_t)n))
        snprintf(out, n, "?");
}

static socklen_t sa_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static void start_relay(conn *c);
static void step_tls(conn *c);

/* Start a non-blocking connect to the next candidate address. */
static void try_connect(conn *c)
{
    for (; c->addr_i < c->addrs.n; c->addr_i++) {
        const struct sockaddr_storage *ss = &c->addrs.addr[c->addr_i];
        int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
        if (fd < 0)
            continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (const struct sockaddr *)ss, sa_len(ss)) < 0 && errno != EINPROGRESS) {
            close(fd);
            continue;
        }
        c->up.fd = fd;
        c->dialled = *ss;
        addr_to_text(ss, c->addr_text, sizeof c->addr_text);
        c->state = S_CONNECT;
        conn_update_events(c);
        return;
    }
    conn_refuse(c, 502, "error", "upstream connection failed");
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, 4) == 0 &&
               ((const struct sockaddr_in *)a)->sin_port ==
                   ((const struct sockaddr_in *)b)->sin_port;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0 &&
           ((const struct sockaddr_in6 *)a)->sin6_port ==
               ((const struct sockaddr_in6 *)b)->sin6_port;
}

/* The connect finished: check what we are actually connected to before sending a byte. */
static void step_connect(conn *c)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    rc_policy_verdict v;
    int soerr = 0;
    socklen_t elen = sizeof soerr;

    if (getsockopt(c->up.fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) < 0 || soerr != 0) {
        ep_close(c->px, &c->up);
        c->addr_text[0] = '\0';
        c->addr_i++;
        try_connect(c);
        return;
    }
    if (getpeername(c->up.fd, (struct sockaddr *)&peer, &len) < 0 ||
        !same_addr(&peer, &c->dialled)) {
        conn_refuse(c, 502, "error", "connected peer differs from the address dialled");
        return;
    }
    refresh_own_addresses(c->px);
    rc_policy_check_addr(c->px->cfg.policy, (struct sockaddr *)&peer, &c->px->own, &v);
    if (!v.allow && !c->forward) { /* a forward URL is the operator's, not the agent's, choice */
        conn_refuse(c, 403, "deny", v.reason);
        return;
    }
    if (!c->upstream_tls) {
        start_relay(c);
        return;
    }
    c->ssl = SSL_new(c->px->tls);
    if (!c->ssl || SSL_set_fd(c->ssl, c->up.fd) != 1) {
        conn_refuse(c, 502, "error", "upstream TLS setup failed");
        return;
    }
    if (c->dial_host_is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->dial_host);
    } else {
        SSL_set_tlsext_host_name(c->ssl, c->dial_host);
        SSL_set1_host(c->ssl, c->dial_host);
    }
    SSL_set_connect_state(c->ssl);
    c->state = S_TLS;
    step_tls(c);
}

static const char *tls_failure_reason(conn *c)
{
    long vr = SSL_get_verify_result(c->ssl);
    ERR_clear_error();
    if (vr == X509_V_ERR_HOSTNAME_MISMATCH)
        return "upstream TLS: certificate does not match the host name";
    if (vr != X509_V_OK)
        return "upstream TLS: certificate verification failed";
    return "upstream TLS handshake failed";
}

/* A handshake step that needs I/O (ssl_err from SSL_get_error): record the event it waits for in
 * *rd_want / *wr_want and re-arm epoll. False for a real failure. */
static bool handshake_wait(conn *c, int ssl_err, int *rd_want, int *wr_want)
{
    if (ssl_err != SSL_ERROR_WANT_READ && ssl_err != SSL_ERROR_WANT_WRITE)
        return false;
    *rd_want = ssl_err == SSL_ERROR_WANT_READ ? EPOLLIN : 0;
    *wr_want = ssl_err == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0;
    conn_update_events(c);
    return true;
}

static void step_tls(conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->ssl_rd_want = c->ssl_wr_want = 0;
        start_relay(c);
        return;
    }
    if (!handshake_wait(c, SSL_get_error(c->ssl, r), &c->ssl_rd_want, &c->ssl_wr_want))
        conn_refuse(c, 502, "error", tls_failure_reason(c));
}

/* Every resolved address must pass: a name that resolves to an internal address alongside a
 * public one is refused whole rather than half-trusted. */
static void on_resolved(conn *c, const rc_resolve_result *res)
{
    rc_policy_verdict v;

    c->resolving = false;
    if (res->n == 0) {
        conn_refuse(c, 502, "error",
                    res->code == RC_ENOTFOUND ? "host name not found" : "name resolution failed");
        return;
    }
    refresh_own_addresses(c->px);
    for (size_t i = 0; i < res->n && !c->forward; i++) {
        rc_policy_check_addr(c->px->cfg.policy, (const struct sockaddr *)&res->addr[i], &c->px->own,
                             &v);
        if (!v.allow) {
            addr_to_text(&res->addr[i], c->addr_text, sizeof c->addr_text);
            conn_refuse(c, 403, "deny", v.reason);
            return;
        }
    }
    c->addrs = *res;
    c->addr_i = 0;
    try_connect(c);
}

static void start_resolve(conn *c)
{
    rc_resolve_result res = {0};
    struct sockaddr_storage *ss = &res.addr[0];
    rc_error err = {0};
    int r;

    c->deadline_ms = now_ms() + c->px->cfg.connect_timeout_ms;
    if (!c->dial_host) {
        c->dial_host = c->req.host;
        c->dial_port = c->req.port;
        c->dial_host_is_ip = c->req.host_is_ip;
    }
    if (c->dial_host_is_ip) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET, c->dial_host, &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            s4->sin_port = htons((uint16_t)c->dial_port);
        } else {
            inet_pton(AF_INET6, c->dial_host, &s6->sin6_addr);
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons((uint16_t)c->dial_port);
        }
        res.n = 1;
        on_resolved(c, &res);
        return;
    }
    r = rc_resolver_start(c->px->resolver, c->dial_host, (uint16_t)c->dial_port, c, &res, &err);
    if (r < 0) {
        conn_refuse(c, 503, "error", "too many pending name lookups");
        return;
    }
    if (r == 1) {
        on_resolved(c, &res);
        return;
    }
    c->resolving = true;
    c->state = S_RESOLVE;
    conn_update_events(c);
}

/* ---- deciding ---- */

static void set_rule_name(conn *c, size_t index, bool with_index)
{
    if (!c->domain)
        return;
    if (with_index)
        snprintf(c->rule_name, sizeof c->rule_name, "%s#%zu", c->domain->pattern, index);
    else
        snprintf(c->rule_name, sizeof c->rule_name, "%s", c->domain->pattern);
}

static void start_intercept(conn *c);

static void decide_connect(conn *c)
{
    if (c->domain && c->domain->n_rules > 0) {
        if (!c->px->cfg.ca) {
            conn_refuse(c, 403, "deny",
                        "domain has request rules: send http:// requests through the proxy "
                        "(TLS interception is not enabled)");
            return;
        }
        if (c->in.len > c->req.head_len) {
            conn_refuse(c, 400, "error", "bytes sent before the CONNECT was answered");
            return;
        }
        start_intercept(c);
        return;
    }
    c->action = "tunnel";
    c->decision = "allow";
    start_resolve(c);
}

/* Apply the domain's rules to a plain-HTTP request. Returns false when it was answered. */
static bool apply_rules(conn *c)
{
    rc_policy_query q = {0};
    rc_policy_request pr = {.method = c->req.method,
                            .path = c->req.path,
                            .path_len = c->req.path_len,
                            .headers = c->req.headers,
                            .n_headers = c->req.n_headers};
    size_t index = 0;
    int m;

    if (c->req.query && rc_policy_query_parse(c->req.query, c->req.query_len, &q, NULL) < 0) {
        conn_refuse(c, 400, "error", "malformed query string");
        return false;
    }
    pr.query = q.kv;
    pr.n_query = q.n;
    m = rc_policy_match_request(c->domain, &pr, &c->rule, &index, NULL);
    rc_policy_query_free(&q);
    if (m < 0) {
        conn_refuse(c, 403, "deny", "a policy matcher failed");
        return false;
    }
    if (m == 0) {
        c->rule = NULL;
        return true;
    }
    set_rule_name(c, index, true);
    if (c->rule->action == RC_POLICY_ACTION_RESPONSE) {
        conn_policy_response(c, c->rule);
        return false;
    }
    return true;
}

/* The values this request will carry that the agent must never see: the transform's header
 * values and a forward token. Their encodings are searched for in the response. */
static int prepare_scan(conn *c)
{
    const char *values[RC_POLICY_HEADERS_MAX + 1];
    size_t n = 0;
    int r;

    if (c->rule && c->rule->action == RC_POLICY_ACTION_TRANSFORM)
        for (; n < c->rule->n_set_headers; n++)
            values[n] = c->rule->set_headers[n].value;
    if (c->forward)
        values[n++] = c->token;
    if (n == 0)
        return 0;
    r = rc_scan_init(&c->scan, values, n, NULL);
    if (r < 0)
        return r;
    c->scanning = c->scan.n > 0;
    return 0;
}

/* A forwardURL rule matched: dial the operator's proxy with a fresh signed token. */
static int prepare_forward(conn *c)
{
    rc_proxy *px = c->px;
    const rc_policy_rule *r = c->rule;
    const char *sid = px->cfg.session_id ? px->cfg.session_id : "";

    if (!px->have_fwd_key)
        return -RC_EINVAL;
    if (rc_forward_token(&px->fwd_key, sid, r->fwd_url, (int64_t)time(NULL), c->token,
                         sizeof c->token, NULL) < 0)
        return -RC_EINVAL;
    c->forward = true;
    c->dial_host = r->fwd_host;
    c->dial_port = r->fwd_port;
    c->dial_host_is_ip = r->fwd_host_is_ip;
    return 0;
}

static const char *action_name(const conn *c)
{
    if (c->forward)
        return "forward-url";
    return c->rule && c->rule->n_set_headers ? "transform" : "forward";
}

/* A plain-HTTP request, or one read inside an intercepted tunnel (origin form). */
/* The tool calls running now (issue 11), kept for the audit line of the injection about to be
 * made, and as text for its log line: "[]" or "[toolu_a,toolu_b]" (ids are [A-Za-z0-9_-]). */
static void snapshot_calls(conn *c, char *text, size_t textsz)
{
    size_t o = 0;
    text[0] = '\0';
    if (!c->px->cfg.running_calls)
        return;
    if (!c->calls && !(c->calls = malloc(sizeof *c->calls)))
        return;
    rc_audit_calls_get(c->px->cfg.running_calls, c->calls);
    o += (size_t)snprintf(text, textsz, " (tool calls [");
    for (size_t i = 0; i < c->calls->n && o < textsz; i++)
        o += (size_t)snprintf(text + o, textsz - o, "%s%s", i ? "," : "", c->calls->ids[i]);
    if (o < textsz)
        snprintf(text + o, textsz - o, "])");
}

static void decide_http(conn *c)
{
    bool rules = c->domain && c->domain->n_rules > 0;

    if (rules) {
        const rc_policy_kv *up = rc_httpreq_header(&c->req, "upgrade");
        if (up) {
            conn_refuse(c, 403, "deny", "protocol upgrades are refused for domains with rules");
            return;
        }
        if (!apply_rules(c))
            return;
        c->upstream_tls = true;
        if (c->rule && c->rule->action == RC_POLICY_ACTION_FORWARD && prepare_forward(c) < 0) {
            conn_refuse(c, 502, "error", "forwardURL: no forward key configured");
            return;
        }
        if (!c->req.port_explicit && !c->forward)
            c->req.port = 443;
    }
    if (prepare_scan(c) < 0) {
        conn_refuse(c, 502, "error", "cannot prepare the response scan");
        return;
    }
    c->action = action_name(c);
    c->decision = "allow";
    if (c->scanning) {
        char calls[RC_AUDIT_CALLS_MAX * (RC_AUDIT_CALL_ID_MAX + 1) + 32];
        snapshot_calls(c, calls, sizeof calls);
        rc_log_info("egress: %s %s%s: injecting %s (rule %s)%s", c->req.method, c->req.host,
                    c->req.path, c->forward ? "a forward token" : "headers", c->rule_name, calls);
    }
    rc_httpbody_init(&c->body, &c->req);
    if (build_upstream_head(c) < 0) {
        conn_refuse(c, 431, "error", "rewritten request head too large");
        return;
    }
    if (take_body(c, c->in.data + c->req.head_len, c->in.len - c->req.head_len) < 0) {
        conn_refuse(c, 400, "error", "malformed request body framing");
        return;
    }
    start_resolve(c);
}

static void decide(conn *c)
{
    rc_policy_verdict v;

    if (rc_policy_check_host(c->px->cfg.policy, c->req.host, &v, NULL) < 0) {
        conn_refuse(c, 400, "error", "bad host name");
        return;
    }
    c->domain = v.domain;
    c->reason = v.reason;
    set_rule_name(c, 0, false);
    if (!v.allow) {
        conn_refuse(c, 403, "deny", v.reason);
        return;
    }
    if (c->req.form == RC_HTTPREQ_CONNECT)
        decide_connect(c);
    else
        decide_http(c);
}

/* ---- interception: CONNECT terminated with a leaf from the session CA ---- */

static void step_cl_tls(conn *c);
static void step_ihead(conn *c);

/* Answer the CONNECT, then expect the client's TLS handshake. The CONNECT head is kept only as
 * the tunnel's host and port: every request inside must name exactly that host. */
static void start_intercept(conn *c)
{
    _cleanup_(X509_freep) X509 *cert = NULL;
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
    rc_error err = {0};

    snprintf(c->tunnel_host, sizeof c->tunnel_host, "%s", c->req.host);
    c->tunnel_port = c->req.port;
    if (rc_ca_leaf(c->px->cfg.ca, c->tunnel_host, &cert, &key, &err) < 0) {
        conn_refuse(c, 502, "error", "cannot mint an interception certificate");
        return;
    }
    c->cl_ssl = SSL_new(c->px->tls_srv);
    if (!c->cl_ssl || SSL_use_certificate(c->cl_ssl, cert) != 1 ||
        SSL_use_PrivateKey(c->cl_ssl, key) != 1 || SSL_set_fd(c->cl_ssl, c->cl.fd) != 1) {
        conn_refuse(c, 502, "error", "interception TLS setup failed");
        return;
    }
    SSL_set_app_data(c->cl_ssl, c);
    SSL_set_accept_state(c->cl_ssl);
    c->intercept = true;
    c->decision = "allow";
    c->action = "intercept";
    c->status = 200;
    rc_buf_reset(&c->u2c);
    if (rc_buf_append_str(&c->u2c, "HTTP/1.1 200 Connection established\r\n\r\n", NULL) < 0) {
        conn_close(c);
        return;
    }
    c->state = S_ACK;
    conn_update_events(c);
}

static void step_ack(conn *c)
{
    ssize_t n = send(c->cl.fd, c->u2c.data, c->u2c.len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        c->reason = "client went away";
        conn_close(c);
        return;
    }
    rc_buf_consume(&c->u2c, (size_t)n);
    if (c->u2c.len)
        return;
    c->state = S_CL_TLS;
    c->deadline_ms = now_ms() + c->px->cfg.head_timeout_ms;
    step_cl_tls(c);
}

/* Why the client ended the handshake: a client that pins its certificates or does not trust the
 * session CA answers our certificate with an alert. */
static const char *client_tls_failure(void)
{
    unsigned long e = ERR_peek_last_error();
    int reason = ERR_GET_REASON(e);
    ERR_clear_error();
    switch (reason) {
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
        return "client refused the interception certificate (session CA not trusted, or pinned)";
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_HTTP_REQUEST:
        return "client did not speak TLS 1.2+ inside the tunnel";
    default:
        return "TLS handshake with the client failed";
    }
}

static void step_cl_tls(conn *c)
{
    int r;

    ERR_clear_error();
    r = SSL_do_handshake(c->cl_ssl);
    if (r == 1) {
        c->cl_tls_ready = true;
        c->cl_rd_want = c->cl_wr_want = 0;
        rc_httpreq_free(&c->req);
        c->have_req = false;
        c->req = (rc_httpreq){0};
        c->rule_name[0] = '\0';
        set_rule_name(c, 0, false);
        rc_buf_reset(&c->in);
        c->state = S_IHEAD;
        c->deadline_ms = now_ms() + c->px->cfg.head_timeout_ms;
        step_ihead(c);
        return;
    }
    if (handshake_wait(c, SSL_get_error(c->cl_ssl, r), &c->cl_rd_want, &c->cl_wr_want))
        return;
    c->decision = "error";
    c->reason =
        c->reason && strncmp(c->reason, "client SNI", 10) == 0 ? c->reason : client_tls_failure();
    c->status = 0;
    conn_close(c);
}

/* SNI, when the client sends one, must name the CONNECT target (reference-app 9.3.2). */
static int on_client_sni(SSL *ssl, int *alert, void *arg)
{
    conn *c = SSL_get_app_data(ssl);
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    (void)arg;
    if (!c || !sni || strcasecmp(sni, c->tunnel_host) == 0)
        return SSL_TLSEXT_ERR_OK;
    c->reason = "client SNI does not match the CONNECT target";
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* HTTP/1.1 only: a client offering h2 and http/1.1 gets http/1.1; one offering only h2 gets no
 * ALPN answer (and fails or falls back to HTTP/1.1 on its own). */
static int on_client_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char *sel = NULL;
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, h11, sizeof h11, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* I/O with the client: plain, or through the interception TLS session. */
static ssize_t cl_io(conn *c, char *buf, size_t n, bool writing);

/* The request inside the tunnel. It is judged like a plain-HTTP request to the tunnel's host. */
static void step_ihead(conn *c)
{
    rc_error err = {0};
    int status = 400, r = 0;
    ssize_t n;

    for (;;) {
        if (rc_buf_reserve(&c->in, 4096, NULL) < 0) {
            conn_refuse(c, 431, "error", "request head larger than 16 KiB");
            return;
        }
        n = cl_io(c, c->in.data + c->in.len, c->in.cap - c->in.len - 1, false);
        if (n == -EAGAIN) {
            conn_update_events(c);
            return;
        }
        if (n <= 0) {
            c->reason = "client closed before completing a request";
            conn_close(c);
            return;
        }
        c->in.len += (size_t)n;
        c->in.data[c->in.len] = '\0';
        r = rc_httpreq_parse_origin(c->in.data, c->in.len, c->tunnel_host, c->tunnel_port, &c->req,
                                    &status, &err);
        if (r != 0)
            break;
    }
    if (r < 0) {
        snprintf(c->reason_buf, sizeof c->reason_buf, "%s", err.msg);
        conn_refuse(c, status, "error", c->reason_buf);
        return;
    }
    c->have_req = true;
    c->status = 0;
    c->deadline_ms = now_ms() + c->px->cfg.connect_timeout_ms;
    decide_http(c);
}

/* ---- reading the head ---- */

static void step_head(conn *c)
{
    rc_error err = {0};
    int status = 400, r;
    ssize_t n;

    if (rc_buf_reserve(&c->in, 4096, NULL) < 0) {
        conn_refuse(c, 431, "error", "request head larger than 16 KiB");
        return;
    }
    n = recv(c->cl.fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        c->reason = "client closed before completing a request";
        conn_close(c);
        return;
    }
    c->in.len += (size_t)n;
    c->in.data[c->in.len] = '\0';
    r = rc_httpreq_parse(c->in.data, c->in.len, &c->req, &status, &err);
    if (r == 0)
        return;
    if (r < 0) {
        /* err.msg is text chosen by the parser; it never quotes the request */
        snprintf(c->reason_buf, sizeof c->reason_buf, "%s", err.msg);
        conn_refuse(c, status, "error", c->reason_buf);
        return;
    }
    c->have_req = true;
    decide(c);
}

/* ---- relaying ---- */

static void start_relay(conn *c)
{
    c->state = S_RELAY;
    c->deadline_ms = now_ms() + c->px->cfg.idle_timeout_ms;
    if (c->req.form == RC_HTTPREQ_CONNECT) {
        c->status = 200;
        if (rc_buf_append_str(&c->u2c, "HTTP/1.1 200 Connection established\r\n\r\n", NULL) < 0 ||
            rc_buf_append(&c->c2u, c->in.data + c->req.head_len, c->in.len - c->req.head_len,
                          NULL) < 0) {
            conn_close(c);
            return;
        }
    }
    rc_buf_free(&c->in);
    c->in = RC_BUF_INIT(0);
    conn_update_events(c);
}

/* Watch the upstream's response heads for the status to audit (skipping 1xx interim ones). */
static void sniff_status(conn *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n && c->sniff_state < 2; i++) {
        if (c->sniff_state == 1) { /* skipping the rest of a 1xx head */
            c->sniff_tail = (c->sniff_tail << 8) | (unsigned char)p[i];
            if (c->sniff_tail == 0x0d0a0d0a) {
                c->sniff_state = 0;
                c->sniff_len = 0;
            }
            continue;
        }
        if (c->sniff_len < sizeof c->sniff - 1)
            c->sniff[c->sniff_len++] = p[i];
        if (c->sniff_len == 12) {
            int st = 0;
            c->sniff[12] = '\0';
            if (strncmp(c->sniff, "HTTP/1.", 7) == 0 && sscanf(c->sniff + 9, "%3d", &st) == 1)
                c->status = st;
            c->sniff_state = st >= 100 && st < 200 ? 1 : 2;
            c->sniff_tail = 0;
        }
    }
}

/* I/O on one side, plain or TLS: >0 bytes, 0 EOF, -EAGAIN, -EIO. rd_want / wr_want record
 * which readiness the TLS layer waits for. */
static ssize_t side_io(SSL *ssl, int fd, int *rd_want, int *wr_want, char *buf, size_t n,
                       bool writing)
{
    ssize_t r;
    int e;

    if (n > INT_MAX)
        n = INT_MAX;
    if (!ssl) {
        r = writing ? send(fd, buf, n, MSG_NOSIGNAL) : recv(fd, buf, n, 0);
        if (r < 0)
            return errno == EAGAIN || errno == EINTR ? -EAGAIN : -EIO;
        return r;
    }
    ERR_clear_error();
    r = writing ? SSL_write(ssl, buf, (int)n) : SSL_read(ssl, buf, (int)n);
    if (r > 0) {
        if (writing)
            *wr_want = 0;
        else
            *rd_want = 0;
        return r;
    }
    e = SSL_get_error(ssl, (int)r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        int want = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
        if (writing)
            *wr_want = want;
        else
            *rd_want = want;
        return -EAGAIN;
    }
    if (!writing && e == SSL_ERROR_ZERO_RETURN)
        return 0;
    return -EIO;
}

static ssize_t up_io(conn *c, char *buf, size_t n, bool writing)
{
    return side_io(c->ssl, c->up.fd, &c->ssl_rd_want, &c->ssl_wr_want, buf, n, writing);
}

static ssize_t cl_io(conn *c, char *buf, size_t n, bool writing)
{
    SSL *ssl = c->cl_tls_ready ? c->cl_ssl : NULL;
    return side_io(ssl, c->cl.fd, &c->cl_rd_want, &c->cl_wr_want, buf, n, writing);
}

/* Client -> c2u. Returns progress, or -1 when the connection must end. */
static int pump_client_read(conn *c)
{
    char buf[16384];
    size_t room = C2U_BUF_MAX - c->c2u.len;
    ssize_t n;

    if (!client_read_wanted(c))
        return 0;
    n = cl_io(c, buf, room < sizeof buf ? room : sizeof buf, false);
    if (n == -EAGAIN)
        return 0;
    if (n < 0)
        return -1;
    if (n == 0) {
        c->cl_eof = true;
        /* a request body cut short never reaches the upstream complete */
        return c->req.form != RC_HTTPREQ_CONNECT && !c->body.done ? -1 : 1;
    }
    if (c->req.form != RC_HTTPREQ_CONNECT)
        return take_body(c, buf, (size_t)n) < 0 ? -1 : 1;
    return rc_buf_append(&c->c2u, buf, (size_t)n, NULL) < 0 ? -1 : 1;
}

static int pump_upstream_write(conn *c)
{
    ssize_t n;
    if (c->up.fd < 0)
        return 0;
    if (c->c2u.len == 0) {
        if (c->cl_eof && !c->up_shut && c->req.form == RC_HTTPREQ_CONNECT) {
            shutdown(c->up.fd, SHUT_WR);
            c->up_shut = true;
        }
        return 0;
    }
    n = up_io(c, c->c2u.data, c->c2u.len, true);
    if (n == -EAGAIN)
        return 0;
    if (n <= 0)
        return -1;
    rc_buf_consume(&c->c2u, (size_t)n);
    c->bytes_up += (uint64_t)n;
    return 1;
}

/* While scanning, nothing is forwarded before the response head is complete, so it is all in
 * u2c: find its end. */
static void note_response_head(conn *c)
{
    const char *end = memmem(c->u2c.data, c->u2c.len, "\r\n\r\n", 4);
    if (!end)
        return;
    c->resp_head_seen = true;
    c->resp_head_end = (size_t)(end - c->u2c.data) + 4;
}

/* Search the new bytes (and the held-back tail before them) for an injected value. */
static bool response_reflects(conn *c, size_t added)
{
    size_t hold = rc_scan_holdback(&c->scan), start = c->u2c.len - added;
    start = start > hold ? start - hold : 0;
    return rc_scan_find(&c->scan, c->u2c.data + start, c->u2c.len - start);
}

static int pump_upstream_read(conn *c)
{
    ssize_t n;
    if (c->up_eof || c->u2c.len >= RELAY_BUF_MAX)
        return 0;
    if (rc_buf_reserve(&c->u2c, RELAY_BUF_MAX - c->u2c.len, NULL) < 0)
        return -1;
    n = up_io(c, c->u2c.data + c->u2c.len, RELAY_BUF_MAX - c->u2c.len, false);
    if (n == -EAGAIN)
        return 0;
    if (n < 0)
        return c->bytes_down || c->req.form == RC_HTTPREQ_CONNECT ? -1 : -2;
    if (n == 0) {
        c->up_eof = true;
        return 1;
    }
    if (c->req.form != RC_HTTPREQ_CONNECT)
        sniff_status(c, c->u2c.data + c->u2c.len, (size_t)n);
    c->u2c.len += (size_t)n;
    c->u2c.data[c->u2c.len] = '\0';
    c->bytes_down += (uint64_t)n;
    if (c->scanning && !c->resp_head_seen)
        note_response_head(c);
    if (c->scanning && response_reflects(c, (size_t)n)) {
        c->reflected = true; /* pump_client_write must not send another byte */
        return -3;
    }
    return 1;
}

static int pump_client_write(conn *c)
{
    size_t len = u2c_sendable(c);
    ssize_t n;
    if (c->reflected)
        return 0;
    if (c->u2c.len == 0) {
        if (c->up_eof && !c->cl_shut && c->req.form == RC_HTTPREQ_CONNECT) {
            shutdown(c->cl.fd, SHUT_WR);
            c->cl_shut = true;
        }
        return 0;
    }
    if (len == 0)
        return 0;
    n = cl_io(c, c->u2c.data, len, true);
    if (n == -EAGAIN)
        return 0;
    if (n <= 0)
        return -1;
    rc_buf_consume(&c->u2c, (size_t)n);
    c->bytes_to_client += (uint64_t)n;
    return 1;
}

/* The response carried an injected value. If nothing of it reached the client yet, answer 502;
 * otherwise cut the connection (no close_notify: the client sees a truncated response). */
static void cut_reflection(conn *c)
{
    const char *reason = "response reflected an injected credential";
    c->reflected = true;
    rc_log_warn("egress: %s from %s (rule %s); connection cut", reason,
                c->intercept ? c->tunnel_host : c->req.host, c->rule_name);
    if (c->bytes_to_client == 0) {
        conn_refuse(c, 502, "deny", reason);
        c->end = "reflection cut";
        return;
    }
    c->decision = "deny";
    c->reason = reason;
    c->end = "reflection cut";
    conn_close(c);
}

/* The upstream has nothing more to give or take: close it now (its fd would keep reporting HUP). */
static void release_upstream(conn *c)
{
    if (c->up.fd < 0 || !c->up_eof || c->c2u.len)
        return;
    if (c->req.form == RC_HTTPREQ_CONNECT && !c->up_shut)
        return;
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    ep_close(c->px, &c->up);
}

static bool relay_finished(const conn *c)
{
    if (c->u2c.len || !c->up_eof)
        return false;
    if (c->up_failed)
        return true;
    if (c->req.form != RC_HTTPREQ_CONNECT)
        return true; /* the upstream closed after its response (Connection: close) */
    return c->cl_eof && c->c2u.len == 0;
}

static void step_relay(conn *c)
{
    int progress;
    do {
        int a = pump_client_read(c), b = pump_upstream_write(c), d = pump_upstream_read(c),
            e = pump_client_write(c);
        if (d == -2) {
            conn_refuse(c, 502, "error", "upstream failed before answering");
            return;
        }
        if (d == -3) {
            cut_reflection(c);
            return;
        }
        if (a < 0 || b < 0 || d < 0 || e < 0) {
            if (!c->end)
                c->end = "connection reset";
            conn_close(c);
            return;
        }
        progress = a + b + d + e;
        if (progress)
            c->deadline_ms = now_ms() + c->px->cfg.idle_timeout_ms;
    } while (progress);
    if (relay_finished(c)) {
        if (!c->end)
            c->end = "complete";
        conn_close(c);
        return;
    }
    release_upstream(c);
    conn_update_events(c);
}

/* ---- local responses on their way out ---- */

static void step_flush(conn *c)
{
    ssize_t n = cl_io(c, c->u2c.data, c->u2c.len, true);
    if (n == -EAGAIN) {
        conn_update_events(c);
        return;
    }
    if (n <= 0) {
        conn_close(c);
        return;
    }
    rc_buf_consume(&c->u2c, (size_t)n);
    if (c->u2c.len)
        return;
    if (c->cl_ssl && c->cl_tls_ready) {
        (void)SSL_shutdown(c->cl_ssl); /* close_notify, best effort */
        c->cl_tls_ready = false;       /* nothing more goes through TLS */
    }
    /* Half-close and read what the client still sends, so unread request bytes do not turn
     * the close into a reset that could destroy the response before the client reads it. */
    shutdown(c->cl.fd, SHUT_WR);
    c->state = S_DRAIN;
    conn_update_events(c);
}

static void step_drain(conn *c)
{
    char buf[4096];
    ssize_t n = recv(c->cl.fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        conn_close(c);
}

/* ---- dispatch ---- */

static void conn_event(conn *c, bool is_upstream, uint32_t events)
{
    bool hup = events & (EPOLLERR | EPOLLHUP);
    if (!is_upstream && hup && c->state != S_HEAD && c->state != S_FLUSH && c->state != S_DRAIN &&
        c->state != S_CL_TLS && c->state != S_IHEAD) {
        if (c->state == S_RELAY)
            c->end = "client closed";
        else
            c->reason = "client went away";
        conn_close(c);
        return;
    }
    if (is_upstream && c->state == S_RELAY && (events & EPOLLERR)) {
        /* deliver what was already read, then end */
        c->end = "upstream connection error";
        c->up_eof = c->up_failed = true;
        if (c->ssl) {
            SSL_free(c->ssl);
            c->ssl = NULL;
        }
        ep_close(c->px, &c->up);
    }
    if (is_upstream && (events & EPOLLHUP))
        c->up_hup = true;
    switch (c->state) {
    case S_HEAD:
        step_head(c);
        break;
    case S_ACK:
        step_ack(c);
        break;
    case S_CL_TLS:
        step_cl_tls(c);
        break;
    case S_IHEAD:
        step_ihead(c);
        break;
    case S_CONNECT:
        if (is_upstream)
            step_connect(c);
        break;
    case S_TLS:
        if (is_upstream)
            step_tls(c);
        break;
    case S_RELAY:
        step_relay(c);
        break;
    case S_FLUSH:
        step_flush(c);
        break;
    case S_DRAIN:
        step_drain(c);
        break;
    default:
        break;
    }
}

static void accept_one(rc_proxy *px, int fd)
{
    conn *c;
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n" RC_PROXY_DENY_HEADER
                               ": too many connections\r\nContent-Length: 0\r\n"
                               "Connection: close\r\n\r\n";

    if (px->n_conns >= px->cfg.max_conns || !(c = calloc(1, sizeof *c))) {
        if (send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            /* best effort */
        }
        close(fd);
        return;
    }
    c->px = px;
    c->cl = (endpoint){.c = c, .fd = fd};
    c->up = (endpoint){.c = c, .fd = -1};
    c->in = RC_BUF_INIT(RC_HTTPREQ_HEAD_MAX + 4096);
    c->c2u = RC_BUF_INIT(C2U_BUF_MAX);
    c->u2c = RC_BUF_INIT(RELAY_BUF_MAX + RC_POLICY_BODY_MAX + 8192);
    c->start_us = now_us();
    c->deadline_ms = now_ms() + px->cfg.head_timeout_ms;
    c->state = S_HEAD;
    c->next = px->conns;
    if (px->conns)
        px->conns->prev = c;
    px->conns = c;
    px->n_conns++;
    conn_update_events(c);
}

static void on_listen(rc_proxy *px)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(px->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        accept_one(px, fd);
    }
}

static void on_resolver(rc_proxy *px)
{
    rc_resolve_result res;
    void *cookie;
    while (rc_resolver_next(px->resolver, &cookie, &res) == 1) {
        conn *c = cookie;
        if (c->state == S_RESOLVE)
            on_resolved(c, &res);
    }
}

static void sweep_timeouts(rc_proxy *px)
{
    uint64_t t = now_ms();
    conn *next;
    for (conn *c = px->conns; c; c = next) {
        next = c->next;
        if (t < c->deadline_ms)
            continue;
        switch (c->state) {
        case S_RESOLVE:
        case S_CONNECT:
        case S_TLS:
            conn_refuse(c, 504, "error", "upstream did not answer in time");
            break;
        case S_ACK:
        case S_CL_TLS:
            c->decision = "error";
            c->reason = "TLS handshake with the client not completed in time";
            conn_close(c);
            break;
        case S_IHEAD:
        case S_HEAD:
            if (c->in.len) {
                conn_refuse(c, 408, "error", "request head not received in time");
                break;
            }
            if (c->state == S_IHEAD)
                c->reason = "no request inside the tunnel";
            /* fall through */
        default:
            if (c->state == S_RELAY)
                c->end = "idle timeout";
            conn_close(c);
        }
    }
}

/* ---- setup ---- */

static int tls_context(rc_proxy *px, rc_error *err)
{
    static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    px->tls = SSL_CTX_new(TLS_client_method());
    if (!px->tls)
        return rc_error_set(err, RC_ENOMEM, "egress: cannot create the TLS context");
    SSL_CTX_set_min_proto_version(px->tls, TLS1_2_VERSION);
    SSL_CTX_set_verify(px->tls, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_options(px->tls, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(px->tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_alpn_protos(px->tls, alpn, sizeof alpn);
    if (px->cfg.ca_file) {
        if (SSL_CTX_load_verify_locations(px->tls, px->cfg.ca_file, NULL) != 1)
            return rc_error_set(err, RC_EINVAL, "egress: cannot load CA file %s", px->cfg.ca_file);
    } else if (SSL_CTX_set_default_verify_paths(px->tls) != 1) {
        return rc_error_set(err, RC_EIO, "egress: cannot load the system trust store");
    }
    return 0;
}

/* The server side of interception: TLS 1.2+, HTTP/1.1 by ALPN, SNI checked against the CONNECT
 * target, no session tickets (each tunnel is one request), certificates set per connection. */
static int tls_server_context(rc_proxy *px, rc_error *err)
{
    if (!px->cfg.ca)
        return 0;
    px->tls_srv = SSL_CTX_new(TLS_server_method());
    if (!px->tls_srv)
        return rc_error_set(err, RC_ENOMEM, "egress: cannot create the interception TLS context");
    SSL_CTX_set_min_proto_version(px->tls_srv, TLS1_2_VERSION);
    SSL_CTX_set_options(px->tls_srv, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION |
                                         SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_num_tickets(px->tls_srv, 0);
    SSL_CTX_set_session_cache_mode(px->tls_srv, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(px->tls_srv,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_tlsext_servername_callback(px->tls_srv, on_client_sni);
    SSL_CTX_set_alpn_select_cb(px->tls_srv, on_client_alpn, NULL);
    return 0;
}

/* forwardURL rules need the operator's key to sign their tokens: refuse to start without it. */
static int forward_setup(rc_proxy *px, rc_error *err)
{
    int r;
    if (px->cfg.forward_key_file) {
        r = rc_forward_key_load(px->cfg.forward_key_file, &px->fwd_key, err);
        if (r < 0)
            return r;
        px->have_fwd_key = true;
    }
    if (rc_policy_has_forward(px->cfg.policy) && !px->have_fwd_key)
        return rc_error_set(err, RC_EINVAL,
                            "egress: the policy has forwardURL rules but no forward key is "
                            "configured (RUNCELL_FORWARD_KEY_FILE)");
    return 0;
}

/* Injected values must never reach a log line or an audit line: redact them everywhere. */
static void register_secrets(const rc_policy *pol, bool reg)
{
    for (size_t i = 0; i < rc_policy_domain_count(pol); i++) {
        const rc_policy_domain *d = rc_policy_domain_at(pol, i);
        for (size_t j = 0; j < d->n_rules; j++)
            for (size_t k = 0; k < d->rules[j].n_set_headers; k++) {
                const char *v = d->rules[j].set_headers[k].value;
                if (strlen(v) < RC_LOG_SECRET_MIN_LEN)
                    continue;
                if (reg)
                    (void)rc_log_register_secret(v, NULL);
                else
                    rc_log_unregister_secret(v);
            }
    }
}

static int epoll_setup(rc_proxy *px, rc_error *err)
{
    px->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (px->epfd < 0)
        return rc_error_sys(err, RC_EIO, "egress: epoll_create1 failed");
    px->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (px->stopfd < 0)
        return rc_error_sys(err, RC_EIO, "egress: eventfd failed");
    px->lep = (endpoint){.fd = px->lfd};
    px->stopep = (endpoint){.fd = px->stopfd};
    px->resep = (endpoint){.fd = rc_resolver_fd(px->resolver)};
    ep_set(px, &px->lep, EPOLLIN);
    ep_set(px, &px->stopep, EPOLLIN);
    ep_set(px, &px->resep, EPOLLIN);
    if (!px->lep.registered || !px->stopep.registered)
        return rc_error_sys(err, RC_EIO, "egress: epoll_ctl failed");
    return 0;
}

static void config_defaults(rc_proxy_config *c)
{
    if (!c->max_conns)
        c->max_conns = 512;
    if (!c->head_timeout_ms)
        c->head_timeout_ms = 30000;
    if (!c->connect_timeout_ms)
        c->connect_timeout_ms = 10000;
    if (!c->idle_timeout_ms)
        c->idle_timeout_ms = 600000;
}

int rc_proxy_new(const rc_proxy_config *cfg, int listen_fd, rc_proxy **ret, rc_error *err)
{
    _cleanup_(rc_proxy_freep) rc_proxy *px = calloc(1, sizeof *px);
    int r;

    if (!px) {
        close(listen_fd);
        return rc_error_set(err, RC_ENOMEM, "egress: out of memory");
    }
    px->lfd = listen_fd;
    px->epfd = px->stopfd = -1;
    px->cfg = *cfg;
    config_defaults(&px->cfg);
    if (!cfg->policy)
        return rc_error_set(err, RC_EINVAL, "egress: no policy");
    r = rc_resolver_new(cfg->hosts_file, cfg->resolver_threads, &px->resolver, err);
    if (r < 0)
        return r;
    r = tls_context(px, err);
    if (r < 0)
        return r;
    r = tls_server_context(px, err);
    if (r < 0)
        return r;
    r = forward_setup(px, err);
    if (r < 0)
        return r;
    r = epoll_setup(px, err);
    if (r < 0)
        return r;
    register_secrets(cfg->policy, true);
    *ret = take_ptr(px);
    return 0;
}

void rc_proxy_stop(rc_proxy *p)
{
    uint64_t one = 1;
    if (write(p->stopfd, &one, sizeof one) < 0) {
        /* nothing useful to do in a signal handler */
    }
}

static void dispatch(rc_proxy *px, struct epoll_event *ev, bool *stop)
{
    endpoint *ep = ev->data.ptr;
    if (ep == &px->stopep) {
        *stop = true;
    } else if (ep == &px->lep) {
        on_listen(px);
    } else if (ep == &px->resep) {
        on_resolver(px);
    } else if (ep->c->state != S_CLOSED) {
        conn_event(ep->c, ep == &ep->c->up, ev->events);
    }
}

int rc_proxy_run(rc_proxy *px, rc_error *err)
{
    struct epoll_event evs[EPOLL_BATCH];
    sigset_t pipe_set, old;
    uint64_t next_sweep = now_ms() + 1000;
    bool stop = false;

    (void)err;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    while (!stop) {
        int n = epoll_wait(px->epfd, evs, EPOLL_BATCH, 250);
        for (int i = 0; i < n; i++)
            dispatch(px, &evs[i], &stop);
        if (now_ms() >= next_sweep) {
            sweep_timeouts(px);
            next_sweep = now_ms() + 1000;
        }
        free_zombies(px);
    }
    while (px->conns) {
        if (!px->conns->end && px->conns->state == S_RELAY)
            px->conns->end = "proxy stopped";
        conn_close(px->conns);
    }
    free_zombies(px);
    {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) > 0) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}

void rc_proxy_free(rc_proxy *px)
{
    if (!px)
        return;
    while (px->conns)
        conn_close(px->conns);
    free_zombies(px);
    if (px->cfg.policy)
        register_secrets(px->cfg.policy, false);
    rc_resolver_free(px->resolver);
    SSL_CTX_free(px->tls);
    SSL_CTX_free(px->tls_srv);
    rc_forward_key_clear(&px->fwd_key);
    if (px->epfd >= 0)
        close(px->epfd);
    if (px->stopfd >= 0)
        close(px->stopfd);
    if (px->lfd >= 0)
        close(px->lfd);
    free(px);
}
