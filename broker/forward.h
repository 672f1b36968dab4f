/* forward.h - forwardURL support: the operator's HMAC key and the signed token the proxy sends
 * with every forwarded request, so the receiving proxy (a team's own audit proxy in front of an
 * API) knows the request came from this broker, for which session, and for which forward URL.
 *
 * The token is a compact JWT signed with HS256 (HMAC-SHA256), so any JWT library verifies it:
 *   header  {"alg":"HS256","typ":"JWT"}
 *   claims  {"iss":"runcell","aud":"<forward URL>","sid":"<session id>","iat":N,"exp":N+300,
 *            "jti":"<128 random bits, hex>"}
 * The receiver must check the signature with the shared key, exp (60 s of clock skew is
 * plenty), and that aud equals its own URL exactly. The key file holds at least 32 bytes (a
 * trailing newline is dropped), must be a regular file and not readable by group or others. */
#ifndef RUNCELL_BROKER_FORWARD_H
#define RUNCELL_BROKER_FORWARD_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

#define RC_FORWARD_KEY_MIN   32u
#define RC_FORWARD_KEY_MAX   4096u
#define RC_FORWARD_TOKEN_TTL 300u
#define RC_FORWARD_TOKEN_MAX 512u

#define RC_FORWARD_TOKEN_HEADER "x-runcell-forward-token"

typedef struct rc_forward_key {
    unsigned char bytes[RC_FORWARD_KEY_MAX];
    size_t len;
} rc_forward_key;

/* Read the key file (see above). */
int rc_forward_key_load(const char *path, rc_forward_key *ret, rc_error *err);
/* Wipe it. */
void rc_forward_key_clear(rc_forward_key *k);

/* The token for session_id (printable ASCII without '"' or '\\'; may be "") and aud (the forward
 * URL, as in the policy) at unix time now, into out (NUL-terminated). Returns its length. */
int rc_forward_token(const rc_forward_key *k, const char *session_id, const char *aud, int64_t now,
                     char *out, size_t outsz, rc_error *err);

#endif
