/* tar.c - the streaming tar reader and the safe extractor (see tar.h for the contract).
 *
 * Shaped as two layers. The reader turns 512-byte blocks into checked entries and knows nothing
 * about the filesystem: every number is parsed strictly (octal or base-256, overflow-checked),
 * every header's checksum verified, every cap enforced on the declared size before any data is
 * read. It follows Go's archive/tar (what `docker export` writes) where tar readers disagree:
 * header-only types (links, devices, FIFOs, directories) carry no data whatever their size field
 * says, and a '\0' entry whose name ends in '/' is a directory.
 *
 * The extractor owns the filesystem side and trusts nothing the reader hands it: each path is
 * normalised and refused if absolute or containing `..`; its parent directory is opened from the
 * root fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
 * RESOLVE_NO_XDEV), or by an O_NOFOLLOW|O_DIRECTORY walk one component at a time where openat2
 * is missing or a directory must be created, so no write ever goes through a symlink; the final
 * component is created with O_EXCL|O_NOFOLLOW or the *at() call's no-follow flag. Directory modes
 * and mtimes are applied in one walk at the end (keyed by inode), because writing children would
 * undo them and because directories must stay writable while the archive is written. */
#include "tar.h"

#include "cleanup.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BLOCK 512

/* ---- limits ------------------------------------------------------------------------------- */

void rc_tar_limits_default(rc_tar_limits *ret)
{
    *ret = (rc_tar_limits){
        .max_total_bytes = RC_TAR_DEFAULT_MAX_TOTAL_BYTES,
        .max_file_bytes = RC_TAR_DEFAULT_MAX_FILE_BYTES,
        .max_entries = RC_TAR_DEFAULT_MAX_ENTRIES,
        .max_path_len = RC_TAR_DEFAULT_MAX_PATH_LEN,
        .max_depth = RC_TAR_DEFAULT_MAX_DEPTH,
        .max_meta_bytes = RC_TAR_DEFAULT_MAX_META_BYTES,
    };
}

void rc_tar_limits_resolve(const rc_tar_limits *in, rc_tar_limits *ret)
{
    rc_tar_limits d;
    rc_tar_limits_default(&d);
    if (in) {
        d.max_total_bytes = in->max_total_bytes ? in->max_total_bytes : d.max_total_bytes;
        d.max_file_bytes = in->max_file_bytes ? in->max_file_bytes : d.max_file_bytes;
        d.max_entries = in->max_entries ? in->max_entries : d.max_entries;
        d.max_path_len = in->max_path_len ? in->max_path_len : d.max_path_len;
        d.max_depth = in->max_depth ? in->max_depth : d.max_depth;
        d.max_meta_bytes = in->max_meta_bytes ? in->max_meta_bytes : d.max_meta_bytes;
    }
    if (d.max_path_len > 65535)
        d.max_path_len = 65535;
    *ret = d;
}

/* A path from the archive, made safe to put in a message: at most 96 bytes, non-printable bytes
 * shown as '?'. */
static const char *shown(const char *path, char out[100])
{
    size_t i = 0;
    for (; path && path[i] && i < 96; i++)
        out[i] = (path[i] >= 0x20 && path[i] < 0x7f) ? path[i] : '?';
    if (path && path[i]) {
        out[i++] = '.';
        out[i++] = '.';
    }
    out[i] = '\0';
    return out;
}

/* ---- reader ------------------------------------------------------------------------------- */

struct rc_tar_reader {
    rc_tar_source src;
    rc_tar_limits lim;
    unsigned char block[BLOCK];
    unsigned char *scratch; /* for skipping data */
    uint64_t data_left;     /* unread data bytes of the current entry */
    uint64_t pad_left;      /* padding to the next block boundary */
    uint64_t total;         /* declared bytes so far */
    uint64_t headers;       /* header blocks read (meta included) */
    uint64_t index;         /* entries returned */
    bool done, failed;
    rc_tar_entry entry;
    char *path, *link; /* the current entry's strings */
    /* Pending overrides from pax 'x' and GNU 'L'/'K' records, for the next real entry. */
    char *pax_path, *pax_link, *gnu_path, *gnu_link;
    bool have_size, have_mtime, have_uid, have_gid;
    uint64_t pax_size, pax_uid, pax_gid;
    int64_t pax_sec;
    long pax_nsec;
};

#define SCRATCH_SIZE 65536

static int reader_fail(rc_tar_reader *r, int rc)
{
    r->failed = true;
    return rc;
}

/* Read exactly n bytes. *ret_eof_at_start (when non-NULL) reports a clean end of stream before
 * the first byte instead of an error. */
static int read_exact(rc_tar_reader *r, void *buf, size_t n, bool *ret_eof_at_start, rc_error *err)
{
    size_t got = 0;
    while (got < n) {
        int k = r->src.read(r->src.ctx, (char *)buf + got, n - got, err);
        if (k < 0)
            return k;
        if (k == 0) {
            if (got == 0 && ret_eof_at_start) {
                *ret_eof_at_start = true;
                return 0;
            }
            return rc_error_set(err, RC_EPARSE, "archive is truncated (stream ended early)");
        }
        if ((size_t)k > n - got)
            return rc_error_set(err, RC_EIO, "tar source returned more bytes than asked");
        got += (size_t)k;
    }
    if (ret_eof_at_start)
        *ret_eof_at_start = false;
    return 0;
}

static int skip_bytes(rc_tar_reader *r, uint64_t n, rc_error *err)
{
    while (n > 0) {
        size_t k = n > SCRATCH_SIZE ? SCRATCH_SIZE : (size_t)n;
        int rc = read_exact(r, r->scratch, k, NULL, err);
        if (rc < 0)
            return rc;
        n -= k;
    }
    return 0;
}

int rc_tar_reader_new(const rc_tar_source *src, const rc_tar_limits *limits,
                      rc_tar_reader **ret_reader, rc_error *err)
{
    rc_tar_reader *r;
    if (!src || !src->read)
        return rc_error_set(err, RC_EINVAL, "tar reader needs a source");
    r = calloc(1, sizeof *r);
    if (!r)
        return rc_error_set(err, RC_ENOMEM, "out of memory for the tar reader");
    r->src = *src;
    rc_tar_limits_resolve(limits, &r->lim);
    r->scratch = malloc(SCRATCH_SIZE);
    if (!r->scratch) {
        free(r);
        return rc_error_set(err, RC_ENOMEM, "out of memory for the tar reader");
    }
    *ret_reader = r;
    return 0;
}

