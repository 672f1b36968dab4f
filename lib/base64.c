/* base64.c - strict RFC 4648 base64/base64url codecs (see base64.h for the contract).
 *
 * Character mapping is done with masks instead of lookup tables (as in libsodium and stablelib) so
 * that decoding a key or a token does not index memory by secret data. The layout of the input
 * (length, trailing '=') is checked first, then every character is mapped and errors are
 * accumulated without early exit. */
#include "base64.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Masks for values below 2^31: all ones when the relation holds, else zero. */
static unsigned ct_lt(unsigned x, unsigned y)
{
    return 0u - ((x - y) >> 31);
}

static unsigned ct_ge(unsigned x, unsigned y)
{
    return ~ct_lt(x, y);
}

static unsigned ct_in_range(unsigned c, unsigned lo, unsigned hi)
{
    return ct_ge(c, lo) & ~ct_lt(hi, c);
}

/* The character for a 6-bit value x. */
static char b64_char(unsigned x, unsigned url)
{
    unsigned c = x + 'A';
    c += ct_ge(x, 26) & ('a' - 'A' - 26);      /* 26..51 -> 'a'..'z' */
    c += ct_ge(x, 52) & ('0' - 'a' - 52 + 26); /* 52..61 -> '0'..'9' */
    c += ct_ge(x, 62) & (url ? '-' - '9' - 1 : '+' - '9' - 1);
    c += ct_ge(x, 63) & (url ? '_' - '-' - 1 : '/' - '+' - 1);
    return (char)(c & 0xff);
}

/* The 6-bit value of character c, or a value above 63 when c is outside the alphabet(s). */
static unsigned b64_value(unsigned char ch, unsigned flags)
{
    unsigned c = ch;
    unsigned v = 0; /* value + 1; 0 while no range matched */
    unsigned std = !(flags & RC_BASE64_URL) || (flags & RC_BASE64_ANY_ALPHABET);
    unsigned url = (flags & (RC_BASE64_URL | RC_BASE64_ANY_ALPHABET)) != 0;

    v |= ct_in_range(c, 'A', 'Z') & (c - 'A' + 1);
    v |= ct_in_range(c, 'a', 'z') & (c - 'a' + 27);
    v |= ct_in_range(c, '0', '9') & (c - '0' + 53);
    if (std) {
        v |= ct_in_range(c, '+', '+') & 63;
        v |= ct_in_range(c, '/', '/') & 64;
    }
    if (url) {
        v |= ct_in_range(c, '-', '-') & 63;
        v |= ct_in_range(c, '_', '_') & 64;
    }
    return v - 1; /* wraps to UINT_MAX when nothing matched */
}

size_t rc_base64_encoded_len(size_t n, unsigned flags)
{
    size_t full = n / 3, rem = n % 3, len;

    if (n > (size_t)INT_MAX / 4 * 3 - 3)
        return 0;
    len = full * 4;
    if (rem)
        len += (flags & RC_BASE64_NOPAD) ? rem + 1 : 4;
    return len;
}

size_t rc_base64_decoded_max(size_t n)
{
    return n / 4 * 3 + (n % 4 > 1 ? n % 4 - 1 : 0);
}

int rc_base64_encode(const void *src, size_t n, unsigned flags, char *out, size_t outsz,
                     rc_error *err)
{
    const unsigned char *s = src;
    unsigned url = (flags & RC_BASE64_URL) != 0;
    size_t len = rc_base64_encoded_len(n, flags), i, o = 0;

    if (len == 0 && n > 0)
        return rc_error_set(err, RC_ETOOBIG, "base64 input of %zu bytes is too large", n);
    if (!out || outsz < len + 1)
        return rc_error_set(err, RC_ETOOBIG, "base64 output needs %zu bytes", len + 1);
    for (i = 0; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
        out[o++] = b64_char(v >> 18, url);
        out[o++] = b64_char(v >> 12 & 63, url);
        out[o++] = b64_char(v >> 6 & 63, url);
        out[o++] = b64_char(v & 63, url);
    }
    if (n - i > 0) {
        unsigned two = n - i == 2;
        unsigned v = (unsigned)s[i] << 16 | (two ? (unsigned)s[i + 1] << 8 : 0);
        out[o++] = b64_char(v >> 18, url);
        out[o++] = b64_char(v >> 12 & 63, url);
        if (two)
            out[o++] = b64_char(v >> 6 & 63, url);
        if (!(flags & RC_BASE64_NOPAD)) {
            if (!two)
                out[o++] = '=';
            out[o++] = '=';
        }
    }
    out[o] = '\0';
    return (int)o;
}

