/* apichan.c - the broker's API channel (see apichan.h): a unix-socket HTTP/1.1 server that only
 * the runner's uid may use, which forwards the session's own API calls upstream with the
 * session's credential injected, and refuses everything else.
 *
 * Layout of this file, in the order a request meets it:
 *   character classes and small helpers
 *   request head parser (rc_apichan_head_parse) and framing checks (rc_apichan_head_refusal)
 *   path and query scoping (rc_apichan_route_match)
 *   header filters (rc_apichan_upstream_headers, rc_apichan_response_header_allowed)
 *   credential choice and the locked credential page
 *   audit lines (own minimal helpers: broker/audit.h did not exist when this was written)
 *   the heartbeat record (rc_apichan_hb_record_*): the last 200 heartbeat answer, on disk for
 *     the launcher's reconcile after a crash
 *   server: socket creation, accept thread, one thread per connection, the curl relay
 *
 * Trust: every byte from the socket is hostile until parsed (the peer is the runner, but the
 * runner runs next to the agent's code and may be subverted). The upstream is trusted for
 * content but not for size: non-stream bodies are capped. */
#include "apichan.h"

#include "buf.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "webhook.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define METHOD_MAX        16
#define SEGMENTS_MAX      8
#define UPSTREAM_HDRS_MAX (64u * 1024)
#define READ_CHUNK        16384
#define CREDENTIAL_MAX    4096
#define BASE_URL_MAX      2048
#define AUDIT_PATH_MAX    256
#define AUTH_PREFIX       "Authorization: Bearer "
#define SOCKET_TMP_SUFFIX ".tmp-0123456789abcdef" /* length reserved for the temporary name */
#define REQUEST_ID_PREFIX "req_broker_"
#define LEARN_BODY_MAX    (4u << 20) /* a session answer read for its memory stores */

/* ---- character classes ------------------------------------------------------------------- */

static bool is_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 3986 unreserved. */
static bool is_unreserved(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int hex_value(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Ids in paths (protocol.md 1.1.1 shapes, skill versions, "latest"): [A-Za-z0-9_-]. */
static bool id_shape_ok(const char *s, size_t len)
{
    if (len == 0 || len > RC_APICHAN_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_alpha(c) && !is_digit(c) && c != '_' && c != '-')
            return false;
    }
    return true;
}

static bool all_digits(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_digit((unsigned char)s[i]))
            return false;
    return true;
}

static bool visible_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

static int64_t now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- request head parser ------------------------------------------------------------------- */

void rc_apichan_head_clear(rc_apichan_head *h)
{
    if (!h)
        return;
    free(h->storage);
    memset(h, 0, sizeof *h);
    h->content_length = -1;
}

/* Find the end of the head (the index just past CRLF CRLF) while checking line endings and the
 * line and head caps on whatever has arrived. >0: head length; 0: incomplete; <0: refused. */
static int head_find_end(const char *buf, size_t len, size_t *ret_end, rc_error *err)
{
    size_t pos = 0;
    for (unsigned line_no = 0;; line_no++) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t line_end = nl ? (size_t)(nl - buf) : len;
        const char *cr = memchr(buf + pos, '\r', line_end - pos);
        if (cr && (size_t)(cr - buf) + 1 < line_end)
            return rc_error_set(err, RC_EPARSE, "bare CR in the request head");
        if (cr && !nl && (size_t)(cr - buf) + 1 < len)
            return rc_error_set(err, RC_EPARSE, "bare CR in the request head");
        if (line_end - pos > RC_APICHAN_LINE_MAX + 1)
            return rc_error_set(err, RC_ETOOBIG, "request head line too long");
        if (!nl) {
            if (len >= RC_APICHAN_HEAD_MAX)
                return rc_error_set(err, RC_ETOOBIG, "request head too large");
            return 0;
        }
        if (line_end == pos || buf[line_end - 1] != '\r')
            return rc_error_set(err, RC_EPARSE, "request head line not ended by CRLF");
        if (line_end + 1 > RC_APICHAN_HEAD_MAX)
            return rc_error_set(err, RC_ETOOBIG, "request head too large");
        if (line_end - 1 == pos) {
            if (line_no == 0)
                return rc_error_set(err, RC_EPARSE, "empty request line");
            *ret_end = line_end + 1;
            return 1;
        }
        pos = line_end + 1;
    }
}

static int parse_request_line(char *line, rc_apichan_head *h, rc_error *err)
{
    char *sp1 = strchr(line, ' ');
    if (!sp1 || sp1 == line || sp1 - line > METHOD_MAX)
        return rc_error_set(err, RC_EPARSE, "malformed request line");
    for (char *p = line; p < sp1; p++)
        if (*p < 'A' || *p > 'Z')
            return rc_error_set(err, RC_EPARSE, "malformed request method");
    *sp1 = '\0';
    char *target = sp1 + 1;
    char *sp2 = strchr(target, ' ');
    if (!sp2 || sp2 == target)
        return rc_error_set(err, RC_EPARSE, "malformed request line");
    *sp2 = '\0';
    for (char *p = target; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            return rc_error_set(err, RC_EPARSE, "request target holds a forbidden byte");
    const char *v = sp2 + 1;
    if (strncmp(v, "HTTP/", 5) != 0 || !is_digit((unsigned char)v[5]) || v[6] != '.' ||
        !is_digit((unsigned char)v[7]) || v[8] != '\0')
        return rc_error_set(err, RC_EPARSE, "malformed HTTP version");
    h->method = line;
    h->target = target;
    h->http11 = strcmp(v, "HTTP/1.1") == 0;
    return 0;
}

/* Does the comma-separated token list value contain token (case-insensitive)? */
static bool list_has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if ((size_t)(p - start) == tl && strncasecmp(start, token, tl) == 0)
            return true;
        while (*p && *p != ',')
            p++;
    }
    return false;
}

static void note_special_header(rc_apichan_head *h, const char *name, const char *value,
                                unsigned *hosts)
{
    if (strcasecmp(name, "content-length") == 0) {
        size_t vl = strlen(value);
        if (h->content_length >= 0 || !all_digits(value, vl) || vl > 15)
            h->bad_framing = true;
        else
            h->content_length = strtoll(value, NULL, 10);
    } else if (strcasecmp(name, "transfer-encoding") == 0) {
        h->transfer_encoding = true;
    } else if (strcasecmp(name, "expect") == 0) {
        if (strcasecmp(value, "100-continue") == 0)
            h->expect_continue = true;
        else
            h->expect_other = true;
    } else if (strcasecmp(name, "connection") == 0) {
        if (list_has_token(value, "close"))
            h->connection_close = true;
    } else if (strcasecmp(name, "host") == 0) {
        (*hosts)++;
    }
}

static int parse_header_line(char *line, rc_apichan_head *h, unsigned *hosts, rc_error *err)
{
    if (*line == ' ' || *line == '\t')
        return rc_error_set(err, RC_EPARSE, "obsolete line folding in the request head");
    char *colon = line;
    while (is_tchar((unsigned char)*colon))
        colon++;
    if (colon == line || *colon != ':')
        return rc_error_set(err, RC_EPARSE, "malformed header field name");
    *colon = '\0';
    char *value = colon + 1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t vl = strlen(value);
    while (vl > 0 && (value[vl - 1] == ' ' || value[vl - 1] == '\t'))
        value[--vl] = '\0';
    for (size_t i = 0; i < vl; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c != '\t' && (c < 0x20 || c > 0x7e))
            return rc_error_set(err, RC_EPARSE, "header field value holds a forbidden byte");
    }
    if (h->n_headers >= RC_APICHAN_HEADERS_MAX)
        return rc_error_set(err, RC_ETOOBIG, "too many header fields");
    h->headers[h->n_headers++] = (rc_apichan_header){.name = line, .value = value};
    note_special_header(h, line, value, hosts);
    return 0;
}

static int parse_head_lines(char *s, rc_apichan_head *h, rc_error *err)
{
    unsigned hosts = 0;
    char *line = s;
    char *crlf = strstr(line, "\r\n");
    *crlf = '\0';
    int r = parse_request_line(line, h, err);
    if (r < 0)
        return r;
    for (line = crlf + 2; *line != '\r'; line = crlf + 2) {
        crlf = strstr(line, "\r\n");
        *crlf = '\0';
        if ((r = parse_header_line(line, h, &hosts, err)) < 0)
            return r;
    }
    if (hosts != 1)
        return rc_error_set(err, RC_EPARSE, "a request needs exactly one Host header");
    return 0;
}

int rc_apichan_head_parse(const char *buf, size_t len, rc_apichan_head *ret, rc_error *err)
{
    size_t end = 0;
    int r = head_find_end(buf, len, &end, err);
    if (r <= 0)
        return r;
    if (memchr(buf, '\0', end))
        return rc_error_set(err, RC_EPARSE, "NUL byte in the request head");
    rc_apichan_head h = {.content_length = -1};
    h.storage = malloc(end + 1);
    if (!h.storage)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    memcpy(h.storage, buf, end);
    h.storage[end] = '\0';
    if ((r = parse_head_lines(h.storage, &h, err)) < 0) {
        rc_apichan_head_clear(&h);
        return r;
    }
    *ret = h;
    return (int)end;
}

int rc_apichan_head_refusal(const rc_apichan_head *h, size_t max_body)
{
    if (!h->http11)
        return 505;
    if (h->bad_framing || (h->transfer_encoding && h->content_length >= 0))
        return 400;
    if (h->transfer_encoding)
        return 411;
    if (h->expect_other)
        return 417;
    if (strcmp(h->method, "GET") != 0 && strcmp(h->method, "POST") != 0 &&
        strcmp(h->method, "DELETE") != 0)
        return 501;
    if (h->content_length > 0 && (unsigned long long)h->content_length > max_body)
        return 413;
    return 0;
}

/* ---- the local route: running tool calls ------------------------------------------------ */

bool rc_apichan_is_running_calls_target(const char *target)
{
    return target && strcmp(target, RC_APICHAN_RUNNING_CALLS_PATH) == 0;
}

int rc_apichan_running_calls_parse(const char *body, size_t len, rc_audit_call_ids *ret,
                                   rc_error *err)
{
    static const rc_json_limits lim = {.max_size = RC_APICHAN_RUNNING_CALLS_BODY_MAX,
                                       .max_depth = 2};
    _cleanup_json_ cJSON *o = NULL;
    rc_audit_call_ids out = {0};
    const cJSON *ids, *it;

    if (len > RC_APICHAN_RUNNING_CALLS_BODY_MAX)
        return rc_error_set(err, RC_ETOOBIG, "running tool calls: body too large");
    if (rc_json_parse(body ? body : "", len, &lim, &o, NULL) < 0)
        return rc_error_set(err, RC_EPARSE, "running tool calls: body is not strict JSON");
    if (!cJSON_IsObject(o) || !(ids = o->child) || ids->next || !ids->string ||
        strcmp(ids->string, "ids") != 0 || !cJSON_IsArray(ids))
        return rc_error_set(err, RC_EPARSE, "running tool calls: want exactly {\"ids\":[...]}");
    cJSON_ArrayForEach(it, ids)
    {
        if (out.n == RC_AUDIT_CALLS_MAX)
            return rc_error_set(err, RC_EPARSE, "running tool calls: too many ids");
        if (!cJSON_IsString(it) || !it->valuestring ||
            !rc_audit_call_id_ok(it->valuestring, strlen(it->valuestring)))
            return rc_error_set(err, RC_EPARSE, "running tool calls: an id is not a tool-use id");
        for (size_t i = 0; i < out.n; i++)
            if (strcmp(out.ids[i], it->valuestring) == 0)
                return rc_error_set(err, RC_EPARSE, "running tool calls: duplicate id");
        snprintf(out.ids[out.n++], sizeof out.ids[0], "%s", it->valuestring);
    }
    *ret = out;
    return 0;
}

