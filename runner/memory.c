/* memory.c - a session's memory stores on disk and their sync with the server (see memory.h).
 *
 * Shaped after the SDK's SessionMemoryStores (tools/agent-toolset/memories.ts) so the two can be
 * read side by side: download = #stampAndPull, sync_store = #syncStore (scan, list, settle the
 * unconfirmed uploads, merge each path, then the content pass), flush_store = #flushStore,
 * corroborated_delete = #corroboratedDelete. The per-path decision is the pure rc_memory_merge()
 * so the unit tests can table-drive it.
 *
 * File system: every operation starts from a descriptor of the store root, opened without
 * following a symlink anywhere in its canonical path, and walks below it component by component
 * with O_NOFOLLOW (rc_fs_open_parent for writes): a symlink the agent planted in the folder makes
 * the operation fail, never lead outside. Writes go to a temporary file renamed over the target.
 * All of it runs with the tool user's filesystem ids (per thread: setfsuid/setfsgid and the raw
 * setgroups system call), so files belong to the agent and the runner has no more reach into the
 * folder than the agent has.
 *
 * Sets of paths (baseline, refused, unconfirmed uploads, pending deletes, listings, scans) are
 * sorted arrays searched with bsearch: built in bulk then sorted, or changed one entry at a
 * time. */
#include "memory.h"

#include "cleanup.h"
#include "fsio.h"
#include "http.h"
#include "json.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SEGMENT_MAX    255
#define TMP_PREFIX     ".rc-mem-"
#define SCAN_DEPTH_MAX (RC_MEMORY_DEPTH_MAX + 1)
#define PAGES_MAX      ((RC_MEMORY_FILES_MAX / RC_MEMORY_FULL_PAGE) + 16)
#define MARKER_MAX     (32 + RC_MEMORY_ID_MAX)
#define MEMPATH_MAX    512

/* ---- pure parts ------------------------------------------------------------------------------ */

static bool seg_ok(const char *s, size_t n)
{
    if (n == 0 || n > SEGMENT_MAX || (n == 1 && s[0] == '.') ||
        (n == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

int rc_memory_rel_path(const char *wire, char **ret, rc_error *err)
{
    if (!wire || strlen(wire) > RC_MEMORY_PATH_MAX)
        return rc_error_set(err, RC_EINVAL, "memory path is missing or too long");
    while (*wire == '/')
        wire++;
    size_t segs = 0;
    for (const char *c = wire;;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (!seg_ok(c, n) || ++segs > RC_MEMORY_DEPTH_MAX)
            return rc_error_set(err, RC_EINVAL, "memory path has an invalid segment");
        if (!slash)
            break;
        c = slash + 1;
    }
    if (strcmp(wire, RC_MEMORY_MARKER) == 0)
        return rc_error_set(err, RC_EINVAL, "memory path is the reserved marker path");
    char *copy = strdup(wire);
    if (!copy)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    *ret = copy;
    return 0;
}

bool rc_memory_mount_path_ok(const char *p)
{
    if (!p || p[0] != '/' || strlen(p) >= PATH_MAX || strcmp(p, "/") == 0)
        return false;
    for (const char *c = p + 1;;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (!seg_ok(c, n))
            return false;
        if (!slash)
            return true;
        c = slash + 1;
    }
}

bool rc_memory_sha_ok(const char *s)
{
    if (!s)
        return false;
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= RC_MEMORY_SHA_HEX ||
            !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == RC_MEMORY_SHA_HEX;
}

bool rc_memory_id_ok(const char *s)
{
    if (!s || !*s)
        return false;
    size_t i = 0;
    for (; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok || i >= RC_MEMORY_ID_MAX)
            return false;
    }
    return true;
}

static void hex_encode(const unsigned char *md, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[RC_MEMORY_SHA_HEX] = '\0';
}

int rc_memory_sha256_hex(const void *buf, size_t len, char *out, rc_error *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(buf, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return rc_error_set(err, RC_EIO, "sha256 failed");
    hex_encode(md, out);
    return 0;
}

size_t rc_memory_delete_cap(size_t baseline_size)
{
    size_t quarter = baseline_size / 4;
    size_t cap = quarter < 50 ? quarter : 50;
    return cap > 8 ? cap : 8;
}

static bool sha_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

int rc_memory_merge(const rc_memory_merge_in *in)
{
    const char *l = in->local, *r = in->remote, *b = in->base;

    if (!l && b && r && sha_eq(r, b))
        return in->read_only ? RC_MEMORY_HOLD : RC_MEMORY_DELETE_REMOTE;
    if (!r) {
        if (!l)
            return RC_MEMORY_DROP;
        if (b && sha_eq(l, b))
            return RC_MEMORY_REMOVE_LOCAL;
        if (in->read_only || sha_eq(in->refused, l))
            return RC_MEMORY_KEEP_UNSYNCED;
        return RC_MEMORY_PUSH_CREATE;
    }
    bool remote_changed = !sha_eq(r, b);
    if (!l && b)
        return remote_changed ? RC_MEMORY_PULL : RC_MEMORY_HOLD;
    if (remote_changed)
        return sha_eq(l, r) ? RC_MEMORY_ADOPT : RC_MEMORY_PULL;
    bool edited = l && !sha_eq(l, b) && !sha_eq(l, r);
    if (edited && !in->read_only)
        return sha_eq(in->refused, l) ? RC_MEMORY_KEEP_REFUSED : RC_MEMORY_PUSH_UPDATE;
    return RC_MEMORY_KEEP;
}

const char *rc_memory_action_name(int a)
{
    static const char *const names[] = {
        "keep",         "drop",          "pull", "adopt",         "push_update", "push_create",
        "remove_local", "delete_remote", "hold", "keep_unsynced", "keep_refused"};
    return a >= 0 && a <= RC_MEMORY_KEEP_REFUSED ? names[a] : "unknown";
}

/* One list item: NULL fields (left for the caller to count as skipped) when malformed. */
static bool item_parse(const cJSON *it, rc_memory_item *ret, char **ret_rel)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(it, "path");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(it, "content_sha256");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");

    if (!cJSON_IsString(id) || !rc_memory_id_ok(id->valuestring) || !cJSON_IsString(path) ||
        !cJSON_IsString(sha) || !rc_memory_sha_ok(sha->valuestring))
        return false;
    if (content && !cJSON_IsNull(content) && !cJSON_IsString(content))
        return false;
    *ret = (rc_memory_item){
        .id = id->valuestring, .wire_path = path->valuestring, .sha = sha->valuestring};
    if (cJSON_IsString(content)) {
        ret->content = content->valuestring;
        ret->content_len = strlen(content->valuestring);
        if (ret->content_len > RC_MEMORY_CONTENT_MAX)
            return false;
    }
    return rc_memory_rel_path(path->valuestring, ret_rel, NULL) == 0;
}

int rc_memory_list_page_walk(const cJSON *page, rc_memory_item_fn fn, void *ud, char **ret_next,
                             size_t *ret_skipped, rc_error *err)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(page, "data");
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(page, "next_page");
    const cJSON *it;
    size_t skipped = 0;
    int passed = 0, r;

    if (!cJSON_IsObject(page) || !cJSON_IsArray(data))
        return rc_error_set(err, RC_EPARSE, "memory list page has no data array");
    if (next && !cJSON_IsNull(next) && !cJSON_IsString(next))
        return rc_error_set(err, RC_EPARSE, "memory list page has a bad next_page");
    if (cJSON_IsString(next) && strlen(next->valuestring) > 4096)
        return rc_error_set(err, RC_EPARSE, "memory list page has a bad next_page");
    cJSON_ArrayForEach(it, data)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(it, "type");
        rc_memory_item item;
        _cleanup_free_ char *rel = NULL;
        if (!cJSON_IsObject(it) || !cJSON_IsString(type) || strcmp(type->valuestring, "memory"))
            continue; /* prefix roll-ups and anything else */
        if (!item_parse(it, &item, &rel)) {
            skipped++;
            continue;
        }
        if (fn && (r = fn(&item, rel, ud, err)) < 0)
            return r;
        passed++;
    }
    char *n = NULL;
    if (cJSON_IsString(next) && next->valuestring[0] && !(n = strdup(next->valuestring)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if (ret_next)
        *ret_next = n;
    else
        free(n);
    if (ret_skipped)
        *ret_skipped = skipped;
    return passed;
}

int rc_memory_list_page_parse(const char *text, size_t len, rc_memory_item_fn fn, void *ud,
                              char **ret_next, size_t *ret_skipped, rc_error *err)
{
    rc_json_limits lim = {.max_size = RC_MEMORY_PAGE_MAX, .max_depth = 16};
    _cleanup_json_ cJSON *page = NULL;
    int r = rc_json_parse(text, len, &lim, &page, err);
    if (r < 0)
        return r;
    return rc_memory_list_page_walk(page, fn, ud, ret_next, ret_skipped, err);
}

/* ---- path maps ------------------------------------------------------------------------------- */

typedef struct kv {
    char *rel;
    char sha[RC_MEMORY_SHA_HEX + 1];
    char *id;  /* listings: the memory id */
    int64_t t; /* pending deletes: when first seen missing */
} kv;

typedef struct kvmap {
    kv *v;
    size_t n, cap;
} kvmap;

static void kv_free(kv *e)
{
    free(e->rel);
    free(e->id);
}

static void map_clear(kvmap *m)
{
    for (size_t i = 0; i < m->n; i++)
        kv_free(&m->v[i]);
    free(m->v);
    *m = (kvmap){0};
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const kv *)a)->rel, ((const kv *)b)->rel);
}

