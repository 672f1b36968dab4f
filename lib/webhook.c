/* webhook.c - Standard Webhooks verification and signing (protocol.md 18.3) and work secret
 * decoding (4.2): the two places where runcell turns an outside secret into a decision.
 *
 * Verification mirrors standardwebhooks 1.1.1 step by step (key decoded first, then headers,
 * timestamp, HMAC, constant-time comparison of each v1 entry). Where that library is lenient in
 * ways a real sender never exercises, this file is deliberately stricter:
 *  - a key whose base64 leaves one stray character in its last group ("AAAA!") is refused; the
 *    library silently ignores that character;
 *  - only ASCII whitespace is skipped before the timestamp (parseInt also skips Unicode spaces);
 *  - the body is signed as raw bytes; the library first decodes a Buffer body as UTF-8, so for a
 *    body that is not valid UTF-8 the two disagree (the sender signs the bytes it sends).
 * It is more lenient, as 22.15 allows, in accepting the URL-safe alphabet and missing padding.
 *
 * Key bytes, HMAC outputs, decoded secrets and tokens are wiped with explicit_bzero. */
#include "webhook.h"

#include "base64.h"
#include "cleanup.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define HMAC_LEN    32
#define SIG_B64_LEN 44 /* base64 of HMAC_LEN bytes, padded */
/* Longest "whsec_"-less key text accepted: base64 of RC_WEBHOOK_KEY_MAX bytes. */
#define KEY_TEXT_MAX ((RC_WEBHOOK_KEY_MAX + 2) / 3 * 4)

typedef struct webhook_key {
    size_t len;
    unsigned char bytes[RC_WEBHOOK_KEY_MAX];
} webhook_key;

static void webhook_key_wipe(webhook_key *k)
{
    explicit_bzero(k, sizeof *k);
}

static void mac_freep(EVP_MAC **p)
{
    EVP_MAC_free(*p);
}

static void mac_ctx_freep(EVP_MAC_CTX **p)
{
    EVP_MAC_CTX_free(*p);
}

/* Fill err with rc_code (a positive RC_E* value) and return the webhook-specific code. */
static int webhook_reject(rc_error *err, int webhook_code, int rc_code, const char *msg)
{
    rc_error_set(err, rc_code, "%s", msg);
    return -webhook_code;
}

void rc_webhook_headers_from_list(const rc_webhook_header *list, size_t n, rc_webhook_headers *ret)
{
    rc_webhook_headers h = {NULL, NULL, NULL};

    for (size_t i = 0; i < n; i++) {
        const char *name = list[i].name;
        if (!name)
            continue;
        if (strcasecmp(name, "webhook-id") == 0)
            h.id = list[i].value;
        else if (strcasecmp(name, "webhook-timestamp") == 0)
            h.timestamp = list[i].value;
        else if (strcasecmp(name, "webhook-signature") == 0)
            h.signature = list[i].value;
    }
    *ret = h;
}

/* 18.3.3: strip "whsec_", decode standard or URL-safe base64, padding optional. */
static int key_decode(const char *key, webhook_key *ret, rc_error *err)
{
    size_t prefix = strlen(RC_WEBHOOK_KEY_PREFIX), n;
    int r;

    if (!key)
        return webhook_reject(err, RC_WEBHOOK_E_BAD_KEY, RC_EINVAL, "no webhook signing key");
    if (strncmp(key, RC_WEBHOOK_KEY_PREFIX, prefix) == 0)
        key += prefix;
    n = strnlen(key, KEY_TEXT_MAX + 1);
    if (n == 0)
        return webhook_reject(err, RC_WEBHOOK_E_BAD_KEY, RC_EINVAL, "webhook signing key is empty");
    if (n > KEY_TEXT_MAX)
        return webhook_reject(err, RC_WEBHOOK_E_BAD_KEY, RC_EINVAL,
                              "webhook signing key is too long");
    r = rc_base64_decode(key, n, RC_BASE64_ANY_ALPHABET | RC_BASE64_PAD_OPTIONAL, ret->bytes,
                         sizeof ret->bytes, NULL);
    if (r == -RC_ETOOBIG)
        return webhook_reject(err, RC_WEBHOOK_E_BAD_KEY, RC_EINVAL,
                              "webhook signing key is too long");
    if (r <= 0)
        return webhook_reject(err, RC_WEBHOOK_E_BAD_KEY, RC_EINVAL,
                              "webhook signing key is not valid base64");
    ret->len = (size_t)r;
    return 0;
}

int rc_webhook_key_check(const char *key, rc_error *err)
{
    _cleanup_(webhook_key_wipe) webhook_key k = {0};
    return key_decode(key, &k, err);
}

