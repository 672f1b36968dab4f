/* http.c - the libcurl transport behind every API call (see http.h for the contract).
 *
 * Shape: one easy handle per client, reset and fully reconfigured before every attempt so no
 * option from an earlier request (or from the environment) can leak into the next one, and
 * driven by a private multi handle so the wait can include the cancel eventfd. The retry loop in
 * rc_http_send() is the only place that sleeps; its policy lives in the pure functions at the
 * top so tests can check the table without sockets. */
#include "http.h"

#include "cleanup.h"
#include "log.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#define BACKOFF_BASE_MS  500
#define BACKOFF_CAP_MS   8000
#define POLL_SLICE_MS    1000
#define URL_MAX          8192
#define HEADER_LINE_MAX  8192
#define DEFAULT_UA       "runcell"
#define UNIX_DEFAULT_URL "http://localhost"

/* ---- process-wide libcurl init ------------------------------------------------------------ */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_ALL);
}

/* ---- cancel token ------------------------------------------------------------------------- */

struct rc_http_cancel {
    int efd;
    atomic_bool flag;
};

int rc_http_cancel_new(rc_http_cancel **ret_cancel, rc_error *err)
{
    _cleanup_free_ rc_http_cancel *c = calloc(1, sizeof *c);
    if (!c)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->efd < 0)
        return rc_error_sys(err, RC_EIO, "eventfd");
    atomic_init(&c->flag, false);
    *ret_cancel = take_ptr(c);
    return 0;
}

void rc_http_cancel_free(rc_http_cancel *c)
{
    if (!c)
        return;
    if (c->efd >= 0)
        close(c->efd);
    free(c);
}

void rc_http_cancel_trigger(rc_http_cancel *c)
{
    uint64_t one = 1;
    int saved = errno;
    if (!c)
        return;
    atomic_store(&c->flag, true);
    /* A full counter (EAGAIN) still leaves the fd readable, which is all that matters. */
    if (write(c->efd, &one, sizeof one) < 0) {
    }
    errno = saved;
}

void rc_http_cancel_reset(rc_http_cancel *c)
{
    uint64_t v;
    if (!c)
        return;
    atomic_store(&c->flag, false);
    if (read(c->efd, &v, sizeof v) < 0) {
    }
}

bool rc_http_cancel_is_triggered(const rc_http_cancel *c)
{
    return c && atomic_load(&((rc_http_cancel *)c)->flag);
}

int64_t rc_http_now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rc_http_cancel_sleep(rc_http_cancel *c, int64_t ms, rc_error *err)
{
    int64_t end = rc_http_now_mono_ms() + (ms > 0 ? ms : 0);
    for (;;) {
        int64_t left;
        struct pollfd pfd = {.fd = c ? c->efd : -1, .events = POLLIN};
        if (rc_http_cancel_is_triggered(c))
            return rc_error_set(err, RC_ECANCELED, "canceled");
        left = end - rc_http_now_mono_ms();
        if (left <= 0)
            return 0;
        if (poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left) < 0 && errno != EINTR)
            return rc_error_sys(err, RC_EIO, "poll");
    }
}

/* ---- retry policy ------------------------------------------------------------------------- */

bool rc_http_is_fatal_4xx(long status)
{
    return status >= 400 && status <= 499 && status != 408 && status != 409 && status != 429;
}

bool rc_http_should_retry(long status, const char *x_should_retry, int transport_error)
{
    if (transport_error)
        return transport_error == -RC_EHTTP || transport_error == -RC_ETIMEOUT;
    if (status >= 200 && status <= 299)
        return false;
    if (x_should_retry && strcasecmp(x_should_retry, "true") == 0)
        return true;
    if (x_should_retry && strcasecmp(x_should_retry, "false") == 0)
        return false;
    return status == 408 || status == 409 || status == 429 || status >= 500;
}

/* Strict decimal: optional sign, digits with at most one '.', surrounding blanks allowed. No
 * exponents, hex, "inf" or "nan" (strtod alone would take all of those). */
