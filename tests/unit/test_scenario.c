/* test_scenario.c - scenario parsing (spec/scenario.md §1: every field, defaults, each rejection
 * with a message naming the field), directory loading, and the expectation checker. */
#include "cleanup.h"
#include "harness.h"
#include "scenario.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* The example of spec/scenario.md §1, verbatim. */
static const char spec_example[] =
    "{\n"
    "  \"name\": \"bash-basics\",\n"
    "  \"description\": \"one line on what it exercises\",\n"
    "  \"agent\": {\n"
    "    \"tools\": [\n"
    "      {\"type\": \"agent_toolset_20260401\",\n"
    "       \"default_config\": {\"enabled\": true, \"permission_policy\": {\"type\": "
    "\"always_allow\"}}},\n"
    "      {\"type\": \"custom\", \"name\": \"run_tests\", \"description\": \"Run the project's "
    "tests\",\n"
    "       \"input_schema\": {\"type\": \"object\", \"properties\": {\"filter\": {\"type\": "
    "\"string\"}}}}\n"
    "    ]\n"
    "  },\n"
    "  \"session\": {\"metadata\": {\"any\": \"string values\"}},\n"
    "  \"turns\": [\n"
    "    {\n"
    "      \"user\": \"text of the user message that opens this turn\",\n"
    "      \"steps\": [\n"
    "        {\"tool\": \"bash\", \"input\": {\"command\": \"echo hi\"},\n"
    "         \"expect\": {\"is_error\": false, \"text\": \"hi\"}},\n"
    "        {\"custom_tool\": \"run_tests\", \"input\": {\"filter\": \"unit\"},\n"
    "         \"expect\": {\"is_error\": false, \"contains\": \"passed\"}},\n"
    "        {\"tool\": \"bash\", \"input\": {\"command\": \"touch /workspace/x\"},\n"
    "         \"permission\": \"ask\", \"confirm\": \"deny\", \"expect\": {\"no_result\": true}},\n"
    "        {\"message\": \"All done.\"}\n"
    "      ],\n"
    "      \"end\": \"end_turn\",\n"
    "      \"pause_after_ms\": 0\n"
    "    }\n"
    "  ]\n"
    "}\n";

static void scp(rc_sc_scenario **s)
{
    rc_sc_free(*s);
}

static int parse_str(const char *json, rc_sc_scenario **ret, rc_error *err)
{
    return rc_sc_parse(json, strlen(json), ret, err);
}

TEST(spec_example_parses_with_every_field)
{
    _cleanup_(scp) rc_sc_scenario *s = NULL;
    rc_error err = {0};
    const rc_sc_step *st;

    REQUIRE(parse_str(spec_example, &s, &err) == 0);
    CHECK_STR(s->name, "bash-basics");
    CHECK_STR(s->description, "one line on what it exercises");
    REQUIRE(cJSON_IsArray(s->agent_tools));
    CHECK_INT(cJSON_GetArraySize(s->agent_tools), 2);
    CHECK_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(s->agent_tools, 1), "name")->valuestring,
              "run_tests");
    REQUIRE(s->session_metadata != NULL);
    CHECK_STR(cJSON_GetObjectItem(s->session_metadata, "any")->valuestring, "string values");
    REQUIRE(s->nturns == 1);
    CHECK_STR(s->turns[0].user, "text of the user message that opens this turn");
    CHECK_INT(s->turns[0].end_none, 0);
    CHECK_INT(s->turns[0].pause_after_ms, 0);
    REQUIRE(s->turns[0].nsteps == 4);

    st = &s->turns[0].steps[0];
    CHECK_INT(st->kind, RC_SC_TOOL);
    CHECK_STR(st->name, "bash");
    CHECK_STR(cJSON_GetObjectItem(st->input, "command")->valuestring, "echo hi");
    CHECK(st->permission == NULL && st->confirm == NULL);
    CHECK_INT(st->has_expect, 1);
    CHECK_INT(st->expect.has_is_error, 1);
    CHECK_INT(st->expect.is_error, 0);
    CHECK_STR(st->expect.text, "hi");
    CHECK(st->expect.contains == NULL && st->expect.matches == NULL);
    CHECK_INT(st->expect.wait_ms, 60000);

    st = &s->turns[0].steps[1];
    CHECK_INT(st->kind, RC_SC_CUSTOM_TOOL);
    CHECK_STR(st->name, "run_tests");
    CHECK_STR(cJSON_GetObjectItem(st->input, "filter")->valuestring, "unit");
    CHECK_STR(st->expect.contains, "passed");

    st = &s->turns[0].steps[2];
    CHECK_INT(st->kind, RC_SC_TOOL);
    CHECK_STR(st->permission, "ask");
    CHECK_STR(st->confirm, "deny");
    CHECK_INT(st->expect.no_result, 1);
    CHECK_INT(st->expect.wait_ms, 2000);

    st = &s->turns[0].steps[3];
    CHECK_INT(st->kind, RC_SC_MESSAGE);
    CHECK_STR(st->message, "All done.");
    CHECK(st->input == NULL && st->name == NULL);
}