static kv *map_find(const kvmap *m, const char *rel)
{
    kv key = {.rel = (char *)rel};
    return m->n ? bsearch(&key, m->v, m->n, sizeof(kv), kv_cmp) : NULL;
}

static const char *map_sha(const kvmap *m, const char *rel)
{
    kv *e = map_find(m, rel);
    return e ? e->sha : NULL;
}

static int map_grow(kvmap *m)
{
    if (m->n < m->cap)
        return 0;
    size_t cap = m->cap ? m->cap * 2 : 16;
    kv *v = realloc(m->v, cap * sizeof(kv));
    if (!v)
        return -RC_ENOMEM;
    m->v = v;
    m->cap = cap;
    return 0;
}

/* Append without keeping order (bulk build; map_sort afterwards). */
static int map_append(kvmap *m, const char *rel, const char *sha, const char *id)
{
    if (map_grow(m) < 0)
        return -RC_ENOMEM;
    kv e = {.rel = strdup(rel), .id = id ? strdup(id) : NULL};
    if (!e.rel || (id && !e.id)) {
        kv_free(&e);
        return -RC_ENOMEM;
    }
    snprintf(e.sha, sizeof e.sha, "%s", sha ? sha : "");
    m->v[m->n++] = e;
    return 0;
}

/* Sort and drop later duplicates (returns how many were dropped). */
static size_t map_sort(kvmap *m)
{
    size_t out = 0, dropped = 0;
    if (m->n == 0)
        return 0;
    /* stable order for "first one wins": merge sort is not in libc, so tag with the index */
    for (size_t i = 0; i < m->n; i++)
        m->v[i].t = (int64_t)i;
    qsort(m->v, m->n, sizeof(kv), kv_cmp);
    for (size_t i = 0; i < m->n; i++) {
        if (out > 0 && strcmp(m->v[out - 1].rel, m->v[i].rel) == 0) {
            if (m->v[i].t < m->v[out - 1].t) {
                kv tmp = m->v[out - 1];
                m->v[out - 1] = m->v[i];
                m->v[i] = tmp;
            }
            kv_free(&m->v[i]);
            dropped++;
            continue;
        }
        m->v[out++] = m->v[i];
    }
    m->n = out;
    for (size_t i = 0; i < m->n; i++)
        m->v[i].t = 0;
    return dropped;
}

/* Insert or replace one entry, keeping the order. */
static int map_set(kvmap *m, const char *rel, const char *sha, int64_t t)
{
    kv *e = map_find(m, rel);
    if (e) {
        snprintf(e->sha, sizeof e->sha, "%s", sha ? sha : "");
        e->t = t;
        return 0;
    }
    if (map_grow(m) < 0)
        return -RC_ENOMEM;
    size_t pos = 0;
    while (pos < m->n && strcmp(m->v[pos].rel, rel) < 0)
        pos++;
    kv n = {.rel = strdup(rel), .t = t};
    if (!n.rel)
        return -RC_ENOMEM;
    snprintf(n.sha, sizeof n.sha, "%s", sha ? sha : "");
    memmove(m->v + pos + 1, m->v + pos, (m->n - pos) * sizeof(kv));
    m->v[pos] = n;
    m->n++;
    return 0;
}

static void map_del(kvmap *m, const char *rel)
{
    kv *e = map_find(m, rel);
    if (!e)
        return;
    size_t pos = (size_t)(e - m->v);
    kv_free(e);
    memmove(m->v + pos, m->v + pos + 1, (m->n - pos - 1) * sizeof(kv));
    m->n--;
}

/* ---- the hash cache -------------------------------------------------------------------------- */

/* The sha of a file the last scan hashed, reused while its inode, size, mtime and ctime stay the
 * same (userspace cannot set ctime, so a write always shows). Files changed within the last
 * HASH_TRUST_MARGIN_NS of a scan are not cached: a coarse clock could give a rewrite the same
 * stamps. As the SDK's FileStore.hashtree. */
#define HASH_TRUST_MARGIN_NS (2LL * 1000 * 1000 * 1000)

typedef struct hentry {
    char *rel;
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns, ctime_ns;
    char sha[RC_MEMORY_SHA_HEX + 1];
} hentry;

typedef struct hcache {
    hentry *v;
    size_t n, cap;
} hcache;

static void hcache_clear(hcache *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->v[i].rel);
    free(c->v);
    *c = (hcache){0};
}

static int hentry_cmp(const void *a, const void *b)
{
    return strcmp(((const hentry *)a)->rel, ((const hentry *)b)->rel);
}

static int64_t ts_ns(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* The cached sha of rel when st still describes the file that was hashed, else NULL. */
static const char *hcache_lookup(const hcache *c, const char *rel, const struct stat *st)
{
    hentry key = {.rel = (char *)rel};
    const hentry *h = c && c->n ? bsearch(&key, c->v, c->n, sizeof(hentry), hentry_cmp) : NULL;
    if (!h || h->dev != st->st_dev || h->ino != st->st_ino || h->size != st->st_size ||
        h->mtime_ns != ts_ns(st->st_mtim) || h->ctime_ns != ts_ns(st->st_ctim))
        return NULL;
    return h->sha;
}

static void hcache_add(hcache *c, const char *rel, const struct stat *st, const char *sha,
                       int64_t walk_start_ns)
{
    int64_t m = ts_ns(st->st_mtim), ct = ts_ns(st->st_ctim);
    if ((m > ct ? m : ct) >= walk_start_ns - HASH_TRUST_MARGIN_NS)
        return; /* too fresh to trust its stamps */
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        hentry *v = realloc(c->v, cap * sizeof(hentry));
        if (!v)
            return; /* a cache miss next time, nothing worse */
        c->v = v;
        c->cap = cap;
    }
    hentry e = {.rel = strdup(rel),
                .dev = st->st_dev,
                .ino = st->st_ino,
                .size = st->st_size,
                .mtime_ns = m,
                .ctime_ns = ct};
    if (!e.rel)
        return;
    snprintf(e.sha, sizeof e.sha, "%s", sha);
    c->v[c->n++] = e;
}

/* ---- the object ------------------------------------------------------------------------------ */

typedef struct store {
    char *id;
    char *root; /* as configured (mount_path or the workdir fallback) */
    char *real; /* canonical, once created */
    bool read_only;
    kvmap baseline; /* rel -> sha as of the last download or sync */
    kvmap refused;  /* rel -> sha the server refused; retried only after a change */
    kvmap pending;  /* rel -> first seen missing (t) */
    kvmap sent;     /* rel -> sha sent with no answer yet */
    hcache hashes;  /* the last scan's shas */
} store;

struct rc_memory {
    rc_api *api;
    rc_http_cancel *cancel;
    char *workdir;
    int64_t interval_ms, delete_delay_ms;
    bool set_ids;
    uid_t uid;
    gid_t gid;
    int64_t (*now_ms)(void);
    int64_t last_sync;
    bool finished;
    store *stores;
    size_t n;
    char **roots;      /* NULL-terminated */
    char **ro_roots;   /* NULL-terminated */
    struct fsids *ids; /* the runner's own ids while the tool user's are in force, else NULL */
};

static void store_clear(store *s)
{
    free(s->id);
    free(s->root);
    free(s->real);
    map_clear(&s->baseline);
    map_clear(&s->refused);
    map_clear(&s->pending);
    map_clear(&s->sent);
    hcache_clear(&s->hashes);
}