static bool parse_decimal(const char *s, double *ret)
{
    const char *p = s;
    char *end;
    int digits = 0, dots = 0;
    double v;

    while (*p == ' ' || *p == '\t')
        p++;
    const char *start = p;
    if (*p == '-' || *p == '+')
        p++;
    for (; *p; p++) {
        if (*p >= '0' && *p <= '9')
            digits++;
        else if (*p == '.' && dots == 0)
            dots++;
        else
            break;
    }
    const char *stop = p;
    while (*p == ' ' || *p == '\t')
        p++;
    if (digits == 0 || *p != '\0')
        return false;
    errno = 0;
    v = strtod(start, &end);
    if (end != stop || errno == ERANGE)
        return false;
    *ret = v;
    return true;
}

static int64_t header_delay_ms(double ms)
{
    int64_t whole;
    if (!(ms > 0) || ms > (double)RC_HTTP_RETRY_MAX_HEADER_MS)
        return -1;
    whole = (int64_t)ms;
    return (double)whole < ms ? whole + 1 : whole; /* round up: a positive value never sleeps 0 */
}

static double default_rand(void *ctx)
{
    uint64_t x = 0;
    (void)ctx;
    if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x)
        x = (uint64_t)rc_http_now_mono_ms() * 0x9E3779B97F4A7C15ull;
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

int64_t rc_http_retry_delay_ms(int retries_made, const char *retry_after_ms,
                               const char *retry_after, time_t now, rc_http_rand_fn rand_fn,
                               void *rand_ctx)
{
    double v, u;
    int64_t base;

    if (retry_after_ms && *retry_after_ms && parse_decimal(retry_after_ms, &v)) {
        int64_t d = header_delay_ms(v);
        if (d > 0)
            return d;
    } else if (retry_after && *retry_after) {
        int64_t d = -1;
        if (parse_decimal(retry_after, &v)) {
            d = header_delay_ms(v * 1000.0);
        } else {
            time_t when = curl_getdate(retry_after, NULL);
            if (when != (time_t)-1)
                d = header_delay_ms(((double)when - (double)now) * 1000.0);
        }
        if (d > 0)
            return d;
    }
    if (retries_made < 0)
        retries_made = 0;
    base = retries_made >= 5 ? BACKOFF_CAP_MS : (int64_t)BACKOFF_BASE_MS << retries_made;
    if (base > BACKOFF_CAP_MS)
        base = BACKOFF_CAP_MS;
    u = (rand_fn ? rand_fn : default_rand)(rand_ctx);
    if (!(u >= 0.0) || u >= 1.0)
        u = 0.0;
    return (int64_t)((double)base * (1.0 - 0.25 * u));
}

/* ---- query strings and paths -------------------------------------------------------------- */

static bool is_unreserved(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

int rc_http_percent_encode(rc_buf *out, const char *s, bool keep_brackets, rc_error *err)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int r;
        if (is_unreserved(*p) || (keep_brackets && (*p == '[' || *p == ']'))) {
            r = rc_buf_putc(out, (char)*p, err);
        } else {
            char enc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            r = rc_buf_append(out, enc, sizeof enc, err);
        }
        if (r < 0)
            return r;
    }
    return 0;
}

int rc_http_query_add(rc_buf *q, const char *key, const char *value, rc_error *err)
{
    int r;
    if (!key || !*key)
        return rc_error_set(err, RC_EINVAL, "empty query key");
    if (!value)
        return 0;
    if (q->len > 0 && (r = rc_buf_putc(q, '&', err)) < 0)
        return r;
    if ((r = rc_http_percent_encode(q, key, true, err)) < 0)
        return r;
    if ((r = rc_buf_putc(q, '=', err)) < 0)
        return r;
    return rc_http_percent_encode(q, value, false, err);
}

int rc_http_query_add_int(rc_buf *q, const char *key, long long value, rc_error *err)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", value);
    return rc_http_query_add(q, key, num, err);
}

int rc_http_query_add_array(rc_buf *q, const char *key, const char *const *values, size_t n,
                            rc_error *err)
{
    char akey[256];
    int len = snprintf(akey, sizeof akey, "%s[]", key ? key : "");
    if (!key || !*key || len < 0 || (size_t)len >= sizeof akey)
        return rc_error_set(err, RC_EINVAL, "bad query array key");
    for (size_t i = 0; i < n; i++) {
        int r = rc_http_query_add(q, akey, values[i], err);
        if (r < 0)
            return r;
    }
    return 0;
}

