/* test_webhook.c - Standard Webhooks verification (protocol.md 18.3/18.4) with an injected
 * clock, signing, header lookup, and work secret decoding (4.2). */
#include "base64.h"
#include "cleanup.h"
#include "harness.h"
#include "webhook.h"

#include <openssl/rand.h>
#include <stdint.h>
#include <time.h>

/* 18.4: the official Standard Webhooks test vector. */
#define VKEY  "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define VID   "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define VTS   "1614265330"
#define VNOW  1614265330
#define VBODY "{\"test\": 2432232314}"
#define VSIG  "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static int verify_vector(const char *id, const char *ts, const char *sig, const char *body,
                         int64_t now)
{
    rc_webhook_headers h = {id, ts, sig};
    return rc_webhook_verify(&h, body, strlen(body), VKEY, now, NULL);
}

TEST(official_vector_accepted_with_injected_clock)
{
    rc_error err = {0};
    rc_webhook_headers h = {VID, VTS, VSIG};
    CHECK_INT(rc_webhook_verify(&h, VBODY, strlen(VBODY), VKEY, VNOW, &err), 0);
    CHECK_INT(err.code, 0);
}

TEST(official_vector_signed)
{
    char sig[RC_WEBHOOK_SIGNATURE_SIZE];
    CHECK_INT(rc_webhook_sign(VID, VNOW, VBODY, strlen(VBODY), VKEY, sig, NULL), 0);
    CHECK_STR(sig, VSIG);
}

TEST(official_vector_too_old_with_real_clock)
{
    CHECK_INT(verify_vector(VID, VTS, VSIG, VBODY, (int64_t)time(NULL)), -RC_WEBHOOK_E_STALE);
}

TEST(bogus_v1_entry_before_valid_one_accepted)
{
    CHECK_INT(verify_vector(VID, VTS, "v1,Ym9ndXM= " VSIG, VBODY, VNOW), 0);
    CHECK_INT(verify_vector(VID, VTS, "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v1a,x " VSIG,
                            VBODY, VNOW),
              0);
    /* Empty entries from doubled or trailing spaces are skipped. */
    CHECK_INT(verify_vector(VID, VTS, "v1,Ym9ndXM=  " VSIG " ", VBODY, VNOW), 0);
}

