/* json.c - strict, capped JSON over cJSON (see json.h for the contract).
 *
 * Shape: rc_json_parse runs in four passes over input that is already size-capped:
 *   1. prescan: a small lexer over the raw bytes that enforces the caps and the strict lexical
 *      rules cJSON does not (depth, UTF-8, control bytes, "\u0000", literals, number grammar), so
 *      cJSON never sees deep or malformed text;
 *   2. cJSON builds the tree; we check that nothing but whitespace follows the value;
 *   3. a tree walk rejects duplicate keys and numbers that overflowed to infinity;
 *   4. a second walk attaches each number's source text (the k-th number token of the text is the
 *      k-th number node in document order) to the node's valuestring, which cJSON frees and
 *      otherwise ignores for numbers; rc_json_get_int64 uses it to read integers exactly.
 * The rest are thin typed wrappers over cJSON lookups and printing. */
#include "json.h"

#include "cleanup.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

const rc_json_limits rc_json_limits_default = {
    .max_size = RC_JSON_DEFAULT_MAX_SIZE,
    .max_depth = RC_JSON_DEFAULT_MAX_DEPTH,
    .allow_duplicates = false,
};

/* ---- UTF-8 ---------------------------------------------------------------------------------- */

static bool is_cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

/* Length of the well-formed UTF-8 sequence at s (n bytes available), or 0 if there is none. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;

    if (c < 0x80)
        return 1;
    if (c < 0xC2 || c > 0xF4)
        return 0; /* continuation byte, overlong 2-byte lead, or beyond U+10FFFF */
    if (c < 0xE0)
        return n >= 2 && is_cont(s[1]) ? 2 : 0;
    if (c == 0xE0)
        lo = 0xA0; /* overlong */
    else if (c == 0xED)
        hi = 0x9F; /* UTF-16 surrogates */
    else if (c == 0xF0)
        lo = 0x90; /* overlong */
    else if (c == 0xF4)
        hi = 0x8F; /* beyond U+10FFFF */
    if (n < 2 || s[1] < lo || s[1] > hi)
        return 0;
    if (c < 0xF0)
        return n >= 3 && is_cont(s[2]) ? 3 : 0;
    return n >= 4 && is_cont(s[2]) && is_cont(s[3]) ? 4 : 0;
}

