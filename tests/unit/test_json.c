/* test_json.c - strict capped parsing (depth, size, duplicates, UTF-8, lexical rules, trailing
 * data), typed getters and their failures, exact int64, printing, and the standard error body. */
#include "cleanup.h"
#include "harness.h"
#include "json.h"

#include <stdint.h>
#include <stdlib.h>

static int parse_lim(const char *s, size_t len, const rc_json_limits *lim)
{
    _cleanup_json_ cJSON *root = NULL;
    return rc_json_parse(s, len, lim, &root, NULL);
}

/* Parse a literal with the default limits (the length excludes the literal's terminator, so a
 * literal may hold NUL bytes). */
#define PARSE(lit) parse_lim(lit, sizeof(lit) - 1, NULL)

/* "[[[...]]]" (or objects) nested depth times, in a malloc'd string. */
static char *nested(unsigned depth, bool objects)
{
    size_t i, n = depth * (objects ? 6 : 2) + 2;
    char *s = calloc(1, n + 1), *p = s;

    if (!s)
        return NULL;
    for (i = 0; i < depth; i++) {
        if (objects) {
            memcpy(p, "{\"a\":", 5);
            p += 5;
        } else {
            *p++ = '[';
        }
    }
    *p++ = '1';
    for (i = 0; i < depth; i++)
        *p++ = objects ? '}' : ']';
    return s;
}

TEST(parse_simple_document)
{
    _cleanup_json_ cJSON *root = NULL;
    static const char doc[] = " {\"a\": [1, 2.5, \"x\", true, false, null], \"b\": {}} \n";
    rc_error err = {0};

    REQUIRE(rc_json_parse(doc, sizeof doc - 1, NULL, &root, &err) == 0);
    CHECK(cJSON_IsObject(root));
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "a")), 6);
    CHECK_INT(PARSE("\"just a string\""), 0);
    CHECK_INT(PARSE("-0"), 0);
    CHECK_INT(PARSE("null"), 0);
}

TEST(depth_cap_at_and_above_the_limit)
{
    _cleanup_free_ char *at = nested(RC_JSON_DEFAULT_MAX_DEPTH, false);
    _cleanup_free_ char *above = nested(RC_JSON_DEFAULT_MAX_DEPTH + 1, false);
    _cleanup_free_ char *obj_at = nested(RC_JSON_DEFAULT_MAX_DEPTH, true);
    _cleanup_free_ char *obj_above = nested(RC_JSON_DEFAULT_MAX_DEPTH + 1, true);
    _cleanup_free_ char *very_deep = nested(100000, false);
    rc_error err = {0};
    _cleanup_json_ cJSON *root = NULL;

    REQUIRE(at && above && obj_at && obj_above && very_deep);
    CHECK_INT(parse_lim(at, strlen(at), NULL), 0);
    CHECK_INT(parse_lim(above, strlen(above), NULL), -RC_ETOOBIG);
    CHECK_INT(parse_lim(obj_at, strlen(obj_at), NULL), 0);
    CHECK_INT(parse_lim(obj_above, strlen(obj_above), NULL), -RC_ETOOBIG);
    /* Far deeper than cJSON's own limit: refused by the prescan, before cJSON recurses. */
    CHECK_INT(rc_json_parse(very_deep, strlen(very_deep), NULL, &root, &err), -RC_ETOOBIG);
    CHECK(strstr(err.msg, "deeper than 32") != NULL);
    CHECK(root == NULL);
}

TEST(depth_cap_custom_and_strings_do_not_count)
{
    rc_json_limits lim = {.max_size = 1024, .max_depth = 2};

    CHECK_INT(parse_lim("[{}]", 4, &lim), 0);
    CHECK_INT(parse_lim("[[[]]]", 6, &lim), -RC_ETOOBIG);
    CHECK_INT(parse_lim("[\"[[[[{{{{\\\"[[[\"]", 17, &lim), 0);
    lim.max_depth = 0;
    CHECK_INT(parse_lim("42", 2, &lim), 0);
    CHECK_INT(parse_lim("[]", 2, &lim), -RC_ETOOBIG);
    lim.max_depth = RC_JSON_MAX_DEPTH_LIMIT + 1;
    CHECK_INT(parse_lim("[]", 2, &lim), -RC_EINVAL);
}

