/* fuzz_webhook.c - libFuzzer target for webhook header parsing and verification, and for work
 * secret decoding.
 *
 * Input: "key\nid\ntimestamp\nsignature\nbody" (missing fields are absent headers; an empty key
 * field uses the 18.4 test vector's key). The clock is set near the parsed timestamp so the
 * HMAC path is reached. Checks: verify returns 0 or a rejection code (never anything else but
 * ENOMEM); an accepted message's signature header contains what rc_webhook_sign produces;
 * appending that signature to any header makes a timely message verify. The whole input is also
 * decoded as a work secret; a token, when produced, is non-empty visible ASCII. */
#include "webhook.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define VKEY "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

/* Copy of the next '\n'-terminated field as a C string, or NULL at the end of input. */
static char *next_field(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl;
    char *s;
    size_t n;

    if (*p > end)
        return NULL;
    nl = memchr(*p, '\n', (size_t)(end - *p));
    n = (size_t)((nl ? nl : end) - *p);
    s = malloc(n + 1);
    CHECK(s);
    memcpy(s, *p, n);
    s[n] = '\0';
    *p = nl ? nl + 1 : end + 1;
    return s;
}

static void check_sign_then_verify(rc_webhook_headers h, const void *body, size_t body_len,
                                   const char *key, int64_t now, int verdict)
{
    char sig[RC_WEBHOOK_SIGNATURE_SIZE], *both;
    int64_t ts;
    size_t n;

    if (rc_webhook_parse_timestamp(h.timestamp, &ts, NULL) < 0 ||
        rc_webhook_sign(h.id, ts, body, body_len, key, sig, NULL) < 0)
        return;
    if (verdict == 0)
        CHECK(strstr(h.signature, sig + 3) != NULL);
    n = strlen(h.signature) + sizeof sig + 1;
    both = malloc(n);
    CHECK(both);
    memcpy(both, h.signature, strlen(h.signature));
    both[strlen(h.signature)] = ' ';
    memcpy(both + strlen(h.signature) + 1, sig, sizeof sig);
    h.signature = both;
    CHECK(rc_webhook_verify(&h, body, body_len, key, now, NULL) == 0);
    free(both);
}

static void fuzz_verify(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    char *key = next_field(&p, end);
    char *id = next_field(&p, end);
    char *ts = next_field(&p, end);
    char *sig = next_field(&p, end);
    const char *use_key = key && *key ? key : VKEY;
    rc_webhook_headers h = {id, ts, sig};
    const void *body = p <= end ? p : end;
    size_t body_len = p <= end ? (size_t)(end - p) : 0;
    int64_t parsed = 0, now = 1614265330;
    int r;

    if (ts && rc_webhook_parse_timestamp(ts, &parsed, NULL) == 0 && parsed > INT64_MIN / 2 &&
        parsed < INT64_MAX / 2)
        now = parsed + (int64_t)(body_len % 601) - 300;
    r = rc_webhook_verify(&h, body, body_len, use_key, now, NULL);
    CHECK(r == 0 || rc_webhook_is_rejection(r) || r == -RC_ENOMEM);
    if (id && *id && ts && *ts && sig && *sig && (r == 0 || r == -RC_WEBHOOK_E_NO_MATCH))
        check_sign_then_verify(h, body, body_len, use_key, now, r);
    free(key);
    free(id);
    free(ts);
    free(sig);
}

static void fuzz_header_list(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"webhook-id", "Webhook-Timestamp", "WEBHOOK-SIGNATURE",
                                        "webhook-ids", "x"};
    rc_webhook_header list[8];
    rc_webhook_headers h;
    size_t n = size < 8 ? size : 8;

    for (size_t i = 0; i < n; i++) {
        list[i].name = names[data[i] % 5];
        list[i].value = names[(data[i] >> 3) % 5];
    }
    rc_webhook_headers_from_list(list, n, &h);
    CHECK(!h.id || strcmp(h.id, "x") == 0 || strchr(h.id, '-'));
}

static void fuzz_worksecret(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1), *token = NULL;
    int r;

    CHECK(s);
    memcpy(s, data, size);
    s[size] = '\0';
    r = rc_worksecret_decode(s, size && (data[0] & 1) ? RC_WORKSECRET_LEGACY : 0, &token, NULL);
    if (r == 0) {
        CHECK(token && *token);
        for (const char *t = token; *t; t++)
            CHECK(*t > 0x20 && *t < 0x7f);
        rc_worksecret_free(token);
    } else {
        CHECK(token == NULL);
        CHECK(r == -RC_ENOTFOUND || r == -RC_EPARSE || r == -RC_ETOOBIG || r == -RC_ENOMEM);
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_verify(data, size);
    fuzz_header_list(data, size);
    fuzz_worksecret(data, size);
    return 0;
}