/* ---- path and query scoping ---------------------------------------------------------------- */

enum qkind { Q_ANY = 0, Q_DIGITS, Q_ORDER, Q_VIEW, Q_BOOL };

typedef struct qkey {
    const char *name;
    enum qkind kind;
    bool array; /* may repeat */
} qkey;

/* Query keys each route accepts: what protocol.md gives that call ("beta" on every path, 2.2.3). */
static const qkey q_beta_only[] = {{"beta", Q_BOOL, false}, {NULL, 0, false}};
static const qkey q_events_list[] = {{"beta", Q_BOOL, false},
                                     {"limit", Q_DIGITS, false},
                                     {"page", Q_ANY, false},
                                     {"order", Q_ORDER, false},
                                     {"types[]", Q_ANY, true},
                                     {"created_at[gt]", Q_ANY, false},
                                     {"created_at[gte]", Q_ANY, false},
                                     {"created_at[lt]", Q_ANY, false},
                                     {"created_at[lte]", Q_ANY, false},
                                     {NULL, 0, false}};
static const qkey q_events_stream[] = {
    {"beta", Q_BOOL, false}, {"event_deltas[]", Q_ANY, true}, {NULL, 0, false}};
static const qkey q_heartbeat[] = {{"beta", Q_BOOL, false},
                                   {"expected_last_heartbeat", Q_ANY, false},
                                   {"desired_ttl_seconds", Q_DIGITS, false},
                                   {NULL, 0, false}};
static const qkey q_memory_list[] = {
    {"beta", Q_BOOL, false}, {"view", Q_VIEW, false},       {"limit", Q_DIGITS, false},
    {"page", Q_ANY, false},  {"path_prefix", Q_ANY, false}, {"depth", Q_DIGITS, false},
    {NULL, 0, false}};
static const qkey q_memory_get[] = {
    {"beta", Q_BOOL, false}, {"view", Q_VIEW, false}, {NULL, 0, false}};
static const qkey q_memory_delete[] = {
    {"beta", Q_BOOL, false}, {"expected_content_sha256", Q_ANY, false}, {NULL, 0, false}};

typedef struct route_info {
    const char *name;
    const qkey *query;
    bool stream;
    bool body;
} route_info;

static const route_info routes[RC_APICHAN_ROUTE_MAX] = {
    [RC_APICHAN_ROUTE_NONE] = {"none", q_beta_only, false, false},
    [RC_APICHAN_ROUTE_SESSION_GET] = {"session_get", q_beta_only, false, false},
    [RC_APICHAN_ROUTE_EVENTS_LIST] = {"events_list", q_events_list, false, false},
    [RC_APICHAN_ROUTE_EVENTS_SEND] = {"events_send", q_beta_only, false, true},
    [RC_APICHAN_ROUTE_EVENTS_STREAM] = {"events_stream", q_events_stream, true, false},
    [RC_APICHAN_ROUTE_WORK_HEARTBEAT] = {"work_heartbeat", q_heartbeat, false, true},
    [RC_APICHAN_ROUTE_WORK_STOP] = {"work_stop", q_beta_only, false, true},
    [RC_APICHAN_ROUTE_SKILL_VERSIONS] = {"skill_versions", q_beta_only, false, false},
    [RC_APICHAN_ROUTE_SKILL_VERSION] = {"skill_version", q_beta_only, false, false},
    [RC_APICHAN_ROUTE_SKILL_CONTENT] = {"skill_content", q_beta_only, false, false},
    [RC_APICHAN_ROUTE_MEMORY_LIST] = {"memory_list", q_memory_list, false, false},
    [RC_APICHAN_ROUTE_MEMORY_CREATE] = {"memory_create", q_beta_only, false, true},
    [RC_APICHAN_ROUTE_MEMORY_GET] = {"memory_get", q_memory_get, false, false},
    [RC_APICHAN_ROUTE_MEMORY_UPDATE] = {"memory_update", q_beta_only, false, true},
    [RC_APICHAN_ROUTE_MEMORY_DELETE] = {"memory_delete", q_memory_delete, false, false},
};

const char *rc_apichan_route_name(int route)
{
    if (route <= 0 || route >= RC_APICHAN_ROUTE_MAX)
        return "none";
    return routes[route].name;
}

bool rc_apichan_route_is_stream(int route)
{
    return route > 0 && route < RC_APICHAN_ROUTE_MAX && routes[route].stream;
}

bool rc_apichan_route_takes_body(int route)
{
    return route > 0 && route < RC_APICHAN_ROUTE_MAX && routes[route].body;
}

typedef struct seg {
    const char *p;
    size_t len;
} seg;

static bool seg_is(const seg *s, const char *lit)
{
    return s->len == strlen(lit) && memcmp(s->p, lit, s->len) == 0;
}

static bool seg_equals_id(const seg *s, const char *id)
{
    return id && s->len == strlen(id) && memcmp(s->p, id, s->len) == 0;
}

/* Split a strictly checked path into segments. */
static int path_split(const char *path, size_t len, seg *segs, size_t *ret_n, rc_error *err)
{
    if (len == 0 || path[0] != '/')
        return rc_error_set(err, RC_EAUTH, "request target is not an absolute path");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '%')
            return rc_error_set(err, RC_EAUTH, "percent-encoding is not allowed in the path");
        if (c == '\\')
            return rc_error_set(err, RC_EAUTH, "backslash in the path");
        if (c != '/' && !is_unreserved(c))
            return rc_error_set(err, RC_EAUTH, "forbidden character in the path");
    }
    size_t n = 0;
    const char *p = path + 1, *end = path + len;
    for (;;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *se = slash ? slash : end;
        seg s = {p, (size_t)(se - p)};
        if (s.len == 0)
            return rc_error_set(err, RC_EAUTH, "empty path segment ('//' or a trailing '/')");
        if (seg_is(&s, ".") || seg_is(&s, ".."))
            return rc_error_set(err, RC_EAUTH, "dot segment in the path");
        if (n >= SEGMENTS_MAX)
            return rc_error_set(err, RC_EAUTH, "path is not allowed through the API channel");
        segs[n++] = s;
        if (!slash)
            break;
        p = slash + 1;
    }
    *ret_n = n;
    return 0;
}

static int forbid(rc_error *err, const char *why)
{
    return rc_error_set(err, RC_EAUTH, "%s", why);
}

/* /v1/sessions/{sid}[/events[/stream]] */
static int match_sessions(const rc_apichan_scope *sc, const char *m, const seg *s, size_t n,
                          int *ret, rc_error *err)
{
    if (n < 3 || n > 5)
        return forbid(err, "path is not allowed through the API channel");
    if (!seg_equals_id(&s[2], sc->session_id))
        return forbid(err, "session id is not this channel's session");
    int route = RC_APICHAN_ROUTE_NONE;
    if (n == 3 && strcmp(m, "GET") == 0)
        route = RC_APICHAN_ROUTE_SESSION_GET;
    else if (n == 4 && seg_is(&s[3], "events") && strcmp(m, "GET") == 0)
        route = RC_APICHAN_ROUTE_EVENTS_LIST;
    else if (n == 4 && seg_is(&s[3], "events") && strcmp(m, "POST") == 0)
        route = RC_APICHAN_ROUTE_EVENTS_SEND;
    else if (n == 5 && seg_is(&s[3], "events") && seg_is(&s[4], "stream") && strcmp(m, "GET") == 0)
        route = RC_APICHAN_ROUTE_EVENTS_STREAM;
    if (route == RC_APICHAN_ROUTE_NONE)
        return forbid(err, "method and path are not allowed through the API channel");
    *ret = route;
    return 0;
}

/* /v1/environments/{env}/work/{wid}/heartbeat|stop */
static int match_environments(const rc_apichan_scope *sc, const char *m, const seg *s, size_t n,
                              int *ret, rc_error *err)
{
    if (n != 6 || !seg_is(&s[3], "work"))
        return forbid(err, "path is not allowed through the API channel");
    if (!seg_equals_id(&s[2], sc->environment_id))
        return forbid(err, "environment id is not this channel's environment");
    if (!seg_equals_id(&s[4], sc->work_id))
        return forbid(err, "work id is not this channel's work item");
    if (strcmp(m, "POST") != 0)
        return forbid(err, "method and path are not allowed through the API channel");
    if (seg_is(&s[5], "heartbeat"))
        *ret = RC_APICHAN_ROUTE_WORK_HEARTBEAT;
    else if (seg_is(&s[5], "stop"))
        *ret = RC_APICHAN_ROUTE_WORK_STOP;
    else
        return forbid(err, "path is not allowed through the API channel");
    return 0;
}

/* /v1/skills/{skill}/versions[/{version}[/content]], GET only, when enabled. */
static int match_skills(const rc_apichan_scope *sc, const char *m, const seg *s, size_t n, int *ret,
                        rc_error *err)
{
    if (!(sc->features & RC_APICHAN_ALLOW_SKILLS))
        return forbid(err, "skills are not enabled on this channel");
    if (n < 4 || n > 6 || !seg_is(&s[3], "versions") || !id_shape_ok(s[2].p, s[2].len) ||
        (n >= 5 && !id_shape_ok(s[4].p, s[4].len)) || (n == 6 && !seg_is(&s[5], "content")))
        return forbid(err, "path is not allowed through the API channel");
    if (strcmp(m, "GET") != 0)
        return forbid(err, "method and path are not allowed through the API channel");
    *ret = n == 4   ? RC_APICHAN_ROUTE_SKILL_VERSIONS
           : n == 5 ? RC_APICHAN_ROUTE_SKILL_VERSION
                    : RC_APICHAN_ROUTE_SKILL_CONTENT;
    return 0;
}

static bool memory_store_listed(const rc_apichan_scope *sc, const seg *s)
{
    for (const char *const *id = sc->memory_store_ids; id && *id; id++)
        if (seg_equals_id(s, *id))
            return true;
    return false;
}

/* /v1/memory_stores/{store}/memories[/{mem}], the session's stores only, when enabled. */
static int match_memory(const rc_apichan_scope *sc, const char *m, const seg *s, size_t n, int *ret,
                        rc_error *err)
{
    if (!(sc->features & RC_APICHAN_ALLOW_MEMORY))
        return forbid(err, "memory stores are not enabled on this channel");
    if (n < 4 || n > 5 || !seg_is(&s[3], "memories") || (n == 5 && !id_shape_ok(s[4].p, s[4].len)))
        return forbid(err, "path is not allowed through the API channel");
    if (!memory_store_listed(sc, &s[2]))
        return forbid(err, "memory store is not one of this session's stores");
    int route = RC_APICHAN_ROUTE_NONE;
    if (n == 4)
        route = strcmp(m, "GET") == 0    ? RC_APICHAN_ROUTE_MEMORY_LIST
                : strcmp(m, "POST") == 0 ? RC_APICHAN_ROUTE_MEMORY_CREATE
                                         : RC_APICHAN_ROUTE_NONE;
    else
        route = strcmp(m, "GET") == 0      ? RC_APICHAN_ROUTE_MEMORY_GET
                : strcmp(m, "POST") == 0   ? RC_APICHAN_ROUTE_MEMORY_UPDATE
                : strcmp(m, "DELETE") == 0 ? RC_APICHAN_ROUTE_MEMORY_DELETE
                                           : RC_APICHAN_ROUTE_NONE;
    if (route == RC_APICHAN_ROUTE_NONE)
        return forbid(err, "method and path are not allowed through the API channel");
    *ret = route;
    return 0;
}

