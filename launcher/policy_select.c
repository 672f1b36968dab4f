/* policy_select.c - which egress policy a session gets (issue 6, docs/BROKER.md "Which policy a
 * session gets"), and the start-up check of every policy the operator configured.
 *
 * Sources, most specific first; the first one present decides and replaces the others whole
 * (policies are never merged, so what a session may reach can be read from one file):
 *   1. session metadata "runcell_policy": a NAME of one of the operator's policies,
 *      RUNCELL_POLICY_DIR/<name>.json. The key names a policy and never carries JSON: session
 *      metadata is written by whoever creates sessions, not by the operator.
 *   2. the session's agent: RUNCELL_POLICY_DIR/agents/<agent_id>.json, when that file exists;
 *   3. the operator's default, RUNCELL_POLICY_FILE;
 *   4. the built-in "deny-all".
 * Steps 1 and 2 need the session (GET /v1/sessions/{sid} with the session token); it is fetched
 * only when RUNCELL_POLICY_DIR is set. A name that is not valid, a named file that is missing or
 * not a regular file, or a failed fetch is an error: the shim then refuses the session (and
 * force-stops its item) instead of silently falling back to a wider or narrower default.
 *
 * The selection itself (rc_launcher_policy_select) is pure apart from lstat(2), so the unit tests
 * drive it with session JSON and a temporary directory. */
#include "launcher.h"

#include "../broker/forward.h"
#include "../broker/policy.h"
#include "api.h"
#include "cleanup.h"
#include "json.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AGENTS_SUBDIR    "agents"
#define JSON_SUFFIX      ".json"
#define AGENT_ID_MAX     128
#define SESSION_BODY_MAX (256 * 1024)

static const char *const source_names[] = {
    [RC_LAUNCHER_POLICY_BUILTIN] = "builtin",
    [RC_LAUNCHER_POLICY_DEFAULT] = "default",
    [RC_LAUNCHER_POLICY_AGENT] = "agent",
    [RC_LAUNCHER_POLICY_SESSION] = "session",
};

const char *rc_launcher_policy_source_name(int source)
{
    if (source < 0 || source > RC_LAUNCHER_POLICY_SESSION)
        return "?";
    return source_names[source];
}

static bool is_alnum(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* [A-Za-z0-9][A-Za-z0-9_-]{0,max-1}: no dot, no slash, nothing to escape a directory with. */
static bool token_valid(const char *s, size_t max)
{
    size_t n = 0;
    if (!s || !is_alnum(s[0]))
        return false;
    for (; s[n]; n++)
        if (n >= max || !(is_alnum(s[n]) || s[n] == '_' || s[n] == '-'))
            return false;
    return true;
}

bool rc_launcher_policy_name_valid(const char *name)
{
    return token_valid(name, RC_LAUNCHER_POLICY_NAME_MAX);
}

/* ---- selection ----------------------------------------------------------------------------- */

static int file_path(char *buf, size_t bufsz, const char *dir, const char *sub, const char *name,
                     rc_error *err)
{
    int n = sub ? snprintf(buf, bufsz, "%s/%s/%s" JSON_SUFFIX, dir, sub, name)
                : snprintf(buf, bufsz, "%s/%s" JSON_SUFFIX, dir, name);
    if (n < 0 || (size_t)n >= bufsz)
        return rc_error_set(err, RC_ETOOBIG, "policy path too long under %s", dir);
    return 0;
}

/* 1 when path is a regular file (symlinks followed: the directory is the operator's), 0 when it
 * does not exist, an error otherwise. */
static int regular_file(const char *path, rc_error *err)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return rc_error_sys(err, RC_EIO, "policy %s", path);
    }
    if (!S_ISREG(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "policy %s is not a regular file", path);
    return 1;
}

/* Step 1: the metadata key. 1 with ret filled, 0 when the session does not name a policy. */
static int select_by_metadata(const rc_launcher_config *c, const cJSON *session,
                              rc_launcher_policy_choice *ret, rc_error *err)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(session, "metadata");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, RC_LAUNCHER_POLICY_META_KEY);
    int r;

    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || !rc_launcher_policy_name_valid(v->valuestring))
        return rc_error_set(err, RC_EINVAL,
                            "session metadata " RC_LAUNCHER_POLICY_META_KEY
                            " is not a policy name ([A-Za-z0-9][A-Za-z0-9_-], at most %d "
                            "characters)",
                            RC_LAUNCHER_POLICY_NAME_MAX);
    if ((r = file_path(ret->path, sizeof ret->path, c->policy_dir, NULL, v->valuestring, err)) < 0)
        return r;
    if ((r = regular_file(ret->path, err)) < 0)
        return r;
    if (r == 0)
        return rc_error_set(err, RC_ENOTFOUND,
                            "session metadata " RC_LAUNCHER_POLICY_META_KEY
                            " names policy \"%s\", but %s does not exist",
                            v->valuestring, ret->path);
    snprintf(ret->name, sizeof ret->name, "%s", v->valuestring);
    ret->source = RC_LAUNCHER_POLICY_SESSION;
    return 1;
}

