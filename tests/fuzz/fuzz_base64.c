/* fuzz_base64.c - libFuzzer target for the base64 codecs.
 *
 * Input: one flags byte, then the text/bytes. Checks: no crash or overread on any input; a
 * canonical decode re-encodes to exactly the input; encoding any bytes decodes back to them;
 * the lenient modes accept a superset of the strict ones with identical output; the allocating
 * decoder agrees with the buffer one. */
#include "base64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

/* Decode with flags; returns the length or -1, bytes in a fresh allocation in *out. */
static int decode(const char *s, size_t n, unsigned flags, unsigned char **out)
{
    size_t max = rc_base64_decoded_max(n);
    int r;
    *out = malloc(max + 1);
    CHECK(*out);
    r = rc_base64_decode(s, n, flags, *out, max, NULL);
    CHECK(r < 0 || (size_t)r <= max);
    return r < 0 ? -1 : r;
}

static void check_canonical_round_trip(const char *s, size_t n, unsigned flags,
                                       const unsigned char *raw, int len)
{
    unsigned enc_flags = (flags & RC_BASE64_URL) | (n % 4 ? RC_BASE64_NOPAD : 0);
    size_t outsz = rc_base64_encoded_len((size_t)len, enc_flags) + 1;
    char *enc = malloc(outsz);
    CHECK(enc);
    CHECK(rc_base64_encode(raw, (size_t)len, enc_flags, enc, outsz, NULL) == (int)n);
    CHECK(memcmp(enc, s, n) == 0);
    free(enc);
}

static void check_superset(const char *s, size_t n, unsigned flags, unsigned extra,
                           const unsigned char *raw, int len)
{
    unsigned char *raw2;
    unsigned f = flags | extra;
    int len2;

    /* Padding optional is a superset of both "required" and "forbidden". */
    if (extra == RC_BASE64_PAD_OPTIONAL)
        f &= ~(unsigned)RC_BASE64_NOPAD;
    len2 = decode(s, n, f, &raw2);
    CHECK(len2 == len && memcmp(raw, raw2, (size_t)len) == 0);
    free(raw2);
}

static void fuzz_decode(const char *s, size_t n, unsigned flags)
{
    unsigned char *raw, *araw = NULL;
    size_t alen = 0;
    int len = decode(s, n, flags, &raw);
    int alloc_r = rc_base64_decode_alloc(s, n, flags, 1 << 20, &araw, &alen, NULL);

    CHECK((alloc_r < 0) == (len < 0));
    if (len >= 0) {
        CHECK((int)alen == len && memcmp(raw, araw, alen) == 0 && araw[alen] == '\0');
        if ((flags & RC_BASE64_CANONICAL) && !(flags & RC_BASE64_ANY_ALPHABET))
            check_canonical_round_trip(s, n, flags, raw, len);
        check_superset(s, n, flags, RC_BASE64_ANY_ALPHABET, raw, len);
        check_superset(s, n, flags, RC_BASE64_PAD_OPTIONAL, raw, len);
        if (flags & RC_BASE64_CANONICAL)
            check_superset(s, n, flags & ~(unsigned)RC_BASE64_CANONICAL, 0, raw, len);
    }
    free(araw);
    free(raw);
}

static void fuzz_encode(const unsigned char *p, size_t n, unsigned flags)
{
    unsigned enc_flags = flags & (RC_BASE64_URL | RC_BASE64_NOPAD);
    size_t outsz = rc_base64_encoded_len(n, enc_flags) + 1;
    char *enc = malloc(outsz);
    unsigned char *raw;
    int len;

    CHECK(enc);
    len = rc_base64_encode(p, n, enc_flags, enc, outsz, NULL);
    CHECK(len >= 0 && (size_t)len == outsz - 1 && enc[len] == '\0');
    /* Too small a buffer is refused, never overrun. */
    CHECK(rc_base64_encode(p, n, enc_flags, enc, outsz - 1, NULL) == -RC_ETOOBIG);
    CHECK(decode(enc, (size_t)len, enc_flags | RC_BASE64_CANONICAL, &raw) == (int)n);
    CHECK(memcmp(raw, p, n) == 0);
    free(raw);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned flags;
    if (size < 1)
        return 0;
    flags = data[0] & 0x1f;
    fuzz_decode((const char *)data + 1, size - 1, flags);
    fuzz_encode(data + 1, size - 1, flags);
    return 0;
}
