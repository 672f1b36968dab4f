/* sse.h - incremental Server-Sent Events parser for the session event stream (protocol 9.2).
 *
 * The runner reads the stream in arbitrary chunks (whatever recv() returns) and feeds them here;
 * every complete message is handed to a callback. Framing follows protocol 9.2.3 exactly:
 *   - lines end with "\n", "\r\n" or "\r"; a "\r" that ends one chunk followed by a "\n" that
 *     starts the next is one line end, not two;
 *   - every UTF-8 byte-order mark at the start of a line is dropped (the SDK drops one at the start
 *     of a line and its text decoder one more at the start of the stream; we are at least as
 *     lenient);
 *   - a line starting with ':' is a comment;
 *   - "name:value" sets a field, one space after the colon is removed; a line with no colon is a
 *     field with an empty value; only "event" and "data" are used ("id", "retry" and anything else
 *     are ignored);
 *   - "data" lines are joined with "\n"; a later "event" line replaces an earlier one;
 *   - an empty line dispatches the message if it has a non-empty event name or at least one data
 *     line (an empty "data" line counts), then clears it.
 * Bytes are not UTF-8 validated here: the data goes to rc_json_parse, which rejects bad UTF-8.
 * An incomplete message at the end of the stream is never dispatched (the caller just stops
 * feeding).
 *
 * Memory is bounded: the bytes of the accumulated data (with its joining newlines), the event name
 * and the current partial line together never exceed max_event. Every line is buffered (comments
 * included), so one line longer than max_event is also an error. Buffers grow geometrically and are
 * reused between messages: no allocation per byte or per message in the steady state.
 *
 * Errors poison the parser: after rc_sse_feed returned a negative code (the event size cap, an
 * allocation failure, or a callback that aborted), every later rc_sse_feed returns the same code
 * without reading its input, until rc_sse_reset(). The runner resets (or re-inits) the parser
 * whenever it reconnects, since a new stream starts from a clean state anyway.
 *
 * Usage:
 *   _cleanup_(rc_sse_free) rc_sse_parser p = RC_SSE_PARSER_INIT;
 *   r = rc_sse_init(&p, RC_SSE_DEFAULT_MAX_EVENT, err);
 *   r = rc_sse_feed(&p, chunk, n, on_message, ctx, err);   // per chunk read
 */
#ifndef RUNCELL_SSE_H
#define RUNCELL_SSE_H

#include "buf.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>

/* Default cap for one message; matches RC_JSON_DEFAULT_MAX_SIZE so a message that fits here can
 * be parsed with the default JSON limits. */
#define RC_SSE_DEFAULT_MAX_EVENT ((size_t)1024 * 1024)
/* Largest cap rc_sse_init accepts (keeps every sum of lengths far from overflow). */
#define RC_SSE_MAX_EVENT_LIMIT ((size_t)1 << 30)

/* One dispatched message. Pointers are valid only during the callback; both strings are
 * NUL-terminated, but may contain NUL bytes of their own, so use the lengths. */
typedef struct rc_sse_message {
    const char *event; /* "" when the message had no (or an empty) event line */
    size_t event_len;
    const char *data; /* data lines joined with "\n"; "" when there were none */
    size_t data_len;
} rc_sse_message;

/* Called for every dispatched message. Return 0 to go on, or a negative RC_E* code to stop
 * feeding: rc_sse_feed then returns that code (the callback may fill err; if it leaves err unset,
 * a generic message is filled in). The callback must not feed the same parser. */
typedef int (*rc_sse_callback)(const rc_sse_message *msg, void *ctx, rc_error *err);

/* Fields are private; the struct is public only so it can live on the stack or inside another
 * struct. */
typedef struct rc_sse_parser {
    rc_buf line;      /* the current, not yet terminated line */
    rc_buf event;     /* event name of the message being accumulated */
    rc_buf data;      /* its data lines, joined with "\n" */
    size_t max_event; /* cap on line.len + event.len + data.len */
    bool has_data;    /* at least one data line seen (an empty one counts) */
    bool skip_lf;     /* the last line ended with "\r": a "\n" right after it belongs to it */
    int failed;       /* positive RC_E* code once an error poisoned the parser, else 0 */
} rc_sse_parser;

#define RC_SSE_PARSER_INIT                                                                         \
    ((rc_sse_parser){.line = RC_BUF_INIT(0), .event = RC_BUF_INIT(0), .data = RC_BUF_INIT(0)})

/* Prepare p with a cap on one message (1..RC_SSE_MAX_EVENT_LIMIT bytes, else -RC_EINVAL). Does
 * not allocate; pair with rc_sse_free. */
int rc_sse_init(rc_sse_parser *p, size_t max_event, rc_error *err);

/* Feed the next len bytes of the stream. Calls cb (may be NULL to discard) for every message
 * completed by these bytes, in order. Returns the number of messages dispatched (saturated at
 * INT_MAX), or a negative code: -RC_ETOOBIG when a message or line exceeds max_event, -RC_ENOMEM,
 * the callback's own negative code, or the earlier code when the parser is poisoned (see above). */
int rc_sse_feed(rc_sse_parser *p, const void *data, size_t len, rc_sse_callback cb, void *ctx,
                rc_error *err);

/* Back to the start-of-stream state (clears any poison and partial message, frees the buffers);
 * the cap is kept. */
void rc_sse_reset(rc_sse_parser *p);

/* Free the buffers. Safe on a parser that was only set to RC_SSE_PARSER_INIT. */
void rc_sse_free(rc_sse_parser *p);

/* What the runner does with a dispatched message (protocol 9.2.4). */
enum rc_sse_action {
    RC_SSE_DROP_UNNAMED = 0, /* no event name: dropped silently (the SDK does the same) */
    RC_SSE_IGNORE_PING,      /* "ping": keep-alive, ignored (still counts as bytes received) */
    RC_SSE_STREAM_ERROR,     /* "error": data is an error body; not a fatal 4xx, reconnect */
    RC_SSE_SKIP_EMPTY,       /* any other name with empty data: skipped */
    RC_SSE_DELIVER,          /* any other name with data: parse data as JSON, use its "type" */
};

enum rc_sse_action rc_sse_classify(const rc_sse_message *msg);

/* Static name of an action ("deliver", ...) for logs and tests. */
const char *rc_sse_action_name(enum rc_sse_action action);

#endif