/* Step 2: the agent's file. 1 with ret filled, 0 when the agent has none. */
static int select_by_agent(const rc_launcher_config *c, const cJSON *session,
                           rc_launcher_policy_choice *ret, rc_error *err)
{
    const cJSON *agent = cJSON_GetObjectItemCaseSensitive(session, "agent");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(agent, "id");
    int r;

    if (!id)
        return 0;
    if (!cJSON_IsString(id) || !token_valid(id->valuestring, AGENT_ID_MAX))
        return rc_error_set(err, RC_EINVAL, "the session's agent id is not a valid id");
    if ((r = file_path(ret->path, sizeof ret->path, c->policy_dir, AGENTS_SUBDIR, id->valuestring,
                       err)) < 0 ||
        (r = regular_file(ret->path, err)) <= 0)
        return r;
    snprintf(ret->name, sizeof ret->name, "%s", id->valuestring);
    ret->source = RC_LAUNCHER_POLICY_AGENT;
    return 1;
}

int rc_launcher_policy_select(const rc_launcher_config *c, const cJSON *session,
                              rc_launcher_policy_choice *ret, rc_error *err)
{
    rc_launcher_policy_choice ch = {0};
    int r;

    if (c->policy_dir) {
        if (!cJSON_IsObject(session))
            return rc_error_set(err, RC_EINVAL, "no session object to select a policy with");
        if ((r = select_by_metadata(c, session, &ch, err)) < 0)
            return r;
        if (r == 0 && (r = select_by_agent(c, session, &ch, err)) < 0)
            return r;
        if (r > 0) {
            *ret = ch;
            return 0;
        }
    }
    memset(&ch, 0, sizeof ch); /* a step that found nothing may have left a path behind */
    if (c->policy_file) {
        ch.source = RC_LAUNCHER_POLICY_DEFAULT;
        snprintf(ch.path, sizeof ch.path, "%s", c->policy_file);
    } else {
        ch.source = RC_LAUNCHER_POLICY_BUILTIN;
    }
    *ret = ch;
    return 0;
}

/* ---- the session, fetched with its own token ------------------------------------------------ */

static int fetch_session(const rc_launcher_config *c, const char *sid, const char *token,
                         cJSON **ret, rc_error *err)
{
    rc_api_config ac = {.http = {.base_url = c->base_url,
                                 .ca_file = c->ca_file,
                                 .user_agent = "runcell-launcher",
                                 .timeout_ms = 10000,
                                 .max_attempts = 3,
                                 .max_body = SESSION_BODY_MAX},
                        .credential = token};
    rc_api_result res = RC_API_RESULT_INIT;
    rc_api *api = NULL;
    const cJSON *id;
    int r;

    if (!token || !*token)
        return rc_error_set(err, RC_EAUTH, "no session token to read the session with");
    if ((r = rc_api_new(&ac, &api, err)) < 0)
        return r;
    r = rc_api_session_get(api, sid, &res, err);
    rc_api_free(api);
    if (r < 0) {
        rc_api_result_free(&res);
        return rc_error_wrap(err, RC_EIO, "reading the session to select its egress policy");
    }
    id = cJSON_GetObjectItemCaseSensitive(res.json, "id");
    if (res.kind != RC_API_BODY_JSON || !cJSON_IsString(id) || strcmp(id->valuestring, sid) != 0) {
        rc_api_result_free(&res);
        return rc_error_set(err, RC_EPARSE, "GET /v1/sessions/%s did not return that session", sid);
    }
    *ret = res.json;
    res.json = NULL;
    rc_api_result_free(&res);
    return 0;
}

int rc_launcher_policy_load(const rc_launcher_config *c, const char *sid, const char *token,
                            struct rc_policy **ret, rc_launcher_policy_choice *ret_choice,
                            rc_error *err)
{
    _cleanup_json_ cJSON *session = NULL;
    _cleanup_(rc_policy_freep) rc_policy *p = NULL;
    rc_launcher_policy_choice ch;
    int r;

    if (c->policy_dir && (r = fetch_session(c, sid, token, &session, err)) < 0)
        return r;
    if ((r = rc_launcher_policy_select(c, session, &ch, err)) < 0)
        return r;
    if (ch.source == RC_LAUNCHER_POLICY_BUILTIN)
        r = rc_policy_parse("\"deny-all\"", 10, &p, err);
    else
        r = rc_policy_load(ch.path, &p, err);
    if (r < 0)
        return r;
    *ret = take_ptr(p);
    if (ret_choice)
        *ret_choice = ch;
    return 0;
}