TEST(defaults_and_other_step_kinds)
{
    _cleanup_(scp) rc_sc_scenario *s = NULL;
    rc_error err = {0};
    const char *j =
        "{\"name\":\"a.b_c-9\",\"agent\":{\"tools\":[]},\"turns\":["
        "{\"user\":\"one\",\"steps\":[{\"tool\":\"read\"},{\"sleep_ms\":250},"
        "{\"tool\":\"x\",\"expect\":{\"wait_ms\":5}},{\"terminate\":true}],\"end\":\"none\"},"
        "{\"user\":\"two\",\"pause_after_ms\":1500}]}";
    const rc_sc_turn *t;

    REQUIRE(parse_str(j, &s, &err) == 0);
    CHECK(s->description == NULL && s->session_metadata == NULL);
    REQUIRE(s->nturns == 2);
    t = &s->turns[0];
    CHECK_INT(t->end_none, 1);
    REQUIRE(t->nsteps == 4);
    /* A tool step without input gets an empty object, without expect the default wait. */
    CHECK(cJSON_IsObject(t->steps[0].input) && t->steps[0].input->child == NULL);
    CHECK_INT(t->steps[0].has_expect, 0);
    CHECK_INT(t->steps[0].expect.wait_ms, 60000);
    CHECK_INT(t->steps[1].kind, RC_SC_SLEEP);
    CHECK_INT(t->steps[1].sleep_ms, 250);
    CHECK_INT(t->steps[2].expect.wait_ms, 5);
    CHECK_INT(t->steps[3].kind, RC_SC_TERMINATE);
    CHECK_INT(s->turns[1].end_none, 0);
    CHECK_INT(s->turns[1].pause_after_ms, 1500);
    CHECK_INT(s->turns[1].nsteps, 0);
    CHECK(s->turns[1].steps == NULL);
}

TEST(no_result_with_explicit_wait)
{
    _cleanup_(scp) rc_sc_scenario *s = NULL;
    const char *j =
        "{\"name\":\"n\",\"agent\":{\"tools\":[]},\"turns\":[{\"user\":\"u\",\"steps\":["
        "{\"tool\":\"web_fetch\",\"expect\":{\"no_result\":true,\"wait_ms\":3000}},"
        "{\"tool\":\"bash\",\"expect\":{\"no_result\":false}}]}]}";
    REQUIRE(parse_str(j, &s, NULL) == 0);
    CHECK_INT(s->turns[0].steps[0].expect.wait_ms, 3000);
    CHECK_INT(s->turns[0].steps[1].expect.no_result, 0);
    CHECK_INT(s->turns[0].steps[1].expect.wait_ms, 60000);
}

TEST(extensions_and_comments_are_accepted)
{
    _cleanup_(scp) rc_sc_scenario *s = NULL;
    rc_error err = {0};
    const char *j =
        "{\"name\":\"x\",\"x-faults\":{\"seed\":1},\"agent\":{\"model\":\"m\",\"tools\":[]},"
        "\"session\":{\"title\":\"t\"},\"turns\":[{\"_comment\":\"c\",\"user\":\"u\",\"steps\":"
        "[{\"_why\":\"w\",\"tool\":\"bash\",\"expect\":{\"_note\":1,\"contains\":\"a\"}}]}]}";
    CHECK_INT(parse_str(j, &s, &err), 0);
    CHECK_STR(err.msg, "");
}

