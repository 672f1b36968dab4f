/* policy.c - the egress policy: strict parsing of the Vercel-compatible JSON shape and the pure
 * decisions the proxy asks of it (see policy.h for the contract and the evaluation order).
 *
 * Parsing walks the cJSON tree with a running JSON path (`$.allow["x"][0].match`), so every error
 * names the exact field; every object is checked for unknown members before its known ones are
 * read. The parsed policy is immutable: the proxy shares one instance across all connections.
 * Arrays are allocated at their final size and their counts set before the elements are filled,
 * so a failure part-way through frees everything with rc_policy_free. */
#include "policy.h"

#include "cleanup.h"
#include "json.h"
#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

struct rc_policy {
    int mode;
    rc_policy_domain *domains; /* declaration order */
    size_t n_domains;
    rc_policy_domain **exact; /* sorted by pattern */
    size_t n_exact;
    rc_policy_domain **wild; /* sorted by suffix (pattern + 1, ".example.com") */
    size_t n_wild;
    rc_policy_domain *any;
    rc_policy_cidr *allow_cidrs;
    size_t n_allow_cidrs;
    rc_policy_cidr *deny_cidrs;
    size_t n_deny_cidrs;
};

/* ---- JSON path of the field being parsed ---- */

#define JPATH_MAX 320

typedef struct pctx {
    char path[JPATH_MAX];
    size_t len;
    rc_error *err;
} pctx;

static size_t jp_append(pctx *c, const char *s)
{
    size_t old = c->len, n = strlen(s);
    if (c->len + n >= sizeof c->path) {
        n = sizeof c->path - 1 - c->len;
    }
    memcpy(c->path + c->len, s, n);
    c->len += n;
    c->path[c->len] = '\0';
    return old;
}

/* A member name as shown in a path: printable ASCII only, quotes escaped away, at most 64 bytes. */
static void show_name(const char *name, char *out, size_t outsz)
{
    size_t o = 0, i;
    for (i = 0; name[i] && o + 4 < outsz && i < 64; i++) {
        unsigned char ch = (unsigned char)name[i];
        out[o++] = (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') ? (char)ch : '?';
    }
    if (name[i] && o + 4 < outsz) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static bool is_ident(const char *s)
{
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_'))
            return false;
    return true;
}

static size_t jp_key(pctx *c, const char *key)
{
    char shown[80], seg[96];
    show_name(key, shown, sizeof shown);
    if (is_ident(key) && strlen(key) < 64)
        snprintf(seg, sizeof seg, ".%s", shown);
    else
        snprintf(seg, sizeof seg, "[\"%s\"]", shown);
    return jp_append(c, seg);
}

static size_t jp_index(pctx *c, size_t i)
{
    char seg[32];
    snprintf(seg, sizeof seg, "[%zu]", i);
    return jp_append(c, seg);
}

static void jp_pop(pctx *c, size_t len)
{
    c->len = len;
    c->path[len] = '\0';
}

static int perr(pctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int perr(pctx *c, int code, const char *fmt, ...)
{
    char msg[RC_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rc_error_set(c->err, code, "policy: %s: %s", c->path, msg);
}

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsArray(v))
        return "an array";
    return "an object";
}

static int want_type(pctx *c, const cJSON *v, bool ok, const char *want)
{
    if (ok)
        return 0;
    return perr(c, RC_EINVAL, "expected %s, got %s", want, json_type_name(v));
}

/* Unknown members are errors: a misspelt key must never be ignored. */
static int check_members(pctx *c, const cJSON *obj, const char *const *known, const char *hint)
{
    for (const cJSON *m = obj->child; m; m = m->next) {
        bool found = false;
        char shown[80];
        for (size_t i = 0; known[i]; i++)
            if (strcmp(m->string, known[i]) == 0)
                found = true;
        if (found)
            continue;
        show_name(m->string, shown, sizeof shown);
        return perr(c, RC_EINVAL, "unknown member \"%s\"%s%s", shown, hint ? "; " : "",
                    hint ? hint : "");
    }
    return 0;
}

static int array_size(pctx *c, const cJSON *arr, size_t min, size_t max, const char *what,
                      size_t *ret)
{
    int n = cJSON_GetArraySize(arr);
    if (n < 0 || (size_t)n < min)
        return perr(c, RC_EINVAL, "needs at least %zu %s", min, what);
    if ((size_t)n > max)
        return perr(c, RC_ETOOBIG, "more than %zu %s", max, what);
    *ret = (size_t)n;
    return 0;
}

static int dup_string(pctx *c, const char *s, char **ret)
{
    char *d = strdup(s);
    if (!d)
        return perr(c, RC_ENOMEM, "out of memory");
    *ret = d;
    return 0;
}

static void lowercase(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* ---- lexical validators ---- */

static bool is_tchar(unsigned char ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return false;
    return true;
}

/* Field values we put on the wire: visible ASCII, space and tab; no CR, LF or NUL. */
static bool is_field_value(const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (!(ch == '\t' || (ch >= 0x20 && ch < 0x7f)))
            return false;
    }
    return true;
}

static bool is_ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

bool rc_policy_hostname_valid(const char *s)
{
    size_t len = strlen(s), label = 0;
    struct in_addr a;

    if (len == 0 || len > RC_POLICY_HOST_MAX)
        return false;
    /* inet_aton accepts "127.1", "2130706433", "0x7f.1": getaddrinfo would treat them as
     * addresses, so none of them is a name. */
    if (inet_aton(s, &a) || is_ip_literal(s))
        return false;
    for (size_t i = 0; i <= len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.' || ch == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!(islower(ch) || isdigit(ch) || ch == '-'))
            return false;
        if (label == 0 && ch == '-')
            return false;
        label++;
    }
    return true;
}

/* ---- matchers ---- */

static void strmatch_free(rc_policy_strmatch *m)
{
    free(m->text);
    rc_re_free(m->re);
    *m = (rc_policy_strmatch){0};
}

/* {exact|startsWith|regex: string}. For header names (header_name) the text must be a token and
 * is lowercased, and a regex is compiled case-insensitively. For paths, exact and startsWith
 * must begin with '/' (anything else could never match and would be a silent mistake). */
static int parse_strmatch(pctx *c, const cJSON *v, bool is_path, bool header_name,
                          rc_policy_strmatch *ret)
{
    static const char *const known[] = {"exact", "startsWith", "regex", NULL};
    const cJSON *m;
    size_t mark;
    int r, n = 0;

    r = want_type(c, v, cJSON_IsObject(v), "an object with \"exact\", \"startsWith\" or \"regex\"");
    if (r < 0)
        return r;
    r = check_members(c, v, known, NULL);
    if (r < 0)
        return r;
    for (m = v->child; m; m = m->next)
        n++;
    if (n != 1)
        return perr(c, RC_EINVAL, "needs exactly one of \"exact\", \"startsWith\", \"regex\"");
    m = v->child;
    mark = jp_key(c, m->string);
    r = want_type(c, m, cJSON_IsString(m), "a string");
    if (r < 0)
        return r;
    if (strlen(m->valuestring) > RC_POLICY_STRING_MAX)
        return perr(c, RC_ETOOBIG, "longer than %u bytes", RC_POLICY_STRING_MAX);
    if (strcmp(m->string, "regex") == 0) {
        ret->kind = RC_POLICY_MATCH_REGEX;
        r = rc_re_compile(m->valuestring, strlen(m->valuestring), header_name, &ret->re, c->err);
        if (r < 0)
            return rc_error_wrap(c->err, -r, c->path);
        jp_pop(c, mark);
        return 0;
    }
    ret->kind = strcmp(m->string, "exact") == 0 ? RC_POLICY_MATCH_EXACT : RC_POLICY_MATCH_PREFIX;
    if (is_path && m->valuestring[0] != '/')
        return perr(c, RC_EINVAL, "a path must start with \"/\"");
    if (header_name &&
        !(is_token(m->valuestring) || (ret->kind == RC_POLICY_MATCH_PREFIX && !m->valuestring[0])))
        return perr(c, RC_EINVAL, "not a valid header name");
    r = dup_string(c, m->valuestring, &ret->text);
    if (r < 0)
        return r;
    if (header_name)
        lowercase(ret->text);
    ret->len = strlen(ret->text);
    jp_pop(c, mark);
    return 0;
}

static int parse_kvmatch(pctx *c, const cJSON *v, bool header, rc_policy_kvmatch *ret)
{
    static const char *const known[] = {"key", "value", NULL};
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(v, "key");
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(v, "value");
    size_t mark;
    int r;

    r = want_type(c, v, cJSON_IsObject(v), "an object with \"key\" and/or \"value\"");
    if (r < 0)
        return r;
    r = check_members(c, v, known, NULL);
    if (r < 0)
        return r;
    if (!k && !val)
        return perr(c, RC_EINVAL, "needs \"key\" or \"value\"");
    if (k) {
        mark = jp_key(c, "key");
        r = parse_strmatch(c, k, false, header, &ret->key);
        if (r < 0)
            return r;
        ret->has_key = true;
        jp_pop(c, mark);
    }
    if (val) {
        mark = jp_key(c, "value");
        r = parse_strmatch(c, val, false, false, &ret->value);
        if (r < 0)
            return r;
        ret->has_value = true;
        jp_pop(c, mark);
    }
    return 0;
}

static int parse_kvlist(pctx *c, const cJSON *v, bool header, rc_policy_kvmatch **ret,
                        size_t *ret_n)
{
    const char *what = header ? "header matchers" : "query matchers";
    size_t n, i = 0, mark;
    const cJSON *e;
    int r;

    r = want_type(c, v, cJSON_IsArray(v), "an array");
    if (r < 0)
        return r;
    r = array_size(c, v, 1, RC_POLICY_KV_MAX, what, &n);
    if (r < 0)
        return r;
    *ret = calloc(n, sizeof **ret);
    if (!*ret)
        return perr(c, RC_ENOMEM, "out of memory");
    *ret_n = n;
    cJSON_ArrayForEach(e, v)
    {
        mark = jp_index(c, i);
        r = parse_kvmatch(c, e, header, &(*ret)[i++]);
        if (r < 0)
            return r;
        jp_pop(c, mark);
    }
    return 0;
}

static int parse_methods(pctx *c, const cJSON *v, rc_policy_rule *rule)
{
    size_t n, i = 0, mark;
    const cJSON *e;
    int r;

    r = want_type(c, v, cJSON_IsArray(v), "an array of method names");
    if (r < 0)
        return r;
    r = array_size(c, v, 1, RC_POLICY_METHODS_MAX, "methods", &n);
    if (r < 0)
        return r;
    rule->methods = calloc(n, sizeof *rule->methods);
    if (!rule->methods)
        return perr(c, RC_ENOMEM, "out of memory");
    rule->n_methods = n;
    cJSON_ArrayForEach(e, v)
    {
        mark = jp_index(c, i);
        r = want_type(c, e, cJSON_IsString(e), "a string");
        if (r < 0)
            return r;
        if (!is_token(e->valuestring) || strlen(e->valuestring) > 32)
            return perr(c, RC_EINVAL, "not an HTTP method token");
        for (const char *p = e->valuestring; *p; p++)
            if (islower((unsigned char)*p))
                return perr(c, RC_EINVAL, "methods are case-sensitive: write it in uppercase");
        for (size_t j = 0; j < i; j++)
            if (strcmp(rule->methods[j], e->valuestring) == 0)
                return perr(c, RC_EINVAL, "method listed twice");
        r = dup_string(c, e->valuestring, &rule->methods[i++]);
        if (r < 0)
            return r;
        jp_pop(c, mark);
    }
    return 0;
}

static int parse_match(pctx *c, const cJSON *v, rc_policy_rule *rule)
{
    static const char *const known[] = {"path", "method", "queryString", "headers", NULL};
    const cJSON *e;
    size_t mark;
    int r;

    r = want_type(c, v, cJSON_IsObject(v), "an object");
    if (r < 0)
        return r;
    r = check_members(c, v, known, NULL);
    if (r < 0)
        return r;
    rule->has_match = true;
    if ((e = cJSON_GetObjectItemCaseSensitive(v, "path"))) {
        mark = jp_key(c, "path");
        r = parse_strmatch(c, e, true, false, &rule->path);
        if (r < 0)
            return r;
        rule->has_path = true;
        jp_pop(c, mark);
    }
    if ((e = cJSON_GetObjectItemCaseSensitive(v, "method"))) {
        mark = jp_key(c, "method");
        r = parse_methods(c, e, rule);
        if (r < 0)
            return r;
        jp_pop(c, mark);
    }
    if ((e = cJSON_GetObjectItemCaseSensitive(v, "queryString"))) {
        mark = jp_key(c, "queryString");
        r = parse_kvlist(c, e, false, &rule->query, &rule->n_query);
        if (r < 0)
            return r;
        jp_pop(c, mark);
    }
    if ((e = cJSON_GetObjectItemCaseSensitive(v, "headers"))) {
        mark = jp_key(c, "headers");
        r = parse_kvlist(c, e, true, &rule->headers, &rule->n_headers);
        if (r < 0)
            return r;
        jp_pop(c, mark);
    }
    return 0;
}

/* ---- actions ---- */

/* Headers the broker itself controls (framing, hop-by-hop, the upstream Host): a policy may not
 * set them. */
static bool header_reserved(const char *lname)
{
    static const char *const reserved[] = {"host",
                                           "content-length",
                                           "transfer-encoding",
                                           "connection",
                                           "keep-alive",
                                           "upgrade",
                                           "te",
                                           "trailer",
                                           "proxy-connection",
                                           "proxy-authorization",
                                           "proxy-authenticate",
                                           NULL};
    for (size_t i = 0; reserved[i]; i++)
        if (strcmp(lname, reserved[i]) == 0)
            return true;
    return false;
}

static int header_index(const rc_policy_header *h, size_t n, const char *lname)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].name, lname) == 0)
            return (int)i;
    return -1;
}