/* Percent-decode s[0, len) into out (NUL-terminated, at most outsz-1 bytes). -1 on a malformed
 * escape or when it does not fit. */
static ssize_t pct_decode(const char *s, size_t len, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hex_value((unsigned char)s[i + 1]), lo = hex_value((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= outsz)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (ssize_t)o;
}

static const qkey *qkey_find(const qkey *keys, const char *name)
{
    for (const qkey *k = keys; k->name; k++)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

static bool qvalue_ok(const qkey *k, const char *v, size_t vl)
{
    for (size_t i = 0; i < vl; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] == 0x7f)
            return false;
    switch (k->kind) {
    case Q_DIGITS:
        return vl <= 10 && all_digits(v, vl);
    case Q_ORDER:
        return strcmp(v, "asc") == 0 || strcmp(v, "desc") == 0;
    case Q_VIEW:
        return strcmp(v, "basic") == 0 || strcmp(v, "full") == 0;
    case Q_BOOL:
        return strcmp(v, "true") == 0 || strcmp(v, "false") == 0;
    default:
        return true;
    }
}

/* One "key=value" pair of the query. seen: bit per key of the route's table. */
static int query_pair_check(const char *p, size_t len, const qkey *keys, uint32_t *seen,
                            rc_error *err)
{
    const char *eq = memchr(p, '=', len);
    if (len == 0 || !eq || memchr(eq + 1, '=', len - (size_t)(eq + 1 - p)))
        return forbid(err, "malformed query string");
    char name[64];
    char value[4096];
    ssize_t nl = pct_decode(p, (size_t)(eq - p), name, sizeof name);
    ssize_t vl = pct_decode(eq + 1, len - (size_t)(eq + 1 - p), value, sizeof value);
    if (nl <= 0 || vl < 0 || strlen(name) != (size_t)nl || strlen(value) != (size_t)vl)
        return forbid(err, "malformed query string");
    const qkey *k = qkey_find(keys, name);
    if (!k)
        return forbid(err, "query parameter is not allowed on this path");
    uint32_t bit = 1u << (unsigned)(k - keys);
    if (!k->array && (*seen & bit))
        return forbid(err, "query parameter given twice");
    *seen |= bit;
    if (!qvalue_ok(k, value, (size_t)vl))
        return forbid(err, "query parameter value is not allowed");
    return 0;
}

static int query_check(const char *q, size_t len, const qkey *keys, rc_error *err)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)q[i];
        if (!is_unreserved(c) && c != '%' && c != '=' && c != '&' && c != '[' && c != ']')
            return forbid(err, "forbidden character in the query string");
    }
    uint32_t seen = 0;
    size_t pos = 0;
    while (len > 0 && pos <= len) {
        const char *amp = memchr(q + pos, '&', len - pos);
        size_t pl = amp ? (size_t)(amp - (q + pos)) : len - pos;
        int r = query_pair_check(q + pos, pl, keys, &seen, err);
        if (r < 0)
            return r;
        if (!amp)
            break;
        pos += pl + 1;
    }
    return 0;
}

int rc_apichan_route_match(const rc_apichan_scope *scope, const char *method, const char *target,
                           int *ret_route, rc_error *err)
{
    if (!scope || !method || !target)
        return rc_error_set(err, RC_EINVAL, "missing argument");
    size_t tl = strlen(target);
    if (memchr(target, '#', tl))
        return forbid(err, "fragment in the request target");
    const char *qm = memchr(target, '?', tl);
    size_t pl = qm ? (size_t)(qm - target) : tl;
    seg s[SEGMENTS_MAX];
    size_t n = 0;
    int r = path_split(target, pl, s, &n, err);
    if (r < 0)
        return r;
    int route = RC_APICHAN_ROUTE_NONE;
    if (n < 2 || !seg_is(&s[0], "v1"))
        r = forbid(err, "path is not allowed through the API channel");
    else if (seg_is(&s[1], "sessions"))
        r = match_sessions(scope, method, s, n, &route, err);
    else if (seg_is(&s[1], "environments"))
        r = match_environments(scope, method, s, n, &route, err);
    else if (seg_is(&s[1], "skills"))
        r = match_skills(scope, method, s, n, &route, err);
    else if (seg_is(&s[1], "memory_stores"))
        r = match_memory(scope, method, s, n, &route, err);
    else
        r = forbid(err, "path is not allowed through the API channel");
    if (r < 0)
        return r;
    if (qm && (r = query_check(qm + 1, tl - pl - 1, routes[route].query, err)) < 0)
        return r;
    *ret_route = route;
    return 0;
}

/* ---- header filters ------------------------------------------------------------------------ */

bool rc_apichan_request_header_allowed(const char *name)
{
    static const char *const allowed[] = {"accept",
                                          "anthropic-beta",
                                          "anthropic-version",
                                          "content-type",
                                          "idempotency-key",
                                          "user-agent",
                                          NULL};
    for (const char *const *a = allowed; *a; a++)
        if (strcasecmp(name, *a) == 0)
            return true;
    return strncasecmp(name, "x-stainless-", 12) == 0 && name[12] != '\0';
}

bool rc_apichan_response_header_allowed(const char *name)
{
    static const char *const dropped[] = {"connection",
                                          "keep-alive",
                                          "proxy-connection",
                                          "proxy-authenticate",
                                          "proxy-authorization",
                                          "te",
                                          "trailer",
                                          "transfer-encoding",
                                          "upgrade",
                                          "content-length",
                                          "set-cookie",
                                          "set-cookie2",
                                          "alt-svc",
                                          "strict-transport-security",
                                          NULL};
    for (const char *const *d = dropped; *d; d++)
        if (strcasecmp(name, *d) == 0)
            return false;
    return true;
}

void rc_apichan_lines_free(char **lines)
{
    if (!lines)
        return;
    for (char **l = lines; *l; l++) {
        explicit_bzero(*l, strlen(*l));
        free(*l);
    }
    free(lines);
}

static void lines_freep(char ***p)
{
    rc_apichan_lines_free(*p);
}

/* Is name listed in any Connection header of h (RFC 9110 7.6.1: such fields are hop-by-hop)? */
static bool connection_lists(const rc_apichan_head *h, const char *name)
{
    for (size_t i = 0; i < h->n_headers; i++)
        if (strcasecmp(h->headers[i].name, "connection") == 0 &&
            list_has_token(h->headers[i].value, name))
            return true;
    return false;
}

int rc_apichan_upstream_headers(const rc_apichan_head *h, char ***ret_lines, rc_error *err)
{
    _cleanup_(lines_freep) char **lines = calloc(h->n_headers + 1, sizeof *lines);
    if (!lines)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < h->n_headers; i++) {
        const rc_apichan_header *f = &h->headers[i];
        if (!rc_apichan_request_header_allowed(f->name) || connection_lists(h, f->name))
            continue;
        size_t sz = strlen(f->name) + strlen(f->value) + 3;
        lines[n] = malloc(sz);
        if (!lines[n])
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        snprintf(lines[n], sz, "%s: %s", f->name, f->value);
        n++;
    }
    *ret_lines = take_ptr(lines);
    return (int)n;
}

/* ---- the credential ------------------------------------------------------------------------ */

bool rc_apichan_env_key_brokering_allowed(const char *value)
{
    return value && strcmp(value, "1") == 0;
}

int rc_apichan_credential_choose(const char *work_secret, const char *environment_key,
                                 bool allow_environment_key, char **ret_credential, int *ret_kind,
                                 rc_error *err)
{
    char *token = NULL;
    int r = rc_worksecret_decode(work_secret, RC_WORKSECRET_LEGACY, &token, NULL);
    if (r == 0) {
        *ret_credential = token;
        *ret_kind = RC_APICHAN_CRED_SESSIONS_TOKEN;
        return 0;
    }
    if (r == -RC_ENOMEM)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    bool had_secret = r != -RC_ENOTFOUND;
    if (!allow_environment_key)
        return rc_error_set(
            err, RC_EAUTH,
            "%s and environment-key brokering is not allowed (" RC_APICHAN_ENV_KEY_BROKERING_VAR
            ")",
            had_secret ? "the work secret yields no sessions token"
                       : "the work item has no secret");
    if (!environment_key || !*environment_key || strlen(environment_key) > CREDENTIAL_MAX ||
        !visible_ascii(environment_key))
        return rc_error_set(err, RC_EAUTH, "%s and no usable environment key is configured",
                            had_secret ? "the work secret yields no sessions token"
                                       : "the work item has no secret");
    char *key = strdup(environment_key);
    if (!key)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    *ret_credential = key;
    *ret_kind = RC_APICHAN_CRED_ENVIRONMENT_KEY;
    return 0;
}

/* The injected header line lives in its own mapping: locked (never swapped), excluded from core
 * dumps, wiped before it is unmapped. */
typedef struct locked_line {
    char *page;
    size_t size;
    size_t value_off; /* where the bare credential starts */
    bool locked;
    bool registered;
} locked_line;

static int locked_line_new(const char *credential, locked_line *ret, rc_error *err)
{
    size_t need = strlen(AUTH_PREFIX) + strlen(credential) + 1;
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096;
    size_t size = (need + page - 1) / page * page;
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return rc_error_sys(err, RC_ENOMEM, "mmap for the credential");
    locked_line l = {.page = p, .size = size, .value_off = strlen(AUTH_PREFIX)};
    l.locked = mlock(p, size) == 0;
    (void)madvise(p, size, MADV_DONTDUMP);
    snprintf(p, size, "%s%s", AUTH_PREFIX, credential);
    l.registered = rc_log_register_secret(credential, NULL) == 0;
    *ret = l;
    return 0;
}

static void locked_line_free(locked_line *l)
{
    if (!l->page)
        return;
    if (l->registered)
        rc_log_unregister_secret(l->page + l->value_off);
    explicit_bzero(l->page, l->size);
    if (l->locked)
        munlock(l->page, l->size);
    munmap(l->page, l->size);
    memset(l, 0, sizeof *l);
}

/* ---- audit lines --------------------------------------------------------------------------- */

typedef struct audit_rec {
    const char *event;    /* "request", "peer_refused", "capacity", "channel" */
    const char *decision; /* "allow", "deny", "error" */
    const char *reason;   /* fixed words, never input */
    const char *route;
    const char *method;
    const char *target; /* raw request target: sanitised, query cut off, capped */
    int status;
    long long bytes_in, bytes_out, duration_ms;
    long long peer_uid, peer_pid;
} audit_rec;

/* Printable-ASCII copy of the path part of target (no query: values are nobody's business). */
static void audit_path(const char *target, char *out, size_t outsz)
{
    size_t o = 0;
    for (const char *p = target; *p && *p != '?' && o + 1 < outsz; p++)
        out[o++] = ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f) ? *p : '?';
    out[o] = '\0';
}

static void json_add_str(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, v);
}