static void clear_pending(rc_tar_reader *r)
{
    free(r->pax_path);
    free(r->pax_link);
    free(r->gnu_path);
    free(r->gnu_link);
    r->pax_path = r->pax_link = r->gnu_path = r->gnu_link = NULL;
    r->have_size = r->have_mtime = r->have_uid = r->have_gid = false;
}

void rc_tar_reader_free(rc_tar_reader *r)
{
    if (!r)
        return;
    clear_pending(r);
    free(r->path);
    free(r->link);
    free(r->scratch);
    free(r);
}

/* ---- header fields ---- */

/* An octal field: optional leading spaces, octal digits, then only NULs/spaces. An empty field
 * is 0 unless required. Base-256 (first byte 0x80) is accepted for positive values; negative
 * base-256 (0xff) is refused. */
static int parse_number(const unsigned char *f, size_t len, bool required, uint64_t *ret)
{
    uint64_t v = 0;
    size_t i = 0;
    bool digits = false;

    if (len > 0 && (f[0] & 0x80)) {
        if (f[0] != 0x80)
            return -1; /* negative or malformed base-256 */
        for (i = 1; i < len; i++) {
            if (v >> 55)
                return -1;
            v = (v << 8) | f[i];
        }
        if (v > (uint64_t)INT64_MAX)
            return -1;
        *ret = v;
        return 0;
    }
    while (i < len && f[i] == ' ')
        i++;
    for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 60)
            return -1;
        v = (v << 3) | (uint64_t)(f[i] - '0');
        digits = true;
    }
    for (; i < len; i++)
        if (f[i] != ' ' && f[i] != '\0')
            return -1;
    if (!digits && required)
        return -1;
    if (v > (uint64_t)INT64_MAX)
        return -1;
    *ret = v;
    return 0;
}

static bool block_is_zero(const unsigned char *b)
{
    for (size_t i = 0; i < BLOCK; i++)
        if (b[i])
            return false;
    return true;
}

static int check_header(const unsigned char *b, bool *ret_posix, rc_error *err)
{
    uint64_t stored;
    unsigned long usum = 0;
    long ssum = 0;

    if (parse_number(b + 148, 8, true, &stored) < 0)
        return rc_error_set(err, RC_EPARSE, "tar header has a malformed checksum field");
    for (size_t i = 0; i < BLOCK; i++) {
        unsigned char c = (i >= 148 && i < 156) ? ' ' : b[i];
        usum += c;
        ssum += (signed char)c;
    }
    if (stored != usum && (long long)stored != (long long)ssum)
        return rc_error_set(err, RC_EPARSE, "tar header checksum mismatch");
    if (memcmp(b + 257,
               "ustar\0"
               "00",
               8) == 0)
        *ret_posix = true;
    else if (memcmp(b + 257, "ustar  \0", 8) == 0)
        *ret_posix = false;
    else
        return rc_error_set(err, RC_EPARSE, "not a ustar, pax or GNU tar header (bad magic)");
    return 0;
}

/* A NUL-terminated copy of a fixed-size field (up to its first NUL). */
static char *field_str(const unsigned char *f, size_t len)
{
    size_t n = strnlen((const char *)f, len);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, f, n);
        s[n] = '\0';
    }
    return s;
}

static char *header_path(const unsigned char *b, bool posix)
{
    _cleanup_free_ char *name = field_str(b, 100);
    _cleanup_free_ char *prefix = posix ? field_str(b + 345, 155) : NULL;
    char *out;
    size_t nl, pl;

    if (!name || (posix && !prefix))
        return NULL;
    if (!prefix || !prefix[0])
        return take_ptr(name);
    nl = strlen(name);
    pl = strlen(prefix);
    out = malloc(pl + 1 + nl + 1);
    if (!out)
        return NULL;
    memcpy(out, prefix, pl);
    out[pl] = '/';
    memcpy(out + pl + 1, name, nl + 1);
    return out;
}

/* ---- pax records ---- */

static int pax_decimal(const char *s, size_t n, uint64_t max, uint64_t *ret)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *ret = v;
    return 0;
}

/* "[-]seconds[.fraction]" into seconds and nanoseconds (fraction digits past 9 ignored). */
static int pax_time(const char *s, size_t n, int64_t *ret_sec, long *ret_nsec)
{
    bool neg = n > 0 && s[0] == '-';
    size_t i = neg ? 1 : 0, start = i;
    uint64_t sec;
    long nsec = 0;
    int scale = 100000000;

    while (i < n && s[i] != '.')
        i++;
    if (pax_decimal(s + start, i - start, (uint64_t)INT64_MAX, &sec) < 0)
        return -1;
    if (i < n) {
        if (i + 1 == n)
            return -1;
        for (size_t j = i + 1; j < n; j++) {
            if (s[j] < '0' || s[j] > '9')
                return -1;
            if (scale > 0) {
                nsec += (s[j] - '0') * scale;
                scale /= 10;
            }
        }
    }
    *ret_sec = neg ? -(int64_t)sec : (int64_t)sec;
    *ret_nsec = nsec;
    if (neg && nsec) { /* -1.5 is 1.5 s before the epoch: -2 s + 0.5 s */
        if (*ret_sec == INT64_MIN)
            return -1;
        *ret_sec -= 1;
        *ret_nsec = 1000000000L - nsec;
    }
    return 0;
}

static int pax_string(rc_tar_reader *r, const char *key, const char *v, size_t vn, char **slot,
                      rc_error *err)
{
    char *copy;
    if (memchr(v, '\0', vn))
        return rc_error_set(err, RC_EPARSE, "pax %s contains a NUL byte", key);
    if (vn > r->lim.max_path_len)
        return rc_error_set(err, RC_ETOOBIG, "pax %s is longer than %u bytes", key,
                            r->lim.max_path_len);
    free(*slot);
    *slot = NULL;
    if (vn == 0) /* an empty value removes the override */
        return 0;
    copy = strndup(v, vn);
    if (!copy)
        return rc_error_set(err, RC_ENOMEM, "out of memory for a pax record");
    *slot = copy;
    return 0;
}

static int pax_id(const char *key, const char *v, size_t vn, uint64_t *ret, bool *have,
                  rc_error *err)
{
    if (pax_decimal(v, vn, 0xfffffffeULL, ret) < 0)
        return rc_error_set(err, RC_EPARSE, "pax %s is not a valid id", key);
    *have = true;
    return 0;
}

