/* memory.c - the emulator's memory stores (protocol.md section 16; SDK 1.10.0
 * resources/beta/memory-stores): stores (`memstore_...`), the memories in them (`mem_...`, a
 * path and UTF-8 text content, with a content_sha256 and a memory_version_id that changes on
 * every write), and the `memory_store` resources of sessions (8.1).
 *
 * Served:
 *   POST/GET /v1/memory_stores, GET/POST/DELETE /v1/memory_stores/{store}, POST .../archive
 *     (store management; API key, a sessions token may retrieve a store attached to its session);
 *   GET/POST /v1/memory_stores/{store}/memories, GET/POST/DELETE .../memories/{mem}
 *     (the five calls of 16.1; API key, or a sessions token for stores attached to its session;
 *     the environment key is refused by the route table in server.c).
 * The rules follow the SDK's documentation: paths are absolute, 1-20 segments, at most 1024
 * bytes, no empty/`.`/`..` segments, no control or format characters and no U+2028/U+2029 (NFC is
 * not checked); two paths conflict when equal or when one is an ancestor of the other (409
 * memory_path_conflict_error naming the other memory); content is at most 102400 bytes; an update
 * or delete whose content_sha256 precondition fails answers 409
 * memory_precondition_failed_error, except an update that would change nothing; lists are sorted
 * by path, `view=full` pages hold at most 20 items and `basic` pages 100, `path_prefix` (ending
 * in '/') matches whole segments and `depth` rolls deeper memories up into `memory_prefix`
 * items; the page cursor is the last key of the previous page, so a listing never skips a memory
 * that stays put while others are written.
 *
 * A sessions token writing to a store attached `read_only` gets 403 (the server-side view of a
 * read-only mount). Everything lives in memory only (not in --state-dir), like skills. Unlike the
 * objects of em.h, a deleted memory is freed at once: nothing outside its store points to it
 * (sessions name stores by id); a deleted store is only marked, its memories freed. */
#include "server.h"

#include "../lib/base64.h"
#include "../lib/cleanup.h"
#include "../lib/log.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define MEM_CONTENT_MAX  102400
#define MEM_PATH_MAX     1024
#define MEM_SEGMENTS_MAX 20
/* SDK 1.10.0 tools/agent-toolset/memories.ts: "the server's 2000-memories-per-store cap" */
#define MEM_PER_STORE_MAX 2000
#define MEM_STORES_MAX    1024
#define MEM_NAME_MAX      255  /* characters */
#define MEM_DESC_MAX      1024 /* characters */
#define MEM_INSTR_MAX     4096 /* characters */
#define MEM_PAGE_FULL     20
#define MEM_PAGE_BASIC    100
#define MEM_PAGE_DEFAULT  20
#define MEM_RESOURCES_MAX 8 /* 19.3 */
#define MEM_MOUNT_ROOT    "/mnt/memory/"
#define MEM_CURSOR_PREFIX "mp_"

typedef struct mem_memory {
    char id[RC_EM_ID_MAX];
    char version_id[RC_EM_ID_MAX];
    char *path;
    char *content; /* NUL-terminated; never contains NUL */
    size_t len;
    char sha[65];
    int64_t created_us, updated_us;
} mem_memory;

typedef struct mem_store {
    char id[RC_EM_ID_MAX];
    char *name, *description;
    cJSON *metadata;
    int64_t created_us, updated_us, archived_us;
    bool deleted;
    mem_memory **mems; /* unordered; lists sort */
    size_t n, cap;
} mem_store;

struct rc_em_memory {
    mem_store **stores;
    size_t n, cap;
};

/* ---- lifetime ---- */

static void memory_free(mem_memory *m)
{
    if (!m)
        return;
    free(m->path);
    free(m->content);
    free(m);
}

static void store_drop_memories(mem_store *s)
{
    for (size_t i = 0; i < s->n; i++)
        memory_free(s->mems[i]);
    free(s->mems);
    s->mems = NULL;
    s->n = s->cap = 0;
}

void rc_emmem_free(rc_em *em)
{
    struct rc_em_memory *mm = em->memory;
    if (!mm)
        return;
    for (size_t i = 0; i < mm->n; i++) {
        store_drop_memories(mm->stores[i]);
        free(mm->stores[i]->name);
        free(mm->stores[i]->description);
        cJSON_Delete(mm->stores[i]->metadata);
        free(mm->stores[i]);
    }
    free(mm->stores);
    free(mm);
    em->memory = NULL;
}

static mem_store *store_find(rc_em *em, const char *id)
{
    struct rc_em_memory *mm = em->memory;
    for (size_t i = 0; mm && i < mm->n; i++)
        if (!mm->stores[i]->deleted && strcmp(mm->stores[i]->id, id) == 0)
            return mm->stores[i];
    return NULL;
}

static mem_memory *memory_find(mem_store *s, const char *id, size_t *ret_index)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->mems[i]->id, id) == 0) {
            if (ret_index)
                *ret_index = i;
            return s->mems[i];
        }
    return NULL;
}

/* ---- validation ---- */