static void audit_emit(int fd, const char *sid, const char *wid, const audit_rec *a)
{
    _cleanup_(rc_json_freep) cJSON *o = cJSON_CreateObject();
    char ts[40], path[AUDIT_PATH_MAX];
    if (!o)
        return;
    rc_log_timestamp(ts, sizeof ts);
    json_add_str(o, "ts", ts);
    json_add_str(o, "component", "broker.apichan");
    json_add_str(o, "event", a->event);
    json_add_str(o, "session_id", sid);
    json_add_str(o, "work_id", wid);
    json_add_str(o, "decision", a->decision);
    json_add_str(o, "reason", a->reason);
    json_add_str(o, "route", a->route);
    json_add_str(o, "method", a->method);
    if (a->target) {
        audit_path(a->target, path, sizeof path);
        json_add_str(o, "path", path);
    }
    if (a->status)
        cJSON_AddNumberToObject(o, "status", a->status);
    if (a->event && strcmp(a->event, "request") == 0) {
        cJSON_AddNumberToObject(o, "bytes_in", (double)a->bytes_in);
        cJSON_AddNumberToObject(o, "bytes_out", (double)a->bytes_out);
        cJSON_AddNumberToObject(o, "duration_ms", (double)a->duration_ms);
    }
    if (a->peer_uid >= 0)
        cJSON_AddNumberToObject(o, "peer_uid", (double)a->peer_uid);
    if (a->peer_pid > 0)
        cJSON_AddNumberToObject(o, "peer_pid", (double)a->peer_pid);
    _cleanup_free_ char *line = cJSON_PrintUnformatted(o);
    if (!line)
        return;
    rc_redact(line);
    if (fd < 0) {
        rc_log(strcmp(a->decision ? a->decision : "", "allow") == 0 ? RC_LOG_INFO : RC_LOG_WARN,
               "audit %s", line);
        return;
    }
    size_t ll = strlen(line);
    struct iovec iov[2] = {{line, ll}, {(void *)"\n", 1}};
    ssize_t w = writev(fd, iov, 2);
    if (w != (ssize_t)(ll + 1)) /* a full disk: say so, like the egress proxy does */
        rc_log_error("apichan: audit line lost: %s",
                     w < 0 ? strerror(errno) : "short write (the disk is full?)");
}

/* ---- the heartbeat record ------------------------------------------------------------------- */

#define HB_TTL_MAX 10000000L

static bool hb_value_ok(const char *s)
{
    size_t n = strlen(s);
    if (n > RC_APICHAN_HB_VALUE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static bool hb_state_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(((rc_apichan_hb_record *)0)->state))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
            return false;
    return true;
}

/* Fill rec from a parsed object: last_heartbeat (required), state and ttl_seconds (optional). */
static int hb_fields(const cJSON *o, rc_apichan_hb_record *rec, rc_error *err)
{
    const cJSON *lh = cJSON_GetObjectItemCaseSensitive(o, "last_heartbeat");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "state");
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(o, "ttl_seconds");
    if (!cJSON_IsString(lh) || !hb_value_ok(lh->valuestring))
        return rc_error_set(err, RC_EPARSE, "heartbeat record: bad or missing last_heartbeat");
    snprintf(rec->last_heartbeat, sizeof rec->last_heartbeat, "%s", lh->valuestring);
    if (cJSON_IsString(st) && hb_state_ok(st->valuestring))
        snprintf(rec->state, sizeof rec->state, "%s", st->valuestring);
    if (cJSON_IsNumber(ttl) && ttl->valuedouble >= 0 && ttl->valuedouble <= (double)HB_TTL_MAX)
        rec->ttl_seconds = (long)ttl->valuedouble;
    return 0;
}

static int hb_parse_object(const char *text, size_t len, cJSON **ret, rc_error *err)
{
    rc_json_limits lim = {.max_size = RC_APICHAN_HB_RECORD_MAX, .max_depth = 8};
    _cleanup_json_ cJSON *o = NULL;
    int r = rc_json_parse(text, len, &lim, &o, err);
    if (r < 0)
        return r;
    if (!cJSON_IsObject(o))
        return rc_error_set(err, RC_EPARSE, "heartbeat record: not a JSON object");
    *ret = take_ptr(o);
    return 0;
}

int rc_apichan_hb_record_from_answer(const char *body, size_t len, int64_t at_ms,
                                     rc_apichan_hb_record *ret, rc_error *err)
{
    _cleanup_json_ cJSON *o = NULL;
    rc_apichan_hb_record rec = {.at_ms = at_ms};
    int r = hb_parse_object(body, len, &o, err);
    if (r < 0)
        return r;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "work_heartbeat") != 0)
        return rc_error_set(err, RC_EPARSE, "heartbeat record: not a work_heartbeat answer");
    if ((r = hb_fields(o, &rec, err)) < 0)
        return r;
    *ret = rec;
    return 0;
}

int rc_apichan_hb_record_format(const rc_apichan_hb_record *rec, char *buf, size_t bufsz,
                                rc_error *err)
{
    _cleanup_json_ cJSON *o = cJSON_CreateObject();
    if (!hb_value_ok(rec->last_heartbeat))
        return rc_error_set(err, RC_EINVAL, "heartbeat record: bad last_heartbeat");
    if (!o || !cJSON_AddStringToObject(o, "last_heartbeat", rec->last_heartbeat) ||
        !cJSON_AddStringToObject(o, "state", rec->state) ||
        !cJSON_AddNumberToObject(o, "ttl_seconds", (double)rec->ttl_seconds) ||
        !cJSON_AddNumberToObject(o, "at_ms", (double)rec->at_ms))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    _cleanup_free_ char *s = cJSON_PrintUnformatted(o);
    if (!s)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    int n = snprintf(buf, bufsz, "%s\n", s);
    if (n < 0 || (size_t)n >= bufsz)
        return rc_error_set(err, RC_ETOOBIG, "heartbeat record too long");
    return n;
}

int rc_apichan_hb_record_parse(const char *text, size_t len, rc_apichan_hb_record *ret,
                               rc_error *err)
{
    _cleanup_json_ cJSON *o = NULL;
    rc_apichan_hb_record rec = {0};
    int r = hb_parse_object(text, len, &o, err);
    if (r < 0 || (r = hb_fields(o, &rec, err)) < 0)
        return r;
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(o, "at_ms");
    if (!cJSON_IsNumber(at) || at->valuedouble < 0 || at->valuedouble > 9.0e15)
        return rc_error_set(err, RC_EPARSE, "heartbeat record: bad or missing at_ms");
    rec.at_ms = (int64_t)at->valuedouble;
    *ret = rec;
    return 0;
}

int rc_apichan_hb_record_write(const char *path, const rc_apichan_hb_record *rec, rc_error *err)
{
    char buf[RC_APICHAN_HB_RECORD_MAX], tmp[PATH_MAX];
    int n = rc_apichan_hb_record_format(rec, buf, sizeof buf, err);
    if (n < 0)
        return n;
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return rc_error_set(err, RC_ETOOBIG, "heartbeat record path too long");
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "create the heartbeat record");
    ssize_t w;
    do
        w = write(fd, buf, (size_t)n);
    while (w < 0 && errno == EINTR);
    if (w != n || rename(tmp, path) < 0) {
        int r = rc_error_sys(err, RC_EIO, "write the heartbeat record");
        unlink(tmp);
        return r;
    }
    return 0;
}

int rc_apichan_hb_record_read(const char *path, rc_apichan_hb_record *ret, rc_error *err)
{
    char buf[RC_APICHAN_HB_RECORD_MAX + 1];
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? rc_error_set(err, RC_ENOTFOUND, "no heartbeat record")
                               : rc_error_sys(err, RC_EIO, "open the heartbeat record");
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return rc_error_sys(err, RC_EIO, "read the heartbeat record");
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == sizeof buf)
            return rc_error_set(err, RC_ETOOBIG, "the heartbeat record is too large");
    }
    return rc_apichan_hb_record_parse(buf, len, ret, err);
}

bool rc_apichan_hb_record_expired(const rc_apichan_hb_record *rec, int64_t now_ms,
                                  int64_t margin_ms)
{
    if (rec->ttl_seconds <= 0)
        return false;
    return now_ms - rec->at_ms > (int64_t)rec->ttl_seconds * 1000 + margin_ms;
}

/* ---- server state ------------------------------------------------------------------------- */

struct rc_apichan {
    char *socket_path;
    char *base_url; /* without a trailing '/' */
    char *ca_file;
    char *environment_id, *work_id, *session_id;
    char **memory_store_ids; /* NULL-terminated */
    char *hb_path;           /* the heartbeat record, or NULL */
    pthread_mutex_t hb_lock; /* one writer of the record at a time */
    rc_apichan_scope scope;
    bool learn_memory;     /* learn the stores from the relayed session answer */
    char **learned_stores; /* NULL-terminated or NULL (none seen yet); under lock */
    bool https;
    uid_t allowed_uid;
    int credential_kind;
    locked_line auth;
    size_t max_connections, max_request_body, max_response_body;
    long idle_ms, read_ms, upstream_ms, connect_ms;
    int audit_fd;
    rc_audit_calls *running_calls; /* borrowed; NULL: the local route stores nothing */

    int listen_fd;
    int stop_fd; /* eventfd: readable once stop begins, never drained */
    atomic_bool stopping;
    bool started, stopped;
    pthread_t accept_thread;
    dev_t sock_dev;
    ino_t sock_ino;

    pthread_mutex_t lock;
    pthread_cond_t idle;
    rc_apichan_stats stats; /* under lock */
};

typedef struct conn {
    rc_apichan *ch;
    int fd;
    struct ucred peer;
    rc_buf in;
    CURL *curl;
} conn;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_once_rc = CURLE_FAILED_INIT;

static void curl_once_init(void)
{
    curl_once_rc = curl_global_init(CURL_GLOBAL_ALL);
}

static void audit(rc_apichan *ch, const audit_rec *a)
{
    audit_emit(ch->audit_fd, ch->session_id, ch->work_id, a);
}

static void stats_add(rc_apichan *ch, unsigned long long *field)
{
    pthread_mutex_lock(&ch->lock);
    (*field)++;
    pthread_mutex_unlock(&ch->lock);
}

void rc_apichan_get_stats(rc_apichan *ch, rc_apichan_stats *ret)
{
    pthread_mutex_lock(&ch->lock);
    *ret = ch->stats;
    pthread_mutex_unlock(&ch->lock);
}

/* ---- client socket I/O --------------------------------------------------------------------- */

/* Wait for events on the client fd. 1: ready; -RC_ETIMEOUT; -RC_ECANCELED (stop); -RC_EIO. */
static int conn_wait(conn *c, short events, long timeout_ms)
{
    struct pollfd p[2] = {{.fd = c->fd, .events = events},
                          {.fd = c->ch->stop_fd, .events = POLLIN}};
    for (;;) {
        int n =
            poll(p, 2, timeout_ms < 0 ? -1 : (int)(timeout_ms > INT_MAX ? INT_MAX : timeout_ms));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -RC_EIO;
        if (atomic_load(&c->ch->stopping) || (p[1].revents & POLLIN))
            return -RC_ECANCELED;
        if (n == 0)
            return -RC_ETIMEOUT;
        if (p[0].revents & (events | POLLHUP | POLLERR))
            return 1;
    }
}