/* ---- start-up validation -------------------------------------------------------------------- */

/* A policy parses, and one with forwardURL rules has the token key it needs (the proxy would
 * refuse to start for the session otherwise). */
static int check_file(const rc_launcher_config *c, const char *path, rc_error *err)
{
    _cleanup_(rc_policy_freep) rc_policy *p = NULL;
    int r = rc_policy_load(path, &p, err);
    if (r < 0)
        return r;
    if (rc_policy_has_forward(p) && !c->forward_key_file)
        return rc_error_set(
            err, RC_EINVAL,
            "%s has forwardURL rules: set RUNCELL_FORWARD_KEY_FILE (docs/BROKER.md)", path);
    return 0;
}

/* The directory must be the operator's: owned by root (or by us, for tests run unprivileged) and
 * writable by nobody else, or anyone could plant a policy a session then selects by name. */
static int check_dir_owner(const char *dir, rc_error *err)
{
    struct stat st;
    if (stat(dir, &st) < 0)
        return rc_error_sys(err, RC_EIO, "RUNCELL_POLICY_DIR %s", dir);
    if (!S_ISDIR(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "RUNCELL_POLICY_DIR %s is not a directory", dir);
    if (st.st_uid != 0 && st.st_uid != geteuid())
        return rc_error_set(err, RC_EINVAL, "RUNCELL_POLICY_DIR %s is not owned by root", dir);
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return rc_error_set(err, RC_EINVAL, "%s is writable by group or others", dir);
    return 0;
}

/* Every entry of dir (hidden ones skipped) must be <token>.json and a valid policy; in the top
 * directory, "agents" may be the per-agent directory. Returns the number of policies checked. */
static int check_dir(const rc_launcher_config *c, const char *dir, bool top, rc_error *err)
{
    DIR *d;
    struct dirent *de;
    char path[RC_LAUNCHER_PATH_MAX], name[AGENT_ID_MAX + 1];
    int r, count = 0;

    if ((r = check_dir_owner(dir, err)) < 0)
        return r;
    if (!(d = opendir(dir)))
        return rc_error_sys(err, RC_EIO, "opening %s", dir);
    r = 0;
    while ((errno = 0, de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (de->d_name[0] == '.')
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) {
            r = rc_error_set(err, RC_ETOOBIG, "policy path too long under %s", dir);
            break;
        }
        if (top && strcmp(de->d_name, AGENTS_SUBDIR) == 0) {
            if ((r = check_dir(c, path, false, err)) < 0)
                break;
            count += r;
            continue;
        }
        r = n > strlen(JSON_SUFFIX) &&
            strcmp(de->d_name + n - strlen(JSON_SUFFIX), JSON_SUFFIX) == 0;
        if (r)
            snprintf(name, sizeof name, "%.*s", (int)(n - strlen(JSON_SUFFIX)), de->d_name);
        if (!r || !token_valid(name, top ? RC_LAUNCHER_POLICY_NAME_MAX : AGENT_ID_MAX)) {
            r = rc_error_set(err, RC_EINVAL,
                             "%s: not a policy file name (want <name>.json, name "
                             "[A-Za-z0-9][A-Za-z0-9_-])",
                             path);
            break;
        }
        if ((r = check_file(c, path, err)) < 0)
            break;
        count++;
        r = 0;
    }
    if (r == 0 && !de && errno != 0)
        r = rc_error_sys(err, RC_EIO, "reading %s", dir);
    closedir(d);
    return r < 0 ? r : count;
}

int rc_launcher_policy_check_all(const rc_launcher_config *c, rc_error *err)
{
    int r, count = 0;

    if (c->forward_key_file) {
        rc_forward_key k;
        if ((r = rc_forward_key_load(c->forward_key_file, &k, err)) < 0)
            return rc_error_wrap(err, RC_EINVAL, "RUNCELL_FORWARD_KEY_FILE");
        rc_forward_key_clear(&k);
    }
    if (c->policy_file) {
        if ((r = check_file(c, c->policy_file, err)) < 0)
            return r;
        count++;
    }
    if (c->policy_dir) {
        if ((r = check_dir(c, c->policy_dir, true, err)) < 0)
            return r;
        count += r;
    }
    return count;
}