struct bad_case {
    const char *json;
    const char *msg; /* substring expected in the error */
};

#define AGENT   "\"agent\":{\"tools\":[]}"
#define HEAD    "{\"name\":\"t\"," AGENT ","
#define STEP(s) HEAD "\"turns\":[{\"user\":\"u\",\"steps\":[{\"tool\":\"bash\"}," s "]}]}"

static const struct bad_case bad_cases[] = {
    {"", "scenario: invalid JSON"},
    {"[]", "must be a JSON object"},
    {"{\"name\":\"t\"", "scenario: invalid JSON"},
    {"{\"name\":\"t\"} x", "scenario: invalid JSON"},
    {"{" AGENT ",\"turns\":[{\"user\":\"u\"}]}", "name: required"},
    {"{\"name\":\"\"," AGENT ",\"turns\":[{\"user\":\"u\"}]}", "name: must match"},
    {"{\"name\":\"a b\"," AGENT ",\"turns\":[{\"user\":\"u\"}]}", "name: must match"},
    {"{\"name\":\"a/b\"," AGENT ",\"turns\":[{\"user\":\"u\"}]}", "name: must match"},
    {"{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"," AGENT
     ",\"turns\":[{\"user\":\"u\"}]}",
     "name: must match"},
    {"{\"name\":7," AGENT ",\"turns\":[{\"user\":\"u\"}]}", "name: must be a string"},
    {"{\"name\":\"t\",\"name\":\"u\"," AGENT ",\"turns\":[{\"user\":\"u\"}]}", "name: given twice"},
    {"{\"name\":\"t\",\"description\":1," AGENT ",\"turns\":[{\"user\":\"u\"}]}",
     "description: must be a string"},
    {"{\"name\":\"t\",\"turns\":[{\"user\":\"u\"}]}", "agent: required"},
    {"{\"name\":\"t\",\"agent\":[],\"turns\":[{\"user\":\"u\"}]}", "agent: must be an object"},
    {"{\"name\":\"t\",\"agent\":{},\"turns\":[{\"user\":\"u\"}]}", "agent.tools: required"},
    {"{\"name\":\"t\",\"agent\":{\"tools\":{}},\"turns\":[{\"user\":\"u\"}]}",
     "agent.tools: must be an array"},
    {"{\"name\":\"t\",\"agent\":{\"tools\":[1]},\"turns\":[{\"user\":\"u\"}]}",
     "agent.tools[0]: must be an object"},
    {"{\"name\":\"t\",\"agent\":{\"tools\":[{\"name\":\"x\"}]},\"turns\":[{\"user\":\"u\"}]}",
     "agent.tools[0].type: must be a string"},
    {HEAD "\"session\":1,\"turns\":[{\"user\":\"u\"}]}", "session: must be an object"},
    {HEAD "\"session\":{\"metadata\":[]},\"turns\":[{\"user\":\"u\"}]}",
     "session.metadata: must be an object"},
    {HEAD "\"session\":{\"metadata\":{\"k\":1}},\"turns\":[{\"user\":\"u\"}]}",
     "session.metadata.k: must be a string"},
    {"{\"name\":\"t\"," AGENT "}", "turns: required"},
    {HEAD "\"turns\":{}}", "turns: must be an array"},
    {HEAD "\"turns\":[]}", "turns: needs at least one turn"},
    {HEAD "\"turns\":[1]}", "turns[0]: must be an object"},
    {HEAD "\"turns\":[{\"steps\":[]}]}", "turns[0].user: required"},
    {HEAD "\"turns\":[{\"user\":\"\"}]}", "turns[0].user: must not be empty"},
    {HEAD "\"turns\":[{\"user\":[\"u\"]}]}", "turns[0].user: must be a string"},
    {HEAD "\"turns\":[{\"user\":\"u\",\"stepz\":[]}]}", "turns[0]: unknown field \"stepz\""},
    {HEAD "\"turns\":[{\"user\":\"u\",\"end\":\"stop\"}]}",
     "turns[0].end: must be \"end_turn\" or \"none\""},
    {HEAD "\"turns\":[{\"user\":\"u\",\"pause_after_ms\":-1}]}",
     "turns[0].pause_after_ms: must be an integer"},
    {HEAD "\"turns\":[{\"user\":\"u\",\"pause_after_ms\":1.5}]}",
     "turns[0].pause_after_ms: must be an integer"},
    {HEAD "\"turns\":[{\"user\":\"u\",\"pause_after_ms\":\"5\"}]}",
     "turns[0].pause_after_ms: must be an integer"},
    {HEAD "\"turns\":[{\"user\":\"u\",\"pause_after_ms\":1e300}]}",
     "turns[0].pause_after_ms: must be an integer"},
    {HEAD "\"turns\":[{\"user\":\"u\"},{\"user\":\"v\",\"steps\":{}}]}",
     "turns[1].steps: must be an array"},
    {STEP("1"), "turns[0].steps[1]: must be an object"},
    {STEP("{}"), "turns[0].steps[1]: needs one of tool"},
    {STEP("{\"input\":{}}"), "turns[0].steps[1]: needs one of tool"},
    {STEP("{\"tool\":\"bash\",\"message\":\"m\"}"),
     "turns[0].steps[1]: has both \"tool\" and \"message\""},
    {STEP("{\"custom_tool\":\"x\",\"terminate\":true}"), "has both \"custom_tool\" and"},
    {STEP("{\"tool\":\"bash\",\"expected\":{}}"), "turns[0].steps[1]: unknown field \"expected\""},
    {STEP("{\"tool\":\"\"}"), "turns[0].steps[1].tool: must be 1-128 printable"},
    {STEP("{\"tool\":\"a b\"}"), "turns[0].steps[1].tool: must be 1-128 printable"},
    {STEP("{\"tool\":7}"), "turns[0].steps[1].tool: must be a string"},
    {STEP("{\"custom_tool\":null}"), "turns[0].steps[1].custom_tool: must be a string"},
    {STEP("{\"tool\":\"bash\",\"input\":\"ls\"}"), "turns[0].steps[1].input: must be an object"},
    {STEP("{\"tool\":\"bash\",\"permission\":\"maybe\"}"),
     "turns[0].steps[1].permission: must be \"allow\", \"ask\" or \"deny\""},
    {STEP("{\"tool\":\"bash\",\"permission\":\"ask\",\"confirm\":\"ask\"}"),
     "turns[0].steps[1].confirm: must be \"allow\" or \"deny\""},
    {STEP("{\"tool\":\"bash\",\"confirm\":\"allow\"}"),
     "turns[0].steps[1].confirm: only valid with permission \"ask\""},
    {STEP("{\"tool\":\"bash\",\"permission\":\"allow\",\"confirm\":\"allow\"}"),
     "turns[0].steps[1].confirm: only valid with permission \"ask\""},
    {STEP("{\"custom_tool\":\"x\",\"permission\":\"ask\"}"),
     "turns[0].steps[1].permission: not allowed in a custom_tool step"},
    {STEP("{\"message\":\"m\",\"expect\":{}}"),
     "turns[0].steps[1].expect: not allowed in a message step"},
    {STEP("{\"sleep_ms\":1,\"input\":{}}"),
     "turns[0].steps[1].input: not allowed in a sleep_ms step"},
    {STEP("{\"message\":\"\"}"), "turns[0].steps[1].message: must not be empty"},
    {STEP("{\"message\":[]}"), "turns[0].steps[1].message: must be a string"},
    {STEP("{\"sleep_ms\":-5}"), "turns[0].steps[1].sleep_ms: must be an integer"},
    {STEP("{\"sleep_ms\":3600001}"), "turns[0].steps[1].sleep_ms: must be an integer"},
    {STEP("{\"terminate\":false}"), "turns[0].steps[1].terminate: must be true"},
    {STEP("{\"terminate\":1}"), "turns[0].steps[1].terminate: must be true or false"},
    {STEP("{\"tool\":\"bash\",\"expect\":[]}"), "turns[0].steps[1].expect: must be an object"},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"contain\":\"x\"}}"),
     "turns[0].steps[1].expect: unknown field \"contain\""},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"is_error\":\"false\"}}"),
     "turns[0].steps[1].expect.is_error: must be true or false"},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"text\":1}}"),
     "turns[0].steps[1].expect.text: must be a string"},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"contains\":null}}"),
     "turns[0].steps[1].expect.contains: must be a string"},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"not_contains\":{}}}"),
     "turns[0].steps[1].expect.not_contains: must be a string"},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"block_type\":false}}"),
     "turns[0].steps[1].expect.block_type: must be a string"},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"matches\":\"a(b\"}}"),
     "turns[0].steps[1].expect.matches: invalid regular expression"},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"matches\":\"[z-a]\"}}"),
     "turns[0].steps[1].expect.matches: invalid regular expression"},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"no_result\":1}}"),
     "turns[0].steps[1].expect.no_result: must be true or false"},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"no_result\":true,\"is_error\":true}}"),
     "turns[0].steps[1].expect: no_result cannot be combined"},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"no_result\":true,\"contains\":\"x\"}}"),
     "turns[0].steps[1].expect: no_result cannot be combined"},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"wait_ms\":-1}}"),
     "turns[0].steps[1].expect.wait_ms: must be an integer"},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"wait_ms\":\"1\"}}"),
     "turns[0].steps[1].expect.wait_ms: must be an integer"},
    {STEP("{\"tool\":\"bash\",\"expect\":{\"text\":\"a\",\"text\":\"b\"}}"),
     "turns[0].steps[1].expect.text: given twice"},
    {STEP("{\"tool\":\"bash\",\"input\":{\"c\":[1,{\"k\":1,\"x\":2,\"k\":3}]}}"),
     "turns[0].steps[1].input.c[1].k: given twice"},
    {STEP("{\"tool\":\"bash\",\"input\":{\"c\":\"a\\u0000b\"}}"),
     "scenario: JSON string holds \\u0000"},
    {"{\"name\":\"t\xff\"," AGENT ",\"turns\":[{\"user\":\"u\"}]}", "scenario: invalid UTF-8"},
    {"{\"name\":\"t\xc0\xaf\"," AGENT ",\"turns\":[{\"user\":\"u\"}]}", "scenario: invalid UTF-8"},
    {"{\"name\":\"t\xed\xa0\x80\"," AGENT ",\"turns\":[{\"user\":\"u\"}]}",
     "scenario: invalid UTF-8"},
};