static int conn_send_iov(conn *c, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* No timeout: the runner legitimately leaves the stream unread while a tool runs. */
            int r = conn_wait(c, POLLOUT, -1);
            if (r < 0)
                return r;
            continue;
        }
        if (w < 0)
            return -RC_EIO;
        size_t left = (size_t)w;
        while (cnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

static int conn_send(conn *c, const void *p, size_t n)
{
    struct iovec iov = {(void *)p, n};
    return conn_send_iov(c, &iov, 1);
}

/* Read more bytes into c->in. >0: bytes read; 0: EOF; <0: timeout, stop, error, or full. */
static int conn_read_more(conn *c, long timeout_ms)
{
    size_t room = c->in.max - c->in.len;
    if (room == 0)
        return -RC_ETOOBIG;
    if (room > READ_CHUNK)
        room = READ_CHUNK;
    int r = rc_buf_reserve(&c->in, room, NULL);
    if (r < 0)
        return r;
    for (;;) {
        ssize_t n = recv(c->fd, c->in.data + c->in.len, room, MSG_DONTWAIT);
        if (n > 0) {
            c->in.len += (size_t)n;
            c->in.data[c->in.len] = '\0';
            return (int)n;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -RC_EIO;
        if ((r = conn_wait(c, POLLIN, timeout_ms)) < 0)
            return r;
    }
}

/* ---- responses the channel writes itself ------------------------------------------------- */

static const char *reason_phrase(long status)
{
    static const struct {
        long status;
        const char *text;
    } phrases[] = {
        {100, "Continue"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {411, "Length Required"},
        {412, "Precondition Failed"},
        {413, "Content Too Large"},
        {417, "Expectation Failed"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        {529, "Overloaded"},
    };
    for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++)
        if (phrases[i].status == status)
            return phrases[i].text;
    return "Status"; /* clients ignore the phrase (RFC 9112 4) */
}

static const char *error_type_for(int status)
{
    switch (status) {
    case 403:
        return "permission_error";
    case 502:
        return "api_error";
    case 503:
        return "overloaded_error";
    case 504:
        return "timeout_error";
    default:
        return "invalid_request_error";
    }
}

static void request_id_new(char *out, size_t outsz)
{
    unsigned char rnd[12] = {0};
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        memset(rnd, 0, sizeof rnd);
    size_t o = (size_t)snprintf(out, outsz, "%s", REQUEST_ID_PREFIX);
    for (size_t i = 0; i < sizeof rnd && o + 2 < outsz; i++)
        o += (size_t)snprintf(out + o, outsz - o, "%02x", rnd[i]);
}

/* The API's error shape (protocol.md 2.6) for an answer the channel gives itself. Refusals carry
 * x-should-retry: false so that the runner's client does not retry them. */
static int respond_error(conn *c, int status, const char *code, const char *message, bool close)
{
    char rid[48];
    request_id_new(rid, sizeof rid);
    _cleanup_(rc_buf_free) rc_buf body = RC_BUF_INIT(4096);
    _cleanup_(rc_buf_free) rc_buf head = RC_BUF_INIT(4096);
    int r = rc_json_error_body_write(&body, error_type_for(status), message, code, rid, NULL);
    if (r < 0)
        return r;
    bool retry = status == 502 || status == 503 || status == 504;
    r = rc_buf_appendf(&head, NULL,
                       "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n"
                       "request-id: %s\r\n%s%s\r\n",
                       status, reason_phrase(status), body.len, rid,
                       retry ? "" : "x-should-retry: false\r\n",
                       close ? "connection: close\r\n" : "");
    if (r < 0)
        return r;
    struct iovec iov[2] = {{head.data, head.len}, {body.data, body.len}};
    return conn_send_iov(c, iov, 2);
}

/* ---- the upstream relay ------------------------------------------------------------------- */

typedef struct relay {
    conn *c;
    bool stream;
    bool client_close; /* the runner asked for Connection: close */
    long status;
    long long content_length; /* of the current upstream response, -1 = none */
    bool head_sent, chunked, no_body;
    bool too_big, client_gone, headers_overflow;
    rc_buf hdrs;     /* filtered "name: value\r\n" lines of the current upstream response */
    rc_buf *capture; /* a copy of the body (the session answer, to learn its memory stores, or
                      * the heartbeat answer, for the heartbeat record) */
    bool learn;      /* capture is the session answer */
    bool capture_overflow, learned;
    size_t cap;
    unsigned long long body_bytes;
    unsigned long long bytes_out;
} relay;

static bool holds_credential(const rc_apichan *ch, const char *v, size_t vl)
{
    const char *cred = ch->auth.page + ch->auth.value_off;
    size_t cl = strlen(cred);
    return cl > 0 && vl >= cl && memmem(v, vl, cred, cl) != NULL;
}

static void relay_status_line(relay *rl, const char *p, size_t len)
{
    rl->status = 0;
    rl->content_length = -1;
    rc_buf_reset(&rl->hdrs);
    const char *sp = memchr(p, ' ', len);
    if (sp && (size_t)(sp - p) + 4 <= len && is_digit((unsigned char)sp[1]) &&
        is_digit((unsigned char)sp[2]) && is_digit((unsigned char)sp[3]))
        rl->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
}

static void relay_header_field(relay *rl, const char *p, size_t len)
{
    const char *colon = memchr(p, ':', len);
    if (!colon || colon == p || (size_t)(colon - p) >= 128)
        return;
    char name[128];
    memcpy(name, p, (size_t)(colon - p));
    name[colon - p] = '\0';
    for (const char *q = name; *q; q++)
        if (!is_tchar((unsigned char)*q))
            return;
    const char *v = colon + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    for (const char *q = v; q < end; q++)
        if ((unsigned char)*q < 0x20 && *q != '\t')
            return;
    size_t vl = (size_t)(end - v);
    if (strcasecmp(name, "content-length") == 0) {
        char tmp[24];
        if (vl > 0 && vl < sizeof tmp && all_digits(v, vl)) {
            memcpy(tmp, v, vl);
            tmp[vl] = '\0';
            rl->content_length = strtoll(tmp, NULL, 10);
        }
        return;
    }
    if (!rc_apichan_response_header_allowed(name) || holds_credential(rl->c->ch, v, vl))
        return;
    if (rc_buf_appendf(&rl->hdrs, NULL, "%s: %.*s\r\n", name, (int)vl, v) < 0)
        rl->headers_overflow = true;
}

/* All upstream headers are in: decide the framing toward the runner and send the head. */
static int relay_send_head(relay *rl)
{
    rl->no_body = rl->status == 204 || rl->status == 304;
    char framing[64] = "";
    if (!rl->no_body && rl->content_length >= 0) {
        if (!rl->stream && (unsigned long long)rl->content_length > rl->cap) {
            rl->too_big = true;
            return -RC_ETOOBIG;
        }
        snprintf(framing, sizeof framing, "content-length: %lld\r\n", rl->content_length);
    } else if (!rl->no_body) {
        rl->chunked = true;
        snprintf(framing, sizeof framing, "transfer-encoding: chunked\r\n");
    }
    char line[64];
    int ll =
        snprintf(line, sizeof line, "HTTP/1.1 %03ld %s\r\n", rl->status, reason_phrase(rl->status));
    const char *conn_hdr = rl->client_close ? "connection: close\r\n" : "";
    struct iovec iov[5] = {{line, (size_t)ll},
                           {rl->hdrs.data ? rl->hdrs.data : (char *)"", rl->hdrs.len},
                           {framing, strlen(framing)},
                           {(void *)conn_hdr, strlen(conn_hdr)},
                           {(void *)"\r\n", 2}};
    int r = conn_send_iov(rl->c, iov, 5);
    if (r < 0) {
        rl->client_gone = true;
        return r;
    }
    rl->head_sent = true;
    return 0;
}

static size_t on_upstream_header(char *p, size_t size, size_t nmemb, void *ud)
{
    relay *rl = ud;
    size_t total = size * nmemb, len = total;
    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        relay_status_line(rl, p, len);
        return total;
    }
    if (len == 0) {
        if (rl->status < 200 || rl->head_sent) /* 1xx interim answer: the real one follows */
            return total;
        if (rl->headers_overflow)
            return 0;
        return relay_send_head(rl) < 0 ? 0 : total;
    }
    if (p[0] != ' ' && p[0] != '\t') /* obs-fold continuations are dropped */
        relay_header_field(rl, p, len);
    return total;
}

static void learn_memory_stores(rc_apichan *ch, const rc_buf *body);

static size_t on_upstream_body(char *p, size_t size, size_t nmemb, void *ud)
{
    relay *rl = ud;
    size_t n = size * nmemb;
    if (!rl->head_sent || rl->client_gone)
        return 0;
    if (rl->no_body || n == 0)
        return n;
    rl->body_bytes += n;
    if (!rl->stream && rl->body_bytes > rl->cap) {
        rl->too_big = true;
        return 0;
    }
    if (rl->capture && !rl->capture_overflow && rc_buf_append(rl->capture, p, n, NULL) < 0)
        rl->capture_overflow = true;
    /* Learn before the last bytes go out: once the runner holds the whole session it may ask for
     * memory on another connection at once. (A chunked answer is learnt before its terminator.) */
    if (rl->learn && !rl->capture_overflow && rl->status == 200 && rl->content_length >= 0 &&
        rl->body_bytes == (unsigned long long)rl->content_length) {
        learn_memory_stores(rl->c->ch, rl->capture);
        rl->learned = true;
    }
    int r;
    if (rl->chunked) {
        char pre[24];
        int pl = snprintf(pre, sizeof pre, "%zx\r\n", n);
        struct iovec iov[3] = {{pre, (size_t)pl}, {p, n}, {(void *)"\r\n", 2}};
        r = conn_send_iov(rl->c, iov, 3);
    } else {
        r = conn_send(rl->c, p, n);
    }
    if (r < 0) {
        rl->client_gone = true;
        return 0;
    }
    rl->bytes_out += n;
    return n;
}

/* Has the runner been handed the whole answer (curl may not have finished its bookkeeping)? */
static bool relay_complete(const relay *rl)
{
    return rl->head_sent &&
           (rl->no_body ||
            (rl->content_length >= 0 && rl->body_bytes >= (unsigned long long)rl->content_length));
}

/* Called by curl at least once a second: abort on stop or when the runner hung up. A runner
 * that closes after reading a complete answer has not hung up on it. Only a full close counts:
 * on a unix socket that is POLLHUP, while a runner that half-closes after its request
 * (shutdown(SHUT_WR), POLLRDHUP alone) still wants the answer. */
static int on_upstream_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut,
                                curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    relay *rl = ud;
    if (atomic_load(&rl->c->ch->stopping))
        return 1;
    if (relay_complete(rl))
        return 0;
    struct pollfd p = {.fd = rl->c->fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR))) {
        rl->client_gone = true;
        return 1;
    }
    return 0;
}

static void slist_wipe_free(struct curl_slist *l)
{
    for (struct curl_slist *i = l; i; i = i->next)
        if (i->data)
            explicit_bzero(i->data, strlen(i->data));
    curl_slist_free_all(l);
}

static void slist_wipe_freep(struct curl_slist **l)
{
    slist_wipe_free(*l);
}

static bool head_has(const rc_apichan_head *h, const char *name)
{
    for (size_t i = 0; i < h->n_headers; i++)
        if (strcasecmp(h->headers[i].name, name) == 0)
            return true;
    return false;
}

/* The upstream header list: the runner's allowed headers, curl's own defaults removed where the
 * runner did not send them, and the credential last. */
