/* test_sse.c - the SSE parser: protocol 9.2.3 framing, 9.2.4 classification, the event size cap,
 * poisoning, and chunking independence (every split of a stream yields the same messages). */
#include "cleanup.h"
#include "harness.h"
#include "sse.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define MAX_MSGS 32

typedef struct collected {
    char event[64];
    size_t event_len;
    char data[1024];
    size_t data_len;
} collected;

typedef struct collector {
    collected msgs[MAX_MSGS];
    size_t n;
    bool overflow;
    size_t abort_at; /* 1-based message number to abort on; 0 never */
} collector;

static int collect(const rc_sse_message *m, void *ctx, rc_error *err)
{
    collector *c = ctx;
    collected *out;

    if (c->n >= MAX_MSGS || m->event_len >= sizeof out->event || m->data_len >= sizeof out->data) {
        c->overflow = true;
        return 0;
    }
    out = &c->msgs[c->n++];
    memcpy(out->event, m->event, m->event_len + 1); /* includes the NUL the parser promises */
    out->event_len = m->event_len;
    memcpy(out->data, m->data, m->data_len + 1);
    out->data_len = m->data_len;
    if (c->abort_at && c->n == c->abort_at)
        return rc_error_set(err, RC_ECANCELED, "test abort");
    return 0;
}

/* Parse s in one chunk with a fresh parser; returns rc_sse_feed's result. */
static int parse_all(const char *s, size_t len, size_t max, collector *c)
{
    _cleanup_(rc_sse_free) rc_sse_parser p = RC_SSE_PARSER_INIT;
    int r = rc_sse_init(&p, max, NULL);

    if (r < 0)
        return r;
    memset(c, 0, sizeof *c);
    return rc_sse_feed(&p, s, len, collect, c, NULL);
}

#define PARSE(lit, c) parse_all(lit, sizeof(lit) - 1, RC_SSE_DEFAULT_MAX_EVENT, c)

static rc_sse_message as_message(const collected *m)
{
    return (rc_sse_message){m->event, m->event_len, m->data, m->data_len};
}

TEST(frame_format_from_spec)
{
    static const char frame[] =
        "id: sevt_01H...\n"
        "event: agent.tool_use\n"
        "data: {\"type\":\"agent.tool_use\",\"id\":\"sevt_01H...\",\"name\":\"bash\",\"input\":{"
        "\"command\":\"ls\"},\"processed_at\":\"2026-05-01T12:00:05Z\",\"evaluated_permission\":"
        "\"allow\"}\n"
        "\n";
    collector c;
    rc_sse_message m;

    CHECK_INT(PARSE(frame, &c), 1);
    REQUIRE(c.n == 1);
    CHECK_STR(c.msgs[0].event, "agent.tool_use");
    CHECK(strncmp(c.msgs[0].data, "{\"type\":\"agent.tool_use\"", 24) == 0);
    CHECK(c.msgs[0].data[c.msgs[0].data_len - 1] == '}');
    m = as_message(&c.msgs[0]);
    CHECK_INT(rc_sse_classify(&m), RC_SSE_DELIVER);
}

static void check_two_messages(const char *s, size_t len)
{
    collector c;

    CHECK_INT(parse_all(s, len, 1024, &c), 2);
    REQUIRE(c.n == 2);
    CHECK_STR(c.msgs[0].event, "a");
    CHECK_STR(c.msgs[0].data, "1");
    CHECK_STR(c.msgs[1].event, "b");
    CHECK_STR(c.msgs[1].data, "2\n3");
}

#define CHECK_TWO(lit) check_two_messages(lit, sizeof(lit) - 1)

TEST(line_endings_lf_crlf_cr_and_mixed)
{
    CHECK_TWO("event: a\ndata: 1\n\nevent: b\ndata: 2\ndata: 3\n\n");
    CHECK_TWO("event: a\r\ndata: 1\r\n\r\nevent: b\r\ndata: 2\r\ndata: 3\r\n\r\n");
    CHECK_TWO("event: a\rdata: 1\r\revent: b\rdata: 2\rdata: 3\r\r");
    CHECK_TWO("event: a\r\ndata: 1\r\revent: b\ndata: 2\r\ndata: 3\r\n\n");
}