int rc_http_path_add_segment(rc_buf *path, const char *segment, rc_error *err)
{
    int r;
    if (!segment || !*segment || strcmp(segment, ".") == 0 || strcmp(segment, "..") == 0)
        return rc_error_set(err, RC_EINVAL, "invalid path segment");
    if ((r = rc_buf_putc(path, '/', err)) < 0)
        return r;
    return rc_http_percent_encode(path, segment, false, err);
}

bool rc_http_content_type_is_json(const char *ct)
{
    char media[RC_HTTP_HEADER_VALUE_MAX];
    size_t n = 0;

    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    while (ct[n] && ct[n] != ';' && n + 1 < sizeof media) {
        media[n] = ct[n];
        n++;
    }
    while (n > 0 && (media[n - 1] == ' ' || media[n - 1] == '\t'))
        n--;
    media[n] = '\0';
    if (strcasestr(media, "application/json"))
        return true;
    return n >= 5 && strcasecmp(media + n - 5, "+json") == 0;
}

/* ---- client ------------------------------------------------------------------------------- */

struct rc_http_client {
    CURL *easy;
    CURLM *multi;
    char *base_url; /* no trailing '/' */
    char *unix_socket;
    char *ca_file;
    char *proxy;
    char *no_proxy;
    char *user_agent;
    long connect_timeout_ms;
    long timeout_ms;
    size_t max_body;
    int max_attempts;
    rc_http_cancel *cancel;
    rc_http_cancel *own_cancel;
    rc_http_rand_fn rand_fn;
    void *rand_ctx;
    rc_http_now_fn now_fn;
    void *now_ctx;
    char errbuf[CURL_ERROR_SIZE];
};

static int dup_opt(const char *s, char **ret, rc_error *err)
{
    *ret = NULL;
    if (!s)
        return 0;
    *ret = strdup(s);
    return *ret ? 0 : rc_error_set(err, RC_ENOMEM, "out of memory");
}

/* Accept only http(s) URLs without userinfo, query or fragment. The URL itself is never put in
 * an error message: a malformed one might carry credentials. */
static int check_base_url(const char *url, rc_error *err)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *part = NULL;
    int r = 0;

    if (!u)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
        r = rc_error_set(err, RC_EINVAL, "base URL is not a valid http or https URL");
    else if (curl_url_get(u, CURLUPART_USER, &part, 0) != CURLUE_NO_USER ||
             curl_url_get(u, CURLUPART_PASSWORD, &part, 0) != CURLUE_NO_PASSWORD)
        r = rc_error_set(err, RC_EINVAL, "base URL must not contain credentials");
    else if (curl_url_get(u, CURLUPART_QUERY, &part, 0) != CURLUE_NO_QUERY ||
             curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) != CURLUE_NO_FRAGMENT)
        r = rc_error_set(err, RC_EINVAL, "base URL must not contain a query or fragment");
    curl_free(part);
    curl_free(scheme);
    curl_url_cleanup(u);
    return r;
}

static int client_copy_config(rc_http_client *c, const rc_http_config *cfg, rc_error *err)
{
    const char *base = cfg->base_url ? cfg->base_url : UNIX_DEFAULT_URL;
    size_t n;
    int r;

    if (!cfg->base_url && !cfg->unix_socket)
        return rc_error_set(err, RC_EINVAL, "HTTP client needs a base URL or a unix socket");
    if ((r = check_base_url(base, err)) < 0)
        return r;
    if ((r = dup_opt(base, &c->base_url, err)) < 0 ||
        (r = dup_opt(cfg->unix_socket, &c->unix_socket, err)) < 0 ||
        (r = dup_opt(cfg->ca_file, &c->ca_file, err)) < 0 ||
        (r = dup_opt(cfg->proxy, &c->proxy, err)) < 0 ||
        (r = dup_opt(cfg->no_proxy, &c->no_proxy, err)) < 0 ||
        (r = dup_opt(cfg->user_agent ? cfg->user_agent : DEFAULT_UA, &c->user_agent, err)) < 0)
        return r;
    n = strlen(c->base_url);
    while (n > 0 && c->base_url[n - 1] == '/')
        c->base_url[--n] = '\0';
    c->connect_timeout_ms =
        cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : RC_HTTP_CONNECT_TIMEOUT_DEFAULT_MS;
    c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : RC_HTTP_TIMEOUT_DEFAULT_MS;
    c->max_body = cfg->max_body > 0 ? cfg->max_body : RC_HTTP_MAX_BODY_DEFAULT;
    c->max_attempts = cfg->max_attempts > 0 ? cfg->max_attempts : RC_HTTP_ATTEMPTS_DEFAULT;
    c->rand_fn = cfg->rand_fn;
    c->rand_ctx = cfg->rand_ctx;
    c->now_fn = cfg->now_fn;
    c->now_ctx = cfg->now_ctx;
    return 0;
}