/* Check the public shape of the input: returns the number of data characters (without '=') in
 * *ret_chars and the decoded size in *ret_bytes. */
static int decode_layout(const char *src, size_t n, unsigned flags, size_t *ret_chars,
                         size_t *ret_bytes, rc_error *err)
{
    size_t pad = 0, chars;

    if (n > INT_MAX)
        return rc_error_set(err, RC_ETOOBIG, "base64 input of %zu characters is too large", n);
    while (pad < n && pad < 3 && src[n - 1 - pad] == '=')
        pad++;
    if (pad > 2)
        return rc_error_set(err, RC_EPARSE, "base64: too much padding");
    if (pad && (flags & RC_BASE64_NOPAD))
        return rc_error_set(err, RC_EPARSE, "base64: unexpected padding");
    chars = n - pad;
    if (chars % 4 == 1)
        return rc_error_set(err, RC_EPARSE, "base64: truncated input (length %zu)", n);
    if (pad && n % 4 != 0)
        return rc_error_set(err, RC_EPARSE, "base64: bad padding");
    if (!pad && chars % 4 && !(flags & (RC_BASE64_PAD_OPTIONAL | RC_BASE64_NOPAD)))
        return rc_error_set(err, RC_EPARSE, "base64: missing padding");
    *ret_chars = chars;
    *ret_bytes = rc_base64_decoded_max(chars);
    return 0;
}

/* Decode exactly `chars` data characters (layout already checked) into out; returns non-zero
 * when a character is outside the alphabet or, with RC_BASE64_CANONICAL, unused bits are set. */
static unsigned decode_chars(const char *src, size_t chars, unsigned flags, unsigned char *out)
{
    const unsigned char *s = (const unsigned char *)src;
    unsigned bad = 0, acc = 0, bits = 0;
    size_t i, o = 0;

    for (i = 0; i < chars; i++) {
        unsigned v = b64_value(s[i], flags);
        bad |= v >> 6;
        acc = (acc << 6 | (v & 63)) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (flags & RC_BASE64_CANONICAL)
        bad |= acc & ((1u << bits) - 1);
    return bad;
}

int rc_base64_decode(const char *src, size_t n, unsigned flags, void *out, size_t outsz,
                     rc_error *err)
{
    size_t chars, bytes;
    int r = decode_layout(src, n, flags, &chars, &bytes, err);

    if (r < 0)
        return r;
    if (bytes > outsz || (bytes && !out))
        return rc_error_set(err, RC_ETOOBIG, "base64 output needs %zu bytes", bytes);
    if (decode_chars(src, chars, flags, out)) {
        explicit_bzero(out, bytes);
        return rc_error_set(err, RC_EPARSE, "base64: invalid character or trailing bits");
    }
    return (int)bytes;
}

int rc_base64_encode_alloc(const void *src, size_t n, unsigned flags, char **ret_out, rc_error *err)
{
    size_t len = rc_base64_encoded_len(n, flags);
    char *out;
    int r;

    if (len == 0 && n > 0)
        return rc_error_set(err, RC_ETOOBIG, "base64 input of %zu bytes is too large", n);
    out = malloc(len + 1);
    if (!out)
        return rc_error_set(err, RC_ENOMEM, "out of memory encoding base64");
    r = rc_base64_encode(src, n, flags, out, len + 1, err);
    if (r < 0) {
        free(out);
        return r;
    }
    *ret_out = out;
    return r;
}

int rc_base64_decode_alloc(const char *src, size_t n, unsigned flags, size_t max,
                           unsigned char **ret_out, size_t *ret_len, rc_error *err)
{
    size_t chars, bytes;
    unsigned char *out;
    int r = decode_layout(src, n, flags, &chars, &bytes, err);

    if (r < 0)
        return r;
    if (bytes > max)
        return rc_error_set(err, RC_ETOOBIG, "base64 data exceeds %zu bytes", max);
    out = malloc(bytes + 1);
    if (!out)
        return rc_error_set(err, RC_ENOMEM, "out of memory decoding base64");
    r = rc_base64_decode(src, n, flags, out, bytes, err);
    if (r < 0) {
        free(out); /* already wiped by rc_base64_decode */
        return r;
    }
    out[bytes] = '\0';
    *ret_out = out;
    *ret_len = bytes;
    return r;
}
