/* test_ca.c - the interception pieces without sockets (issue 11): the session CA and its leaves
 * (broker/ca.h), the reflection scanner (broker/scan.h), forwardURL parsing and tokens
 * (broker/policy.h, broker/forward.h) and requests read inside a tunnel (broker/httpreq.h). */
#include "ca.h"
#include "cleanup.h"
#include "forward.h"
#include "harness.h"
#include "httpreq.h"
#include "policy.h"
#include "scan.h"

#include "base64.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the CA ---- */

static X509 *pem_to_cert(const rc_buf *pem)
{
    BIO *b = BIO_new_mem_buf(pem->data, (int)pem->len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return x;
}

static int verify_leaf(X509 *ca, X509 *leaf, const char *host)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok;

    X509_STORE_add_cert(st, ca);
    X509_STORE_CTX_init(ctx, st, leaf, NULL);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    if (strchr(host, '.') && !strchr(host, ':') && host[0] > '9')
        X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), host, 0);
    else
        X509_VERIFY_PARAM_set1_ip_asc(X509_STORE_CTX_get0_param(ctx), host);
    ok = X509_verify_cert(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return ok;
}

TEST(ca_certificate_shape)
{
    _cleanup_(rc_ca_freep) rc_ca *ca = NULL;
    _cleanup_(rc_buf_free) rc_buf pem = RC_BUF_INIT(65536);
    rc_error err = {0};
    char name[256];
    X509 *x;
    time_t now = time(NULL);

    REQUIRE(rc_ca_new("sesn_01ABC", 7200, &ca, &err) == 0);
    REQUIRE(rc_ca_cert_pem(ca, &pem, &err) == 0);
    CHECK(strstr(pem.data, "BEGIN CERTIFICATE") != NULL);
    CHECK(strstr(pem.data, "PRIVATE") == NULL);
    x = pem_to_cert(&pem);
    REQUIRE(x != NULL);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, name, sizeof name);
    CHECK_STR(name, "runcell session CA sesn_01ABC");
    CHECK(X509_check_ca(x) == 1);
    CHECK(X509_get_extension_flags(x) & EXFLAG_CA);
    CHECK_INT(X509_get_pathlen(x), 0);
    CHECK(X509_get_key_usage(x) & KU_KEY_CERT_SIGN);
    CHECK_INT(EVP_PKEY_get_base_id(X509_get0_pubkey(x)), EVP_PKEY_EC);
    CHECK_INT(EVP_PKEY_get_bits(X509_get0_pubkey(x)), 256);
    CHECK(X509_cmp_time(X509_get0_notBefore(x), &now) < 0);
    CHECK(rc_ca_not_after(ca) - (int64_t)now <= 7200 && rc_ca_not_after(ca) - (int64_t)now > 6800);
    X509_free(x);
}

TEST(ca_refuses_bad_arguments)
{
    rc_ca *ca = NULL;
    CHECK_INT(rc_ca_new("", 3600, &ca, NULL), -RC_EINVAL);
    CHECK_INT(rc_ca_new("a\nb", 3600, &ca, NULL), -RC_EINVAL);
    CHECK_INT(rc_ca_new("x", 10, &ca, NULL), -RC_EINVAL);
    CHECK_INT(rc_ca_new("x", (uint64_t)400 * 24 * 3600, &ca, NULL), -RC_EINVAL);
    CHECK(ca == NULL);
}

TEST(ca_leaves_verify_and_are_cached)
{
    _cleanup_(rc_ca_freep) rc_ca *ca = NULL;
    static const char *const hosts[] = {"api.example.com", "203.0.113.7", "2001:db8::1"};
    X509 *leaf = NULL, *again = NULL;
    EVP_PKEY *key = NULL, *key2 = NULL;
    rc_error err = {0};

    REQUIRE(rc_ca_new("t", 3600, &ca, &err) == 0);
    for (size_t i = 0; i < 3; i++) {
        REQUIRE(rc_ca_leaf(ca, hosts[i], &leaf, &key, &err) == 0);
        CHECK(verify_leaf(rc_ca_cert(ca), leaf, hosts[i]) == 1);
        CHECK(X509_check_private_key(leaf, key) == 1);
        CHECK(X509_check_ca(leaf) == 0);
        CHECK(ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(rc_ca_cert(ca))) <= 0);
        X509_free(leaf);
        EVP_PKEY_free(key);
    }
    CHECK_INT(rc_ca_cached_leaves(ca), 3);
    REQUIRE(rc_ca_leaf(ca, "api.example.com", &leaf, &key, &err) == 0);
    REQUIRE(rc_ca_leaf(ca, "api.example.com", &again, &key2, &err) == 0);
    CHECK(leaf == again);
    CHECK_INT(rc_ca_cached_leaves(ca), 3);
    /* a leaf names exactly its host */
    CHECK(verify_leaf(rc_ca_cert(ca), leaf, "other.example.com") != 1);
    X509_free(leaf);
    X509_free(again);
    EVP_PKEY_free(key);
    EVP_PKEY_free(key2);
}