int rc_http_client_new(const rc_http_config *cfg, rc_http_client **ret_client, rc_error *err)
{
    rc_http_client *c;
    int r;

    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return rc_error_set(err, RC_EHTTP, "curl_global_init failed");
    c = calloc(1, sizeof *c);
    if (!c)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    r = client_copy_config(c, cfg, err);
    if (r == 0 && !cfg->cancel)
        r = rc_http_cancel_new(&c->own_cancel, err);
    if (r == 0) {
        c->cancel = cfg->cancel ? cfg->cancel : c->own_cancel;
        c->easy = curl_easy_init();
        c->multi = curl_multi_init();
        if (!c->easy || !c->multi)
            r = rc_error_set(err, RC_ENOMEM, "curl handle allocation failed");
    }
    if (r < 0) {
        rc_http_client_free(c);
        return r;
    }
    *ret_client = c;
    return 0;
}

void rc_http_client_free(rc_http_client *c)
{
    if (!c)
        return;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    rc_http_cancel_free(c->own_cancel);
    free(c->base_url);
    free(c->unix_socket);
    free(c->ca_file);
    free(c->proxy);
    free(c->no_proxy);
    free(c->user_agent);
    free(c);
}

rc_http_cancel *rc_http_client_cancel(rc_http_client *c)
{
    return c->cancel;
}

/* ---- one transfer ------------------------------------------------------------------------- */

void rc_http_response_free(rc_http_response *r)
{
    rc_buf_free(&r->body);
}

static void response_reset(rc_http_response *r, size_t max_body)
{
    r->status = 0;
    r->headers_done = false;
    r->content_type[0] = r->retry_after[0] = r->retry_after_ms[0] = '\0';
    r->x_should_retry[0] = r->request_id[0] = '\0';
    rc_buf_free(&r->body);
    rc_buf_init(&r->body, max_body);
}

struct xfer {
    rc_http_client *c;
    const rc_http_request *req;
    rc_http_response *resp;
    int64_t last_activity_ms;
    bool streaming; /* a 2xx whose body goes to on_data; on_headers has been called */
    bool callback_abort;
    bool too_big;
    bool canceled;
    bool inactive;
    bool deadline_hit;
};

/* Trimmed copy of a header value into a fixed field (truncated when longer). */
static void store_header_value(char *dst, size_t dstsz, const char *v, size_t vlen)
{
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t' || v[vlen - 1] == '\r' ||
                        v[vlen - 1] == '\n'))
        vlen--;
    if (vlen >= dstsz)
        vlen = dstsz - 1;
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
}

static void capture_header(rc_http_response *r, const char *line, size_t len)
{
    static const struct {
        const char *name;
        size_t off, size;
    } wanted[] = {
        {"content-type", offsetof(rc_http_response, content_type), RC_HTTP_HEADER_VALUE_MAX},
        {"retry-after", offsetof(rc_http_response, retry_after), 64},
        {"retry-after-ms", offsetof(rc_http_response, retry_after_ms), 64},
        {"x-should-retry", offsetof(rc_http_response, x_should_retry), 16},
        {"request-id", offsetof(rc_http_response, request_id), 128},
    };
    const char *colon = memchr(line, ':', len);
    size_t nlen;

    if (!colon)
        return;
    nlen = (size_t)(colon - line);
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
        if (strlen(wanted[i].name) == nlen && strncasecmp(line, wanted[i].name, nlen) == 0) {
            store_header_value((char *)r + wanted[i].off, wanted[i].size, colon + 1,
                               len - nlen - 1);
            return;
        }
    }
}

