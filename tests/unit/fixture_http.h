/* fixture_http.h - a real HTTP/1.1 server for unit tests, on its own threads.
 *
 * Listens on 127.0.0.1 with an ephemeral port and, optionally, on a unix socket path. Each request
 * it receives is recorded (method, target, raw headers, body) and answered with the next entry of
 * a script of canned responses: status, headers, body, a delay, chunks streamed with pauses, a
 * connection held open in silence, or a close without any answer. When the script runs out it
 * answers 500 with x-should-retry: false. Keep-alive is supported; every connection gets its own
 * thread, so several clients can be connected at once. */
#ifndef RUNCELL_FIXTURE_HTTP_H
#define RUNCELL_FIXTURE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fixture_http fixture_http;

typedef struct fixture_http_response {
    int status;                /* 0 = 200 */
    const char *headers;       /* extra header lines, each ending in "\r\n"; NULL = none */
    const char *body;          /* NULL = no body */
    size_t body_len;           /* 0 = strlen(body) */
    int delay_ms;              /* wait before answering */
    const char *const *chunks; /* NULL-terminated: sent chunked after the headers */
    int chunk_pause_ms;        /* pause before each chunk */
    int hold_ms;               /* after the chunks: stay silent this long, then close unfinished */
    bool close_without_answer; /* read the request, then close the connection */
    bool no_content_length;    /* close-delimited body (Connection: close) */
} fixture_http_response;

typedef struct fixture_http_request {
    char method[16];
    char target[4096]; /* as received: path + query, or an absolute URL through a proxy */
    char *headers;     /* raw header lines after the request line, "\r\n"-separated */
    char *body;
    size_t body_len;
    int64_t received_ms; /* CLOCK_MONOTONIC */
} fixture_http_request;

/* Start listening (unix_path may be NULL). Returns NULL on failure (with a message on stderr). */
fixture_http *fixture_http_start(const char *unix_path);
void fixture_http_stop(fixture_http *fx);
int fixture_http_port(const fixture_http *fx);
/* "http://127.0.0.1:<port>" */
const char *fixture_http_url(const fixture_http *fx);

/* Append a deep copy of r to the script. */
void fixture_http_push(fixture_http *fx, const fixture_http_response *r);
void fixture_http_push_simple(fixture_http *fx, int status, const char *headers, const char *body);
/* Forget the script and the recorded requests. */
void fixture_http_reset(fixture_http *fx);

size_t fixture_http_count(fixture_http *fx);
/* Recorded request i (stable until reset/stop), or NULL. */
const fixture_http_request *fixture_http_get(fixture_http *fx, size_t i);
/* Wait until at least n requests were recorded; false on timeout. */
bool fixture_http_wait(fixture_http *fx, size_t n, int timeout_ms);
/* Value of the first header called name (case-insensitive), copied into buf; NULL if absent. */
const char *fixture_http_header(const fixture_http_request *req, const char *name, char *buf,
                                size_t bufsz);
/* Number of header lines called name. */
int fixture_http_header_count(const fixture_http_request *req, const char *name);

#endif