TEST(v2_entry_with_right_value_rejected)
{
    CHECK_INT(
        verify_vector(VID, VTS, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", VBODY, VNOW),
        -RC_WEBHOOK_E_NO_MATCH);
    CHECK_INT(
        verify_vector(VID, VTS, "V1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", VBODY, VNOW),
        -RC_WEBHOOK_E_NO_MATCH);
    CHECK_INT(
        verify_vector(VID, VTS, "v1 ,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", VBODY, VNOW),
        -RC_WEBHOOK_E_NO_MATCH);
    CHECK_INT(verify_vector(VID, VTS, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", VBODY, VNOW),
              -RC_WEBHOOK_E_NO_MATCH);
}

TEST(extra_fields_after_signature_ignored_like_reference)
{
    /* split(",") destructuring keeps the first two fields. */
    CHECK_INT(verify_vector(VID, VTS, VSIG ",extra", VBODY, VNOW), 0);
}

TEST(one_byte_body_change_rejected)
{
    CHECK_INT(verify_vector(VID, VTS, VSIG, "{\"test\": 2432232315}", VNOW),
              -RC_WEBHOOK_E_NO_MATCH);
    CHECK_INT(verify_vector(VID, VTS, VSIG, "{\"test\":2432232314}", VNOW), -RC_WEBHOOK_E_NO_MATCH);
    CHECK_INT(verify_vector(VID, VTS, VSIG, VBODY " ", VNOW), -RC_WEBHOOK_E_NO_MATCH);
    CHECK_INT(verify_vector(VID, VTS, VSIG, "", VNOW), -RC_WEBHOOK_E_NO_MATCH);
}

TEST(tampered_id_timestamp_signature_rejected)
{
    CHECK_INT(verify_vector("msg_p5jXN8AQM9LWM0D4loKWxJeK", VTS, VSIG, VBODY, VNOW),
              -RC_WEBHOOK_E_NO_MATCH);
    CHECK_INT(verify_vector(VID, "1614265331", VSIG, VBODY, VNOW), -RC_WEBHOOK_E_NO_MATCH);
    CHECK_INT(
        verify_vector(VID, VTS, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=", VBODY, VNOW),
        -RC_WEBHOOK_E_NO_MATCH);
    /* Truncated, extended, or without padding: different lengths never match. */
    CHECK_INT(
        verify_vector(VID, VTS, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE", VBODY, VNOW),
        -RC_WEBHOOK_E_NO_MATCH);
    CHECK_INT(verify_vector(VID, VTS, VSIG "=", VBODY, VNOW), -RC_WEBHOOK_E_NO_MATCH);
    /* The URL-safe spelling of a signature is not the signature. */
    CHECK_INT(
        verify_vector(VID, VTS, "v1,g0hM9SsE-OTPJTGt_tmIKtSyZlE3uFJELVlNIOLJ1OE=", VBODY, VNOW),
        -RC_WEBHOOK_E_NO_MATCH);
}

TEST(timestamp_window_edges)
{
    CHECK_INT(verify_vector(VID, VTS, VSIG, VBODY, VNOW + 300), 0);
    CHECK_INT(verify_vector(VID, VTS, VSIG, VBODY, VNOW + 301), -RC_WEBHOOK_E_STALE);
    CHECK_INT(verify_vector(VID, VTS, VSIG, VBODY, VNOW - 300), 0);
    CHECK_INT(verify_vector(VID, VTS, VSIG, VBODY, VNOW - 301), -RC_WEBHOOK_E_FUTURE);
}

TEST(timestamp_checked_before_signature)
{
    /* A stale message is reported as stale even with a wrong signature (reference order). */
    CHECK_INT(verify_vector(VID, VTS, "v1,bogus", VBODY, VNOW + 1000), -RC_WEBHOOK_E_STALE);
    CHECK_INT(verify_vector(VID, "soon", "v1,bogus", VBODY, VNOW), -RC_WEBHOOK_E_BAD_TIMESTAMP);
}

TEST(missing_or_empty_headers_rejected)
{
    rc_error err = {0};
    CHECK_INT(verify_vector(NULL, VTS, VSIG, VBODY, VNOW), -RC_WEBHOOK_E_MISSING_HEADER);
    CHECK_INT(verify_vector("", VTS, VSIG, VBODY, VNOW), -RC_WEBHOOK_E_MISSING_HEADER);
    CHECK_INT(verify_vector(VID, NULL, VSIG, VBODY, VNOW), -RC_WEBHOOK_E_MISSING_HEADER);
    CHECK_INT(verify_vector(VID, "", VSIG, VBODY, VNOW), -RC_WEBHOOK_E_MISSING_HEADER);
    CHECK_INT(verify_vector(VID, VTS, NULL, VBODY, VNOW), -RC_WEBHOOK_E_MISSING_HEADER);
    CHECK_INT(verify_vector(VID, VTS, "", VBODY, VNOW), -RC_WEBHOOK_E_MISSING_HEADER);
    CHECK_INT(rc_webhook_verify(NULL, VBODY, strlen(VBODY), VKEY, VNOW, &err),
              -RC_WEBHOOK_E_MISSING_HEADER);
    CHECK_INT(err.code, RC_EAUTH);
    CHECK(strstr(err.msg, "webhook-id") != NULL);
}

TEST(bad_keys_rejected_without_leaking_them)
{
    static const char *const bad[] = {"",
                                      "whsec_",
                                      "whsec_!!!!",
                                      "whsec_MfKQ9r8GKYqrTwjU PD8ILP",
                                      "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
                                      "whsec_=",
                                      "whsec_A",
                                      "whsec_MfKQ9r8G====",
                                      "secret_MfKQ9r8GKYqr!"};
    rc_webhook_headers h = {VID, VTS, VSIG};
    rc_error err = {0};
    char big[2048];

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int r = rc_webhook_verify(&h, VBODY, strlen(VBODY), bad[i], VNOW, &err);
        if (r != -RC_WEBHOOK_E_BAD_KEY || err.code != RC_EINVAL)
            rc_test_fail(__FILE__, __LINE__, "key #%zu: %d", i, r);
        if (strlen(bad[i]) > 8 && strstr(err.msg, bad[i] + 6))
            rc_test_fail(__FILE__, __LINE__, "key #%zu leaked into \"%s\"", i, err.msg);
        CHECK_INT(rc_webhook_key_check(bad[i], NULL), -RC_WEBHOOK_E_BAD_KEY);
    }
    CHECK_INT(rc_webhook_verify(&h, VBODY, strlen(VBODY), NULL, VNOW, NULL), -RC_WEBHOOK_E_BAD_KEY);
    /* Longer than RC_WEBHOOK_KEY_MAX bytes once decoded. */
    memset(big, 'A', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_INT(rc_webhook_key_check(big, NULL), -RC_WEBHOOK_E_BAD_KEY);
    CHECK_INT(rc_webhook_key_check(VKEY, NULL), 0);
}

TEST(key_checked_first_like_reference)
{
    CHECK_INT(
        rc_webhook_verify(&(rc_webhook_headers){NULL, NULL, NULL}, "", 0, "whsec_!", VNOW, NULL),
        -RC_WEBHOOK_E_BAD_KEY);
}

TEST(key_alphabets_and_padding)
{
    /* 32 bytes whose standard base64 has '+', '/' and '=' padding. */
    static const char std_key[] = "whsec_+/+/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaG/8=";
    static const char url_key[] = "whsec_-_-_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaG_8";
    static const char bare_key[] = "+/+/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaG/8";
    char sig[RC_WEBHOOK_SIGNATURE_SIZE], sig2[RC_WEBHOOK_SIGNATURE_SIZE];
    rc_webhook_headers h = {VID, VTS, sig};

    REQUIRE(rc_webhook_sign(VID, VNOW, VBODY, strlen(VBODY), std_key, sig, NULL) == 0);
    CHECK_INT(rc_webhook_verify(&h, VBODY, strlen(VBODY), std_key, VNOW, NULL), 0);
    CHECK_INT(rc_webhook_verify(&h, VBODY, strlen(VBODY), url_key, VNOW, NULL), 0);
    CHECK_INT(rc_webhook_verify(&h, VBODY, strlen(VBODY), bare_key, VNOW, NULL), 0);
    REQUIRE(rc_webhook_sign(VID, VNOW, VBODY, strlen(VBODY), url_key, sig2, NULL) == 0);
    CHECK_STR(sig, sig2);
    /* The vector's key without the prefix. */
    h.signature = VSIG;
    CHECK_INT(
        rc_webhook_verify(&h, VBODY, strlen(VBODY), "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", VNOW, NULL),
        0);
}

TEST(leading_zero_and_lenient_timestamps)
{
    char sig[RC_WEBHOOK_SIGNATURE_SIZE];
    static const char *const same[] = {
        "0123", "123", " 123", "\t123abc", "+123", "123.9", "00000000000000000000000123"};
    REQUIRE(rc_webhook_sign("msg_1", 123, "{}", 2, VKEY, sig, NULL) == 0);
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        rc_webhook_headers h = {"msg_1", same[i], sig};
        int r = rc_webhook_verify(&h, "{}", 2, VKEY, 123, NULL);
        if (r != 0)
            rc_test_fail(__FILE__, __LINE__, "timestamp \"%s\": %d", same[i], r);
    }
    /* "-0" is the number 0, printed "0". */
    REQUIRE(rc_webhook_sign("msg_1", 0, "{}", 2, VKEY, sig, NULL) == 0);
    {
        rc_webhook_headers h = {"msg_1", "-0", sig};
        CHECK_INT(rc_webhook_verify(&h, "{}", 2, VKEY, 0, NULL), 0);
    }
}

TEST(non_numeric_timestamps_rejected)
{
    static const char *const bad[] = {"abc", " ", "-", "+", "+-1", "- 1", "x123", "x0", "\xc2\xa0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int r = verify_vector(VID, bad[i], VSIG, VBODY, VNOW);
        if (r != -RC_WEBHOOK_E_BAD_TIMESTAMP)
            rc_test_fail(__FILE__, __LINE__, "timestamp \"%s\": %d", bad[i], r);
    }
}

TEST(timestamp_parse_saturates)
{
    int64_t ts = 0;
    CHECK_INT(rc_webhook_parse_timestamp("99999999999999999999999", &ts, NULL), 0);
    CHECK(ts == INT64_MAX);
    CHECK_INT(rc_webhook_parse_timestamp("-99999999999999999999999", &ts, NULL), 0);
    CHECK(ts == INT64_MIN);
    CHECK_INT(rc_webhook_parse_timestamp("-9223372036854775808", &ts, NULL), 0);
    CHECK(ts == INT64_MIN);
    CHECK_INT(rc_webhook_parse_timestamp("9223372036854775807", &ts, NULL), 0);
    CHECK(ts == INT64_MAX);
    CHECK_INT(rc_webhook_parse_timestamp("-42", &ts, NULL), 0);
    CHECK_INT(ts, -42);
    /* Window arithmetic at the extremes does not overflow. */
    CHECK_INT(verify_vector(VID, "-99999999999999999999", VSIG, VBODY, INT64_MAX),
              -RC_WEBHOOK_E_STALE);
    CHECK_INT(verify_vector(VID, "99999999999999999999", VSIG, VBODY, INT64_MIN),
              -RC_WEBHOOK_E_FUTURE);
    CHECK_INT(verify_vector(VID, "99999999999999999999", VSIG, VBODY, VNOW), -RC_WEBHOOK_E_FUTURE);
    CHECK_INT(verify_vector(VID, "-1", VSIG, VBODY, VNOW), -RC_WEBHOOK_E_STALE);
}

TEST(mixed_case_header_lookup)
{
    static const rc_webhook_header list[] = {
        {"Content-Type", "application/json"}, {"Webhook-Id", VID}, {"WEBHOOK-TIMESTAMP", VTS},
        {"webhook-Signature", VSIG},          {NULL, "ignored"},   {"webhook-idx", "not it"},
    };
    rc_webhook_headers h;
    rc_webhook_headers_from_list(list, sizeof list / sizeof *list, &h);
    CHECK_STR(h.id, VID);
    CHECK_STR(h.timestamp, VTS);
    CHECK_STR(h.signature, VSIG);
    CHECK_INT(rc_webhook_verify(&h, VBODY, strlen(VBODY), VKEY, VNOW, NULL), 0);
}

TEST(header_lookup_last_duplicate_wins_and_absent_is_null)
{
    static const rc_webhook_header list[] = {
        {"webhook-id", "first"},
        {"WEBHOOK-ID", "second"},
    };
    rc_webhook_headers h;
    rc_webhook_headers_from_list(list, 2, &h);
    CHECK_STR(h.id, "second");
    CHECK(h.timestamp == NULL && h.signature == NULL);
    rc_webhook_headers_from_list(NULL, 0, &h);
    CHECK(h.id == NULL);
}

TEST(sign_verify_round_trip_random)
{
    for (int i = 0; i < 50; i++) {
        unsigned char rawkey[32], body[300];
        char key[64] = "whsec_", id[32], sig[RC_WEBHOOK_SIGNATURE_SIZE], ts[24];
        size_t body_len = (size_t)i * 6;
        int64_t when = 1700000000 + i;
        rc_webhook_headers h = {id, ts, sig};

        REQUIRE(RAND_bytes(rawkey, sizeof rawkey) == 1 && RAND_bytes(body, sizeof body) == 1);
        REQUIRE(rc_base64_encode(rawkey, sizeof rawkey, RC_BASE64_STD, key + 6, sizeof key - 6,
                                 NULL) == 44);
        snprintf(id, sizeof id, "msg_%d", i);
        snprintf(ts, sizeof ts, "%lld", (long long)when);
        REQUIRE(rc_webhook_sign(id, when, body, body_len, key, sig, NULL) == 0);
        CHECK_INT(strlen(sig), RC_WEBHOOK_SIGNATURE_SIZE - 1);
        CHECK_INT(rc_webhook_verify(&h, body, body_len, key, when + i, NULL), 0);
        if (body_len) {
            body[body_len / 2] ^= 1;
            CHECK_INT(rc_webhook_verify(&h, body, body_len, key, when, NULL),
                      -RC_WEBHOOK_E_NO_MATCH);
        }
    }
}

TEST(sign_rejects_empty_id_and_bad_key)
{
    char sig[RC_WEBHOOK_SIGNATURE_SIZE] = "untouched";
    CHECK_INT(rc_webhook_sign("", VNOW, "", 0, VKEY, sig, NULL), -RC_EINVAL);
    CHECK_INT(rc_webhook_sign(NULL, VNOW, "", 0, VKEY, sig, NULL), -RC_EINVAL);
    CHECK_INT(rc_webhook_sign("id", VNOW, "", 0, "whsec_", sig, NULL), -RC_WEBHOOK_E_BAD_KEY);
    CHECK_STR(sig, "untouched");
}

TEST(error_codes_are_distinct_and_named)
{
    static const int codes[] = {RC_WEBHOOK_E_MISSING_HEADER, RC_WEBHOOK_E_BAD_KEY,
                                RC_WEBHOOK_E_BAD_TIMESTAMP,  RC_WEBHOOK_E_STALE,
                                RC_WEBHOOK_E_FUTURE,         RC_WEBHOOK_E_NO_MATCH};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        CHECK(codes[i] >= RC_ERRCODE_MAX);
        CHECK(rc_webhook_is_rejection(-codes[i]));
        for (size_t j = 0; j < i; j++)
            CHECK(codes[i] != codes[j] &&
                  strcmp(rc_webhook_strerror(-codes[i]), rc_webhook_strerror(-codes[j])) != 0);
    }
    CHECK(!rc_webhook_is_rejection(0));
    CHECK(!rc_webhook_is_rejection(-RC_EAUTH));
    CHECK(!rc_webhook_is_rejection(-RC_ENOMEM));
    CHECK_STR(rc_webhook_strerror(-RC_WEBHOOK_E_NO_MATCH), "No matching signature found");
    CHECK_STR(rc_webhook_strerror(-RC_WEBHOOK_E_STALE), "Message timestamp too old");
    CHECK_STR(rc_webhook_strerror(-RC_ENOMEM), "ENOMEM");
    CHECK_STR(rc_webhook_strerror(0), "OK");
}

/* ---- Work secrets ---- */

/* payload -> unpadded (or padded) base64url, as the server (and the emulator, 4.4.1) does. */
static const char *secret_of(const char *payload, unsigned flags)
{
    static char out[RC_WORKSECRET_MAX * 2];
    if (rc_base64_encode(payload, strlen(payload), flags, out, sizeof out, NULL) < 0)
        return "";
    return out;
}

static int decode_token(const char *secret, unsigned flags, char **ret_token)
{
    return rc_worksecret_decode(secret, flags, ret_token, NULL);
}

#define PAYLOAD "{\"sessions_token\":\"sk-ant-req-abc\",\"api_base_url\":\"https://x.test\"}"

TEST(worksecret_unpadded_and_padded)
{
    _cleanup_(rc_worksecret_freep) char *t1 = NULL;
    _cleanup_(rc_worksecret_freep) char *t2 = NULL;
    _cleanup_(rc_worksecret_freep) char *t3 = NULL;
    CHECK_INT(decode_token(secret_of(PAYLOAD, RC_BASE64_URL | RC_BASE64_NOPAD), 0, &t1), 0);
    CHECK_STR(t1, "sk-ant-req-abc");
    CHECK_INT(decode_token(secret_of(PAYLOAD, RC_BASE64_URL), 0, &t2), 0);
    CHECK_STR(t2, "sk-ant-req-abc");
    /* Standard alphabet too (step 2 maps URL-safe onto it). */
    CHECK_INT(decode_token(secret_of(PAYLOAD, RC_BASE64_STD), 0, &t3), 0);
    CHECK_STR(t3, "sk-ant-req-abc");
}

TEST(worksecret_payload_with_url_safe_characters)
{
    /* "?\?>" encodes to "Pz8-" in base64url: exercises '-' and '_' mapping. */
    _cleanup_(rc_worksecret_freep) char *t = NULL;
    const char *s = secret_of("{\"x\":\"?\?>?\?\",\"sessions_token\":\"tok_1\"}",
                              RC_BASE64_URL | RC_BASE64_NOPAD);
    CHECK(strpbrk(s, "-_") != NULL);
    CHECK_INT(decode_token(s, 0, &t), 0);
    CHECK_STR(t, "tok_1");
}

TEST(worksecret_absent_is_notfound)
{
    char *t = NULL;
    rc_error err = {0};
    CHECK_INT(rc_worksecret_decode(NULL, 0, &t, &err), -RC_ENOTFOUND);
    CHECK_INT(err.code, RC_ENOTFOUND);
    CHECK_INT(decode_token("", 0, &t), -RC_ENOTFOUND);
    CHECK(t == NULL);
}

TEST(worksecret_bad_base64)
{
    static const char *const bad[] = {"!!!!", "a", "abcde", "eyJ9 ", "eyJ\n9", "e===", "eyJ9=x"};
    char *t = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_INT(decode_token(bad[i], 0, &t), -RC_EPARSE);
    CHECK(t == NULL);
}

TEST(worksecret_not_an_object)
{
    static const char *const bad[] = {"[1]",
                                      "null",
                                      "\"sk-ant-req-abc\"",
                                      "42",
                                      "true",
                                      "[{\"sessions_token\":\"x\"}]",
                                      "hello",
                                      "{\"sessions_token\":\"x\"} trailing",
                                      "{\"sessions_token\":\"x\"",
                                      ""};
    char *t = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *s = secret_of(bad[i], RC_BASE64_URL | RC_BASE64_NOPAD);
        int r = *s ? decode_token(s, 0, &t) : -RC_EPARSE;
        if (r != -RC_EPARSE)
            rc_test_fail(__FILE__, __LINE__, "payload \"%s\": %d", bad[i], r);
    }
    CHECK(t == NULL);
}

TEST(worksecret_missing_empty_or_wrong_type_token)
{
    static const char *const bad[] = {
        "{}",
        "{\"sessions_token\":\"\"}",
        "{\"sessions_token\":null}",
        "{\"sessions_token\":42}",
        "{\"sessions_token\":[\"x\"]}",
        "{\"api_base_url\":\"https://x.test\"}",
        "{\"Sessions_Token\":\"x\"}",
        "{\"sessions_token\":\"x\",\"sessions_token\":5}", /* last duplicate wins */
        "{\"sessions_token\":\"sk ant\"}",                 /* not a header-safe token */
        "{\"sessions_token\":\"sk\\r\\nX-Evil: 1\"}",
        "{\"sessions_token\":\"sk-\\u00e9\"}",
    };
    char *t = NULL;
    rc_error err = {0};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int r =
            rc_worksecret_decode(secret_of(bad[i], RC_BASE64_URL | RC_BASE64_NOPAD), 0, &t, &err);
        if (r != -RC_EPARSE)
            rc_test_fail(__FILE__, __LINE__, "payload %s: %d", bad[i], r);
    }
    CHECK(t == NULL);
}