/* Decode one code point of valid UTF-8 at s (the caller checked validity). */
static uint32_t utf8_next(const unsigned char *s, size_t *ret_len)
{
    if (s[0] < 0x80) {
        *ret_len = 1;
        return s[0];
    }
    if ((s[0] & 0xE0) == 0xC0) {
        *ret_len = 2;
        return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    }
    if ((s[0] & 0xF0) == 0xE0) {
        *ret_len = 3;
        return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *ret_len = 4;
    return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
           ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

/* Unicode general categories Cc and Cf (Unicode 15), and the separators U+2028 / U+2029. */
static bool forbidden_char(uint32_t cp)
{
    static const uint32_t ranges[][2] = {
        {0x0000, 0x001F},   {0x007F, 0x009F},   {0x00AD, 0x00AD},   {0x0600, 0x0605},
        {0x061C, 0x061C},   {0x06DD, 0x06DD},   {0x070F, 0x070F},   {0x0890, 0x0891},
        {0x08E2, 0x08E2},   {0x180E, 0x180E},   {0x200B, 0x200F},   {0x2028, 0x202E},
        {0x2060, 0x2064},   {0x2066, 0x206F},   {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},
        {0x110BD, 0x110BD}, {0x110CD, 0x110CD}, {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3},
        {0x1D173, 0x1D17A}, {0xE0001, 0xE0001}, {0xE0020, 0xE007F},
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
        if (cp >= ranges[i][0] && cp <= ranges[i][1])
            return true;
    return false;
}

/* Valid UTF-8 without control or format characters; *ret_chars = code points. */
static int text_check(const char *s, size_t n, size_t *ret_chars, rc_error *err)
{
    size_t i = 0, chars = 0, len;
    if (!rc_emutil_utf8_valid(s, n))
        return rc_error_set(err, RC_EINVAL, "is not valid UTF-8");
    while (i < n) {
        uint32_t cp = utf8_next((const unsigned char *)s + i, &len);
        if (forbidden_char(cp))
            return rc_error_set(err, RC_EINVAL, "must not contain control or format characters");
        i += len;
        chars++;
    }
    *ret_chars = chars;
    return 0;
}

int rc_emmem_path_check(const char *p, size_t n, rc_error *err)
{
    size_t chars, segs = 0, i = 1;
    int r;

    if (n == 0 || p[0] != '/')
        return rc_error_set(err, RC_EINVAL, "must start with /");
    if (n > MEM_PATH_MAX)
        return rc_error_set(err, RC_EINVAL, "must be at most %d bytes", MEM_PATH_MAX);
    if (memchr(p, '\0', n))
        return rc_error_set(err, RC_EINVAL, "must not contain NUL");
    if ((r = text_check(p, n, &chars, err)) < 0)
        return r;
    while (i <= n) {
        const char *seg = p + i, *end = memchr(seg, '/', n - i);
        size_t sl = end ? (size_t)(end - seg) : n - i;
        if (sl == 0)
            return rc_error_set(err, RC_EINVAL, "must not contain empty segments");
        if ((sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.'))
            return rc_error_set(err, RC_EINVAL, "must not contain . or .. segments");
        if (++segs > MEM_SEGMENTS_MAX)
            return rc_error_set(err, RC_EINVAL, "must have at most %d segments", MEM_SEGMENTS_MAX);
        i += sl + 1;
    }
    return 0;
}

int rc_emmem_prefix_check(const char *p, size_t n, rc_error *err)
{
    int r;
    if (n == 0 || p[0] != '/' || p[n - 1] != '/')
        return rc_error_set(err, RC_EINVAL, "must start and end with /");
    if (n == 1)
        return 0;
    /* "/a/b/" is valid exactly when "/a/b" is a valid path */
    r = rc_emmem_path_check(p, n - 1, err);
    return r;
}

size_t rc_emmem_slug(const char *name, char *out, size_t outsz)
{
    size_t o = 0;
    bool dash = false;
    if (outsz == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)name; *p && o + 1 < outsz; p++) {
        unsigned char ch = *p;
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z');
        if (!alnum) {
            dash = o > 0; /* a leading run is dropped */
            continue;
        }
        if (dash) {
            if (o + 2 >= outsz)
                break; /* no room for '-' and a character after it */
            out[o++] = '-';
            dash = false;
        }
        out[o++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    out[o] = '\0'; /* a trailing run is dropped too */
    return o;
}

/* A string member of min..max characters (code points); names (free_text false) may not hold
 * control or format characters. Absent gives dflt (which may be NULL); null gives NULL when
 * null_ok. Fills a 400 and returns -1 otherwise. */
static int text_field(rc_em_ctx *c, const cJSON *obj, const char *key, size_t min, size_t max,
                      bool null_ok, bool free_text, const char *dflt, const char **ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    rc_error err = {0};
    size_t chars = 0, n;

    if (!v) {
        *ret = dflt;
        return 0;
    }
    if (null_ok && cJSON_IsNull(v)) {
        *ret = NULL;
        return 0;
    }
    if (!cJSON_IsString(v))
        return rc_emsrv_bad(c, "%s: must be a string%s", key, null_ok ? " or null" : ""), -1;
    n = strlen(v->valuestring);
    if (free_text) {
        for (size_t i = 0; i < n; i++)
            chars += ((unsigned char)v->valuestring[i] & 0xC0) != 0x80;
    } else if (text_check(v->valuestring, n, &chars, &err) < 0) {
        return rc_emsrv_bad(c, "%s: %s", key, err.msg), -1;
    }
    if (chars < min || chars > max)
        return rc_emsrv_bad(c, "%s: must be %zu to %zu characters long", key, min, max), -1;
    *ret = v->valuestring;
    return 0;
}

/* The raw body holds a \u0000 escape (cJSON would cut the string there). The body is valid
 * JSON, so a backslash outside a string cannot occur. */
static bool body_has_nul_escape(const rc_em_ctx *c)
{
    const rc_buf *b = &c->req->body;
    for (size_t i = 0; i + 1 < b->len; i++) {
        if (b->data[i] != '\\')
            continue;
        if (b->data[i + 1] == 'u' && i + 5 < b->len && memcmp(b->data + i + 2, "0000", 4) == 0)
            return true;
        i++; /* skip the escaped character */
    }
    return false;
}

static bool is_sha_hex(const char *s)
{
    size_t i;
    for (i = 0; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == 64;
}

static void sha256_hex(const char *data, size_t n, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        memset(out, '0', 64); /* not reached with a working OpenSSL */
        out[64] = '\0';
        return;
    }
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

/* ---- JSON ---- */

static cJSON *store_json(const mem_store *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "memory_store");
    cJSON_AddStringToObject(o, "id", s->id);
    cJSON_AddStringToObject(o, "name", s->name);
    cJSON_AddStringToObject(o, "description", s->description);
    cJSON_AddItemToObject(o, "metadata", cJSON_Duplicate(s->metadata, 1));
    cJSON_AddItemToObject(o, "created_at", rc_emutil_ts(s->created_us));
    cJSON_AddItemToObject(o, "updated_at", rc_emutil_ts(s->updated_us));
    cJSON_AddItemToObject(o, "archived_at", rc_emutil_ts(s->archived_us));
    return o;
}

static cJSON *memory_json(const mem_store *s, const mem_memory *m, bool full)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "memory");
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "memory_store_id", s->id);
    cJSON_AddStringToObject(o, "path", m->path);
    if (full)
        cJSON_AddStringToObject(o, "content", m->content);
    else
        cJSON_AddNullToObject(o, "content");
    cJSON_AddStringToObject(o, "content_sha256", m->sha);
    cJSON_AddNumberToObject(o, "content_size_bytes", (double)m->len);
    cJSON_AddStringToObject(o, "memory_version_id", m->version_id);
    cJSON_AddItemToObject(o, "created_at", rc_emutil_ts(m->created_us));
    cJSON_AddItemToObject(o, "updated_at", rc_emutil_ts(m->updated_us));
    return o;
}

static int conflict_error(rc_em_ctx *c, const char *type, const char *msg, const mem_memory *other)
{
    cJSON *o = cJSON_CreateObject(), *e;
    cJSON_AddStringToObject(o, "type", "error");
    e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddStringToObject(e, "message", msg);
    if (other) {
        cJSON_AddStringToObject(e, "conflicting_memory_id", other->id);
        cJSON_AddStringToObject(e, "conflicting_path", other->path);
    }
    cJSON_AddStringToObject(o, "request_id", c->request_id);
    rc_emsrv_json(c, 409, o);
    c->resp.should_retry = 0; /* final (2.7.4) */
    return 0;
}

/* ---- access ---- */

/* The memory_store resource of the token's session for store_id, or NULL. */
static const cJSON *token_resource(rc_em_ctx *c, const char *store_id)
{
    const rc_em_session *s = c->auth.cred->work ? c->auth.cred->work->session : NULL;
    const cJSON *r;
    if (!s || !s->resources)
        return NULL;
    cJSON_ArrayForEach(r, s->resources)
    {
        const char *id = rc_emutil_jstr(r, "memory_store_id");
        if (id && strcmp(id, store_id) == 0)
            return r;
    }
    return NULL;
}

/* The store named by params[0], checked against the credential (3.2): the API key reaches every
 * store; a sessions token only stores attached to its session (403 otherwise, before the
 * existence check, so a token learns nothing about other stores), and writes only to stores
 * attached read_write. */
static mem_store *store_lookup(rc_em_ctx *c, bool write)
{
    const char *id = c->params[0];
    mem_store *s;

    if (c->auth.kind == RC_EM_CRED_TOKEN) {
        const cJSON *r = token_resource(c, id);
        const char *access = r ? rc_emutil_jstr(r, "access") : NULL;
        if (!r) {
            rc_emsrv_forbidden(c, "memory store %s is not attached to this token's session", id);
            return NULL;
        }
        if (write && access && strcmp(access, "read_only") == 0) {
            rc_emsrv_forbidden(c, "memory store %s is attached read_only to this session", id);
            return NULL;
        }
    } else if (c->auth.kind != RC_EM_CRED_API_KEY) {
        rc_emsrv_forbidden(c, "a %s may not use memory stores", rc_emsrv_cred_name(c->auth.kind));
        return NULL;
    }
    if (!(s = store_find(c->em, id)))
        rc_emsrv_notfound(c, "memory store %s not found", id);
    return s;
}

static int writable(rc_em_ctx *c, const mem_store *s)
{
    if (s->archived_us)
        return rc_emsrv_bad(c, "memory store %s is archived: its memories are read-only", s->id),
               -1;
    return 0;
}

/* view query parameter: 1 full, 0 basic, -1 after a 400. */
static int view_param(rc_em_ctx *c, bool dflt_full)
{
    const char *v = rc_emsrv_query(c, "view");
    if (!v)
        return dflt_full;
    if (strcmp(v, "full") == 0)
        return 1;
    if (strcmp(v, "basic") == 0)
        return 0;
    rc_emsrv_bad(c, "view: must be basic or full");
    return -1;
}

/* ---- stores ---- */

static int store_add(rc_em_ctx *c, mem_store *s)
{
    struct rc_em_memory *mm;
    if (!c->em->memory && !(c->em->memory = calloc(1, sizeof(*c->em->memory))))
        return -1;
    mm = c->em->memory;
    if (mm->n == mm->cap) {
        size_t ncap = mm->cap ? mm->cap * 2 : 16;
        mem_store **g = realloc(mm->stores, ncap * sizeof(*g));
        if (!g)
            return -1;
        mm->stores = g;
        mm->cap = ncap;
    }
    mm->stores[mm->n++] = s;
    return 0;
}

int rc_emroute_memstore_create(rc_em_ctx *c)
{
    static const char *const keys[] = {"name", "description", "metadata", NULL};
    const char *name, *desc;
    const cJSON *meta;
    rc_error err = {0};
    mem_store *s;

    if (!c->body)
        return rc_emsrv_bad(c, "name: required");
    if (rc_emsrv_check_keys(c, c->body, keys) < 0)
        return 0;
    if (!cJSON_GetObjectItemCaseSensitive(c->body, "name"))
        return rc_emsrv_bad(c, "name: required");
    if (text_field(c, c->body, "name", 1, MEM_NAME_MAX, false, false, NULL, &name) < 0 ||
        text_field(c, c->body, "description", 0, MEM_DESC_MAX, false, true, "", &desc) < 0)
        return 0;
    meta = cJSON_GetObjectItemCaseSensitive(c->body, "metadata");
    if (meta && rc_emutil_check_metadata(meta, false, &err) < 0)
        return rc_emsrv_bad(c, "%s", err.msg);
    if (c->em->memory && c->em->memory->n >= MEM_STORES_MAX)
        return rc_emsrv_bad(c, "too many memory stores (at most %d)", MEM_STORES_MAX);
    if (!(s = calloc(1, sizeof(*s))))
        return rc_emsrv_internal(c, NULL);
    s->name = strdup(name);
    s->description = strdup(desc);
    s->metadata = meta ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject();
    s->created_us = s->updated_us = rc_emutil_now_us();
    if (!s->name || !s->description || !s->metadata ||
        rc_emutil_random_id("memstore_", s->id, sizeof(s->id), &err) < 0 || store_add(c, s) < 0) {
        free(s->name);
        free(s->description);
        cJSON_Delete(s->metadata);
        free(s);
        return rc_emsrv_internal(c, &err);
    }
    rc_log_info("memory store %s created", s->id);
    return rc_emsrv_json(c, 200, store_json(s));
}

int rc_emroute_memstore_get(rc_em_ctx *c)
{
    mem_store *s = store_lookup(c, false);
    if (!s)
        return 0;
    return rc_emsrv_json(c, 200, store_json(s));
}

int rc_emroute_memstore_list(rc_em_ctx *c)
{
    struct rc_em_memory *mm = c->em->memory;
    const char *ia = rc_emsrv_query(c, "include_archived");
    _cleanup_free_ mem_store **sel = NULL;
    size_t n = 0, start, count;
    bool archived = false;
    char *next;
    cJSON *items;

    if (ia && strcmp(ia, "true") != 0 && strcmp(ia, "false") != 0)
        return rc_emsrv_bad(c, "include_archived: must be true or false");
    archived = ia && strcmp(ia, "true") == 0;
    if (!(sel = calloc(mm ? mm->n + 1 : 1, sizeof(*sel))))
        return rc_emsrv_internal(c, NULL);
    /* newest first */
    for (size_t i = mm ? mm->n : 0; i-- > 0;)
        if (!mm->stores[i]->deleted && (archived || !mm->stores[i]->archived_us))
            sel[n++] = mm->stores[i];
    if (rc_emsrv_page(c, n, &start, &count, &next) < 0)
        return 0;
    items = cJSON_CreateArray();
    for (size_t i = start; i < start + count; i++)
        cJSON_AddItemToArray(items, store_json(sel[i]));
    return rc_emsrv_page_json(c, items, next);
}

/* The store's metadata after a merge patch, or NULL after a 400 (more than 16 keys). */
static cJSON *merged_metadata(rc_em_ctx *c, const mem_store *s, const cJSON *patch)
{
    cJSON *m = cJSON_Duplicate(s->metadata, 1);
    if (!m) {
        rc_emsrv_internal(c, NULL);
        return NULL;
    }
    rc_emutil_merge_metadata(m, patch);
    if (cJSON_GetArraySize(m) > 16) {
        cJSON_Delete(m);
        rc_emsrv_bad(c, "metadata: at most 16 keys are allowed after the change");
        return NULL;
    }
    return m;
}

static void replace_str(char **dst, char *val)
{
    if (!val)
        return;
    free(*dst);
    *dst = val;
}

int rc_emroute_memstore_update(rc_em_ctx *c)
{
    static const char *const keys[] = {"name", "description", "metadata", NULL};
    mem_store *s = store_lookup(c, true);
    const char *name = NULL, *desc = NULL;
    const cJSON *patch;
    _cleanup_json_ cJSON *meta = NULL;
    _cleanup_free_ char *nn = NULL, *nd = NULL;
    rc_error err = {0};

    if (!s)
        return 0;
    if (!c->body)
        return rc_emsrv_json(c, 200, store_json(s));
    if (rc_emsrv_check_keys(c, c->body, keys) < 0 ||
        text_field(c, c->body, "name", 1, MEM_NAME_MAX, true, false, NULL, &name) < 0 ||
        text_field(c, c->body, "description", 0, MEM_DESC_MAX, true, true, NULL, &desc) < 0)
        return 0;
    patch = cJSON_GetObjectItemCaseSensitive(c->body, "metadata");
    if (cJSON_IsNull(patch))
        patch = NULL;
    if (patch && rc_emutil_check_metadata(patch, true, &err) < 0)
        return rc_emsrv_bad(c, "%s", err.msg);
    if (s->archived_us && (name || desc || patch))
        return rc_emsrv_bad(c, "memory store %s is archived", s->id);
    if (patch && !(meta = merged_metadata(c, s, patch)))
        return 0;
    if ((name && !(nn = strdup(name))) || (desc && !(nd = strdup(desc))))
        return rc_emsrv_internal(c, NULL);
    replace_str(&s->name, take_ptr(nn));
    replace_str(&s->description, take_ptr(nd));
    if (meta) {
        cJSON_Delete(s->metadata);
        s->metadata = take_ptr(meta);
    }
    s->updated_us = rc_emutil_now_us();
    return rc_emsrv_json(c, 200, store_json(s));
}

int rc_emroute_memstore_archive(rc_em_ctx *c)
{
    mem_store *s = store_lookup(c, true);
    if (!s)
        return 0;
    if (!s->archived_us) {
        s->archived_us = s->updated_us = rc_emutil_now_us();
        rc_log_info("memory store %s archived", s->id);
    }
    return rc_emsrv_json(c, 200, store_json(s));
}

int rc_emroute_memstore_delete(rc_em_ctx *c)
{
    mem_store *s = store_lookup(c, true);
    cJSON *o;
    if (!s)
        return 0;
    s->deleted = true;
    store_drop_memories(s);
    rc_log_info("memory store %s deleted", s->id);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", s->id);
    cJSON_AddStringToObject(o, "type", "memory_store_deleted");
    return rc_emsrv_json(c, 200, o);
}

/* ---- memories ---- */

/* Another memory whose path equals p or is an ancestor or descendant of it. */
static mem_memory *path_conflict(const mem_store *s, const char *p, const mem_memory *self)
{
    size_t pl = strlen(p);
    for (size_t i = 0; i < s->n; i++) {
        const mem_memory *m = s->mems[i];
        size_t ml = strlen(m->path);
        if (m == self)
            continue;
        if (ml == pl && memcmp(m->path, p, pl) == 0)
            return s->mems[i];
        if (ml < pl && memcmp(m->path, p, ml) == 0 && p[ml] == '/')
            return s->mems[i]; /* an ancestor */
        if (pl < ml && memcmp(m->path, p, pl) == 0 && m->path[pl] == '/')
            return s->mems[i]; /* a descendant */
    }
    return NULL;
}

/* The "path" member as a checked path, or NULL (absent or null, when allowed). -1 after a 400. */
static int path_member(rc_em_ctx *c, bool required, const char **ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->body, "path");
    rc_error err = {0};
    *ret = NULL;
    if (!v || (!required && cJSON_IsNull(v))) {
        if (required)
            return rc_emsrv_bad(c, "path: required"), -1;
        return 0;
    }
    if (!cJSON_IsString(v))
        return rc_emsrv_bad(c, "path: must be a string"), -1;
    if (rc_emmem_path_check(v->valuestring, strlen(v->valuestring), &err) < 0)
        return rc_emsrv_bad(c, "path: %s", err.msg), -1;
    *ret = v->valuestring;
    return 0;
}

/* The "content" member: a string of at most MEM_CONTENT_MAX bytes, or NULL when absent or null
 * (create: null means ""). -1 after a 400. */
static int content_member(rc_em_ctx *c, bool required, const char **ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->body, "content");
    *ret = NULL;
    if (!v && required)
        return rc_emsrv_bad(c, "content: required"), -1;
    if (!v || cJSON_IsNull(v)) {
        *ret = required ? "" : NULL;
        return 0;
    }
    if (!cJSON_IsString(v))
        return rc_emsrv_bad(c, "content: must be a string"), -1;
    if (strlen(v->valuestring) > MEM_CONTENT_MAX)
        return rc_emsrv_bad(c, "content: must be at most %d bytes", MEM_CONTENT_MAX), -1;
    *ret = v->valuestring;
    return 0;
}

static int set_content(mem_memory *m, const char *content, rc_error *err)
{
    char *dup = strdup(content);
    if (!dup)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    free(m->content);
    m->content = dup;
    m->len = strlen(dup);
    sha256_hex(dup, m->len, m->sha);
    return 0;
}

static int new_version(mem_memory *m, rc_error *err)
{
    m->updated_us = rc_emutil_now_us();
    return rc_emutil_random_id("memver_", m->version_id, sizeof(m->version_id), err);
}

static int memory_add(mem_store *s, mem_memory *m)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        mem_memory **g = realloc(s->mems, ncap * sizeof(*g));
        if (!g)
            return -1;
        s->mems = g;
        s->cap = ncap;
    }
    s->mems[s->n++] = m;
    return 0;
}