TEST(crlf_split_across_chunks_is_one_line_end)
{
    _cleanup_(rc_sse_free) rc_sse_parser p = RC_SSE_PARSER_INIT;
    collector c = {0};

    REQUIRE(rc_sse_init(&p, 1024, NULL) == 0);
    /* If the "\n" after the "\r" counted as a second line end, "event: x" would dispatch alone. */
    CHECK_INT(rc_sse_feed(&p, "event: x\r", 9, collect, &c, NULL), 0);
    CHECK_INT(rc_sse_feed(&p, "\ndata: y\r", 9, collect, &c, NULL), 0);
    CHECK_INT(rc_sse_feed(&p, "\n", 1, collect, &c, NULL), 0);
    CHECK_INT(rc_sse_feed(&p, "\r", 1, collect, &c, NULL), 1);
    CHECK_INT(rc_sse_feed(&p, "\n", 1, collect, &c, NULL), 0);
    REQUIRE(c.n == 1);
    CHECK_STR(c.msgs[0].event, "x");
    CHECK_STR(c.msgs[0].data, "y");
    /* A "\r" then "\r" in the next chunk is two line ends. */
    CHECK_INT(rc_sse_feed(&p, "event: z\r", 9, collect, &c, NULL), 0);
    CHECK_INT(rc_sse_feed(&p, "\r", 1, collect, &c, NULL), 1);
    REQUIRE(c.n == 2);
    CHECK_STR(c.msgs[1].event, "z");
}

TEST(comments_are_ignored)
{
    collector c;

    CHECK_INT(PARSE(": ping\n\n:\n\n", &c), 0);
    CHECK_INT(PARSE("event: a\n: comment in the middle\ndata: 1\n:x\n\n", &c), 1);
    REQUIRE(c.n == 1);
    CHECK_STR(c.msgs[0].event, "a");
    CHECK_STR(c.msgs[0].data, "1");
}

TEST(multi_line_data_joined_with_newline)
{
    collector c;

    CHECK_INT(PARSE("event: e\ndata: a\ndata: b\ndata:\ndata: c\n\n", &c), 1);
    REQUIRE(c.n == 1);
    CHECK_STR(c.msgs[0].data, "a\nb\n\nc");
    CHECK_INT(c.msgs[0].data_len, 6);
}

TEST(line_without_colon_is_field_with_empty_value)
{
    collector c;
    rc_sse_message m;

    /* "data" alone is an empty data line: it dispatches (the SDK counts data lines, not bytes). */
    CHECK_INT(PARSE("data\n\n", &c), 1);
    REQUIRE(c.n == 1);
    CHECK_INT(c.msgs[0].data_len, 0);
    CHECK_INT(c.msgs[0].event_len, 0);
    m = as_message(&c.msgs[0]);
    CHECK_INT(rc_sse_classify(&m), RC_SSE_DROP_UNNAMED);
    /* "event" alone sets an empty name, which does not count as a name. */
    CHECK_INT(PARSE("event: x\nevent\n\n", &c), 0);
    CHECK_INT(PARSE("event: x\ndata\n\n", &c), 1);
    REQUIRE(c.n == 1);
    m = as_message(&c.msgs[0]);
    CHECK_INT(rc_sse_classify(&m), RC_SSE_SKIP_EMPTY);
    /* Unknown field names with or without a colon change nothing. */
    CHECK_INT(PARSE("foo\nbar: baz\nevent: y\ndata: 1\n\n", &c), 1);
    REQUIRE(c.n == 1);
    CHECK_STR(c.msgs[0].event, "y");
}

