/* zip.c - the strict zip reader behind skill archives (see zip.h for the rules).
 *
 * Two passes over the central directory: the first checks every entry (signature, flags,
 * method, sizes against the caps, the local header and the data range, the name) without
 * writing anything, so a bomb or a hostile name refuses the archive before a byte lands; the
 * second writes. The whole archive is a byte range in memory, so every offset is checked against
 * its length with overflow-safe arithmetic before it is read. */
#include "zip.h"

#include "cleanup.h"
#include "fsio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define SIG_LOCAL    0x04034b50U
#define SIG_CENTRAL  0x02014b50U
#define SIG_EOCD     0x06054b50U
#define SIG_Z64_LOC  0x07064b50U
#define EOCD_SIZE    22
#define CENTRAL_SIZE 46
#define LOCAL_SIZE   30
#define HOST_UNIX    3
#define FLAG_ENCRYPT 0x0001U
#define FLAG_STRONG  0x0040U
#define METHOD_STORE 0
#define METHOD_DEFL  8
#define CHUNK        (64 * 1024)

void rc_zip_limits_resolve(const rc_zip_limits *in, rc_zip_limits *ret)
{
    rc_zip_limits l = in ? *in : (rc_zip_limits){0};
    if (!l.max_total_bytes)
        l.max_total_bytes = RC_ZIP_DEFAULT_MAX_TOTAL_BYTES;
    if (!l.max_file_bytes)
        l.max_file_bytes = RC_ZIP_DEFAULT_MAX_FILE_BYTES;
    if (!l.max_entries)
        l.max_entries = RC_ZIP_DEFAULT_MAX_ENTRIES;
    if (!l.max_path_len)
        l.max_path_len = RC_ZIP_DEFAULT_MAX_PATH_LEN;
    if (!l.max_depth)
        l.max_depth = RC_ZIP_DEFAULT_MAX_DEPTH;
    *ret = l;
}

int rc_zip_is_zip(const void *data, size_t len)
{
    return len >= 4 && memcmp(data, "PK\x03\x04", 4) == 0;
}

static uint16_t rd16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---- names -------------------------------------------------------------------------------- */

int rc_zip_name_normalize(const char *name, size_t len, const rc_zip_limits *limits, char *out,
                          size_t outsz, rc_error *err)
{
    rc_zip_limits l;
    size_t o = 0, i = 0;
    uint32_t depth = 0;

    rc_zip_limits_resolve(limits, &l);
    if (len > l.max_path_len)
        return rc_error_set(err, RC_EINVAL, "name longer than %u bytes", l.max_path_len);
    if (outsz <= len)
        return rc_error_set(err, RC_EINVAL, "name buffer too small");
    if (memchr(name, '\0', len))
        return rc_error_set(err, RC_EINVAL, "name contains a NUL byte");
    if (memchr(name, '\\', len))
        return rc_error_set(err, RC_EINVAL, "name contains a backslash");
    if (len > 0 && name[0] == '/')
        return rc_error_set(err, RC_EINVAL, "absolute name");
    while (i < len) {
        size_t start = i, n;
        while (i < len && name[i] != '/')
            i++;
        n = i - start;
        if (i < len)
            i++; /* the '/' */
        if (n == 0 || (n == 1 && name[start] == '.'))
            continue;
        if (n == 2 && name[start] == '.' && name[start + 1] == '.')
            return rc_error_set(err, RC_EINVAL, "name has a '..' component");
        if (n > NAME_MAX)
            return rc_error_set(err, RC_EINVAL, "name component longer than %d bytes", NAME_MAX);
        if (++depth > l.max_depth)
            return rc_error_set(err, RC_EINVAL, "name deeper than %u components", l.max_depth);
        if (o > 0)
            out[o++] = '/';
        memcpy(out + o, name + start, n);
        o += n;
    }
    out[o] = '\0';
    return o > 0 ? 1 : 0;
}

/* ---- the central directory ---------------------------------------------------------------- */

typedef struct zip_archive {
    const unsigned char *p;
    size_t len;
    size_t cd_off, cd_size; /* central directory range */
    uint32_t n_entries;
} zip_archive;

enum entry_kind { KIND_FILE, KIND_DIR, KIND_SKIP };

typedef struct zip_entry {
    uint32_t index; /* 1-based, for messages */
    const char *name;
    size_t name_len;
    char path[PATH_MAX];
    int is_path; /* 0 for the root entry */
    enum entry_kind kind;
    bool exec;
    uint16_t method;
    uint32_t crc;
    uint64_t csize, usize;
    size_t data_off;
    size_t next; /* offset of the next central record */
} zip_entry;

