/* buf.h - bounded growable byte buffer.
 *
 * Every buffer that holds outside input is an rc_buf with a mandatory maximum: appends that would
 * exceed it fail with -RC_ETOOBIG and leave the buffer unchanged. The data is always followed by a
 * NUL byte (not counted in len), so text can be handed to C string functions, but the buffer is
 * binary-safe. Declare with `_cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(max);`. */
#ifndef RUNCELL_BUF_H
#define RUNCELL_BUF_H

#include "err.h"

#include <stdarg.h>
#include <stddef.h>

typedef struct rc_buf {
    char *data; /* NULL until the first append */
    size_t len; /* bytes in use, excluding the trailing NUL */
    size_t cap; /* bytes allocated, including room for the NUL */
    size_t max; /* maximum len; 0 makes every append fail */
} rc_buf;

#define RC_BUF_INIT(maxlen) ((rc_buf){.data = NULL, .len = 0, .cap = 0, .max = (maxlen)})

void rc_buf_init(rc_buf *b, size_t max);
int rc_buf_append(rc_buf *b, const void *p, size_t n, rc_error *err);
int rc_buf_append_str(rc_buf *b, const char *s, rc_error *err);
int rc_buf_putc(rc_buf *b, char c, rc_error *err);
int rc_buf_appendf(rc_buf *b, rc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int rc_buf_vappendf(rc_buf *b, rc_error *err, const char *fmt, va_list ap);
/* Make room for n more bytes without changing len (for read() into data + len). */
int rc_buf_reserve(rc_buf *b, size_t n, rc_error *err);
/* Drop the first n bytes (n > len drops everything). */
void rc_buf_consume(rc_buf *b, size_t n);
/* Set len to 0, keeping the allocation. */
void rc_buf_reset(rc_buf *b);
/* Text view: never NULL, always NUL-terminated. */
const char *rc_buf_cstr(const rc_buf *b);
/* Hand the allocation to the caller (NUL-terminated, never NULL on success); the buffer is left
 * empty. Returns -RC_ENOMEM only if an empty buffer cannot allocate its terminator. */
int rc_buf_steal(rc_buf *b, char **ret_data, size_t *ret_len, rc_error *err);
/* Free the data, wiping it first (buffers may have held credentials). Safe on an empty buffer. */
void rc_buf_free(rc_buf *b);

#endif
