/* snapshot.h - the snapshot store: tarballs imported once by content digest, shared read-only.
 *
 * A snapshot is the root filesystem of a session's container. The store extracts each tarball
 * once, keyed by the SHA-256 of the tarball file as given (compressed or not), into
 *
 *   <store>/sha256/<hex>/rootfs      the tree (read-only directories, archive owners and modes
 *                                    without setuid/setgid/sticky, mount points pre-created)
 *   <store>/sha256/<hex>/info.json   {"digest","imported_at","bytes","entries","compression"}
 *   <store>/sha256/<hex>/last-use    empty; its mtime is the snapshot's last use
 *
 * Extraction goes into <store>/tmp/ and is renamed into place only when complete, under an
 * exclusive flock on <store>/locks/<hex>.lock, so concurrent imports of one digest extract it
 * once and nobody ever sees a partial tree; a failed import leaves the store as it was. Tarballs
 * may be plain, gzip, zstd or xz (detected by magic, decompressed by a child process). All the
 * extraction rules and caps are in tar.h and docs/SNAPSHOTS.md.
 *
 * Digests are written "sha256:<64 lowercase hex>"; every function that takes one also accepts
 * the bare hex. Paths returned are absolute when the store was opened with an absolute dir.
 *
 * Lifetime: rc_snapshot_hold() takes a shared lock that rc_snapshot_prune() respects (a held
 * snapshot is never pruned, whatever its age), and counts as a use. A session should hold its
 * snapshot from bundle creation until the container is deleted. */
#ifndef RUNCELL_OCI_SNAPSHOT_H
#define RUNCELL_OCI_SNAPSHOT_H

#include "err.h"
#include "tar.h"

#include <stddef.h>
#include <stdint.h>

#define RC_SNAPSHOT_DIGEST_HEX  64
#define RC_SNAPSHOT_DIGEST_SIZE 72 /* "sha256:" + 64 hex + NUL, rounded */

/* Mount points every extracted tree gets (created after the archive's entries; a
 * non-directory the archive put there is replaced): path and mode.
 *   workspace 0755, tmp 01777, proc 0555, sys 0555, dev 0755, run 0755, run/runcell 0755 */
extern const rc_tar_dir rc_snapshot_mountpoints[];
extern const size_t rc_snapshot_n_mountpoints;

typedef struct rc_snapshot_store rc_snapshot_store;

typedef struct rc_snapshot_info {
    char digest[RC_SNAPSHOT_DIGEST_SIZE]; /* "sha256:<hex>" */
    int64_t imported_at;                  /* unix seconds */
    int64_t last_used_at;                 /* unix seconds (import counts as a use) */
    uint64_t bytes;                       /* regular file bytes in the tree */
    uint64_t entries;                     /* archive entries */
    int held;                             /* 1 when a rc_snapshot_hold() lock is held now */
} rc_snapshot_info;

/* Open (creating if needed: mode 0711, tmp/ and locks/ 0700) the store at dir. limits NULL =
 * rc_tar_limits defaults; the struct is copied. Leftovers of crashed imports in tmp/ are
 * removed. */
int rc_snapshot_store_open(const char *dir, const rc_tar_limits *limits,
                           rc_snapshot_store **ret_store, rc_error *err);
void rc_snapshot_store_free(rc_snapshot_store *s);
static inline void rc_snapshot_store_freep(rc_snapshot_store **s)
{
    if (*s)
        rc_snapshot_store_free(*s);
}

/* Import a tarball: hash it, and extract it unless the digest is already in the store
 * (idempotent; concurrent callers with the same content extract once). ret_digest (a buffer of
 * RC_SNAPSHOT_DIGEST_SIZE, may be NULL) receives "sha256:<hex>". The file is hashed again while
 * it is extracted; if it changed in between, the import fails. Counts as a use. */
int rc_snapshot_import(rc_snapshot_store *s, const char *tarball_path, char *ret_digest,
                       rc_error *err);

/* Normalise a digest ("sha256:<hex>" or "<hex>", hex in any case) into ret (RC_SNAPSHOT_DIGEST_SIZE
 * bytes, "sha256:<lowercase hex>"). -RC_EINVAL for anything else. */
int rc_snapshot_digest_parse(const char *digest, char *ret, rc_error *err);

/* Absolute path of an imported snapshot's rootfs into buf. -RC_ENOTFOUND when not imported,
 * -RC_ETOOBIG when bufsz is too small. Does not count as a use. */
int rc_snapshot_rootfs_path(rc_snapshot_store *s, const char *digest, char *buf, size_t bufsz,
                            rc_error *err);

/* Record a use now (the last-use time prune looks at). */
int rc_snapshot_touch(rc_snapshot_store *s, const char *digest, rc_error *err);

/* Hold a snapshot: a shared lock, returned as an fd (O_CLOEXEC; inherited copies hold it too)
 * that the caller closes to release. Also records a use. -RC_ENOTFOUND when not imported. */
int rc_snapshot_hold(rc_snapshot_store *s, const char *digest, int *ret_fd, rc_error *err);

/* Every imported snapshot, sorted by digest; *ret_items (free() it) may be NULL when the count
 * is 0. Returns the count. */
int rc_snapshot_list(rc_snapshot_store *s, rc_snapshot_info **ret_items, size_t *ret_n,
                     rc_error *err);

/* Remove every snapshot not held and not used (last use, or import) within the last
 * older_than_s seconds (0 = every unheld snapshot). Returns the number removed. A snapshot
 * disappears atomically (renamed out of sha256/ first), so a concurrent rootfs_path never sees
 * half a tree. */
int rc_snapshot_prune(rc_snapshot_store *s, int64_t older_than_s, rc_error *err);

#endif
