/* tar.h - streaming tar reader and the hostile-input-safe extractor behind the snapshot store.
 *
 * The reader (rc_tar_reader) pulls 512-byte blocks from a caller-supplied source and yields one
 * entry at a time: ustar and GNU headers, pax extended headers ('x'; 'g' is read and ignored),
 * GNU long names/links ('L'/'K'), base-256 numbers. Everything it returns has been checked
 * against the caps in rc_tar_limits before the caller sees it; sizes are declared sizes, so a
 * decompression bomb is stopped by the caps, not by the disk filling up.
 *
 * The extractor (rc_tar_extract) writes a stream into an empty directory given as an fd. It
 * never follows a symlink while writing (every path is walked component by component with
 * O_NOFOLLOW from the root fd), refuses absolute paths and `..`, makes hardlinks only to regular
 * files it has already written, skips device nodes, FIFOs and sockets, drops setuid/setgid/sticky
 * bits and never applies xattrs (so no file capabilities), applies mtimes, keeps the archive's
 * numeric owners when running as root, and finishes with a tree whose directories have no write
 * bits. Any violation fails the whole extraction with a message naming the entry; the caller
 * throws the directory away (the snapshot store extracts into a temp dir for this reason).
 * docs/SNAPSHOTS.md describes every rule and the reasons for the choices. */
#ifndef RUNCELL_OCI_TAR_H
#define RUNCELL_OCI_TAR_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Caps applied to every archive. rc_tar_limits_default() fills the documented defaults; a zero
 * field in a struct passed to the library means "use the default for this field". */
typedef struct rc_tar_limits {
    uint64_t max_total_bytes; /* sum of all declared sizes (data + pax/GNU records): 8 GiB */
    uint64_t max_file_bytes;  /* declared size of one entry: 4 GiB */
    uint64_t max_entries;     /* entries, counting pax/GNU meta entries: 500000 */
    uint32_t max_path_len;    /* bytes in one entry path or hardlink/symlink target: 4095 */
    uint32_t max_depth;       /* path components in one entry path: 128 */
    uint32_t max_meta_bytes;  /* one pax header or GNU long name/link record: 1 MiB */
} rc_tar_limits;

#define RC_TAR_DEFAULT_MAX_TOTAL_BYTES (8ULL << 30)
#define RC_TAR_DEFAULT_MAX_FILE_BYTES  (4ULL << 30)
#define RC_TAR_DEFAULT_MAX_ENTRIES     500000ULL
#define RC_TAR_DEFAULT_MAX_PATH_LEN    4095U
#define RC_TAR_DEFAULT_MAX_DEPTH       128U
#define RC_TAR_DEFAULT_MAX_META_BYTES  (1U << 20)

void rc_tar_limits_default(rc_tar_limits *ret);
/* Copy in (NULL = defaults) with every zero field replaced by its default. */
void rc_tar_limits_resolve(const rc_tar_limits *in, rc_tar_limits *ret);

/* Where the bytes come from. read() returns the number of bytes read (> 0), 0 at end of stream,
 * or a negative RC_E* code (having filled err). It may return fewer bytes than asked. */
typedef struct rc_tar_source {
    int (*read)(void *ctx, void *buf, size_t n, rc_error *err);
    void *ctx;
} rc_tar_source;

enum rc_tar_type {
    RC_TAR_FILE = 1, /* '0', '\0', '7' */
    RC_TAR_HARDLINK, /* '1' */
    RC_TAR_SYMLINK,  /* '2' */
    RC_TAR_CHAR,     /* '3' */
    RC_TAR_BLOCK,    /* '4' */
    RC_TAR_DIR,      /* '5' (or a regular-file entry whose name ends in '/') */
    RC_TAR_FIFO,     /* '6' */
    RC_TAR_OTHER,    /* any other type flag the extractor does not create */
};

/* One entry. Strings are NUL-terminated, owned by the reader and valid until the next
 * rc_tar_next(). `path` and `link` are exactly what the archive says (pax/GNU long forms
 * applied), already checked for embedded NULs and length; rc_tar_path_normalize() checks the
 * rest. */