/* {"Name": "value", ...} appended to *list (capacity RC_POLICY_HEADERS_MAX). Values are never
 * echoed in errors: they may be credentials. */
static int parse_header_map(pctx *c, const cJSON *v, rc_policy_header *list, size_t *n)
{
    const cJSON *e;
    size_t mark;
    int r;

    r = want_type(c, v, cJSON_IsObject(v), "an object of header names to values");
    if (r < 0)
        return r;
    cJSON_ArrayForEach(e, v)
    {
        char lname[128];
        mark = jp_key(c, e->string);
        if (!is_token(e->string) || strlen(e->string) >= sizeof lname)
            return perr(c, RC_EINVAL, "not a valid header name");
        snprintf(lname, sizeof lname, "%s", e->string);
        lowercase(lname);
        if (header_reserved(lname))
            return perr(c, RC_EINVAL, "this header is managed by the proxy and cannot be set");
        if (header_index(list, *n, lname) >= 0)
            return perr(c, RC_EINVAL, "header set twice (names are case-insensitive)");
        if (*n >= RC_POLICY_HEADERS_MAX)
            return perr(c, RC_ETOOBIG, "more than %u headers", RC_POLICY_HEADERS_MAX);
        r = want_type(c, e, cJSON_IsString(e), "a string");
        if (r < 0)
            return r;
        if (strlen(e->valuestring) > RC_POLICY_STRING_MAX)
            return perr(c, RC_ETOOBIG, "value longer than %u bytes", RC_POLICY_STRING_MAX);
        if (!is_field_value(e->valuestring))
            return perr(c, RC_EINVAL, "value holds a control or non-ASCII byte");
        r = dup_string(c, lname, &list[*n].name);
        if (r < 0)
            return r;
        r = dup_string(c, e->valuestring, &list[*n].value);
        if (r < 0) {
            free(take_ptr(list[*n].name));
            return r;
        }
        (*n)++;
        jp_pop(c, mark);
    }
    return 0;
}