int rc_memory_new(const rc_memory_config *cfg, rc_memory **ret, rc_error *err)
{
    _cleanup_free_ rc_memory *m = calloc(1, sizeof *m);
    if (!cfg->api || !cfg->workdir)
        return rc_error_set(err, RC_EINVAL, "memory: an API client and a workdir are required");
    if (cfg->sync_interval_ms && cfg->sync_interval_ms < RC_MEMORY_MIN_SYNC_INTERVAL_MS)
        return rc_error_set(err, RC_EINVAL, "memory sync interval must be at least %d ms",
                            RC_MEMORY_MIN_SYNC_INTERVAL_MS);
    if (!m || !(m->workdir = strdup(cfg->workdir)) || !(m->roots = calloc(1, sizeof(char *))) ||
        !(m->ro_roots = calloc(1, sizeof(char *)))) {
        if (m) {
            free(m->workdir);
            free(m->roots);
        }
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    m->api = cfg->api;
    m->cancel = rc_http_client_cancel(rc_api_http(cfg->api));
    m->interval_ms = cfg->sync_interval_ms ? cfg->sync_interval_ms : RC_MEMORY_SYNC_INTERVAL_MS;
    m->delete_delay_ms =
        cfg->delete_delay_ms < 0 ? RC_MEMORY_DELETE_DELAY_MS : cfg->delete_delay_ms;
    m->set_ids = cfg->set_ids;
    m->uid = cfg->uid;
    m->gid = cfg->gid;
    m->now_ms = cfg->now_ms ? cfg->now_ms : rc_http_now_mono_ms;
    m->last_sync = m->now_ms();
    *ret = take_ptr(m);
    return 0;
}

const char *const *rc_memory_roots(const rc_memory *m)
{
    return (const char *const *)m->roots;
}

const char *const *rc_memory_read_only_roots(const rc_memory *m)
{
    return (const char *const *)m->ro_roots;
}

size_t rc_memory_store_count(const rc_memory *m)
{
    return m ? m->n : 0;
}

void rc_memory_cancel(rc_memory *m)
{
    if (m)
        rc_http_cancel_trigger(m->cancel);
}

void rc_memory_uncancel(rc_memory *m)
{
    if (m)
        rc_http_cancel_reset(m->cancel);
}

/* ---- the tool user's filesystem ids ---------------------------------------------------------- */

struct fsids {
    bool active;
    uid_t fsuid;
    gid_t fsgid;
    gid_t *groups;
    int ngroups;
};
typedef struct fsids fsids;

static void fsids_leave(fsids *saved);

static int fsids_enter(const rc_memory *m, fsids *saved, rc_error *err)
{
    *saved = (fsids){0};
    if (!m->set_ids || (geteuid() == m->uid && getegid() == m->gid))
        return 0;
    int n = getgroups(0, NULL);
    if (n < 0)
        return rc_error_sys(err, RC_EIO, "getgroups");
    _cleanup_free_ gid_t *groups = calloc((size_t)n + 1, sizeof(gid_t));
    if (!groups || (n = getgroups(n, groups)) < 0)
        return rc_error_sys(err, RC_EIO, "getgroups");
    saved->fsuid = (uid_t)setfsuid((uid_t)-1);
    saved->fsgid = (gid_t)setfsgid((gid_t)-1);
    /* the raw system call: glibc's setgroups() would change every thread */
    if (syscall(SYS_setgroups, 1, &m->gid) < 0)
        return rc_error_sys(err, RC_EIO, "cannot switch to the tool user's groups");
    saved->groups = take_ptr(groups);
    saved->ngroups = n;
    saved->active = true;
    setfsgid(m->gid);
    setfsuid(m->uid);
    if ((gid_t)setfsgid((gid_t)-1) != m->gid || (uid_t)setfsuid((uid_t)-1) != m->uid) {
        fsids_leave(saved);
        return rc_error_set(err, RC_EIO, "cannot switch to the tool user's filesystem ids");
    }
    return 0;
}

/* Requests go out with the runner's own ids: the API channel's socket is the runner's alone
 * (mode 0600), and connect(2) checks it with the filesystem ids. */
static void fsids_pause(const rc_memory *m)
{
    if (!m->ids || !m->ids->active)
        return;
    setfsuid(m->ids->fsuid);
    setfsgid(m->ids->fsgid);
    (void)syscall(SYS_setgroups, (size_t)m->ids->ngroups, m->ids->groups);
}

static void fsids_resume(const rc_memory *m)
{
    if (!m->ids || !m->ids->active)
        return;
    (void)syscall(SYS_setgroups, 1, &m->gid);
    setfsgid(m->gid);
    setfsuid(m->uid);
}

static void fsids_leave(fsids *saved)
{
    if (!saved->active)
        return;
    setfsuid(saved->fsuid);
    setfsgid(saved->fsgid);
    (void)syscall(SYS_setgroups, (size_t)saved->ngroups, saved->groups);
    free(saved->groups);
    *saved = (fsids){0};
}

/* ---- files below a store root ---------------------------------------------------------------- */

/* The canonical root, never through a symlink (openat2 RESOLVE_NO_SYMLINKS; O_NOFOLLOW on the
 * last component where openat2 is missing). */
static int root_open(const store *s)
{
    if (!s->real) {
        errno = ENOENT;
        return -1;
    }
#ifdef SYS_openat2
    struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    long fd = syscall(SYS_openat2, AT_FDCWD, s->real, &how, sizeof how);
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
        return (int)fd;
#endif
    return open(s->real, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* The directory holding rel's last component, without creating anything; -1/ENOENT when a
 * directory is missing, ELOOP/ENOTDIR when a component is a symlink or a file. */
static int parent_open(int rootfd, const char *rel, const char **ret_leaf)
{
    _cleanup_close_ int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
    const char *c = rel, *slash;
    char name[SEGMENT_MAX + 1];

    if (cur < 0)
        return -1;
    while ((slash = strchr(c, '/'))) {
        size_t n = (size_t)(slash - c);
        if (n == 0 || n > SEGMENT_MAX) {
            errno = EINVAL;
            return -1;
        }
        memcpy(name, c, n);
        name[n] = '\0';
        int next = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0)
            return -1;
        close(cur);
        cur = next;
        c = slash + 1;
    }
    *ret_leaf = c;
    return take_fd(cur);
}

/* Open a regular file below the root for reading: 1 with *ret_fd, 0 when absent, -1 (errno)
 * for a symlink (ELOOP), a non-regular file (EINVAL) or another failure. */
static int file_open(int rootfd, const char *rel, int *ret_fd)
{
    const char *leaf;
    _cleanup_close_ int dfd = parent_open(rootfd, rel, &leaf);
    if (dfd < 0)
        return errno == ENOENT ? 0 : -1;
    _cleanup_close_ int fd = openat(dfd, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    if (fstat(fd, &st) < 0)
        return -1;
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        return -1;
    }
    *ret_fd = take_fd(fd);
    return 1;
}

static int fd_sha256(int fd, char *out)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char buf[65536], md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    ssize_t got;
    int r = -1;

    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto out;
    while ((got = read(fd, buf, sizeof buf)) != 0) {
        if (got < 0) {
            if (errno == EINTR)
                continue;
            goto out;
        }
        if (EVP_DigestUpdate(ctx, buf, (size_t)got) != 1)
            goto out;
    }
    if (EVP_DigestFinal_ex(ctx, md, &n) == 1 && n == 32) {
        hex_encode(md, out);
        r = 0;
    }
out:
    EVP_MD_CTX_free(ctx);
    return r;
}

/* sha of one file: 1 found, 0 absent, -1 error (a symlink or non-regular file included). */
static int file_hash(int rootfd, const char *rel, char *out)
{
    _cleanup_close_ int fd = -1;
    int r = file_open(rootfd, rel, &fd);
    if (r <= 0)
        return r;
    return fd_sha256(fd, out) < 0 ? -1 : 1;
}

/* The whole file into b (capped by its max): 1 read, 0 absent, -RC_ETOOBIG when larger, -1
 * error. */
static int file_read(int rootfd, const char *rel, rc_buf *b)
{
    _cleanup_close_ int fd = -1;
    char chunk[16384];
    int r = file_open(rootfd, rel, &fd);
    if (r <= 0)
        return r;
    for (;;) {
        ssize_t got = read(fd, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0)
            return 1;
        if (rc_buf_append(b, chunk, (size_t)got, NULL) < 0)
            return -RC_ETOOBIG;
    }
}

/* Atomic write of content at rel (missing directories made 0700, never the root itself). */
static int file_write(int rootfd, const char *rel, const char *content, size_t len, rc_error *err)
{
    _cleanup_free_ char *copy = strdup(rel);
    const char *leaf;
    unsigned char rnd[8];
    char tmp[64], hex[17];

    if (!copy)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    _cleanup_close_ int dfd = rc_fs_open_parent(rootfd, copy, 0700, &leaf, err);
    if (dfd < 0)
        return dfd;
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return rc_error_set(err, RC_EIO, "no random bytes");
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    snprintf(tmp, sizeof tmp, TMP_PREFIX "%s.tmp", hex);
    _cleanup_close_ int fd =
        openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "cannot create a file in the memory folder");
    int r = rc_fd_write_all(fd, content, len, "memory file", err);
    if (r == 0 && close(take_fd(fd)) < 0)
        r = rc_error_sys(err, RC_EIO, "close memory file");
    if (r == 0 && renameat(dfd, tmp, dfd, leaf) < 0)
        r = rc_error_sys(err, RC_EIO, "cannot put the memory file in place");
    if (r < 0)
        (void)unlinkat(dfd, tmp, 0);
    return r;
}

