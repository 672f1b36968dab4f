/* http.h - HTTP/1.1 and HTTP/2 client on libcurl for the Managed Agents API (protocol.md §2).
 *
 * One rc_http_client wraps one curl easy handle driven through a private multi handle, so a
 * transfer can wait on a cancel eventfd as well as on its sockets: a cancel token aborts a
 * transfer or a back-off sleep at once, not at the next progress tick. The transport is locked
 * down whatever the environment says: no proxy unless one is configured explicitly (http_proxy,
 * HTTPS_PROXY, ALL_PROXY and NO_PROXY are ignored), no redirects, http/https only, TLS peer and
 * host verification always on, no decompression, no cookies, no netrc, never verbose.
 *
 * rc_http_send() performs one logical request with the core retry policy of §2.7.1 and returns
 * 0 whenever a response arrived (any status: the caller decides what a status means, see api.h);
 * it returns a negative code only when no usable response arrived (transport failure, timeout,
 * cancel, oversized body). The retry policy itself is exposed as pure functions so it can be
 * tested without a network.
 *
 * Thread-safety: a client is used by one thread at a time (create one per thread). The cancel
 * token is the exception: rc_http_cancel_trigger() may be called from any thread or from a
 * signal handler. curl_global_init runs once per process (pthread_once) on the first
 * rc_http_client_new(). */
#ifndef RUNCELL_HTTP_H
#define RUNCELL_HTTP_H

#include "buf.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define RC_HTTP_TIMEOUT_DEFAULT_MS         600000L /* per attempt, §2.7.1 */
#define RC_HTTP_CONNECT_TIMEOUT_DEFAULT_MS 10000L
#define RC_HTTP_MAX_BODY_DEFAULT           (16u * 1024 * 1024)
#define RC_HTTP_ATTEMPTS_DEFAULT           3            /* 2 retries, §2.7.1 */
#define RC_HTTP_NO_TIMEOUT                 (-1L)        /* rc_http_request.timeout_ms for streams */
#define RC_HTTP_RETRY_MAX_HEADER_MS        2147483647LL /* 2^31-1, §2.7.1 */

/* ---- cancel token ---------------------------------------------------------------------- */

/* A sticky cancel flag plus an eventfd, shareable by several clients (one SIGTERM cancels every
 * transfer and back-off sleep that watches it). Owned by whoever created it. */
typedef struct rc_http_cancel rc_http_cancel;

int rc_http_cancel_new(rc_http_cancel **ret_cancel, rc_error *err);
void rc_http_cancel_free(rc_http_cancel *c);
/* Async-signal-safe and thread-safe. */
void rc_http_cancel_trigger(rc_http_cancel *c);
/* Clear the flag (and drain the eventfd) so the token can be used again. */
void rc_http_cancel_reset(rc_http_cancel *c);
bool rc_http_cancel_is_triggered(const rc_http_cancel *c);
/* Sleep ms milliseconds unless the token fires first: 0 after the full sleep, -RC_ECANCELED
 * otherwise. c may be NULL (plain sleep). */
int rc_http_cancel_sleep(rc_http_cancel *c, int64_t ms, rc_error *err);

/* ---- retry policy (pure) ----------------------------------------------------------------- */

/* Uniform random value in [0, 1); ctx is the caller's. */
typedef double (*rc_http_rand_fn)(void *ctx);
/* Wall-clock seconds (for Retry-After HTTP dates). */
typedef time_t (*rc_http_now_fn)(void *ctx);

/* §2.7.1: should this outcome be retried (attempts permitting)?
 * transport_error: 0 when a response arrived, else the negative RC_E* code of the failure
 * (-RC_EHTTP connection failures and -RC_ETIMEOUT timeouts are retried, nothing else is).
 * x_should_retry: the header's value or NULL; "true"/"false" override the status rule.
 * 2xx is never retried. */
bool rc_http_should_retry(long status, const char *x_should_retry, int transport_error);

/* §2.7.2: any 4xx except 408, 409 and 429. */
bool rc_http_is_fatal_4xx(long status);

/* §2.7.1: delay before the next attempt, retries_made = retries already made (0 for the first
 * retry). retry-after-ms (float ms) wins, then retry-after (float seconds or an HTTP date,
 * compared with now); a header value is used only when > 0 and <= 2^31-1 ms. Otherwise
 * min(500 ms * 2^n, 8 s) * (1 - 0.25 * U) with U from rand_fn (NULL = getrandom). */
int64_t rc_http_retry_delay_ms(int retries_made, const char *retry_after_ms,
                               const char *retry_after, time_t now, rc_http_rand_fn rand_fn,
                               void *rand_ctx);

/* ---- query strings and paths (§2.2) ------------------------------------------------------ */

/* Append "key=value" (with '&' when q is not empty) to a query held in q (no leading '?').
 * The value is percent-encoded: RFC 3986 unreserved characters are kept, everything else is
 * %XX (':' -> %3A, '+' -> %2B, ' ' -> %20). The key is encoded the same way except that '['
 * and ']' are kept, so "types[]" and "created_at[gt]" go out as written. value NULL: nothing
 * is appended (absent keys are omitted, §2.2.2). */
int rc_http_query_add(rc_buf *q, const char *key, const char *value, rc_error *err);
int rc_http_query_add_int(rc_buf *q, const char *key, long long value, rc_error *err);
/* Append key[]=v for each of the n values ("types" -> "types[]=a&types[]=b"). */
int rc_http_query_add_array(rc_buf *q, const char *key, const char *const *values, size_t n,
                            rc_error *err);