bool rc_json_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, k;

    while (i < len) {
        k = utf8_seq_len(u + i, len - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* ---- pass 1: prescan ------------------------------------------------------------------------ */

typedef struct scanner {
    const unsigned char *s;
    size_t len;
    size_t pos;
    unsigned depth;
    unsigned max_depth;
} scanner;

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_bare_char(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '+' || c == '.';
}

static size_t skip_digits(const unsigned char *s, size_t i, size_t n)
{
    while (i < n && is_digit(s[i]))
        i++;
    return i;
}

/* RFC 8259: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static bool number_valid(const unsigned char *s, size_t n)
{
    size_t i = 0, start;

    if (i < n && s[i] == '-')
        i++;
    if (i >= n || !is_digit(s[i]))
        return false;
    i = s[i] == '0' ? i + 1 : skip_digits(s, i, n);
    if (i < n && s[i] == '.') {
        start = ++i;
        i = skip_digits(s, i, n);
        if (i == start)
            return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        start = i;
        i = skip_digits(s, i, n);
        if (i == start)
            return false;
    }
    return i == n;
}

static bool bare_token_valid(const unsigned char *s, size_t n)
{
    if ((n == 4 && memcmp(s, "true", 4) == 0) || (n == 4 && memcmp(s, "null", 4) == 0) ||
        (n == 5 && memcmp(s, "false", 5) == 0))
        return true;
    return number_valid(s, n);
}

static int scan_bare(scanner *sc, rc_error *err)
{
    size_t start = sc->pos;

    while (sc->pos < sc->len && is_bare_char(sc->s[sc->pos]))
        sc->pos++;
    if (!bare_token_valid(sc->s + start, sc->pos - start))
        return rc_error_set(err, RC_EPARSE, "invalid JSON literal or number at offset %zu", start);
    return 0;
}

static int scan_escape(scanner *sc, rc_error *err)
{
    const unsigned char *e = sc->s + sc->pos + 1; /* the byte after the backslash */

    if (sc->pos + 1 >= sc->len || !strchr("\"\\/bfnrtu", *e) || *e == '\0')
        return rc_error_set(err, RC_EPARSE, "invalid JSON escape at offset %zu", sc->pos);
    if (*e == 'u' && sc->len - sc->pos >= 6 && memcmp(e + 1, "0000", 4) == 0)
        return rc_error_set(err, RC_EPARSE, "JSON string holds \\u0000 at offset %zu", sc->pos);
    sc->pos += 2; /* the hex digits of \uXXXX are plain ASCII, checked by cJSON */
    return 0;
}

static int scan_string(scanner *sc, rc_error *err)
{
    size_t start = sc->pos++, k;
    unsigned char c;
    int r;

    while (sc->pos < sc->len) {
        c = sc->s[sc->pos];
        if (c == '"') {
            sc->pos++;
            return 0;
        }
        if (c < 0x20)
            return rc_error_set(err, RC_EPARSE, "control byte in JSON string at offset %zu",
                                sc->pos);
        if (c == '\\') {
            r = scan_escape(sc, err);
            if (r < 0)
                return r;
            continue;
        }
        k = utf8_seq_len(sc->s + sc->pos, sc->len - sc->pos);
        if (k == 0)
            return rc_error_set(err, RC_EPARSE, "invalid UTF-8 in JSON string at offset %zu",
                                sc->pos);
        sc->pos += k;
    }
    return rc_error_set(err, RC_EPARSE, "unterminated JSON string at offset %zu", start);
}

static int scan_open(scanner *sc, rc_error *err)
{
    if (++sc->depth > sc->max_depth)
        return rc_error_set(err, RC_ETOOBIG, "JSON nesting deeper than %u", sc->max_depth);
    sc->pos++;
    return 0;
}

static int prescan(const char *text, size_t len, unsigned max_depth, rc_error *err)
{
    scanner sc = {.s = (const unsigned char *)text, .len = len, .max_depth = max_depth};
    unsigned char c;
    int r;

    while (sc.pos < sc.len) {
        c = sc.s[sc.pos];
        if (c == '"')
            r = scan_string(&sc, err);
        else if (c == '{' || c == '[')
            r = scan_open(&sc, err);
        else if (is_bare_char(c))
            r = scan_bare(&sc, err);
        else if (strchr(" \t\n\r}]:,", c) && c != '\0') {
            if ((c == '}' || c == ']') && sc.depth > 0)
                sc.depth--;
            sc.pos++;
            r = 0;
        } else
            r = rc_error_set(err, RC_EPARSE, "unexpected byte in JSON at offset %zu", sc.pos);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- pass 3: duplicate keys, non-finite numbers --------------------------------------------- */

#define DUP_PAIRWISE_MAX 16

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool keys_unique_sorted(const cJSON *obj, size_t n, bool *ret_unique)
{
    _cleanup_free_ const char **keys = malloc(n * sizeof *keys);
    const cJSON *c;
    size_t i = 0;

    if (!keys)
        return false;
    for (c = obj->child; c; c = c->next)
        keys[i++] = c->string;
    qsort(keys, n, sizeof *keys, key_cmp);
    *ret_unique = true;
    for (i = 1; i < n; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            *ret_unique = false;
    return true;
}

static int keys_check(const cJSON *obj, rc_error *err)
{
    const cJSON *a, *b;
    size_t n = 0;
    bool unique = true;

    for (a = obj->child; a; a = a->next)
        n++;
    if (n > DUP_PAIRWISE_MAX) {
        if (!keys_unique_sorted(obj, n, &unique))
            return rc_error_set(err, RC_ENOMEM, "out of memory checking JSON keys");
    } else {
        for (a = obj->child; a && unique; a = a->next)
            for (b = a->next; b && unique; b = b->next)
                unique = strcmp(a->string, b->string) != 0;
    }
    if (!unique)
        return rc_error_set(err, RC_EPARSE, "duplicate key in JSON object");
    return 0;
}

static int tree_check(const cJSON *node, bool allow_duplicates, rc_error *err)
{
    int r;

    for (; node; node = node->next) {
        if (cJSON_IsNumber(node) && !isfinite(node->valuedouble))
            return rc_error_set(err, RC_EPARSE, "JSON number out of range");
        if (cJSON_IsObject(node) && !allow_duplicates) {
            r = keys_check(node, err);
            if (r < 0)
                return r;
        }
        r = tree_check(node->child, allow_duplicates, err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- pass 4: number source text ------------------------------------------------------------- */

typedef struct number_cursor {
    const char *s;
    size_t len;
    size_t pos;
} number_cursor;

/* Next number token in already prescanned text. */
static bool number_next(number_cursor *c, const char **ret_tok, size_t *ret_len)
{
    size_t start;

    while (c->pos < c->len) {
        char ch = c->s[c->pos];
        if (ch == '"') {
            for (c->pos++; c->pos < c->len && c->s[c->pos] != '"'; c->pos++)
                if (c->s[c->pos] == '\\')
                    c->pos++;
            c->pos++;
        } else if (ch == '-' || is_digit((unsigned char)ch)) {
            start = c->pos;
            while (c->pos < c->len && is_bare_char((unsigned char)c->s[c->pos]))
                c->pos++;
            *ret_tok = c->s + start;
            *ret_len = c->pos - start;
            return true;
        } else {
            c->pos++;
        }
    }
    return false;
}

static int numbers_attach(cJSON *node, number_cursor *cur, rc_error *err)
{
    const char *tok;
    size_t n;
    int r;

    for (; node; node = node->next) {
        if (cJSON_IsNumber(node)) {
            if (!number_next(cur, &tok, &n))
                return rc_error_set(err, RC_EPARSE, "JSON number text not found");
            node->valuestring = cJSON_malloc(n + 1);
            if (!node->valuestring)
                return rc_error_set(err, RC_ENOMEM, "out of memory keeping JSON number text");
            memcpy(node->valuestring, tok, n);
            node->valuestring[n] = '\0';
        }
        r = numbers_attach(node->child, cur, err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- parse ---------------------------------------------------------------------------------- */

/* cJSON's parse functions record the last error position in a global; parsing from several
 * threads at once (the runner's heartbeat and stream threads) would race on it. */
static pthread_mutex_t cjson_parse_lock = PTHREAD_MUTEX_INITIALIZER;

static cJSON *cjson_parse_locked(const char *text, size_t len, const char **ret_end)
{
    cJSON *root;

    pthread_mutex_lock(&cjson_parse_lock);
    root = cJSON_ParseWithLengthOpts(text, len, ret_end, false);
    pthread_mutex_unlock(&cjson_parse_lock);
    return root;
}

static int trailing_check(const char *text, size_t len, const char *end, rc_error *err)
{
    size_t i = (size_t)(end - text);

    while (i < len && strchr(" \t\n\r", text[i]) && text[i] != '\0')
        i++;
    if (i < len)
        return rc_error_set(err, RC_EPARSE, "trailing data after JSON value at offset %zu", i);
    return 0;
}

int rc_json_parse(const char *text, size_t len, const rc_json_limits *lim, cJSON **ret,
                  rc_error *err)
{
    _cleanup_json_ cJSON *root = NULL;
    number_cursor cur = {.s = text, .len = len};
    const char *end = NULL;
    int r;

    if (!lim)
        lim = &rc_json_limits_default;
    if (lim->max_depth > RC_JSON_MAX_DEPTH_LIMIT || (!text && len > 0))
        return rc_error_set(err, RC_EINVAL, "bad JSON parse arguments");
    if (len > lim->max_size)
        return rc_error_set(err, RC_ETOOBIG, "JSON text exceeds %zu bytes", lim->max_size);
    r = prescan(text, len, lim->max_depth, err);
    if (r < 0)
        return r;
    root = cjson_parse_locked(text, len, &end);
    if (!root)
        return rc_error_set(err, RC_EPARSE, "invalid JSON at offset %zu",
                            end && end >= text ? (size_t)(end - text) : (size_t)0);
    r = trailing_check(text, len, end, err);
    if (r < 0)
        return r;
    r = tree_check(root, lim->allow_duplicates, err);
    if (r < 0)
        return r;
    r = numbers_attach(root, &cur, err);
    if (r < 0)
        return r;
    *ret = take_ptr(root);
    return 0;
}

/* ---- getters -------------------------------------------------------------------------------- */

/* 1 with *ret_item set when present; 0 when missing (or null, for optional lookups); negative
 * when obj is not an object or a required key is missing. */
static int member(const cJSON *obj, const char *key, bool optional, const cJSON **ret_item,
                  rc_error *err)
{
    const cJSON *item;

    if (!key)
        return rc_error_set(err, RC_EINVAL, "no JSON key given");
    if (!cJSON_IsObject(obj))
        return rc_error_set(err, RC_EINVAL, "JSON value holding \"%s\" is not an object", key);
    item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item || (optional && cJSON_IsNull(item))) {
        if (optional)
            return 0;
        return rc_error_set(err, RC_ENOTFOUND, "JSON key \"%s\" is missing", key);
    }
    *ret_item = item;
    return 1;
}

static int type_error(const char *key, const char *want, rc_error *err)
{
    return rc_error_set(err, RC_EINVAL, "JSON key \"%s\" is not %s", key, want);
}

static int get_string(const cJSON *obj, const char *key, bool optional, const char **ret,
                      rc_error *err)
{
    const cJSON *item = NULL;
    int r = member(obj, key, optional, &item, err);

    if (r <= 0)
        return r;
    if (!cJSON_IsString(item) || !item->valuestring)
        return type_error(key, "a string", err);
    *ret = item->valuestring;
    return 1;
}

int rc_json_get_string(const cJSON *obj, const char *key, const char **ret, rc_error *err)
{
    int r = get_string(obj, key, false, ret, err);
    return r < 0 ? r : 0;
}

int rc_json_get_string_opt(const cJSON *obj, const char *key, const char **ret, rc_error *err)
{
    return get_string(obj, key, true, ret, err);
}

/* The node's source text, if it still describes the node's value (a caller may have changed the
 * number since parsing; cJSON_SetNumberValue leaves valuestring alone). */
static const char *number_text(const cJSON *item)
{
    char *end = NULL;
    double d;

    if (!item->valuestring)
        return NULL;
    d = strtod(item->valuestring, &end);
    if (end == item->valuestring || *end != '\0' || d != item->valuedouble)
        return NULL;
    return item->valuestring;
}

/* A JSON number's text split into its digit sequence S (integer then fraction digits, without
 * leading zeros) and a decimal scale k, so that the value is S * 10^k. */
typedef struct decimal {
    bool negative;
    const char *int_digits, *frac_digits;
    size_t int_len, frac_len;
    long exponent; /* clamped to +-RC_DECIMAL_EXP_CLAMP */
} decimal;

#define RC_DECIMAL_EXP_CLAMP 100000L

static void decimal_split(const char *t, decimal *d)
{
    *d = (decimal){0};
    if (*t == '-') {
        d->negative = true;
        t++;
    }
    d->int_digits = t;
    while (is_digit((unsigned char)*t))
        t++;
    d->int_len = (size_t)(t - d->int_digits);
    d->frac_digits = t;
    if (*t == '.') {
        d->frac_digits = ++t;
        while (is_digit((unsigned char)*t))
            t++;
        d->frac_len = (size_t)(t - d->frac_digits);
    }
    if (*t == 'e' || *t == 'E') {
        bool neg = *++t == '-';
        if (*t == '-' || *t == '+')
            t++;
        for (; is_digit((unsigned char)*t); t++)
            if (d->exponent < RC_DECIMAL_EXP_CLAMP)
                d->exponent = d->exponent * 10 + (*t - '0');
        if (neg)
            d->exponent = -d->exponent;
    }
}

static char decimal_digit(const decimal *d, size_t i)
{
    return i < d->int_len ? d->int_digits[i] : d->frac_digits[i - d->int_len];
}

/* Exact conversion of a (grammar-valid) JSON number text: 0 and *ret set, -1 not an integer,
 * -2 outside int64. */
static int decimal_to_int64(const char *text, int64_t *ret)
{
    decimal d;
    size_t first = 0, last, i;
    long scale;
    uint64_t v = 0, limit;

    decimal_split(text, &d);
    last = d.int_len + d.frac_len; /* S is digits [first, last) */
    while (first < last && decimal_digit(&d, first) == '0')
        first++;
    scale = d.exponent - (long)d.frac_len;
    while (last > first && decimal_digit(&d, last - 1) == '0') {
        last--;
        scale++;
    }
    if (first == last) {
        *ret = 0;
        return 0;
    }
    if (scale < 0)
        return -1;
    if ((long)(last - first) + scale > 19)
        return -2;
    limit = d.negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (i = first; i < last + (size_t)scale; i++) {
        unsigned digit = i < last ? (unsigned)(decimal_digit(&d, i) - '0') : 0;
        if (v > (limit - digit) / 10)
            return -2;
        v = v * 10 + digit;
    }
    *ret = d.negative ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* 0 and *ret set, -1 not an integer, -2 out of range. Exact from the source text when there is
 * one; a number built in memory is a double and is accepted within +-2^53. */
static int number_to_int64(const cJSON *item, int64_t *ret)
{
    const char *text = number_text(item);
    double d = item->valuedouble;

    if (text)
        return decimal_to_int64(text, ret);
    if (!isfinite(d) || d != trunc(d))
        return -1;
    if (d > (double)RC_JSON_INT_EXACT_MAX || d < -(double)RC_JSON_INT_EXACT_MAX)
        return -2;
    *ret = (int64_t)d;
    return 0;
}

static int get_int64(const cJSON *obj, const char *key, bool optional, int64_t *ret, rc_error *err)
{
    const cJSON *item = NULL;
    int64_t v;
    int r = member(obj, key, optional, &item, err);

    if (r <= 0)
        return r;
    if (!cJSON_IsNumber(item))
        return type_error(key, "a number", err);
    r = number_to_int64(item, &v);
    if (r == -1)
        return type_error(key, "an integer", err);
    if (r == -2)
        return rc_error_set(err, RC_EINVAL, "JSON key \"%s\" is out of the integer range", key);
    *ret = v;
    return 1;
}

int rc_json_get_int64(const cJSON *obj, const char *key, int64_t *ret, rc_error *err)
{
    int r = get_int64(obj, key, false, ret, err);
    return r < 0 ? r : 0;
}

int rc_json_get_int64_opt(const cJSON *obj, const char *key, int64_t *ret, rc_error *err)
{
    return get_int64(obj, key, true, ret, err);
}

static int get_bool(const cJSON *obj, const char *key, bool optional, bool *ret, rc_error *err)
{
    const cJSON *item = NULL;
    int r = member(obj, key, optional, &item, err);

    if (r <= 0)
        return r;
    if (!cJSON_IsBool(item))
        return type_error(key, "a boolean", err);
    *ret = cJSON_IsTrue(item);
    return 1;
}

int rc_json_get_bool(const cJSON *obj, const char *key, bool *ret, rc_error *err)
{
    int r = get_bool(obj, key, false, ret, err);
    return r < 0 ? r : 0;
}

int rc_json_get_bool_opt(const cJSON *obj, const char *key, bool *ret, rc_error *err)
{
    return get_bool(obj, key, true, ret, err);
}

static int get_container(const cJSON *obj, const char *key, bool optional, bool want_array,
                         const cJSON **ret, rc_error *err)
{
    const cJSON *item = NULL;
    int r = member(obj, key, optional, &item, err);

    if (r <= 0)
        return r;
    if (want_array ? !cJSON_IsArray(item) : !cJSON_IsObject(item))
        return type_error(key, want_array ? "an array" : "an object", err);
    *ret = item;
    return 1;
}

int rc_json_get_object(const cJSON *obj, const char *key, const cJSON **ret, rc_error *err)
{
    int r = get_container(obj, key, false, false, ret, err);
    return r < 0 ? r : 0;
}

int rc_json_get_object_opt(const cJSON *obj, const char *key, const cJSON **ret, rc_error *err)
{
    return get_container(obj, key, true, false, ret, err);
}

int rc_json_get_array(const cJSON *obj, const char *key, const cJSON **ret, rc_error *err)
{
    int r = get_container(obj, key, false, true, ret, err);
    return r < 0 ? r : 0;
}

int rc_json_get_array_opt(const cJSON *obj, const char *key, const cJSON **ret, rc_error *err)
{
    return get_container(obj, key, true, true, ret, err);
}

/* ---- printing ------------------------------------------------------------------------------- */

static void cjson_freep(char **p)
{
    if (*p)
        cJSON_free(*p);
}

int rc_json_print(const cJSON *item, rc_buf *buf, rc_error *err)
{
    __attribute__((cleanup(cjson_freep))) char *text = NULL;
    size_t n;

    if (!item)
        return rc_error_set(err, RC_EINVAL, "no JSON value to print");
    text = cJSON_PrintUnformatted(item);
    if (!text)
        return rc_error_set(err, RC_ENOMEM, "out of memory printing JSON");
    n = strlen(text);
    if (!rc_json_utf8_valid(text, n))
        return rc_error_set(err, RC_EINVAL, "JSON string holds invalid UTF-8");
    return rc_buf_append(buf, text, n, err);
}

/* ---- the standard error body (protocol 2.6.1) ----------------------------------------------- */

int rc_json_error_body_build(const char *type, const char *message, const char *error_code,
                             const char *request_id, cJSON **ret, rc_error *err)
{
    _cleanup_json_ cJSON *root = NULL;
    cJSON *error, *details;
    bool ok;

    if (!type || !message)
        return rc_error_set(err, RC_EINVAL, "error body needs a type and a message");
    root = cJSON_CreateObject();
    ok = root && cJSON_AddStringToObject(root, "type", "error");
    error = ok ? cJSON_AddObjectToObject(root, "error") : NULL;
    ok = error && cJSON_AddStringToObject(error, "type", type) &&
         cJSON_AddStringToObject(error, "message", message);
    if (ok && error_code) {
        details = cJSON_AddObjectToObject(error, "details");
        ok = details && cJSON_AddStringToObject(details, "error_code", error_code);
    }
    if (ok && request_id)
        ok = cJSON_AddStringToObject(root, "request_id", request_id) != NULL;
    if (!ok)
        return rc_error_set(err, RC_ENOMEM, "out of memory building error body");
    *ret = take_ptr(root);
    return 0;
}

int rc_json_error_body_write(rc_buf *buf, const char *type, const char *message,
                             const char *error_code, const char *request_id, rc_error *err)
{
    _cleanup_json_ cJSON *body = NULL;
    int r = rc_json_error_body_build(type, message, error_code, request_id, &body, err);

    if (r < 0)
        return r;
    return rc_json_print(body, buf, err);
}

/* Copy a string member into a fixed field, cut at a UTF-8 boundary; "" when not a string. */
static void field_copy(char *dst, size_t size, const cJSON *item)
{
    const char *s = cJSON_IsString(item) ? item->valuestring : NULL;
    size_t n;

    dst[0] = '\0';
    if (!s)
        return;
    n = strnlen(s, size - 1);
    while (n > 0 && s[n] != '\0' && is_cont((unsigned char)s[n]))
        n--;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

int rc_json_error_body_parse(const char *text, size_t len, rc_json_error_info *ret, rc_error *err)
{
    _cleanup_json_ cJSON *root = NULL;
    const cJSON *error, *details;
    int r = rc_json_parse(text, len, NULL, &root, err);

    if (r < 0)
        return r;
    error = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "error") : NULL;
    if (!cJSON_IsObject(error))
        return rc_error_set(err, RC_EPARSE, "error body has no \"error\" object");
    details = cJSON_GetObjectItemCaseSensitive(error, "details");
    field_copy(ret->type, sizeof ret->type, cJSON_GetObjectItemCaseSensitive(error, "type"));
    field_copy(ret->message, sizeof ret->message,
               cJSON_GetObjectItemCaseSensitive(error, "message"));
    field_copy(ret->error_code, sizeof ret->error_code,
               cJSON_IsObject(details) ? cJSON_GetObjectItemCaseSensitive(details, "error_code")
                                       : NULL);
    field_copy(ret->request_id, sizeof ret->request_id,
               cJSON_GetObjectItemCaseSensitive(root, "request_id"));
    return 0;
}
