/* fuzz_fcgi_webhook.c - libFuzzer target for runcell-fcgi's request -> verify -> envelope path
 * (fcgi/webhook_handler.c) and the hand-off message decoders (fcgi/handoff.c).
 *
 * Input: FastCGI parameters, one "NAME=value" per line, then an empty line, then the body.
 * Each input is judged twice at a fixed clock: as given, and again with a valid signature for
 * its body appended (webhook-id from the input or "whe_fuzz", the timestamp set to the clock,
 * the method POST), so the envelope parser is reached. Checks: the verdict's status matches its
 * kind; a refusal has a reason; the ids are bounded and NUL-terminated; with exactly one of each
 * webhook header and a fresh signature, the verdict is never a signature refusal. The parameter
 * values also go through the CONTENT_LENGTH parser, the joined-signature check and the path
 * helper, and the body through both hand-off decoders. */
#include "handoff.h"
#include "webhook.h"
#include "webhook_handler.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define KEY       "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define NOW       1700000000LL
#define MAX_PARAM 32

static int expected_status(enum rc_fcgi_wh_kind k)
{
    switch (k) {
    case RC_FCGI_WH_PROCEED:
    case RC_FCGI_WH_IGNORED:
        return 200;
    case RC_FCGI_WH_METHOD:
        return 405;
    case RC_FCGI_WH_DUPLICATE_HEADER:
    case RC_FCGI_WH_BAD_SIGNATURE:
        return 401;
    case RC_FCGI_WH_BAD_ENVELOPE:
        return 400;
    case RC_FCGI_WH_ERROR:
        return 500;
    }
    return -1;
}

static void check_verdict(const rc_fcgi_wh_verdict *v)
{
    CHECK(v->http_status == expected_status(v->kind));
    CHECK(v->kind == RC_FCGI_WH_PROCEED || v->reason != NULL);
    CHECK(memchr(v->webhook_id, '\0', sizeof v->webhook_id) != NULL);
    CHECK(memchr(v->event_type, '\0', sizeof v->event_type) != NULL);
    CHECK(memchr(v->session_id, '\0', sizeof v->session_id) != NULL);
    if (v->session_id[0])
        CHECK(strncmp(v->session_id, "sesn_", 5) == 0);
}

/* Split "params\n\nbody" into a NULL-terminated envp (copies) and the body. */
static size_t split(const uint8_t *data, size_t size, char **envp, const uint8_t **body,
                    size_t *body_len)
{
    size_t n = 0, i = 0;

    while (i < size && n < MAX_PARAM) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t len = (size_t)((nl ? nl : data + size) - (data + i));
        if (len == 0) {
            i++;
            break;
        }
        envp[n] = malloc(len + 1);
        CHECK(envp[n]);
        memcpy(envp[n], data + i, len);
        envp[n][len] = '\0';
        n++;
        i += len + (nl ? 1 : 0);
    }
    envp[n] = NULL;
    *body = data + i;
    *body_len = size - i;
    return n;
}

static void side_parsers(char **envp, const uint8_t *body, size_t len)
{
    char path[64];
    size_t cl;
    cJSON *tree = NULL;
    rc_handoff_request req;
    rc_handoff_answer a;

    for (char **e = envp; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        (void)rc_fcgi_content_length(eq + 1, 1048576, &cl, NULL);
        (void)rc_fcgi_signature_joined(eq + 1);
    }
    rc_fcgi_request_path(envp, path, sizeof path);
    CHECK(strlen(path) < sizeof path && !strchr(path, '?'));
    if (rc_handoff_request_decode((const char *)body, len, &tree, &req, NULL) == 0) {
        CHECK(tree != NULL);
        if (req.op == RC_HANDOFF_OP_LAUNCH)
            CHECK(strncmp(req.item.work_id, "work_", 5) == 0);
        cJSON_Delete(tree);
    }
    (void)rc_handoff_answer_decode((const char *)body, len, &a, NULL);
}

/* The same request with a fresh, valid signature for its body. */
static void judge_signed(char **envp, size_t n, const uint8_t *body, size_t len)
{
    char *signed_envp[MAX_PARAM + 5];
    char sig[RC_WEBHOOK_SIGNATURE_SIZE], sigp[96], tsp[64], idp[200];
    const char *id = rc_fcgi_param(envp, "HTTP_WEBHOOK_ID");
    size_t k = 0;
    rc_fcgi_wh_verdict v;
    bool single;

    if (!id || !*id || strlen(id) > 150)
        id = "whe_fuzz";
    if (rc_webhook_sign(id, NOW, body, len, KEY, sig, NULL) < 0)
        return;
    snprintf(sigp, sizeof sigp, "HTTP_WEBHOOK_SIGNATURE=%s", sig);
    snprintf(tsp, sizeof tsp, "HTTP_WEBHOOK_TIMESTAMP=%lld", NOW);
    snprintf(idp, sizeof idp, "HTTP_WEBHOOK_ID=%s", id);
    signed_envp[k++] = "REQUEST_METHOD=POST";
    for (size_t i = 0; i < n; i++)
        signed_envp[k++] = envp[i];
    single = !rc_fcgi_param(envp, "HTTP_WEBHOOK_ID") &&
             !rc_fcgi_param(envp, "HTTP_WEBHOOK_TIMESTAMP") &&
             !rc_fcgi_param(envp, "HTTP_WEBHOOK_SIGNATURE");
    signed_envp[k++] = idp;
    signed_envp[k++] = tsp;
    signed_envp[k++] = sigp;
    signed_envp[k] = NULL;
    rc_fcgi_webhook_inspect(signed_envp, body, len, KEY, NOW, &v);
    check_verdict(&v);
    /* Only the input's own REQUEST_METHOD comes later than ours and is never picked (first
     * wins), so a fresh signature with single headers always passes verification. */
    if (single) {
        CHECK(v.kind != RC_FCGI_WH_BAD_SIGNATURE && v.kind != RC_FCGI_WH_DUPLICATE_HEADER);
        CHECK(v.kind != RC_FCGI_WH_METHOD && v.kind != RC_FCGI_WH_ERROR);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *envp[MAX_PARAM + 1];
    const uint8_t *body;
    size_t body_len, n;
    rc_fcgi_wh_verdict v;

    if (size > 65536)
        return 0;
    n = split(data, size, envp, &body, &body_len);
    rc_fcgi_webhook_inspect(envp, body, body_len, KEY, NOW, &v);
    check_verdict(&v);
    judge_signed(envp, n, body, body_len);
    side_parsers(envp, body, body_len);
    for (size_t i = 0; i < n; i++)
        free(envp[i]);
    return 0;
}
