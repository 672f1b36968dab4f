/* stream.h - the session's live event stream, read on its own thread (protocol 9.2, 13.2, 13.4).
 *
 * A reader thread owns the SSE connection: it opens GET /v1/sessions/{id}/events/stream, feeds
 * the bytes to the SSE parser, and queues one item per stream event for the session thread,
 * preceded by an OPENED marker the moment the response headers arrive (the session lists the
 * history when it takes that marker: stream first, then list, 9.2.9). When the stream ends, fails,
 * sends an `error` event, or carries no byte for 60 s (9.2.6), the reader sleeps the back-off
 * (0.5 s doubling to 10 s, reset by every event) and reconnects, and the next OPENED marker makes
 * the session run a fresh history pass. A fatal 4xx on opening queues a FATAL item and ends the
 * reader (13.4).
 *
 * Why a thread rather than processing inside the transfer's callback (which would match the SDK
 * reading nothing while a tool runs): a tool may run for two minutes, and the connection must
 * still be read so the dead-stream timer measures the server's silence, not the tool's runtime.
 * Events therefore queue in memory while a tool runs; the queue is capped (bytes and items). On
 * overflow the reader drops the connection and reconnects, and the reconcile after the next
 * OPENED marker recovers whatever was not queued, which is the same recovery the protocol uses
 * for any gap. */
#ifndef RUNCELL_RUNNER_STREAM_H
#define RUNCELL_RUNNER_STREAM_H

#include "api.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define RC_STREAM_INACTIVITY_MS   60000 /* 9.2.6: no byte for this long = dead connection */
#define RC_STREAM_BACKOFF_START   500   /* 13.4 */
#define RC_STREAM_BACKOFF_CAP     10000
#define RC_STREAM_MAX_EVENT       ((size_t)4 * 1024 * 1024) /* one SSE message / event JSON */
#define RC_STREAM_QUEUE_MAX_BYTES ((size_t)16 * 1024 * 1024)
#define RC_STREAM_QUEUE_MAX_ITEMS 20000

enum rc_stream_kind {
    RC_STREAM_OPENED = 1, /* response headers arrived: list the history now */
    RC_STREAM_EVENT,      /* one parsed event (an object) */
    RC_STREAM_FATAL,      /* fatal 4xx on the stream request: the runner ends (13.4) */
};

typedef struct rc_stream_item {
    int kind;     /* enum rc_stream_kind */
    cJSON *event; /* RC_STREAM_EVENT: owned by the holder, release with rc_stream_item_clear */
} rc_stream_item;

typedef struct rc_stream_config {
    rc_api *api; /* taken over on success; used only by the reader thread */
    const char *session_id;
    const char *work_id;      /* log context only; may be NULL */
    long inactivity_ms;       /* 0 = RC_STREAM_INACTIVITY_MS */
    int64_t backoff_start_ms; /* 0 = RC_STREAM_BACKOFF_START */
    int64_t backoff_cap_ms;   /* 0 = RC_STREAM_BACKOFF_CAP */
    size_t queue_max_bytes;   /* 0 = RC_STREAM_QUEUE_MAX_BYTES */
} rc_stream_config;

typedef struct rc_stream rc_stream;

/* Start the reader thread; it connects at once. */
int rc_stream_start(const rc_stream_config *cfg, rc_stream **ret, rc_error *err);

/* Wait for the next item until deadline_mono_ms (rc_http_now_mono_ms clock; 0 = no deadline).
 * Returns 1 with *ret filled, 0 when the deadline passed, -RC_ECANCELED once rc_stream_cancel
 * was called (queued items are then dropped). */
int rc_stream_next(rc_stream *s, int64_t deadline_mono_ms, rc_stream_item *ret);

void rc_stream_item_clear(rc_stream_item *it);

/* Make the reader stop (aborting its transfer or back-off) and wake rc_stream_next. Thread-safe,
 * not async-signal-safe. */
void rc_stream_cancel(rc_stream *s);

/* Cancel, join the reader and free everything. NULL is a no-op. */
void rc_stream_free(rc_stream *s);

/* Connections opened so far (their headers arrived). */
long rc_stream_connections(rc_stream *s);

#endif