/* Remove a regular file (or a symlink) at rel; absent is fine; a directory is left alone. */
static int file_remove(int rootfd, const char *rel)
{
    const char *leaf;
    _cleanup_close_ int dfd = parent_open(rootfd, rel, &leaf);
    struct stat st;
    if (dfd < 0)
        return errno == ENOENT ? 0 : -1;
    if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -1;
    if (S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        return -1;
    }
    return unlinkat(dfd, leaf, 0) < 0 && errno != ENOENT ? -1 : 0;
}

/* ---- scanning the folder --------------------------------------------------------------------- */

typedef struct scan {
    kvmap files;
    bool marker_ok;
    bool marker_present;
    bool truncated;
    const hcache *old; /* the previous scan's shas */
    hcache fresh;      /* this scan's, for the next one */
    int64_t walk_start_ns;
} scan;

static void scan_clear(scan *s)
{
    map_clear(&s->files);
    hcache_clear(&s->fresh);
}

static int scan_dir(int dfd, const char *prefix, unsigned depth, scan *sc);

static int scan_entry(int dfd, const char *prefix, const char *name, unsigned depth, scan *sc)
{
    char rel[RC_MEMORY_PATH_MAX + 2], sha[RC_MEMORY_SHA_HEX + 1];
    struct stat st;
    int n = snprintf(rel, sizeof rel, "%s%s%s", prefix, *prefix ? "/" : "", name);

    if (n < 0 || (size_t)n >= sizeof rel || fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0; /* too long to be a memory path, or gone: not part of this snapshot */
    if (S_ISDIR(st.st_mode)) {
        if (depth >= SCAN_DEPTH_MAX) {
            sc->truncated = true;
            return 0;
        }
        _cleanup_close_ int sub =
            openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return sub < 0 ? 0 : scan_dir(sub, rel, depth + 1, sc);
    }
    if (!S_ISREG(st.st_mode) || strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0)
        return 0; /* symlinks, devices, our own temporary files */
    if (sc->files.n >= RC_MEMORY_FILES_MAX) {
        sc->truncated = true;
        return 0;
    }
    const char *cached = hcache_lookup(sc->old, rel, &st);
    if (cached) {
        snprintf(sha, sizeof sha, "%s", cached);
    } else {
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || fd_sha256(fd, sha) < 0)
            return 0;
    }
    hcache_add(&sc->fresh, rel, &st, sha, sc->walk_start_ns);
    return map_append(&sc->files, rel, sha, NULL);
}

static int scan_dir(int dfd, const char *prefix, unsigned depth, scan *sc)
{
    int dup = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
    DIR *d = dup >= 0 ? fdopendir(dup) : NULL;
    struct dirent *de;
    int r = 0;

    if (!d) {
        if (dup >= 0)
            close(dup);
        return -RC_EIO;
    }
    while (r == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        r = scan_entry(dfd, prefix, de->d_name, depth, sc);
    }
    closedir(d);
    return r;
}

static void marker_text(const store *s, char *out, size_t outsz)
{
    snprintf(out, outsz, "version %d\n%s", RC_MEMORY_MARKER_VERSION, s->id);
}

/* Every regular file below the root, the marker checked from the same read. A missing root
 * scans as empty with no marker. */
static int store_scan(store *s, scan *ret, rc_error *err)
{
    char text[MARKER_MAX], want[RC_MEMORY_SHA_HEX + 1];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    *ret = (scan){.old = &s->hashes, .walk_start_ns = ts_ns(now)};
    _cleanup_close_ int rootfd = root_open(s);
    if (rootfd < 0)
        return errno == ENOENT ? 0 : rc_error_sys(err, RC_EIO, "cannot open the memory folder");
    int r = scan_dir(rootfd, "", 1, ret);
    if (r < 0) {
        scan_clear(ret);
        return r == -RC_ENOMEM ? rc_error_set(err, RC_ENOMEM, "out of memory")
                               : rc_error_sys(err, RC_EIO, "cannot read the memory folder");
    }
    /* the next scan looks up this one's shas */
    if (ret->fresh.n > 1)
        qsort(ret->fresh.v, ret->fresh.n, sizeof(hentry), hentry_cmp);
    hcache_clear(&s->hashes);
    s->hashes = ret->fresh;
    ret->fresh = (hcache){0};
    ret->old = NULL;
    map_sort(&ret->files);
    kv *mk = map_find(&ret->files, RC_MEMORY_MARKER);
    marker_text(s, text, sizeof text);
    if (mk) {
        ret->marker_present = true;
        ret->marker_ok =
            rc_memory_sha256_hex(text, strlen(text), want, NULL) == 0 && strcmp(mk->sha, want) == 0;
        map_del(&ret->files, RC_MEMORY_MARKER);
    }
    return 0;
}

/* ---- requests -------------------------------------------------------------------------------- */

typedef struct pass {
    rc_memory *m;
    store *s;
    int64_t deadline; /* monotonic ms, 0 = none */
} pass;

static bool pass_expired(const pass *p)
{
    return p->deadline > 0 && p->m->now_ms() >= p->deadline;
}

static int mem_request(pass *p, const char *method, const char *mem, const char *query,
                       const cJSON *body, rc_api_result *res, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf path = RC_BUF_INIT(MEMPATH_MAX);
    rc_api_request req = {.method = method,
                          .query = query,
                          .json_body = body,
                          .beta = RC_API_BETA_MEMORY,
                          .accept_any_body = strcmp(method, "DELETE") == 0,
                          .deadline_mono_ms = p->deadline};
    int r;

    if (pass_expired(p))
        return rc_error_set(err, RC_ETIMEOUT, "memory sync ran out of time");
    if ((r = rc_http_path_add_segment(&path, "v1", err)) < 0 ||
        (r = rc_http_path_add_segment(&path, "memory_stores", err)) < 0 ||
        (r = rc_http_path_add_segment(&path, p->s->id, err)) < 0 ||
        (r = rc_http_path_add_segment(&path, "memories", err)) < 0 ||
        (mem && (r = rc_http_path_add_segment(&path, mem, err)) < 0))
        return r;
    req.path = rc_buf_cstr(&path);
    fsids_pause(p->m);
    r = rc_api_request_do(p->m->api, &req, res, err);
    fsids_resume(p->m);
    return r;
}

typedef struct list_ctx {
    kvmap *into; /* basic listings: rel -> sha + id */
    pass *p;     /* full listings: written straight to disk */
    int rootfd;
    size_t written, failed;
} list_ctx;

static int verify_content(const rc_memory_item *it)
{
    char sha[RC_MEMORY_SHA_HEX + 1];
    if (rc_memory_sha256_hex(it->content ? it->content : "", it->content_len, sha, NULL) < 0)
        return -1;
    return strcmp(sha, it->sha) == 0 ? 0 : -1;
}

