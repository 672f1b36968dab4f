/* fuzz_apichan_request.c - libFuzzer target for the API channel's request-head parser, framing
 * checks, path/query scoping and request-header filter (broker/apichan.c).
 *
 * Input: first byte selects the mode, the rest is data.
 *   odd:  the data is a raw request head (and maybe more): parse it; when it parses, run the
 *         framing check, the route matcher on its method and target, and the header filter.
 *   even: the data (up to its first NUL) is a request target, matched with GET, POST and DELETE.
 * Checks (abort on violation): the parser's result is consistent (length within the input and
 * ending in CRLF CRLF, pointers inside the copy, caps respected); every target the matcher lets
 * through is a plain path of this session's scope (no '%', '\', "//", dot segment or trailing
 * '/', the exact session/work/environment ids) with a query free of '#', '+' and ';'; the
 * header filter never passes a credential or hop-by-hop header. */
#include "apichan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static const char *const stores[] = {"memstore_1", NULL};
static const rc_apichan_scope scope = {.environment_id = "env_A1",
                                       .work_id = "work_W1",
                                       .session_id = "sesn_S1",
                                       .features =
                                           RC_APICHAN_ALLOW_SKILLS | RC_APICHAN_ALLOW_MEMORY,
                                       .memory_store_ids = stores};

static bool has_dot_segment(const char *path, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (path[i] != '/')
            continue;
        size_t j = i + 1;
        while (j < len && path[j] == '.')
            j++;
        if (j > i + 1 && j - i - 1 <= 2 && (j == len || path[j] == '/'))
            return true;
    }
    return false;
}

static bool path_is(const char *path, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(path, want, len) == 0;
}

static bool has_prefix(const char *path, size_t len, const char *prefix)
{
    size_t pl = strlen(prefix);
    return len >= pl && memcmp(path, prefix, pl) == 0 && (len == pl || path[pl] == '/');
}

/* What an allowed target must look like. */
static void check_allowed(const char *target, int route)
{
    CHECK(route > RC_APICHAN_ROUTE_NONE && route < RC_APICHAN_ROUTE_MAX);
    const char *q = strchr(target, '?');
    size_t len = q ? (size_t)(q - target) : strlen(target);
    CHECK(len > 0 && target[0] == '/');
    CHECK(!memchr(target, '%', len) && !memchr(target, '\\', len));
    CHECK(!memmem(target, len, "//", 2));
    CHECK(target[len - 1] != '/');
    CHECK(!has_dot_segment(target, len));
    CHECK(!strchr(target, '#'));
    if (q)
        CHECK(!strchr(q, '+') && !strchr(q, ';') && !strchr(q + 1, '?'));
    switch (route) {
    case RC_APICHAN_ROUTE_SESSION_GET:
        CHECK(path_is(target, len, "/v1/sessions/sesn_S1"));
        break;
    case RC_APICHAN_ROUTE_EVENTS_LIST:
    case RC_APICHAN_ROUTE_EVENTS_SEND:
        CHECK(path_is(target, len, "/v1/sessions/sesn_S1/events"));
        break;
    case RC_APICHAN_ROUTE_EVENTS_STREAM:
        CHECK(path_is(target, len, "/v1/sessions/sesn_S1/events/stream"));
        break;
    case RC_APICHAN_ROUTE_WORK_HEARTBEAT:
        CHECK(path_is(target, len, "/v1/environments/env_A1/work/work_W1/heartbeat"));
        break;
    case RC_APICHAN_ROUTE_WORK_STOP:
        CHECK(path_is(target, len, "/v1/environments/env_A1/work/work_W1/stop"));
        break;
    case RC_APICHAN_ROUTE_SKILL_VERSIONS:
    case RC_APICHAN_ROUTE_SKILL_VERSION:
    case RC_APICHAN_ROUTE_SKILL_CONTENT:
        CHECK(has_prefix(target, len, "/v1/skills"));
        break;
    default:
        CHECK(has_prefix(target, len, "/v1/memory_stores/memstore_1/memories"));
        break;
    }
}

static void match_target(const char *method, const char *target)
{
    int route = -1;
    rc_error err = {0};
    int r = rc_apichan_route_match(&scope, method, target, &route, &err);
    CHECK(r == 0 || r == -RC_EAUTH);
    if (r == 0)
        check_allowed(target, route);
    else
        CHECK(route == -1 && err.msg[0] != '\0');
}

static void check_head(const uint8_t *data, size_t size, int n, const rc_apichan_head *h)
{
    CHECK((size_t)n <= size && n >= 4 && (size_t)n <= RC_APICHAN_HEAD_MAX);
    CHECK(memcmp(data + n - 4, "\r\n\r\n", 4) == 0);
    CHECK(h->method && h->target && h->n_headers <= RC_APICHAN_HEADERS_MAX);
    for (size_t i = 0; i < h->n_headers; i++) {
        CHECK(h->headers[i].name[0] != '\0');
        CHECK(!strpbrk(h->headers[i].value, "\r\n"));
    }
    int st = rc_apichan_head_refusal(h, 1024);
    CHECK(st == 0 || st == 400 || st == 411 || st == 413 || st == 417 || st == 501 || st == 505);
    match_target(h->method, h->target);
    char **lines = NULL;
    int k = rc_apichan_upstream_headers(h, &lines, NULL);
    CHECK(k >= 0 && (size_t)k <= h->n_headers);
    static const char *const never[] = {"authorization:",
                                        "x-api-key:",
                                        "proxy-authorization:",
                                        "cookie:",
                                        "host:",
                                        "connection:",
                                        "transfer-encoding:",
                                        "content-length:",
                                        "te:",
                                        "upgrade:",
                                        "expect:",
                                        NULL};
    for (int i = 0; i < k; i++)
        for (const char *const *nv = never; *nv; nv++)
            CHECK(strncasecmp(lines[i], *nv, strlen(*nv)) != 0);
    CHECK(lines[k] == NULL);
    rc_apichan_lines_free(lines);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 64 * 1024)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    if (mode & 1) {
        rc_apichan_head h = {0};
        rc_error err = {0};
        int n = rc_apichan_head_parse((const char *)data, size, &h, &err);
        CHECK(n >= 0 || n == -RC_EPARSE || n == -RC_ETOOBIG);
        if (n > 0) {
            check_head(data, size, n, &h);
            rc_apichan_head_clear(&h);
        }
        return 0;
    }
    char *target = malloc(size + 1);
    CHECK(target);
    memcpy(target, data, size);
    target[size] = '\0';
    match_target("GET", target);
    match_target("POST", target);
    match_target("DELETE", target);
    free(target);
    return 0;
}
