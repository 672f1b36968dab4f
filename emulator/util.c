/* util.c - small helpers of the emulator: clocks, RFC 3339 stamps, random ids, strict JSON
 * parsing of request bodies, metadata maps.
 *
 * Kept apart from the state code so that the parsing rules every endpoint shares (UTF-8, depth
 * cap, no trailing bytes, strict integers) live in one place. */
#include "em.h"

#include "cleanup.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int64_t rc_emutil_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t rc_emutil_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rc_emutil_rfc3339(int64_t us, char out[40])
{
    time_t sec = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(us % 1000000));
}

static int parse_digits(const char **p, int n, int *ret)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return -RC_EINVAL;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *ret = v;
    return 0;
}

static int expect_char(const char **p, char c)
{
    if (**p != c)
        return -RC_EINVAL;
    (*p)++;
    return 0;
}

/* Accepts YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM); 't'/'z' and ' ' as separator too. */
int rc_emutil_parse_rfc3339(const char *s, int64_t *ret_us)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, se, frac_us = 0, off = 0;
    const char *p = s;

    if (parse_digits(&p, 4, &y) || expect_char(&p, '-') || parse_digits(&p, 2, &mo) ||
        expect_char(&p, '-') || parse_digits(&p, 2, &d))
        return -RC_EINVAL;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -RC_EINVAL;
    p++;
    if (parse_digits(&p, 2, &h) || expect_char(&p, ':') || parse_digits(&p, 2, &mi) ||
        expect_char(&p, ':') || parse_digits(&p, 2, &se))
        return -RC_EINVAL;
    if (*p == '.') {
        int scale = 100000, n = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (n++ < 6) {
                frac_us += (*p - '0') * scale;
                scale /= 10;
            }
            p++;
        }
        if (n == 0)
            return -RC_EINVAL;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (parse_digits(&p, 2, &oh) || expect_char(&p, ':') || parse_digits(&p, 2, &om))
            return -RC_EINVAL;
        off = sign * (oh * 3600 + om * 60);
    } else {
        return -RC_EINVAL;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return -RC_EINVAL;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    *ret_us = ((int64_t)timegm(&tm) - off) * 1000000 + frac_us;
    return 0;
}

int rc_emutil_random_base62(char *out, size_t n, rc_error *err)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char raw[64];
    size_t have = 0, pos = sizeof(raw);

    while (have < n) {
        if (pos == sizeof(raw)) {
            if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
                return rc_error_sys(err, RC_EIO, "getrandom");
            pos = 0;
        }
        unsigned char b = raw[pos++];
        if (b >= 248) /* 248 = 4 * 62: reject to keep the distribution uniform */
            continue;
        out[have++] = alphabet[b % 62];
    }
    out[n] = '\0';
    return 0;
}

int rc_emutil_random_id(const char *prefix, char *out, size_t outsz, rc_error *err)
{
    size_t pl = strlen(prefix);
    if (pl + 24 + 1 > outsz)
        return rc_error_set(err, RC_ETOOBIG, "id buffer too small");
    memcpy(out, prefix, pl);
    return rc_emutil_random_base62(out + pl, 24, err);
}

uint64_t rc_emutil_rng_next(uint64_t *state)
{
    /* xorshift64*: repeatable fault choices from the faults' "seed". */
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

double rc_emutil_rng_unit(uint64_t *state)
{
    return (double)(rc_emutil_rng_next(state) >> 11) / (double)(1ull << 53);
}

cJSON *rc_emutil_ts(int64_t us)
{
    char buf[40];
    if (!us)
        return cJSON_CreateNull();
    rc_emutil_rfc3339(us, buf);
    return cJSON_CreateString(buf);
}

bool rc_emutil_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

bool rc_emutil_json_depth_ok(const char *s, size_t n, int max)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max)
                return false;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return true;
}

int rc_emutil_parse_json(const char *s, size_t n, cJSON **ret, rc_error *err)
{
    const char *end = NULL;
    cJSON *j;

    if (!rc_emutil_utf8_valid(s, n))
        return rc_error_set(err, RC_EPARSE, "request body is not valid UTF-8");
    if (!rc_emutil_json_depth_ok(s, n, RC_EM_JSON_DEPTH_MAX))
        return rc_error_set(err, RC_EPARSE, "request body nests deeper than %d levels",
                            RC_EM_JSON_DEPTH_MAX);
    if (memchr(s, '\0', n))
        return rc_error_set(err, RC_EPARSE, "request body contains a NUL byte");
    j = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (!j)
        return rc_error_set(err, RC_EPARSE, "request body is not valid JSON");
    while (end && end < s + n && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (!end || end != s + n) {
        cJSON_Delete(j);
        return rc_error_set(err, RC_EPARSE, "request body has data after the JSON value");
    }
    *ret = j;
    return 0;
}

char *rc_emutil_print(const cJSON *j)
{
    return cJSON_PrintUnformatted(j);
}

const char *rc_emutil_jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int rc_emutil_parse_long(const char *s, long *ret)
{
    char *end;
    long v;
    if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9')))
        return -RC_EINVAL;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || end == s)
        return -RC_EINVAL;
    *ret = v;
    return 0;
}

bool rc_emutil_const_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return false;
    return CRYPTO_memcmp(a, b, la) == 0;
}

int rc_emutil_check_metadata(const cJSON *m, bool patch, rc_error *err)
{
    const cJSON *it;
    int n = 0;
    if (!cJSON_IsObject(m))
        return rc_error_set(err, RC_EINVAL, "metadata: must be an object");
    cJSON_ArrayForEach(it, m)
    {
        if (++n > 16)
            return rc_error_set(err, RC_EINVAL, "metadata: at most 16 keys are allowed");
        if (!it->string || !*it->string || strlen(it->string) > 64)
            return rc_error_set(err, RC_EINVAL, "metadata: keys must be 1 to 64 characters long");
        if (patch && cJSON_IsNull(it))
            continue;
        if (!cJSON_IsString(it))
            return rc_error_set(err, RC_EINVAL, "metadata.%s: must be a string", it->string);
        if (strlen(it->valuestring) > 512)
            return rc_error_set(err, RC_EINVAL,
                                "metadata.%s: values must be at most 512 characters", it->string);
    }
    return 0;
}

void rc_emutil_merge_metadata(cJSON *dst, const cJSON *patch)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, patch)
    {
        cJSON_DeleteItemFromObjectCaseSensitive(dst, it->string);
        if (cJSON_IsString(it))
            cJSON_AddItemToObject(dst, it->string, cJSON_CreateString(it->valuestring));
    }
}