/* Write one memory's content at rel and record its sha in the baseline; false on failure. */
static bool pull_write(pass *p, int rootfd, const char *rel, const rc_memory_item *it)
{
    rc_error e = {0};
    if (verify_content(it) < 0) {
        rc_log_warn("memory store %s: the server's content for a memory does not match its "
                    "content_sha256; not writing it",
                    p->s->id);
        return false;
    }
    if (file_write(rootfd, rel, it->content ? it->content : "", it->content_len, &e) < 0) {
        rc_log_warn("memory store %s: failed to write a memory file: %s", p->s->id, e.msg);
        return false;
    }
    return map_set(&p->s->baseline, rel, it->sha, 0) == 0;
}

static int on_item(const rc_memory_item *it, const char *rel, void *ud, rc_error *err)
{
    list_ctx *c = ud;
    if (c->into) {
        if (c->into->n >= RC_MEMORY_FILES_MAX)
            return rc_error_set(err, RC_ETOOBIG, "memory store lists too many memories");
        return map_append(c->into, rel, it->sha, it->id) < 0
                   ? rc_error_set(err, RC_ENOMEM, "out of memory")
                   : 0;
    }
    if (c->written + c->failed >= RC_MEMORY_FILES_MAX)
        return rc_error_set(err, RC_ETOOBIG, "memory store lists too many memories");
    if (map_find(&c->p->s->baseline, rel)) {
        c->failed++; /* a second memory at the same local path: the first one stays */
        return 0;
    }
    if (pull_write(c->p, c->rootfd, rel, it))
        c->written++;
    else
        c->failed++;
    return 0;
}

/* Every page of the store's listing (view=full: written to disk as it comes; view=basic: into
 * c->into, sorted, duplicates dropped). */
static int list_store(pass *p, bool full, list_ctx *c, rc_error *err)
{
    _cleanup_free_ char *cursor = NULL;
    size_t skipped_all = 0;

    for (size_t page = 0; page < PAGES_MAX; page++) {
        _cleanup_(rc_buf_free) rc_buf q = RC_BUF_INIT(8192);
        _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
        char *next = NULL;
        size_t skipped = 0;
        int r;
        if ((r = rc_http_query_add(&q, "view", full ? "full" : "basic", err)) < 0 ||
            (r = rc_http_query_add_int(
                 &q, "limit", full ? RC_MEMORY_FULL_PAGE : RC_MEMORY_BASIC_PAGE, err)) < 0 ||
            (cursor && (r = rc_http_query_add(&q, "page", cursor, err)) < 0))
            return r;
        if ((r = mem_request(p, "GET", NULL, rc_buf_cstr(&q), NULL, &res, err)) < 0)
            return r;
        if (res.kind != RC_API_BODY_JSON)
            return rc_error_set(err, RC_EPARSE, "memory list answer is not JSON");
        if ((r = rc_memory_list_page_walk(res.json, on_item, c, &next, &skipped, err)) < 0)
            return r;
        skipped_all += skipped;
        free(cursor);
        cursor = next;
        if (!cursor)
            break;
        if (page + 1 == PAGES_MAX)
            return rc_error_set(err, RC_ETOOBIG, "memory store listing has too many pages");
    }
    if (skipped_all)
        rc_log_warn("memory store %s: skipped %zu listed memories with an invalid id, path, sha "
                    "or content",
                    p->s->id, skipped_all);
    if (c->into && map_sort(c->into) > 0)
        rc_log_warn("memory store %s: the listing names a path twice; the first one is used",
                    p->s->id);
    return 0;
}

