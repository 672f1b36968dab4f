/* artifacts.h - export of a session's artifacts at session end (issue 12, docs/OPERATIONS.md).
 *
 * Before the workspace is unmounted, the files of the workspace that match the configured globs
 * (RUNCELL_ARTIFACTS) are copied to a host directory. The workspace was written by the agent, so
 * it is walked as a hostile tree: from directory fds only (openat with O_NOFOLLOW|O_DIRECTORY),
 * never following a symlink, copying only regular files with a single link, with caps on the
 * number of files, the size of one file and the total. The copy reads from the fd that was
 * checked, so a rename or symlink swap during the walk cannot redirect it.
 *
 * Glob syntax (relative to the workspace, '/'-separated): each component is an fnmatch(3)
 * pattern in which wildcards never match a leading '.' (FNM_PERIOD); a component `**` matches
 * any number (zero included) of directories. A pattern that matches a directory exports every
 * file under it. Patterns are absolute-free and `..`-free. */
#ifndef RUNCELL_LAUNCHER_ARTIFACTS_H
#define RUNCELL_LAUNCHER_ARTIFACTS_H

#include "err.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define RC_ARTIFACTS_DEFAULT_MAX_FILES       1000ULL
#define RC_ARTIFACTS_DEFAULT_MAX_TOTAL_BYTES (100ULL << 20)
#define RC_ARTIFACTS_DEFAULT_MAX_ENTRIES     100000ULL /* directory entries looked at */
#define RC_ARTIFACTS_DEFAULT_MAX_DEPTH       64U
#define RC_ARTIFACTS_MAX_GLOBS               64
#define RC_ARTIFACTS_GLOB_MAX                1024

/* A zero field means its default; max_file_bytes defaults to max_total_bytes. */
typedef struct rc_artifacts_limits {
    uint64_t max_files;
    uint64_t max_file_bytes;
    uint64_t max_total_bytes;
    uint64_t max_entries;
    uint32_t max_depth;
} rc_artifacts_limits;

typedef struct rc_artifacts_report {
    uint64_t files; /* exported */
    uint64_t bytes;
    uint64_t skipped;          /* sum of the reasons below */
    uint64_t skipped_symlink;  /* a matching (or walked-into) name that is a symlink */
    uint64_t skipped_special;  /* device, FIFO, socket */
    uint64_t skipped_hardlink; /* regular file with more than one link */
    uint64_t skipped_too_big;  /* larger than max_file_bytes */
    uint64_t skipped_cap;      /* over max_files or max_total_bytes */
    uint64_t skipped_depth;    /* a directory deeper than max_depth */
    uint64_t skipped_error;    /* could not be opened or copied */
    int walk_truncated;        /* max_entries reached: the walk stopped there */
} rc_artifacts_report;

/* Split a comma-separated list ("report.md, results"; blanks around items ignored) into a
 * NULL-terminated array of validated globs. An empty list gives an empty array. -RC_EINVAL for an
 * absolute pattern, a `..` or empty component, more than RC_ARTIFACTS_MAX_GLOBS. */
int rc_artifacts_parse_globs(const char *csv, char ***ret_globs, rc_error *err);
void rc_artifacts_globs_free(char **globs);
static inline void rc_artifacts_globs_freep(char ***globs)
{
    rc_artifacts_globs_free(*globs);
}

/* Copy the files of workspace_dir matching globs (NULL-terminated) into dest_dir/<relative path>.
 * dest_dir must not exist (its parent must): it is made 0700; directories under it 0700, files
 * 0600, owned by the caller (root). When nothing is exported dest_dir is removed again. lim may
 * be NULL (defaults). Skipped files are counted, not errors. Returns the number of files
 * exported (and fills *ret) or -RC_EINVAL (bad glob, dest exists), -RC_EIO. */
int rc_artifacts_export(const char *workspace_dir, const char *const *globs, const char *dest_dir,
                        const rc_artifacts_limits *lim, rc_artifacts_report *ret, rc_error *err);

/* The tarball form (artifacts_pack.c): dir packed into out_path as gzip-compressed POSIX tar
 * (pax names over 100 bytes, owners 0/0), written as out_path.partial and renamed into place. */
int rc_artifacts_pack(const char *dir, const char *out_path, rc_error *err);

/* Remove the exports under root/<sesn_...>/ last modified before cutoff, and session
 * directories left empty. Only export-shaped names are touched. Returns the number removed. */
int rc_artifacts_prune(const char *root, time_t cutoff, rc_error *err);
/* Whether name is one an export can have (a UTC time stamp, optionally .tar.gz). */
bool rc_artifacts_is_export_name(const char *name);

#endif
