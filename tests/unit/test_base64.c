/* test_base64.c - RFC 4648 vectors, both alphabets, padding modes, strictness, bounds. */
#include "base64.h"
#include "cleanup.h"
#include "harness.h"

#include <stdint.h>
#include <stdlib.h>

static const char *const rfc_plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
static const char *const rfc_std[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
static const char *const rfc_nopad[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};

/* Decode s (a C string) with flags; returns the rc_base64_decode result, bytes in out. */
static int dec(const char *s, unsigned flags, unsigned char *out, size_t outsz)
{
    return rc_base64_decode(s, strlen(s), flags, out, outsz, NULL);
}

TEST(rfc4648_encode_vectors)
{
    char out[16];
    for (size_t i = 0; i < sizeof rfc_plain / sizeof *rfc_plain; i++) {
        size_t n = strlen(rfc_plain[i]);
        CHECK_INT(rc_base64_encode(rfc_plain[i], n, RC_BASE64_STD, out, sizeof out, NULL),
                  strlen(rfc_std[i]));
        CHECK_STR(out, rfc_std[i]);
        CHECK_INT(rc_base64_encoded_len(n, RC_BASE64_STD), strlen(rfc_std[i]));
        CHECK_INT(rc_base64_encode(rfc_plain[i], n, RC_BASE64_URL | RC_BASE64_NOPAD, out,
                                   sizeof out, NULL),
                  strlen(rfc_nopad[i]));
        CHECK_STR(out, rfc_nopad[i]);
        CHECK_INT(rc_base64_encoded_len(n, RC_BASE64_NOPAD), strlen(rfc_nopad[i]));
    }
}

TEST(rfc4648_decode_vectors)
{
    unsigned char out[16];
    for (size_t i = 0; i < sizeof rfc_plain / sizeof *rfc_plain; i++) {
        size_t n = strlen(rfc_plain[i]);
        CHECK_INT(dec(rfc_std[i], RC_BASE64_STD, out, sizeof out), n);
        CHECK_MEM(out, n, rfc_plain[i], n);
        CHECK_INT(dec(rfc_std[i], RC_BASE64_PAD_OPTIONAL, out, sizeof out), n);
        CHECK_INT(dec(rfc_nopad[i], RC_BASE64_PAD_OPTIONAL, out, sizeof out), n);
        CHECK_MEM(out, n, rfc_plain[i], n);
        CHECK_INT(dec(rfc_nopad[i], RC_BASE64_URL | RC_BASE64_NOPAD, out, sizeof out), n);
        CHECK_MEM(out, n, rfc_plain[i], n);
    }
}

TEST(padding_required_by_default)
{
    unsigned char out[8];
    CHECK_INT(dec("Zg", RC_BASE64_STD, out, sizeof out), -RC_EPARSE);
    CHECK_INT(dec("Zm8", RC_BASE64_STD, out, sizeof out), -RC_EPARSE);
    CHECK_INT(dec("Zm9v", RC_BASE64_STD, out, sizeof out), 3);
}

TEST(nopad_rejects_padding)
{
    unsigned char out[8];
    CHECK_INT(dec("Zg==", RC_BASE64_NOPAD, out, sizeof out), -RC_EPARSE);
    CHECK_INT(dec("Zm8=", RC_BASE64_URL | RC_BASE64_NOPAD, out, sizeof out), -RC_EPARSE);
}

TEST(bad_padding_and_length_rejected)
{
    static const char *const bad[] = {
        "Zg=",      /* partial padding */
        "Zg===",    /* too much */
        "Z===",     /* too much */
        "====",     /* nothing but padding */
        "==",       /* nothing but padding */
        "Zm9vY",    /* one character left in the last group */
        "Z",        /* ditto */
        "Zm9v=",    /* padding after a full group */
        "Zm9v==",   /* ditto */
        "Zm=v",     /* '=' in the middle */
        "=Zm9",     /* '=' first */
        "Zg==Zg==", /* padding inside */
    };
    unsigned char out[16];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int r = dec(bad[i], RC_BASE64_PAD_OPTIONAL, out, sizeof out);
        if (r != -RC_EPARSE)
            rc_test_fail(__FILE__, __LINE__, "\"%s\" decoded to %d", bad[i], r);
    }
}