static int parse_transform(pctx *c, const cJSON *v, rc_policy_rule *rule)
{
    static const char *const known[] = {"headers", NULL};
    size_t n, i = 0, mark, mark2;
    const cJSON *e, *h;
    int r;

    rule->action = RC_POLICY_ACTION_TRANSFORM;
    r = want_type(c, v, cJSON_IsArray(v), "an array of transformers");
    if (r < 0)
        return r;
    r = array_size(c, v, 0, 16, "transformers", &n);
    if (r < 0)
        return r;
    rule->set_headers = calloc(RC_POLICY_HEADERS_MAX, sizeof *rule->set_headers);
    if (!rule->set_headers)
        return perr(c, RC_ENOMEM, "out of memory");
    cJSON_ArrayForEach(e, v)
    {
        mark = jp_index(c, i++);
        r = want_type(c, e, cJSON_IsObject(e), "an object");
        if (r < 0)
            return r;
        r = check_members(c, e, known, NULL);
        if (r < 0)
            return r;
        if ((h = cJSON_GetObjectItemCaseSensitive(e, "headers"))) {
            mark2 = jp_key(c, "headers");
            r = parse_header_map(c, h, rule->set_headers, &rule->n_set_headers);
            if (r < 0)
                return r;
            jp_pop(c, mark2);
        }
        jp_pop(c, mark);
    }
    return 0;
}

static int parse_response(pctx *c, const cJSON *v, rc_policy_rule *rule)
{
    static const char *const known[] = {"statusCode", "headers", "body", "contentType", NULL};
    const cJSON *e;
    int64_t status;
    size_t mark;
    int r;

    rule->action = RC_POLICY_ACTION_RESPONSE;
    r = want_type(c, v, cJSON_IsObject(v), "an object");
    if (r < 0)
        return r;
    r = check_members(c, v, known, NULL);
    if (r < 0)
        return r;
    mark = jp_key(c, "statusCode");
    if (!cJSON_GetObjectItemCaseSensitive(v, "statusCode"))
        return perr(c, RC_EINVAL, "required");
    if (rc_json_get_int64(v, "statusCode", &status, NULL) < 0)
        return perr(c, RC_EINVAL, "expected an integer");
    if (status < 200 || status > 599)
        return perr(c, RC_EINVAL, "must be between 200 and 599");
    rule->status = (int)status;
    jp_pop(c, mark);
    if ((e = cJSON_GetObjectItemCaseSensitive(v, "contentType"))) {
        mark = jp_key(c, "contentType");
        r = want_type(c, e, cJSON_IsString(e), "a string");
        if (r < 0)
            return r;
        if (!e->valuestring[0] || strlen(e->valuestring) > 256 || !is_field_value(e->valuestring))
            return perr(c, RC_EINVAL, "not a valid content type");
        r = dup_string(c, e->valuestring, &rule->content_type);
        if (r < 0)
            return r;
        jp_pop(c, mark);
    }
    if ((e = cJSON_GetObjectItemCaseSensitive(v, "body"))) {
        mark = jp_key(c, "body");
        r = want_type(c, e, cJSON_IsString(e), "a string");
        if (r < 0)
            return r;
        if (strlen(e->valuestring) > RC_POLICY_BODY_MAX)
            return perr(c, RC_ETOOBIG, "longer than %u bytes", RC_POLICY_BODY_MAX);
        if (status == 204 || status == 205 || status == 304)
            return perr(c, RC_EINVAL, "status %d has no body", rule->status);
        if (!rule->content_type)
            return perr(c, RC_EINVAL, "a body needs \"contentType\"");
        r = dup_string(c, e->valuestring, &rule->body);
        if (r < 0)
            return r;
        rule->body_len = strlen(rule->body);
        jp_pop(c, mark);
    }
    rule->resp_headers = calloc(RC_POLICY_HEADERS_MAX, sizeof *rule->resp_headers);
    if (!rule->resp_headers)
        return perr(c, RC_ENOMEM, "out of memory");
    if ((e = cJSON_GetObjectItemCaseSensitive(v, "headers"))) {
        mark = jp_key(c, "headers");
        r = parse_header_map(c, e, rule->resp_headers, &rule->n_resp_headers);
        if (r < 0)
            return r;
        if (rule->content_type &&
            header_index(rule->resp_headers, rule->n_resp_headers, "content-type") >= 0)
            return perr(c, RC_EINVAL, "content-type is already given by \"contentType\"");
        jp_pop(c, mark);
    }
    return 0;
}

static int parse_forward(pctx *c, const cJSON *v, rc_policy_rule *rule)
{
    rc_error e = {0};
    int r = want_type(c, v, cJSON_IsString(v), "an https:// URL string");
    if (r < 0)
        return r;
    r = rc_policy_forward_url_parse(v->valuestring, rule, &e);
    if (r == -RC_ENOMEM)
        return perr(c, RC_ENOMEM, "out of memory");
    if (r < 0)
        return perr(c, -r, "%s", e.msg);
    return 0;
}

static int parse_rule(pctx *c, const cJSON *v, rc_policy_rule *rule)
{
    static const char *const known[] = {"match", "transform", "response", "forwardURL", NULL};
    const cJSON *m, *t, *resp, *fwd;
    size_t mark;
    int r;

    r = want_type(c, v, cJSON_IsObject(v), "a rule object");
    if (r < 0)
        return r;
    r = check_members(c, v, known, NULL);
    if (r < 0)
        return r;
    t = cJSON_GetObjectItemCaseSensitive(v, "transform");
    resp = cJSON_GetObjectItemCaseSensitive(v, "response");
    fwd = cJSON_GetObjectItemCaseSensitive(v, "forwardURL");
    if ((t != NULL) + (resp != NULL) + (fwd != NULL) != 1)
        return perr(c, RC_EINVAL,
                    "a rule needs exactly one of \"transform\", \"response\" and \"forwardURL\"");
    if ((m = cJSON_GetObjectItemCaseSensitive(v, "match"))) {
        mark = jp_key(c, "match");
        r = parse_match(c, m, rule);
        if (r < 0)
            return r;
        jp_pop(c, mark);
    }
    mark = jp_key(c, t ? "transform" : resp ? "response" : "forwardURL");
    r = t      ? parse_transform(c, t, rule)
        : resp ? parse_response(c, resp, rule)
               : parse_forward(c, fwd, rule);
    if (r < 0)
        return r;
    jp_pop(c, mark);
    return 0;
}

static void rule_free(rc_policy_rule *r)
{
    strmatch_free(&r->path);
    for (size_t i = 0; i < r->n_methods; i++)
        free(r->methods[i]);
    free(r->methods);
    for (size_t i = 0; i < r->n_query; i++) {
        strmatch_free(&r->query[i].key);
        strmatch_free(&r->query[i].value);
    }
    free(r->query);
    for (size_t i = 0; i < r->n_headers; i++) {
        strmatch_free(&r->headers[i].key);
        strmatch_free(&r->headers[i].value);
    }
    free(r->headers);
    for (size_t i = 0; i < r->n_set_headers; i++) {
        free(r->set_headers[i].name);
        if (r->set_headers[i].value) {
            explicit_bzero(r->set_headers[i].value, strlen(r->set_headers[i].value));
            free(r->set_headers[i].value);
        }
    }
    free(r->set_headers);
    for (size_t i = 0; i < r->n_resp_headers; i++) {
        free(r->resp_headers[i].name);
        free(r->resp_headers[i].value);
    }
    free(r->resp_headers);
    free(r->content_type);
    free(r->body);
    free(r->fwd_url);
    free(r->fwd_host);
    free(r->fwd_path);
}

/* ---- domains ---- */