int rc_emroute_memory_create(rc_em_ctx *c)
{
    static const char *const keys[] = {"path", "content", NULL};
    mem_store *s = store_lookup(c, true);
    const char *path, *content;
    mem_memory *m, *other;
    rc_error err = {0};
    int full;
    char msg[256];

    if (!s || (full = view_param(c, false)) < 0)
        return 0;
    if (!c->body)
        return rc_emsrv_bad(c, "path: required");
    if (rc_emsrv_check_keys(c, c->body, keys) < 0 || path_member(c, true, &path) < 0 ||
        content_member(c, true, &content) < 0)
        return 0;
    if (body_has_nul_escape(c))
        return rc_emsrv_bad(c, "content: must not contain NUL characters");
    if (writable(c, s) < 0)
        return 0;
    if ((other = path_conflict(s, path, NULL))) {
        snprintf(msg, sizeof(msg), "path %s conflicts with the existing memory at %.*s", path, 400,
                 other->path);
        return conflict_error(c, "memory_path_conflict_error", msg, other);
    }
    if (s->n >= MEM_PER_STORE_MAX)
        return rc_emsrv_bad(c, "memory store %s is full (at most %d memories)", s->id,
                            MEM_PER_STORE_MAX);
    if (!(m = calloc(1, sizeof(*m))))
        return rc_emsrv_internal(c, NULL);
    if (!(m->path = strdup(path)) || set_content(m, content, &err) < 0 ||
        rc_emutil_random_id("mem_", m->id, sizeof(m->id), &err) < 0 || new_version(m, &err) < 0 ||
        memory_add(s, m) < 0) {
        memory_free(m);
        return rc_emsrv_internal(c, &err);
    }
    m->created_us = m->updated_us;
    rc_log_info("memory store %s: created %s (%zu bytes)", s->id, m->id, m->len);
    return rc_emsrv_json(c, 200, memory_json(s, m, full));
}