TEST(ca_leaf_refuses_non_hosts)
{
    _cleanup_(rc_ca_freep) rc_ca *ca = NULL;
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    REQUIRE(rc_ca_new("t", 3600, &ca, NULL) == 0);
    CHECK_INT(rc_ca_leaf(ca, "a,DNS:evil.test", &leaf, &key, NULL), -RC_EINVAL);
    CHECK_INT(rc_ca_leaf(ca, "", &leaf, &key, NULL), -RC_EINVAL);
    CHECK_INT(rc_ca_leaf(ca, "UPPER.test", &leaf, &key, NULL), -RC_EINVAL);
    CHECK(leaf == NULL && key == NULL);
}

TEST(ca_two_sessions_do_not_trust_each_other)
{
    _cleanup_(rc_ca_freep) rc_ca *a = NULL;
    _cleanup_(rc_ca_freep) rc_ca *b = NULL;
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    REQUIRE(rc_ca_new("a", 3600, &a, NULL) == 0);
    REQUIRE(rc_ca_new("b", 3600, &b, NULL) == 0);
    REQUIRE(rc_ca_leaf(a, "x.test", &leaf, &key, NULL) == 0);
    CHECK(verify_leaf(rc_ca_cert(b), leaf, "x.test") != 1);
    X509_free(leaf);
    EVP_PKEY_free(key);
}

/* ---- the reflection scanner ---- */

static const char secret[] = "Bearer sk-live-0123456789/abc+def";

static bool found(const rc_scan *s, const char *text)
{
    return rc_scan_find(s, text, strlen(text));
}

TEST(scan_finds_encodings)
{
    rc_scan s;
    const char *v[] = {secret};
    char b64[256], wrapped[300];

    REQUIRE(rc_scan_init(&s, v, 1, NULL) == 0);
    CHECK(found(&s, "{\"authorization\": \"Bearer sk-live-0123456789/abc+def\"}"));
    CHECK(found(&s, "token=sk-live-0123456789/abc+def&x")); /* the credential part alone */
    CHECK(found(&s, "q=Bearer%20sk-live-0123456789%2Fabc%2Bdef"));
    CHECK(found(&s, "q=Bearer+sk-live-0123456789%2fabc%2bdef"));
    CHECK(found(&s, "\"Bearer sk-live-0123456789\\/abc+def\""));
    /* base64 of the value at each offset inside a larger blob, both alphabets */
    for (int pre = 0; pre < 3; pre++)
        for (int url = 0; url < 2; url++) {
            char raw[128];
            int n = snprintf(raw, sizeof raw, "%.*sAuthorization: %s\r\n", pre, "xyz", secret);
            REQUIRE(rc_base64_encode(raw, (size_t)n, url ? RC_BASE64_URL : RC_BASE64_STD, b64,
                                     sizeof b64, NULL) > 0);
            snprintf(wrapped, sizeof wrapped, "{\"data\":\"%s\"}", b64);
            CHECK(found(&s, wrapped));
        }
    CHECK(!found(&s, "Bearer sk-live-0123456789/abc+de"));
    CHECK(!found(&s, "nothing to see here"));
    CHECK(rc_scan_holdback(&s) >= strlen(secret) - 1);
    rc_scan_free(&s);
}

TEST(scan_ignores_short_values)
{
    rc_scan s;
    const char *v[] = {"abc", "x y"};
    REQUIRE(rc_scan_init(&s, v, 2, NULL) == 0);
    CHECK_INT(s.n, 0);
    CHECK(!found(&s, "abc x y"));
    CHECK_INT(rc_scan_holdback(&s), 0);
    rc_scan_free(&s);
}

/* ---- forwardURL ---- */