TEST(invalid_scenarios_are_rejected_with_a_message)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        rc_sc_scenario *s = NULL;
        rc_error err = {0};
        int r = parse_str(bad_cases[i].json, &s, &err);
        if (r >= 0) {
            rc_test_fail(__FILE__, __LINE__, "case %zu accepted: %s", i, bad_cases[i].json);
            rc_sc_free(s);
            continue;
        }
        CHECK(s == NULL);
        if (!strstr(err.msg, bad_cases[i].msg))
            rc_test_fail(__FILE__, __LINE__, "case %zu: message \"%s\" lacks \"%s\"", i, err.msg,
                         bad_cases[i].msg);
    }
}

TEST(nul_byte_size_and_depth_caps)
{
    rc_sc_scenario *s = NULL;
    rc_error err = {0};
    static const char with_nul[] = "{\"name\":\"t\"}\0{}";
    _cleanup_free_ char *big = NULL;
    char deep[4 * RC_SC_MAX_DEPTH + 256];
    size_t o = 0;

    CHECK_INT(rc_sc_parse(with_nul, sizeof with_nul - 1, &s, &err), -RC_EPARSE);
    CHECK(strstr(err.msg, "scenario: ") == err.msg);

    big = malloc(RC_SC_MAX_BYTES + 1);
    REQUIRE(big != NULL);
    memset(big, ' ', RC_SC_MAX_BYTES + 1);
    CHECK_INT(rc_sc_parse(big, RC_SC_MAX_BYTES + 1, &s, &err), -RC_ETOOBIG);
    CHECK(strstr(err.msg, "exceeds 1048576 bytes") != NULL);

    /* input nested RC_SC_MAX_DEPTH deep (document depth 64 + 6) */
    o += (size_t)snprintf(deep + o, sizeof deep - o,
                          "{\"name\":\"t\",\"agent\":{\"tools\":[]},\"turns\":[{\"user\":\"u\","
                          "\"steps\":[{\"tool\":\"x\",\"input\":");
    for (int i = 0; i < RC_SC_MAX_DEPTH; i++)
        o += (size_t)snprintf(deep + o, sizeof deep - o, "{\"a\":");
    o += (size_t)snprintf(deep + o, sizeof deep - o, "1");
    for (int i = 0; i < RC_SC_MAX_DEPTH; i++)
        o += (size_t)snprintf(deep + o, sizeof deep - o, "}");
    snprintf(deep + o, sizeof deep - o, "}]}]}");
    CHECK_INT(parse_str(deep, &s, &err), -RC_ETOOBIG);
    CHECK(strstr(err.msg, "nesting deeper than 64") != NULL);
    CHECK(s == NULL);
}

