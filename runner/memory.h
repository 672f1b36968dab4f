/* memory.h - a session's memory stores, materialised as folders and kept in sync (protocol 16,
 * 14.3 steps 7, 9, 11 and 13.2).
 *
 * rc_memory_download() creates one folder per memory_store resource of the session (its
 * mount_path, else {workdir}/memory/<name or id>), refusing a path that already exists, stamps the
 * marker `.anthropic-memory-store` ("version 1\n<store id>"), lists the store with view=full and
 * writes every memory as a file, recording each content sha256 as the baseline. Any store that
 * cannot be materialised fails the whole download (the item fails).
 *
 * rc_memory_sync_if_due() (after each tool call) and rc_memory_finish() (once, at a clean end)
 * run the three-way merge of the SDK's SessionMemoryStores: per path, the local sha, the remote
 * sha (a view=basic listing) and the baseline decide (rc_memory_merge) whether to pull a remote
 * change, push a local one (an update with the content_sha256 precondition, or a create), take
 * the server's version on a conflict, remove a file the server deleted, or, after the file has
 * stayed missing for RC_MEMORY_DELETE_DELAY_MS and within the per-sync cap
 * max(8, min(50, baseline/4)), delete the memory on the server. Read-only stores never push.
 * rc_memory_flush() is the push-only pass every teardown runs; rc_memory_free() deletes the
 * folders this run created.
 *
 * Everything the server sends is hostile input: paths are validated (rc_memory_rel_path), ids and
 * shas checked for shape, contents capped and checked against their sha before they are written.
 * Every file operation starts from a descriptor of the store root and never follows a symlink
 * (the agent may plant symlinks in the folder between syncs), and runs with the tool user's
 * filesystem ids, so the runner never acts on the folder with more rights than the agent has.
 *
 * Not thread-safe: the session thread owns the object. rc_memory_cancel() may be called from any
 * thread: it aborts the request in flight and every later one until rc_memory_uncancel(). */
#ifndef RUNCELL_RUNNER_MEMORY_H
#define RUNCELL_RUNNER_MEMORY_H

#include "api.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RC_MEMORY_MARKER               ".anthropic-memory-store"
#define RC_MEMORY_MARKER_VERSION       1
#define RC_MEMORY_SYNC_INTERVAL_MS     15000 /* default between syncs */
#define RC_MEMORY_MIN_SYNC_INTERVAL_MS 5000
#define RC_MEMORY_DELETE_DELAY_MS      30000  /* a local delete goes out after this long missing */
#define RC_MEMORY_TEARDOWN_BOUND_MS    30000  /* final sync, and the flush, each */
#define RC_MEMORY_CONTENT_MAX          102400 /* bytes of one memory's content (protocol 16.1) */
#define RC_MEMORY_PATH_MAX             1024   /* bytes of a memory path */
#define RC_MEMORY_DEPTH_MAX            32     /* path segments */
#define RC_MEMORY_FILES_MAX            10000  /* memories (and local files) per store */
#define RC_MEMORY_STORES_MAX           64     /* stores per session */
#define RC_MEMORY_FULL_PAGE            20     /* view=full page size */
#define RC_MEMORY_BASIC_PAGE           100    /* view=basic page size */
#define RC_MEMORY_PAGE_MAX             ((size_t)8 << 20) /* bytes of one list page */
#define RC_MEMORY_SHA_HEX              64
#define RC_MEMORY_ID_MAX               128

/* ---- pure parts (unit-tested, fuzzed) ------------------------------------------------------- */

/* A memory path from the server ("/notes/a.md") as a path relative to the store root
 * ("notes/a.md"): the leading '/'s are removed; empty, "." and ".." segments, a NUL or control
 * byte, a segment over 255 bytes, more than RC_MEMORY_DEPTH_MAX segments, more than
 * RC_MEMORY_PATH_MAX bytes and the marker's own path are refused (-RC_EINVAL). *ret is a new
 * string. */
int rc_memory_rel_path(const char *wire, char **ret, rc_error *err);

/* True for a mount_path usable verbatim: absolute, not "/", no empty, "." or ".." segment, no
 * trailing '/', shorter than PATH_MAX, no control byte. */
bool rc_memory_mount_path_ok(const char *p);

/* True for 64 lowercase hex digits. */
bool rc_memory_sha_ok(const char *s);
/* True for an id usable as a path segment: [A-Za-z0-9_-], 1..RC_MEMORY_ID_MAX. */
bool rc_memory_id_ok(const char *s);

/* Lowercase hex sha256 of buf[0..len) into out (RC_MEMORY_SHA_HEX + 1 bytes). */
int rc_memory_sha256_hex(const void *buf, size_t len, char *out, rc_error *err);

/* The per-sync cap on remote deletes: max(8, min(50, baseline_size / 4)). */
size_t rc_memory_delete_cap(size_t baseline_size);

