/* buf.c - bounded growable byte buffer (see buf.h for the contract). */
#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rc_buf_init(rc_buf *b, size_t max)
{
    *b = RC_BUF_INIT(max);
}

static int buf_grow(rc_buf *b, size_t need, rc_error *err)
{
    size_t cap;
    char *p;

    if (need > b->max || b->len > b->max - need)
        return rc_error_set(err, RC_ETOOBIG, "buffer limit of %zu bytes exceeded", b->max);
    if (b->len + need + 1 <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < b->len + need + 1)
        cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    p = realloc(b->data, cap);
    if (!p)
        return rc_error_set(err, RC_ENOMEM, "out of memory growing buffer to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return 0;
}

int rc_buf_reserve(rc_buf *b, size_t n, rc_error *err)
{
    return buf_grow(b, n, err);
}

int rc_buf_append(rc_buf *b, const void *p, size_t n, rc_error *err)
{
    int r = buf_grow(b, n, err);
    if (r < 0)
        return r;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int rc_buf_append_str(rc_buf *b, const char *s, rc_error *err)
{
    return rc_buf_append(b, s, strlen(s), err);
}

int rc_buf_putc(rc_buf *b, char c, rc_error *err)
{
    return rc_buf_append(b, &c, 1, err);
}

int rc_buf_vappendf(rc_buf *b, rc_error *err, const char *fmt, va_list ap)
{
    va_list ap2;
    int n, r;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return rc_error_set(err, RC_EINVAL, "bad format string");
    r = buf_grow(b, (size_t)n, err);
    if (r < 0)
        return r;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int rc_buf_appendf(rc_buf *b, rc_error *err, const char *fmt, ...)
{
    va_list ap;
    int r;
    va_start(ap, fmt);
    r = rc_buf_vappendf(b, err, fmt, ap);
    va_end(ap);
    return r;
}

void rc_buf_consume(rc_buf *b, size_t n)
{
    if (n >= b->len) {
        rc_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void rc_buf_reset(rc_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

const char *rc_buf_cstr(const rc_buf *b)
{
    return b->data ? b->data : "";
}

int rc_buf_steal(rc_buf *b, char **ret_data, size_t *ret_len, rc_error *err)
{
    char *d = b->data;
    if (!d) {
        d = calloc(1, 1);
        if (!d)
            return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    if (ret_len)
        *ret_len = b->len;
    *ret_data = d;
    b->data = NULL;
    b->len = b->cap = 0;
    return 0;
}

void rc_buf_free(rc_buf *b)
{
    if (b->data) {
        explicit_bzero(b->data, b->cap);
        free(b->data);
    }
    b->data = NULL;
    b->len = b->cap = 0;
}