TEST(colon_spacing)
{
    collector c;

    CHECK_INT(PARSE("event:x\ndata:y\n\n", &c), 1);
    REQUIRE(c.n == 1);
    CHECK_STR(c.msgs[0].event, "x");
    CHECK_STR(c.msgs[0].data, "y");
    /* Only one space is removed; a colon inside the value stays. */
    CHECK_INT(PARSE("event: x\ndata:  a: b \n\n", &c), 1);
    REQUIRE(c.n == 1);
    CHECK_STR(c.msgs[0].data, " a: b ");
    /* A field name is matched exactly: "Event" and "event " are other fields. */
    CHECK_INT(PARSE("Event: x\nevent : y\ndata: 1\n\n", &c), 1);
    REQUIRE(c.n == 1);
    CHECK_INT(c.msgs[0].event_len, 0);
}

TEST(byte_order_mark_dropped)
{
    _cleanup_(rc_sse_free) rc_sse_parser p = RC_SSE_PARSER_INIT;
    collector c = {0};

    CHECK_INT(PARSE("\xEF\xBB\xBF"
                    "event: a\ndata: 1\n\n",
                    &c),
              1);
    REQUIRE(c.n == 1);
    CHECK_STR(c.msgs[0].event, "a");
    /* A BOM at the start of a later line, and two at the start of the stream. */
    CHECK_INT(PARSE("\xEF\xBB\xBF\xEF\xBB\xBF"
                    "event: a\n\xEF\xBB\xBF"
                    "data: 1\n\n",
                    &c),
              1);
    REQUIRE(c.n == 1);
    CHECK_STR(c.msgs[0].data, "1");
    /* A BOM inside a value is data. */
    CHECK_INT(PARSE("event: a\ndata: \xEF\xBB\xBFx\n\n", &c), 1);
    REQUIRE(c.n == 1);
    CHECK_STR(c.msgs[0].data, "\xEF\xBB\xBFx");
    /* Split across chunks, one byte at a time. */
    REQUIRE(rc_sse_init(&p, 64, NULL) == 0);
    memset(&c, 0, sizeof c);
    CHECK_INT(rc_sse_feed(&p, "\xEF", 1, collect, &c, NULL), 0);
    CHECK_INT(rc_sse_feed(&p, "\xBB", 1, collect, &c, NULL), 0);
    CHECK_INT(rc_sse_feed(&p, "\xBF", 1, collect, &c, NULL), 0);
    CHECK_INT(rc_sse_feed(&p, "event: b\n\n", 10, collect, &c, NULL), 1);
    REQUIRE(c.n == 1);
    CHECK_STR(c.msgs[0].event, "b");
}

TEST(id_and_retry_ignored)
{
    collector c;

    CHECK_INT(PARSE("id: 1\nretry: 100\n\n", &c), 0);
    CHECK_INT(PARSE("id: 5\nevent: a\nretry: 3\ndata: 1\nid\n\n", &c), 1);
    REQUIRE(c.n == 1);
    CHECK_STR(c.msgs[0].event, "a");
    CHECK_STR(c.msgs[0].data, "1");
}

TEST(empty_lines_and_event_replacement)
{
    collector c;

    CHECK_INT(PARSE("\n\n\r\n\r", &c), 0);
    CHECK_INT(PARSE("event: a\nevent: b\ndata: 1\n\n\n\n", &c), 1);
    REQUIRE(c.n == 1);
    CHECK_STR(c.msgs[0].event, "b");
    /* Named, no data: dispatched with empty data, and the classifier skips it. */
    CHECK_INT(PARSE("event: session.status_idle\n\n", &c), 1);
    REQUIRE(c.n == 1);
    CHECK_INT(c.msgs[0].data_len, 0);
}

TEST(incomplete_message_at_end_is_not_dispatched)
{
    collector c;

    CHECK_INT(PARSE("event: a\ndata: 1\n", &c), 0);
    CHECK_INT(PARSE("event: a\ndata: 1", &c), 0);
    CHECK_INT(c.n, 0);
}

TEST(binary_data_keeps_length)
{
    collector c;

    CHECK_INT(PARSE("event: a\x00z\ndata: x\x00y\n\n", &c), 1);
    REQUIRE(c.n == 1);
    CHECK_INT(c.msgs[0].event_len, 3);
    CHECK_MEM(c.msgs[0].data, c.msgs[0].data_len, "x\0y", 3);
}