static int parse_pattern(pctx *c, const char *raw, rc_policy_domain *d)
{
    char *p;
    int r;

    if (strlen(raw) > RC_POLICY_HOST_MAX)
        return perr(c, RC_EINVAL, "domain longer than %u bytes", RC_POLICY_HOST_MAX);
    r = dup_string(c, raw, &d->pattern);
    if (r < 0)
        return r;
    p = d->pattern;
    lowercase(p);
    if (strcmp(p, "*") == 0) {
        d->kind = RC_POLICY_DOMAIN_ANY;
        return 0;
    }
    if (is_ip_literal(p))
        return perr(c, RC_EINVAL,
                    "an IP address is not a domain: list it in subnets.allow as a "
                    "CIDR (for example 192.0.2.1/32)");
    for (const char *q = p; *q; q++)
        if ((unsigned char)*q >= 0x80)
            return perr(c, RC_EINVAL, "non-ASCII domain: write its ASCII (punycode) form");
    if (p[0] && p[strlen(p) - 1] == '.')
        return perr(c, RC_EINVAL, "remove the trailing dot from the domain");
    if (strncmp(p, "*.", 2) == 0) {
        if (strchr(p + 2, '*') || !rc_policy_hostname_valid(p + 2))
            return perr(c, RC_EINVAL, "not a valid wildcard domain (expected *.example.com)");
        d->kind = RC_POLICY_DOMAIN_WILDCARD;
        return 0;
    }
    if (strchr(p, '*'))
        return perr(c, RC_EINVAL, "a wildcard is only allowed as a whole leading label (*.)");
    if (!rc_policy_hostname_valid(p))
        return perr(c, RC_EINVAL, "not a valid host name (letters, digits, '-' and '.')");
    d->kind = RC_POLICY_DOMAIN_EXACT;
    return 0;
}

static int parse_rules(pctx *c, const cJSON *v, rc_policy_domain *d)
{
    size_t n, i = 0, mark;
    const cJSON *e;
    int r;

    r = want_type(c, v, cJSON_IsArray(v), "an array of rules (empty to allow every request)");
    if (r < 0)
        return r;
    r = array_size(c, v, 0, RC_POLICY_RULES_MAX, "rules", &n);
    if (r < 0)
        return r;
    if (n == 0)
        return 0;
    d->rules = calloc(n, sizeof *d->rules);
    if (!d->rules)
        return perr(c, RC_ENOMEM, "out of memory");
    d->n_rules = n;
    cJSON_ArrayForEach(e, v)
    {
        mark = jp_index(c, i);
        r = parse_rule(c, e, &d->rules[i++]);
        if (r < 0)
            return r;
        jp_pop(c, mark);
    }
    return 0;
}

static int parse_allow(pctx *c, const cJSON *v, rc_policy *pol)
{
    bool list = cJSON_IsArray(v);
    size_t n, i = 0, mark;
    const cJSON *e;
    int r;

    r = want_type(c, v, list || cJSON_IsObject(v),
                  "an array of domains or an object of domains to rules");
    if (r < 0)
        return r;
    r = array_size(c, v, 0, RC_POLICY_DOMAINS_MAX, "domains", &n);
    if (r < 0)
        return r;
    pol->domains = calloc(n ? n : 1, sizeof *pol->domains);
    if (!pol->domains)
        return perr(c, RC_ENOMEM, "out of memory");
    pol->n_domains = n;
    cJSON_ArrayForEach(e, v)
    {
        rc_policy_domain *d = &pol->domains[i];
        if (list) {
            mark = jp_index(c, i);
            r = want_type(c, e, cJSON_IsString(e), "a domain string");
            if (r < 0)
                return r;
            r = parse_pattern(c, e->valuestring, d);
        } else {
            mark = jp_key(c, e->string);
            r = parse_pattern(c, e->string, d);
            if (r >= 0)
                r = parse_rules(c, e, d);
        }
        if (r < 0)
            return r;
        jp_pop(c, mark);
        i++;
    }
    return 0;
}

static int cmp_exact(const void *a, const void *b)
{
    const rc_policy_domain *x = *(rc_policy_domain *const *)a, *y = *(rc_policy_domain *const *)b;
    return strcmp(x->pattern, y->pattern);
}

static int cmp_wild(const void *a, const void *b)
{
    const rc_policy_domain *x = *(rc_policy_domain *const *)a, *y = *(rc_policy_domain *const *)b;
    return strcmp(x->pattern + 1, y->pattern + 1);
}

static bool rules_inject(const rc_policy_domain *d)
{
    for (size_t i = 0; i < d->n_rules; i++)
        if (d->rules[i].action == RC_POLICY_ACTION_TRANSFORM && d->rules[i].n_set_headers)
            return true;
    return false;
}

/* Sort the lookup tables, refuse duplicates, and apply the whole-policy rules. */
static int index_domains(pctx *c, rc_policy *pol)
{
    bool injects = false;

    pol->exact = calloc(pol->n_domains + 1, sizeof *pol->exact);
    pol->wild = calloc(pol->n_domains + 1, sizeof *pol->wild);
    if (!pol->exact || !pol->wild)
        return perr(c, RC_ENOMEM, "out of memory");
    for (size_t i = 0; i < pol->n_domains; i++) {
        rc_policy_domain *d = &pol->domains[i];
        injects = injects || rules_inject(d);
        if (d->kind == RC_POLICY_DOMAIN_ANY) {
            if (pol->any)
                return perr(c, RC_EINVAL, "domain \"*\" listed twice");
            pol->any = d;
        } else if (d->kind == RC_POLICY_DOMAIN_WILDCARD) {
            pol->wild[pol->n_wild++] = d;
        } else {
            pol->exact[pol->n_exact++] = d;
        }
    }
    qsort(pol->exact, pol->n_exact, sizeof *pol->exact, cmp_exact);
    qsort(pol->wild, pol->n_wild, sizeof *pol->wild, cmp_wild);
    for (size_t i = 1; i < pol->n_exact; i++)
        if (cmp_exact(&pol->exact[i - 1], &pol->exact[i]) == 0)
            return perr(c, RC_EINVAL, "domain \"%s\" listed twice (names are case-insensitive)",
                        pol->exact[i]->pattern);
    for (size_t i = 1; i < pol->n_wild; i++)
        if (cmp_wild(&pol->wild[i - 1], &pol->wild[i]) == 0)
            return perr(c, RC_EINVAL, "domain \"%s\" listed twice (names are case-insensitive)",
                        pol->wild[i]->pattern);
    if (pol->any && injects)
        return perr(c, RC_EINVAL,
                    "a \"*\" catch-all cannot be combined with header injection "
                    "(transform headers): list the hosts explicitly");
    return 0;
}

/* ---- subnets ---- */

int rc_policy_cidr_parse(const char *s, rc_policy_cidr *ret, rc_error *err)
{
    char addr[64];
    const char *slash = strchr(s, '/');
    rc_policy_cidr cidr = {0};
    size_t alen, nbytes;
    unsigned long prefix = 0;

    if (!slash)
        return rc_error_set(err, RC_EINVAL,
                            "expected a CIDR with a prefix length, "
                            "like 192.0.2.0/24 or 2001:db8::/32");
    alen = (size_t)(slash - s);
    if (alen == 0 || alen >= sizeof addr)
        return rc_error_set(err, RC_EINVAL, "not a valid address");
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET, addr, cidr.addr) == 1)
        cidr.family = AF_INET;
    else if (inet_pton(AF_INET6, addr, cidr.addr) == 1)
        cidr.family = AF_INET6;
    else
        return rc_error_set(err, RC_EINVAL, "not a valid IPv4 or IPv6 address");
    nbytes = cidr.family == AF_INET ? 4 : 16;
    if (!slash[1] || strlen(slash + 1) > 3)
        return rc_error_set(err, RC_EINVAL, "bad prefix length");
    for (const char *p = slash + 1; *p; p++) {
        if (!isdigit((unsigned char)*p) || (p == slash + 1 && *p == '0' && p[1]))
            return rc_error_set(err, RC_EINVAL, "bad prefix length");
        prefix = prefix * 10 + (unsigned long)(*p - '0');
    }
    if (prefix > nbytes * 8)
        return rc_error_set(err, RC_EINVAL, "prefix length above %zu", nbytes * 8);
    cidr.prefix = (unsigned)prefix;
    for (size_t bit = prefix; bit < nbytes * 8; bit++)
        if (cidr.addr[bit / 8] & (0x80u >> (bit % 8)))
            return rc_error_set(err, RC_EINVAL,
                                "host bits set after the prefix (did you mean "
                                "a /%zu?)",
                                nbytes * 8);
    *ret = cidr;
    return 0;
}

