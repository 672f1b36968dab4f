/* skills.c - the emulator's skills (protocol.md section 15): a skill is an id and its versions,
 * each version a name, a description and an archive (zip or tar, as uploaded). Served to workers:
 * GET /v1/skills/{id}/versions (list), GET /v1/skills/{id}/versions/{version} (metadata; the
 * alias `latest` resolves to the newest version), GET /v1/skills/{id}/versions/{version}/content
 * (the archive, by concrete version id). Any credential may read (15.4); no beta header needed
 * (15.2). Skills are created through the admin extension POST /_emulator/v1/skills, not the
 * multipart upload of the real API: the emulator stores the archive as given and never unpacks
 * it, so hostile archives can be served on purpose. Skills live in memory only. */
#include "server.h"

#include "../lib/base64.h"
#include "../lib/cleanup.h"
#include "../lib/log.h"

#include <stdlib.h>
#include <string.h>

#define SKILL_ARCHIVE_MAX  (RC_EM_BODY_MAX / 2) /* base64 in a JSON body of at most 4 MiB */
#define SKILL_TEXT_MAX     1024
#define SKILL_VERSIONS_MAX 64
#define SKILLS_MAX         256

typedef struct skill_version {
    char id[24]; /* numeric, like the real API's version ids */
    char *name, *description;
    int64_t created_us;
    unsigned char *content;
    size_t len;
} skill_version;

typedef struct skill {
    char id[RC_EM_ID_MAX];
    skill_version *versions; /* oldest first */
    size_t nversions;
} skill;

struct rc_em_skills {
    skill *items;
    size_t n;
    int64_t last_version_us; /* makes version ids unique and increasing */
};

void rc_emskills_free(rc_em *em)
{
    struct rc_em_skills *sk = em->skills;
    if (!sk)
        return;
    for (size_t i = 0; i < sk->n; i++) {
        for (size_t v = 0; v < sk->items[i].nversions; v++) {
            free(sk->items[i].versions[v].name);
            free(sk->items[i].versions[v].description);
            free(sk->items[i].versions[v].content);
        }
        free(sk->items[i].versions);
    }
    free(sk->items);
    free(sk);
    em->skills = NULL;
}

static skill *skill_find(rc_em *em, const char *id)
{
    struct rc_em_skills *sk = em->skills;
    for (size_t i = 0; sk && i < sk->n; i++)
        if (strcmp(sk->items[i].id, id) == 0)
            return &sk->items[i];
    return NULL;
}

/* The version named by a path segment: a concrete id, or `latest` when allowed. */
static skill_version *version_find(skill *s, const char *v, bool allow_latest)
{
    if (allow_latest && strcmp(v, "latest") == 0)
        return s->nversions ? &s->versions[s->nversions - 1] : NULL;
    for (size_t i = 0; i < s->nversions; i++)
        if (strcmp(s->versions[i].id, v) == 0)
            return &s->versions[i];
    return NULL;
}

static cJSON *version_json(const skill *s, const skill_version *v)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "skill_version");
    cJSON_AddStringToObject(o, "id", v->id);
    cJSON_AddStringToObject(o, "skill_id", s->id);
    cJSON_AddStringToObject(o, "name", v->name);
    cJSON_AddStringToObject(o, "description", v->description);
    cJSON_AddItemToObject(o, "created_at", rc_emutil_ts(v->created_us));
    return o;
}

static skill *lookup(rc_em_ctx *c)
{
    skill *s = skill_find(c->em, c->params[0]);
    if (!s)
        rc_emsrv_notfound(c, "skill %s not found", c->params[0]);
    return s;
}

int rc_emroute_skill_versions_list(rc_em_ctx *c)
{
    skill *s = lookup(c);
    size_t start, count;
    char *next = NULL;
    cJSON *items;

    if (!s || rc_emsrv_page(c, s->nversions, &start, &count, &next) < 0)
        return 0;
    items = cJSON_CreateArray();
    /* newest first, like the API's lists */
    for (size_t i = start; i < start + count; i++)
        cJSON_AddItemToArray(items, version_json(s, &s->versions[s->nversions - 1 - i]));
    return rc_emsrv_page_json(c, items, next);
}

int rc_emroute_skill_version_get(rc_em_ctx *c)
{
    skill *s = lookup(c);
    skill_version *v;
    if (!s)
        return 0;
    if (!(v = version_find(s, c->params[1], true)))
        return rc_emsrv_notfound(c, "skill %s has no version %s", s->id, c->params[1]);
    return rc_emsrv_json(c, 200, version_json(s, v));
}

int rc_emroute_skill_content(rc_em_ctx *c)
{
    skill *s = lookup(c);
    skill_version *v;
    unsigned char *copy;

    if (!s)
        return 0;
    /* content is addressed by the concrete version id only (15.1 step 3) */
    if (!(v = version_find(s, c->params[1], false)))
        return rc_emsrv_notfound(c, "skill %s has no version %s", s->id, c->params[1]);
    if (!(copy = malloc(v->len ? v->len : 1)))
        return rc_emsrv_internal(c, NULL);
    memcpy(copy, v->content, v->len);
    c->resp.status = 200;
    c->resp.body = (char *)copy;
    c->resp.len = v->len;
    c->resp.content_type = "application/octet-stream";
    return 0;
}