TEST(size_cap)
{
    rc_json_limits lim = {.max_size = 10, .max_depth = 4};
    rc_error err = {0};
    _cleanup_json_ cJSON *root = NULL;

    CHECK_INT(parse_lim("[1,2,3,45]", 10, &lim), 0);
    CHECK_INT(rc_json_parse("[1,2,3,456]", 11, &lim, &root, &err), -RC_ETOOBIG);
    CHECK(strstr(err.msg, "10 bytes") != NULL);
    CHECK(root == NULL);
}

TEST(duplicate_keys)
{
    rc_json_limits lax = rc_json_limits_default;
    static const char many[] = "{\"k01\":1,\"k02\":1,\"k03\":1,\"k04\":1,\"k05\":1,\"k06\":1,"
                               "\"k07\":1,\"k08\":1,\"k09\":1,\"k10\":1,\"k11\":1,\"k12\":1,"
                               "\"k13\":1,\"k14\":1,\"k15\":1,\"k16\":1,\"k17\":1,\"k18\":1,"
                               "\"k19\":1,\"k20\":1,\"k01\":2}";
    static const char many_ok[] = "{\"k01\":1,\"k02\":1,\"k03\":1,\"k04\":1,\"k05\":1,\"k06\":1,"
                                  "\"k07\":1,\"k08\":1,\"k09\":1,\"k10\":1,\"k11\":1,\"k12\":1,"
                                  "\"k13\":1,\"k14\":1,\"k15\":1,\"k16\":1,\"k17\":1,\"k18\":1,"
                                  "\"k19\":1,\"k20\":1,\"k21\":2}";

    CHECK_INT(PARSE("{\"a\":1,\"a\":2}"), -RC_EPARSE);
    CHECK_INT(PARSE("{\"a\":1,\"b\":{\"c\":1,\"c\":1}}"), -RC_EPARSE);
    CHECK_INT(PARSE("[{\"x\":1},{\"x\":1,\"y\":2,\"x\":3}]"), -RC_EPARSE);
    /* Keys compare after unescaping. */
    CHECK_INT(PARSE("{\"a\":1,\"\\u0061\":2}"), -RC_EPARSE);
    /* Case matters; the same key in sibling objects is fine. */
    CHECK_INT(PARSE("{\"a\":1,\"A\":2,\"o\":{\"a\":1}}"), 0);
    /* Large objects take the sorted path. */
    CHECK_INT(PARSE(many), -RC_EPARSE);
    CHECK_INT(PARSE(many_ok), 0);
    lax.allow_duplicates = true;
    CHECK_INT(parse_lim("{\"a\":1,\"a\":2}", 13, &lax), 0);
}

TEST(invalid_utf8_in_strings)
{
    CHECK_INT(PARSE("\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9D\x84\x9E \xF4\x8F\xBF\xBF\""), 0);
    CHECK_INT(PARSE("\"\xC0\xAF\""), -RC_EPARSE);         /* overlong '/' */
    CHECK_INT(PARSE("\"\xC1\xBF\""), -RC_EPARSE);         /* overlong */
    CHECK_INT(PARSE("\"\xE0\x80\xAF\""), -RC_EPARSE);     /* overlong, 3 bytes */
    CHECK_INT(PARSE("\"\xF0\x80\x80\xAF\""), -RC_EPARSE); /* overlong, 4 bytes */
    CHECK_INT(PARSE("\"\xED\xA0\x80\""), -RC_EPARSE);     /* high surrogate U+D800 */
    CHECK_INT(PARSE("\"\xED\xBF\xBF\""), -RC_EPARSE);     /* low surrogate U+DFFF */
    CHECK_INT(PARSE("\"\xF4\x90\x80\x80\""), -RC_EPARSE); /* beyond U+10FFFF */
    CHECK_INT(PARSE("\"\xF5\x80\x80\x80\""), -RC_EPARSE);
    CHECK_INT(PARSE("\"\xE2\x82\""), -RC_EPARSE); /* truncated before the quote */
    CHECK_INT(PARSE("\"\xE2\x82"), -RC_EPARSE);   /* truncated at the end */
    CHECK_INT(PARSE("\"\xF0\x9D\x84\""), -RC_EPARSE);
    CHECK_INT(PARSE("\"\x80\""), -RC_EPARSE); /* lone continuation byte */
    CHECK_INT(PARSE("\"\xFF\""), -RC_EPARSE);
    CHECK_INT(PARSE("{\"\xC3\x28\":1}"), -RC_EPARSE); /* in a key */
    /* Escaped surrogates: a pair is fine, a lone one is not. */
    CHECK_INT(PARSE("\"\\ud834\\udd1e\""), 0);
    CHECK_INT(PARSE("\"\\ud800\""), -RC_EPARSE);
    CHECK_INT(PARSE("\"\\udc00\""), -RC_EPARSE);
    CHECK(rc_json_utf8_valid("a\xC3\xA9", 3));
    CHECK(!rc_json_utf8_valid("a\xC3", 2));
}