static int parse_cidr_list(pctx *c, const cJSON *v, rc_policy_cidr **ret, size_t *ret_n)
{
    size_t n, i = 0, mark;
    const cJSON *e;
    int r;

    r = want_type(c, v, cJSON_IsArray(v), "an array of CIDRs");
    if (r < 0)
        return r;
    r = array_size(c, v, 0, RC_POLICY_CIDRS_MAX, "CIDRs", &n);
    if (r < 0)
        return r;
    *ret = calloc(n ? n : 1, sizeof **ret);
    if (!*ret)
        return perr(c, RC_ENOMEM, "out of memory");
    *ret_n = n;
    cJSON_ArrayForEach(e, v)
    {
        rc_error sub = {0};
        mark = jp_index(c, i);
        r = want_type(c, e, cJSON_IsString(e), "a CIDR string");
        if (r < 0)
            return r;
        r = rc_policy_cidr_parse(e->valuestring, &(*ret)[i++], &sub);
        if (r < 0)
            return perr(c, -r, "%s", sub.msg);
        jp_pop(c, mark);
    }
    return 0;
}

static int parse_subnets(pctx *c, const cJSON *v, rc_policy *pol)
{
    static const char *const known[] = {"allow", "deny", NULL};
    const cJSON *e;
    size_t mark;
    int r;

    r = want_type(c, v, cJSON_IsObject(v), "an object with \"allow\" and/or \"deny\"");
    if (r < 0)
        return r;
    r = check_members(c, v, known, NULL);
    if (r < 0)
        return r;
    if ((e = cJSON_GetObjectItemCaseSensitive(v, "allow"))) {
        mark = jp_key(c, "allow");
        r = parse_cidr_list(c, e, &pol->allow_cidrs, &pol->n_allow_cidrs);
        if (r < 0)
            return r;
        jp_pop(c, mark);
    }
    if ((e = cJSON_GetObjectItemCaseSensitive(v, "deny"))) {
        mark = jp_key(c, "deny");
        r = parse_cidr_list(c, e, &pol->deny_cidrs, &pol->n_deny_cidrs);
        if (r < 0)
            return r;
        jp_pop(c, mark);
    }
    return 0;
}

/* ---- the document ---- */

static int parse_mode_string(pctx *c, const char *s, rc_policy *pol)
{
    if (strcmp(s, "deny-all") == 0) {
        pol->mode = RC_POLICY_DENY_ALL;
        return 0;
    }
    if (strcmp(s, "allow-all") == 0) {
        pol->mode = RC_POLICY_ALLOW_ALL;
        return 0;
    }
    return perr(c, RC_EINVAL, "expected \"deny-all\", \"allow-all\" or a policy object");
}

/* {"mode": "deny-all" | "allow-all"}: the SDK's wire form of the two string policies. */
static int parse_wire_mode(pctx *c, const cJSON *root, rc_policy *pol)
{
    static const char *const known[] = {"mode", NULL};
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "mode");
    size_t mark;
    int r;

    mark = jp_key(c, "mode");
    r = want_type(c, m, cJSON_IsString(m), "a string");
    if (r < 0)
        return r;
    if (strcmp(m->valuestring, "custom") == 0)
        return perr(c, RC_EINVAL,
                    "the legacy {\"mode\":\"custom\",\"allowedDomains\":...} shape "
                    "is not supported: write {\"allow\": ..., \"subnets\": ...}");
    r = parse_mode_string(c, m->valuestring, pol);
    if (r < 0)
        return r;
    jp_pop(c, mark);
    return check_members(c, root, known, "\"mode\" stands alone");
}

static int parse_object(pctx *c, const cJSON *root, rc_policy *pol)
{
    static const char *const known[] = {"allow", "subnets", NULL};
    const cJSON *e;
    size_t mark;
    int r;

    if (cJSON_GetObjectItemCaseSensitive(root, "mode"))
        return parse_wire_mode(c, root, pol);
    r = check_members(c, root, known, "a policy object has only \"allow\" and \"subnets\"");
    if (r < 0)
        return r;
    pol->mode = RC_POLICY_CUSTOM;
    if ((e = cJSON_GetObjectItemCaseSensitive(root, "allow"))) {
        mark = jp_key(c, "allow");
        r = parse_allow(c, e, pol);
        if (r < 0)
            return r;
        jp_pop(c, mark);
    }
    if ((e = cJSON_GetObjectItemCaseSensitive(root, "subnets"))) {
        mark = jp_key(c, "subnets");
        r = parse_subnets(c, e, pol);
        if (r < 0)
            return r;
        jp_pop(c, mark);
    }
    return index_domains(c, pol);
}

int rc_policy_parse(const char *text, size_t len, rc_policy **ret, rc_error *err)
{
    rc_json_limits lim = {.max_size = RC_POLICY_FILE_MAX, .max_depth = RC_POLICY_DEPTH_MAX};
    _cleanup_json_ cJSON *root = NULL;
    _cleanup_(rc_policy_freep) rc_policy *pol = NULL;
    pctx c = {.path = "$", .len = 1, .err = err};
    int r;

    r = rc_json_parse(text, len, &lim, &root, err);
    if (r < 0)
        return rc_error_wrap(err, -r, "policy: not valid JSON");
    pol = calloc(1, sizeof *pol);
    if (!pol)
        return rc_error_set(err, RC_ENOMEM, "policy: out of memory");
    if (cJSON_IsString(root))
        r = parse_mode_string(&c, root->valuestring, pol);
    else if (cJSON_IsObject(root))
        r = parse_object(&c, root, pol);
    else
        r = want_type(&c, root, false, "\"deny-all\", \"allow-all\" or a policy object");
    if (r < 0)
        return r;
    if (pol->any)
        rc_log_warn("egress policy: the \"*\" entry allows EVERY host name and IP literal; only "
                    "subnets.deny and the SSRF guard still refuse anything");
    *ret = take_ptr(pol);
    return 0;
}

int rc_policy_load(const char *path, rc_policy **ret, rc_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(RC_POLICY_FILE_MAX);
    struct stat st;
    int r;

    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "policy: cannot open %s", path);
    if (fstat(fd, &st) < 0)
        return rc_error_sys(err, RC_EIO, "policy: cannot stat %s", path);
    if (!S_ISREG(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "policy: %s is not a regular file", path);
    for (;;) {
        ssize_t n;
        r = rc_buf_reserve(&b, 4096, err);
        if (r < 0) {
            if (r == -RC_ETOOBIG)
                return rc_error_set(err, RC_ETOOBIG, "policy: %s is larger than %zu bytes", path,
                                    RC_POLICY_FILE_MAX);
            return r;
        }
        n = read(fd, b.data + b.len, 4096);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return rc_error_sys(err, RC_EIO, "policy: cannot read %s", path);
        if (n == 0)
            break;
        b.len += (size_t)n;
    }
    r = rc_policy_parse(b.data ? b.data : "", b.len, ret, err);
    if (r < 0) {
        char ctx[300];
        snprintf(ctx, sizeof ctx, "%s", path);
        return rc_error_wrap(err, -r, ctx);
    }
    return 0;
}

void rc_policy_free(rc_policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_domains; i++) {
        for (size_t j = 0; j < p->domains[i].n_rules; j++)
            rule_free(&p->domains[i].rules[j]);
        free(p->domains[i].rules);
        free(p->domains[i].pattern);
    }
    free(p->domains);
    free(p->exact);
    free(p->wild);
    free(p->allow_cidrs);
    free(p->deny_cidrs);
    free(p);
}

int rc_policy_mode(const rc_policy *p)
{
    return p->mode;
}

bool rc_policy_has_catch_all(const rc_policy *p)
{
    return p->any != NULL;
}

size_t rc_policy_domain_count(const rc_policy *p)
{
    return p->n_domains;
}

const rc_policy_domain *rc_policy_domain_at(const rc_policy *p, size_t i)
{
    return i < p->n_domains ? &p->domains[i] : NULL;
}

/* ---- description for logs (names only, never values) ---- */