static int pax_record(rc_tar_reader *r, const char *k, size_t kn, const char *v, size_t vn,
                      rc_error *err)
{
#define KEY_IS(lit) (kn == sizeof(lit) - 1 && memcmp(k, lit, kn) == 0)
    if (KEY_IS("path"))
        return pax_string(r, "path", v, vn, &r->pax_path, err);
    if (KEY_IS("linkpath"))
        return pax_string(r, "linkpath", v, vn, &r->pax_link, err);
    if (KEY_IS("size")) {
        if (pax_decimal(v, vn, (uint64_t)INT64_MAX, &r->pax_size) < 0)
            return rc_error_set(err, RC_EPARSE, "pax size is not a valid number");
        r->have_size = true;
        return 0;
    }
    if (KEY_IS("mtime")) {
        if (pax_time(v, vn, &r->pax_sec, &r->pax_nsec) < 0)
            return rc_error_set(err, RC_EPARSE, "pax mtime is not a valid time");
        r->have_mtime = true;
        return 0;
    }
    if (KEY_IS("uid"))
        return pax_id("uid", v, vn, &r->pax_uid, &r->have_uid, err);
    if (KEY_IS("gid"))
        return pax_id("gid", v, vn, &r->pax_gid, &r->have_gid, err);
    if (kn >= 11 && memcmp(k, "GNU.sparse.", 11) == 0)
        return rc_error_set(err, RC_EPARSE, "sparse files are not supported");
    /* Everything else (atime, ctime, uname, gname, xattrs such as SCHILY.xattr.security.capability,
     * comments) is ignored on purpose: names are not mapped and xattrs are never applied. */
    return 0;
#undef KEY_IS
}

/* Parse a whole pax extended header: records "<len> <key>=<value>\n". */
static int parse_pax(rc_tar_reader *r, const char *p, size_t n, rc_error *err)
{
    size_t pos = 0;
    while (pos < n) {
        const char *rec = p + pos, *sp, *eq, *key;
        size_t avail = n - pos, lenlen, len;
        uint64_t declared;
        int rc;

        sp = memchr(rec, ' ', avail < 21 ? avail : 21);
        if (!sp)
            return rc_error_set(err, RC_EPARSE, "malformed pax record length");
        lenlen = (size_t)(sp - rec);
        if (pax_decimal(rec, lenlen, avail, &declared) < 0 || declared < lenlen + 3)
            return rc_error_set(err, RC_EPARSE, "malformed pax record length");
        len = (size_t)declared;
        if (rec[len - 1] != '\n')
            return rc_error_set(err, RC_EPARSE, "pax record does not end with a newline");
        key = sp + 1;
        eq = memchr(key, '=', (size_t)(rec + len - 1 - key));
        if (!eq || eq == key)
            return rc_error_set(err, RC_EPARSE, "malformed pax record (no key)");
        if (memchr(key, '\0', (size_t)(eq - key)))
            return rc_error_set(err, RC_EPARSE, "pax record key contains a NUL byte");
        rc =
            pax_record(r, key, (size_t)(eq - key), eq + 1, (size_t)(rec + len - 1 - (eq + 1)), err);
        if (rc < 0)
            return rc;
        pos += len;
    }
    return 0;
}

/* Read a meta entry's data (pax header or GNU long name) into a fresh NUL-terminated buffer. */
static int read_meta(rc_tar_reader *r, uint64_t size, char **ret, rc_error *err)
{
    _cleanup_free_ char *buf = NULL;
    int rc;
    if (size > r->lim.max_meta_bytes)
        return rc_error_set(err, RC_ETOOBIG, "extended header of %llu bytes exceeds the %u cap",
                            (unsigned long long)size, r->lim.max_meta_bytes);
    buf = malloc((size_t)size + 1);
    if (!buf)
        return rc_error_set(err, RC_ENOMEM, "out of memory for an extended header");
    rc = read_exact(r, buf, (size_t)size, NULL, err);
    if (rc < 0)
        return rc;
    buf[size] = '\0';
    rc = skip_bytes(r, (BLOCK - size % BLOCK) % BLOCK, err);
    if (rc < 0)
        return rc;
    *ret = take_ptr(buf);
    return 0;
}

/* GNU 'L'/'K': the name, NUL-terminated within the record; trailing NULs only. */
static int gnu_long(rc_tar_reader *r, uint64_t size, char **slot, rc_error *err)
{
    _cleanup_free_ char *buf = NULL;
    size_t n;
    int rc = read_meta(r, size, &buf, err);
    if (rc < 0)
        return rc;
    n = strlen(buf);
    for (size_t i = n; i < size; i++)
        if (buf[i] != '\0')
            return rc_error_set(err, RC_EPARSE, "GNU long name contains a NUL byte");
    if (n == 0)
        return rc_error_set(err, RC_EPARSE, "GNU long name is empty");
    if (n > r->lim.max_path_len)
        return rc_error_set(err, RC_ETOOBIG, "GNU long name is longer than %u bytes",
                            r->lim.max_path_len);
    free(*slot);
    *slot = take_ptr(buf);
    return 0;
}

static int type_of(char flag)
{
    switch (flag) {
    case '0':
    case '\0':
    case '7':
        return RC_TAR_FILE;
    case '1':
        return RC_TAR_HARDLINK;
    case '2':
        return RC_TAR_SYMLINK;
    case '3':
        return RC_TAR_CHAR;
    case '4':
        return RC_TAR_BLOCK;
    case '5':
        return RC_TAR_DIR;
    case '6':
        return RC_TAR_FIFO;
    default:
        return RC_TAR_OTHER;
    }
}

/* Header-only types carry no data whatever the size field says (as Go's archive/tar reads). */
static bool has_data(int type)
{
    return type == RC_TAR_FILE || type == RC_TAR_OTHER;
}

static int account(rc_tar_reader *r, uint64_t size, rc_error *err)
{
    if (size > r->lim.max_total_bytes - r->total)
        return rc_error_set(err, RC_ETOOBIG, "archive exceeds the total size cap of %llu bytes",
                            (unsigned long long)r->lim.max_total_bytes);
    r->total += size;
    return 0;
}

static int set_string(char **slot, const char *pending, const char *fallback, rc_error *err)
{
    free(*slot);
    *slot = strdup(pending ? pending : fallback);
    if (!*slot)
        return rc_error_set(err, RC_ENOMEM, "out of memory for an entry name");
    return 0;
}