/* What one sync does for one path (the SDK's #syncStore / #syncPath decisions). */
enum rc_memory_action {
    RC_MEMORY_KEEP = 0,      /* in sync (or nothing to do): baseline = remote sha */
    RC_MEMORY_DROP,          /* gone on both sides, or unsyncable: no baseline entry */
    RC_MEMORY_PULL,          /* write the remote version to disk (baseline moves on success) */
    RC_MEMORY_ADOPT,         /* the file already holds the remote bytes: baseline = remote */
    RC_MEMORY_PUSH_UPDATE,   /* update with the precondition remote sha */
    RC_MEMORY_PUSH_CREATE,   /* create (new local file, or re-create one the server deleted) */
    RC_MEMORY_REMOVE_LOCAL,  /* deleted remotely, unchanged locally: remove the file */
    RC_MEMORY_DELETE_REMOTE, /* missing locally, unchanged remotely: corroborated delete */
    RC_MEMORY_HOLD,          /* missing locally; keep the baseline, no action (read-only) */
    RC_MEMORY_KEEP_UNSYNCED, /* local edit a read-only store cannot push: no baseline entry */
    RC_MEMORY_KEEP_REFUSED,  /* local content the server refused before: baseline unchanged */
};

typedef struct rc_memory_merge_in {
    const char *local;   /* sha of the file on disk, NULL when absent */
    const char *remote;  /* listed sha, NULL when the server has no such memory */
    const char *base;    /* baseline sha, NULL when none */
    const char *refused; /* sha the server refused for this path, NULL when none */
    bool read_only;
} rc_memory_merge_in;

/* The decision for one path; conflicts (both sides changed) go to the server (PULL). */
int rc_memory_merge(const rc_memory_merge_in *in);
const char *rc_memory_action_name(int action);

/* One item of a list page, pointing into the parsed tree. */
typedef struct rc_memory_item {
    const char *id;
    const char *wire_path;
    const char *sha;
    const char *content; /* NULL in view=basic (or a JSON null) */
    size_t content_len;
} rc_memory_item;

/* Called for each valid item of type "memory"; return < 0 to stop with that code. Items of
 * another type are skipped; malformed memory items (bad id, path, sha, oversize content) are
 * counted in *ret_skipped and not passed on. */
typedef int (*rc_memory_item_fn)(const rc_memory_item *item, const char *rel, void *ud,
                                 rc_error *err);

/* Parse one list page ({"data":[...],"next_page":...}): calls fn per item and returns the number
 * of items passed to fn; *ret_next (a new string or NULL when there is no next page) only on
 * success. */
int rc_memory_list_page_parse(const char *text, size_t len, rc_memory_item_fn fn, void *ud,
                              char **ret_next, size_t *ret_skipped, rc_error *err);
/* The same on an already parsed page (what the API client returns). */
int rc_memory_list_page_walk(const cJSON *page, rc_memory_item_fn fn, void *ud, char **ret_next,
                             size_t *ret_skipped, rc_error *err);

/* ---- the stores of one session ----------------------------------------------------------------
 */

typedef struct rc_memory_config {
    rc_api *api;         /* borrowed; memory requests only (the broker adds the credential) */
    const char *workdir; /* for the {workdir}/memory/<name> fallback */
    long long sync_interval_ms; /* 0 = RC_MEMORY_SYNC_INTERVAL_MS */
    long long delete_delay_ms;  /* < 0 = RC_MEMORY_DELETE_DELAY_MS (0 is allowed: tests) */
    bool set_ids;               /* do the folder's file operations as uid/gid */
    uid_t uid;
    gid_t gid;
    int64_t (*now_ms)(void); /* monotonic clock; NULL = rc_http_now_mono_ms */
} rc_memory_config;

typedef struct rc_memory rc_memory;

int rc_memory_new(const rc_memory_config *cfg, rc_memory **ret, rc_error *err);

/* Number of memory_store resources in a session object (protocol 8.1), 0 when none. */
size_t rc_memory_session_store_count(const cJSON *session);

/* 14.3.9: materialise every store of the session. A failure (bad mount_path, an existing
 * folder, an unwritable parent, a failed listing or write) fails the item: the folders made so
 * far are removed again. */
int rc_memory_download(rc_memory *m, const cJSON *session, rc_error *err);

/* Store roots (every store) and read-only roots, NULL-terminated, owned by m. */
const char *const *rc_memory_roots(const rc_memory *m);
const char *const *rc_memory_read_only_roots(const rc_memory *m);
size_t rc_memory_store_count(const rc_memory *m);

/* A sync when the interval has passed since the last one. Never fails (logs). */
void rc_memory_sync_if_due(rc_memory *m);
/* The session's last full sync (clean end only; waives the delete delay), bounded by deadline
 * (monotonic ms, 0 = none). Runs once; a second call does nothing. */
void rc_memory_finish(rc_memory *m, int64_t deadline_mono_ms);
/* Push-only flush of local changes: no pulls, no deletes; bounded by deadline. */
void rc_memory_flush(rc_memory *m, int64_t deadline_mono_ms);

/* Abort the request in flight (any thread) / allow requests again (session thread). */
void rc_memory_cancel(rc_memory *m);
void rc_memory_uncancel(rc_memory *m);

/* Remove the folders (unless their marker names another store and they hold files) and free.
 * NULL is a no-op. */
void rc_memory_free(rc_memory *m);

#endif
