/* fuzz_memory_path.c - libFuzzer target for the hand-written parsers of the emulator's memory
 * stores (emulator/memory.c): the memory path check (16.1: absolute, 1-20 segments, at most 1024
 * bytes, no empty, `.` or `..` segment, valid UTF-8 without control or format characters), the
 * list `path_prefix` check and the mount-path slug of a store name.
 *
 * Checks besides no crash, leak or overread: an accepted path really has every property the rule
 * promises (re-verified here the slow way); a prefix is accepted exactly when it is "/" or an
 * accepted path plus '/'; a slug holds only [a-z0-9-], never starts or ends with '-', never has
 * "--", and fits its buffer. */
#include "em.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static void check_accepted_path(const char *p, size_t n)
{
    size_t segs = 0, start = 1;
    CHECK(n >= 2 && n <= 1024 && p[0] == '/' && p[n - 1] != '/');
    CHECK(!memchr(p, '\0', n));
    CHECK(rc_emutil_utf8_valid(p, n));
    for (size_t i = 1; i <= n; i++) {
        if (i < n && p[i] != '/')
            continue;
        size_t sl = i - start;
        CHECK(sl > 0);
        CHECK(!(sl == 1 && p[start] == '.'));
        CHECK(!(sl == 2 && p[start] == '.' && p[start + 1] == '.'));
        segs++;
        start = i + 1;
    }
    CHECK(segs >= 1 && segs <= 20);
    for (size_t i = 0; i < n; i++)
        CHECK((unsigned char)p[i] >= 0x20 && (unsigned char)p[i] != 0x7F);
}

static void check_slug(const char *name, size_t outsz)
{
    char out[64];
    size_t n = rc_emmem_slug(name, out, outsz);
    if (outsz == 0) {
        CHECK(n == 0);
        return;
    }
    CHECK(n < outsz && strlen(out) == n);
    for (size_t i = 0; i < n; i++) {
        char ch = out[i];
        CHECK((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-');
        if (ch == '-')
            CHECK(i > 0 && i + 1 < n && out[i + 1] != '-');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *p = malloc(size + 2);
    rc_error err = {0};
    bool path_ok, prefix_ok;

    if (!p)
        return 0;
    memcpy(p, data, size);
    p[size] = '\0';
    path_ok = rc_emmem_path_check(p, size, &err) == 0;
    if (path_ok)
        check_accepted_path(p, size);
    else
        CHECK(err.msg[0] != '\0');

    /* the same bytes plus '/' as a prefix: accepted exactly when the path was (or it is "/") */
    p[size] = '/';
    p[size + 1] = '\0';
    prefix_ok = rc_emmem_prefix_check(p, size + 1, NULL) == 0;
    CHECK(prefix_ok == (path_ok || size == 0));
    CHECK(rc_emmem_prefix_check(p, size, NULL) != 0 || (size >= 1 && p[size - 1] == '/'));

    /* slugs of the input as a name, into buffers of every small size */
    p[size] = '\0';
    if (!memchr(data, '\0', size))
        for (size_t outsz = 0; outsz <= 64; outsz += 7)
            check_slug(p, outsz);
    free(p);
    return 0;
}