static bool is_ascii_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

int rc_webhook_parse_timestamp(const char *s, int64_t *ret_ts, rc_error *err)
{
    bool neg = false, digits = false, saturated = false;
    uint64_t mag = 0;

    if (!s)
        return webhook_reject(err, RC_WEBHOOK_E_BAD_TIMESTAMP, RC_EAUTH,
                              "webhook-timestamp header missing");
    while (is_ascii_space(*s))
        s++;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        digits = true;
        if (mag > (UINT64_MAX - d) / 10)
            saturated = true;
        else
            mag = mag * 10 + d;
    }
    if (!digits)
        return webhook_reject(err, RC_WEBHOOK_E_BAD_TIMESTAMP, RC_EAUTH,
                              "webhook-timestamp header is not a number");
    if (neg)
        *ret_ts = saturated || mag > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)mag;
    else
        *ret_ts = saturated || mag > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)mag;
    return 0;
}

/* 18.3.4: now - ts > tolerance is too old, ts > now + tolerance too new (overflow-safe). */
static int timestamp_check(int64_t ts, int64_t now, rc_error *err)
{
    int64_t age, limit;

    if (__builtin_sub_overflow(now, ts, &age) ? now > ts : age > RC_WEBHOOK_TOLERANCE_SECONDS)
        return webhook_reject(err, RC_WEBHOOK_E_STALE, RC_EAUTH,
                              "webhook timestamp is more than 300 s old");
    if (!__builtin_add_overflow(now, RC_WEBHOOK_TOLERANCE_SECONDS, &limit) && ts > limit)
        return webhook_reject(err, RC_WEBHOOK_E_FUTURE, RC_EAUTH,
                              "webhook timestamp is more than 300 s in the future");
    return 0;
}

static int mac_update(EVP_MAC_CTX *ctx, const void *p, size_t n)
{
    return n == 0 || EVP_MAC_update(ctx, p, n);
}

/* HMAC-SHA256(key, id "." ts "." body), fed piecewise so the body is never copied. */
static int hmac_signed_content(const webhook_key *k, const char *id, int64_t ts, const void *body,
                               size_t body_len, unsigned char mac[HMAC_LEN], rc_error *err)
{
    _cleanup_(mac_freep) EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    _cleanup_(mac_ctx_freep) EVP_MAC_CTX *ctx = NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    char tsbuf[24];
    int tslen = snprintf(tsbuf, sizeof tsbuf, "%" PRId64, ts);
    size_t outlen = 0;

    if (!alg || !(ctx = EVP_MAC_CTX_new(alg)))
        return rc_error_set(err, RC_ENOMEM, "cannot set up OpenSSL HMAC-SHA256");
    if (!EVP_MAC_init(ctx, k->bytes, k->len, params) || !mac_update(ctx, id, strlen(id)) ||
        !mac_update(ctx, ".", 1) || !mac_update(ctx, tsbuf, (size_t)tslen) ||
        !mac_update(ctx, ".", 1) || !mac_update(ctx, body, body_len) ||
        !EVP_MAC_final(ctx, mac, &outlen, HMAC_LEN) || outlen != HMAC_LEN) {
        explicit_bzero(mac, HMAC_LEN);
        return rc_error_set(err, RC_EIO, "OpenSSL HMAC-SHA256 failed");
    }
    return 0;
}

/* 18.3.6: the base64 (standard, padded) signature text, SIG_B64_LEN characters plus NUL. */
static int expected_signature(const webhook_key *k, const char *id, int64_t ts, const void *body,
                              size_t body_len, char out[SIG_B64_LEN + 1], rc_error *err)
{
    unsigned char mac[HMAC_LEN];
    int r = hmac_signed_content(k, id, ts, body, body_len, mac, err);

    if (r < 0)
        return r;
    r = rc_base64_encode(mac, sizeof mac, RC_BASE64_STD, out, SIG_B64_LEN + 1, err);
    explicit_bzero(mac, sizeof mac);
    return r < 0 ? r : 0;
}

/* One "v<n>,<sig>[,...]" entry [p, end): true when it is v1 and its signature equals expected.
 * Fields past the second comma are ignored, as split(",") destructuring does in the reference. */
static bool entry_matches(const char *p, const char *end, const char *expected)
{
    const char *sig, *sig_end;

    if (end - p < 3 || p[0] != 'v' || p[1] != '1' || p[2] != ',')
        return false;
    sig = p + 3;
    sig_end = memchr(sig, ',', (size_t)(end - sig));
    if (!sig_end)
        sig_end = end;
    return sig_end - sig == SIG_B64_LEN && CRYPTO_memcmp(sig, expected, SIG_B64_LEN) == 0;
}