TEST(classifier_9_2_4)
{
    rc_sse_message unnamed = {"", 0, "{\"type\":\"x\"}", 12};
    rc_sse_message ping = {"ping", 4, "{}", 2};
    rc_sse_message error = {"error", 5, "{\"type\":\"error\"}", 16};
    rc_sse_message error_empty = {"error", 5, "", 0};
    rc_sse_message empty = {"agent.message", 13, "", 0};
    rc_sse_message deliver = {"agent.tool_use", 14, "{}", 2};
    rc_sse_message pingx = {"pingx", 5, "{}", 2};
    rc_sse_message nul_ping = {"ping\0x", 6, "{}", 2};

    CHECK_INT(rc_sse_classify(&unnamed), RC_SSE_DROP_UNNAMED);
    CHECK_INT(rc_sse_classify(&ping), RC_SSE_IGNORE_PING);
    CHECK_INT(rc_sse_classify(&error), RC_SSE_STREAM_ERROR);
    CHECK_INT(rc_sse_classify(&error_empty), RC_SSE_STREAM_ERROR);
    CHECK_INT(rc_sse_classify(&empty), RC_SSE_SKIP_EMPTY);
    CHECK_INT(rc_sse_classify(&deliver), RC_SSE_DELIVER);
    CHECK_INT(rc_sse_classify(&pingx), RC_SSE_DELIVER);
    CHECK_INT(rc_sse_classify(&nul_ping), RC_SSE_DELIVER);
    CHECK_STR(rc_sse_action_name(RC_SSE_DROP_UNNAMED), "drop_unnamed");
    CHECK_STR(rc_sse_action_name(RC_SSE_DELIVER), "deliver");
}

TEST(unnamed_message_dropped_by_classifier)
{
    collector c;
    rc_sse_message m;

    CHECK_INT(PARSE("data: {\"type\":\"agent.tool_use\"}\n\n", &c), 1);
    REQUIRE(c.n == 1);
    m = as_message(&c.msgs[0]);
    CHECK_INT(rc_sse_classify(&m), RC_SSE_DROP_UNNAMED);
}

TEST(init_rejects_bad_caps)
{
    rc_sse_parser p = RC_SSE_PARSER_INIT;
    rc_error err = {0};

    CHECK_INT(rc_sse_init(&p, 0, &err), -RC_EINVAL);
    CHECK_INT(err.code, RC_EINVAL);
    CHECK_INT(rc_sse_init(&p, RC_SSE_MAX_EVENT_LIMIT + 1, NULL), -RC_EINVAL);
    CHECK_INT(rc_sse_init(&p, 1, NULL), 0);
    rc_sse_free(&p);
}

TEST(max_event_size_exact_and_exceeded)
{
    _cleanup_(rc_sse_free) rc_sse_parser p = RC_SSE_PARSER_INIT;
    collector c = {0};
    rc_error err = {0};

    /* The cap counts the partial line: "data: 0123456789" is 16 bytes. */
    REQUIRE(rc_sse_init(&p, 16, NULL) == 0);
    CHECK_INT(rc_sse_feed(&p, "data: 0123456789\n", 17, collect, &c, NULL), 0);
    /* Now 10 bytes of data are held; "data: 12345" would make 21. */
    CHECK_INT(rc_sse_feed(&p, "data: 12", 8, collect, &c, &err), -RC_ETOOBIG);
    CHECK_INT(err.code, RC_ETOOBIG);
    CHECK(strstr(err.msg, "16 bytes") != NULL);
    /* Poisoned until reset, whatever comes next. */
    CHECK_INT(rc_sse_feed(&p, "\n\n", 2, collect, &c, &err), -RC_ETOOBIG);
    CHECK(strstr(err.msg, "reset") != NULL);
    CHECK_INT(c.n, 0);
    rc_sse_reset(&p);
    CHECK_INT(rc_sse_feed(&p, "event: abcdefg\n", 15, collect, &c, NULL), 0);
    CHECK_INT(rc_sse_feed(&p, "data: 12\n\n", 10, collect, &c, NULL), 1);
    REQUIRE(c.n == 1);
    CHECK_INT(c.msgs[0].event_len + c.msgs[0].data_len, 9);
}