TEST(worksecret_duplicate_token_last_wins)
{
    _cleanup_(rc_worksecret_freep) char *t = NULL;
    CHECK_INT(decode_token(
                  secret_of("{\"sessions_token\":\"a1\",\"sessions_token\":\"b2\"}", RC_BASE64_URL),
                  0, &t),
              0);
    CHECK_STR(t, "b2");
}

TEST(worksecret_legacy_field_only_with_flag)
{
    _cleanup_(rc_worksecret_freep) char *t = NULL;
    _cleanup_(rc_worksecret_freep) char *t2 = NULL;
    char legacy[256], both[256];
    snprintf(legacy, sizeof legacy, "%s",
             secret_of("{\"version\":1,\"session_ingress_token\":\"sk-ant-si-old\"}",
                       RC_BASE64_URL | RC_BASE64_NOPAD));
    snprintf(both, sizeof both, "%s",
             secret_of("{\"session_ingress_token\":\"old\",\"sessions_token\":\"new\"}",
                       RC_BASE64_URL | RC_BASE64_NOPAD));
    CHECK_INT(decode_token(legacy, 0, &t), -RC_EPARSE);
    CHECK(t == NULL);
    CHECK_INT(decode_token(legacy, RC_WORKSECRET_LEGACY, &t), 0);
    CHECK_STR(t, "sk-ant-si-old");
    CHECK_INT(decode_token(both, RC_WORKSECRET_LEGACY, &t2), 0);
    CHECK_STR(t2, "new");
}

