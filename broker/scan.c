/* scan.c - needles for injected credentials and the search for them in responses (see scan.h).
 *
 * The needle set is built once per request that carried an injected value (a handful of values,
 * a dozen variants each) and searched with memmem over each window of response bytes: responses
 * that carry credentials are API responses, and the search is linear in the window per needle. */
#include "scan.h"

#include "base64.h"
#include "cleanup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_needle(rc_scan *s, const char *p, size_t n, rc_error *err)
{
    char *copy;

    if (n < RC_SCAN_MIN_LEN)
        return 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->lens[i] == n && memcmp(s->needles[i], p, n) == 0)
            return 0; /* duplicates (a value with nothing to encode) */
    if (s->n == RC_SCAN_NEEDLES_MAX)
        return rc_error_set(err, RC_ETOOBIG, "scan: too many needles");
    copy = malloc(n + 1);
    if (!copy)
        return rc_error_set(err, RC_ENOMEM, "scan: out of memory");
    memcpy(copy, p, n);
    copy[n] = '\0';
    s->needles[s->n] = copy;
    s->lens[s->n++] = n;
    if (n > s->max_len)
        s->max_len = n;
    return 0;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Percent-encode v (hex in the given case; space as "+" when plus). */
static int add_percent(rc_scan *s, const char *v, size_t n, bool upper, bool plus, rc_error *err)
{
    _cleanup_free_ char *out = malloc(n * 3 + 1);
    const char *hex = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    size_t o = 0;

    if (!out)
        return rc_error_set(err, RC_ENOMEM, "scan: out of memory");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (unreserved(c)) {
            out[o++] = (char)c;
        } else if (c == ' ' && plus) {
            out[o++] = '+';
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    return add_needle(s, out, o, err);
}

static int add_json_escaped(rc_scan *s, const char *v, size_t n, rc_error *err)
{
    _cleanup_free_ char *out = malloc(n * 2 + 1);
    size_t o = 0;

    if (!out)
        return rc_error_set(err, RC_ENOMEM, "scan: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '/' || v[i] == '"' || v[i] == '\\')
            out[o++] = '\\';
        out[o++] = v[i];
    }
    return add_needle(s, out, o, err);
}

/* The base64 characters that depend only on v's bytes when v starts at byte offset k (0-2) of
 * the encoded data. */
static int add_base64(rc_scan *s, const char *v, size_t n, size_t k, unsigned flags, rc_error *err)
{
    size_t total = k + n, skip = k == 0 ? 0 : k == 1 ? 2 : 3;
    size_t end = total / 3 * 4 + (total % 3 == 1 ? 1 : total % 3 == 2 ? 2 : 0);
    _cleanup_free_ unsigned char *in = calloc(total, 1);
    _cleanup_free_ char *out = NULL;
    int len;

    if (!in)
        return rc_error_set(err, RC_ENOMEM, "scan: out of memory");
    memcpy(in + k, v, n);
    len = rc_base64_encode_alloc(in, total, flags | RC_BASE64_NOPAD, &out, err);
    if (len < 0)
        return len;
    if (end <= skip || end > (size_t)len)
        return 0;
    return add_needle(s, out + skip, end - skip, err);
}

static int add_value(rc_scan *s, const char *v, size_t n, rc_error *err)
{
    int r = add_needle(s, v, n, err);
    for (int i = 0; r >= 0 && i < 4; i++)
        r = add_percent(s, v, n, i & 1, i & 2, err);
    if (r >= 0)
        r = add_json_escaped(s, v, n, err);
    for (size_t k = 0; r >= 0 && k < 3; k++) {
        r = add_base64(s, v, n, k, RC_BASE64_STD, err);
        if (r >= 0)
            r = add_base64(s, v, n, k, RC_BASE64_URL, err);
    }
    return r;
}

int rc_scan_init(rc_scan *s, const char *const *values, size_t n, rc_error *err)
{
    int r = 0;

    *s = (rc_scan){0};
    s->needles = calloc(RC_SCAN_NEEDLES_MAX, sizeof *s->needles);
    s->lens = calloc(RC_SCAN_NEEDLES_MAX, sizeof *s->lens);
    if (!s->needles || !s->lens) {
        rc_scan_free(s);
        return rc_error_set(err, RC_ENOMEM, "scan: out of memory");
    }
    for (size_t i = 0; r >= 0 && i < n; i++) {
        const char *v = values[i], *sp = strchr(v, ' ');
        r = add_value(s, v, strlen(v), err);
        /* "Bearer X", "Basic X", "token X": X alone is the credential too */
        if (r >= 0 && sp && sp > v && sp[1])
            r = add_value(s, sp + 1, strlen(sp + 1), err);
    }
    if (r < 0)
        rc_scan_free(s);
    return r < 0 ? r : 0;
}

void rc_scan_free(rc_scan *s)
{
    if (s->needles)
        for (size_t i = 0; i < s->n; i++) {
            explicit_bzero(s->needles[i], s->lens[i]);
            free(s->needles[i]);
        }
    free(s->needles);
    free(s->lens);
    *s = (rc_scan){0};
}

bool rc_scan_find(const rc_scan *s, const char *data, size_t len)
{
    for (size_t i = 0; i < s->n; i++)
        if (len >= s->lens[i] && memmem(data, len, s->needles[i], s->lens[i]))
            return true;
    return false;
}

size_t rc_scan_holdback(const rc_scan *s)
{
    return s->max_len ? s->max_len - 1 : 0;
}