TEST(trailing_garbage)
{
    rc_error err = {0};
    _cleanup_json_ cJSON *root = NULL;

    CHECK_INT(PARSE("{} \r\n\t"), 0);
    CHECK_INT(rc_json_parse("{} x", 4, NULL, &root, &err), -RC_EPARSE);
    CHECK(strstr(err.msg, "offset 3") != NULL);
    CHECK_INT(PARSE("{}{}"), -RC_EPARSE);
    CHECK_INT(PARSE("1 2"), -RC_EPARSE);
    CHECK_INT(PARSE("\"a\"\"b\""), -RC_EPARSE);
    CHECK_INT(PARSE("[1]]"), -RC_EPARSE);
    CHECK_INT(PARSE("{}\x01"), -RC_EPARSE);
}

TEST(embedded_nul)
{
    CHECK_INT(PARSE("{}\0"), -RC_EPARSE);
    CHECK_INT(PARSE("{\"a\":\"x\0y\"}"), -RC_EPARSE);
    CHECK_INT(PARSE("\0{}"), -RC_EPARSE);
    /* An escaped NUL would silently cut the C string cJSON stores. */
    CHECK_INT(PARSE("\"x\\u0000y\""), -RC_EPARSE);
    CHECK_INT(PARSE("{\"a\\u0000b\":1}"), -RC_EPARSE);
    CHECK_INT(PARSE("\"\\u0001\""), 0);
}

TEST(strict_lexical_rules)
{
    CHECK_INT(PARSE(""), -RC_EPARSE);
    CHECK_INT(PARSE("   "), -RC_EPARSE);
    CHECK_INT(PARSE("+1"), -RC_EPARSE);
    CHECK_INT(PARSE("01"), -RC_EPARSE);
    CHECK_INT(PARSE("1."), -RC_EPARSE);
    CHECK_INT(PARSE(".5"), -RC_EPARSE);
    CHECK_INT(PARSE("-"), -RC_EPARSE);
    CHECK_INT(PARSE("1e"), -RC_EPARSE);
    CHECK_INT(PARSE("1e+"), -RC_EPARSE);
    CHECK_INT(PARSE("[1,]"), -RC_EPARSE);
    CHECK_INT(PARSE("{\"a\":1,}"), -RC_EPARSE);
    CHECK_INT(PARSE("NaN"), -RC_EPARSE);
    CHECK_INT(PARSE("-Infinity"), -RC_EPARSE);
    CHECK_INT(PARSE("True"), -RC_EPARSE);
    CHECK_INT(PARSE("nul"), -RC_EPARSE);
    CHECK_INT(PARSE("[truefalse]"), -RC_EPARSE);
    CHECK_INT(PARSE("\xEF\xBB\xBF{}"), -RC_EPARSE); /* BOM (cJSON would skip it) */
    CHECK_INT(PARSE("\x01[]"), -RC_EPARSE);         /* cJSON treats bytes <= 32 as space */
    CHECK_INT(PARSE("[\f1]"), -RC_EPARSE);
    CHECK_INT(PARSE("\"tab\there\""), -RC_EPARSE); /* raw control byte in a string */
    CHECK_INT(PARSE("\"a\\x\""), -RC_EPARSE);      /* unknown escape */
    CHECK_INT(PARSE("\"a\\"), -RC_EPARSE);
    CHECK_INT(PARSE("\"unterminated"), -RC_EPARSE);
    CHECK_INT(PARSE("{'a':1}"), -RC_EPARSE);
    CHECK_INT(PARSE("1e400"), -RC_EPARSE); /* overflows a double */
    CHECK_INT(PARSE("[0, -0.0, 1E+2, 2e-3, 0.5, 10]"), 0);
    CHECK_INT(PARSE("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9\""), 0);
}