/* GET one memory's content (view=full) and write it; the baseline moves on success. */
static void pull_one(pass *p, int rootfd, const kv *remote)
{
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    rc_error e = {0};
    rc_memory_item it;
    _cleanup_free_ char *rel = NULL;

    if (mem_request(p, "GET", remote->id, "view=full", NULL, &res, &e) < 0) {
        if (res.status != 404)
            rc_log_warn("memory store %s: failed to fetch a memory: %s", p->s->id, e.msg);
        return;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(res.json, "type");
    if (res.kind != RC_API_BODY_JSON || !cJSON_IsString(type) ||
        strcmp(type->valuestring, "memory") != 0 || !item_parse(res.json, &it, &rel) ||
        strcmp(rel, remote->rel) != 0) {
        rc_log_warn("memory store %s: the server sent a malformed memory; not writing it",
                    p->s->id);
        return;
    }
    pull_write(p, rootfd, remote->rel, &it);
}

/* ---- pushing --------------------------------------------------------------------------------- */

enum push_outcome { PUSH_OK = 0, PUSH_FAILED, PUSH_CONFLICT };

static int push_body(const char *rel, const char *content, const kv *existing, cJSON **ret)
{
    _cleanup_json_ cJSON *b = cJSON_CreateObject();
    char wire[RC_MEMORY_PATH_MAX + 2];
    if (!b)
        return -RC_ENOMEM;
    if (existing) {
        cJSON *pre = cJSON_AddObjectToObject(b, "precondition");
        if (!cJSON_AddStringToObject(b, "content", content) || !pre ||
            !cJSON_AddStringToObject(pre, "type", "content_sha256") ||
            !cJSON_AddStringToObject(pre, "content_sha256", existing->sha))
            return -RC_ENOMEM;
    } else {
        snprintf(wire, sizeof wire, "/%s", rel);
        if (!cJSON_AddStringToObject(b, "path", wire) ||
            !cJSON_AddStringToObject(b, "content", content))
            return -RC_ENOMEM;
    }
    *ret = take_ptr(b);
    return 0;
}

/* Read a local file for upload; a file the server would refuse (over the cap, not UTF-8, a NUL
 * byte) is marked refused. 1 ready, 0 absent/refused/error. */
static int push_read(pass *p, int rootfd, const char *rel, const char *local_sha, rc_buf *b)
{
    int r = file_read(rootfd, rel, b);
    bool bad =
        r == -RC_ETOOBIG || (r == 1 && (!rc_json_utf8_valid(b->data ? b->data : "", b->len) ||
                                        strlen(rc_buf_cstr(b)) != b->len));
    if (bad) {
        if (local_sha && !sha_eq(map_sha(&p->s->refused, rel), local_sha)) {
            rc_log_warn("memory store %s: a memory file is over %d bytes, not UTF-8 text, or "
                        "holds a NUL byte; it stays un-synced until it changes",
                        p->s->id, RC_MEMORY_CONTENT_MAX);
            map_set(&p->s->refused, rel, local_sha, 0);
        }
        return 0;
    }
    return r == 1 ? 1 : 0;
}

/* Upload one file: an update with the precondition when the server has it (existing), else a
 * create. On success ret_sha is the server's new sha. */
static int push_one(pass *p, int rootfd, const char *rel, const char *local_sha, const kv *existing,
                    char *ret_sha)
{
    _cleanup_(rc_buf_free) rc_buf content = RC_BUF_INIT(RC_MEMORY_CONTENT_MAX);
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    _cleanup_json_ cJSON *body = NULL;
    char sent[RC_MEMORY_SHA_HEX + 1];
    rc_error e = {0};

    if (push_read(p, rootfd, rel, local_sha, &content) != 1)
        return PUSH_FAILED;
    if (push_body(rel, rc_buf_cstr(&content), existing, &body) < 0 ||
        rc_memory_sha256_hex(content.data ? content.data : "", content.len, sent, NULL) < 0)
        return PUSH_FAILED;
    map_set(&p->s->sent, rel, sent, 0); /* outcome unknown until an answer (or a listing) */
    int r = mem_request(p, "POST", existing ? existing->id : NULL, NULL, body, &res, &e);
    if (r == 0) {
        const cJSON *sha = cJSON_GetObjectItemCaseSensitive(res.json, "content_sha256");
        map_del(&p->s->refused, rel);
        map_del(&p->s->sent, rel);
        snprintf(ret_sha, RC_MEMORY_SHA_HEX + 1, "%s",
                 cJSON_IsString(sha) && rc_memory_sha_ok(sha->valuestring) ? sha->valuestring
                                                                           : sent);
        return PUSH_OK;
    }
    if (existing && res.status == 404) /* deleted remotely since the listing: create it */
        return push_one(p, rootfd, rel, local_sha, NULL, ret_sha);
    if (existing && res.status == 409) {
        rc_log_warn("memory store %s: a memory changed both locally and remotely; the upload "
                    "was refused and the server's version wins",
                    p->s->id);
        return PUSH_CONFLICT;
    }
    if ((res.status == 400 || res.status == 413) && local_sha) {
        map_set(&p->s->refused, rel, local_sha, 0);
        rc_log_warn("memory store %s: the server rejected a memory file (%s); it stays "
                    "un-synced until it changes",
                    p->s->id, e.msg);
        return PUSH_FAILED;
    }
    rc_log_warn("memory store %s: failed to upload a memory: %s", p->s->id, e.msg);
    return PUSH_FAILED;
}

/* Uploads whose answer never came: a memory listed with exactly the sha sent is that upload. */
static void settle_sent(store *s, const kvmap *remote)
{
    for (size_t i = 0; i < s->sent.n; i++) {
        const char *r = map_sha(remote, s->sent.v[i].rel);
        if (sha_eq(r, s->sent.v[i].sha))
            map_set(&s->baseline, s->sent.v[i].rel, r, 0);
    }
    map_clear(&s->sent);
}

/* ---- download -------------------------------------------------------------------------------- */

/* Marker, then every memory (view=full). The baseline starts empty, so a failed write never
 * leaves an entry whose file is not on disk. */
static int stamp_and_pull(pass *p, rc_error *err)
{
    char text[MARKER_MAX];
    store *s = p->s;
    map_clear(&s->baseline);
    map_clear(&s->sent);
    map_clear(&s->pending);
    _cleanup_close_ int rootfd = root_open(s);
    if (rootfd < 0)
        return rc_error_sys(err, RC_EIO, "cannot open the memory store's folder %s", s->root);
    marker_text(s, text, sizeof text);
    int r = file_write(rootfd, RC_MEMORY_MARKER, text, strlen(text), err);
    if (r < 0)
        return r;
    list_ctx c = {.p = p, .rootfd = rootfd};
    if ((r = list_store(p, true, &c, err)) < 0)
        return r;
    rc_log_info("downloaded %zu memories of memory store %s into %s", c.written, s->id, s->root);
    return 0;
}

/* mkdir -p of the root's ancestors, then the root itself (which must not exist). */
static int make_root(const char *root, rc_error *err)
{
    _cleanup_free_ char *copy = strdup(root);
    if (!copy)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    for (char *c = copy + 1; (c = strchr(c, '/')); c++) {
        *c = '\0';
        if (mkdir(copy, 0700) < 0 && errno != EEXIST)
            return rc_error_sys(err, RC_EIO, "cannot create the memory store's folder: %s", root);
        *c = '/';
    }
    if (mkdir(copy, 0700) < 0)
        return rc_error_sys(err, RC_EIO, "cannot create the memory store's folder: %s", root);
    return 0;
}

static int resource_root(const rc_memory *m, const cJSON *res, const char *id, char **ret,
                         rc_error *err)
{
    const char *mount = NULL, *name = NULL;
    if (rc_json_get_string_opt(res, "mount_path", &mount, NULL) < 0 ||
        rc_json_get_string_opt(res, "name", &name, NULL) < 0)
        return rc_error_set(err, RC_EINVAL, "memory store %s: mount_path or name is not a string",
                            id);
    if (mount && *mount) {
        if (!rc_memory_mount_path_ok(mount))
            return rc_error_set(err, RC_EINVAL,
                                "memory store mount_path is not a clean absolute path "
                                "(memory_store_id=%s)",
                                id);
        *ret = strdup(mount);
        return *ret ? 0 : rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    const char *leaf = name && *name ? name : id;
    if (!seg_ok(leaf, strlen(leaf)) || strchr(leaf, '/'))
        return rc_error_set(err, RC_EINVAL, "memory store %s: its name cannot be a folder name",
                            id);
    size_t n = strlen(m->workdir) + strlen(leaf) + 16;
    char *p = malloc(n);
    if (!p)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    snprintf(p, n, "%s%smemory/%s", m->workdir,
             m->workdir[strlen(m->workdir) - 1] == '/' ? "" : "/", leaf);
    *ret = p;
    return 0;
}

static bool nested(const char *a, const char *b)
{
    size_t n = strlen(a);
    return strncmp(a, b, n) == 0 && (b[n] == '\0' || b[n] == '/');
}

static int strv_push(char ***v, const char *s)
{
    size_t n = 0;
    while ((*v)[n])
        n++;
    char **nv = realloc(*v, (n + 2) * sizeof(char *));
    if (!nv)
        return -RC_ENOMEM;
    *v = nv;
    if (!(nv[n] = strdup(s)))
        return -RC_ENOMEM;
    nv[n + 1] = NULL;
    return 0;
}

size_t rc_memory_session_store_count(const cJSON *session)
{
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(session, "resources"), *r;
    const cJSON *arr = cJSON_IsArray(res) ? res : NULL;
    size_t n = 0;
    cJSON_ArrayForEach(r, arr)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(r, "type");
        if (cJSON_IsString(type) && strcmp(type->valuestring, "memory_store") == 0)
            n++;
    }
    return n;
}

static int store_add(rc_memory *m, const cJSON *res, store **ret, rc_error *err)
{
    const char *id = NULL, *access = NULL;
    _cleanup_free_ char *root = NULL;
    int r;

    if (rc_json_get_string(res, "memory_store_id", &id, NULL) < 0 || !rc_memory_id_ok(id))
        return rc_error_set(err, RC_EINVAL, "a memory_store resource has no valid memory_store_id");
    if (rc_json_get_string_opt(res, "access", &access, NULL) < 0)
        return rc_error_set(err, RC_EINVAL, "memory store %s: access is not a string", id);
    if ((r = resource_root(m, res, id, &root, err)) < 0)
        return r;
    for (size_t i = 0; i < m->n; i++)
        if (nested(m->stores[i].root, root) || nested(root, m->stores[i].root))
            return rc_error_set(err, RC_EINVAL,
                                "memory store %s: its folder %s overlaps another store's", id,
                                root);
    if (m->n >= RC_MEMORY_STORES_MAX)
        return rc_error_set(err, RC_ETOOBIG, "the session has too many memory stores");
    store *v = realloc(m->stores, (m->n + 1) * sizeof(store));
    if (!v)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    m->stores = v;
    store *s = &m->stores[m->n];
    *s = (store){.id = strdup(id),
                 .root = take_ptr(root),
                 .read_only = access && strcmp(access, "read_only") == 0};
    if (!s->id) {
        store_clear(s);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    m->n++;
    *ret = s;
    return 0;
}

/* Create and fill one store's folder. */
static int download_one(rc_memory *m, store *s, rc_error *err)
{
    struct stat st;
    int r;

    if (lstat(s->root, &st) == 0 || errno != ENOENT)
        return rc_error_set(err, RC_EINVAL,
                            "something already exists at the memory store's path: %s "
                            "(memory_store_id=%s); it must not exist when the session starts",
                            s->root, s->id);
    if ((r = make_root(s->root, err)) < 0)
        return r;
    if (!(s->real = realpath(s->root, NULL)))
        return rc_error_sys(err, RC_EIO, "cannot resolve the memory store's folder %s", s->root);
    pass p = {.m = m, .s = s, .deadline = 0};
    if ((r = stamp_and_pull(&p, err)) < 0)
        return rc_error_wrap(err, -r, "failed to download the memory store");
    if (strv_push(&m->roots, s->real) < 0 || (s->read_only && strv_push(&m->ro_roots, s->real) < 0))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    return 0;
}

int rc_memory_download(rc_memory *m, const cJSON *session, rc_error *err)
{
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(session, "resources"), *it;
    const cJSON *arr = cJSON_IsArray(res) ? res : NULL;
    fsids ids;
    int r = 0;

    if ((r = fsids_enter(m, &ids, err)) < 0)
        return r;
    m->ids = &ids;
    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(it, "type");
        store *s = NULL;
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "memory_store") != 0)
            continue;
        if ((r = store_add(m, it, &s, err)) < 0 || (r = download_one(m, s, err)) < 0)
            break;
    }
    m->ids = NULL;
    fsids_leave(&ids);
    m->last_sync = m->now_ms();
    return r < 0 ? r : 0;
}

/* ---- sync ------------------------------------------------------------------------------------ */

typedef struct delete_pass {
    size_t cap, attempted, capped;
    bool waive; /* the session's last sync: no wait */
} delete_pass;

/* Rebuild a destroyed folder from the server: no deletes, no uploads. */
static void recover(pass *p, const char *why)
{
    rc_error e = {0};
    rc_log_warn("memory store %s: %s; downloading the folder again instead of syncing", p->s->id,
                why);
    if (!p->s->real || (mkdir(p->s->real, 0700) < 0 && errno != EEXIST)) {
        rc_log_warn("memory store %s: cannot re-create its folder", p->s->id);
        return;
    }
    if (stamp_and_pull(p, &e) < 0)
        rc_log_warn("memory store %s: re-download failed: %s", p->s->id, e.msg);
}