static const char *mode_name(int mode)
{
    return mode == RC_POLICY_DENY_ALL    ? "deny-all"
           : mode == RC_POLICY_ALLOW_ALL ? "allow-all"
                                         : "custom";
}

static cJSON *describe_rule(const rc_policy_rule *r)
{
    cJSON *o = cJSON_CreateObject(), *names;
    if (!o)
        return NULL;
    if (!cJSON_AddStringToObject(o, "action",
                                 r->action == RC_POLICY_ACTION_TRANSFORM  ? "transform"
                                 : r->action == RC_POLICY_ACTION_RESPONSE ? "response"
                                                                          : "forwardURL") ||
        !cJSON_AddBoolToObject(o, "match", r->has_match))
        goto fail;
    if (r->action == RC_POLICY_ACTION_FORWARD) {
        if (!cJSON_AddStringToObject(o, "forwardURL", r->fwd_url))
            goto fail;
        return o;
    }
    if (r->action == RC_POLICY_ACTION_RESPONSE) {
        if (!cJSON_AddNumberToObject(o, "status", r->status))
            goto fail;
        return o;
    }
    names = cJSON_AddArrayToObject(o, "headers");
    if (!names)
        goto fail;
    for (size_t i = 0; i < r->n_set_headers; i++) {
        cJSON *s = cJSON_CreateString(r->set_headers[i].name);
        if (!s)
            goto fail;
        cJSON_AddItemToArray(names, s);
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

static cJSON *describe_cidrs(const rc_policy_cidr *c, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        char addr[INET6_ADDRSTRLEN], s[INET6_ADDRSTRLEN + 8];
        cJSON *item;
        inet_ntop(c[i].family, c[i].addr, addr, sizeof addr);
        snprintf(s, sizeof s, "%s/%u", addr, c[i].prefix);
        item = cJSON_CreateString(s);
        if (!item) {
            cJSON_Delete(a);
            return NULL;
        }
        cJSON_AddItemToArray(a, item);
    }
    return a;
}

static int describe_domains(const rc_policy *p, cJSON *o)
{
    cJSON *doms = cJSON_AddArrayToObject(o, "domains");
    if (!doms)
        return -RC_ENOMEM;
    for (size_t i = 0; i < p->n_domains; i++) {
        cJSON *d = cJSON_CreateObject(), *rules;
        if (!d)
            return -RC_ENOMEM;
        cJSON_AddItemToArray(doms, d);
        if (!cJSON_AddStringToObject(d, "domain", p->domains[i].pattern) ||
            !(rules = cJSON_AddArrayToObject(d, "rules")))
            return -RC_ENOMEM;
        for (size_t j = 0; j < p->domains[i].n_rules; j++) {
            cJSON *r = describe_rule(&p->domains[i].rules[j]);
            if (!r)
                return -RC_ENOMEM;
            cJSON_AddItemToArray(rules, r);
        }
    }
    return 0;
}

int rc_policy_describe(const rc_policy *p, rc_buf *out, rc_error *err)
{
    _cleanup_json_ cJSON *o = cJSON_CreateObject();
    cJSON *allow, *deny;

    if (!o || !cJSON_AddStringToObject(o, "mode", mode_name(p->mode)))
        return rc_error_set(err, RC_ENOMEM, "policy: out of memory");
    if (p->mode == RC_POLICY_CUSTOM) {
        if (describe_domains(p, o) < 0 || !cJSON_AddBoolToObject(o, "catch_all", p->any != NULL))
            return rc_error_set(err, RC_ENOMEM, "policy: out of memory");
        allow = describe_cidrs(p->allow_cidrs, p->n_allow_cidrs);
        deny = describe_cidrs(p->deny_cidrs, p->n_deny_cidrs);
        if (allow)
            cJSON_AddItemToObject(o, "subnets_allow", allow);
        if (deny)
            cJSON_AddItemToObject(o, "subnets_deny", deny);
        if (!allow || !deny)
            return rc_error_set(err, RC_ENOMEM, "policy: out of memory");
    }
    return rc_json_print(o, out, err);
}

/* ---- decisions: hosts ---- */

static const rc_policy_domain *find_exact(const rc_policy *p, const char *host)
{
    size_t lo = 0, hi = p->n_exact;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(host, p->exact[mid]->pattern);
        if (c == 0)
            return p->exact[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static const rc_policy_domain *find_wild_suffix(const rc_policy *p, const char *suffix)
{
    size_t lo = 0, hi = p->n_wild;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(suffix, p->wild[mid]->pattern + 1);
        if (c == 0)
            return p->wild[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* The most specific wildcard: the longest suffix ".x.y" of host that is listed, with at least
 * one label in front of it (so "*.example.com" never matches "example.com" itself). */
static const rc_policy_domain *find_wild(const rc_policy *p, const char *host)
{
    for (const char *dot = strchr(host, '.'); dot; dot = strchr(dot + 1, '.')) {
        const rc_policy_domain *d = find_wild_suffix(p, dot);
        if (d)
            return d;
    }
    return NULL;
}

static bool cidr_list_contains(const rc_policy_cidr *c, size_t n, const struct sockaddr *sa)
{
    for (size_t i = 0; i < n; i++)
        if (rc_policy_cidr_contains(&c[i], sa))
            return true;
    return false;
}

static void verdict(rc_policy_verdict *v, bool allow, const char *reason, const rc_policy_domain *d)
{
    *v = (rc_policy_verdict){.allow = allow, .reason = reason, .domain = d};
}

static int check_ip_literal(const rc_policy *p, const char *host, rc_policy_verdict *ret)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1)
        s4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1)
        s6->sin6_family = AF_INET6;
    else
        return 0;
    if (p->mode == RC_POLICY_ALLOW_ALL)
        verdict(ret, true, "policy is allow-all", NULL);
    else if (cidr_list_contains(p->deny_cidrs, p->n_deny_cidrs, (struct sockaddr *)&ss))
        verdict(ret, false, "address in subnets.deny", NULL);
    else if (cidr_list_contains(p->allow_cidrs, p->n_allow_cidrs, (struct sockaddr *)&ss))
        verdict(ret, true, "address in subnets.allow", NULL);
    else if (p->any)
        verdict(ret, true, "catch-all \"*\"", p->any);
    else
        verdict(ret, false, "IP address not in subnets.allow", NULL);
    return 1;
}

int rc_policy_check_host(const rc_policy *p, const char *host, rc_policy_verdict *ret,
                         rc_error *err)
{
    char lower[RC_POLICY_HOST_MAX + 1];
    const rc_policy_domain *d;
    rc_policy_verdict v;

    if (p->mode == RC_POLICY_DENY_ALL) {
        verdict(ret, false, "policy is deny-all", NULL);
        return 0;
    }
    if (strlen(host) > RC_POLICY_HOST_MAX)
        return rc_error_set(err, RC_EINVAL, "host name too long");
    snprintf(lower, sizeof lower, "%s", host);
    lowercase(lower);
    if (check_ip_literal(p, lower, &v)) {
        *ret = v;
        return 0;
    }
    if (!rc_policy_hostname_valid(lower))
        return rc_error_set(err, RC_EINVAL, "not a valid host name");
    if (p->mode == RC_POLICY_ALLOW_ALL)
        verdict(ret, true, "policy is allow-all", NULL);
    else if ((d = find_exact(p, lower)))
        verdict(ret, true, "domain listed", d);
    else if ((d = find_wild(p, lower)))
        verdict(ret, true, "wildcard domain listed", d);
    else if (p->any)
        verdict(ret, true, "catch-all \"*\"", p->any);
    else
        verdict(ret, false, "domain not in policy", NULL);
    return 0;
}

/* ---- decisions: addresses ---- */

/* The address as (family, bytes); IPv4-mapped IPv6 becomes IPv4. False for other families. */
static bool addr_bytes(const struct sockaddr *sa, int *family, uint8_t out[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        *family = AF_INET;
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(a, mapped, sizeof mapped) == 0) {
            memcpy(out, a + 12, 4);
            *family = AF_INET;
        } else {
            memcpy(out, a, 16);
            *family = AF_INET6;
        }
        return true;
    }
    return false;
}

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, net, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

bool rc_policy_cidr_contains(const rc_policy_cidr *c, const struct sockaddr *sa)
{
    uint8_t b[16];
    int family;
    if (!addr_bytes(sa, &family, b) || family != c->family)
        return false;
    return prefix_match(b, c->addr, c->prefix);
}

typedef struct special_range {
    uint8_t net[16];
    unsigned prefix;
    const char *cls;
} special_range;

static const special_range special_v4[] = {
    {{0, 0, 0, 0}, 8, "unspecified"},        {{10, 0, 0, 0}, 8, "private"},
    {{100, 64, 0, 0}, 10, "shared (CGNAT)"}, {{127, 0, 0, 0}, 8, "loopback"},
    {{169, 254, 169, 254}, 32, "metadata"},  {{169, 254, 0, 0}, 16, "link-local"},
    {{172, 16, 0, 0}, 12, "private"},        {{192, 0, 0, 0}, 24, "reserved"},
    {{192, 168, 0, 0}, 16, "private"},       {{198, 18, 0, 0}, 15, "reserved"},
    {{224, 0, 0, 0}, 4, "multicast"},        {{240, 0, 0, 0}, 4, "reserved"},
};

static const special_range special_v6[] = {
    {{0}, 128, "unspecified"},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback"},
    {{0}, 96, "reserved"}, /* IPv4-compatible */
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, "reserved"},
    {{0x01, 0x00}, 64, "reserved"},             /* discard */
    {{0x20, 0x01, 0x00, 0x00}, 32, "reserved"}, /* Teredo */
    {{0xfc}, 7, "private"},
    {{0xfe, 0x80}, 10, "link-local"},
    {{0xfe, 0xc0}, 10, "reserved"}, /* site-local */
    {{0xff}, 8, "multicast"},
};