/* End of a header block: interim 1xx blocks are skipped; a final block fixes the status and,
 * for a streamed 2xx, hands control to the caller's on_headers. Returns false to abort. */
static bool headers_complete(struct xfer *x)
{
    long status = 0;
    curl_easy_getinfo(x->c->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200)
        return true;
    x->resp->status = status;
    x->resp->headers_done = true;
    if (!x->req->on_data || status > 299)
        return true;
    x->streaming = true;
    if (x->req->on_headers && x->req->on_headers(x->resp, x->req->userdata) != 0) {
        x->callback_abort = true;
        return false;
    }
    return true;
}

static size_t on_header_line(char *data, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * nmemb;

    x->last_activity_ms = rc_http_now_mono_ms();
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        response_reset(x->resp, x->c->max_body);
        return len;
    }
    if (x->resp->headers_done) /* trailers */
        return len;
    if (len <= 2 && (len == 0 || data[0] == '\r' || data[0] == '\n'))
        return headers_complete(x) ? len : 0;
    if (len < HEADER_LINE_MAX)
        capture_header(x->resp, data, len);
    return len;
}

static size_t on_body_bytes(char *data, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * nmemb;

    x->last_activity_ms = rc_http_now_mono_ms();
    if (x->streaming) {
        if (x->req->on_data(data, len, x->req->userdata) != 0) {
            x->callback_abort = true;
            return 0;
        }
        return len;
    }
    if (rc_buf_append(&x->resp->body, data, len, NULL) < 0) {
        x->too_big = true;
        return 0;
    }
    return len;
}

/* Wipe header copies before freeing: one of them carries the bearer credential. */
static void slist_free_wiped(struct curl_slist *l)
{
    for (struct curl_slist *p = l; p; p = p->next)
        if (p->data)
            explicit_bzero(p->data, strlen(p->data));
    curl_slist_free_all(l);
}

static bool header_named(const char *line, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

static int build_headers(const rc_http_request *req, struct curl_slist **ret, rc_error *err)
{
    struct curl_slist *l = NULL, *t;
    bool has_ct = false;

    for (const char *const *h = req->headers; h && *h; h++) {
        if (strpbrk(*h, "\r\n") || !strchr(*h, ':')) {
            slist_free_wiped(l);
            return rc_error_set(err, RC_EINVAL, "%s %s: malformed request header", req->method,
                                req->path);
        }
        has_ct = has_ct || header_named(*h, "content-type");
        if (!(t = curl_slist_append(l, *h)))
            goto oom;
        l = t;
    }
    /* curl would add "Expect: 100-continue" to big bodies and a form content-type to POSTs. */
    if (!(t = curl_slist_append(l, "Expect:")))
        goto oom;
    l = t;
    if (!has_ct) {
        if (!(t = curl_slist_append(l, "Content-Type:")))
            goto oom;
        l = t;
    }
    *ret = l;
    return 0;
oom:
    slist_free_wiped(l);
    return rc_error_set(err, RC_ENOMEM, "out of memory");
}

static void setopt_method(CURL *e, const rc_http_request *req)
{
    const char *body = req->body ? req->body : "";
    if (strcmp(req->method, "GET") == 0 && !req->body) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0 ||
               strcmp(req->method, "PATCH") == 0 || req->body) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        if (strcmp(req->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    }
}

/* The locked-down transport: every option is set on every attempt (after curl_easy_reset). */
static void setopt_transport(rc_http_client *c, CURL *e)
{
    curl_easy_setopt(e, CURLOPT_VERBOSE, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 0L);
    /* "" = no proxy at all, whatever http_proxy/HTTPS_PROXY/ALL_PROXY say. */
    curl_easy_setopt(e, CURLOPT_PROXY, c->proxy ? c->proxy : "");
    curl_easy_setopt(e, CURLOPT_NOPROXY, c->proxy ? (c->no_proxy ? c->no_proxy : "") : "*");
    curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    if (c->unix_socket)
        curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, c->unix_socket);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_PROXY_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (c->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
}

static void setopt_request(struct xfer *x, const char *url, struct curl_slist *headers)
{
    rc_http_client *c = x->c;
    CURL *e = c->easy;
    long timeout = x->req->timeout_ms == RC_HTTP_NO_TIMEOUT ? 0
                   : x->req->timeout_ms > 0                 ? x->req->timeout_ms
                                                            : c->timeout_ms;

    curl_easy_reset(e);
    setopt_transport(c, e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
    if (!x->req->on_data)
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header_line);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body_bytes);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    setopt_method(e, x->req);
}