static int upstream_slist(conn *c, const rc_apichan_head *h, struct curl_slist **ret)
{
    _cleanup_(lines_freep) char **lines = NULL;
    _cleanup_(slist_wipe_freep) struct curl_slist *l = NULL;
    int r = rc_apichan_upstream_headers(h, &lines, NULL);
    if (r < 0)
        return r;
    for (char **s = lines; *s; s++)
        if (!(l = curl_slist_append(l, *s)))
            return -RC_ENOMEM;
    if (!(l = curl_slist_append(l, "Expect:")))
        return -RC_ENOMEM;
    if (!head_has(h, "content-type") && !(l = curl_slist_append(l, "Content-Type:")))
        return -RC_ENOMEM;
    if (!head_has(h, "accept") && !(l = curl_slist_append(l, "Accept:")))
        return -RC_ENOMEM;
    if (!(l = curl_slist_append(l, c->ch->auth.page)))
        return -RC_ENOMEM;
    *ret = take_ptr(l);
    return 0;
}

static int upstream_url(const rc_apichan *ch, const char *target, rc_buf *url)
{
    const char *qm = strchr(target, '?');
    int r = rc_buf_append_str(url, ch->base_url, NULL);
    if (r < 0)
        return r;
    if (qm && qm[1] == '\0')
        return rc_buf_append(url, target, (size_t)(qm - target), NULL);
    return rc_buf_append_str(url, target, NULL);
}

static void curl_lockdown(CURL *e, const rc_apichan *ch, bool stream)
{
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_VERBOSE, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, ch->https ? "https" : "http");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, ch->https ? "https" : "http");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_HEADEROPT, (long)CURLHEADER_SEPARATE);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (ch->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, ch->ca_file);
    curl_easy_setopt(e, CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ch->connect_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, stream ? 0L : ch->upstream_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
}

static void curl_set_method(CURL *e, const char *method, const char *body, size_t body_len)
{
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        if (strcmp(method, "GET") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
}

typedef struct forward_result {
    int status;        /* what the runner got (0 when the connection dropped before a head) */
    bool keep_alive;   /* the connection can serve another request */
    const char *error; /* fixed words for the audit line, or NULL */
    unsigned long long bytes_out;
} forward_result;

/* Answer the runner when curl ended before a head went out. */
static void forward_failed_early(conn *c, relay *rl, CURLcode res, forward_result *fr)
{
    fr->keep_alive = !rl->client_close;
    if (rl->client_gone || atomic_load(&c->ch->stopping)) {
        fr->keep_alive = false;
        fr->error = rl->client_gone ? "runner hung up" : "channel stopping";
        return;
    }
    if (rl->too_big || rl->headers_overflow) {
        fr->status = 502;
        fr->error = "upstream response exceeds the channel's cap";
        respond_error(c, 502, "broker_upstream_too_large", fr->error, rl->client_close);
    } else if (res == CURLE_OPERATION_TIMEDOUT) {
        fr->status = 504;
        fr->error = "upstream timed out";
        respond_error(c, 504, "broker_upstream_timeout", "the API did not answer in time",
                      rl->client_close);
    } else {
        fr->status = 502;
        fr->error = "upstream unreachable";
        respond_error(c, 502, "broker_upstream_unreachable", "the API could not be reached",
                      rl->client_close);
        rc_log_warn("apichan: upstream transfer failed: %s", curl_easy_strerror(res));
    }
}

/* The memory stores of the session answer the upstream gave (resources[] of type memory_store),
 * replacing what was learnt before. An answer for another session, or one that is not a session
 * object, teaches nothing. */
static void learn_memory_stores(rc_apichan *ch, const rc_buf *body)
{
    rc_json_limits lim = {.max_size = LEARN_BODY_MAX, .max_depth = 64};
    _cleanup_json_ cJSON *s = NULL;
    if (rc_json_parse(body->data ? body->data : "", body->len, &lim, &s, NULL) < 0)
        return;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(s, "id");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(s, "resources"), *r;
    if (!cJSON_IsString(id) || strcmp(id->valuestring, ch->session_id) != 0 || !cJSON_IsArray(res))
        return;
    size_t n = 0, max = (size_t)cJSON_GetArraySize(res);
    _cleanup_(lines_freep) char **ids = calloc(max + 1, sizeof *ids);
    if (!ids)
        return;
    cJSON_ArrayForEach(r, res)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(r, "type");
        const cJSON *store = cJSON_GetObjectItemCaseSensitive(r, "memory_store_id");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "memory_store") != 0 ||
            !cJSON_IsString(store) || !id_shape_ok(store->valuestring, strlen(store->valuestring)))
            continue;
        if (!(ids[n++] = strdup(store->valuestring)))
            return;
    }
    pthread_mutex_lock(&ch->lock);
    char **old = ch->learned_stores;
    ch->learned_stores = take_ptr(ids);
    pthread_mutex_unlock(&ch->lock);
    rc_apichan_lines_free(old);
    if (n > 0)
        rc_log_info("apichan: memory stores allowed for this session: %zu", n);
}

static int64_t now_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A 200 heartbeat answer went to the runner: keep what a later reconcile needs to prove the lease
 * is still ours (rc_apichan_hb_record). Failures are logged; the runner is not affected. */
static void record_heartbeat(rc_apichan *ch, const rc_buf *body)
{
    rc_apichan_hb_record rec;
    rc_error e = {0};
    int r = rc_apichan_hb_record_from_answer(body->data ? body->data : "", body->len, now_real_ms(),
                                             &rec, &e);
    if (r == 0) {
        pthread_mutex_lock(&ch->hb_lock);
        r = rc_apichan_hb_record_write(ch->hb_path, &rec, &e);
        pthread_mutex_unlock(&ch->hb_lock);
    }
    if (r < 0)
        rc_log_warn("apichan: heartbeat record not kept: %s", e.msg);
}

/* The scope a request is matched against: the configured one, plus the learnt memory stores. */
static int route_match(rc_apichan *ch, const rc_apichan_head *h, int *route, rc_error *err)
{
    rc_apichan_scope sc = ch->scope;
    pthread_mutex_lock(&ch->lock);
    if (ch->learn_memory && ch->learned_stores) {
        sc.features |= RC_APICHAN_ALLOW_MEMORY;
        sc.memory_store_ids = (const char *const *)ch->learned_stores;
    }
    int r = rc_apichan_route_match(&sc, h->method, h->target, route, err);
    pthread_mutex_unlock(&ch->lock);
    return r;
}

static int forward(conn *c, const rc_apichan_head *h, int route, const char *body, size_t body_len,
                   forward_result *fr)
{
    rc_apichan *ch = c->ch;
    if (!c->curl && !(c->curl = curl_easy_init()))
        return -RC_ENOMEM;
    _cleanup_(slist_wipe_freep) struct curl_slist *hdrs = NULL;
    _cleanup_(rc_buf_free) rc_buf url = RC_BUF_INIT(RC_APICHAN_HEAD_MAX + 4096);
    int r = upstream_slist(c, h, &hdrs);
    if (r < 0 || (r = upstream_url(ch, h->target, &url)) < 0)
        return r;
    bool learn = route == RC_APICHAN_ROUTE_SESSION_GET && ch->learn_memory;
    bool record = route == RC_APICHAN_ROUTE_WORK_HEARTBEAT && ch->hb_path;
    _cleanup_(rc_buf_free) rc_buf capture =
        RC_BUF_INIT(record ? RC_APICHAN_HB_RECORD_MAX : LEARN_BODY_MAX);
    relay rl = {.c = c,
                .capture = learn || record ? &capture : NULL,
                .learn = learn,
                .stream = rc_apichan_route_is_stream(route),
                .client_close = h->connection_close,
                .content_length = -1,
                .hdrs = RC_BUF_INIT(UPSTREAM_HDRS_MAX),
                .cap = ch->max_response_body};
    CURL *e = c->curl;
    curl_easy_reset(e);
    curl_lockdown(e, ch, rl.stream);
    curl_easy_setopt(e, CURLOPT_URL, url.data);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_set_method(e, h->method, body, body_len);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_upstream_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &rl);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_upstream_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &rl);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_upstream_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, &rl);
    CURLcode res = curl_easy_perform(e);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    rc_buf_free(&rl.hdrs);
    fr->bytes_out = rl.bytes_out;
    if (!rl.head_sent) {
        forward_failed_early(c, &rl, res, fr);
        return 0;
    }
    fr->status = (int)rl.status;
    if (record && rl.status == 200 && !rl.capture_overflow &&
        (res == CURLE_OK || relay_complete(&rl)))
        record_heartbeat(ch, &capture);
    if (res != CURLE_OK && relay_complete(&rl) && !rl.too_big) {
        fr->keep_alive = false; /* the answer is out; curl's connection state is not */
        return 0;
    }
    if (res != CURLE_OK) {
        /* The head is out: the only honest signal left is to cut the connection. */
        fr->keep_alive = false;
        fr->error = rl.client_gone               ? "runner hung up"
                    : atomic_load(&ch->stopping) ? "channel stopping"
                    : rl.too_big                 ? "upstream response exceeds the channel's cap"
                                                 : "upstream transfer ended early";
        rc_log_debug("apichan: upstream transfer ended: %s", curl_easy_strerror(res));
        return 0;
    }
    if (rl.learn && rl.status == 200 && !rl.capture_overflow && !rl.learned)
        learn_memory_stores(ch, &capture);
    if (rl.chunked && conn_send(c, "0\r\n\r\n", 5) < 0) {
        fr->keep_alive = false;
        return 0;
    }
    fr->keep_alive = !rl.client_close;
    return 0;
}

/* ---- one request ------------------------------------------------------------------------- */

static int refusal_reply(conn *c, int status, audit_rec *a)
{
    static const struct {
        int status;
        const char *code, *msg;
    } table[] = {
        {400, "broker_bad_framing", "request framing is ambiguous"},
        {411, "broker_length_required",
         "chunked request bodies are not accepted: send Content-Length"},
        {413, "request_too_large", "request body exceeds the channel's cap"},
        {417, "broker_expectation_failed", "unsupported Expect value"},
        {501, "broker_method_not_implemented", "method not supported by the API channel"},
        {505, "broker_http_version", "only HTTP/1.1 is supported"},
    };
    const char *code = "broker_bad_request", *msg = "bad request";
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].status == status) {
            code = table[i].code;
            msg = table[i].msg;
        }
    a->decision = "deny";
    a->reason = msg;
    a->status = status;
    respond_error(c, status, code, msg, true);
    return 0;
}

/* Read the body of the request whose head is hl bytes long into c->in. */
static int read_body(conn *c, size_t need)
{
    while (c->in.len < need) {
        int r = conn_read_more(c, c->ch->read_ms);
        if (r <= 0)
            return r < 0 ? r : -RC_EIO;
    }
    return 0;
}

static int respond_no_content(conn *c, bool close)
{
    char head[160];
    int n = snprintf(head, sizeof head, "HTTP/1.1 204 No Content\r\n%s\r\n",
                     close ? "connection: close\r\n" : "");
    return conn_send(c, head, (size_t)n);
}

/* The local route (rc_apichan_running_calls_parse): answered here, never forwarded. Framing is
 * checked like any request's; the method must be PUT. */