TEST(max_event_size_counts_joining_newlines_and_long_lines)
{
    _cleanup_(rc_sse_free) rc_sse_parser p = RC_SSE_PARSER_INIT;
    collector c = {0};

    REQUIRE(rc_sse_init(&p, 10, NULL) == 0);
    /* Data "aa\nbb" is 5 bytes with its joining newline; a 6-byte partial line fits, 7 do not
     * (had the newline not been counted, "data:xy" would still fit). */
    CHECK_INT(rc_sse_feed(&p, "data:aa\ndata:bb\ndata:", 21, collect, &c, NULL), 0);
    CHECK_INT(rc_sse_feed(&p, "x", 1, collect, &c, NULL), -RC_ETOOBIG);
    rc_sse_reset(&p);
    /* A comment line longer than the cap is an error too (every line is buffered). */
    CHECK_INT(rc_sse_feed(&p, ": this comment is long\n", 23, collect, &c, NULL), -RC_ETOOBIG);
}

TEST(callback_abort_stops_and_poisons)
{
    _cleanup_(rc_sse_free) rc_sse_parser p = RC_SSE_PARSER_INIT;
    static const char s[] = "event: a\n\nevent: b\n\nevent: c\n\n";
    collector c = {0};
    rc_error err = {0};

    REQUIRE(rc_sse_init(&p, 64, NULL) == 0);
    c.abort_at = 2;
    CHECK_INT(rc_sse_feed(&p, s, sizeof s - 1, collect, &c, &err), -RC_ECANCELED);
    CHECK_STR(err.msg, "test abort");
    CHECK_INT(c.n, 2);
    CHECK_INT(rc_sse_feed(&p, s, sizeof s - 1, collect, &c, NULL), -RC_ECANCELED);
    CHECK_INT(c.n, 2);
    rc_sse_reset(&p);
    c.abort_at = 0;
    CHECK_INT(rc_sse_feed(&p, s, sizeof s - 1, collect, &c, NULL), 3);
}

static int abort_silently(const rc_sse_message *m, void *ctx, rc_error *err)
{
    (void)m;
    (void)ctx;
    (void)err;
    return -RC_EIO;
}

TEST(callback_abort_without_message_gets_one)
{
    _cleanup_(rc_sse_free) rc_sse_parser p = RC_SSE_PARSER_INIT;
    rc_error err = {0};

    REQUIRE(rc_sse_init(&p, 64, NULL) == 0);
    rc_error_set(&err, RC_EPARSE, "stale message from an earlier call");
    CHECK_INT(rc_sse_feed(&p, "event: a\n\n", 10, abort_silently, NULL, &err), -RC_EIO);
    CHECK_INT(err.code, RC_EIO);
    CHECK(strstr(err.msg, "stopped") != NULL);
}

TEST(null_callback_counts)
{
    _cleanup_(rc_sse_free) rc_sse_parser p = RC_SSE_PARSER_INIT;

    REQUIRE(rc_sse_init(&p, 64, NULL) == 0);
    CHECK_INT(rc_sse_feed(&p, "event: a\n\ndata: b\n\n", 19, NULL, NULL, NULL), 2);
}

/* ---- chunking independence ------------------------------------------------------------------ */

static const char stream[] = "\xEF\xBB\xBF: hello\r\n"
                             "id: sevt_1\r\n"
                             "event: agent.tool_use\r\n"
                             "data: {\"type\":\"agent.tool_use\",\"id\":\"sevt_1\"}\r\n"
                             "\r\n"
                             "event: ping\r"
                             "data: {}\r"
                             "\r"
                             "retry: 10\n"
                             "data: unnamed\n"
                             "\n"
                             "event:multi\n"
                             "data:line1\r\n"
                             "data: line2\r"
                             "data\n"
                             ":comment\r"
                             "\r\n"
                             "event: session.status_idle\n"
                             "\xEF\xBB\xBF"
                             "data: {\"type\":\"session.status_idle\"}\n"
                             "\r"
                             "\n"
                             "event: error\r\n"
                             "data: {\"type\":\"error\"}\r\n"
                             "\r\n"
                             "event: tail\r";