static mem_memory *memory_lookup(rc_em_ctx *c, mem_store *s, size_t *ret_index)
{
    mem_memory *m = memory_find(s, c->params[1], ret_index);
    if (!m)
        rc_emsrv_notfound(c, "memory %s not found in memory store %s", c->params[1], s->id);
    return m;
}

int rc_emroute_memory_get(rc_em_ctx *c)
{
    mem_store *s = store_lookup(c, false);
    mem_memory *m;
    int full;
    if (!s || (full = view_param(c, true)) < 0 || !(m = memory_lookup(c, s, NULL)))
        return 0;
    return rc_emsrv_json(c, 200, memory_json(s, m, full));
}

/* precondition: absent (NULL, 0), or {"type":"content_sha256","content_sha256":hex}. */
static int precondition_member(rc_em_ctx *c, const char **ret_sha)
{
    static const char *const keys[] = {"type", "content_sha256", NULL};
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(c->body, "precondition");
    const char *t, *sha;
    *ret_sha = NULL;
    if (!p || cJSON_IsNull(p))
        return 0;
    if (!cJSON_IsObject(p))
        return rc_emsrv_bad(c, "precondition: must be an object"), -1;
    if (rc_emsrv_check_keys(c, p, keys) < 0)
        return -1;
    t = rc_emutil_jstr(p, "type");
    if (!t || strcmp(t, "content_sha256") != 0)
        return rc_emsrv_bad(c, "precondition.type: must be content_sha256"), -1;
    sha = rc_emutil_jstr(p, "content_sha256");
    if (!sha || !is_sha_hex(sha))
        return rc_emsrv_bad(c, "precondition.content_sha256: 64 lowercase hexadecimal characters"),
               -1;
    *ret_sha = sha;
    return 0;
}