/* Append "/" + the percent-encoded segment to path. Empty, "." and ".." are refused
 * (-RC_EINVAL): identifiers from outside must not be able to walk the path. */
int rc_http_path_add_segment(rc_buf *path, const char *segment, rc_error *err);
/* Percent-encode s into out (unreserved kept; keep_brackets also keeps '[' and ']'). */
int rc_http_percent_encode(rc_buf *out, const char *s, bool keep_brackets, rc_error *err);

/* ---- client ------------------------------------------------------------------------------ */

typedef struct rc_http_config {
    /* "http://host[:port][/prefix]" or "https://..."; no userinfo, query or fragment. With
     * unix_socket set it may be NULL ("http://localhost"): the host is then only the Host
     * header. */
    const char *base_url;
    const char *unix_socket; /* connect to this AF_UNIX path instead of TCP */
    const char *ca_file;     /* extra CA bundle; verification is on either way */
    const char *proxy;       /* explicit proxy URL; NULL = never a proxy (env ignored) */
    const char *no_proxy;    /* with proxy: hosts that bypass it (NULL = none) */
    const char *user_agent;  /* NULL = "runcell" */
    long connect_timeout_ms; /* 0 = RC_HTTP_CONNECT_TIMEOUT_DEFAULT_MS */
    long timeout_ms;         /* per attempt; 0 = RC_HTTP_TIMEOUT_DEFAULT_MS */
    size_t max_body;         /* response body cap; 0 = RC_HTTP_MAX_BODY_DEFAULT */
    int max_attempts;        /* 0 = RC_HTTP_ATTEMPTS_DEFAULT; 1 = no retries */
    rc_http_cancel *cancel;  /* borrowed, may be shared; NULL = the client makes its own */
    rc_http_rand_fn rand_fn; /* back-off jitter source; NULL = getrandom */
    void *rand_ctx;
    rc_http_now_fn now_fn; /* clock for HTTP-date Retry-After; NULL = time() */
    void *now_ctx;
} rc_http_config;

typedef struct rc_http_client rc_http_client;

int rc_http_client_new(const rc_http_config *cfg, rc_http_client **ret_client, rc_error *err);
void rc_http_client_free(rc_http_client *c);
/* The token this client watches (the configured one or its own); trigger it from any thread to
 * abort the client's current transfer or back-off. */
rc_http_cancel *rc_http_client_cancel(rc_http_client *c);

/* ---- requests ---------------------------------------------------------------------------- */

#define RC_HTTP_HEADER_VALUE_MAX 256

typedef struct rc_http_response {
    long status;  /* 0 until a status line arrived */
    int attempts; /* attempts made, including the last */
    bool headers_done;
    char content_type[RC_HTTP_HEADER_VALUE_MAX];
    char retry_after[64];
    char retry_after_ms[64];
    char x_should_retry[16];
    char request_id[128];
    rc_buf body; /* capped at the client's max_body; unused by a streamed 2xx */
} rc_http_response;

/* Start from a zeroed object ({0}); rc_http_send resets it (body max = the client's max_body)
 * and fills it as far as the exchange got, also on failure (attempts is always set). Release it
 * with rc_http_response_free after any number of sends. */
void rc_http_response_free(rc_http_response *r);

/* Streaming callbacks (SSE): called only for a 2xx response. Return 0 to continue, non-zero to
 * abort the transfer (rc_http_send then returns -RC_ECANCELED). */
typedef int (*rc_http_headers_fn)(const rc_http_response *resp, void *userdata);
typedef int (*rc_http_data_fn)(const char *data, size_t len, void *userdata);

typedef struct rc_http_request {
    const char *method;         /* "GET", "POST", "DELETE", ... */
    const char *path;           /* absolute path ("/v1/..."), appended to the base URL */
    const char *query;          /* built with rc_http_query_add (no '?'); NULL or "" = none */
    const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
    const char *body;           /* NULL = no body (a POST then sends Content-Length: 0) */
    size_t body_len;
    /* 0 = client default; RC_HTTP_NO_TIMEOUT = none (streams). Per attempt. */
    long timeout_ms;
    /* Give up (-RC_ETIMEOUT, not retried) when no byte arrives for this long; 0 = off. */
    long inactivity_ms;
    /* Absolute CLOCK_MONOTONIC deadline in ms (rc_http_now_mono_ms) for the whole call,
     * attempts and back-off included; 0 = none. Passing it ends the call with -RC_ETIMEOUT. */
    int64_t deadline_mono_ms;
    int max_attempts; /* 0 = the client's */
    /* Streaming: when on_data is set, a 2xx body goes to on_data (after on_headers) instead of
     * resp->body, and the call is never retried once on_headers has fired. */
    rc_http_headers_fn on_headers;
    rc_http_data_fn on_data;
    void *userdata;
} rc_http_request;

/* Perform req with retries. 0: a response arrived (see resp->status); otherwise -RC_EHTTP
 * (connection/transfer failure), -RC_ETIMEOUT, -RC_ECANCELED (token or callback),
 * -RC_ETOOBIG (body over max_body) or -RC_EINVAL. Error messages name the method and path
 * (never headers or bodies). */
int rc_http_send(rc_http_client *c, const rc_http_request *req, rc_http_response *resp,
                 rc_error *err);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t rc_http_now_mono_ms(void);

/* Case-insensitive check that a content-type's media type is JSON ("application/json",
 * anything containing it, or "+json"), §2.5.2. */
bool rc_http_content_type_is_json(const char *content_type);

#endif
