/* base64.h - RFC 4648 base64 (section 4) and base64url (section 5): strict, bounded codecs.
 *
 * Used for webhook signing keys and signatures and for work secrets, so the data path is written
 * without table lookups or branches on the data (constant time over the bytes; only lengths and
 * the position of '=' padding, which are public, steer the control flow).
 *
 * Decoding is strict: any byte outside the selected alphabet (whitespace, NUL, '=' anywhere but
 * at the end, the other alphabet's '+' '/' or '-' '_') is rejected, as are more than two '=',
 * padding that does not complete the last 4-character group, and a length that leaves a single
 * character in the last group. By default padding is required; RC_BASE64_PAD_OPTIONAL also
 * accepts input without it and RC_BASE64_NOPAD forbids it.
 *
 * Unused low bits of the last character (e.g. "Zh==" instead of "Zg==") are ignored by default,
 * like the standardwebhooks reference library and most decoders (RFC 4648 3.5 permits either);
 * RC_BASE64_CANONICAL rejects them, which makes decode-then-encode reproduce the input exactly.
 *
 * Sizes are capped at INT_MAX so that results fit the int return convention. */
#ifndef RUNCELL_BASE64_H
#define RUNCELL_BASE64_H

#include "err.h"

#include <stddef.h>

enum rc_base64_flags {
    RC_BASE64_STD = 0,         /* '+' '/', '=' padding required on decode, emitted on encode */
    RC_BASE64_URL = 1u << 0,   /* '-' '_' instead of '+' '/' */
    RC_BASE64_NOPAD = 1u << 1, /* encode: no '='; decode: any '=' is an error */
    RC_BASE64_PAD_OPTIONAL = 1u << 2, /* decode: accept the input with or without its padding */
    RC_BASE64_ANY_ALPHABET = 1u << 3, /* decode: accept '+' '/' and '-' '_' alike */
    RC_BASE64_CANONICAL = 1u << 4,    /* decode: reject non-zero unused bits in the last group */
};

/* Characters (without the terminating NUL) that encoding n bytes produces; 0 if over INT_MAX. */
size_t rc_base64_encoded_len(size_t n, unsigned flags);

/* Upper bound of the bytes decoded from n characters (exact for unpadded input). */
size_t rc_base64_decoded_max(size_t n);

/* Encode n bytes of src into out (outsz bytes, room for the NUL included). Returns the number of
 * characters written (excluding the NUL), -RC_ETOOBIG if outsz is too small or n too large. */
int rc_base64_encode(const void *src, size_t n, unsigned flags, char *out, size_t outsz,
                     rc_error *err);

/* Decode n characters of src into out (outsz bytes). Returns the number of bytes decoded,
 * -RC_EPARSE for malformed input, -RC_ETOOBIG if out is too small. On failure every byte of out
 * that may have been written is zeroed (the input may be a secret). */
int rc_base64_decode(const char *src, size_t n, unsigned flags, void *out, size_t outsz,
                     rc_error *err);

/* Allocating variants. *ret_out (NUL-terminated, not counted in the length) belongs to the
 * caller. decode refuses input that decodes to more than max bytes (-RC_ETOOBIG); on failure
 * *ret_out and *ret_len are left untouched. */
int rc_base64_encode_alloc(const void *src, size_t n, unsigned flags, char **ret_out,
                           rc_error *err);
int rc_base64_decode_alloc(const char *src, size_t n, unsigned flags, size_t max,
                           unsigned char **ret_out, size_t *ret_len, rc_error *err);

#endif