int rc_emroute_memory_update(rc_em_ctx *c)
{
    static const char *const keys[] = {"path", "content", "precondition", NULL};
    mem_store *s = store_lookup(c, true);
    const char *path = NULL, *content = NULL, *want = NULL;
    mem_memory *m, *other;
    rc_error err = {0};
    char *npath = NULL;
    int full;
    char msg[256];

    if (!s || (full = view_param(c, false)) < 0)
        return 0;
    if (c->body && (rc_emsrv_check_keys(c, c->body, keys) < 0 || path_member(c, false, &path) < 0 ||
                    content_member(c, false, &content) < 0 || precondition_member(c, &want) < 0))
        return 0;
    if (c->body && body_has_nul_escape(c))
        return rc_emsrv_bad(c, "content: must not contain NUL characters");
    if (!(m = memory_lookup(c, s, NULL)))
        return 0;
    if (path && strcmp(path, m->path) == 0)
        path = NULL;
    if (content && strcmp(content, m->content) == 0)
        content = NULL;
    /* Nothing would change: succeeds even when the precondition does not hold (SDK docs). */
    if (!path && !content)
        return rc_emsrv_json(c, 200, memory_json(s, m, full));
    if (writable(c, s) < 0)
        return 0;
    if (want && strcmp(want, m->sha) != 0)
        return conflict_error(c, "memory_precondition_failed_error",
                              "precondition failed: content_sha256 does not match the memory's "
                              "current content",
                              NULL);
    if (path && (other = path_conflict(s, path, m))) {
        snprintf(msg, sizeof(msg), "path %s conflicts with the existing memory at %.*s", path, 400,
                 other->path);
        return conflict_error(c, "memory_path_conflict_error", msg, other);
    }
    if (path && !(npath = strdup(path)))
        return rc_emsrv_internal(c, NULL);
    if (content && set_content(m, content, &err) < 0) {
        free(npath);
        return rc_emsrv_internal(c, &err);
    }
    if (npath) {
        free(m->path);
        m->path = npath;
    }
    if (new_version(m, &err) < 0)
        return rc_emsrv_internal(c, &err);
    rc_log_info("memory store %s: updated %s (%zu bytes)", s->id, m->id, m->len);
    return rc_emsrv_json(c, 200, memory_json(s, m, full));
}

