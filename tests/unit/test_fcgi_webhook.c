/* test_fcgi_webhook.c - the pure part of runcell-fcgi's webhook route (fcgi/webhook_handler.c):
 * FastCGI parameter lookup, strict CONTENT_LENGTH, the request path, duplicate webhook headers
 * (repeated parameters as nginx 1.22 passes them, and comma-joined values as newer nginx does),
 * verification outcomes (401 for every refusal, with the reason), envelope parsing (400),
 * ignored types (200) and the verdict fields. The clock is injected (protocol 18.4.1). */
#include "harness.h"
#include "webhook.h"
#include "webhook_handler.h"

#include <stdio.h>
#include <string.h>

#define KEY "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define NOW 1700000000LL

static char sig[RC_WEBHOOK_SIGNATURE_SIZE];
static char sigp[128], idp[160], tsp[64];

static const char *body_for(const char *type)
{
    static char b[512];
    snprintf(b, sizeof b,
             "{\"type\":\"event\",\"id\":\"whe_1\",\"created_at\":\"2026-05-01T12:00:00Z\","
             "\"data\":{\"type\":\"%s\",\"id\":\"sesn_Abc1\",\"organization_id\":\"o\"}}",
             type);
    return b;
}

/* Sign body as whe_1 at NOW and set the three parameter strings. */
static void sign_params(const char *id, const char *body)
{
    REQUIRE(rc_webhook_sign(id, NOW, body, strlen(body), KEY, sig, NULL) == 0);
    snprintf(sigp, sizeof sigp, "HTTP_WEBHOOK_SIGNATURE=%s", sig);
    snprintf(idp, sizeof idp, "HTTP_WEBHOOK_ID=%s", id);
    snprintf(tsp, sizeof tsp, "HTTP_WEBHOOK_TIMESTAMP=%lld", NOW);
}

static rc_fcgi_wh_verdict inspect(char **envp, const char *body)
{
    rc_fcgi_wh_verdict v;
    rc_fcgi_webhook_inspect(envp, body, strlen(body), KEY, NOW, &v);
    return v;
}

TEST(params)
{
    char *envp[] = {"A=1", "AB=2", "A=3", "EMPTY=", NULL};
    CHECK_STR(rc_fcgi_param(envp, "A"), "1");
    CHECK_STR(rc_fcgi_param(envp, "AB"), "2");
    CHECK_STR(rc_fcgi_param(envp, "EMPTY"), "");
    CHECK(rc_fcgi_param(envp, "B") == NULL);
    CHECK_INT(rc_fcgi_param_count(envp, "A"), 2);
    CHECK_INT(rc_fcgi_param_count(envp, "AB"), 1);
    CHECK_INT(rc_fcgi_param_count(NULL, "A"), 0);
}