static int find_eocd(zip_archive *z, rc_error *err)
{
    size_t min_start = z->len > EOCD_SIZE + 0xffff ? z->len - EOCD_SIZE - 0xffff : 0;
    const unsigned char *e;

    if (z->len < EOCD_SIZE)
        return rc_error_set(err, RC_EPARSE, "zip: too short for an end of central directory");
    for (size_t off = z->len - EOCD_SIZE + 1; off-- > min_start;) {
        e = z->p + off;
        if (rd32(e) != SIG_EOCD || (size_t)rd16(e + 20) != z->len - off - EOCD_SIZE)
            continue;
        if (rd16(e + 4) != 0 || rd16(e + 6) != 0 || rd16(e + 8) != rd16(e + 10))
            return rc_error_set(err, RC_EPARSE, "zip: multi-disk archives are not supported");
        if (rd16(e + 10) == 0xffff || rd32(e + 12) == 0xffffffffU || rd32(e + 16) == 0xffffffffU ||
            (off >= 20 && rd32(z->p + off - 20) == SIG_Z64_LOC))
            return rc_error_set(err, RC_EPARSE, "zip: zip64 archives are not supported");
        z->n_entries = rd16(e + 10);
        z->cd_size = rd32(e + 12);
        z->cd_off = rd32(e + 16);
        if (z->cd_off > off || z->cd_size > off - z->cd_off)
            return rc_error_set(err, RC_EPARSE, "zip: central directory outside the archive");
        return 0;
    }
    return rc_error_set(err, RC_EPARSE, "zip: no end of central directory record");
}

static int classify(zip_entry *ze, uint16_t made_by, uint32_t ext_attr)
{
    bool slash = ze->name_len > 0 && ze->name[ze->name_len - 1] == '/';
    ze->exec = false;
    if ((made_by >> 8) == HOST_UNIX && (ext_attr >> 16) != 0) {
        uint32_t mode = ext_attr >> 16;
        switch (mode & S_IFMT) {
        case S_IFDIR:
            ze->kind = KIND_DIR;
            return 0;
        case S_IFREG:
            ze->kind = slash ? KIND_DIR : KIND_FILE;
            ze->exec = (mode & 0111) != 0;
            return 0;
        case 0: /* permission bits only: a regular file by the name */
            ze->kind = slash ? KIND_DIR : KIND_FILE;
            ze->exec = (mode & 0111) != 0;
            return 0;
        default:
            ze->kind = KIND_SKIP; /* symlink, device, FIFO, socket */
            return 0;
        }
    }
    ze->kind = (slash || (ext_attr & 0x10)) ? KIND_DIR : KIND_FILE;
    return 0;
}

/* Check the local header of ze against the central record and locate the data. */
static int check_local(const zip_archive *z, zip_entry *ze, size_t local_off, rc_error *err)
{
    const unsigned char *lh;
    size_t data_off;

    if (local_off > z->cd_off || z->cd_off - local_off < LOCAL_SIZE)
        return rc_error_set(err, RC_EPARSE, "zip entry %u: local header outside the data area",
                            ze->index);
    lh = z->p + local_off;
    if (rd32(lh) != SIG_LOCAL)
        return rc_error_set(err, RC_EPARSE, "zip entry %u: bad local header signature", ze->index);
    data_off = local_off + LOCAL_SIZE + rd16(lh + 26) + rd16(lh + 28);
    if (rd16(lh + 26) != ze->name_len || data_off > z->cd_off ||
        memcmp(lh + LOCAL_SIZE, ze->name, ze->name_len) != 0)
        return rc_error_set(err, RC_EPARSE,
                            "zip entry %u: local header disagrees with the central directory",
                            ze->index);
    if (ze->csize > z->cd_off - data_off)
        return rc_error_set(err, RC_EPARSE, "zip entry %u: data runs into the central directory",
                            ze->index);
    ze->data_off = data_off;
    return 0;
}

static int check_sizes(zip_entry *ze, const rc_zip_limits *l, uint64_t *total, rc_error *err)
{
    if (ze->kind != KIND_FILE)
        return 0;
    if (ze->method != METHOD_STORE && ze->method != METHOD_DEFL)
        return rc_error_set(err, RC_EINVAL, "zip entry %u: compression method %u not supported",
                            ze->index, ze->method);
    if (ze->method == METHOD_STORE && ze->csize != ze->usize)
        return rc_error_set(err, RC_EPARSE, "zip entry %u: stored sizes differ", ze->index);
    if (ze->usize > l->max_file_bytes)
        return rc_error_set(err, RC_ETOOBIG, "zip entry %u: %llu bytes, over the %llu-byte cap",
                            ze->index, (unsigned long long)ze->usize,
                            (unsigned long long)l->max_file_bytes);
    *total += ze->usize;
    if (*total > l->max_total_bytes)
        return rc_error_set(err, RC_ETOOBIG, "zip: more than %llu bytes uncompressed in total",
                            (unsigned long long)l->max_total_bytes);
    return 0;
}