int rc_emroute_memory_delete(rc_em_ctx *c)
{
    mem_store *s = store_lookup(c, true);
    const char *want = s ? rc_emsrv_query(c, "expected_content_sha256") : NULL;
    mem_memory *m;
    size_t idx = 0;
    cJSON *o;

    if (!s)
        return 0;
    if (want && !is_sha_hex(want))
        return rc_emsrv_bad(c, "expected_content_sha256: 64 lowercase hexadecimal characters");
    if (!(m = memory_lookup(c, s, &idx)))
        return 0;
    if (want && strcmp(want, m->sha) != 0)
        return conflict_error(c, "memory_precondition_failed_error",
                              "precondition failed: expected_content_sha256 does not match the "
                              "memory's current content",
                              NULL);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "type", "memory_deleted");
    rc_log_info("memory store %s: deleted %s", s->id, m->id);
    memory_free(m);
    s->mems[idx] = s->mems[--s->n];
    return rc_emsrv_json(c, 200, o);
}

/* ---- list ---- */

typedef struct list_item {
    char *key;           /* memory path, or the rolled-up prefix ending in '/' (owned) */
    const mem_memory *m; /* NULL for a memory_prefix */
} list_item;

static int item_cmp(const void *a, const void *b)
{
    return strcmp(((const list_item *)a)->key, ((const list_item *)b)->key);
}

static void items_free(list_item *it, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(it[i].key);
    free(it);
}

/* The key a memory is listed under: its path, or prefix + its first depth segments below the
 * prefix + "/" when it lies deeper. NULL on ENOMEM. */