/* ---- admin: POST /_emulator/v1/skills ------------------------------------------------------ */

static int text_field(rc_em_ctx *c, const char *key, bool required, const char **ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->body, key);
    if (!v && !required) {
        *ret = "";
        return 0;
    }
    if (!cJSON_IsString(v) || (required && !v->valuestring[0]) ||
        strlen(v->valuestring) > SKILL_TEXT_MAX) {
        rc_emsrv_bad(c, "%s: %s string of at most %d bytes", key,
                     required ? "required, a non-empty" : "a", SKILL_TEXT_MAX);
        return -1;
    }
    *ret = v->valuestring;
    return 0;
}

static int decode_archive(rc_em_ctx *c, unsigned char **ret, size_t *ret_len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->body, "content_base64");
    unsigned char *out = NULL;
    rc_error err = {0};
    size_t n = 0;

    if (!cJSON_IsString(v)) {
        rc_emsrv_bad(c, "content_base64: required, the archive in base64");
        return -1;
    }
    if (rc_base64_decode_alloc(v->valuestring, strlen(v->valuestring), 0, SKILL_ARCHIVE_MAX, &out,
                               &n, &err) < 0) {
        rc_emsrv_bad(c, "content_base64: %s", err.msg);
        return -1;
    }
    *ret = out;
    *ret_len = n;
    return 0;
}

/* The skill to add a version to: an existing one (body skill_id), or a new one. */
static skill *target_skill(rc_em_ctx *c, rc_error *err)
{
    struct rc_em_skills *sk = c->em->skills;
    const char *id = rc_emutil_jstr(c->body, "skill_id");
    skill *s, *grown;

    if (id) {
        if (!(s = skill_find(c->em, id)))
            rc_emsrv_notfound(c, "skill %s not found", id);
        return s;
    }
    if (sk->n >= SKILLS_MAX) {
        rc_emsrv_bad(c, "too many skills (at most %d)", SKILLS_MAX);
        return NULL;
    }
    if (!(grown = realloc(sk->items, (sk->n + 1) * sizeof *grown))) {
        rc_emsrv_internal(c, NULL);
        return NULL;
    }
    sk->items = grown;
    s = &sk->items[sk->n];
    memset(s, 0, sizeof *s);
    if (rc_emutil_random_id("skill_", s->id, sizeof s->id, err) < 0) {
        rc_emsrv_internal(c, err);
        return NULL;
    }
    sk->n++;
    return s;
}

static int add_version(rc_em_ctx *c, skill *s, const char *name, const char *desc,
                       unsigned char *content, size_t len)
{
    struct rc_em_skills *sk = c->em->skills;
    skill_version *grown, *v;
    int64_t now = rc_emutil_now_us();

    if (s->nversions >= SKILL_VERSIONS_MAX)
        return rc_emsrv_bad(c, "skill %s has too many versions (at most %d)", s->id,
                            SKILL_VERSIONS_MAX);
    if (!(grown = realloc(s->versions, (s->nversions + 1) * sizeof *grown)))
        return rc_emsrv_internal(c, NULL);
    s->versions = grown;
    v = &s->versions[s->nversions];
    memset(v, 0, sizeof *v);
    if (!(v->name = strdup(name)) || !(v->description = strdup(desc))) {
        free(v->name);
        free(v->description);
        return rc_emsrv_internal(c, NULL);
    }
    sk->last_version_us = now > sk->last_version_us ? now : sk->last_version_us + 1;
    snprintf(v->id, sizeof v->id, "%lld", (long long)sk->last_version_us);
    v->created_us = now;
    v->content = content;
    v->len = len;
    s->nversions++;
    rc_log_info("skill %s: version %s (%s, %zu bytes)", s->id, v->id, v->name, len);
    return rc_emsrv_json(c, 200, version_json(s, v));
}

int rc_emadmin_skill_create(rc_em_ctx *c)
{
    _cleanup_free_ unsigned char *content = NULL;
    const char *name, *desc;
    rc_error err = {0};
    size_t len = 0;
    skill *s;
    int r;

    if (!c->body)
        return rc_emsrv_bad(c, "a JSON body is required");
    if (text_field(c, "name", true, &name) < 0 || text_field(c, "description", false, &desc) < 0 ||
        decode_archive(c, &content, &len) < 0)
        return 0;
    if (!c->em->skills && !(c->em->skills = calloc(1, sizeof *c->em->skills)))
        return rc_emsrv_internal(c, NULL);
    if (!(s = target_skill(c, &err)))
        return 0;
    r = add_version(c, s, name, desc, content, len);
    if (c->resp.status == 200)
        content = NULL; /* the version owns it now */
    return r;
}
