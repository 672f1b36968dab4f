/* sse.c - incremental SSE parser (see sse.h for the framing rules and the error contract).
 *
 * Shape: bytes are copied span by span into the line buffer until a line end; each complete line
 * is then interpreted (field, comment or dispatch). Keeping the whole line before interpreting it
 * makes a field name, a byte-order mark or a "\r\n" split across chunks a non-issue; the only
 * state carried between lines is skip_lf, for a "\r" whose "\n" arrives later. */
#include "sse.h"

#include <limits.h>
#include <string.h>

static const char utf8_bom[] = "\xEF\xBB\xBF";
#define UTF8_BOM_LEN 3

int rc_sse_init(rc_sse_parser *p, size_t max_event, rc_error *err)
{
    if (max_event == 0 || max_event > RC_SSE_MAX_EVENT_LIMIT)
        return rc_error_set(err, RC_EINVAL, "SSE event cap must be 1..%zu bytes",
                            RC_SSE_MAX_EVENT_LIMIT);
    *p = RC_SSE_PARSER_INIT;
    p->max_event = max_event;
    rc_buf_init(&p->line, max_event);
    rc_buf_init(&p->event, max_event);
    rc_buf_init(&p->data, max_event);
    return 0;
}

void rc_sse_free(rc_sse_parser *p)
{
    rc_buf_free(&p->line);
    rc_buf_free(&p->event);
    rc_buf_free(&p->data);
}

void rc_sse_reset(rc_sse_parser *p)
{
    rc_sse_free(p);
    p->has_data = false;
    p->skip_lf = false;
    p->failed = 0;
}

static size_t held_bytes(const rc_sse_parser *p)
{
    return p->line.len + p->event.len + p->data.len;
}

static int poison(rc_sse_parser *p, int r)
{
    p->failed = -r;
    return r;
}

static int line_append(rc_sse_parser *p, const char *s, size_t n, rc_error *err)
{
    if (n > p->max_event - held_bytes(p))
        return rc_error_set(err, RC_ETOOBIG, "SSE event exceeds %zu bytes", p->max_event);
    return rc_buf_append(&p->line, s, n, err);
}

static void message_clear(rc_sse_parser *p)
{
    rc_buf_reset(&p->event);
    rc_buf_reset(&p->data);
    p->has_data = false;
}

/* The empty line: hand over the message if it has a name or data. Returns 1 when dispatched. */
static int dispatch(rc_sse_parser *p, rc_sse_callback cb, void *ctx, rc_error *err)
{
    rc_sse_message msg;
    int r = 0;

    if (p->event.len == 0 && !p->has_data)
        return 0;
    msg = (rc_sse_message){
        .event = rc_buf_cstr(&p->event),
        .event_len = p->event.len,
        .data = rc_buf_cstr(&p->data),
        .data_len = p->data.len,
    };
    if (cb) {
        rc_error_clear(err);
        r = cb(&msg, ctx, err);
    }
    message_clear(p);
    if (r < 0) {
        if (err && err->code == 0)
            rc_error_set(err, -r, "SSE message handler stopped the stream");
        return r;
    }
    return 1;
}

/* Set one field. The sizes cannot exceed the cap: value (plus a joining "\n") comes out of the
 * line, which is dropped right after, and the line held at least "data" besides the value. */
static int field_set(rc_sse_parser *p, const char *name, size_t name_len, const char *value,
                     size_t value_len, rc_error *err)
{
    int r;

    if (name_len == 5 && memcmp(name, "event", 5) == 0) {
        rc_buf_reset(&p->event);
        return rc_buf_append(&p->event, value, value_len, err);
    }
    if (name_len == 4 && memcmp(name, "data", 4) == 0) {
        if (p->has_data) {
            r = rc_buf_putc(&p->data, '\n', err);
            if (r < 0)
                return r;
        }
        p->has_data = true;
        return rc_buf_append(&p->data, value, value_len, err);
    }
    return 0; /* id, retry and unknown fields are ignored (9.2.3) */
}

/* Interpret one complete line (without its line end). Returns 1 if a message was dispatched. */
static int line_process(rc_sse_parser *p, const char *s, size_t n, rc_sse_callback cb, void *ctx,
                        rc_error *err)
{
    const char *colon, *value;
    size_t name_len, value_len;

    while (n >= UTF8_BOM_LEN && memcmp(s, utf8_bom, UTF8_BOM_LEN) == 0) {
        s += UTF8_BOM_LEN;
        n -= UTF8_BOM_LEN;
    }
    if (n == 0)
        return dispatch(p, cb, ctx, err);
    if (s[0] == ':')
        return 0;
    colon = memchr(s, ':', n);
    if (!colon)
        return field_set(p, s, n, "", 0, err);
    name_len = (size_t)(colon - s);
    value = colon + 1;
    value_len = n - name_len - 1;
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    return field_set(p, s, name_len, value, value_len, err);
}

/* Complete the buffered line, interpret it and empty the buffer. */
static int line_end(rc_sse_parser *p, rc_sse_callback cb, void *ctx, rc_error *err)
{
    int r;

    /* The value is copied out while the line is still held; once the line is dropped the total
     * is no larger than before (see field_set), so the cap holds between calls. */
    r = line_process(p, rc_buf_cstr(&p->line), p->line.len, cb, ctx, err);
    rc_buf_reset(&p->line);
    return r;
}

static size_t find_line_end(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (s[i] == '\n' || s[i] == '\r')
            return i;
    return n;
}

int rc_sse_feed(rc_sse_parser *p, const void *data, size_t len, rc_sse_callback cb, void *ctx,
                rc_error *err)
{
    const char *s = data;
    size_t i = 0, span;
    int count = 0, r;

    if (p->failed)
        return rc_error_set(err, p->failed, "SSE parser failed earlier (%s); reset it",
                            rc_errcode_name(p->failed));
    while (i < len) {
        if (p->skip_lf) {
            p->skip_lf = false;
            if (s[i] == '\n') {
                i++;
                continue;
            }
        }
        span = find_line_end(s + i, len - i);
        r = line_append(p, s + i, span, err);
        if (r < 0)
            return poison(p, r);
        i += span;
        if (i == len)
            break;
        p->skip_lf = s[i] == '\r';
        i++;
        r = line_end(p, cb, ctx, err);
        if (r < 0)
            return poison(p, r);
        if (r > 0 && count < INT_MAX)
            count++;
    }
    return count;
}

enum rc_sse_action rc_sse_classify(const rc_sse_message *msg)
{
    if (msg->event_len == 0)
        return RC_SSE_DROP_UNNAMED;
    if (msg->event_len == 4 && memcmp(msg->event, "ping", 4) == 0)
        return RC_SSE_IGNORE_PING;
    if (msg->event_len == 5 && memcmp(msg->event, "error", 5) == 0)
        return RC_SSE_STREAM_ERROR;
    if (msg->data_len == 0)
        return RC_SSE_SKIP_EMPTY;
    return RC_SSE_DELIVER;
}

const char *rc_sse_action_name(enum rc_sse_action action)
{
    switch (action) {
    case RC_SSE_DROP_UNNAMED:
        return "drop_unnamed";
    case RC_SSE_IGNORE_PING:
        return "ignore_ping";
    case RC_SSE_STREAM_ERROR:
        return "stream_error";
    case RC_SSE_SKIP_EMPTY:
        return "skip_empty";
    case RC_SSE_DELIVER:
        return "deliver";
    }
    return "unknown";
}