static char *list_key(const char *path, size_t plen, long depth, bool *ret_rollup)
{
    const char *rest = path + plen, *p = rest;
    long segs = 0;
    *ret_rollup = false;
    if (depth <= 0)
        return strdup(path);
    while ((p = strchr(p, '/'))) {
        if (++segs == depth) {
            *ret_rollup = true;
            return strndup(path, (size_t)(p - path) + 1);
        }
        p++;
    }
    return strdup(path);
}

/* The selection, sorted by key with rollups merged. */
static int list_collect(const mem_store *s, const char *prefix, long depth, list_item **ret,
                        size_t *ret_n)
{
    size_t plen = strlen(prefix), n = 0, w = 0;
    list_item *it = calloc(s->n + 1, sizeof(*it));
    if (!it)
        return -1;
    for (size_t i = 0; i < s->n; i++) {
        bool rollup;
        if (strncmp(s->mems[i]->path, prefix, plen) != 0)
            continue;
        if (!(it[n].key = list_key(s->mems[i]->path, plen, depth, &rollup))) {
            items_free(it, n);
            return -1;
        }
        it[n++].m = rollup ? NULL : s->mems[i];
    }
    qsort(it, n, sizeof(*it), item_cmp);
    for (size_t i = 0; i < n; i++) {
        if (w > 0 && !it[i].m && !it[w - 1].m && strcmp(it[w - 1].key, it[i].key) == 0) {
            free(it[i].key);
            continue;
        }
        it[w++] = it[i];
    }
    *ret = it;
    *ret_n = w;
    return 0;
}

/* page: "mp_" + base64url(last key of the previous page). *ret NULL when absent. */
static int cursor_decode(rc_em_ctx *c, char **ret)
{
    const char *p = rc_emsrv_query(c, "page");
    const size_t pl = strlen(MEM_CURSOR_PREFIX);
    unsigned char *key = NULL;
    size_t n = 0;
    *ret = NULL;
    if (!p || !*p)
        return 0;
    if (strncmp(p, MEM_CURSOR_PREFIX, pl) != 0 ||
        rc_base64_decode_alloc(p + pl, strlen(p + pl), RC_BASE64_URL | RC_BASE64_NOPAD,
                               MEM_PATH_MAX + 1, &key, &n, NULL) < 0 ||
        n == 0 || memchr(key, '\0', n)) {
        free(key);
        return rc_emsrv_bad(c, "page: invalid cursor"), -1;
    }
    *ret = (char *)key;
    return 0;
}

static char *cursor_encode(const char *key)
{
    _cleanup_free_ char *b = NULL;
    char *out;
    size_t n;
    if (rc_base64_encode_alloc(key, strlen(key), RC_BASE64_URL | RC_BASE64_NOPAD, &b, NULL) < 0)
        return NULL;
    n = strlen(MEM_CURSOR_PREFIX) + strlen(b) + 1;
    if ((out = malloc(n)))
        snprintf(out, n, "%s%s", MEM_CURSOR_PREFIX, b);
    return out;
}

int rc_emroute_memory_list(rc_em_ctx *c)
{
    mem_store *s = store_lookup(c, false);
    const char *prefix = s ? rc_emsrv_query(c, "path_prefix") : NULL;
    _cleanup_free_ char *after = NULL;
    long limit = MEM_PAGE_DEFAULT, depth = 0;
    list_item *it = NULL;
    size_t n = 0, start = 0, end;
    rc_error err = {0};
    char *next = NULL;
    cJSON *items;
    int full;

    if (!s || (full = view_param(c, false)) < 0)
        return 0;
    if (rc_emsrv_query_long(c, "limit", 1, RC_EM_PAGE_MAX, &limit) < 0 ||
        rc_emsrv_query_long(c, "depth", 0, MEM_SEGMENTS_MAX + 1, &depth) < 0)
        return 0;
    /* the per-view caps: larger limits are clamped */
    if (limit > (full ? MEM_PAGE_FULL : MEM_PAGE_BASIC))
        limit = full ? MEM_PAGE_FULL : MEM_PAGE_BASIC;
    if (prefix && !*prefix)
        prefix = NULL;
    if (prefix && rc_emmem_prefix_check(prefix, strlen(prefix), &err) < 0)
        return rc_emsrv_bad(c, "path_prefix: %s", err.msg);
    if (cursor_decode(c, &after) < 0)
        return 0;
    if (list_collect(s, prefix ? prefix : "/", depth, &it, &n) < 0)
        return rc_emsrv_internal(c, NULL);
    while (after && start < n && strcmp(it[start].key, after) <= 0)
        start++;
    end = start + (size_t)limit < n ? start + (size_t)limit : n;
    items = cJSON_CreateArray();
    for (size_t i = start; i < end; i++) {
        if (it[i].m) {
            cJSON_AddItemToArray(items, memory_json(s, it[i].m, full));
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "memory_prefix");
            cJSON_AddStringToObject(o, "path", it[i].key);
            cJSON_AddItemToArray(items, o);
        }
    }
    if (end < n && !(next = cursor_encode(it[end - 1].key))) {
        cJSON_Delete(items);
        items_free(it, n);
        return rc_emsrv_internal(c, NULL);
    }
    items_free(it, n);
    return rc_emsrv_page_json(c, items, next);
}

/* ---- session resources ---- */