TEST(content_length_strict)
{
    size_t n = 99;
    CHECK_INT(rc_fcgi_content_length(NULL, 100, &n, NULL), 0);
    CHECK_INT(n, 0);
    CHECK_INT(rc_fcgi_content_length("", 100, &n, NULL), 0);
    CHECK_INT(rc_fcgi_content_length("0", 100, &n, NULL), 0);
    CHECK_INT(rc_fcgi_content_length("100", 100, &n, NULL), 0);
    CHECK_INT(n, 100);
    CHECK_INT(rc_fcgi_content_length("101", 100, &n, NULL), -RC_ETOOBIG);
    CHECK_INT(rc_fcgi_content_length("99999999999999999999999999", 100, &n, NULL), -RC_ETOOBIG);
    const char *bad[] = {"-1", "+5", " 5", "5 ", "0x10", "1e3", "05", "abc"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_INT(rc_fcgi_content_length(bad[i], 100, &n, NULL), -RC_EINVAL);
    CHECK_INT(n, 100);
}

TEST(request_path)
{
    char buf[32];
    char *a[] = {"DOCUMENT_URI=/webhook", "REQUEST_URI=/x?y", NULL};
    char *b[] = {"REQUEST_URI=/webhook?bypass=1", NULL};
    char *c[] = {"SCRIPT_NAME=/metrics", NULL};
    char *d[] = {NULL};
    CHECK_STR(rc_fcgi_request_path(a, buf, sizeof buf), "/webhook");
    CHECK_STR(rc_fcgi_request_path(b, buf, sizeof buf), "/webhook");
    CHECK_STR(rc_fcgi_request_path(c, buf, sizeof buf), "/metrics");
    CHECK_STR(rc_fcgi_request_path(d, buf, sizeof buf), "");
    char *e[] = {"DOCUMENT_URI=/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL};
    CHECK_INT(strlen(rc_fcgi_request_path(e, buf, sizeof buf)), sizeof buf - 1);
}

TEST(signature_joined)
{
    CHECK(!rc_fcgi_signature_joined("v1,abc="));
    CHECK(!rc_fcgi_signature_joined("v1,abc= v1,def="));
    CHECK(!rc_fcgi_signature_joined("v2,x v1,y"));
    CHECK(!rc_fcgi_signature_joined(""));
    CHECK(rc_fcgi_signature_joined("v1,abc=, v1,def="));
    CHECK(rc_fcgi_signature_joined("v1,abc=,v1,def="));
    CHECK(rc_fcgi_signature_joined("v1,abc=,"));
    CHECK(rc_fcgi_signature_joined("v1,a,b"));
}

TEST(good_delivery_proceeds)
{
    const char *body = body_for("session.status_run_started");
    sign_params("whe_1", body);
    char *envp[] = {"REQUEST_METHOD=POST", idp, tsp, sigp, NULL};
    rc_fcgi_wh_verdict v = inspect(envp, body);
    CHECK_INT(v.kind, RC_FCGI_WH_PROCEED);
    CHECK_INT(v.http_status, 200);
    CHECK_STR(v.webhook_id, "whe_1");
    CHECK_STR(v.event_type, "session.status_run_started");
    CHECK_STR(v.session_id, "sesn_Abc1");
    CHECK(!v.envelope_id_differs);
    CHECK_INT(v.verify_code, 0);
}

TEST(other_type_ignored)
{
    const char *body = body_for("session.status_idled");
    sign_params("whe_1", body);
    char *envp[] = {"REQUEST_METHOD=POST", idp, tsp, sigp, NULL};
    rc_fcgi_wh_verdict v = inspect(envp, body);
    CHECK_INT(v.kind, RC_FCGI_WH_IGNORED);
    CHECK_INT(v.http_status, 200);
    CHECK_STR(v.event_type, "session.status_idled");
}

TEST(method_405)
{
    const char *body = body_for("session.status_run_started");
    sign_params("whe_1", body);
    char *get[] = {"REQUEST_METHOD=GET", idp, tsp, sigp, NULL};
    char *none[] = {idp, tsp, sigp, NULL};
    CHECK_INT(inspect(get, body).http_status, 405);
    CHECK_INT(inspect(none, body).kind, RC_FCGI_WH_METHOD);
}

TEST(duplicate_headers_401)
{
    const char *body = body_for("session.status_run_started");
    char joined[300];
    sign_params("whe_1", body);
    char *two_sigs[] = {"REQUEST_METHOD=POST", idp, tsp, sigp, sigp, NULL};
    char *two_ids[] = {"REQUEST_METHOD=POST", idp, idp, tsp, sigp, NULL};
    char *two_ts[] = {"REQUEST_METHOD=POST", idp, tsp, tsp, sigp, NULL};
    snprintf(joined, sizeof joined, "HTTP_WEBHOOK_SIGNATURE=%s, %s", sig, sig);
    char *join[] = {"REQUEST_METHOD=POST", idp, tsp, joined, NULL};
    rc_fcgi_wh_verdict v = inspect(two_sigs, body);
    CHECK_INT(v.kind, RC_FCGI_WH_DUPLICATE_HEADER);
    CHECK_INT(v.http_status, 401);
    CHECK_STR(v.reason, "duplicate webhook-signature header");
    CHECK_INT(inspect(two_ids, body).kind, RC_FCGI_WH_DUPLICATE_HEADER);
    CHECK_INT(inspect(two_ts, body).kind, RC_FCGI_WH_DUPLICATE_HEADER);
    CHECK_INT(inspect(join, body).kind, RC_FCGI_WH_DUPLICATE_HEADER);
}

TEST(multi_entry_signature_accepted)
{
    const char *body = body_for("session.status_run_started");
    char two[300];
    sign_params("whe_1", body);
    snprintf(two, sizeof two, "HTTP_WEBHOOK_SIGNATURE=v1,bogusbogus= %s", sig);
    char *envp[] = {"REQUEST_METHOD=POST", idp, tsp, two, NULL};
    CHECK_INT(inspect(envp, body).kind, RC_FCGI_WH_PROCEED);
}

TEST(verification_refusals_401)
{
    const char *body = body_for("session.status_run_started");
    char stale[64], future[64];
    sign_params("whe_1", body);
    char *missing[] = {"REQUEST_METHOD=POST", idp, tsp, NULL};
    rc_fcgi_wh_verdict v = inspect(missing, body);
    CHECK_INT(v.kind, RC_FCGI_WH_BAD_SIGNATURE);
    CHECK_INT(v.http_status, 401);
    CHECK_INT(v.verify_code, -RC_WEBHOOK_E_MISSING_HEADER);
    CHECK_STR(v.reason, "Missing required headers");

    char *tampered[] = {"REQUEST_METHOD=POST", idp, tsp, sigp, NULL};
    v = inspect(tampered, body_for("session.status_run_startes"));
    CHECK_INT(v.verify_code, -RC_WEBHOOK_E_NO_MATCH);

    snprintf(stale, sizeof stale, "HTTP_WEBHOOK_TIMESTAMP=%lld", NOW - 301);
    snprintf(future, sizeof future, "HTTP_WEBHOOK_TIMESTAMP=%lld", NOW + 301);
    char *s1[] = {"REQUEST_METHOD=POST", idp, stale, sigp, NULL};
    char *s2[] = {"REQUEST_METHOD=POST", idp, future, sigp, NULL};
    CHECK_INT(inspect(s1, body).verify_code, -RC_WEBHOOK_E_STALE);
    CHECK_INT(inspect(s2, body).verify_code, -RC_WEBHOOK_E_FUTURE);
    CHECK_INT(inspect(s2, body).http_status, 401);
}

TEST(bad_envelopes_400)
{
    const char *bodies[] = {"not json", "[1]", "{\"type\":\"event\"}", "{\"data\":{\"type\":7}}",
                            "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        sign_params("whe_1", bodies[i]);
        char *envp[] = {"REQUEST_METHOD=POST", idp, tsp, sigp, NULL};
        rc_fcgi_wh_verdict v = inspect(envp, bodies[i]);
        CHECK_INT(v.kind, RC_FCGI_WH_BAD_ENVELOPE);
        CHECK_INT(v.http_status, 400);
    }
}

TEST(long_webhook_id_400_and_id_mismatch_noted)
{
    char id[RC_FCGI_DEDUPE_ID_MAX + 10];
    const char *body = body_for("session.status_run_started");
    memset(id, 'a', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    sign_params(id, body);
    char *envp[] = {"REQUEST_METHOD=POST", idp, tsp, sigp, NULL};
    rc_fcgi_wh_verdict v = inspect(envp, body);
    CHECK_INT(v.kind, RC_FCGI_WH_BAD_ENVELOPE);
    CHECK_INT(strlen(v.webhook_id), RC_FCGI_DEDUPE_ID_MAX);

    sign_params("whe_other", body);
    char *envp2[] = {"REQUEST_METHOD=POST", idp, tsp, sigp, NULL};
    v = inspect(envp2, body);
    CHECK_INT(v.kind, RC_FCGI_WH_PROCEED);
    CHECK(v.envelope_id_differs);
}

TEST(bad_key_is_our_error_500)
{
    const char *body = body_for("session.status_run_started");
    rc_fcgi_wh_verdict v;
    sign_params("whe_1", body);
    char *envp[] = {"REQUEST_METHOD=POST", idp, tsp, sigp, NULL};
    rc_fcgi_webhook_inspect(envp, body, strlen(body), "whsec_!!!", NOW, &v);
    CHECK_INT(v.kind, RC_FCGI_WH_ERROR);
    CHECK_INT(v.http_status, 500);
}
