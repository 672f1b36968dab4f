/* webhook.h - Standard Webhooks signatures (protocol.md 18.3) and work secret decoding (4.2).
 *
 * Verification accepts every message that the reference library (standardwebhooks 1.1.1, used by
 * the SDK's webhooks.unwrap()) accepts; the few inputs where it is stricter are listed in
 * webhook.c. Signing produces exactly what the reference produces.
 *
 * Return codes. rc_webhook_verify() and rc_webhook_sign() return 0 on success and, when a
 * message or key is refused, -RC_WEBHOOK_E_* (values from 1001 up, so they never collide with
 * the -RC_E* codes of err.h, which stay below RC_ERRCODE_MAX). Other failures (out of memory,
 * OpenSSL errors) return the usual -RC_E* code. rc_webhook_is_rejection(r) tells the two apart;
 * rc_webhook_strerror(r) names either. The rc_error is filled as usual, with a positive RC_E*
 * code: RC_EAUTH for a refused message, RC_EINVAL for an unusable key (a configuration error),
 * so generic code that only looks at err->code still works.
 *
 * Nothing secret (key, HMAC, token) ever appears in an error message. */
#ifndef RUNCELL_WEBHOOK_H
#define RUNCELL_WEBHOOK_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_WEBHOOK_TOLERANCE_SECONDS 300 /* 18.3.4, both directions (22.17) */
#define RC_WEBHOOK_KEY_PREFIX        "whsec_"
#define RC_WEBHOOK_KEY_MAX           256     /* decoded key bytes accepted (Console keys: 32) */
#define RC_WEBHOOK_BODY_MAX          1048576 /* 18.8.1: callers cap request bodies at 1 MiB */
/* "v1," + base64 of a 32-byte HMAC-SHA256 (44 characters) + NUL. */
#define RC_WEBHOOK_SIGNATURE_SIZE 48

enum rc_webhook_errcode {
    RC_WEBHOOK_E_BASE = 1000,
    RC_WEBHOOK_E_MISSING_HEADER = 1001, /* a header is absent or empty */
    RC_WEBHOOK_E_BAD_KEY = 1002,        /* key missing, empty, not base64, or too long */
    RC_WEBHOOK_E_BAD_TIMESTAMP = 1003,  /* webhook-timestamp has no leading number */
    RC_WEBHOOK_E_STALE = 1004,          /* more than 300 s older than now */
    RC_WEBHOOK_E_FUTURE = 1005,         /* more than 300 s ahead of now */
    RC_WEBHOOK_E_NO_MATCH = 1006,       /* no v1 entry carries the expected signature */
    RC_WEBHOOK_E_MAX
};

/* The three header values of one delivery; NULL means absent. */
typedef struct rc_webhook_headers {
    const char *id;        /* webhook-id */
    const char *timestamp; /* webhook-timestamp */
    const char *signature; /* webhook-signature */
} rc_webhook_headers;

typedef struct rc_webhook_header {
    const char *name;
    const char *value;
} rc_webhook_header;

/* Fill *ret from a list of request headers, matching names case-insensitively. When a name
 * occurs more than once the last occurrence wins (as in the reference's lower-casing loop). */
void rc_webhook_headers_from_list(const rc_webhook_header *list, size_t n, rc_webhook_headers *ret);

/* Check that key (whsec_<base64>) decodes to a usable key; for validating configuration at
 * startup. Returns 0 or -RC_WEBHOOK_E_BAD_KEY. */
int rc_webhook_key_check(const char *key, rc_error *err);

/* Parse a webhook-timestamp value like JavaScript's parseInt(s, 10): leading ASCII whitespace,
 * an optional sign, then decimal digits up to the first non-digit (the rest is ignored). Values
 * beyond int64 saturate. Returns 0 or -RC_WEBHOOK_E_BAD_TIMESTAMP when there is no digit. */
int rc_webhook_parse_timestamp(const char *s, int64_t *ret_ts, rc_error *err);

/* Verify one delivery (18.3) against key at time now (Unix seconds; pass time(NULL) in
 * production, a fixed value in tests). body is the raw request body. Returns 0 when accepted. */
int rc_webhook_verify(const rc_webhook_headers *h, const void *body, size_t body_len,
                      const char *key, int64_t now, rc_error *err);

/* Produce the webhook-signature entry "v1,<base64 HMAC-SHA256(key, id.ts.body)>" into ret_sig
 * (written only on success). */
int rc_webhook_sign(const char *id, int64_t ts, const void *body, size_t body_len, const char *key,
                    char ret_sig[RC_WEBHOOK_SIGNATURE_SIZE], rc_error *err);

/* True for the -RC_WEBHOOK_E_* codes (the message or key was refused), false for 0 and -RC_E*. */
bool rc_webhook_is_rejection(int r);

/* Static description of a return value: the reference library's message for -RC_WEBHOOK_E_*
 * ("Missing required headers", ...), rc_errcode_name() for others, "OK" for 0. */
const char *rc_webhook_strerror(int r);

/* ---- Work secrets (4.2) ----
 * Housed here because it shares the base64 handling and the secret hygiene; it is a separate
 * concern, hence the rc_worksecret_ prefix. */

#define RC_WORKSECRET_MAX         16384 /* characters of the encoded secret */
#define RC_WORKSECRET_PAYLOAD_MAX 8192  /* bytes of the decoded JSON payload */

enum rc_worksecret_flags {
    RC_WORKSECRET_LEGACY = 1u << 0, /* fall back to session_ingress_token (4.2.3) */
};

/* Decode a work item's secret into its sessions token, following 4.2 exactly: '-' -> '+',
 * '_' -> '/', '=' appended to a multiple of 4, standard base64 (strict), JSON object (cJSON),
 * `sessions_token` a non-empty string (the last one if duplicated, as JSON.parse does). With
 * RC_WORKSECRET_LEGACY, `session_ingress_token` is used when `sessions_token` yields nothing.
 * Additionally the token must consist of visible ASCII (0x21-0x7e), since it becomes an
 * Authorization header value.
 *
 * Returns 0 and a token in *ret_token (free it with rc_worksecret_free), -RC_ENOTFOUND when
 * secret is NULL or empty (no secret at all), -RC_EPARSE when a secret is present but yields no
 * token (4.2.1: log a warning, without the secret), -RC_ETOOBIG when it exceeds the caps, or
 * -RC_ENOMEM. */
int rc_worksecret_decode(const char *secret, unsigned flags, char **ret_token, rc_error *err);

/* Wipe and free a token (NULL is fine). */
void rc_worksecret_free(char *token);

static inline void rc_worksecret_freep(char **p)
{
    rc_worksecret_free(*p);
}

#endif