/* The store's default mount path, unique among those already in out. */
static void default_mount(const mem_store *st, const cJSON *out, char *buf, size_t bufsz)
{
    char slug[MEM_NAME_MAX * 4 + 1];
    if (!rc_emmem_slug(st->name, slug, sizeof(slug)))
        snprintf(slug, sizeof(slug), "memory");
    for (int k = 1;; k++) {
        const cJSON *r;
        bool taken = false;
        if (k == 1)
            snprintf(buf, bufsz, MEM_MOUNT_ROOT "%s", slug);
        else
            snprintf(buf, bufsz, MEM_MOUNT_ROOT "%s-%d", slug, k);
        cJSON_ArrayForEach(r, out)
        {
            const char *mp = rc_emutil_jstr(r, "mount_path");
            if (mp && strcmp(mp, buf) == 0)
                taken = true;
        }
        if (!taken)
            return;
    }
}

/* Check one requested resource (memory stores only, 19.3); returns its store, or NULL after a
 * 400/404. out holds the resources resolved so far (duplicates). */
static mem_store *resource_check(rc_em_ctx *c, const cJSON *r, size_t i, const cJSON *out)
{
    static const char *const keys[] = {"type",         "memory_store_id", "access",
                                       "instructions", "mount_path",      NULL};
    const char *type = rc_emutil_jstr(r, "type"), *id, *instr;
    const cJSON *access, *mount, *prev;
    mem_store *st;

    if (!cJSON_IsObject(r) || !type)
        return rc_emsrv_bad(c, "resources[%zu]: an object with a type", i), NULL;
    if (strcmp(type, "memory_store") != 0)
        return rc_emsrv_bad(c,
                            "resources[%zu]: %s resources are not available on self-hosted "
                            "environments",
                            i, type),
               NULL;
    if (rc_emsrv_check_keys(c, r, keys) < 0 ||
        text_field(c, r, "instructions", 0, MEM_INSTR_MAX, true, true, NULL, &instr) < 0)
        return NULL;
    if (!(id = rc_emutil_jstr(r, "memory_store_id")))
        return rc_emsrv_bad(c, "resources[%zu].memory_store_id: required", i), NULL;
    access = cJSON_GetObjectItemCaseSensitive(r, "access");
    if (access && !cJSON_IsNull(access) &&
        (!cJSON_IsString(access) || (strcmp(access->valuestring, "read_write") != 0 &&
                                     strcmp(access->valuestring, "read_only") != 0)))
        return rc_emsrv_bad(c, "resources[%zu].access: read_write, read_only or null", i), NULL;
    mount = cJSON_GetObjectItemCaseSensitive(r, "mount_path");
    if (mount && !cJSON_IsNull(mount) &&
        (!cJSON_IsString(mount) || !mount->valuestring[0] || strlen(mount->valuestring) > 4096))
        return rc_emsrv_bad(c, "resources[%zu].mount_path: a non-empty string or null", i), NULL;
    cJSON_ArrayForEach(prev, out)
    {
        if (strcmp(rc_emutil_jstr(prev, "memory_store_id"), id) == 0)
            return rc_emsrv_bad(c, "resources[%zu]: memory store %s is attached twice", i, id),
                   NULL;
    }
    if (!(st = store_find(c->em, id)))
        return rc_emsrv_notfound(c, "memory store %s not found", id), NULL;
    if (st->archived_us)
        return rc_emsrv_bad(c, "memory store %s is archived and cannot be attached", id), NULL;
    return st;
}

/* A string member of r copied to o, or null when r holds null; dflt when absent (NULL: null). */
static void copy_or_null(cJSON *o, const cJSON *r, const char *key, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, key);
    const char *val = v ? (cJSON_IsString(v) ? v->valuestring : NULL) : dflt;
    if (val)
        cJSON_AddStringToObject(o, key, val);
    else
        cJSON_AddNullToObject(o, key);
}

/* The 8.1 shape of a checked resource: name and description snapshotted from the store. The
 * mount_path given by the request (an emulator extension; null stays null) or the default. */
static cJSON *resource_json(const cJSON *r, const mem_store *st, const cJSON *out)
{
    char mp[MEM_NAME_MAX * 4 + 64];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "memory_store");
    cJSON_AddStringToObject(o, "memory_store_id", st->id);
    copy_or_null(o, r, "access", "read_write");
    if (cJSON_GetObjectItemCaseSensitive(r, "mount_path")) {
        copy_or_null(o, r, "mount_path", NULL);
    } else {
        default_mount(st, out, mp, sizeof(mp));
        cJSON_AddStringToObject(o, "mount_path", mp);
    }
    cJSON_AddStringToObject(o, "name", st->name);
    cJSON_AddStringToObject(o, "description", st->description);
    copy_or_null(o, r, "instructions", NULL);
    return o;
}

int rc_emmem_session_resources(rc_em_ctx *c, const cJSON *in, cJSON **ret)
{
    cJSON *out;
    const cJSON *r;
    size_t i = 0;

    *ret = NULL;
    if (!in || cJSON_IsNull(in))
        return 0;
    if (!cJSON_IsArray(in))
        return rc_emsrv_bad(c, "resources: must be an array"), -1;
    if (cJSON_GetArraySize(in) > MEM_RESOURCES_MAX)
        return rc_emsrv_bad(c, "resources: at most %d resources", MEM_RESOURCES_MAX), -1;
    out = cJSON_CreateArray();
    cJSON_ArrayForEach(r, in)
    {
        mem_store *st = resource_check(c, r, i++, out);
        if (!st) {
            cJSON_Delete(out);
            return -1;
        }
        cJSON_AddItemToArray(out, resource_json(r, st, out));
    }
    *ret = out;
    return 0;
}

bool rc_emmem_session_has_store(const rc_em_session *s, const char *store_id)
{
    const cJSON *r;
    if (!s->resources)
        return false;
    cJSON_ArrayForEach(r, s->resources)
    {
        const char *id = rc_emutil_jstr(r, "memory_store_id");
        if (id && strcmp(id, store_id) == 0)
            return true;
    }
    return false;
}