/* The marker still names this store (re-checked before a delete: the folder may have been
 * wiped since the scan). */
static bool marker_check(int rootfd, const store *s)
{
    char text[MARKER_MAX], want[RC_MEMORY_SHA_HEX + 1], got[RC_MEMORY_SHA_HEX + 1];
    marker_text(s, text, sizeof text);
    return rc_memory_sha256_hex(text, strlen(text), want, NULL) == 0 &&
           file_hash(rootfd, RC_MEMORY_MARKER, got) == 1 && strcmp(want, got) == 0;
}

/* The remote delete of a file missing locally: only after the delay, within the cap, and after a
 * fresh look at the folder. Returns true when the baseline entry goes. */
static bool corroborated_delete(pass *p, int rootfd, const kv *remote, const char *base,
                                delete_pass *d)
{
    store *s = p->s;
    kv *pend = map_find(&s->pending, remote->rel);
    int64_t now = p->m->now_ms(), first = pend ? pend->t : now;
    char sha[RC_MEMORY_SHA_HEX + 1];

    if (!pend)
        map_set(&s->pending, remote->rel, NULL, now);
    if (!d->waive && now - first < p->m->delete_delay_ms)
        return false;
    rc_error e = {0};
    int h = file_hash(rootfd, remote->rel, sha);
    if (!marker_check(rootfd, s) || h < 0)
        return false;
    if (h == 1) {
        map_del(&s->pending, remote->rel);
        return false;
    }
    if (d->attempted >= d->cap) {
        d->capped++;
        return false;
    }
    d->attempted++;
    _cleanup_(rc_buf_free) rc_buf q = RC_BUF_INIT(256);
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    if (rc_http_query_add(&q, "expected_content_sha256", base, &e) < 0)
        return false;
    if (mem_request(p, "DELETE", remote->id, rc_buf_cstr(&q), NULL, &res, &e) < 0 &&
        res.status != 404) {
        if (res.status == 409 || res.status == 412)
            rc_log_warn("memory store %s: a memory deleted locally changed remotely; keeping "
                        "the remote version",
                        s->id);
        else
            rc_log_warn("memory store %s: failed to delete a memory: %s", s->id, e.msg);
        return false;
    }
    map_del(&s->pending, remote->rel);
    rc_log_info("memory store %s: propagated a local deletion", s->id);
    return true;
}

/* REMOVE_LOCAL: the server deleted a memory the file still holds unchanged. Returns the action
 * the path ends with: DROP when the file is gone, HOLD when it must stay in the baseline (an I/O
 * error), or a push decision when it was edited since the scan. */
static int remove_local(pass *p, int rootfd, const char *rel, const char *base, char *fresh)
{
    int h = file_hash(rootfd, rel, fresh);
    if (h < 0)
        return RC_MEMORY_HOLD;
    if (h == 0)
        return RC_MEMORY_DROP;
    if (strcmp(fresh, base) != 0)
        return rc_memory_merge(&(rc_memory_merge_in){
            .local = fresh, .refused = map_sha(&p->s->refused, rel), .read_only = p->s->read_only});
    if (file_remove(rootfd, rel) < 0) {
        rc_log_warn("memory store %s: failed to remove a file the server deleted", p->s->id);
        return RC_MEMORY_HOLD;
    }
    return RC_MEMORY_DROP;
}

typedef struct path_state {
    const char *rel;
    const char *local;
    const kv *remote;
    const char *base;
} path_state;

/* One path: decide, act, and put its new baseline entry into nb (none = dropped). Pulls are
 * queued into pulls for the content pass. */
static int sync_path(pass *p, int rootfd, const path_state *ps, delete_pass *d, kvmap *nb,
                     kvmap *pulls)
{
    store *s = p->s;
    rc_memory_merge_in in = {.local = ps->local,
                             .remote = ps->remote ? ps->remote->sha : NULL,
                             .base = ps->base,
                             .refused = map_sha(&s->refused, ps->rel),
                             .read_only = s->read_only};
    char sha[RC_MEMORY_SHA_HEX + 1], fresh[RC_MEMORY_SHA_HEX + 1];
    int a = rc_memory_merge(&in);
    const char *keep = NULL;

    if (ps->local || a == RC_MEMORY_DROP)
        map_del(&s->pending, ps->rel);
    if (a == RC_MEMORY_REMOVE_LOCAL)
        a = remove_local(p, rootfd, ps->rel, ps->base, fresh);
    switch (a) {
    case RC_MEMORY_KEEP:
    case RC_MEMORY_ADOPT:
    case RC_MEMORY_KEEP_REFUSED:
        keep = in.remote;
        break;
    case RC_MEMORY_HOLD:
        keep = ps->base;
        break;
    case RC_MEMORY_PULL:
        if (!ps->local && ps->base)
            rc_log_warn("memory store %s: a memory deleted locally changed remotely; restoring "
                        "the remote version",
                        s->id);
        else if (ps->local && !sha_eq(ps->local, ps->base))
            rc_log_warn("memory store %s: a memory changed both locally and remotely; keeping "
                        "the remote version",
                        s->id);
        map_del(&s->pending, ps->rel);
        if (map_append(pulls, ps->rel, ps->remote->sha, ps->remote->id) < 0)
            return -RC_ENOMEM;
        keep = ps->base;
        break;
    case RC_MEMORY_PUSH_UPDATE:
        keep =
            push_one(p, rootfd, ps->rel, ps->local, ps->remote, sha) == PUSH_OK ? sha : in.remote;
        break;
    case RC_MEMORY_PUSH_CREATE: {
        const char *l = ps->local && !sha_eq(ps->local, ps->base) ? ps->local : fresh;
        keep = push_one(p, rootfd, ps->rel, l, NULL, sha) == PUSH_OK ? sha : NULL;
        break;
    }
    case RC_MEMORY_DELETE_REMOTE:
        keep = corroborated_delete(p, rootfd, ps->remote, ps->base, d) ? NULL : ps->base;
        break;
    default: /* DROP, KEEP_UNSYNCED */
        break;
    }
    return keep && map_append(nb, ps->rel, keep, NULL) < 0 ? -RC_ENOMEM : 0;
}

/* The sorted union of three sorted maps' paths, walked in order. */
static const char *next_path(const kvmap *a, size_t *i, const kvmap *b, size_t *j, const kvmap *c,
                             size_t *k)
{
    const char *best = NULL;
    if (*i < a->n)
        best = a->v[*i].rel;
    if (*j < b->n && (!best || strcmp(b->v[*j].rel, best) < 0))
        best = b->v[*j].rel;
    if (*k < c->n && (!best || strcmp(c->v[*k].rel, best) < 0))
        best = c->v[*k].rel;
    return best;
}

static void advance(const kvmap *m, size_t *i, const char *rel, const kv **ret)
{
    *ret = NULL;
    if (*i < m->n && strcmp(m->v[*i].rel, rel) == 0)
        *ret = &m->v[(*i)++];
}

static int merge_all(pass *p, int rootfd, const kvmap *local, const kvmap *remote, bool final)
{
    store *s = p->s;
    delete_pass d = {.cap = rc_memory_delete_cap(s->baseline.n), .waive = final};
    _cleanup_(map_clear) kvmap nb = {0};
    _cleanup_(map_clear) kvmap pulls = {0};
    size_t i = 0, j = 0, k = 0;
    const char *rel;
    int r = 0;

    while (r == 0 && (rel = next_path(local, &i, remote, &j, &s->baseline, &k))) {
        _cleanup_free_ char *name = strdup(rel);
        const kv *l, *rm, *b;
        if (!name)
            return -RC_ENOMEM;
        advance(local, &i, name, &l);
        advance(remote, &j, name, &rm);
        advance(&s->baseline, &k, name, &b);
        path_state ps = {
            .rel = name, .local = l ? l->sha : NULL, .remote = rm, .base = b ? b->sha : NULL};
        r = sync_path(p, rootfd, &ps, &d, &nb, &pulls);
    }
    if (r < 0)
        return r;
    map_sort(&nb);
    map_clear(&s->baseline);
    s->baseline = nb;
    nb = (kvmap){0};
    map_sort(&pulls);
    for (size_t x = 0; x < pulls.n; x++)
        pull_one(p, rootfd, &pulls.v[x]);
    if (d.capped)
        rc_log_warn("memory store %s: delete cap reached: sent %zu deletes, held %zu for later "
                    "syncs",
                    s->id, d.attempted, d.capped);
    return 0;
}