static bool serve_running_calls(conn *c, const rc_apichan_head *h, size_t hl, audit_rec *a)
{
    rc_apichan *ch = c->ch;
    rc_audit_call_ids ids;
    rc_error e = {0};
    int status = rc_apichan_head_refusal(h, RC_APICHAN_RUNNING_CALLS_BODY_MAX);
    size_t blen = h->content_length > 0 ? (size_t)h->content_length : 0;

    a->route = "running_tool_calls";
    if (status == 501 || (!status && strcmp(h->method, "PUT") != 0))
        status = strcmp(h->method, "PUT") == 0 ? 0 : 405;
    if (!status && blen > RC_APICHAN_RUNNING_CALLS_BODY_MAX)
        status = 413;
    if (status == 405) {
        a->decision = "deny";
        a->reason = "method not allowed on the local route";
        a->status = 405;
        respond_error(c, 405, "broker_method_not_allowed", a->reason, true);
        audit(ch, a);
        return false;
    }
    if (status) {
        refusal_reply(c, status, a);
        audit(ch, a);
        return false;
    }
    if (h->expect_continue && blen > 0 && conn_send(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
        return false;
    if (read_body(c, hl + blen) < 0) {
        a->decision = "error";
        a->reason = "request body incomplete";
        audit(ch, a);
        return false;
    }
    a->bytes_in = (long long)blen;
    if (rc_apichan_running_calls_parse(c->in.data + hl, blen, &ids, &e) < 0) {
        a->decision = "deny";
        a->reason = e.msg;
        a->status = 400;
        respond_error(c, 400, "broker_bad_request", e.msg, true);
        audit(ch, a);
        return false;
    }
    if (ch->running_calls)
        rc_audit_calls_set(ch->running_calls, &ids);
    rc_log_debug("apichan: %zu tool call(s) running", ids.n);
    a->decision = "allow";
    a->status = 204;
    /* No audit line for an accepted report: one per call start and end would drown the log. */
    rc_buf_consume(&c->in, hl + blen);
    return respond_no_content(c, h->connection_close) == 0 && !h->connection_close;
}

/* Serve one parsed request. Returns true when the connection may serve another. */
static bool serve_request(conn *c, const rc_apichan_head *h, size_t hl)
{
    rc_apichan *ch = c->ch;
    int64_t t0 = now_mono_ms();
    audit_rec a = {.event = "request",
                   .method = h->method,
                   .target = h->target,
                   .peer_uid = (long long)c->peer.uid,
                   .peer_pid = (long long)c->peer.pid};
    stats_add(ch, &ch->stats.requests);
    if (rc_apichan_is_running_calls_target(h->target))
        return serve_running_calls(c, h, hl, &a);
    int status = rc_apichan_head_refusal(h, ch->max_request_body);
    if (status) {
        refusal_reply(c, status, &a);
        audit(ch, &a);
        return false;
    }
    rc_error e = {0};
    int route = 0;
    if (route_match(ch, h, &route, &e) < 0) {
        stats_add(ch, &ch->stats.forbidden);
        bool close = h->content_length > 0 || h->connection_close;
        a.decision = "deny";
        a.reason = e.msg;
        a.status = 403;
        respond_error(c, 403, "broker_forbidden",
                      "this request is not allowed through the API channel", close);
        audit(ch, &a);
        if (!close)
            rc_buf_consume(&c->in, hl);
        return !close;
    }
    a.route = rc_apichan_route_name(route);
    size_t blen = h->content_length > 0 ? (size_t)h->content_length : 0;
    if (blen > 0 && !rc_apichan_route_takes_body(route)) {
        a.decision = "deny";
        a.reason = "this route takes no request body";
        a.status = 400;
        respond_error(c, 400, "broker_unexpected_body", a.reason, true);
        audit(ch, &a);
        return false;
    }
    if (h->expect_continue && blen > 0 && conn_send(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
        return false;
    if (read_body(c, hl + blen) < 0) {
        a.decision = "error";
        a.reason = "request body incomplete";
        audit(ch, &a);
        return false;
    }
    forward_result fr = {0};
    int r = forward(c, h, route, blen ? c->in.data + hl : NULL, blen, &fr);
    a.decision = r < 0 || fr.error ? "error" : "allow";
    a.reason = r < 0 ? "internal error" : fr.error;
    a.status = fr.status;
    a.bytes_in = (long long)blen;
    a.bytes_out = (long long)fr.bytes_out;
    a.duration_ms = now_mono_ms() - t0;
    audit(ch, &a);
    if (r < 0)
        return false;
    rc_buf_consume(&c->in, hl + blen);
    return fr.keep_alive;
}

static void conn_serve(conn *c)
{
    rc_apichan *ch = c->ch;
    for (;;) {
        rc_apichan_head h = {.content_length = -1};
        rc_error e = {0};
        int hl;
        while ((hl = rc_apichan_head_parse(c->in.data ? c->in.data : "", c->in.len, &h, &e)) == 0) {
            int r = conn_read_more(c, c->in.len ? ch->read_ms : ch->idle_ms);
            if (r <= 0)
                return; /* EOF, idle or read timeout, stop: just close */
        }
        if (hl < 0) {
            int status = hl == -RC_ETOOBIG ? 431 : 400;
            audit_rec a = {.event = "request",
                           .decision = "deny",
                           .reason = e.msg,
                           .status = status,
                           .peer_uid = (long long)c->peer.uid,
                           .peer_pid = (long long)c->peer.pid};
            audit(ch, &a);
            respond_error(c, status, status == 431 ? "broker_head_too_large" : "broker_bad_request",
                          status == 431 ? "request head exceeds the channel's caps"
                                        : "malformed request",
                          true);
            return;
        }
        bool more = serve_request(c, &h, (size_t)hl);
        rc_apichan_head_clear(&h);
        if (!more)
            return;
    }
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    rc_apichan *ch = c->ch;
    rc_log_set_context(ch->session_id, ch->work_id);
    conn_serve(c);
    if (c->curl)
        curl_easy_cleanup(c->curl);
    rc_buf_free(&c->in);
    close(c->fd);
    free(c);
    pthread_mutex_lock(&ch->lock);
    ch->stats.active--;
    if (ch->stats.active == 0)
        pthread_cond_broadcast(&ch->idle);
    pthread_mutex_unlock(&ch->lock);
    return NULL;
}

/* ---- accepting ----------------------------------------------------------------------------- */

static void refuse_capacity(rc_apichan *ch, int fd, const struct ucred *peer)
{
    static const char body[] =
        "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"too many "
        "connections to the API channel\",\"details\":{\"error_code\":\"broker_capacity\"}}}";
    char head[192];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                      "connection: close\r\ncontent-length: %zu\r\n\r\n",
                      sizeof body - 1);
    /* Best effort and never blocking: the accept thread must not stall on a slow peer. */
    struct iovec iov[2] = {{head, (size_t)hl}, {(void *)body, sizeof body - 1}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    audit_rec a = {.event = "capacity",
                   .decision = "deny",
                   .reason = "connection cap reached",
                   .status = 503,
                   .peer_uid = (long long)peer->uid,
                   .peer_pid = (long long)peer->pid};
    audit(ch, &a);
}

static bool peer_allowed(rc_apichan *ch, int fd, struct ucred *ret_peer)
{
    struct ucred cred = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
    socklen_t len = sizeof cred;
    bool ok = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && len == sizeof cred &&
              cred.uid == ch->allowed_uid;
    *ret_peer = cred;
    if (!ok) {
        audit_rec a = {.event = "peer_refused",
                       .decision = "deny",
                       .reason = "peer uid is not the runner's",
                       .peer_uid = cred.uid == (uid_t)-1 ? -1 : (long long)cred.uid,
                       .peer_pid = (long long)cred.pid};
        audit(ch, &a);
    }
    return ok;
}

static int conn_spawn(rc_apichan *ch, int fd, const struct ucred *peer)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return -RC_ENOMEM;
    *c = (conn){.ch = ch,
                .fd = fd,
                .peer = *peer,
                .in = RC_BUF_INIT(RC_APICHAN_HEAD_MAX + ch->max_request_body)};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int r = pthread_create(&t, &attr, conn_main, c);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        free(c);
        return -RC_EIO;
    }
    return 0;
}

static void accept_one(rc_apichan *ch)
{
    int fd = accept4(ch->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
            usleep(10000); /* out of fds or memory: let connections end rather than spin */
        return;
    }
    struct ucred peer;
    if (!peer_allowed(ch, fd, &peer)) {
        stats_add(ch, &ch->stats.refused_peer);
        close(fd);
        return;
    }
    pthread_mutex_lock(&ch->lock);
    bool full = ch->stats.active >= ch->max_connections;
    if (!full) {
        ch->stats.active++;
        ch->stats.accepted++;
    } else {
        ch->stats.refused_capacity++;
    }
    pthread_mutex_unlock(&ch->lock);
    if (full) {
        refuse_capacity(ch, fd, &peer);
        close(fd);
        return;
    }
    if (conn_spawn(ch, fd, &peer) < 0) {
        close(fd);
        pthread_mutex_lock(&ch->lock);
        ch->stats.active--;
        pthread_mutex_unlock(&ch->lock);
    }
}

static void *accept_main(void *arg)
{
    rc_apichan *ch = arg;
    rc_log_set_context(ch->session_id, ch->work_id);
    struct pollfd p[2] = {{.fd = ch->listen_fd, .events = POLLIN},
                          {.fd = ch->stop_fd, .events = POLLIN}};
    while (!atomic_load(&ch->stopping)) {
        int n = poll(p, 2, -1);
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0 || (p[1].revents & POLLIN))
            continue;
        if (p[0].revents & POLLIN)
            accept_one(ch);
    }
    return NULL;
}

/* ---- configuration and the socket file -------------------------------------------------- */

static bool host_is_loopback(const char *host, size_t len)
{
    if ((len == 9 && strncasecmp(host, "localhost", 9) == 0) ||
        (len == 5 && memcmp(host, "[::1]", 5) == 0))
        return true;
    if (len < 4 || strncmp(host, "127.", 4) != 0)
        return false;
    for (size_t i = 4; i < len; i++)
        if (!is_digit((unsigned char)host[i]) && host[i] != '.')
            return false;
    return true;
}

/* Check and normalise the base URL: scheme, no userinfo/query/fragment/whitespace, host
 * present, no trailing '/'. */
static int base_url_check(const char *url, bool allow_plain, char **ret, bool *ret_https,
                          rc_error *err)
{
    bool https = strncmp(url, "https://", 8) == 0;
    bool http = strncmp(url, "http://", 7) == 0;
    if (!https && !http)
        return rc_error_set(err, RC_EINVAL, "base URL must start with https:// or http://");
    const char *host = url + (https ? 8 : 7);
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '@' || *p == '?' ||
            *p == '#' || *p == '\\')
            return rc_error_set(err, RC_EINVAL, "base URL holds a forbidden character");
    size_t hl = strcspn(host, "/");
    size_t name_len = hl;
    if (host[0] == '[') {
        const char *rb = memchr(host, ']', hl);
        name_len = rb ? (size_t)(rb - host) + 1 : hl;
    } else {
        const char *colon = memchr(host, ':', hl);
        name_len = colon ? (size_t)(colon - host) : hl;
    }
    if (name_len == 0)
        return rc_error_set(err, RC_EINVAL, "base URL has no host");
    if (http && !allow_plain && !host_is_loopback(host, name_len))
        return rc_error_set(err, RC_EINVAL,
                            "plain http:// upstream is allowed only for a loopback host");
    char *copy = strdup(url);
    if (!copy)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    size_t l = strlen(copy);
    while (l > 0 && copy[l - 1] == '/')
        copy[--l] = '\0';
    *ret = copy;
    *ret_https = https;
    return 0;
}

static int dup_opt(const char *s, char **ret, rc_error *err)
{
    if (!s) {
        *ret = NULL;
        return 0;
    }
    *ret = strdup(s);
    return *ret ? 0 : rc_error_set(err, RC_ENOMEM, "out of memory");
}

