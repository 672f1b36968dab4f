/* zip.h - strict, bounded zip reader that extracts an in-memory archive into a directory fd.
 *
 * Used for skill archives (protocol.md 15), which are downloaded whole into memory (bounded by
 * the caller), so the reader works on a byte range rather than a stream. It trusts only the
 * central directory (the local headers must agree with it on the name), supports the stored and
 * deflate methods (zlib, raw inflate), checks every CRC-32 and the declared sizes exactly, and
 * refuses zip64, encryption, multi-disk archives, entries whose data overlaps the central
 * directory, and any name that is absolute, holds a `..` component, a backslash or a NUL.
 * Symlinks, devices, FIFOs and sockets (by the unix mode in the external attributes) are skipped,
 * not created. Caps on entries, per-file and total uncompressed size, path length and depth stop
 * bombs before any byte is written past them (declared sizes are checked up front, inflated
 * sizes while inflating).
 *
 * Writing follows oci/tar.c's discipline: every path is walked component by component from the
 * root fd with O_NOFOLLOW, files are created O_EXCL (a duplicate name is an error), directories
 * are created 0755 and files 0644, or 0755 when the archive gave any execute bit (setuid,
 * setgid and sticky are never applied). On failure the directory is left partly written for the
 * caller to delete. */
#ifndef RUNCELL_ZIP_H
#define RUNCELL_ZIP_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

typedef struct rc_zip_limits {
    uint64_t max_total_bytes; /* sum of uncompressed sizes: 256 MiB */
    uint64_t max_file_bytes;  /* uncompressed size of one entry: 64 MiB */
    uint32_t max_entries;     /* central directory entries: 10000 */
    uint32_t max_path_len;    /* bytes in one entry name: 1024 */
    uint32_t max_depth;       /* path components in one entry name: 64 */
} rc_zip_limits;

#define RC_ZIP_DEFAULT_MAX_TOTAL_BYTES (256ULL << 20)
#define RC_ZIP_DEFAULT_MAX_FILE_BYTES  (64ULL << 20)
#define RC_ZIP_DEFAULT_MAX_ENTRIES     10000U
#define RC_ZIP_DEFAULT_MAX_PATH_LEN    1024U
#define RC_ZIP_DEFAULT_MAX_DEPTH       64U

/* Copy in (NULL = defaults) with every zero field replaced by its default. */
void rc_zip_limits_resolve(const rc_zip_limits *in, rc_zip_limits *ret);

typedef struct rc_zip_stats {
    uint64_t entries; /* central directory entries */
    uint64_t files, dirs;
    uint64_t skipped; /* symlinks, devices, FIFOs, sockets, the root entry */
    uint64_t bytes;   /* regular file data written */
} rc_zip_stats;

/* 1 when data starts with a local file header (PK\3\4). */
int rc_zip_is_zip(const void *data, size_t len);

/* Check and normalise one entry name: relative, no `..`, no backslash, no NUL, within the
 * limits; empty and "." components dropped. Writes "a/b/c" into out (outsz > len). Returns 1
 * for a path, 0 for the root itself, -RC_EINVAL with a reason otherwise. */
int rc_zip_name_normalize(const char *name, size_t len, const rc_zip_limits *limits, char *out,
                          size_t outsz, rc_error *err);

/* Extract the whole archive into root_fd (O_RDONLY|O_DIRECTORY, expected empty). Any violation
 * fails the whole extraction with a message naming the entry. limits NULL = defaults; ret_stats
 * may be NULL. */
int rc_zip_extract(const void *data, size_t len, int root_fd, const rc_zip_limits *limits,
                   rc_zip_stats *ret_stats, rc_error *err);

#endif