/* Fill r->entry from the header in r->block and the pending overrides. */
static int build_entry(rc_tar_reader *r, bool posix, uint64_t hsize, rc_error *err)
{
    const unsigned char *b = r->block;
    rc_tar_entry *e = &r->entry;
    _cleanup_free_ char *hpath = header_path(b, posix);
    _cleanup_free_ char *hlink = field_str(b + 157, 100);
    uint64_t mode, uid, gid, mtime;
    char shown_buf[100];
    int rc;

    if (!hpath || !hlink)
        return rc_error_set(err, RC_ENOMEM, "out of memory for an entry name");
    if (parse_number(b + 100, 8, false, &mode) < 0 || parse_number(b + 108, 8, false, &uid) < 0 ||
        parse_number(b + 116, 8, false, &gid) < 0 || parse_number(b + 136, 12, false, &mtime) < 0)
        return rc_error_set(err, RC_EPARSE, "tar header has a malformed numeric field");
    if ((rc = set_string(&r->path, r->pax_path ? r->pax_path : r->gnu_path, hpath, err)) < 0 ||
        (rc = set_string(&r->link, r->pax_link ? r->pax_link : r->gnu_link, hlink, err)) < 0)
        return rc;
    if (strlen(r->path) > r->lim.max_path_len || strlen(r->link) > r->lim.max_path_len)
        return rc_error_set(err, RC_ETOOBIG, "entry path or link longer than %u bytes",
                            r->lim.max_path_len);
    *e = (rc_tar_entry){0};
    e->typeflag = (char)b[156];
    e->type = type_of(e->typeflag);
    if (e->typeflag == '\0' && r->path[0] && r->path[strlen(r->path) - 1] == '/')
        e->type = RC_TAR_DIR;
    e->path = r->path;
    e->link = r->link;
    e->size = has_data(e->type) ? (r->have_size ? r->pax_size : hsize) : 0;
    e->mode = (uint32_t)(mode & 07777);
    uid = r->have_uid ? r->pax_uid : uid;
    gid = r->have_gid ? r->pax_gid : gid;
    if (uid > 0xfffffffeULL || gid > 0xfffffffeULL)
        return rc_error_set(err, RC_EPARSE, "entry '%s' has an owner id out of range",
                            shown(r->path, shown_buf));
    e->uid = (uint32_t)uid;
    e->gid = (uint32_t)gid;
    e->mtime_sec = r->have_mtime ? r->pax_sec : (int64_t)mtime;
    e->mtime_nsec = r->have_mtime ? r->pax_nsec : 0;
    e->index = ++r->index;
    if (e->size > r->lim.max_file_bytes)
        return rc_error_set(err, RC_ETOOBIG, "entry '%s' of %llu bytes exceeds the per-file cap",
                            shown(r->path, shown_buf), (unsigned long long)e->size);
    return account(r, e->size, err);
}

static int next_header(rc_tar_reader *r, rc_error *err)
{
    bool eof = false;
    int rc = read_exact(r, r->block, BLOCK, &eof, err);
    if (rc < 0)
        return rc;
    if (eof)
        return rc_error_set(err, RC_EPARSE,
                            "archive is truncated (no end-of-archive marker after %llu entries)",
                            (unsigned long long)r->index);
    if (block_is_zero(r->block))
        return 0;
    if (++r->headers > r->lim.max_entries)
        return rc_error_set(err, RC_ETOOBIG, "archive has more than %llu entries",
                            (unsigned long long)r->lim.max_entries);
    return 1;
}

/* Handle one meta entry ('x', 'g', 'L', 'K', 'V'); 1 if it was one, 0 if a real entry. */
static int handle_meta(rc_tar_reader *r, char flag, uint64_t size, rc_error *err)
{
    _cleanup_free_ char *buf = NULL;
    int rc;

    switch (flag) {
    case 'x':
        if ((rc = account(r, size, err)) < 0 || (rc = read_meta(r, size, &buf, err)) < 0)
            return rc;
        return (rc = parse_pax(r, buf, (size_t)size, err)) < 0 ? rc : 1;
    case 'g': /* global pax header: read (capped) and ignored */
    case 'V': /* volume label */
        if ((rc = account(r, size, err)) < 0 || (rc = read_meta(r, size, &buf, err)) < 0)
            return rc;
        return 1;
    case 'L':
        if ((rc = account(r, size, err)) < 0 || (rc = gnu_long(r, size, &r->gnu_path, err)) < 0)
            return rc;
        return 1;
    case 'K':
        if ((rc = account(r, size, err)) < 0 || (rc = gnu_long(r, size, &r->gnu_link, err)) < 0)
            return rc;
        return 1;
    case 'S':
        return rc_error_set(err, RC_EPARSE, "GNU sparse files are not supported");
    case 'M':
        return rc_error_set(err, RC_EPARSE, "multi-volume archives are not supported");
    default:
        return 0;
    }
}

static int next_entry(rc_tar_reader *r, rc_error *err)
{
    bool posix = false, pending = false;
    uint64_t size;
    int rc;

    for (;;) {
        rc = next_header(r, err);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            if (pending)
                return rc_error_set(err, RC_EPARSE, "extended header without an entry after it");
            return 0;
        }
        if ((rc = check_header(r->block, &posix, err)) < 0)
            return rc;
        if (parse_number(r->block + 124, 12, false, &size) < 0)
            return rc_error_set(err, RC_EPARSE, "tar header has a malformed size field");
        rc = handle_meta(r, (char)r->block[156], size, err);
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
        pending = pending || r->block[156] == 'x' || r->block[156] == 'L' || r->block[156] == 'K';
    }
    if ((rc = build_entry(r, posix, size, err)) < 0)
        return rc;
    clear_pending(r);
    r->data_left = r->entry.size;
    r->pad_left = (BLOCK - r->entry.size % BLOCK) % BLOCK;
    return 1;
}

int rc_tar_next(rc_tar_reader *r, const rc_tar_entry **ret_entry, rc_error *err)
{
    int rc;
    if (r->failed)
        return rc_error_set(err, RC_EINVAL, "tar reader already failed");
    if (r->done)
        return 0;
    rc = skip_bytes(r, r->data_left + r->pad_left, err);
    if (rc < 0)
        return reader_fail(r, rc);
    r->data_left = r->pad_left = 0;
    rc = next_entry(r, err);
    if (rc < 0)
        return reader_fail(r, rc);
    if (rc == 0) {
        r->done = true;
        return 0;
    }
    *ret_entry = &r->entry;
    return 1;
}

