/* test_emulator_memory.c - the pure helpers of the emulator's memory stores (emulator/memory.c):
 * the memory path rule of protocol.md 16.1 (and the SDK's documentation of it), the list
 * path_prefix rule, and the mount-path slug of a store name. The HTTP behaviour is covered by
 * tests/integration/emulator_memory.sh. */
#include "em.h"
#include "harness.h"

#include <stdio.h>
#include <string.h>

static int path(const char *p)
{
    return rc_emmem_path_check(p, strlen(p), NULL);
}

static int prefix(const char *p)
{
    return rc_emmem_prefix_check(p, strlen(p), NULL);
}

TEST(path_accepts_plain_paths)
{
    CHECK_INT(path("/a"), 0);
    CHECK_INT(path("/notes/todo.md"), 0);
    CHECK_INT(path("/.anthropic-memory-store"), 0);
    CHECK_INT(path("/a/.hidden/..x/x.."), 0);
    CHECK_INT(path("/uni/\xc3\xa9t\xc3\xa9 \xe2\x9c\x93.md"), 0); /* "été ✓" */
    CHECK_INT(path("/with space/x"), 0);
}

TEST(path_refuses_bad_shapes)
{
    rc_error err = {0};
    CHECK_INT(path(""), -RC_EINVAL);
    CHECK_INT(path("/"), -RC_EINVAL);
    CHECK_INT(path("relative/a"), -RC_EINVAL);
    CHECK_INT(path("/a/"), -RC_EINVAL);
    CHECK_INT(path("//a"), -RC_EINVAL);
    CHECK_INT(path("/a//b"), -RC_EINVAL);
    CHECK_INT(path("/./a"), -RC_EINVAL);
    CHECK_INT(path("/a/.."), -RC_EINVAL);
    CHECK_INT(rc_emmem_path_check("/a\0b", 4, &err), -RC_EINVAL);
    CHECK(strstr(err.msg, "NUL") != NULL);
}

TEST(path_refuses_control_and_format_characters)
{
    CHECK_INT(path("/a\x01"), -RC_EINVAL);
    CHECK_INT(path("/and\ttab"), -RC_EINVAL);
    CHECK_INT(path("/a\x7f"), -RC_EINVAL);
    CHECK_INT(path("/a\xc2\x85"), -RC_EINVAL);         /* U+0085 NEL (Cc) */
    CHECK_INT(path("/a\xc2\xad"), -RC_EINVAL);         /* U+00AD soft hyphen (Cf) */
    CHECK_INT(path("/a\xe2\x80\x8b"), -RC_EINVAL);     /* U+200B zero width space */
    CHECK_INT(path("/a\xe2\x80\xa8"), -RC_EINVAL);     /* U+2028 line separator */
    CHECK_INT(path("/a\xe2\x80\xa9"), -RC_EINVAL);     /* U+2029 paragraph separator */
    CHECK_INT(path("/a\xe2\x80\xae"), -RC_EINVAL);     /* U+202E right-to-left override */
    CHECK_INT(path("/a\xef\xbb\xbf"), -RC_EINVAL);     /* U+FEFF byte order mark */
    CHECK_INT(path("/a\xf3\xa0\x80\x81"), -RC_EINVAL); /* U+E0001 language tag */
    CHECK_INT(path("/a\xff"), -RC_EINVAL);             /* not UTF-8 */
    CHECK_INT(path("/a\xed\xa0\x80"), -RC_EINVAL);     /* a surrogate */
}

TEST(path_limits)
{
    char p[1100];
    p[0] = '/';
    memset(p + 1, 'x', 1023);
    p[1024] = '\0';
    CHECK_INT(path(p), 0); /* 1024 bytes */
    p[1024] = 'x';
    p[1025] = '\0';
    CHECK_INT(path(p), -RC_EINVAL); /* 1025 bytes */
    for (int i = 0; i < 21; i++)
        snprintf(p + 2 * i, sizeof(p) - 2 * (size_t)i, "/s");
    CHECK_INT(path(p), -RC_EINVAL); /* 21 segments */
    p[40] = '\0';
    CHECK_INT(path(p), 0); /* 20 segments */
}

TEST(prefix_rule)
{
    CHECK_INT(prefix("/"), 0);
    CHECK_INT(prefix("/notes/"), 0);
    CHECK_INT(prefix("/a/b/"), 0);
    CHECK_INT(prefix("/notes"), -RC_EINVAL);
    CHECK_INT(prefix("notes/"), -RC_EINVAL);
    CHECK_INT(prefix("//"), -RC_EINVAL);
    CHECK_INT(prefix("/a/../"), -RC_EINVAL);
    CHECK_INT(prefix(""), -RC_EINVAL);
}

TEST(slug)
{
    char out[64];
    CHECK_INT(rc_emmem_slug("notes", out, sizeof(out)), 5);
    CHECK_STR(out, "notes");
    rc_emmem_slug("User Preferences", out, sizeof(out));
    CHECK_STR(out, "user-preferences");
    rc_emmem_slug("  --My   Notes!!  ", out, sizeof(out));
    CHECK_STR(out, "my-notes");
    rc_emmem_slug("caf\xc3\xa9 2026", out, sizeof(out));
    CHECK_STR(out, "caf-2026");
    CHECK_INT(rc_emmem_slug("\xe6\x97\xa5\xe6\x9c\xac", out, sizeof(out)), 0);
    CHECK_STR(out, "");
    /* truncation never leaves a trailing '-' */
    CHECK_INT(rc_emmem_slug("abc def", out, 5), 3);
    CHECK_STR(out, "abc");
    CHECK_INT(rc_emmem_slug("abc def", out, 6), 5);
    CHECK_STR(out, "abc-d");
    CHECK_INT(rc_emmem_slug("abc", out, 0), 0);
}