static const char *class_in(const special_range *t, size_t n, const uint8_t *a)
{
    for (size_t i = 0; i < n; i++)
        if (prefix_match(a, t[i].net, t[i].prefix))
            return t[i].cls;
    return NULL;
}

static const char *class_of(int family, const uint8_t *a)
{
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    if (family == AF_INET)
        return class_in(special_v4, sizeof special_v4 / sizeof special_v4[0], a);
    /* Translation prefixes carry an IPv4 address: judge that one. */
    if (memcmp(a, nat64, sizeof nat64) == 0)
        return class_of(AF_INET, a + 12);
    if (a[0] == 0x20 && a[1] == 0x02)
        return class_of(AF_INET, a + 2);
    return class_in(special_v6, sizeof special_v6 / sizeof special_v6[0], a);
}

const char *rc_policy_addr_class(const struct sockaddr *sa)
{
    uint8_t b[16];
    int family;
    if (!addr_bytes(sa, &family, b))
        return "not an IP address";
    return class_of(family, b);
}

static const char *class_reason(const char *cls)
{
    static const struct {
        const char *cls, *reason;
    } reasons[] = {
        {"unspecified", "SSRF guard: unspecified address"},
        {"private", "SSRF guard: private address"},
        {"shared (CGNAT)", "SSRF guard: shared (CGNAT) address"},
        {"loopback", "SSRF guard: loopback address"},
        {"metadata", "SSRF guard: cloud metadata address"},
        {"link-local", "SSRF guard: link-local address"},
        {"reserved", "SSRF guard: reserved address"},
        {"multicast", "SSRF guard: multicast address"},
    };
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (strcmp(cls, reasons[i].cls) == 0)
            return reasons[i].reason;
    return "SSRF guard: not an IP address";
}

void rc_policy_check_addr(const rc_policy *p, const struct sockaddr *sa,
                          const rc_policy_hostaddrs *own, rc_policy_verdict *ret)
{
    const char *cls;

    if (p->mode == RC_POLICY_DENY_ALL) {
        verdict(ret, false, "policy is deny-all", NULL);
        return;
    }
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) {
        verdict(ret, false, "SSRF guard: not an IP address", NULL);
        return;
    }
    if (cidr_list_contains(p->deny_cidrs, p->n_deny_cidrs, sa)) {
        verdict(ret, false, "address in subnets.deny", NULL);
        return;
    }
    if (cidr_list_contains(p->allow_cidrs, p->n_allow_cidrs, sa)) {
        verdict(ret, true, "address in subnets.allow", NULL);
        return;
    }
    cls = rc_policy_addr_class(sa);
    if (cls)
        verdict(ret, false, class_reason(cls), NULL);
    else if (own && cidr_list_contains(own->addr, own->n, sa))
        verdict(ret, false, "SSRF guard: one of the broker host's own addresses", NULL);
    else
        verdict(ret, true, "public address", NULL);
}

/* ---- decisions: requests ---- */

/* 1 match, 0 no match, negative when the regex engine failed. fold: compare case-insensitively
 * (header names; the matcher text is already lowercase). */
static int strmatch_test(const rc_policy_strmatch *m, const char *s, size_t len, bool fold)
{
    switch (m->kind) {
    case RC_POLICY_MATCH_EXACT:
        if (len != m->len)
            return 0;
        return fold ? strncasecmp(s, m->text, len) == 0 : memcmp(s, m->text, len) == 0;
    case RC_POLICY_MATCH_PREFIX:
        if (len < m->len)
            return 0;
        return fold ? strncasecmp(s, m->text, m->len) == 0 : memcmp(s, m->text, m->len) == 0;
    default:
        return rc_re_search(m->re, s, len);
    }
}

static int kv_matches(const rc_policy_kvmatch *m, const rc_policy_kv *kv, size_t n, bool fold)
{
    for (size_t i = 0; i < n; i++) {
        int k = 1, v = 1;
        if (m->has_key)
            k = strmatch_test(&m->key, kv[i].key, kv[i].key_len, fold);
        if (k < 0)
            return k;
        if (k && m->has_value)
            v = strmatch_test(&m->value, kv[i].value, kv[i].value_len, false);
        if (v < 0)
            return v;
        if (k && v)
            return 1;
    }
    return 0;
}

static int rule_matches(const rc_policy_rule *r, const rc_policy_request *req)
{
    int m;

    if (!r->has_match)
        return 1;
    if (r->n_methods) {
        bool any = false;
        for (size_t i = 0; i < r->n_methods && !any; i++)
            any = strcmp(r->methods[i], req->method) == 0;
        if (!any)
            return 0;
    }
    if (r->has_path) {
        m = strmatch_test(&r->path, req->path, req->path_len, false);
        if (m <= 0)
            return m;
    }
    for (size_t i = 0; i < r->n_query; i++) {
        m = kv_matches(&r->query[i], req->query, req->n_query, false);
        if (m <= 0)
            return m;
    }
    for (size_t i = 0; i < r->n_headers; i++) {
        m = kv_matches(&r->headers[i], req->headers, req->n_headers, true);
        if (m <= 0)
            return m;
    }
    return 1;
}

int rc_policy_match_request(const rc_policy_domain *d, const rc_policy_request *req,
                            const rc_policy_rule **ret_rule, size_t *ret_index, rc_error *err)
{
    for (size_t i = 0; i < d->n_rules; i++) {
        int m = rule_matches(&d->rules[i], req);
        if (m < 0)
            return rc_error_set(err, -m, "policy: matcher of rule %zu failed", i);
        if (m) {
            if (ret_rule)
                *ret_rule = &d->rules[i];
            if (ret_index)
                *ret_index = i;
            return 1;
        }
    }
    return 0;
}

/* ---- request-side helpers ---- */