/* ---- expectation checks ------------------------------------------------------------------- */

static cJSON *blocks(const char *json)
{
    return cJSON_Parse(json);
}

static void cjdel(cJSON **j)
{
    cJSON_Delete(*j);
}

TEST(expect_is_error_and_text)
{
    _cleanup_(cjdel) cJSON *c = blocks("[{\"type\":\"text\",\"text\":\"hi\"}]");
    rc_sc_expect e = {.has_is_error = 1, .is_error = 0, .text = "hi", .wait_ms = 60000};
    char d[512];

    CHECK_INT(rc_sc_expect_check(&e, c, 0, d, sizeof d), 1);
    CHECK_STR(d, "");
    CHECK_INT(rc_sc_expect_check(&e, c, 1, d, sizeof d), 0);
    CHECK(strstr(d, "is_error: expected false, got true") != NULL);
    e.text = "hi\n";
    CHECK_INT(rc_sc_expect_check(&e, c, 0, d, sizeof d), 0);
    CHECK(strstr(d, "text: expected \"hi\\n\", got \"hi\"") != NULL);
    /* Several failures are all listed. */
    CHECK_INT(rc_sc_expect_check(&e, c, 1, d, sizeof d), 0);
    CHECK(strstr(d, "is_error") != NULL && strstr(d, "; text:") != NULL);
}

