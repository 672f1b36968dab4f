/* state.c - optional persistence (--state-dir DIR): what a setup script creates survives a
 * restart, so `make demo` and manual runs do not have to redo their set-up.
 *
 * Persisted, in DIR/state.json (mode 0600, it holds credentials; written to a temporary file
 * and renamed, so a crash never leaves half a file): the API key and webhook secret when they
 * were generated, environments, agents with all their versions, and environment keys (with
 * their revocation). Sessions, events, work items and verdicts are not persisted: they belong to
 * one run of a scenario or a worker, and a worker reconnecting to a restarted server starts over.
 * Saving happens under the state lock after each change to a persisted object; those changes are
 * rare set-up calls, never on the worker's path. */
#include "em.h"

#include "cleanup.h"
#include "fsio.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_FILE     "state.json"
#define STATE_MAX_SIZE (64u * 1024 * 1024)

static int64_t ts_of(const cJSON *o, const char *key)
{
    const char *s = rc_emutil_jstr(o, key);
    int64_t us = 0;
    if (s && rc_emutil_parse_rfc3339(s, &us) < 0)
        us = 0;
    return us;
}

static cJSON *env_state(const rc_em_env *e)
{
    cJSON *o = rc_emstore_env_json(e);
    cJSON_AddBoolToObject(o, "deleted", e->deleted);
    return o;
}

static cJSON *state_json(const rc_em *em)
{
    cJSON *o = cJSON_CreateObject(), *envs, *agents, *keys;
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "api_key", em->cfg.api_key);
    cJSON_AddStringToObject(o, "webhook_secret", em->cfg.webhook_secret);
    envs = cJSON_AddArrayToObject(o, "environments");
    for (size_t i = 0; i < em->nenvs; i++)
        cJSON_AddItemToArray(envs, env_state(em->envs[i]));
    agents = cJSON_AddArrayToObject(o, "agents");
    for (size_t i = 0; i < em->nagents; i++) {
        cJSON *a = cJSON_CreateObject(), *v = cJSON_AddArrayToObject(a, "versions");
        cJSON_AddStringToObject(a, "id", em->agents[i]->id);
        for (size_t k = 0; k < em->agents[i]->nversions; k++)
            cJSON_AddItemToArray(v, cJSON_Duplicate(em->agents[i]->versions[k], 1));
        cJSON_AddItemToArray(agents, a);
    }
    keys = cJSON_AddArrayToObject(o, "environment_keys");
    for (size_t i = 0; i < em->ncreds; i++) {
        const rc_em_cred *c = em->creds[i];
        cJSON *k;
        if (c->kind != RC_EM_CRED_ENV_KEY)
            continue;
        k = cJSON_CreateObject();
        cJSON_AddStringToObject(k, "environment_id", c->env->id);
        cJSON_AddStringToObject(k, "key", c->value);
        cJSON_AddBoolToObject(k, "revoked", c->revoked);
        cJSON_AddItemToArray(keys, k);
    }
    return o;
}

int rc_emstate_save(rc_em *em, rc_error *err)
{
    char path[4096], tmp[4200];
    _cleanup_free_ char *text = NULL;
    _cleanup_close_ int fd = -1;
    cJSON *o;
    int r;

    if (!em->cfg.state_dir)
        return 0;
    o = state_json(em);
    text = rc_emutil_print(o);
    cJSON_Delete(o);
    if (!text)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    snprintf(path, sizeof(path), "%s/%s", em->cfg.state_dir, STATE_FILE);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        r = rc_error_sys(err, RC_EIO, "open %s", tmp);
        rc_log_error("state not saved: %s", err ? err->msg : "open failed");
        return r;
    }
    if ((r = rc_fd_write_all(fd, text, strlen(text), "state", err)) < 0 || fsync(fd) < 0 ||
        rename(tmp, path) < 0) {
        rc_log_error("state not saved to %s", path);
        unlink(tmp);
        return r < 0 ? r : rc_error_sys(err, RC_EIO, "save %s", path);
    }
    explicit_bzero(text, strlen(text));
    return 0;
}

static int read_state(const char *path, rc_buf *out, rc_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    char chunk[65536];
    ssize_t n;
    if (fd < 0)
        return errno == ENOENT ? 1 : rc_error_sys(err, RC_EIO, "open %s", path);
    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        int r;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return rc_error_sys(err, RC_EIO, "read %s", path);
        if ((r = rc_buf_append(out, chunk, (size_t)n, err)) < 0)
            return r;
    }
    return 0;
}