TEST(garbage_and_whitespace_rejected)
{
    static const char *const bad[] = {" Zm9v",
                                      "Zm9v ",
                                      "Zm9v\n",
                                      "Zm 9v",
                                      "Zm9v\r\n",
                                      "Zm9\tv",
                                      "Zm9!",
                                      "Zm9.",
                                      "Zm9\x80",
                                      "Zm9\xff",
                                      "Zm9v\x01"
                                      "AAA"};
    unsigned char out[16];
    rc_error err = {0};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int r = dec(bad[i], RC_BASE64_PAD_OPTIONAL | RC_BASE64_ANY_ALPHABET, out, sizeof out);
        if (r != -RC_EPARSE)
            rc_test_fail(__FILE__, __LINE__, "\"%s\" decoded to %d", bad[i], r);
    }
    /* An embedded NUL (length given explicitly). */
    CHECK_INT(rc_base64_decode("Zm\0v", 4, RC_BASE64_STD, out, sizeof out, &err), -RC_EPARSE);
    CHECK_INT(err.code, RC_EPARSE);
}

TEST(alphabets_are_exclusive_unless_any)
{
    unsigned char out[8];
    /* 0xfb 0xff 0xbf: "+/+/" standard, "-_-_" URL-safe. */
    static const unsigned char raw[] = {0xfb, 0xff, 0xbf};
    char enc[8];
    CHECK_INT(rc_base64_encode(raw, 3, RC_BASE64_STD, enc, sizeof enc, NULL), 4);
    CHECK_STR(enc, "+/+/");
    CHECK_INT(rc_base64_encode(raw, 3, RC_BASE64_URL, enc, sizeof enc, NULL), 4);
    CHECK_STR(enc, "-_-_");
    CHECK_INT(dec("+/+/", RC_BASE64_STD, out, sizeof out), 3);
    CHECK_MEM(out, 3, raw, 3);
    CHECK_INT(dec("-_-_", RC_BASE64_STD, out, sizeof out), -RC_EPARSE);
    CHECK_INT(dec("+/+/", RC_BASE64_URL, out, sizeof out), -RC_EPARSE);
    CHECK_INT(dec("-_-_", RC_BASE64_URL, out, sizeof out), 3);
    CHECK_MEM(out, 3, raw, 3);
    CHECK_INT(dec("-/+_", RC_BASE64_ANY_ALPHABET, out, sizeof out), 3);
    CHECK_MEM(out, 3, raw, 3);
}

TEST(every_character_maps_both_ways)
{
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[48];
    char enc[65];
    /* 48 bytes whose 6-bit groups run 0..63 in order. */
    for (unsigned i = 0; i < 64; i += 4) {
        unsigned v = i << 18 | (i + 1) << 12 | (i + 2) << 6 | (i + 3);
        raw[i / 4 * 3] = (unsigned char)(v >> 16);
        raw[i / 4 * 3 + 1] = (unsigned char)(v >> 8);
        raw[i / 4 * 3 + 2] = (unsigned char)v;
    }
    CHECK_INT(rc_base64_encode(raw, 48, RC_BASE64_STD, enc, sizeof enc, NULL), 64);
    CHECK_STR(enc, std);
    CHECK_INT(rc_base64_encode(raw, 48, RC_BASE64_URL, enc, sizeof enc, NULL), 64);
    CHECK_STR(enc, url);
    /* Every byte value: accepted exactly when it is in the alphabet. */
    for (unsigned c = 0; c < 256; c++) {
        char in[4] = {(char)c, 'A', 'A', 'A'};
        unsigned char out[3], out2[3];
        int in_std = c && strchr(std, (int)c) != NULL;
        int in_url = c && strchr(url, (int)c) != NULL;
        int r1 = rc_base64_decode(in, 4, RC_BASE64_STD, out, sizeof out, NULL);
        int r2 = rc_base64_decode(in, 4, RC_BASE64_URL, out2, sizeof out2, NULL);
        if ((r1 == 3) != in_std || (r2 == 3) != in_url)
            rc_test_fail(__FILE__, __LINE__, "byte 0x%02x: std %d url %d", c, r1, r2);
        if (r1 == 3 && (unsigned)(strchr(std, (int)c) - std) != (unsigned)(out[0] >> 2))
            rc_test_fail(__FILE__, __LINE__, "byte 0x%02x decoded to %u", c, out[0] >> 2);
    }
}