int rc_tar_read_data(rc_tar_reader *r, void *buf, size_t n, rc_error *err)
{
    int rc;
    if (r->failed)
        return rc_error_set(err, RC_EINVAL, "tar reader already failed");
    if (r->data_left == 0 || n == 0)
        return 0;
    if (n > r->data_left)
        n = (size_t)r->data_left;
    if (n > INT_MAX)
        n = INT_MAX;
    rc = read_exact(r, buf, n, NULL, err);
    if (rc < 0)
        return reader_fail(r, rc);
    r->data_left -= n;
    return (int)n;
}

/* ---- paths -------------------------------------------------------------------------------- */

int rc_tar_path_normalize(const char *path, const rc_tar_limits *limits, char *out, size_t outsz,
                          rc_error *err)
{
    rc_tar_limits lim;
    size_t len = strlen(path), o = 0;
    uint32_t depth = 0;
    const char *p = path;
    char sh[100];

    rc_tar_limits_resolve(limits, &lim);
    if (len > lim.max_path_len)
        return rc_error_set(err, RC_EINVAL, "path '%s' is longer than %u bytes", shown(path, sh),
                            lim.max_path_len);
    if (outsz < len + 1)
        return rc_error_set(err, RC_ETOOBIG, "path buffer too small");
    if (path[0] == '/')
        return rc_error_set(err, RC_EINVAL, "absolute path '%s' refused", shown(path, sh));
    while (*p) {
        const char *end = strchrnul(p, '/');
        size_t n = (size_t)(end - p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return rc_error_set(err, RC_EINVAL, "path '%s' has a '..' component", shown(path, sh));
        if (n > NAME_MAX)
            return rc_error_set(err, RC_EINVAL, "path '%s' has a component over %d bytes",
                                shown(path, sh), NAME_MAX);
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (++depth > lim.max_depth)
                return rc_error_set(err, RC_EINVAL, "path '%s' is deeper than %u components",
                                    shown(path, sh), lim.max_depth);
            if (o > 0)
                out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p = *end ? end + 1 : end;
    }
    out[o] = '\0';
    return o > 0 ? 1 : 0;
}

/* ---- extractor ---------------------------------------------------------------------------- */

typedef struct dir_rec {
    dev_t dev;
    ino_t ino;
    uint64_t seq; /* later records win */
    uint32_t mode;
    bool has_time;
    int64_t sec;
    long nsec;
} dir_rec;

typedef struct extractor {
    int root_fd;
    rc_tar_limits lim;
    rc_tar_reader *r;
    bool as_root;
    bool no_openat2;
    char *norm, *norm_link; /* max_path_len + 1 each */
    char *cache_path;       /* parent dir of the previous entry, and its O_PATH fd */
    int cache_fd;
    dir_rec *dirs;
    size_t ndirs, capdirs;
    unsigned char *copybuf;
    uint64_t logged_skips;
    rc_tar_stats st;
} extractor;

#define COPY_SIZE     (128 * 1024)
#define MAX_SKIP_LOGS 20

static void cache_drop(extractor *x)
{
    free(x->cache_path);
    x->cache_path = NULL;
    if (x->cache_fd >= 0)
        close(x->cache_fd);
    x->cache_fd = -1;
}

static void extractor_done(extractor *x)
{
    cache_drop(x);
    free(x->norm);
    free(x->norm_link);
    free(x->dirs);
    free(x->copybuf);
}

static int xfail_path(rc_error *err, const char *what, const char *path)
{
    char sh[100];
    return rc_error_sys(err, RC_EIO, "%s '%s'", what, shown(path, sh));
}

/* Why an open of a parent failed, in terms of the archive. */
static int parent_error(rc_error *err, const char *path)
{
    char sh[100];
    if (errno == ENOENT)
        return rc_error_set(err, RC_EINVAL, "the parent directory of '%s' does not exist",
                            shown(path, sh));
    if (errno == ELOOP || errno == ENOTDIR || errno == EXDEV)
        return rc_error_set(err, RC_EINVAL,
                            "parent directory '%s' is a symlink or not a directory: refused",
                            shown(path, sh));
    return rc_error_sys(err, RC_EIO, "cannot open the parent of '%s'", shown(path, sh));
}

static int open_beneath(extractor *x, const char *dir)
{
    struct open_how how = {
        .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    long fd;
    if (x->no_openat2) {
        errno = ENOSYS;
        return -1;
    }
    fd = syscall(SYS_openat2, x->root_fd, dir, &how, sizeof how);
    if (fd < 0 && errno == ENOSYS)
        x->no_openat2 = true;
    return (int)fd;
}

/* Walk dir one component at a time with O_NOFOLLOW|O_DIRECTORY, creating missing directories
 * (mode 0700 until finalise) when create is set. Components are already normalised: no "..",
 * no ".", no empty ones, so this stays below root_fd. */
static int walk_dirs(extractor *x, const char *dir, bool create, const char *entry_path,
                     int *ret_fd, rc_error *err)
{
    _cleanup_close_ int fd = openat(x->root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    const char *p = dir;
    char comp[NAME_MAX + 1];

    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "cannot open the extraction root");
    while (*p) {
        const char *end = strchrnul(p, '/');
        size_t n = (size_t)(end - p);
        int next;
        memcpy(comp, p, n);
        comp[n] = '\0';
        if (n == 0 || strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0)
            return rc_error_set(err, RC_EINVAL, "bad path component"); /* never reached */
        next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, comp, 0700) < 0 && errno != EEXIST)
                return xfail_path(err, "cannot create a directory for", entry_path);
            next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0)
            return parent_error(err, entry_path);
        close(fd);
        fd = next;
        p = *end ? end + 1 : end;
    }
    *ret_fd = take_fd(fd);
    return 0;
}

/* Split path (normalised, non-empty) into its parent directory fd and last component. The fd
 * is borrowed from the cache; the caller must not close it. */