static int load_env(rc_em *em, const cJSON *j, rc_error *err)
{
    const char *id = rc_emutil_jstr(j, "id"), *name = rc_emutil_jstr(j, "name");
    const char *desc = rc_emutil_jstr(j, "description"), *scope = rc_emutil_jstr(j, "scope");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(j, "metadata");
    rc_em_env *e;
    int r;

    if (!id || !name || strlen(id) >= RC_EM_ID_MAX)
        return rc_error_set(err, RC_EPARSE, "state: environment without id or name");
    if (!(e = calloc(1, sizeof(*e))))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->name = strdup(name);
    e->description = desc ? strdup(desc) : NULL;
    e->scope = strdup(scope ? scope : "organization");
    e->metadata = cJSON_IsObject(meta) ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject();
    e->created_us = ts_of(j, "created_at");
    e->updated_us = ts_of(j, "updated_at");
    e->archived_us = ts_of(j, "archived_at");
    e->deleted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "deleted"));
    if ((r = rc_emstore_env_add(em, e, err)) < 0) {
        free(e->name);
        free(e->description);
        free(e->scope);
        cJSON_Delete(e->metadata);
        free(e);
    }
    return r;
}

static int load_agent(rc_em *em, const cJSON *j, rc_error *err)
{
    const char *id = rc_emutil_jstr(j, "id");
    const cJSON *versions = cJSON_GetObjectItemCaseSensitive(j, "versions"), *v;
    rc_em_agent *a;
    int n = cJSON_GetArraySize(versions), r;

    if (!id || strlen(id) >= RC_EM_ID_MAX || !cJSON_IsArray(versions) || n < 1)
        return rc_error_set(err, RC_EPARSE, "state: agent without id or versions");
    if (!(a = calloc(1, sizeof(*a))) || !(a->versions = calloc((size_t)n, sizeof(cJSON *)))) {
        free(a);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    snprintf(a->id, sizeof(a->id), "%s", id);
    cJSON_ArrayForEach(v, versions) a->versions[a->nversions++] = cJSON_Duplicate(v, 1);
    if ((r = rc_emstore_agent_add(em, a, err)) < 0) {
        for (size_t i = 0; i < a->nversions; i++)
            cJSON_Delete(a->versions[i]);
        free(a->versions);
        free(a);
    }
    return r;
}

static int load_key(rc_em *em, const cJSON *j, rc_error *err)
{
    const char *env_id = rc_emutil_jstr(j, "environment_id"), *key = rc_emutil_jstr(j, "key");
    rc_em_env *env = NULL;
    rc_em_cred *c;
    int r;
    for (size_t i = 0; env_id && i < em->nenvs; i++)
        if (strcmp(em->envs[i]->id, env_id) == 0)
            env = em->envs[i];
    if (!env || !key)
        return rc_error_set(err, RC_EPARSE, "state: environment key of an unknown environment");
    if ((r = rc_emstore_cred_add(em, RC_EM_CRED_ENV_KEY, env, NULL, key, &c, err)) < 0)
        return r;
    c->revoked = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "revoked"));
    return 0;
}

/* Generated credentials of the previous run are reused unless new ones were given. */
static void load_credentials(rc_em *em, const cJSON *o)
{
    const char *k = rc_emutil_jstr(o, "api_key"), *w = rc_emutil_jstr(o, "webhook_secret");
    if (k && !em->cfg.api_key && (em->state_api_key = strdup(k)))
        em->cfg.api_key = em->state_api_key;
    if (w && !em->cfg.webhook_secret && (em->state_webhook_secret = strdup(w)))
        em->cfg.webhook_secret = em->state_webhook_secret;
}

int rc_emstate_load(rc_em *em, rc_error *err)
{
    char path[4096];
    _cleanup_(rc_buf_free) rc_buf text = RC_BUF_INIT(STATE_MAX_SIZE);
    _cleanup_json_ cJSON *o = NULL;
    const cJSON *it;
    int r;

    if (!em->cfg.state_dir)
        return 0;
    if (mkdir(em->cfg.state_dir, 0700) < 0 && errno != EEXIST)
        return rc_error_sys(err, RC_EIO, "--state-dir %s", em->cfg.state_dir);
    snprintf(path, sizeof(path), "%s/%s", em->cfg.state_dir, STATE_FILE);
    if ((r = read_state(path, &text, err)) != 0)
        return r > 0 ? 0 : r;
    if ((r = rc_emutil_parse_json(text.data, text.len, &o, err)) < 0)
        return rc_error_wrap(err, RC_EPARSE, path);
    load_credentials(em, o);
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "environments"))
    {
        if ((r = load_env(em, it, err)) < 0)
            return r;
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "agents"))
    {
        if ((r = load_agent(em, it, err)) < 0)
            return r;
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "environment_keys"))
    {
        if ((r = load_key(em, it, err)) < 0)
            return r;
    }
    explicit_bzero(text.data, text.len);
    rc_log_info("state loaded from %s: %zu environments, %zu agents", path, em->nenvs, em->nagents);
    return 0;
}
