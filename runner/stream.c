/* stream.c - the reader thread and its bounded queue (see stream.h for why it is a thread).
 *
 * The queue is a singly linked FIFO under one mutex with a CLOCK_MONOTONIC condition variable,
 * so rc_stream_next can wait for an item or the session's idle deadline, whichever comes first.
 * The reader never blocks on the queue: when the queue is full it drops its connection instead
 * (the next reconcile recovers), so a slow session never makes the server see a stalled reader. */
#include "stream.h"

#include "cleanup.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "sse.h"
#include "sync.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JSON_MAX_DEPTH 64u

struct qnode {
    struct qnode *next;
    rc_stream_item item;
    size_t bytes;
};

struct rc_stream {
    rc_api *api;
    char *session_id;
    char *work_id;
    long inactivity_ms;
    int64_t backoff_start_ms, backoff_cap_ms;
    size_t queue_max_bytes;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct qnode *head, *tail;
    size_t queued_bytes, queued_items;
    atomic_bool stopping;
    atomic_long connections;

    /* reader-thread state */
    rc_sse_parser parser;
    int64_t backoff_ms;
    bool overflowed;
};

/* ---- queue -------------------------------------------------------------------------------- */

void rc_stream_item_clear(rc_stream_item *it)
{
    if (!it)
        return;
    cJSON_Delete(it->event);
    *it = (rc_stream_item){0};
}