/* Parse the central record at off into ze (everything checked except the caps). */
static int read_central(const zip_archive *z, size_t off, const rc_zip_limits *l, zip_entry *ze,
                        rc_error *err)
{
    size_t end = z->cd_off + z->cd_size, rec;
    const unsigned char *c;
    uint16_t flags;
    rc_error why = {0};
    int rc;

    if (off > end || end - off < CENTRAL_SIZE || rd32(z->p + off) != SIG_CENTRAL)
        return rc_error_set(err, RC_EPARSE, "zip entry %u: bad central directory record",
                            ze->index);
    c = z->p + off;
    rec = (size_t)CENTRAL_SIZE + rd16(c + 28) + rd16(c + 30) + rd16(c + 32);
    if (rec > end - off)
        return rc_error_set(err, RC_EPARSE, "zip entry %u: record overruns the directory",
                            ze->index);
    flags = rd16(c + 8);
    if (flags & (FLAG_ENCRYPT | FLAG_STRONG))
        return rc_error_set(err, RC_EINVAL, "zip entry %u: encrypted entries are not supported",
                            ze->index);
    ze->method = rd16(c + 10);
    ze->crc = rd32(c + 16);
    ze->csize = rd32(c + 20);
    ze->usize = rd32(c + 24);
    if (ze->csize == 0xffffffffU || ze->usize == 0xffffffffU || rd32(c + 42) == 0xffffffffU ||
        rd16(c + 34) == 0xffff)
        return rc_error_set(err, RC_EPARSE, "zip entry %u: zip64 entries are not supported",
                            ze->index);
    if (rd16(c + 34) != 0)
        return rc_error_set(err, RC_EPARSE, "zip entry %u: on another disk", ze->index);
    ze->name = (const char *)c + CENTRAL_SIZE;
    ze->name_len = rd16(c + 28);
    ze->next = off + rec;
    rc = rc_zip_name_normalize(ze->name, ze->name_len, l, ze->path, sizeof ze->path, &why);
    if (rc < 0)
        return rc_error_set(err, RC_EINVAL, "zip entry %u refused: %s", ze->index, why.msg);
    ze->is_path = rc;
    classify(ze, rd16(c + 4), rd32(c + 38));
    if (!ze->is_path)
        ze->kind = KIND_SKIP; /* the root itself */
    if (ze->kind != KIND_FILE)
        return 0;
    return check_local(z, ze, rd32(c + 42), err);
}

/* ---- writing ------------------------------------------------------------------------------ */

static int make_dir(int root_fd, zip_entry *ze, rc_error *err)
{
    const char *leaf;
    _cleanup_close_ int parent = rc_fs_open_parent(root_fd, ze->path, 0755, &leaf, err);
    struct stat st;

    if (parent < 0)
        return parent;
    if (mkdirat(parent, leaf, 0755) == 0)
        return 0;
    if (errno == EEXIST && fstatat(parent, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISDIR(st.st_mode))
        return 0;
    return rc_error_sys(err, RC_EIO, "zip entry %u: cannot create directory %s", ze->index,
                        ze->path);
}

static void inflate_endp(z_stream *s)
{
    inflateEnd(s);
}

static int inflate_to(int fd, const zip_archive *z, const zip_entry *ze, uLong *crc, rc_error *err)
{
    _cleanup_free_ unsigned char *out = malloc(CHUNK);
    _cleanup_(inflate_endp) z_stream s = {0};
    const unsigned char *in = z->p + ze->data_off;
    uint64_t in_left = ze->csize, written = 0;
    int zr = Z_OK, rc;

    if (!out || inflateInit2(&s, -MAX_WBITS) != Z_OK)
        return rc_error_set(err, RC_ENOMEM, "cannot start inflate");
    while (zr != Z_STREAM_END) {
        uInt feed = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
        if (s.avail_in == 0) {
            s.next_in = (Bytef *)(uintptr_t)in;
            s.avail_in = feed;
            in += feed;
            in_left -= feed;
        }
        s.next_out = out;
        s.avail_out = CHUNK;
        zr = inflate(&s, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END && !(zr == Z_BUF_ERROR && s.avail_out == 0))
            return rc_error_set(err, RC_EPARSE, "zip entry %u (%s): corrupt deflate data",
                                ze->index, ze->path);
        size_t got = CHUNK - s.avail_out;
        if (got == 0 && zr != Z_STREAM_END && s.avail_in == 0 && in_left == 0)
            return rc_error_set(err, RC_EPARSE, "zip entry %u (%s): deflate data ends early",
                                ze->index, ze->path);
        written += got;
        if (written > ze->usize)
            return rc_error_set(err, RC_EPARSE, "zip entry %u (%s): inflates past its size",
                                ze->index, ze->path);
        *crc = crc32(*crc, out, (uInt)got);
        if ((rc = rc_fd_write_all(fd, out, got, NULL, err)) < 0)
            return rc;
    }
    if (written != ze->usize || s.avail_in != 0 || in_left != 0)
        return rc_error_set(err, RC_EPARSE, "zip entry %u (%s): size does not match", ze->index,
                            ze->path);
    return 0;
}

/* Write and check the data of ze into fd. */
static int fill_file(int fd, const zip_archive *z, zip_entry *ze, rc_error *err)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    int rc;

    if (ze->method == METHOD_STORE) {
        const unsigned char *d = z->p + ze->data_off;
        for (uint64_t off = 0; off < ze->usize; off += CHUNK) {
            uInt n = ze->usize - off > CHUNK ? CHUNK : (uInt)(ze->usize - off);
            crc = crc32(crc, d + off, n);
        }
        rc = rc_fd_write_all(fd, d, ze->usize, NULL, err);
    } else {
        rc = inflate_to(fd, z, ze, &crc, err);
    }
    if (rc < 0)
        return rc;
    if (crc != ze->crc)
        return rc_error_set(err, RC_EPARSE, "zip entry %u (%s): CRC-32 mismatch", ze->index,
                            ze->path);
    if (fchmod(fd, ze->exec ? 0755 : 0644) < 0)
        return rc_error_sys(err, RC_EIO, "zip entry %u: chmod", ze->index);
    return 0;
}