TEST(forward_url_parse)
{
    rc_policy_rule r = {0};
    rc_error err = {0};

    REQUIRE(rc_policy_forward_url_parse("https://Proxy.Internal.example:8443/f/in", &r, &err) == 0);
    CHECK_STR(r.fwd_host, "proxy.internal.example");
    CHECK_INT(r.fwd_port, 8443);
    CHECK_STR(r.fwd_path, "/f/in");
    CHECK_INT(r.action, RC_POLICY_ACTION_FORWARD);
    free(r.fwd_url);
    free(r.fwd_host);
    free(r.fwd_path);
    r = (rc_policy_rule){0};
    REQUIRE(rc_policy_forward_url_parse("https://[2001:db8::5]", &r, &err) == 0);
    CHECK_STR(r.fwd_host, "2001:db8::5");
    CHECK(r.fwd_host_is_ip);
    CHECK_INT(r.fwd_port, 443);
    CHECK_STR(r.fwd_path, "/");
    free(r.fwd_url);
    free(r.fwd_host);
    free(r.fwd_path);
    r = (rc_policy_rule){0};
    static const char *const bad[] = {
        "http://p.test/",    "https://",         "https://p.test/a#b", "https://p.test:99999/",
        "https://a b.test/", "https://[::1/",    "https://p.test//x",  "https://p_t.test/",
        "HTTPS://p.test/",   "https://p.test:/", "https://[zz]:1/",    "https://p.test/%2e%2e/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (rc_policy_forward_url_parse(bad[i], &r, &err) == 0) {
            rc_test_fail(__FILE__, __LINE__, "accepted %s", bad[i]);
            free(r.fwd_url);
            free(r.fwd_host);
            free(r.fwd_path);
            r = (rc_policy_rule){0};
        }
        CHECK(r.fwd_url == NULL && r.fwd_host == NULL);
    }
}

TEST(forward_policy_parses_and_describes)
{
    _cleanup_(rc_policy_freep) rc_policy *p = NULL;
    _cleanup_(rc_buf_free) rc_buf d = RC_BUF_INIT(65536);
    const char *doc = "{\"allow\":{\"api.test\":[{\"match\":{\"path\":{\"exact\":\"/f\"}},"
                      "\"forwardURL\":\"https://fwd.test/in\"}]}}";
    const rc_policy_domain *dom;
    rc_error err = {0};

    REQUIRE(rc_policy_parse(doc, strlen(doc), &p, &err) == 0);
    dom = rc_policy_domain_at(p, 0);
    REQUIRE(dom && dom->n_rules == 1);
    CHECK_INT(dom->rules[0].action, RC_POLICY_ACTION_FORWARD);
    CHECK_STR(dom->rules[0].fwd_host, "fwd.test");
    REQUIRE(rc_policy_describe(p, &d, NULL) == 0);
    CHECK(strstr(d.data, "\"action\":\"forwardURL\"") != NULL);
}

static void b64url_decode(const char *s, size_t n, char *out, size_t outsz)
{
    int len = rc_base64_decode(s, n, RC_BASE64_URL | RC_BASE64_PAD_OPTIONAL, out, outsz - 1, NULL);
    out[len > 0 ? len : 0] = '\0';
}

TEST(forward_token_is_hs256_jwt)
{
    rc_forward_key k = {.len = 40};
    char tok[RC_FORWARD_TOKEN_MAX], claims[1024], header[128], sig[128];
    unsigned char mac[64];
    unsigned int mac_len = 0;
    const char *d1, *d2;
    int n;

    memset(k.bytes, 'k', k.len);
    n = rc_forward_token(&k, "sesn_1", "https://fwd.test/in", 1700000000, tok, sizeof tok, NULL);
    REQUIRE(n > 0);
    d1 = strchr(tok, '.');
    REQUIRE(d1);
    d2 = strchr(d1 + 1, '.');
    REQUIRE(d2);
    b64url_decode(tok, (size_t)(d1 - tok), header, sizeof header);
    CHECK_STR(header, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
    b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), claims, sizeof claims);
    CHECK(strstr(claims, "\"aud\":\"https://fwd.test/in\"") != NULL);
    CHECK(strstr(claims, "\"sid\":\"sesn_1\"") != NULL);
    CHECK(strstr(claims, "\"iat\":1700000000,\"exp\":1700000300") != NULL);
    HMAC(EVP_sha256(), k.bytes, (int)k.len, (const unsigned char *)tok, (size_t)(d2 - tok), mac,
         &mac_len);
    REQUIRE(rc_base64_encode(mac, mac_len, RC_BASE64_URL | RC_BASE64_NOPAD, sig, sizeof sig, NULL) >
            0);
    CHECK_STR(d2 + 1, sig);
    CHECK(rc_forward_token(&k, "a\"b", "https://x", 1, tok, sizeof tok, NULL) < 0);
}