/* 18.3.7: entries are separated by single spaces (empty entries simply never match). */
static bool signature_list_matches(const char *list, const char *expected)
{
    for (const char *p = list;;) {
        const char *end = strchrnul(p, ' ');
        if (entry_matches(p, end, expected))
            return true;
        if (*end == '\0')
            return false;
        p = end + 1;
    }
}

static int headers_check(const rc_webhook_headers *h, rc_error *err)
{
    const char *missing = NULL;

    if (!h || !h->id || !*h->id)
        missing = "webhook-id";
    else if (!h->timestamp || !*h->timestamp)
        missing = "webhook-timestamp";
    else if (!h->signature || !*h->signature)
        missing = "webhook-signature";
    if (!missing)
        return 0;
    rc_error_set(err, RC_EAUTH, "%s header missing or empty", missing);
    return -RC_WEBHOOK_E_MISSING_HEADER;
}

static int verify_with_key(const rc_webhook_headers *h, const void *body, size_t body_len,
                           const webhook_key *k, int64_t now, rc_error *err)
{
    char expected[SIG_B64_LEN + 1];
    int64_t ts;
    bool match;
    int r;

    r = headers_check(h, err);
    if (r < 0)
        return r;
    r = rc_webhook_parse_timestamp(h->timestamp, &ts, err);
    if (r < 0)
        return r;
    r = timestamp_check(ts, now, err);
    if (r < 0)
        return r;
    r = expected_signature(k, h->id, ts, body, body_len, expected, err);
    if (r < 0)
        return r;
    match = signature_list_matches(h->signature, expected);
    explicit_bzero(expected, sizeof expected);
    if (!match)
        return webhook_reject(err, RC_WEBHOOK_E_NO_MATCH, RC_EAUTH,
                              "no matching webhook signature");
    return 0;
}

int rc_webhook_verify(const rc_webhook_headers *h, const void *body, size_t body_len,
                      const char *key, int64_t now, rc_error *err)
{
    _cleanup_(webhook_key_wipe) webhook_key k = {0};
    int r = key_decode(key, &k, err);

    if (r < 0)
        return r;
    return verify_with_key(h, body, body_len, &k, now, err);
}

int rc_webhook_sign(const char *id, int64_t ts, const void *body, size_t body_len, const char *key,
                    char ret_sig[RC_WEBHOOK_SIGNATURE_SIZE], rc_error *err)
{
    _cleanup_(webhook_key_wipe) webhook_key k = {0};
    char sig[RC_WEBHOOK_SIGNATURE_SIZE] = "v1,";
    int r;

    if (!id || !*id)
        return rc_error_set(err, RC_EINVAL, "webhook id missing or empty");
    r = key_decode(key, &k, err);
    if (r < 0)
        return r;
    r = expected_signature(&k, id, ts, body, body_len, sig + 3, err);
    if (r < 0)
        return r;
    memcpy(ret_sig, sig, sizeof sig);
    return 0;
}

bool rc_webhook_is_rejection(int r)
{
    return r <= -RC_WEBHOOK_E_MISSING_HEADER && r > -RC_WEBHOOK_E_MAX;
}

const char *rc_webhook_strerror(int r)
{
    switch (-r) {
    case RC_WEBHOOK_E_MISSING_HEADER:
        return "Missing required headers";
    case RC_WEBHOOK_E_BAD_KEY:
        return "Invalid signing key";
    case RC_WEBHOOK_E_BAD_TIMESTAMP:
        return "Invalid Signature Headers";
    case RC_WEBHOOK_E_STALE:
        return "Message timestamp too old";
    case RC_WEBHOOK_E_FUTURE:
        return "Message timestamp too new";
    case RC_WEBHOOK_E_NO_MATCH:
        return "No matching signature found";
    default:
        return rc_errcode_name(r);
    }
}

/* ---- Work secrets ---- */

/* A heap copy of secret bytes, wiped when it goes out of scope. */
typedef struct secret_bytes {
    unsigned char *data;
    size_t len;
} secret_bytes;

static void secret_bytes_wipe(secret_bytes *s)
{
    if (s->data) {
        explicit_bzero(s->data, s->len);
        free(s->data);
    }
}

/* Wipe every key and string value of a cJSON tree (the payload carries the token). Recursion
 * depth is bounded by cJSON's nesting limit. */
static void json_wipe_strings(cJSON *node)
{
    for (; node; node = node->next) {
        if (node->string)
            explicit_bzero(node->string, strlen(node->string));
        if (node->valuestring)
            explicit_bzero(node->valuestring, strlen(node->valuestring));
        json_wipe_strings(node->child);
    }
}