/* How long the loop may wait before it must look at the clock again. */
static int wait_budget_ms(const struct xfer *x, int64_t now)
{
    int64_t wait = POLL_SLICE_MS;
    if (x->req->inactivity_ms > 0 && x->last_activity_ms + x->req->inactivity_ms - now < wait)
        wait = x->last_activity_ms + x->req->inactivity_ms - now;
    if (x->req->deadline_mono_ms > 0 && x->req->deadline_mono_ms - now < wait)
        wait = x->req->deadline_mono_ms - now;
    return wait < 1 ? 1 : (int)wait;
}

/* Stop conditions the loop checks itself: cancel token, inactivity, call deadline. */
static bool xfer_must_stop(struct xfer *x)
{
    int64_t now = rc_http_now_mono_ms();
    if (rc_http_cancel_is_triggered(x->c->cancel))
        x->canceled = true;
    else if (x->req->inactivity_ms > 0 && now - x->last_activity_ms >= x->req->inactivity_ms)
        x->inactive = true;
    else if (x->req->deadline_mono_ms > 0 && now >= x->req->deadline_mono_ms)
        x->deadline_hit = true;
    return x->canceled || x->inactive || x->deadline_hit;
}

static CURLcode xfer_run(struct xfer *x)
{
    rc_http_client *c = x->c;
    CURLcode cc = CURLE_ABORTED_BY_CALLBACK;
    CURLMsg *m;
    int running = 1, left;

    x->last_activity_ms = rc_http_now_mono_ms();
    if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK)
        return CURLE_OUT_OF_MEMORY;
    while (running) {
        struct curl_waitfd wfd = {.fd = c->cancel->efd, .events = CURL_WAIT_POLLIN};
        if (curl_multi_perform(c->multi, &running) != CURLM_OK)
            break;
        if (!running || xfer_must_stop(x))
            break;
        if (curl_multi_poll(c->multi, &wfd, 1, wait_budget_ms(x, rc_http_now_mono_ms()), NULL) !=
            CURLM_OK)
            break;
    }
    while ((m = curl_multi_info_read(c->multi, &left)))
        if (m->msg == CURLMSG_DONE)
            cc = m->data.result;
    curl_multi_remove_handle(c->multi, c->easy);
    return cc;
}

static int xfer_error(const struct xfer *x, CURLcode cc, rc_error *err)
{
    const char *m = x->req->method, *p = x->req->path;
    const char *detail = x->c->errbuf[0] ? x->c->errbuf : curl_easy_strerror(cc);

    if (x->canceled || x->callback_abort)
        return rc_error_set(err, RC_ECANCELED, "%s %s: canceled", m, p);
    if (x->too_big || cc == CURLE_FILESIZE_EXCEEDED)
        return rc_error_set(err, RC_ETOOBIG, "%s %s: response body exceeds %zu bytes", m, p,
                            x->c->max_body);
    if (x->deadline_hit)
        return rc_error_set(err, RC_ETIMEOUT, "%s %s: call deadline passed", m, p);
    if (x->inactive)
        return rc_error_set(err, RC_ETIMEOUT, "%s %s: no data for %ld ms", m, p,
                            x->req->inactivity_ms);
    if (cc == CURLE_OPERATION_TIMEDOUT)
        return rc_error_set(err, RC_ETIMEOUT, "%s %s: timed out: %s", m, p, detail);
    if (cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL ||
        cc == CURLE_BAD_FUNCTION_ARGUMENT || cc == CURLE_NOT_BUILT_IN || cc == CURLE_UNKNOWN_OPTION)
        return rc_error_set(err, RC_EINVAL, "%s %s: request rejected by curl: %s", m, p, detail);
    return rc_error_set(err, RC_EHTTP, "%s %s: %s (curl error %d)", m, p, detail, (int)cc);
}