typedef struct rc_tar_entry {
    int type;      /* enum rc_tar_type */
    char typeflag; /* the raw header byte, for messages */
    const char *path;
    const char *link; /* hardlink source or symlink target; "" for other types */
    uint64_t size;    /* data bytes that follow the header */
    uint32_t mode;    /* permission bits as archived (07777) */
    uint32_t uid, gid;
    int64_t mtime_sec;
    long mtime_nsec;
    uint64_t index; /* 1-based position of this entry in the archive, for messages */
} rc_tar_entry;

typedef struct rc_tar_reader rc_tar_reader;

/* The source must stay valid for the reader's lifetime. limits NULL = defaults. */
int rc_tar_reader_new(const rc_tar_source *src, const rc_tar_limits *limits,
                      rc_tar_reader **ret_reader, rc_error *err);
void rc_tar_reader_free(rc_tar_reader *r);
static inline void rc_tar_reader_freep(rc_tar_reader **r)
{
    if (*r)
        rc_tar_reader_free(*r);
}

/* Next entry: 1 and *ret_entry set, 0 at the end-of-archive marker, negative on error (bad
 * checksum, truncation, a cap exceeded, ...). Unread data of the previous entry is skipped. An
 * archive that ends without its end-of-archive marker is an error (truncated). */
int rc_tar_next(rc_tar_reader *r, const rc_tar_entry **ret_entry, rc_error *err);

/* Read up to n bytes of the current entry's data: count (> 0), 0 at the end of the data,
 * negative on error (a stream that ends early is truncated). */
int rc_tar_read_data(rc_tar_reader *r, void *buf, size_t n, rc_error *err);

/* Check and normalise an entry path: relative (a leading '/' is refused), no `..` component, no
 * NUL, at most max_path_len bytes, max_depth components and NAME_MAX bytes per component; empty
 * and "." components are dropped. Writes the normalised path ("a/b/c", no trailing '/') into
 * out (outsz >= strlen(path) + 1). Returns 1 for a path, 0 for the root itself ("." or "./"),
 * negative -RC_EINVAL with a reason on refusal. */
int rc_tar_path_normalize(const char *path, const rc_tar_limits *limits, char *out, size_t outsz,
                          rc_error *err);

/* A directory the finished tree must contain, created (or replacing a non-directory) after the
 * archive's entries, with exactly this mode (sticky allowed; it is ours, not the archive's). */
typedef struct rc_tar_dir {
    const char *path; /* relative, normalised ("run/runcell") */
    uint32_t mode;
} rc_tar_dir;

typedef struct rc_tar_stats {
    uint64_t entries; /* archive entries seen (meta entries not counted) */
    uint64_t files, dirs, symlinks, hardlinks;
    uint64_t skipped; /* device nodes, FIFOs, unknown types, the root entry */
    uint64_t bytes;   /* regular file data written */
} rc_tar_stats;

/* Extract the whole archive into root_fd (a directory opened O_RDONLY|O_DIRECTORY, expected
 * empty), then create ensure_dirs, then finalise modes and mtimes. On failure the directory is
 * left in an unspecified partial state for the caller to delete. limits NULL = defaults;
 * ret_stats may be NULL. */
int rc_tar_extract(const rc_tar_source *src, int root_fd, const rc_tar_limits *limits,
                   const rc_tar_dir *ensure_dirs, size_t n_ensure_dirs, rc_tar_stats *ret_stats,
                   rc_error *err);

/* Remove a tree below dir_fd/name without following symlinks, making directories writable as
 * it goes (extracted trees have read-only directories). Missing name is not an error. Refuses
 * (-RC_EINVAL, having removed what it met before) to descend into a mount point or another
 * filesystem, so a tree with a snapshot still bind-mounted in it cannot take the snapshot along. */
int rc_tar_remove_tree(int dir_fd, const char *name, rc_error *err);

#endif