static void json_wipe_deletep(cJSON **p)
{
    if (*p) {
        json_wipe_strings(*p);
        cJSON_Delete(*p);
    }
}

/* 4.2 step 3: a copy of the secret with '=' appended up to a multiple of 4. Step 2 (mapping '-'
 * and '_' to '+' and '/') is folded into decoding with both alphabets, which is equivalent. */
static int secret_pad(const char *secret, size_t n, secret_bytes *ret, rc_error *err)
{
    size_t padded = (n + 3) / 4 * 4;
    unsigned char *p = malloc(padded + 1);

    if (!p)
        return rc_error_set(err, RC_ENOMEM, "out of memory decoding work secret");
    memcpy(p, secret, n);
    memset(p + n, '=', padded - n);
    p[padded] = '\0';
    ret->data = p;
    ret->len = padded;
    return 0;
}

/* 4.2 steps 2-4 up to the JSON value. */
static int secret_parse(const char *secret, size_t n, cJSON **ret_root, rc_error *err)
{
    _cleanup_(secret_bytes_wipe) secret_bytes padded = {NULL, 0};
    _cleanup_(secret_bytes_wipe) secret_bytes payload = {NULL, 0};
    cJSON *root;
    int r;

    r = secret_pad(secret, n, &padded, err);
    if (r < 0)
        return r;
    r = rc_base64_decode_alloc((const char *)padded.data, padded.len, RC_BASE64_ANY_ALPHABET,
                               RC_WORKSECRET_PAYLOAD_MAX, &payload.data, &payload.len, NULL);
    if (r == -RC_ETOOBIG)
        return rc_error_set(err, RC_ETOOBIG, "work secret payload exceeds %d bytes",
                            RC_WORKSECRET_PAYLOAD_MAX);
    if (r == -RC_ENOMEM)
        return rc_error_set(err, RC_ENOMEM, "out of memory decoding work secret");
    if (r < 0)
        return rc_error_set(err, RC_EPARSE, "work secret is not valid base64");
    /* A NUL byte is invalid JSON anywhere; cJSON would stop at it. The length passed includes
     * the terminating NUL, which is how cJSON checks that nothing follows the value. */
    if (memchr(payload.data, '\0', payload.len) ||
        !(root = cJSON_ParseWithLengthOpts((const char *)payload.data, payload.len + 1, NULL, 1)))
        return rc_error_set(err, RC_EPARSE, "work secret payload is not JSON");
    *ret_root = root;
    return 0;
}

/* The value of the last member called name (JSON.parse keeps the last of duplicates) when it is a
 * non-empty string. */
static const char *token_member(const cJSON *obj, const char *name)
{
    const cJSON *c, *found = NULL;

    cJSON_ArrayForEach(c, obj)
    {
        if (c->string && strcmp(c->string, name) == 0)
            found = c;
    }
    if (!cJSON_IsString(found) || !found->valuestring || !*found->valuestring)
        return NULL;
    return found->valuestring;
}

/* The token becomes an Authorization header value: no controls, spaces or non-ASCII bytes. */
static bool token_is_visible_ascii(const char *t)
{
    for (; *t; t++)
        if (*t < 0x21 || *t > 0x7e)
            return false;
    return true;
}

int rc_worksecret_decode(const char *secret, unsigned flags, char **ret_token, rc_error *err)
{
    _cleanup_(json_wipe_deletep) cJSON *root = NULL;
    const char *token;
    char *copy;
    size_t n;
    int r;

    if (!secret || !*secret)
        return rc_error_set(err, RC_ENOTFOUND, "work item carries no secret");
    n = strnlen(secret, RC_WORKSECRET_MAX + 1);
    if (n > RC_WORKSECRET_MAX)
        return rc_error_set(err, RC_ETOOBIG, "work secret exceeds %d characters",
                            RC_WORKSECRET_MAX);
    r = secret_parse(secret, n, &root, err);
    if (r < 0)
        return r;
    if (!cJSON_IsObject(root))
        return rc_error_set(err, RC_EPARSE, "work secret payload is not a JSON object");
    token = token_member(root, "sessions_token");
    if (!token && (flags & RC_WORKSECRET_LEGACY))
        token = token_member(root, "session_ingress_token");
    if (!token)
        return rc_error_set(err, RC_EPARSE, "work secret carries no sessions token");
    if (!token_is_visible_ascii(token))
        return rc_error_set(err, RC_EPARSE, "work secret's sessions token has invalid characters");
    copy = strdup(token);
    if (!copy)
        return rc_error_set(err, RC_ENOMEM, "out of memory copying sessions token");
    *ret_token = copy;
    return 0;
}

void rc_worksecret_free(char *token)
{
    if (token) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
}