static bool is_unreserved(unsigned char ch)
{
    return isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

static int hex_digit(unsigned char ch)
{
    if (isdigit(ch))
        return ch - '0';
    ch = (unsigned char)tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* The byte encoded by "%XY" at s[i], or -1 when the escape is cut short or not hex. */
static int percent_byte(const char *s, size_t len, size_t i)
{
    int h, l;
    if (i + 2 >= len)
        return -1;
    h = hex_digit((unsigned char)s[i + 1]);
    l = hex_digit((unsigned char)s[i + 2]);
    if (h < 0 || l < 0)
        return -1;
    return h * 16 + l;
}

static int path_bytes_check(const char *path, size_t len, rc_error *err)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)path[i];
        int v;
        if (ch <= 0x20 || ch >= 0x7f)
            return rc_error_set(err, RC_EINVAL, "path holds a space, control or non-ASCII byte");
        if (ch == '\\')
            return rc_error_set(err, RC_EINVAL, "path holds a backslash");
        if (ch == '?' || ch == '#')
            return rc_error_set(err, RC_EINVAL, "path holds '%c'", ch);
        if (ch != '%')
            continue;
        v = percent_byte(path, len, i);
        if (v < 0)
            return rc_error_set(err, RC_EINVAL, "path holds a bad percent escape");
        if (v == '/' || v == '\\' || v == 0)
            return rc_error_set(err, RC_EINVAL, "path holds an encoded slash, backslash or NUL");
        if (is_unreserved((unsigned char)v))
            return rc_error_set(err, RC_EINVAL,
                                "path holds a percent-encoded unreserved character (%%%c%c)",
                                path[i + 1], path[i + 2]);
        i += 2;
    }
    return 0;
}

int rc_policy_path_check(const char *path, size_t len, rc_error *err)
{
    size_t seg = 1;
    int r;

    if (len == 0 || path[0] != '/')
        return rc_error_set(err, RC_EINVAL, "path must start with /");
    r = path_bytes_check(path, len, err);
    if (r < 0)
        return r;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && path[i] != '/')
            continue;
        size_t n = i - seg;
        if (n == 0 && i < len)
            return rc_error_set(err, RC_EINVAL, "path holds an empty segment (//)");
        if ((n == 1 && path[seg] == '.') || (n == 2 && path[seg] == '.' && path[seg + 1] == '.'))
            return rc_error_set(err, RC_EINVAL, "path holds a dot segment");
        seg = i + 1;
    }
    return 0;
}

void rc_policy_query_free(rc_policy_query *q)
{
    free(q->store);
    q->store = NULL;
    q->n = 0;
}

/* Decode s[0..len) into out (room for len bytes); returns the decoded length or -1. */
static ssize_t percent_decode(const char *s, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v;
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        v = percent_byte(s, len, i);
        if (v <= 0)
            return -1;
        out[o++] = (char)v;
        i += 2;
    }
    return (ssize_t)o;
}

int rc_policy_query_parse(const char *q, size_t len, rc_policy_query *ret, rc_error *err)
{
    _cleanup_free_ char *store = malloc(len + 1);
    rc_policy_query out = {0};
    size_t pos = 0, o = 0;

    if (!store)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    while (pos < len) {
        const char *amp = memchr(q + pos, '&', len - pos);
        size_t end = amp ? (size_t)(amp - q) : len;
        const char *eq = memchr(q + pos, '=', end - pos);
        size_t klen = eq ? (size_t)(eq - (q + pos)) : end - pos;
        ssize_t kd, vd;

        if (end > pos) {
            if (out.n == RC_POLICY_QUERY_MAX)
                return rc_error_set(err, RC_ETOOBIG, "more than %u query parameters",
                                    RC_POLICY_QUERY_MAX);
            kd = percent_decode(q + pos, klen, store + o);
            if (kd < 0)
                return rc_error_set(err, RC_EINVAL, "query holds a bad percent escape");
            out.kv[out.n].key = store + o;
            out.kv[out.n].key_len = (size_t)kd;
            o += (size_t)kd;
            vd = eq ? percent_decode(eq + 1, end - (size_t)(eq + 1 - q), store + o) : 0;
            if (vd < 0)
                return rc_error_set(err, RC_EINVAL, "query holds a bad percent escape");
            out.kv[out.n].value = store + o;
            out.kv[out.n].value_len = (size_t)vd;
            o += (size_t)vd;
            out.n++;
        }
        pos = end + 1;
    }
    out.store = take_ptr(store);
    *ret = out;
    return 0;
}

/* ---- forwardURL ---- */

static int forward_url_fail(rc_policy_rule *rule, rc_error *err, int code, const char *why)
{
    free(rule->fwd_url);
    free(rule->fwd_host);
    free(rule->fwd_path);
    rule->fwd_url = rule->fwd_host = rule->fwd_path = NULL;
    return rc_error_set(err, code, "%s", why);
}

static int forward_url_port(const char *p, size_t n, unsigned *ret)
{
    unsigned v = 0;
    if (n == 0 || n > 5 || p[0] == '0')
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *ret = v;
    return 0;
}

int rc_policy_forward_url_parse(const char *url, rc_policy_rule *rule, rc_error *err)
{
    const char *auth, *rest, *host, *port = NULL, *hend;
    size_t n = strlen(url);
    rc_error perr_ = {0};

    if (n > RC_POLICY_URL_MAX)
        return rc_error_set(err, RC_EINVAL, "a forward URL is at most %u bytes", RC_POLICY_URL_MAX);
    if (strncmp(url, "https://", 8) != 0)
        return rc_error_set(err, RC_EINVAL, "a forward URL must start with https://");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f || url[i] == '"' ||
            url[i] == '\\')
            return rc_error_set(err, RC_EINVAL, "a forward URL holds a byte that is not allowed");
    if (strpbrk(url, "?#"))
        return rc_error_set(err, RC_EINVAL, "a forward URL has no query or fragment");
    auth = url + 8;
    rest = auth + strcspn(auth, "/");
    if (memchr(auth, '@', (size_t)(rest - auth)))
        return rc_error_set(err, RC_EINVAL, "a forward URL has no userinfo");
    host = auth;
    if (*auth == '[') {
        const char *close = memchr(auth, ']', (size_t)(rest - auth));
        if (!close)
            return rc_error_set(err, RC_EINVAL, "a forward URL has a bad IPv6 literal");
        host = auth + 1;
        hend = close;
        if (close + 1 < rest) {
            if (close[1] != ':')
                return rc_error_set(err, RC_EINVAL, "a forward URL has a bad IPv6 literal");
            port = close + 2;
        }
    } else {
        hend = memchr(auth, ':', (size_t)(rest - auth));
        if (hend)
            port = hend + 1;
        else
            hend = rest;
    }
    if (hend == host || (size_t)(hend - host) > RC_POLICY_HOST_MAX)
        return rc_error_set(err, RC_EINVAL, "a forward URL needs a host");
    rule->fwd_port = 443;
    if (port && forward_url_port(port, (size_t)(rest - port), &rule->fwd_port) < 0)
        return rc_error_set(err, RC_EINVAL, "a forward URL has a bad port");
    rule->fwd_url = strdup(url);
    rule->fwd_host = strndup(host, (size_t)(hend - host));
    rule->fwd_path = strdup(*rest ? rest : "/");
    if (!rule->fwd_url || !rule->fwd_host || !rule->fwd_path)
        return forward_url_fail(rule, err, RC_ENOMEM, "out of memory");
    lowercase(rule->fwd_host);
    rule->fwd_host_is_ip = is_ip_literal(rule->fwd_host);
    if (*auth == '[' && !strchr(rule->fwd_host, ':'))
        return forward_url_fail(rule, err, RC_EINVAL, "a forward URL has a bad IPv6 literal");
    if (!rule->fwd_host_is_ip && !rc_policy_hostname_valid(rule->fwd_host))
        return forward_url_fail(rule, err, RC_EINVAL, "a forward URL has a bad host name");
    if (rc_policy_path_check(rule->fwd_path, strlen(rule->fwd_path), &perr_) < 0)
        return forward_url_fail(rule, err, RC_EINVAL,
                                "a forward URL has a path that is not allowed");
    rule->action = RC_POLICY_ACTION_FORWARD;
    return 0;
}

bool rc_policy_has_forward(const rc_policy *p)
{
    for (size_t i = 0; i < rc_policy_domain_count(p); i++) {
        const rc_policy_domain *d = rc_policy_domain_at(p, i);
        for (size_t j = 0; j < d->n_rules; j++)
            if (d->rules[j].action == RC_POLICY_ACTION_FORWARD)
                return true;
    }
    return false;
}