TEST(expect_text_concatenates_text_blocks_only)
{
    _cleanup_(cjdel) cJSON *c =
        blocks("[{\"type\":\"text\",\"text\":\"ab\"},{\"type\":\"image\",\"source\":{}},"
               "{\"type\":\"text\",\"text\":\"cd\"}]");
    rc_sc_expect e = {.text = "abcd", .block_type = "text"};
    char d[512];
    CHECK_INT(rc_sc_expect_check(&e, c, 0, d, sizeof d), 1);
}

TEST(expect_contains_not_contains_matches)
{
    _cleanup_(cjdel) cJSON *c = blocks("[{\"type\":\"text\",\"text\":\"3 passed, 0 failed\"}]");
    rc_sc_expect e = {.contains = "passed", .not_contains = "error", .matches = "^[0-9]+ passed"};
    char d[512];

    CHECK_INT(rc_sc_expect_check(&e, c, 0, d, sizeof d), 1);
    e.contains = "skipped";
    CHECK_INT(rc_sc_expect_check(&e, c, 0, d, sizeof d), 0);
    CHECK(strstr(d, "contains \"skipped\": not found in \"3 passed, 0 failed\"") != NULL);
    e.contains = NULL;
    e.not_contains = "failed";
    CHECK_INT(rc_sc_expect_check(&e, c, 0, d, sizeof d), 0);
    CHECK(strstr(d, "not_contains \"failed\": found in") != NULL);
    e.not_contains = NULL;
    e.matches = "^passed";
    CHECK_INT(rc_sc_expect_check(&e, c, 0, d, sizeof d), 0);
    CHECK(strstr(d, "matches \"^passed\": no match") != NULL);
    e.matches = "(passed|failed)$";
    CHECK_INT(rc_sc_expect_check(&e, c, 0, d, sizeof d), 1);
}

