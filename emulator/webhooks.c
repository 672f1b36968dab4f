/* webhooks.c - webhook delivery (protocol.md 18.2, 18.5, 18.7, 18.9): a signed
 * `session.status_run_started` envelope to --webhook-url on every transition to running.
 *
 * One delivery thread owns the network side, so no HTTP handler ever waits on a webhook
 * receiver. Jobs wait in a queue sorted by due time (under the state lock). Each attempt is
 * signed afresh (Standard Webhooks: webhook-id stays the envelope id, webhook-timestamp is the
 * attempt's time) and posted with libcurl, never following redirects. A non-2xx answer or a
 * transport failure is retried up to 3 attempts in total after the configured back-offs
 * (default 5 s, 30 s); a 3xx disables the endpoint (18.7.5). The `webhook_duplicates` and
 * `webhook_delay_ms` faults are applied when a job is queued. */
#include "em.h"

#include "cleanup.h"
#include "log.h"
#include "webhook.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define ATTEMPTS 3

typedef struct rc_em_hookjob {
    char id[RC_EM_ID_MAX];
    char *body;
    int attempts; /* made so far */
    int64_t due_ms;
    struct rc_em_hookjob *next;
} rc_em_hookjob;

static char org_id[40], workspace_id[40];

static void make_uuid(char out[40])
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        memset(b, 0x42, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static void queue_insert(rc_em *em, rc_em_hookjob *j)
{
    rc_em_hookjob **pp = &em->hooks;
    while (*pp && (*pp)->due_ms <= j->due_ms)
        pp = &(*pp)->next;
    j->next = *pp;
    *pp = j;
    pthread_cond_broadcast(&em->hook_cond);
}

static char *envelope(const char *id, const rc_em_session *s)
{
    cJSON *o = cJSON_CreateObject(), *d;
    char *out;
    cJSON_AddStringToObject(o, "type", "event");
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddItemToObject(o, "created_at", rc_emutil_ts(rc_emutil_now_us()));
    d = cJSON_AddObjectToObject(o, "data");
    cJSON_AddStringToObject(d, "type", "session.status_run_started");
    cJSON_AddStringToObject(d, "id", s->id);
    cJSON_AddStringToObject(d, "organization_id", org_id);
    cJSON_AddStringToObject(d, "workspace_id", workspace_id);
    out = rc_emutil_print(o);
    cJSON_Delete(o);
    return out;
}

void rc_emhook_run_started(rc_em *em, const rc_em_session *s)
{
    char id[RC_EM_ID_MAX];
    long copies = em->faults.webhook_duplicates > 1 ? em->faults.webhook_duplicates : 1;
    _cleanup_free_ char *body = NULL;

    if (!em->cfg.webhook_url || em->hook_disabled || !em->hook_started)
        return;
    if (rc_emutil_random_id("whe_", id, sizeof(id), NULL) < 0 || !(body = envelope(id, s)))
        return;
    for (long i = 0; i < copies; i++) {
        rc_em_hookjob *j = calloc(1, sizeof(*j));
        if (!j || !(j->body = strdup(body))) {
            free(j);
            return;
        }
        snprintf(j->id, sizeof(j->id), "%s", id);
        j->due_ms = rc_emutil_mono_ms() + em->faults.webhook_delay_ms;
        em->hookstats.enqueued++;
        queue_insert(em, j);
    }
}

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return sz * n;
}

/* One attempt; returns the HTTP status, or 0 on a transport failure. Lock NOT held. */
static long deliver(const rc_em_config *cfg, const rc_em_hookjob *j)
{
    char sig[RC_WEBHOOK_SIGNATURE_SIZE], hdr[3][160];
    int64_t ts = (int64_t)time(NULL);
    struct curl_slist *h = NULL;
    rc_error err = {0};
    long status = 0;
    CURL *curl;

    if (rc_webhook_sign(j->id, ts, j->body, strlen(j->body), cfg->webhook_secret, sig, &err) < 0) {
        rc_log_error("webhook %s: cannot sign: %s", j->id, err.msg);
        return 0;
    }
    snprintf(hdr[0], sizeof(hdr[0]), "webhook-id: %s", j->id);
    snprintf(hdr[1], sizeof(hdr[1]), "webhook-timestamp: %lld", (long long)ts);
    snprintf(hdr[2], sizeof(hdr[2]), "webhook-signature: %s", sig);
    h = curl_slist_append(h, "content-type: application/json");
    for (int i = 0; i < 3; i++)
        h = curl_slist_append(h, hdr[i]);
    h = curl_slist_append(h, "Expect:");
    curl = curl_easy_init();
    if (!curl || !h) {
        curl_slist_free_all(h);
        if (curl)
            curl_easy_cleanup(curl);
        return 0;
    }
    curl_easy_setopt(curl, CURLOPT_URL, cfg->webhook_url);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, j->body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(j->body));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, cfg->hook_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, cfg->hook_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_PROXY, "");
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (curl_easy_perform(curl) == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    curl_slist_free_all(h);
    explicit_bzero(sig, sizeof(sig));
    return status;
}