/* Create the file O_EXCL (a duplicate name is an error) and fill it; a file that fails its
 * checks is unlinked, so the tree only ever holds checked files. */
static int make_file(int root_fd, const zip_archive *z, zip_entry *ze, rc_error *err)
{
    const char *leaf;
    _cleanup_close_ int parent = rc_fs_open_parent(root_fd, ze->path, 0755, &leaf, err);
    _cleanup_close_ int fd = -1;
    int rc;

    if (parent < 0)
        return parent;
    fd = openat(parent, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST)
        return rc_error_set(err, RC_EINVAL, "zip entry %u: %s appears twice", ze->index, ze->path);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "zip entry %u: cannot create %s", ze->index, ze->path);
    if ((rc = fill_file(fd, z, ze, err)) < 0)
        unlinkat(parent, leaf, 0);
    return rc;
}

/* ---- extraction --------------------------------------------------------------------------- */

/* One pass over the directory; with root_fd < 0 it only checks. */
static int walk(const zip_archive *z, const rc_zip_limits *l, int root_fd, rc_zip_stats *st,
                rc_error *err)
{
    _cleanup_free_ zip_entry *ze = calloc(1, sizeof *ze);
    size_t off = z->cd_off;
    uint64_t total = 0;
    int rc;

    if (!ze)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < z->n_entries; i++) {
        memset(ze, 0, sizeof *ze);
        ze->index = i + 1;
        if ((rc = read_central(z, off, l, ze, err)) < 0 ||
            (rc = check_sizes(ze, l, &total, err)) < 0)
            return rc;
        off = ze->next;
        st->entries++;
        if (ze->kind == KIND_SKIP) {
            st->skipped++;
            continue;
        }
        if (root_fd < 0)
            continue;
        rc = ze->kind == KIND_DIR ? make_dir(root_fd, ze, err) : make_file(root_fd, z, ze, err);
        if (rc < 0)
            return rc;
        if (ze->kind == KIND_DIR)
            st->dirs++;
        else
            st->files++, st->bytes += ze->usize;
    }
    if (root_fd < 0 && off != z->cd_off + z->cd_size)
        return rc_error_set(err, RC_EPARSE, "zip: central directory size does not match");
    return 0;
}

int rc_zip_extract(const void *data, size_t len, int root_fd, const rc_zip_limits *limits,
                   rc_zip_stats *ret_stats, rc_error *err)
{
    zip_archive z = {.p = data, .len = len};
    rc_zip_limits l;
    rc_zip_stats st = {0};
    int rc;

    rc_zip_limits_resolve(limits, &l);
    if (root_fd < 0)
        return rc_error_set(err, RC_EINVAL, "zip: no destination directory");
    if ((rc = find_eocd(&z, err)) < 0)
        return rc;
    if (z.n_entries > l.max_entries)
        return rc_error_set(err, RC_ETOOBIG, "zip: %u entries, over the cap of %u", z.n_entries,
                            l.max_entries);
    if ((rc = walk(&z, &l, -1, &st, err)) < 0)
        return rc;
    st = (rc_zip_stats){0};
    if ((rc = walk(&z, &l, root_fd, &st, err)) < 0)
        return rc;
    if (ret_stats)
        *ret_stats = st;
    return 0;
}