TEST(forward_key_file_checks)
{
    char dir[] = "/tmp/rc-fwdkey.XXXXXX", path[128];
    rc_forward_key k;
    FILE *f;

    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/key", dir);
    f = fopen(path, "we");
    REQUIRE(f);
    fputs("short\n", f);
    fclose(f);
    chmod(path, 0600);
    CHECK_INT(rc_forward_key_load(path, &k, NULL), -RC_EINVAL);
    f = fopen(path, "we");
    REQUIRE(f);
    fputs("0123456789abcdef0123456789abcdef0123\n", f);
    fclose(f);
    CHECK_INT(rc_forward_key_load(path, &k, NULL), 0);
    CHECK_INT(k.len, 36);
    chmod(path, 0644);
    CHECK_INT(rc_forward_key_load(path, &k, NULL), -RC_EINVAL);
    unlink(path);
    rmdir(dir);
}

/* ---- requests inside a tunnel ---- */

static int parse_inner(const char *head, unsigned port, rc_httpreq *r, int *status, rc_error *err)
{
    return rc_httpreq_parse_origin(head, strlen(head), "api.test", port, r, status, err);
}

TEST(inner_request_parses)
{
    rc_httpreq r;
    rc_error err = {0};
    int st = 0;

    REQUIRE(parse_inner("GET /v1/x?a=1 HTTP/1.1\r\nHost: api.test\r\n\r\n", 443, &r, &st, &err) ==
            1);
    CHECK_INT(r.form, RC_HTTPREQ_ORIGIN);
    CHECK_STR(r.host, "api.test");
    CHECK_INT(r.port, 443);
    CHECK(r.path_len == 5 && strncmp(r.path, "/v1/x", 5) == 0);
    CHECK(r.query_len == 3 && strncmp(r.query, "a=1", 3) == 0);
    rc_httpreq_free(&r);
    REQUIRE(parse_inner("GET / HTTP/1.1\r\nHost: API.test:8443\r\n\r\n", 8443, &r, &st, &err) == 1);
    rc_httpreq_free(&r);
    REQUIRE(parse_inner("GET / HTTP/1.1\r\nHost: api.test:443\r\n\r\n", 443, &r, &st, &err) == 1);
    rc_httpreq_free(&r);
}

TEST(inner_request_refusals)
{
    static const struct {
        const char *head;
        unsigned port;
        int status;
        const char *why;
    } cases[] = {
        {"GET /x HTTP/1.1\r\nHost: other.test\r\n\r\n", 443, 400, "Host header does not match"},
        {"GET /x HTTP/1.1\r\nHost: api.test\r\n\r\n", 8443, 400, "Host header does not match"},
        {"GET /x HTTP/1.1\r\nHost: api.test:8443\r\n\r\n", 443, 400, "Host header does not match"},
        {"GET /x HTTP/1.1\r\n\r\n", 443, 400, "needs a Host header"},
        {"GET /x HTTP/1.1\r\nHost: api.test\r\nHost: api.test\r\n\r\n", 443, 400, "repeated Host"},
        {"GET http://api.test/x HTTP/1.1\r\nHost: api.test\r\n\r\n", 443, 400, "must be /path"},
        {"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test\r\n\r\n", 443, 405, "CONNECT inside"},
        {"GET /a/../b HTTP/1.1\r\nHost: api.test\r\n\r\n", 443, 400, "dot segment"},
        {"TRACE / HTTP/1.1\r\nHost: api.test\r\n\r\n", 443, 405, "TRACE"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rc_httpreq r;
        rc_error err = {0};
        int st = 0;
        int rc = parse_inner(cases[i].head, cases[i].port, &r, &st, &err);
        if (rc == 1) {
            rc_test_fail(__FILE__, __LINE__, "case %zu accepted", i);
            rc_httpreq_free(&r);
            continue;
        }
        CHECK(rc < 0);
        CHECK_INT(st, cases[i].status);
        if (!strstr(err.msg, cases[i].why))
            rc_test_fail(__FILE__, __LINE__, "case %zu: %s", i, err.msg);
    }
}