static void sync_store(pass *p, bool final)
{
    store *s = p->s;
    _cleanup_(scan_clear) scan sc = {0};
    _cleanup_(map_clear) kvmap remote = {0};
    rc_error e = {0};

    if (store_scan(s, &sc, &e) < 0) {
        rc_log_warn("memory store %s: sync failed: %s", s->id, e.msg);
        return;
    }
    if (!sc.marker_ok) {
        if (sc.files.n > 0) {
            rc_log_warn("memory store %s: the marker file %s; leaving the folder as found and "
                        "not syncing",
                        s->id, sc.marker_present ? "does not match this store" : "is gone");
            return;
        }
        recover(p, "the folder or its marker is gone");
        return;
    }
    if (sc.truncated) {
        rc_log_warn("memory store %s: the folder holds more than %d files or is nested deeper "
                    "than %d levels; not syncing",
                    s->id, RC_MEMORY_FILES_MAX, SCAN_DEPTH_MAX);
        return;
    }
    list_ctx c = {.into = &remote};
    if (list_store(p, false, &c, &e) < 0) {
        rc_log_warn("memory store %s: sync failed: %s", s->id, e.msg);
        return;
    }
    settle_sent(s, &remote);
    if (sc.files.n == 0 && s->baseline.n > 1) {
        recover(p, "every memory file is gone at once");
        return;
    }
    _cleanup_close_ int rootfd = root_open(s);
    if (rootfd < 0) {
        rc_log_warn("memory store %s: sync failed: cannot open its folder", s->id);
        return;
    }
    if (merge_all(p, rootfd, &sc.files, &remote, final) < 0)
        rc_log_warn("memory store %s: sync failed: out of memory", s->id);
}

static void sync_all(rc_memory *m, bool final, int64_t deadline)
{
    fsids ids;
    rc_error e = {0};
    if (fsids_enter(m, &ids, &e) < 0) {
        rc_log_warn("memory sync skipped: %s", e.msg);
        return;
    }
    m->ids = &ids;
    for (size_t i = 0; i < m->n; i++) {
        pass p = {.m = m, .s = &m->stores[i], .deadline = deadline};
        sync_store(&p, final);
    }
    m->ids = NULL;
    fsids_leave(&ids);
    m->last_sync = m->now_ms();
}

void rc_memory_sync_if_due(rc_memory *m)
{
    if (!m || m->n == 0 || m->finished || m->now_ms() - m->last_sync < m->interval_ms)
        return;
    sync_all(m, false, m->now_ms() + RC_MEMORY_TEARDOWN_BOUND_MS);
}

void rc_memory_finish(rc_memory *m, int64_t deadline)
{
    if (!m || m->finished)
        return;
    m->finished = true;
    sync_all(m, true, deadline);
}

/* ---- flush ----------------------------------------------------------------------------------- */

static void flush_store(pass *p)
{
    store *s = p->s;
    _cleanup_(scan_clear) scan sc = {0};
    _cleanup_(map_clear) kvmap remote = {0};
    _cleanup_(map_clear) kvmap dirty = {0};
    rc_error e = {0};
    size_t unsent = 0;

    if (s->read_only || store_scan(s, &sc, &e) < 0)
        return;
    if (!sc.marker_ok) {
        rc_log_warn("memory store %s: the marker file is missing or wrong; not uploading "
                    "anything from the folder",
                    s->id);
        return;
    }
    for (size_t i = 0; i < sc.files.n; i++) {
        const kv *f = &sc.files.v[i];
        bool changed = !sha_eq(f->sha, map_sha(&s->baseline, f->rel)) || map_find(&s->sent, f->rel);
        if (changed && !sha_eq(map_sha(&s->refused, f->rel), f->sha) &&
            map_append(&dirty, f->rel, f->sha, NULL) < 0)
            return;
    }
    if (dirty.n == 0)
        return;
    list_ctx c = {.into = &remote};
    if (list_store(p, false, &c, &e) < 0) {
        rc_log_warn("memory store %s: flush failed: %s", s->id, e.msg);
        return;
    }
    settle_sent(s, &remote);
    _cleanup_close_ int rootfd = root_open(s);
    if (rootfd < 0)
        return;
    for (size_t i = 0; i < dirty.n; i++) {
        const kv *f = &dirty.v[i];
        const char *base = map_sha(&s->baseline, f->rel);
        const kv *ex = map_find(&remote, f->rel);
        char sha[RC_MEMORY_SHA_HEX + 1];
        if (sha_eq(f->sha, base))
            continue;
        if (ex && sha_eq(ex->sha, f->sha)) {
            map_set(&s->baseline, f->rel, f->sha, 0);
            continue;
        }
        if (ex && !sha_eq(ex->sha, base)) {
            rc_log_warn("memory store %s: a memory changed both locally and remotely; the flush "
                        "leaves the remote version",
                        s->id);
            continue;
        }
        if (pass_expired(p)) {
            unsent = dirty.n - i;
            break;
        }
        if (push_one(p, rootfd, f->rel, f->sha, ex, sha) == PUSH_OK)
            map_set(&s->baseline, f->rel, sha, 0);
    }
    if (unsent)
        rc_log_warn("memory store %s: flush cut off part-way; %zu of %zu changed files were not "
                    "uploaded",
                    s->id, unsent, dirty.n);
}

void rc_memory_flush(rc_memory *m, int64_t deadline)
{
    fsids ids;
    rc_error e = {0};
    if (!m || m->n == 0)
        return;
    if (fsids_enter(m, &ids, &e) < 0) {
        rc_log_warn("memory flush skipped: %s", e.msg);
        return;
    }
    m->ids = &ids;
    for (size_t i = 0; i < m->n; i++) {
        pass p = {.m = m, .s = &m->stores[i], .deadline = deadline};
        flush_store(&p);
    }
    m->ids = NULL;
    fsids_leave(&ids);
}

/* ---- disposal -------------------------------------------------------------------------------- */

/* Remove name below dfd and everything under it, never following a symlink and never leaving
 * the file system the tree starts on (a mount inside the folder is left alone). */
static int remove_tree(int dfd, const char *name, dev_t dev, unsigned depth)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;
    if (st.st_dev != dev || depth > SCAN_DEPTH_MAX + 8) {
        errno = EXDEV;
        return -1;
    }
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;
    int r = 0;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            remove_tree(dirfd(d), de->d_name, dev, depth + 1) < 0)
            r = -1;
    closedir(d);
    if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        r = -1;
    return r;
}

static void store_dispose(store *s)
{
    _cleanup_(scan_clear) scan sc = {0};
    rc_error e = {0};
    if (!s->real)
        return;
    if (store_scan(s, &sc, &e) == 0 && !sc.marker_ok && sc.files.n > 0) {
        rc_log_warn("memory store %s: the marker file is missing or wrong; leaving the folder %s "
                    "on disk",
                    s->id, s->root);
        return;
    }
    _cleanup_free_ char *parent = strdup(s->real);
    char *slash = parent ? strrchr(parent, '/') : NULL;
    if (!slash)
        return;
    *slash = '\0';
    _cleanup_close_ int pfd =
        open(parent[0] ? parent : "/", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (pfd < 0 || fstatat(pfd, slash + 1, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        remove_tree(pfd, slash + 1, st.st_dev, 0) < 0) {
        rc_log_warn("memory store %s: failed to remove its folder %s: %s", s->id, s->root,
                    strerror(errno));
        return;
    }
    rc_log_info("memory store %s: removed its folder %s", s->id, s->root);
}

void rc_memory_free(rc_memory *m)
{
    fsids ids;
    rc_error e = {0};
    if (!m)
        return;
    bool switched = fsids_enter(m, &ids, &e) == 0;
    for (size_t i = 0; i < m->n; i++) {
        if (switched)
            store_dispose(&m->stores[i]);
        store_clear(&m->stores[i]);
    }
    if (switched)
        fsids_leave(&ids);
    else if (m->n)
        rc_log_warn("memory folders left on disk: %s", e.msg);
    for (char **r = m->roots; r && *r; r++)
        free(*r);
    for (char **r = m->ro_roots; r && *r; r++)
        free(*r);
    free(m->roots);
    free(m->ro_roots);
    free(m->stores);
    free(m->workdir);
    free(m);
}