TEST(trailing_bits_lenient_unless_canonical)
{
    unsigned char out[4];
    CHECK_INT(dec("Zh==", RC_BASE64_STD, out, sizeof out), 1);
    CHECK_INT(out[0], 'f');
    CHECK_INT(dec("Zh==", RC_BASE64_CANONICAL, out, sizeof out), -RC_EPARSE);
    CHECK_INT(dec("Zg==", RC_BASE64_CANONICAL, out, sizeof out), 1);
    CHECK_INT(dec("Zm9=", RC_BASE64_CANONICAL, out, sizeof out), -RC_EPARSE);
    CHECK_INT(dec("Zm8=", RC_BASE64_CANONICAL, out, sizeof out), 2);
    CHECK_INT(dec("Zm9", RC_BASE64_CANONICAL | RC_BASE64_NOPAD, out, sizeof out), -RC_EPARSE);
}

TEST(output_bounds)
{
    char enc[5];
    unsigned char out[3];
    rc_error err = {0};
    CHECK_INT(rc_base64_encode("foo", 3, RC_BASE64_STD, enc, 4, &err), -RC_ETOOBIG);
    CHECK_INT(err.code, RC_ETOOBIG);
    CHECK_INT(rc_base64_encode("foo", 3, RC_BASE64_STD, enc, 5, NULL), 4);
    CHECK_INT(rc_base64_encode("foo", 3, RC_BASE64_STD, NULL, 0, NULL), -RC_ETOOBIG);
    CHECK_INT(dec("Zm9vYg==", RC_BASE64_STD, out, sizeof out), -RC_ETOOBIG);
    CHECK_INT(dec("Zm9v", RC_BASE64_STD, out, 2), -RC_ETOOBIG);
    CHECK_INT(dec("", RC_BASE64_STD, NULL, 0), 0);
    CHECK_INT(rc_base64_encode("", 0, RC_BASE64_STD, enc, 1, NULL), 0);
    CHECK_STR(enc, "");
}

TEST(failed_decode_wipes_output)
{
    unsigned char out[6];
    memset(out, 0xaa, sizeof out);
    CHECK_INT(dec("Zm9vYm!y", RC_BASE64_STD, out, sizeof out), -RC_EPARSE);
    for (size_t i = 0; i < sizeof out; i++)
        CHECK_INT(out[i], 0);
}

TEST(alloc_variants)
{
    _cleanup_free_ char *enc = NULL;
    _cleanup_free_ unsigned char *raw = NULL;
    unsigned char *never = NULL;
    size_t len = 99;
    CHECK_INT(rc_base64_encode_alloc("foobar", 6, RC_BASE64_STD, &enc, NULL), 8);
    CHECK_STR(enc, "Zm9vYmFy");
    CHECK_INT(rc_base64_decode_alloc("Zm9vYg", 6, RC_BASE64_PAD_OPTIONAL, 64, &raw, &len, NULL), 4);
    CHECK_INT(len, 4);
    CHECK_STR((char *)raw, "foob"); /* NUL-terminated */
    CHECK_INT(rc_base64_decode_alloc("Zm9vYmFy", 8, RC_BASE64_STD, 5, &never, &len, NULL),
              -RC_ETOOBIG);
    CHECK_INT(rc_base64_decode_alloc("Zm9vYmFy", 8, RC_BASE64_STD, 6, &never, &len, NULL), 6);
    free(never);
    never = NULL;
    len = 99;
    CHECK_INT(rc_base64_decode_alloc("Zm9!", 4, RC_BASE64_STD, 64, &never, &len, NULL), -RC_EPARSE);
    CHECK(never == NULL);
    CHECK_INT(len, 99);
}

TEST(round_trip_all_modes)
{
    static const unsigned modes[] = {RC_BASE64_STD, RC_BASE64_URL, RC_BASE64_NOPAD,
                                     RC_BASE64_URL | RC_BASE64_NOPAD};
    unsigned char raw[200], back[200];
    char enc[300];
    uint32_t x = 12345;
    for (size_t len = 0; len <= sizeof raw; len++) {
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245u + 12345u;
            raw[i] = (unsigned char)(x >> 16);
        }
        for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
            unsigned f = modes[m] | RC_BASE64_CANONICAL;
            int n = rc_base64_encode(raw, len, f, enc, sizeof enc, NULL);
            int d = rc_base64_decode(enc, (size_t)n, f, back, sizeof back, NULL);
            if (n < 0 || d != (int)len || memcmp(raw, back, len) != 0) {
                rc_test_fail(__FILE__, __LINE__, "round trip of %zu bytes, flags %u", len, f);
                return;
            }
            if (rc_base64_decoded_max((size_t)n) < len)
                rc_test_fail(__FILE__, __LINE__, "decoded_max(%d) < %zu", n, len);
        }
    }
}