static int open_parent(extractor *x, char *path, bool create, int *ret_fd, const char **ret_name,
                       rc_error *err)
{
    char *slash = strrchr(path, '/');
    const char *dir = "";
    int fd, rc;

    if (slash) {
        *slash = '\0';
        dir = path;
    }
    if (x->cache_path && strcmp(x->cache_path, dir) == 0) {
        fd = x->cache_fd;
    } else {
        cache_drop(x);
        fd = dir[0] ? open_beneath(x, dir) : -1;
        if (fd < 0 && (!dir[0] || errno == ENOSYS || (errno == ENOENT && create))) {
            rc = walk_dirs(x, dir, create, path, &fd, err);
            if (rc < 0) {
                if (slash)
                    *slash = '/';
                return rc;
            }
        } else if (fd < 0) {
            rc = parent_error(err, dir);
            if (slash)
                *slash = '/';
            return rc;
        }
        x->cache_fd = fd;
        x->cache_path = strdup(dir);
        if (!x->cache_path) {
            cache_drop(x);
            if (slash)
                *slash = '/';
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        }
    }
    if (slash)
        *slash = '/';
    *ret_fd = fd;
    *ret_name = slash ? slash + 1 : path;
    return 0;
}

/* Make room for a new entry at dfd/name: absent is fine, a directory is kept when the new entry
 * is one (returns 1) and refused otherwise, anything else is unlinked (tar's "later entry
 * wins"). Nothing is followed. */
static int clear_slot(int dfd, const char *name, bool want_dir, const char *path, rc_error *err)
{
    struct stat st;
    char sh[100];
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0;
        return xfail_path(err, "cannot inspect", path);
    }
    if (S_ISDIR(st.st_mode)) {
        if (want_dir)
            return 1;
        return rc_error_set(err, RC_EINVAL, "entry '%s' would replace a directory: refused",
                            shown(path, sh));
    }
    /* Only non-directories are ever removed, so a cached parent fd always stays valid. */
    if (unlinkat(dfd, name, 0) < 0)
        return xfail_path(err, "cannot replace", path);
    return 0;
}

static int set_owner(extractor *x, int dfd, const char *name, int flags, const rc_tar_entry *e,
                     const char *path, rc_error *err)
{
    /* Owners are kept as archived (numeric ids, names ignored), only when we can: as root. */
    if (!x->as_root)
        return 0;
    if (fchownat(dfd, name, e->uid, e->gid, flags) < 0)
        return xfail_path(err, "cannot set the owner of", path);
    return 0;
}