TEST(expect_block_type)
{
    _cleanup_(cjdel) cJSON *img =
        blocks("[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":"
               "\"image/png\",\"data\":\"AA==\"}}]");
    _cleanup_(cjdel) cJSON *empty = blocks("[]");
    rc_sc_expect e = {.block_type = "image"};
    char d[512];

    CHECK_INT(rc_sc_expect_check(&e, img, 0, d, sizeof d), 1);
    e.block_type = "text";
    CHECK_INT(rc_sc_expect_check(&e, img, 0, d, sizeof d), 0);
    CHECK(strstr(d, "block_type: expected \"text\", got \"image\"") != NULL);
    CHECK_INT(rc_sc_expect_check(&e, empty, 0, d, sizeof d), 0);
    CHECK(strstr(d, "no content blocks") != NULL);
    CHECK_INT(rc_sc_expect_check(&e, NULL, 0, d, sizeof d), 0);
}

TEST(expect_no_result_fails_on_any_result)
{
    _cleanup_(cjdel) cJSON *c = blocks("[{\"type\":\"text\",\"text\":\"ran anyway\"}]");
    rc_sc_expect e = {.no_result = 1, .wait_ms = 2000};
    char d[512];
    CHECK_INT(rc_sc_expect_check(&e, c, 0, d, sizeof d), 0);
    CHECK(strstr(d, "no_result: a result arrived") != NULL);
    CHECK(strstr(d, "ran anyway") != NULL);
}

TEST(expect_empty_expectation_passes_any_result)
{
    _cleanup_(cjdel) cJSON *c = blocks("[{\"type\":\"text\",\"text\":\"x\"}]");
    rc_sc_expect e = {.wait_ms = 60000};
    char d[16];
    CHECK_INT(rc_sc_expect_check(&e, c, 1, d, sizeof d), 1);
    CHECK_INT(rc_sc_expect_check(&e, NULL, 0, d, sizeof d), 1);
    CHECK_INT(rc_sc_expect_check(&e, c, 0, NULL, 0), 1);
}

TEST(expect_malformed_content_is_an_error)
{
    _cleanup_(cjdel) cJSON *obj = blocks("{\"type\":\"text\"}");
    _cleanup_(cjdel) cJSON *notext = blocks("[{\"type\":\"text\",\"text\":5}]");
    _cleanup_(cjdel) cJSON *notype = blocks("[{\"text\":\"a\"}]");
    rc_sc_expect e = {.contains = "a"};
    char d[256];
    CHECK(rc_sc_expect_check(&e, obj, 0, d, sizeof d) < 0);
    CHECK(strstr(d, "not an array") != NULL);
    CHECK(rc_sc_expect_check(&e, notext, 0, d, sizeof d) < 0);
    CHECK(strstr(d, "content[0]") != NULL);
    CHECK(rc_sc_expect_check(&e, notype, 0, d, sizeof d) < 0);
    CHECK(rc_sc_expect_check(NULL, notype, 0, d, sizeof d) < 0);
}

TEST(expect_detail_quotes_are_bounded_and_escaped)
{
    char longtext[2048 + 64];
    _cleanup_(cjdel) cJSON *c = NULL;
    rc_sc_expect e = {.contains = "zzz"};
    char d[1024], small[24];
    size_t o;

    o = (size_t)snprintf(longtext, sizeof longtext, "[{\"type\":\"text\",\"text\":\"\\u0001\\\"");
    memset(longtext + o, 'a', 2048);
    snprintf(longtext + o + 2048, sizeof longtext - o - 2048, "\"}]");
    c = blocks(longtext);
    REQUIRE(c != NULL);
    CHECK_INT(rc_sc_expect_check(&e, c, 0, d, sizeof d), 0);
    CHECK(strstr(d, "\"\\x01\\\"aaa") != NULL);
    CHECK(strstr(d, "...\"") != NULL);
    CHECK(strlen(d) < 400);
    CHECK_INT(rc_sc_expect_check(&e, c, 0, small, sizeof small), 0);
    CHECK_INT(strlen(small), sizeof small - 1);
}