/* Queue an item (the event is taken over on success). -RC_ETOOBIG when full. */
static int queue_push(rc_stream *s, int kind, cJSON *event, size_t bytes)
{
    struct qnode *n;
    int r = 0;

    pthread_mutex_lock(&s->lock);
    if (kind == RC_STREAM_EVENT && (s->queued_bytes + bytes > s->queue_max_bytes ||
                                    s->queued_items >= RC_STREAM_QUEUE_MAX_ITEMS))
        r = -RC_ETOOBIG;
    else if (!(n = calloc(1, sizeof *n)))
        r = -RC_ENOMEM;
    if (r == 0) {
        n->item = (rc_stream_item){.kind = kind, .event = event};
        n->bytes = bytes;
        if (s->tail)
            s->tail->next = n;
        else
            s->head = n;
        s->tail = n;
        s->queued_bytes += bytes;
        s->queued_items++;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

static void queue_drop_all(rc_stream *s)
{
    struct qnode *n = s->head, *next;
    for (; n; n = next) {
        next = n->next;
        rc_stream_item_clear(&n->item);
        free(n);
    }
    s->head = s->tail = NULL;
    s->queued_bytes = s->queued_items = 0;
}

static struct timespec mono_timespec(int64_t ms)
{
    return (struct timespec){.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
}

int rc_stream_next(rc_stream *s, int64_t deadline_mono_ms, rc_stream_item *ret)
{
    struct qnode *n = NULL;
    int r = 0;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (atomic_load(&s->stopping)) {
            r = -RC_ECANCELED;
            break;
        }
        if (s->head) {
            n = s->head;
            s->head = n->next;
            if (!s->head)
                s->tail = NULL;
            s->queued_bytes -= n->bytes;
            s->queued_items--;
            r = 1;
            break;
        }
        if (deadline_mono_ms > 0) {
            struct timespec ts = mono_timespec(deadline_mono_ms);
            if (rc_http_now_mono_ms() >= deadline_mono_ms ||
                pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT) {
                if (!s->head && !atomic_load(&s->stopping))
                    break; /* r = 0: deadline */
            }
        } else {
            pthread_cond_wait(&s->cond, &s->lock);
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (n) {
        *ret = n->item;
        free(n);
    }
    return r;
}

/* ---- reader ------------------------------------------------------------------------------- */

static int on_headers(const rc_http_response *resp, void *ud)
{
    rc_stream *s = ud;
    (void)resp;
    atomic_fetch_add(&s->connections, 1);
    rc_log_debug("event stream open");
    return queue_push(s, RC_STREAM_OPENED, NULL, 0) < 0 ? -1 : 0;
}

static void log_stream_error(const rc_sse_message *m)
{
    rc_json_error_info info;
    if (rc_json_error_body_parse(m->data, m->data_len, &info, NULL) == 0)
        rc_log_warn("event stream sent an error (%s: %s); reconnecting", info.type, info.message);
    else
        rc_log_warn("event stream sent an undecodable error event; reconnecting");
}

/* One SSE message (9.2.4). A negative return aborts the connection (then reconnect). */
static int on_message(const rc_sse_message *m, void *ctx, rc_error *err)
{
    static const rc_json_limits lim = {.max_size = RC_STREAM_MAX_EVENT,
                                       .max_depth = JSON_MAX_DEPTH};
    rc_stream *s = ctx;
    cJSON *ev = NULL;
    int r;

    switch (rc_sse_classify(m)) {
    case RC_SSE_STREAM_ERROR:
        log_stream_error(m);
        return rc_error_set(err, RC_EHTTP, "stream error event");
    case RC_SSE_DELIVER:
        break;
    default:
        return 0;
    }
    if ((r = rc_json_parse(m->data, m->data_len, &lim, &ev, err)) < 0) {
        rc_log_warn("event stream carried an unparsable event (%s); reconnecting",
                    err ? err->msg : "");
        return r;
    }
    if (!cJSON_IsObject(ev)) {
        cJSON_Delete(ev);
        return 0;
    }
    s->backoff_ms = s->backoff_start_ms; /* 13.2: reset after every event received */
    if ((r = queue_push(s, RC_STREAM_EVENT, ev, m->data_len + 64)) < 0) {
        cJSON_Delete(ev);
        if (r == -RC_ETOOBIG) {
            s->overflowed = true;
            rc_log_warn("event queue full while a tool runs; dropping the connection "
                        "(the next history pass recovers)");
        }
        return rc_error_set(err, -r, "event queue");
    }
    return 0;
}

static int on_data(const char *data, size_t len, void *ud)
{
    rc_stream *s = ud;
    rc_error e = {0};
    if (atomic_load(&s->stopping))
        return -1;
    return rc_sse_feed(&s->parser, data, len, on_message, s, &e) < 0 ? -1 : 0;
}

/* One connection. Returns true when the reader must end (stop or fatal). */
static bool read_once(rc_stream *s)
{
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    rc_error e = {0};
    int r;

    rc_sse_reset(&s->parser);
    s->overflowed = false;
    r = rc_api_events_stream(s->api, s->session_id, on_headers, on_data, s, s->inactivity_ms, &res,
                             &e);
    if (atomic_load(&s->stopping))
        return true;
    if (r == -RC_EFATAL) {
        rc_log_error("permanent stream failure, shutting down: %s", e.msg);
        queue_push(s, RC_STREAM_FATAL, NULL, 0);
        return true;
    }
    if (r == 0)
        rc_log_info("event stream ended; reconnecting in %lld ms", (long long)s->backoff_ms);
    else if (!s->overflowed)
        rc_log_warn("stream disconnected, reconnecting in %lld ms: %s", (long long)s->backoff_ms,
                    e.msg);
    return false;
}

static void *reader_main(void *arg)
{
    rc_stream *s = arg;
    rc_http_cancel *cancel = rc_http_client_cancel(rc_api_http(s->api));

    rc_log_set_context(s->session_id, s->work_id);
    s->backoff_ms = s->backoff_start_ms;
    while (!atomic_load(&s->stopping)) {
        if (read_once(s))
            break;
        if (rc_http_cancel_sleep(cancel, s->backoff_ms, NULL) < 0)
            break;
        s->backoff_ms =
            s->backoff_ms * 2 > s->backoff_cap_ms ? s->backoff_cap_ms : s->backoff_ms * 2;
    }
    return NULL;
}

/* ---- lifetime ----------------------------------------------------------------------------- */

static void stream_free_fields(rc_stream *s)
{
    queue_drop_all(s);
    rc_sse_free(&s->parser);
    rc_api_free(s->api);
    free(s->session_id);
    free(s->work_id);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int init_sync(rc_stream *s)
{
    return rc_sync_init_monotonic(&s->lock, &s->cond);
}

int rc_stream_start(const rc_stream_config *cfg, rc_stream **ret, rc_error *err)
{
    rc_stream *s;
    int r;

    if (!cfg->api || !cfg->session_id)
        return rc_error_set(err, RC_EINVAL, "stream needs an API client and a session id");
    if (!(s = calloc(1, sizeof *s)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if ((r = init_sync(s)) != 0) {
        free(s);
        errno = r;
        return rc_error_sys(err, RC_EIO, "stream queue");
    }
    s->parser = RC_SSE_PARSER_INIT;
    s->session_id = strdup(cfg->session_id);
    s->work_id = cfg->work_id ? strdup(cfg->work_id) : NULL;
    s->inactivity_ms = cfg->inactivity_ms > 0 ? cfg->inactivity_ms : RC_STREAM_INACTIVITY_MS;
    s->backoff_start_ms =
        cfg->backoff_start_ms > 0 ? cfg->backoff_start_ms : RC_STREAM_BACKOFF_START;
    s->backoff_cap_ms = cfg->backoff_cap_ms > 0 ? cfg->backoff_cap_ms : RC_STREAM_BACKOFF_CAP;
    s->queue_max_bytes =
        cfg->queue_max_bytes > 0 ? cfg->queue_max_bytes : RC_STREAM_QUEUE_MAX_BYTES;
    if (!s->session_id || (cfg->work_id && !s->work_id) ||
        rc_sse_init(&s->parser, RC_STREAM_MAX_EVENT, err) < 0) {
        stream_free_fields(s);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    s->api = cfg->api;
    if ((r = pthread_create(&s->thread, NULL, reader_main, s)) != 0) {
        s->api = NULL; /* not taken over */
        stream_free_fields(s);
        errno = r;
        return rc_error_sys(err, RC_EIO, "cannot start the stream reader thread");
    }
    *ret = s;
    return 0;
}

void rc_stream_cancel(rc_stream *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, true);
    rc_http_cancel_trigger(rc_http_client_cancel(rc_api_http(s->api)));
    pthread_mutex_lock(&s->lock);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void rc_stream_free(rc_stream *s)
{
    if (!s)
        return;
    rc_stream_cancel(s);
    pthread_join(s->thread, NULL);
    stream_free_fields(s);
}

long rc_stream_connections(rc_stream *s)
{
    return atomic_load(&s->connections);
}