TEST(worksecret_size_caps)
{
    static char payload[RC_WORKSECRET_PAYLOAD_MAX + 64];
    static char secret[RC_WORKSECRET_MAX + 2];
    char *t = NULL;
    size_t n;

    /* A payload just over 8 KiB. */
    n = (size_t)snprintf(payload, sizeof payload, "{\"sessions_token\":\"t\",\"pad\":\"");
    memset(payload + n, 'x', RC_WORKSECRET_PAYLOAD_MAX - n);
    snprintf(payload + RC_WORKSECRET_PAYLOAD_MAX - 2, 64, "\"}");
    CHECK_INT(strlen(payload), RC_WORKSECRET_PAYLOAD_MAX);
    CHECK_INT(decode_token(secret_of(payload, RC_BASE64_URL | RC_BASE64_NOPAD), 0, &t), 0);
    rc_worksecret_free(t);
    t = NULL;
    snprintf(payload + RC_WORKSECRET_PAYLOAD_MAX - 2, 64, "x\"}");
    CHECK_INT(decode_token(secret_of(payload, RC_BASE64_URL | RC_BASE64_NOPAD), 0, &t),
              -RC_ETOOBIG);
    /* An encoded secret over its own cap. */
    memset(secret, 'A', sizeof secret - 1);
    secret[sizeof secret - 1] = '\0';
    CHECK_INT(decode_token(secret, 0, &t), -RC_ETOOBIG);
    CHECK(t == NULL);
}

TEST(worksecret_nul_in_payload_rejected)
{
    static const char payload[] = "{\"sessions_token\":\"t\"}\0";
    char enc[64], *t = NULL;
    REQUIRE(rc_base64_encode(payload, sizeof payload - 1, RC_BASE64_URL | RC_BASE64_NOPAD, enc,
                             sizeof enc, NULL) > 0);
    CHECK_INT(decode_token(enc, 0, &t), -RC_EPARSE);
}

TEST(worksecret_error_messages_never_hold_the_token)
{
    rc_error err = {0};
    char *t = NULL;
    /* A token that is refused (space) must not be echoed. */
    CHECK_INT(rc_worksecret_decode(secret_of("{\"sessions_token\":\"sk-ant-req-SECRET x\"}",
                                             RC_BASE64_URL | RC_BASE64_NOPAD),
                                   0, &t, &err),
              -RC_EPARSE);
    CHECK(strstr(err.msg, "SECRET") == NULL);
}