/* ---- loading a directory ------------------------------------------------------------------ */

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[512];
    int fd;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (write(fd, content, strlen(content)) < 0)
        rc_test_fail(__FILE__, __LINE__, "write %s", path);
    close(fd);
}

static void rm_tree(const char *dir)
{
    static const char *const names[] = {"b.json",    "a.json", "x.faults.json", ".hidden.json",
                                        "notes.txt", "c.json", "d.json",        "sub.json"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (unlink(path) < 0)
            rmdir(path);
    }
    rmdir(dir);
}

#define MINI(n) "{\"name\":\"" n "\",\"agent\":{\"tools\":[]},\"turns\":[{\"user\":\"u\"}]}"

TEST(load_dir_reads_scenarios_sorted_and_skips_sidecars)
{
    char dir[] = "/tmp/test_scenario.XXXXXX";
    rc_sc_scenario **list = NULL;
    size_t n = 99;
    rc_error err = {0};
    int r;

    REQUIRE(mkdtemp(dir) != NULL);
    write_file(dir, "b.json", MINI("second"));
    write_file(dir, "a.json", MINI("first"));
    write_file(dir, "x.faults.json", "{\"seed\":1}");
    write_file(dir, ".hidden.json", "not json");
    write_file(dir, "notes.txt", "not json");
    r = rc_sc_load_dir(dir, &list, &n, &err);
    CHECK_INT(r, 2);
    CHECK_INT(n, 2);
    if (r == 2) {
        CHECK_STR(list[0]->name, "first");
        CHECK_STR(list[1]->name, "second");
    }
    rc_sc_list_free(list, r == 2 ? n : 0);

    /* A bad file fails the whole load, naming the file and the field. */
    write_file(dir, "c.json", "{\"name\":\"c\",\"agent\":{\"tools\":[]},\"turns\":[{}]}");
    list = NULL;
    CHECK(rc_sc_load_dir(dir, &list, &n, &err) < 0);
    CHECK(list == NULL);
    CHECK(strstr(err.msg, "/c.json: turns[0].user: required") != NULL);

    /* Two files with the same name. */
    write_file(dir, "c.json", MINI("first"));
    CHECK(rc_sc_load_dir(dir, &list, &n, &err) < 0);
    CHECK(strstr(err.msg, "a.json and c.json both define scenario \"first\"") != NULL);

    /* A directory named like a scenario is not a regular file. */
    write_file(dir, "c.json", MINI("third"));
    {
        char sub[512];
        snprintf(sub, sizeof sub, "%s/sub.json", dir);
        CHECK_INT(mkdir(sub, 0700), 0);
        CHECK(rc_sc_load_dir(dir, &list, &n, &err) < 0);
        CHECK(strstr(err.msg, "sub.json: not a regular file") != NULL);
    }
    rm_tree(dir);
}

TEST(load_dir_empty_and_missing)
{
    char dir[] = "/tmp/test_scenario.XXXXXX";
    rc_sc_scenario **list = (rc_sc_scenario **)1;
    size_t n = 99;
    rc_error err = {0};

    REQUIRE(mkdtemp(dir) != NULL);
    CHECK_INT(rc_sc_load_dir(dir, &list, &n, &err), 0);
    CHECK_INT(n, 0);
    CHECK(list == NULL);
    rmdir(dir);
    CHECK_INT(rc_sc_load_dir(dir, &list, &n, &err), -RC_EIO);
    CHECK(strstr(err.msg, "cannot open scenario directory") != NULL);
}

/* Every scenario shipped in tests/scenarios parses (run from the repository root). */
TEST(shipped_scenarios_parse)
{
    rc_sc_scenario **list = NULL;
    size_t n = 0;
    rc_error err = {0};
    int r;
    if (access("tests/scenarios", R_OK) != 0)
        SKIP("tests/scenarios not found (run from the repository root)");
    r = rc_sc_load_dir("tests/scenarios", &list, &n, &err);
    if (r < 0)
        rc_test_fail(__FILE__, __LINE__, "%s", err.msg);
    CHECK(n >= 15);
    rc_sc_list_free(list, r < 0 ? 0 : n);
}
