/* test_audit_calls.c - the running tool calls of the egress audit (issue 11, broker/audit.h):
 * the id shape, the shared set, and the "tool_calls" field of an audit line. */
#include "audit.h"
#include "harness.h"

#include <stdio.h>
#include <string.h>

TEST(call_id_shape)
{
    char id[RC_AUDIT_CALL_ID_MAX + 2];
    CHECK(rc_audit_call_id_ok("toolu_01ABCxyz-_9", 17));
    CHECK(rc_audit_call_id_ok("a", 1));
    CHECK(!rc_audit_call_id_ok("", 0));
    CHECK(!rc_audit_call_id_ok(NULL, 0));
    CHECK(!rc_audit_call_id_ok("toolu 1", 7));
    CHECK(!rc_audit_call_id_ok("toolu/1", 7));
    CHECK(!rc_audit_call_id_ok("toolu.1", 7));
    CHECK(!rc_audit_call_id_ok("a\"b", 3));
    CHECK(!rc_audit_call_id_ok("a\0b", 3));
    memset(id, 'x', sizeof id);
    CHECK(rc_audit_call_id_ok(id, RC_AUDIT_CALL_ID_MAX));
    CHECK(!rc_audit_call_id_ok(id, RC_AUDIT_CALL_ID_MAX + 1));
}

TEST(calls_set_and_get)
{
    static rc_audit_call_ids in, out;
    rc_audit_calls *s = NULL;
    REQUIRE(rc_audit_calls_new(&s, NULL) == 0);
    rc_audit_calls_get(s, &out);
    CHECK_INT((int)out.n, 0);
    in.n = 2;
    snprintf(in.ids[0], sizeof in.ids[0], "toolu_a");
    snprintf(in.ids[1], sizeof in.ids[1], "toolu_b");
    rc_audit_calls_set(s, &in);
    memset(&in, 0, sizeof in); /* the set holds its own copy */
    rc_audit_calls_get(s, &out);
    REQUIRE(out.n == 2);
    CHECK_STR(out.ids[0], "toolu_a");
    CHECK_STR(out.ids[1], "toolu_b");
    rc_audit_calls_set(s, &in);
    rc_audit_calls_get(s, &out);
    CHECK_INT((int)out.n, 0);
    rc_audit_calls_free(s);
    rc_audit_calls_free(NULL);
}

static const char *format(const rc_audit_record *rec)
{
    static char line[RC_AUDIT_LINE_MAX];
    rc_buf b = RC_BUF_INIT(RC_AUDIT_LINE_MAX);
    line[0] = '\0';
    if (rc_audit_format("sesn_1", rec, &b, NULL) == 0)
        snprintf(line, sizeof line, "%s", b.data);
    rc_buf_free(&b);
    return line;
}

TEST(audit_line_tool_calls)
{
    static const char *const injected[] = {"authorization"};
    static const char *const calls[] = {"toolu_a", "toolu_b"};
    rc_audit_record rec = {.kind = "https",
                           .decision = "allow",
                           .action = "transform",
                           .injected = injected,
                           .n_injected = 1,
                           .host = "api.test",
                           .method = "GET",
                           .path = "/v1/x"};
    /* Not reported (no set wired): no field at all. */
    CHECK(strstr(format(&rec), "tool_calls") == NULL);
    /* Reported and none running: an empty list, which says so. */
    rec.has_tool_calls = true;
    CHECK(strstr(format(&rec), "\"injected\":[\"authorization\"],\"tool_calls\":[],") != NULL);
    rec.tool_calls = calls;
    rec.n_tool_calls = 2;
    CHECK(strstr(format(&rec), "\"tool_calls\":[\"toolu_a\",\"toolu_b\"]") != NULL);
}