/* One attempt. 0 when a complete response arrived; *ret_streamed tells whether on_headers ran. */
static int attempt_once(struct xfer *x, const char *url, struct curl_slist *headers,
                        bool *ret_streamed, rc_error *err)
{
    CURLcode cc;

    x->streaming = x->callback_abort = x->too_big = false;
    x->canceled = x->inactive = x->deadline_hit = false;
    x->c->errbuf[0] = '\0';
    response_reset(x->resp, x->c->max_body);
    setopt_request(x, url, headers);
    cc = xfer_run(x);
    *ret_streamed = x->streaming;
    if (cc == CURLE_OK && !x->canceled && !x->inactive && !x->deadline_hit) {
        curl_easy_getinfo(x->c->easy, CURLINFO_RESPONSE_CODE, &x->resp->status);
        return 0;
    }
    return xfer_error(x, cc, err);
}

static int build_url(const rc_http_client *c, const rc_http_request *req, rc_buf *url,
                     rc_error *err)
{
    int r;
    if (!req->method || !*req->method || strpbrk(req->method, " \r\n") || !req->path ||
        req->path[0] != '/' || strpbrk(req->path, " \r\n?#"))
        return rc_error_set(err, RC_EINVAL, "bad HTTP request line");
    if (req->query && strpbrk(req->query, " \r\n#"))
        return rc_error_set(err, RC_EINVAL, "%s %s: bad query string", req->method, req->path);
    if ((r = rc_buf_appendf(url, err, "%s%s", c->base_url, req->path)) < 0)
        return r;
    if (req->query && *req->query)
        return rc_buf_appendf(url, err, "?%s", req->query);
    return 0;
}

/* Back-off before attempt n+1, or -1 when the call deadline would pass first. */
static int64_t next_delay(rc_http_client *c, const rc_http_request *req,
                          const rc_http_response *resp, int retries_made, bool had_response)
{
    time_t now = c->now_fn ? c->now_fn(c->now_ctx) : time(NULL);
    int64_t d = rc_http_retry_delay_ms(retries_made, had_response ? resp->retry_after_ms : NULL,
                                       had_response ? resp->retry_after : NULL, now, c->rand_fn,
                                       c->rand_ctx);
    if (req->deadline_mono_ms > 0 && rc_http_now_mono_ms() + d >= req->deadline_mono_ms)
        return -1;
    return d;
}

int rc_http_send(rc_http_client *c, const rc_http_request *req, rc_http_response *resp,
                 rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf url = RC_BUF_INIT(URL_MAX);
    struct curl_slist *headers = NULL;
    struct xfer x = {.c = c, .req = req, .resp = resp};
    int attempts = req->max_attempts > 0 ? req->max_attempts : c->max_attempts;
    int r;

    resp->attempts = 0;
    response_reset(resp, c->max_body);
    if ((r = build_url(c, req, &url, err)) < 0 || (r = build_headers(req, &headers, err)) < 0)
        return r;
    for (int n = 0;; n++) {
        rc_error aerr = {0};
        bool streamed = false, retry;
        int64_t delay;

        if (rc_http_cancel_is_triggered(c->cancel)) {
            r = rc_error_set(err, RC_ECANCELED, "%s %s: canceled", req->method, req->path);
            break;
        }
        resp->attempts = n + 1;
        r = attempt_once(&x, rc_buf_cstr(&url), headers, &streamed, &aerr);
        retry = n + 1 < attempts && !streamed && !x.deadline_hit &&
                rc_http_should_retry(resp->status, resp->x_should_retry, r);
        delay = retry ? next_delay(c, req, resp, n, r == 0) : -1;
        if (delay < 0) {
            if (r < 0 && err)
                *err = aerr;
            break;
        }
        if (r < 0)
            rc_log_warn("%s %s: attempt %d failed (%s); retrying in %lld ms", req->method,
                        req->path, n + 1, rc_errcode_name(r), (long long)delay);
        else
            rc_log_warn("%s %s: attempt %d got HTTP %ld; retrying in %lld ms", req->method,
                        req->path, n + 1, resp->status, (long long)delay);
        if ((r = rc_http_cancel_sleep(c->cancel, delay, err)) < 0) {
            rc_error_set(err, RC_ECANCELED, "%s %s: canceled during back-off", req->method,
                         req->path);
            break;
        }
    }
    slist_free_wiped(headers);
    return r;
}