/* ---- getters -------------------------------------------------------------------------------- */

static cJSON *doc(const char *s)
{
    cJSON *root = NULL;
    if (rc_json_parse(s, strlen(s), NULL, &root, NULL) < 0)
        return NULL;
    return root;
}

static const char getters_doc[] = "{\"s\":\"str\",\"i\":42,\"f\":1.5,\"t\":true,\"n\":null,"
                                  "\"o\":{\"x\":1},\"a\":[1,2],\"e\":\"\"}";

TEST(get_string)
{
    _cleanup_json_ cJSON *root = doc(getters_doc);
    const char *s = "untouched";
    rc_error err = {0};

    REQUIRE(root);
    CHECK_INT(rc_json_get_string(root, "s", &s, NULL), 0);
    CHECK_STR(s, "str");
    CHECK_INT(rc_json_get_string(root, "e", &s, NULL), 0);
    CHECK_STR(s, "");
    s = "untouched";
    CHECK_INT(rc_json_get_string(root, "i", &s, &err), -RC_EINVAL);
    CHECK(strstr(err.msg, "\"i\" is not a string") != NULL);
    CHECK_INT(rc_json_get_string(root, "n", &s, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_string(root, "o", &s, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_string(root, "missing", &s, &err), -RC_ENOTFOUND);
    CHECK(strstr(err.msg, "\"missing\" is missing") != NULL);
    CHECK_INT(rc_json_get_string(root, "S", &s, NULL), -RC_ENOTFOUND); /* case-sensitive */
    CHECK_STR(s, "untouched");
    CHECK_INT(rc_json_get_string_opt(root, "missing", &s, NULL), 0);
    CHECK_INT(rc_json_get_string_opt(root, "n", &s, NULL), 0);
    CHECK_STR(s, "untouched");
    CHECK_INT(rc_json_get_string_opt(root, "t", &s, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_string_opt(root, "s", &s, NULL), 1);
    CHECK_STR(s, "str");
}

TEST(getters_need_an_object)
{
    _cleanup_json_ cJSON *arr = doc("[1]");
    const char *s = NULL;
    int64_t v = 0;

    REQUIRE(arr);
    CHECK_INT(rc_json_get_string(arr, "a", &s, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_int64_opt(arr, "a", &v, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_bool(NULL, "a", NULL, NULL), -RC_EINVAL);
}

TEST(get_bool)
{
    _cleanup_json_ cJSON *root = doc(getters_doc);
    bool b = false;

    REQUIRE(root);
    CHECK_INT(rc_json_get_bool(root, "t", &b, NULL), 0);
    CHECK(b);
    b = false;
    CHECK_INT(rc_json_get_bool(root, "i", &b, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_bool(root, "s", &b, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_bool(root, "n", &b, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_bool(root, "missing", &b, NULL), -RC_ENOTFOUND);
    CHECK_INT(rc_json_get_bool_opt(root, "missing", &b, NULL), 0);
    CHECK_INT(rc_json_get_bool_opt(root, "n", &b, NULL), 0);
    CHECK_INT(rc_json_get_bool_opt(root, "a", &b, NULL), -RC_EINVAL);
    CHECK(!b);
    CHECK_INT(rc_json_get_bool_opt(root, "t", &b, NULL), 1);
    CHECK(b);
}

TEST(get_object_and_array)
{
    _cleanup_json_ cJSON *root = doc(getters_doc);
    const cJSON *o = NULL, *a = NULL;
    int64_t x = 0;

    REQUIRE(root);
    CHECK_INT(rc_json_get_object(root, "o", &o, NULL), 0);
    REQUIRE(o);
    CHECK_INT(rc_json_get_int64(o, "x", &x, NULL), 0);
    CHECK_INT(x, 1);
    CHECK_INT(rc_json_get_array(root, "a", &a, NULL), 0);
    REQUIRE(a);
    CHECK_INT(cJSON_GetArraySize(a), 2);
    o = a = NULL;
    CHECK_INT(rc_json_get_object(root, "a", &o, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_object(root, "n", &o, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_array(root, "o", &a, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_array(root, "s", &a, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_object(root, "missing", &o, NULL), -RC_ENOTFOUND);
    CHECK_INT(rc_json_get_array(root, "missing", &a, NULL), -RC_ENOTFOUND);
    CHECK_INT(rc_json_get_object_opt(root, "missing", &o, NULL), 0);
    CHECK_INT(rc_json_get_array_opt(root, "n", &a, NULL), 0);
    CHECK_INT(rc_json_get_array_opt(root, "o", &a, NULL), -RC_EINVAL);
    CHECK(o == NULL && a == NULL);
    CHECK_INT(rc_json_get_object_opt(root, "o", &o, NULL), 1);
    CHECK_INT(rc_json_get_array_opt(root, "a", &a, NULL), 1);
    CHECK(o != NULL && a != NULL);
}

TEST(get_int64_types)
{
    _cleanup_json_ cJSON *root = doc(getters_doc);
    int64_t v = 7;
    rc_error err = {0};

    REQUIRE(root);
    CHECK_INT(rc_json_get_int64(root, "i", &v, NULL), 0);
    CHECK_INT(v, 42);
    v = 7;
    CHECK_INT(rc_json_get_int64(root, "f", &v, &err), -RC_EINVAL);
    CHECK(strstr(err.msg, "not an integer") != NULL);
    CHECK_INT(rc_json_get_int64(root, "s", &v, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_int64(root, "t", &v, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_int64(root, "n", &v, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_int64(root, "missing", &v, NULL), -RC_ENOTFOUND);
    CHECK_INT(rc_json_get_int64_opt(root, "missing", &v, NULL), 0);
    CHECK_INT(rc_json_get_int64_opt(root, "n", &v, NULL), 0);
    CHECK_INT(rc_json_get_int64_opt(root, "f", &v, NULL), -RC_EINVAL);
    CHECK_INT(v, 7);
    CHECK_INT(rc_json_get_int64_opt(root, "i", &v, NULL), 1);
    CHECK_INT(v, 42);
}

/* Parse {"v":<num>} and read v; returns the getter's result. */
static int int_of(const char *num, int64_t *ret)
{
    char text[128];
    _cleanup_json_ cJSON *root = NULL;
    int r;

    snprintf(text, sizeof text, "{\"v\":%s}", num);
    r = rc_json_parse(text, strlen(text), NULL, &root, NULL);
    if (r < 0)
        return r;
    return rc_json_get_int64(root, "v", ret, NULL);
}

TEST(get_int64_bounds_and_exactness)
{
    int64_t v = 0;

    CHECK_INT(int_of("9223372036854775807", &v), 0);
    CHECK(v == INT64_MAX);
    CHECK_INT(int_of("-9223372036854775808", &v), 0);
    CHECK(v == INT64_MIN);
    CHECK_INT(int_of("9223372036854775808", &v), -RC_EINVAL);
    CHECK_INT(int_of("-9223372036854775809", &v), -RC_EINVAL);
    CHECK_INT(int_of("18446744073709551616", &v), -RC_EINVAL);
    CHECK_INT(int_of("100000000000000000000000", &v), -RC_EINVAL);
    /* Beyond 2^53 a double would round; the source text keeps it exact. */
    CHECK_INT(int_of("9007199254740993", &v), 0);
    CHECK(v == 9007199254740993LL);
    CHECK_INT(int_of("-9007199254740993", &v), 0);
    CHECK(v == -9007199254740993LL);
    /* Integral values written with a fraction or an exponent. */
    CHECK_INT(int_of("1.0", &v), 0);
    CHECK_INT(v, 1);
    CHECK_INT(int_of("1e3", &v), 0);
    CHECK_INT(v, 1000);
    CHECK_INT(int_of("12.5E1", &v), 0);
    CHECK_INT(v, 125);
    CHECK_INT(int_of("100e-2", &v), 0);
    CHECK_INT(v, 1);
    CHECK_INT(int_of("0e99999", &v), 0);
    CHECK_INT(v, 0);
    CHECK_INT(int_of("-0", &v), 0);
    CHECK_INT(v, 0);
    CHECK_INT(int_of("9.223372036854775807e18", &v), 0);
    CHECK(v == INT64_MAX);
    CHECK_INT(int_of("9.223372036854775808e18", &v), -RC_EINVAL);
    CHECK_INT(int_of("1e19", &v), -RC_EINVAL);
    /* Fractions, even those a double cannot tell from an integer. */
    CHECK_INT(int_of("1.5", &v), -RC_EINVAL);
    CHECK_INT(int_of("-0.5", &v), -RC_EINVAL);
    CHECK_INT(int_of("1.0000000000000001", &v), -RC_EINVAL);
    CHECK_INT(int_of("9007199254740991.4", &v), -RC_EINVAL);
    CHECK_INT(int_of("1e-400", &v), -RC_EINVAL);
    CHECK_INT(int_of("5e-1", &v), -RC_EINVAL);
}

TEST(get_int64_on_built_numbers)
{
    _cleanup_json_ cJSON *root = cJSON_CreateObject();
    _cleanup_json_ cJSON *parsed = doc("{\"v\":5}");
    int64_t v = 0;

    REQUIRE(root && parsed);
    REQUIRE(cJSON_AddNumberToObject(root, "ok", 1e15));
    REQUIRE(cJSON_AddNumberToObject(root, "big", 1e17));
    REQUIRE(cJSON_AddNumberToObject(root, "frac", 0.25));
    CHECK_INT(rc_json_get_int64(root, "ok", &v, NULL), 0);
    CHECK(v == 1000000000000000LL);
    CHECK_INT(rc_json_get_int64(root, "big", &v, NULL), -RC_EINVAL);
    CHECK_INT(rc_json_get_int64(root, "frac", &v, NULL), -RC_EINVAL);
    /* A parsed number changed afterwards: the stale source text is not used. */
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(parsed, "v"), 6);
    CHECK_INT(rc_json_get_int64(parsed, "v", &v, NULL), 0);
    CHECK_INT(v, 6);
}

/* ---- printing ------------------------------------------------------------------------------- */

TEST(print_compact_and_round_trip)
{
    static const char in[] = "{ \"a\" : [ 1, 2.5, \"x\\n\\u00e9\" ],\n \"b\": {\"c\": null}, "
                             "\"d\": true, \"big\": 9223372036854775807 }";
    _cleanup_json_ cJSON *root = NULL, *again = NULL;
    _cleanup_(rc_buf_free) rc_buf buf = RC_BUF_INIT(1024);

    REQUIRE(rc_json_parse(in, sizeof in - 1, NULL, &root, NULL) == 0);
    REQUIRE(rc_json_print(root, &buf, NULL) == 0);
    CHECK_STR(rc_buf_cstr(&buf), "{\"a\":[1,2.5,\"x\\n\xC3\xA9\"],\"b\":{\"c\":null},\"d\":true,"
                                 "\"big\":9.2233720368547758e+18}");
    CHECK_INT(rc_json_parse(buf.data, buf.len, NULL, &again, NULL), 0);
    CHECK(cJSON_Compare(root, again, true));
}

TEST(print_respects_buffer_cap)
{
    _cleanup_json_ cJSON *root = doc("{\"key\":\"value\"}");
    _cleanup_(rc_buf_free) rc_buf buf = RC_BUF_INIT(16);
    rc_error err = {0};

    REQUIRE(root);
    REQUIRE(rc_buf_append_str(&buf, "xx", NULL) == 0);
    CHECK_INT(rc_json_print(root, &buf, &err), -RC_ETOOBIG);
    CHECK_STR(rc_buf_cstr(&buf), "xx");
    rc_buf_reset(&buf);
    CHECK_INT(rc_json_print(root, &buf, NULL), 0);
    CHECK_STR(rc_buf_cstr(&buf), "{\"key\":\"value\"}");
    CHECK_INT(rc_json_print(NULL, &buf, NULL), -RC_EINVAL);
}

TEST(print_refuses_invalid_utf8)
{
    _cleanup_json_ cJSON *root = cJSON_CreateObject();
    _cleanup_(rc_buf_free) rc_buf buf = RC_BUF_INIT(1024);

    REQUIRE(root);
    REQUIRE(cJSON_AddStringToObject(root, "k", "bad \xFF byte"));
    CHECK_INT(rc_json_print(root, &buf, NULL), -RC_EINVAL);
    CHECK_INT(buf.len, 0);
}

/* ---- error bodies --------------------------------------------------------------------------- */

TEST(error_body_build_exact)
{
    _cleanup_(rc_buf_free) rc_buf buf = RC_BUF_INIT(4096);

    CHECK_INT(rc_json_error_body_write(&buf, "not_found_error", "work item not found",
                                       "work_not_found", "req_123", NULL),
              0);
    CHECK_STR(rc_buf_cstr(&buf),
              "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\",\"message\":\"work item "
              "not found\",\"details\":{\"error_code\":\"work_not_found\"}},\"request_id\":"
              "\"req_123\"}");
    rc_buf_reset(&buf);
    CHECK_INT(rc_json_error_body_write(&buf, "api_error", "say \"hi\"", NULL, NULL, NULL), 0);
    CHECK_STR(
        rc_buf_cstr(&buf),
        "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"say \\\"hi\\\"\"}}");
    CHECK_INT(rc_json_error_body_write(&buf, NULL, "m", NULL, NULL, NULL), -RC_EINVAL);
}

TEST(error_body_round_trip)
{
    _cleanup_(rc_buf_free) rc_buf buf = RC_BUF_INIT(4096);
    rc_json_error_info info;

    REQUIRE(rc_json_error_body_write(&buf, "invalid_request_error", "lease lost",
                                     "heartbeat_precondition_failed", "req_9", NULL) == 0);
    memset(&info, 'x', sizeof info);
    CHECK_INT(rc_json_error_body_parse(buf.data, buf.len, &info, NULL), 0);
    CHECK_STR(info.type, "invalid_request_error");
    CHECK_STR(info.message, "lease lost");
    CHECK_STR(info.error_code, "heartbeat_precondition_failed");
    CHECK_STR(info.request_id, "req_9");
    /* The SSE "error" event form: no details, no request id. */
    static const char sse[] =
        "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"busy\"}}";
    CHECK_INT(rc_json_error_body_parse(sse, sizeof sse - 1, &info, NULL), 0);
    CHECK_STR(info.type, "overloaded_error");
    CHECK_STR(info.message, "busy");
    CHECK_STR(info.error_code, "");
    CHECK_STR(info.request_id, "");
}

TEST(error_body_parse_failures_and_odd_shapes)
{
    rc_json_error_info info;
    static const char html[] = "<html><body>502 Bad Gateway</body></html>";
    static const char no_error[] = "{\"type\":\"error\"}";
    static const char wrong_types[] =
        "{\"error\":{\"type\":5,\"message\":null,\"details\":\"x\"},\"request_id\":[]}";

    CHECK_INT(rc_json_error_body_parse(html, sizeof html - 1, &info, NULL), -RC_EPARSE);
    CHECK_INT(rc_json_error_body_parse(no_error, sizeof no_error - 1, &info, NULL), -RC_EPARSE);
    CHECK_INT(rc_json_error_body_parse("[]", 2, &info, NULL), -RC_EPARSE);
    CHECK_INT(rc_json_error_body_parse("", 0, &info, NULL), -RC_EPARSE);
    CHECK_INT(rc_json_error_body_parse(wrong_types, sizeof wrong_types - 1, &info, NULL), 0);
    CHECK_STR(info.type, "");
    CHECK_STR(info.message, "");
    CHECK_STR(info.error_code, "");
    CHECK_STR(info.request_id, "");
}

TEST(error_body_long_message_cut_at_utf8_boundary)
{
    _cleanup_(rc_buf_free) rc_buf buf = RC_BUF_INIT(8192);
    char msg[1200];
    rc_json_error_info info;
    size_t i;

    /* 2-byte characters: byte 511 (the last that fits) is a continuation byte, so the cut backs
     * off to 510. */
    for (i = 0; i + 1 < sizeof msg - 1; i += 2) {
        msg[i] = '\xC3';
        msg[i + 1] = '\xA9';
    }
    msg[i] = '\0';
    REQUIRE(rc_json_error_body_write(&buf, "api_error", msg, NULL, NULL, NULL) == 0);
    REQUIRE(rc_json_error_body_parse(buf.data, buf.len, &info, NULL) == 0);
    CHECK_INT(strlen(info.message), 510);
    CHECK(rc_json_utf8_valid(info.message, strlen(info.message)));
}