static struct timespec entry_time(const rc_tar_entry *e)
{
    return (struct timespec){.tv_sec = (time_t)e->mtime_sec, .tv_nsec = e->mtime_nsec};
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int extract_file(extractor *x, int dfd, const char *name, const rc_tar_entry *e,
                        const char *path, rc_error *err)
{
    _cleanup_close_ int fd = -1;
    struct timespec ts[2];
    int rc = clear_slot(dfd, name, false, path, err);
    if (rc < 0)
        return rc;
    fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return xfail_path(err, "cannot create", path);
    while ((rc = rc_tar_read_data(x->r, x->copybuf, COPY_SIZE, err)) > 0) {
        if (write_all(fd, x->copybuf, (size_t)rc) < 0)
            return xfail_path(err, "cannot write", path);
        x->st.bytes += (uint64_t)rc;
    }
    if (rc < 0)
        return rc;
    if ((rc = set_owner(x, fd, "", AT_EMPTY_PATH, e, path, err)) < 0)
        return rc;
    /* No setuid/setgid/sticky, no group/other write: a shared tree must not be writable by
     * anyone but root, nor raise anyone's privileges. */
    if (fchmod(fd, e->mode & 0755) < 0)
        return xfail_path(err, "cannot set the mode of", path);
    ts[0] = ts[1] = entry_time(e);
    if (futimens(fd, ts) < 0)
        return xfail_path(err, "cannot set the mtime of", path);
    x->st.files++;
    return 0;
}

static int extract_symlink(extractor *x, int dfd, const char *name, const rc_tar_entry *e,
                           const char *path, rc_error *err)
{
    struct timespec ts[2];
    char sh[100];
    int rc;
    if (!e->link[0])
        return rc_error_set(err, RC_EINVAL, "symlink '%s' has an empty target", shown(path, sh));
    if ((rc = clear_slot(dfd, name, false, path, err)) < 0)
        return rc;
    /* The target is stored verbatim: it is only ever resolved inside the container. */
    if (symlinkat(e->link, dfd, name) < 0)
        return xfail_path(err, "cannot create symlink", path);
    if ((rc = set_owner(x, dfd, name, AT_SYMLINK_NOFOLLOW, e, path, err)) < 0)
        return rc;
    ts[0] = ts[1] = entry_time(e);
    if (utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return xfail_path(err, "cannot set the mtime of", path);
    x->st.symlinks++;
    return 0;
}

/* Hardlink: the target must be a regular file this extraction already wrote (the root started
 * empty), reached without following any symlink. */
static int extract_hardlink(extractor *x, char *path, const rc_tar_entry *e, rc_error *err)
{
    _cleanup_close_ int tdfd = -1;
    const char *tname, *name;
    struct stat st;
    char sh[100];
    int dfd, rc;

    rc = rc_tar_path_normalize(e->link, &x->lim, x->norm_link, x->lim.max_path_len + 1, err);
    if (rc < 0)
        return rc_error_wrap(err, RC_EINVAL, "hardlink target");
    if (rc == 0)
        return rc_error_set(err, RC_EINVAL, "hardlink '%s' to the root: refused", shown(path, sh));
    if ((rc = open_parent(x, x->norm_link, false, &dfd, &tname, err)) < 0)
        return rc_error_wrap(err, RC_EINVAL, "hardlink target");
    /* Our own copy: opening the link's parent below replaces the cached fd. */
    tdfd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
    if (tdfd < 0)
        return rc_error_sys(err, RC_EIO, "dup");
    if (fstatat(tdfd, tname, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
        return rc_error_set(err, RC_EINVAL,
                            "hardlink '%s' does not point to a regular file already extracted",
                            shown(path, sh));
    if ((rc = open_parent(x, path, true, &dfd, &name, err)) < 0)
        return rc;
    if ((rc = clear_slot(dfd, name, false, path, err)) < 0)
        return rc;
    /* flags 0: linkat never follows a symlink at the target (and we checked it is a file). */
    if (linkat(tdfd, tname, dfd, name, 0) < 0) {
        if (errno == ENOENT)
            return rc_error_set(err, RC_EINVAL, "hardlink '%s' points to itself", shown(path, sh));
        return xfail_path(err, "cannot create hardlink", path);
    }
    x->st.hardlinks++;
    return 0;
}

static int record_dir(extractor *x, int fd, uint32_t mode, const struct timespec *t, rc_error *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return rc_error_sys(err, RC_EIO, "cannot stat a directory");
    if (x->ndirs == x->capdirs) {
        size_t cap = x->capdirs ? x->capdirs * 2 : 256;
        dir_rec *d = realloc(x->dirs, cap * sizeof *d);
        if (!d)
            return rc_error_set(err, RC_ENOMEM, "out of memory for directory records");
        x->dirs = d;
        x->capdirs = cap;
    }
    x->dirs[x->ndirs] = (dir_rec){.dev = st.st_dev,
                                  .ino = st.st_ino,
                                  .seq = x->ndirs,
                                  .mode = mode,
                                  .has_time = t != NULL,
                                  .sec = t ? t->tv_sec : 0,
                                  .nsec = t ? t->tv_nsec : 0};
    x->ndirs++;
    return 0;
}

/* Create (or keep) a directory at dfd/name and return an O_PATH fd to it. */
static int make_dir(int dfd, const char *name, const char *path, int *ret_fd, rc_error *err)
{
    int rc = clear_slot(dfd, name, true, path, err);
    int fd;
    if (rc < 0)
        return rc;
    if (rc == 0 && mkdirat(dfd, name, 0700) < 0)
        return xfail_path(err, "cannot create directory", path);
    fd = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return xfail_path(err, "cannot open directory", path);
    *ret_fd = fd;
    return 0;
}

static int extract_dir(extractor *x, int dfd, const char *name, const rc_tar_entry *e,
                       const char *path, rc_error *err)
{
    _cleanup_close_ int fd = -1;
    struct timespec t = entry_time(e);
    int rc = make_dir(dfd, name, path, &fd, err);
    if (rc < 0)
        return rc;
    if ((rc = set_owner(x, fd, "", AT_EMPTY_PATH, e, path, err)) < 0)
        return rc;
    /* Directories end without write bits (and without setgid/sticky): see finalise. */
    if ((rc = record_dir(x, fd, e->mode & 0555, &t, err)) < 0)
        return rc;
    x->st.dirs++;
    return 0;
}

static void log_skip(extractor *x, const rc_tar_entry *e, const char *why)
{
    char sh[100];
    x->st.skipped++;
    if (e->type == RC_TAR_DIR) /* the root entry "./" that most archives start with */
        return;
    if (x->logged_skips++ < MAX_SKIP_LOGS)
        rc_log_info("tar: skipped entry %llu '%s' (%s)", (unsigned long long)e->index,
                    shown(e->path, sh), why);
    else if (x->logged_skips == MAX_SKIP_LOGS + 1)
        rc_log_info("tar: more skipped entries are not logged one by one");
}

static int extract_entry(extractor *x, const rc_tar_entry *e, rc_error *err)
{
    const char *name;
    int dfd, rc;

    switch (e->type) {
    case RC_TAR_CHAR:
    case RC_TAR_BLOCK:
        log_skip(x, e, "device node");
        return 0;
    case RC_TAR_FIFO:
        log_skip(x, e, "FIFO");
        return 0;
    case RC_TAR_OTHER:
        log_skip(x, e, "unsupported entry type");
        return 0;
    default:
        break;
    }
    rc = rc_tar_path_normalize(e->path, &x->lim, x->norm, x->lim.max_path_len + 1, err);
    if (rc < 0)
        return rc;
    if (rc == 0) { /* "./": the root itself keeps the mode we give it */
        log_skip(x, e, "the root directory");
        return 0;
    }
    if (e->type == RC_TAR_HARDLINK)
        return extract_hardlink(x, x->norm, e, err);
    if ((rc = open_parent(x, x->norm, true, &dfd, &name, err)) < 0)
        return rc;
    switch (e->type) {
    case RC_TAR_FILE:
        return extract_file(x, dfd, name, e, x->norm, err);
    case RC_TAR_SYMLINK:
        return extract_symlink(x, dfd, name, e, x->norm, err);
    case RC_TAR_DIR:
        return extract_dir(x, dfd, name, e, x->norm, err);
    default:
        return rc_error_set(err, RC_EINVAL, "unexpected entry type");
    }
}

static int ensure_dir(extractor *x, const rc_tar_dir *d, rc_error *err)
{
    _cleanup_close_ int fd = -1;
    const char *name;
    int dfd, rc;

    rc = rc_tar_path_normalize(d->path, &x->lim, x->norm, x->lim.max_path_len + 1, err);
    if (rc <= 0)
        return rc < 0 ? rc : rc_error_set(err, RC_EINVAL, "mount point is the root");
    if ((rc = open_parent(x, x->norm, true, &dfd, &name, err)) < 0)
        return rc;
    if ((rc = make_dir(dfd, name, x->norm, &fd, err)) < 0)
        return rc;
    if (x->as_root && fchownat(fd, "", 0, 0, AT_EMPTY_PATH) < 0)
        return xfail_path(err, "cannot set the owner of", x->norm);
    return record_dir(x, fd, d->mode & 01777, NULL, err);
}

/* ---- finalise: directory modes and mtimes ---- */

static int dir_rec_cmp(const void *a, const void *b)
{
    const dir_rec *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The record that applies to st: the last one for its inode. */
static const dir_rec *find_dir(const extractor *x, const struct stat *st)
{
    size_t lo = 0, hi = x->ndirs;
    const dir_rec *found = NULL;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const dir_rec *d = &x->dirs[mid];
        if (d->dev < st->st_dev || (d->dev == st->st_dev && d->ino <= st->st_ino)) {
            if (d->dev == st->st_dev && d->ino == st->st_ino)
                found = d;
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return found;
}

static int apply_dir(const extractor *x, int fd, rc_error *err)
{
    struct stat st;
    const dir_rec *d;
    if (fstat(fd, &st) < 0)
        return rc_error_sys(err, RC_EIO, "cannot stat a directory");
    d = find_dir(x, &st);
    if (fchmod(fd, d ? d->mode : 0555) < 0)
        return rc_error_sys(err, RC_EIO, "cannot set a directory mode");
    if (d && d->has_time) {
        struct timespec ts[2] = {{d->sec, d->nsec}, {d->sec, d->nsec}};
        if (futimens(fd, ts) < 0)
            return rc_error_sys(err, RC_EIO, "cannot set a directory mtime");
    }
    return 0;
}

static int finalise_tree(const extractor *x, int fd, uint32_t depth, rc_error *err)
{
    DIR *d;
    struct dirent *de;
    int rc = 0, dfd;

    if (depth > x->lim.max_depth + 2)
        return rc_error_set(err, RC_EINVAL, "tree deeper than expected");
    dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dfd < 0)
        return rc_error_sys(err, RC_EIO, "dup");
    d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return rc_error_sys(err, RC_EIO, "cannot read a directory");
    }
    while (rc == 0 && (errno = 0, de = readdir(d))) {
        _cleanup_close_ int cfd = -1;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
            continue;
        cfd = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd < 0) {
            if (errno == ENOTDIR || errno == ELOOP)
                continue;
            rc = rc_error_sys(err, RC_EIO, "cannot open a directory");
            break;
        }
        rc = finalise_tree(x, cfd, depth + 1, err);
        if (rc == 0)
            rc = apply_dir(x, cfd, err);
    }
    if (rc == 0 && errno)
        rc = rc_error_sys(err, RC_EIO, "cannot read a directory");
    closedir(d);
    return rc;
}

static int finalise(extractor *x, rc_error *err)
{
    _cleanup_close_ int fd = openat(x->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "cannot open the extraction root");
    if (x->ndirs > 1)
        qsort(x->dirs, x->ndirs, sizeof *x->dirs, dir_rec_cmp);
    rc = finalise_tree(x, fd, 0, err);
    if (rc < 0)
        return rc;
    if (fchmod(fd, 0555) < 0)
        return rc_error_sys(err, RC_EIO, "cannot set the root's mode");
    return 0;
}

static int extractor_init(extractor *x, const rc_tar_source *src, int root_fd,
                          const rc_tar_limits *limits, rc_error *err)
{
    int rc;
    *x = (extractor){.root_fd = root_fd, .cache_fd = -1, .as_root = geteuid() == 0};
    /* Tests set this to prove the O_NOFOLLOW walk alone (kernels before 5.6 have no openat2). */
    x->no_openat2 = getenv("RUNCELL_TAR_NO_OPENAT2") != NULL;
    rc_tar_limits_resolve(limits, &x->lim);
    x->norm = malloc(x->lim.max_path_len + 1);
    x->norm_link = malloc(x->lim.max_path_len + 1);
    x->copybuf = malloc(COPY_SIZE);
    if (!x->norm || !x->norm_link || !x->copybuf)
        return rc_error_set(err, RC_ENOMEM, "out of memory for the extractor");
    rc = rc_tar_reader_new(src, &x->lim, &x->r, err);
    return rc < 0 ? rc : 0;
}

static int extract_all(extractor *x, const rc_tar_dir *ensure, size_t n_ensure, rc_error *err)
{
    const rc_tar_entry *e;
    char sh[100];
    int rc;

    while ((rc = rc_tar_next(x->r, &e, err)) > 0) {
        x->st.entries++;
        rc = extract_entry(x, e, err);
        if (rc < 0) {
            char ctx[160];
            snprintf(ctx, sizeof ctx, "entry %llu ('%s')", (unsigned long long)e->index,
                     shown(e->path, sh));
            return rc_error_wrap(err, RC_EINVAL, ctx);
        }
    }
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n_ensure; i++)
        if ((rc = ensure_dir(x, &ensure[i], err)) < 0)
            return rc_error_wrap(err, RC_EIO, "mount point");
    cache_drop(x);
    return finalise(x, err);
}

int rc_tar_extract(const rc_tar_source *src, int root_fd, const rc_tar_limits *limits,
                   const rc_tar_dir *ensure_dirs, size_t n_ensure_dirs, rc_tar_stats *ret_stats,
                   rc_error *err)
{
    extractor x;
    int rc = extractor_init(&x, src, root_fd, limits, err);
    if (rc == 0)
        rc = extract_all(&x, ensure_dirs, n_ensure_dirs, err);
    if (rc == 0 && ret_stats)
        *ret_stats = x.st;
    rc_tar_reader_free(x.r);
    extractor_done(&x);
    return rc;
}

/* ---- removal ------------------------------------------------------------------------------ */

static int remove_children(int fd, dev_t dev, uint32_t depth, rc_error *err);

/* A directory that is the root of a mount (or on another filesystem) is never descended into:
 * a bundle removed while a snapshot is still bind-mounted in it must not take the snapshot's
 * files with it. */
static int check_not_mount(int fd, dev_t dev, const struct stat *st, rc_error *err)
{
    struct statx sx;
    if (st->st_dev != dev)
        return rc_error_set(err, RC_EINVAL, "refusing to remove across a filesystem boundary");
    if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &sx) == 0 &&
        (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
        (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
        return rc_error_set(err, RC_EINVAL, "refusing to remove a mount point (unmount it first)");
    return 0;
}

static int remove_at(int dfd, const char *name, dev_t dev, uint32_t depth, rc_error *err)
{
    struct stat st;
    _cleanup_close_ int fd = -1;
    int rc;

    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : rc_error_sys(err, RC_EIO, "cannot inspect a tree entry");
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
            return rc_error_sys(err, RC_EIO, "cannot remove a tree entry");
        return 0;
    }
    if (depth > 4096)
        return rc_error_set(err, RC_EINVAL, "tree too deep to remove");
    fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : rc_error_sys(err, RC_EIO, "cannot open a tree directory");
    if ((rc = check_not_mount(fd, depth == 0 ? st.st_dev : dev, &st, err)) < 0)
        return rc;
    /* Read-only directories (the extractor's) must become writable before their entries go. */
    if ((st.st_mode & 0700) != 0700 && fchmod(fd, 0700) < 0)
        return rc_error_sys(err, RC_EIO, "cannot make a directory writable for removal");
    if ((rc = remove_children(fd, st.st_dev, depth, err)) < 0)
        return rc;
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return rc_error_sys(err, RC_EIO, "cannot remove a tree directory");
    return 0;
}

static int remove_children(int fd, dev_t dev, uint32_t depth, rc_error *err)
{
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3), rc = 0;
    struct dirent *de;
    DIR *d;

    if (dfd < 0)
        return rc_error_sys(err, RC_EIO, "dup");
    d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return rc_error_sys(err, RC_EIO, "cannot read a directory");
    }
    while (rc == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = remove_at(fd, de->d_name, dev, depth + 1, err);
    }
    closedir(d);
    return rc;
}

int rc_tar_remove_tree(int dir_fd, const char *name, rc_error *err)
{
    return remove_at(dir_fd, name, 0, 0, err);
}