static bool same_messages(const collector *a, const collector *b)
{
    size_t i;

    if (a->n != b->n || a->overflow || b->overflow)
        return false;
    for (i = 0; i < a->n; i++) {
        const collected *x = &a->msgs[i], *y = &b->msgs[i];
        if (x->event_len != y->event_len || memcmp(x->event, y->event, x->event_len) != 0 ||
            x->data_len != y->data_len || memcmp(x->data, y->data, x->data_len) != 0)
            return false;
    }
    return true;
}

/* Feed stream split at the given ascending cut offsets; returns false on any error. */
static bool feed_cuts(const size_t *cuts, size_t ncuts, collector *c)
{
    _cleanup_(rc_sse_free) rc_sse_parser p = RC_SSE_PARSER_INIT;
    size_t len = sizeof stream - 1, prev = 0, i;

    memset(c, 0, sizeof *c);
    if (rc_sse_init(&p, 256, NULL) < 0)
        return false;
    for (i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        if (rc_sse_feed(&p, stream + prev, end - prev, collect, c, NULL) < 0)
            return false;
        prev = end;
    }
    return true;
}

static bool reference(collector *ref)
{
    return feed_cuts(NULL, 0, ref);
}

TEST(reference_stream_messages)
{
    collector ref;

    REQUIRE(reference(&ref));
    REQUIRE(ref.n == 6);
    CHECK_STR(ref.msgs[0].event, "agent.tool_use");
    CHECK_STR(ref.msgs[0].data, "{\"type\":\"agent.tool_use\",\"id\":\"sevt_1\"}");
    CHECK_STR(ref.msgs[1].event, "ping");
    CHECK_STR(ref.msgs[2].event, "");
    CHECK_STR(ref.msgs[2].data, "unnamed");
    CHECK_STR(ref.msgs[3].event, "multi");
    CHECK_STR(ref.msgs[3].data, "line1\nline2\n");
    CHECK_STR(ref.msgs[4].event, "session.status_idle");
    CHECK_STR(ref.msgs[4].data, "{\"type\":\"session.status_idle\"}");
    CHECK_STR(ref.msgs[5].event, "error");
}

TEST(every_split_offset_gives_same_messages)
{
    collector ref, got;
    size_t len = sizeof stream - 1, i, j, cuts[2], bad = 0;

    REQUIRE(reference(&ref));
    for (i = 0; i <= len; i++) {
        cuts[0] = i;
        if (!feed_cuts(cuts, 1, &got) || !same_messages(&ref, &got))
            bad++;
    }
    CHECK_INT(bad, 0);
    /* Every pair of cuts: three chunks, covering "\r" | "\n" and split BOMs at every position. */
    for (i = 0; i <= len; i++)
        for (j = i; j <= len; j++) {
            cuts[0] = i;
            cuts[1] = j;
            if (!feed_cuts(cuts, 2, &got) || !same_messages(&ref, &got))
                bad++;
        }
    CHECK_INT(bad, 0);
}

TEST(byte_by_byte_gives_same_messages)
{
    collector ref, got;
    size_t len = sizeof stream - 1, cuts[sizeof stream], i;

    REQUIRE(reference(&ref));
    for (i = 0; i < len; i++)
        cuts[i] = i + 1;
    CHECK(feed_cuts(cuts, len - 1, &got));
    CHECK(same_messages(&ref, &got));
}

TEST(random_chunkings_give_same_messages)
{
    collector ref, got;
    size_t len = sizeof stream - 1, cuts[sizeof stream], n, pos, bad = 0;
    unsigned seed = 12345;
    int round;

    REQUIRE(reference(&ref));
    for (round = 0; round < 2000; round++) {
        n = 0;
        pos = 0;
        for (;;) {
            pos += (size_t)(rand_r(&seed) % 24); /* 0 gives empty chunks too */
            if (pos >= len)
                break;
            cuts[n++] = pos;
        }
        if (!feed_cuts(cuts, n, &got) || !same_messages(&ref, &got))
            bad++;
    }
    CHECK_INT(bad, 0);
}