static void drop_all(rc_em *em)
{
    while (em->hooks) {
        rc_em_hookjob *j = em->hooks;
        em->hooks = j->next;
        em->hookstats.dropped++;
        free(j->body);
        free(j);
    }
}

/* Account for one attempt's outcome; reschedule or free the job. Lock held. */
static void settle(rc_em *em, rc_em_hookjob *j, long status)
{
    em->hookstats.attempts++;
    em->hookstats.by_status[status > 0 && status < 600 ? status : 0]++;
    if (status >= 200 && status < 300) {
        em->hookstats.delivered++;
        rc_log_debug("webhook %s delivered (%ld)", j->id, status);
    } else if (status >= 300 && status < 400) {
        rc_log_error("webhook %s: endpoint answered %ld; a 3xx disables it (18.7.5)", j->id,
                     status);
        em->hook_disabled = true;
        em->hookstats.failed++;
        drop_all(em);
    } else if (j->attempts < ATTEMPTS) {
        rc_log_warn("webhook %s: attempt %d failed (%ld), retrying", j->id, j->attempts, status);
        j->due_ms = rc_emutil_mono_ms() + em->cfg.hook_backoff_ms[j->attempts - 1];
        queue_insert(em, j);
        return;
    } else {
        rc_log_warn("webhook %s: dropped after %d attempts (%ld)", j->id, j->attempts, status);
        em->hookstats.failed++;
    }
    free(j->body);
    free(j);
}

static void wait_until(rc_em *em, int64_t due_ms)
{
    struct timespec ts;
    int64_t now = rc_emutil_mono_ms();
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (due_ms - now) / 1000;
    ts.tv_nsec += ((due_ms - now) % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&em->hook_cond, &em->lock, &ts);
}

static void *hook_thread(void *arg)
{
    rc_em *em = arg;
    pthread_mutex_lock(&em->lock);
    while (!em->stopping) {
        rc_em_hookjob *j = em->hooks;
        long status;
        if (!j) {
            pthread_cond_wait(&em->hook_cond, &em->lock);
            continue;
        }
        if (j->due_ms > rc_emutil_mono_ms()) {
            wait_until(em, j->due_ms);
            continue;
        }
        em->hooks = j->next;
        j->attempts++;
        pthread_mutex_unlock(&em->lock);
        status = deliver(&em->cfg, j);
        pthread_mutex_lock(&em->lock);
        settle(em, j, status);
    }
    drop_all(em);
    pthread_mutex_unlock(&em->lock);
    return NULL;
}

int rc_emhook_start(rc_em *em, rc_error *err)
{
    pthread_condattr_t attr;
    int r;
    make_uuid(org_id);
    make_uuid(workspace_id);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&em->hook_cond, &attr);
    pthread_condattr_destroy(&attr);
    if (!em->cfg.webhook_url)
        return 0;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    r = pthread_create(&em->hook_thread, NULL, hook_thread, em);
    if (r)
        return rc_error_set(err, RC_EIO, "cannot start the webhook thread");
    em->hook_started = true;
    return 0;
}

void rc_emhook_stop(rc_em *em)
{
    pthread_mutex_lock(&em->lock);
    em->stopping = 1;
    pthread_cond_broadcast(&em->hook_cond);
    pthread_mutex_unlock(&em->lock);
    if (em->hook_started)
        pthread_join(em->hook_thread, NULL);
    em->hook_started = false;
}

cJSON *rc_emhook_stats_json(const rc_em *em)
{
    cJSON *o = cJSON_CreateObject(), *codes;
    char key[8];
    cJSON_AddBoolToObject(o, "configured", em->cfg.webhook_url != NULL);
    cJSON_AddBoolToObject(o, "disabled", em->hook_disabled);
    cJSON_AddNumberToObject(o, "enqueued", (double)em->hookstats.enqueued);
    cJSON_AddNumberToObject(o, "delivered", (double)em->hookstats.delivered);
    cJSON_AddNumberToObject(o, "failed", (double)em->hookstats.failed);
    cJSON_AddNumberToObject(o, "attempts", (double)em->hookstats.attempts);
    cJSON_AddNumberToObject(o, "dropped", (double)em->hookstats.dropped);
    codes = cJSON_AddObjectToObject(o, "responses");
    for (int i = 0; i < 600; i++) {
        if (!em->hookstats.by_status[i])
            continue;
        if (i == 0)
            snprintf(key, sizeof(key), "error");
        else
            snprintf(key, sizeof(key), "%d", i);
        cJSON_AddNumberToObject(codes, key, (double)em->hookstats.by_status[i]);
    }
    return o;
}