static int config_check(const rc_apichan_config *cfg, rc_error *err)
{
    const rc_apichan_scope *s = &cfg->scope;
    if (!cfg->socket_path || cfg->socket_path[0] != '/')
        return rc_error_set(err, RC_EINVAL, "socket path must be absolute");
    if (strlen(cfg->socket_path) + sizeof SOCKET_TMP_SUFFIX >
        sizeof(((struct sockaddr_un *)0)->sun_path))
        return rc_error_set(err, RC_EINVAL, "socket path is too long");
    if (!s->session_id || !id_shape_ok(s->session_id, strlen(s->session_id)) || !s->work_id ||
        !id_shape_ok(s->work_id, strlen(s->work_id)) || !s->environment_id ||
        !id_shape_ok(s->environment_id, strlen(s->environment_id)))
        return rc_error_set(err, RC_EINVAL, "environment, work and session ids must be valid ids");
    for (const char *const *m = s->memory_store_ids; m && *m; m++)
        if (!id_shape_ok(*m, strlen(*m)))
            return rc_error_set(err, RC_EINVAL, "memory store ids must be valid ids");
    if (!cfg->base_url || strlen(cfg->base_url) > BASE_URL_MAX)
        return rc_error_set(err, RC_EINVAL, "base URL is missing or too long");
    if (!cfg->credential || !*cfg->credential || strlen(cfg->credential) > CREDENTIAL_MAX ||
        !visible_ascii(cfg->credential))
        return rc_error_set(err, RC_EINVAL, "credential is missing or not a visible-ASCII token");
    if (cfg->credential_kind != RC_APICHAN_CRED_SESSIONS_TOKEN &&
        cfg->credential_kind != RC_APICHAN_CRED_ENVIRONMENT_KEY)
        return rc_error_set(err, RC_EINVAL, "credential kind is not set");
    return 0;
}

static int copy_memory_ids(const char *const *ids, char ***ret, rc_error *err)
{
    size_t n = 0;
    while (ids && ids[n])
        n++;
    _cleanup_(lines_freep) char **out = calloc(n + 1, sizeof *out);
    if (!out)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (!(out[i] = strdup(ids[i])))
            return rc_error_set(err, RC_ENOMEM, "out of memory");
    *ret = take_ptr(out);
    return 0;
}

/* The socket's directory must not let others swap files under us between bind and rename. */
static int socket_dir_check(const char *path, rc_error *err)
{
    _cleanup_free_ char *dir = strdup(path);
    if (!dir)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    struct stat st;
    if (lstat(dir, &st) < 0)
        return rc_error_sys(err, RC_EIO, "socket directory");
    if (!S_ISDIR(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "socket directory is not a directory");
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return rc_error_set(err, RC_EINVAL, "socket directory is writable by group or others");
    struct stat old;
    if (lstat(path, &old) == 0 && !S_ISSOCK(old.st_mode))
        return rc_error_set(err, RC_EINVAL, "socket path exists and is not a socket");
    return 0;
}

/* Bind under a temporary name, set mode and owner, listen, then rename into place: the final
 * path never exists with looser permissions. */
static int socket_create(rc_apichan *ch, gid_t gid, rc_error *err)
{
    int r = socket_dir_check(ch->socket_path, err);
    if (r < 0)
        return r;
    unsigned char rnd[8];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return rc_error_sys(err, RC_EIO, "getrandom");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof sa.sun_path, "%s.tmp-", ch->socket_path);
    for (size_t i = 0; i < sizeof rnd; i++)
        n += snprintf(sa.sun_path + n, sizeof sa.sun_path - (size_t)n, "%02x", rnd[i]);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "socket");
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return rc_error_sys(err, RC_EIO, "bind the API channel socket");
    if (chmod(sa.sun_path, 0600) < 0) {
        r = rc_error_sys(err, RC_EIO, "chmod the API channel socket");
        goto fail;
    }
    if (lchown(sa.sun_path, ch->allowed_uid, gid) < 0 &&
        !(errno == EPERM && ch->allowed_uid == geteuid() && gid == (gid_t)-1)) {
        r = rc_error_sys(err, RC_EIO, "chown the API channel socket to the runner's uid");
        goto fail;
    }
    if (listen(fd, 64) < 0) {
        r = rc_error_sys(err, RC_EIO, "listen");
        goto fail;
    }
    if (rename(sa.sun_path, ch->socket_path) < 0) {
        r = rc_error_sys(err, RC_EIO, "rename the API channel socket into place");
        goto fail;
    }
    struct stat st;
    if (lstat(ch->socket_path, &st) == 0) {
        ch->sock_dev = st.st_dev;
        ch->sock_ino = st.st_ino;
    }
    ch->listen_fd = take_fd(fd);
    return 0;
fail:
    unlink(sa.sun_path);
    return r;
}

static int chan_copy_config(rc_apichan *ch, const rc_apichan_config *cfg, rc_error *err)
{
    int r;
    if ((r = dup_opt(cfg->socket_path, &ch->socket_path, err)) < 0 ||
        (r = dup_opt(cfg->ca_file, &ch->ca_file, err)) < 0 ||
        (r = dup_opt(cfg->scope.environment_id, &ch->environment_id, err)) < 0 ||
        (r = dup_opt(cfg->scope.work_id, &ch->work_id, err)) < 0 ||
        (r = dup_opt(cfg->scope.session_id, &ch->session_id, err)) < 0 ||
        (r = dup_opt(cfg->heartbeat_record_path, &ch->hb_path, err)) < 0 ||
        (r = copy_memory_ids(cfg->scope.memory_store_ids, &ch->memory_store_ids, err)) < 0 ||
        (r = base_url_check(cfg->base_url, cfg->allow_plain_http, &ch->base_url, &ch->https, err)) <
            0)
        return r;
    ch->scope = (rc_apichan_scope){.environment_id = ch->environment_id,
                                   .work_id = ch->work_id,
                                   .session_id = ch->session_id,
                                   .features = cfg->scope.features,
                                   .memory_store_ids = (const char *const *)ch->memory_store_ids};
    ch->learn_memory =
        !(cfg->scope.features & (RC_APICHAN_ALLOW_MEMORY | RC_APICHAN_NO_MEMORY_LEARNING)) &&
        cfg->credential_kind == RC_APICHAN_CRED_SESSIONS_TOKEN;
    ch->allowed_uid = cfg->allowed_uid;
    ch->credential_kind = cfg->credential_kind;
    ch->max_connections =
        cfg->max_connections ? cfg->max_connections : RC_APICHAN_CONNECTIONS_DEFAULT;
    ch->max_request_body =
        cfg->max_request_body ? cfg->max_request_body : RC_APICHAN_BODY_MAX_DEFAULT;
    ch->max_response_body =
        cfg->max_response_body ? cfg->max_response_body : RC_APICHAN_RESPONSE_MAX_DEFAULT;
    ch->idle_ms = cfg->idle_timeout_ms > 0 ? cfg->idle_timeout_ms : RC_APICHAN_IDLE_MS_DEFAULT;
    ch->read_ms = cfg->read_timeout_ms > 0 ? cfg->read_timeout_ms : RC_APICHAN_READ_MS_DEFAULT;
    ch->upstream_ms =
        cfg->upstream_timeout_ms > 0 ? cfg->upstream_timeout_ms : RC_APICHAN_UPSTREAM_MS_DEFAULT;
    ch->connect_ms =
        cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : RC_APICHAN_CONNECT_MS_DEFAULT;
    ch->audit_fd = cfg->audit_fd;
    ch->running_calls = cfg->running_calls;
    return 0;
}

static void chan_freep(rc_apichan **p)
{
    rc_apichan_free(*p);
}

int rc_apichan_new(const rc_apichan_config *cfg, rc_apichan **ret_chan, rc_error *err)
{
    int r = config_check(cfg, err);
    if (r < 0)
        return r;
    pthread_once(&curl_once, curl_once_init);
    if (curl_once_rc != CURLE_OK)
        return rc_error_set(err, RC_EHTTP, "curl_global_init failed");
    _cleanup_(chan_freep) rc_apichan *ch = calloc(1, sizeof *ch);
    if (!ch)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    ch->listen_fd = -1;
    ch->stop_fd = -1;
    ch->audit_fd = -1;
    pthread_mutex_init(&ch->lock, NULL);
    pthread_mutex_init(&ch->hb_lock, NULL);
    pthread_cond_init(&ch->idle, NULL);
    if ((r = chan_copy_config(ch, cfg, err)) < 0 ||
        (r = locked_line_new(cfg->credential, &ch->auth, err)) < 0)
        return r;
    ch->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ch->stop_fd < 0)
        return rc_error_sys(err, RC_EIO, "eventfd");
    if ((r = socket_create(ch, cfg->socket_gid, err)) < 0)
        return r;
    audit_rec a = {.event = "channel",
                   .decision = "allow",
                   .reason = ch->credential_kind == RC_APICHAN_CRED_SESSIONS_TOKEN
                                 ? "listening; credential: sessions token"
                                 : "listening; credential: environment key (operator opt-in)",
                   .peer_uid = (long long)ch->allowed_uid};
    audit(ch, &a);
    if (!ch->auth.locked)
        rc_log_warn("apichan: could not mlock the credential page (RLIMIT_MEMLOCK?)");
    *ret_chan = take_ptr(ch);
    return 0;
}

int rc_apichan_start(rc_apichan *ch, rc_error *err)
{
    if (ch->started || ch->stopped)
        return rc_error_set(err, RC_EINVAL, "channel already started or stopped");
    int r = pthread_create(&ch->accept_thread, NULL, accept_main, ch);
    if (r != 0) {
        errno = r;
        return rc_error_sys(err, RC_EIO, "pthread_create");
    }
    ch->started = true;
    return 0;
}

void rc_apichan_stop(rc_apichan *ch)
{
    if (!ch || ch->stopped)
        return;
    ch->stopped = true;
    atomic_store(&ch->stopping, true);
    uint64_t one = 1;
    if (ch->stop_fd >= 0) {
        ssize_t w = write(ch->stop_fd, &one, sizeof one);
        (void)w;
    }
    if (ch->started)
        pthread_join(ch->accept_thread, NULL);
    pthread_mutex_lock(&ch->lock);
    while (ch->stats.active > 0)
        pthread_cond_wait(&ch->idle, &ch->lock);
    pthread_mutex_unlock(&ch->lock);
}

static void socket_remove(rc_apichan *ch)
{
    struct stat st;
    if (ch->listen_fd < 0 || !ch->socket_path)
        return;
    if (lstat(ch->socket_path, &st) == 0 && st.st_dev == ch->sock_dev && st.st_ino == ch->sock_ino)
        unlink(ch->socket_path);
}

void rc_apichan_free(rc_apichan *ch)
{
    if (!ch)
        return;
    rc_apichan_stop(ch);
    socket_remove(ch);
    if (ch->listen_fd >= 0)
        close(ch->listen_fd);
    if (ch->stop_fd >= 0)
        close(ch->stop_fd);
    locked_line_free(&ch->auth);
    rc_apichan_lines_free(ch->memory_store_ids);
    rc_apichan_lines_free(ch->learned_stores);
    free(ch->socket_path);
    free(ch->base_url);
    free(ch->ca_file);
    free(ch->environment_id);
    free(ch->work_id);
    free(ch->session_id);
    free(ch->hb_path);
    pthread_mutex_destroy(&ch->lock);
    pthread_mutex_destroy(&ch->hb_lock);
    pthread_cond_destroy(&ch->idle);
    free(ch);
}
