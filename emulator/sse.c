/* sse.c - session event streams (protocol.md 9.2): GET /v1/sessions/{id}/events/stream.
 *
 * Each open stream is a subscriber with its own bounded output buffer (4 MiB, 9.2.10). The
 * subscriber is registered before the response is queued, and rc_emstore_event_append hands every
 * new event to the session's subscribers in the same critical section that stores it (9.2.8), so
 * an event is always in the history, on the stream, or both. Streams never replay history
 * (9.2.7), name every event (23.1), send `event: ping` every 15 s (9.2.6), and close after
 * session.deleted (9.2.11) or after `stream_drop_after_events` events (fault injection).
 *
 * libmicrohttpd pulls the body through stream_read(); with nothing to send the reader suspends
 * the connection, and fanout/ping/close resume it. The response headers go out before the
 * first read, so the client sees the stream open at once (9.2.2). */
#include "server.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rc_em_stream {
    rc_em *em;
    rc_em_session *session; /* NULL once detached (session deleted) */
    struct MHD_Connection *conn;
    rc_buf out;
    bool suspended;
    bool closing;
    long events_sent;
    int64_t next_ping_ms;
    struct rc_em_stream *snext, *sprev; /* the session's list */
    struct rc_em_stream *gnext, *gprev; /* every stream */
} rc_em_stream;

static void stream_wake(rc_em_stream *st)
{
    if (st->suspended) {
        st->suspended = false;
        MHD_resume_connection(st->conn);
    }
}

static void stream_detach(rc_em_stream *st)
{
    rc_em_session *s = st->session;
    if (!s)
        return;
    if (st->sprev)
        st->sprev->snext = st->snext;
    else
        s->streams = st->snext;
    if (st->snext)
        st->snext->sprev = st->sprev;
    st->snext = st->sprev = NULL;
    st->session = NULL;
}

static void stream_unlink_global(rc_em *em, rc_em_stream *st)
{
    if (st->gprev)
        st->gprev->gnext = st->gnext;
    else
        em->streams = st->gnext;
    if (st->gnext)
        st->gnext->gprev = st->gprev;
    em->nstreams--;
}

static void stream_put(rc_em_stream *st, const char *frame, size_t len)
{
    if (st->closing)
        return;
    if (rc_buf_append(&st->out, frame, len, NULL) < 0) {
        /* Slow consumer: close; the client reconnects and reconciles (9.2.10). */
        rc_log_warn("stream on %s: buffer full, closing", st->session ? st->session->id : "?");
        st->closing = true;
    }
    stream_wake(st);
}

void rc_emsse_fanout(rc_em *em, rc_em_session *s, const rc_em_event *ev)
{
    rc_buf frame = RC_BUF_INIT(ev->json_len + 256);
    rc_em_stream *st;

    if (!s->streams)
        return;
    if (rc_buf_appendf(&frame, NULL, "id: %s\nevent: %s\ndata: ", ev->id, ev->type) < 0 ||
        rc_buf_append(&frame, ev->json, ev->json_len, NULL) < 0 ||
        rc_buf_append_str(&frame, "\n\n", NULL) < 0) {
        rc_buf_free(&frame);
        return;
    }
    for (st = s->streams; st; st = st->snext) {
        if (st->closing)
            continue;
        stream_put(st, frame.data, frame.len);
        st->events_sent++;
        if (em->faults.stream_drop_after_events > 0 &&
            st->events_sent >= em->faults.stream_drop_after_events) {
            rc_log_info("stream on %s: dropped after %ld events (fault)", s->id, st->events_sent);
            st->closing = true;
        }
        if (strcmp(ev->type, "session.deleted") == 0)
            st->closing = true;
    }
    rc_buf_free(&frame);
}

void rc_emsse_close_session(rc_em *em, rc_em_session *s)
{
    (void)em;
    while (s->streams) {
        rc_em_stream *st = s->streams;
        st->closing = true;
        stream_wake(st);
        stream_detach(st);
    }
}

void rc_emsse_tick(rc_em *em, int64_t now_ms)
{
    static const char ping[] = "event: ping\ndata: {}\n\n";
    for (rc_em_stream *st = em->streams; st; st = st->gnext) {
        if (st->closing || now_ms < st->next_ping_ms)
            continue;
        st->next_ping_ms = now_ms + em->cfg.ping_ms;
        stream_put(st, ping, sizeof(ping) - 1);
    }
}

void rc_emsse_resume_all(rc_em *em)
{
    for (rc_em_stream *st = em->streams; st; st = st->gnext) {
        st->closing = true;
        stream_wake(st);
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    rc_em_stream *st = cls;
    rc_em *em = st->em;
    ssize_t n;
    (void)pos;

    pthread_mutex_lock(&em->lock);
    if (st->out.len) {
        n = (ssize_t)(st->out.len < max ? st->out.len : max);
        memcpy(buf, st->out.data, (size_t)n);
        rc_buf_consume(&st->out, (size_t)n);
        pthread_mutex_unlock(&em->lock);
        return n;
    }
    if (st->closing || em->stopping) {
        pthread_mutex_unlock(&em->lock);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    st->suspended = true;
    MHD_suspend_connection(st->conn);
    pthread_mutex_unlock(&em->lock);
    return 0;
}

static void stream_free(void *cls)
{
    rc_em_stream *st = cls;
    rc_em *em = st->em;
    pthread_mutex_lock(&em->lock);
    stream_detach(st);
    stream_unlink_global(em, st);
    pthread_mutex_unlock(&em->lock);
    rc_buf_free(&st->out);
    free(st);
}

int rc_emsse_open(rc_em_ctx *c, rc_em_session *s)
{
    rc_em *em = c->em;
    rc_em_stream *st = calloc(1, sizeof(*st));
    struct MHD_Response *r;

    if (!st)
        return rc_emsrv_error(c, 500, "api_error", NULL, "out of memory");
    st->em = em;
    st->session = s;
    st->conn = c->conn;
    st->out = RC_BUF_INIT(RC_EM_STREAM_BUF_MAX);
    st->next_ping_ms = rc_emutil_mono_ms() + em->cfg.ping_ms;
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st,
                                          stream_free);
    if (!r) {
        free(st);
        return rc_emsrv_error(c, 500, "api_error", NULL, "out of memory");
    }
    MHD_add_response_header(r, "cache-control", "no-cache");
    /* Register before the headers go out (9.2.8). */
    st->snext = s->streams;
    if (s->streams)
        s->streams->sprev = st;
    s->streams = st;
    st->gnext = em->streams;
    if (em->streams)
        em->streams->gprev = st;
    em->streams = st;
    em->nstreams++;
    c->resp.status = 200;
    c->resp.content_type = "text/event-stream";
    c->resp.stream = r;
    return 0;
}
