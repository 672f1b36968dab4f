/* test_buf.c - the bounded buffer: limits, unchanged state on failure, steal/consume. */
#include "buf.h"
#include "cleanup.h"
#include "harness.h"

#include <errno.h>
#include <stdint.h>

TEST(append_within_limit)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(8);
    CHECK_INT(rc_buf_append(&b, "abcd", 4, NULL), 0);
    CHECK_INT(rc_buf_append_str(&b, "efgh", NULL), 0);
    CHECK_INT(b.len, 8);
    CHECK_STR(rc_buf_cstr(&b), "abcdefgh");
}

TEST(append_over_limit_fails_and_keeps_content)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(5);
    rc_error err = {0};
    CHECK_INT(rc_buf_append(&b, "abc", 3, NULL), 0);
    CHECK_INT(rc_buf_append(&b, "def", 3, &err), -RC_ETOOBIG);
    CHECK_INT(err.code, RC_ETOOBIG);
    CHECK(strstr(err.msg, "5 bytes") != NULL);
    CHECK_INT(b.len, 3);
    CHECK_STR(rc_buf_cstr(&b), "abc");
    CHECK_INT(rc_buf_putc(&b, 'x', NULL), 0);
    CHECK_INT(rc_buf_putc(&b, 'y', NULL), 0);
    CHECK_INT(rc_buf_putc(&b, 'z', NULL), -RC_ETOOBIG);
}

TEST(zero_max_rejects_everything)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(0);
    CHECK_INT(rc_buf_append(&b, "a", 1, NULL), -RC_ETOOBIG);
    CHECK_STR(rc_buf_cstr(&b), "");
    CHECK_INT(rc_buf_append(&b, "", 0, NULL), 0);
}

TEST(huge_length_does_not_overflow)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(16);
    CHECK_INT(rc_buf_append(&b, "a", 1, NULL), 0);
    CHECK_INT(rc_buf_reserve(&b, SIZE_MAX, NULL), -RC_ETOOBIG);
    CHECK_INT(rc_buf_reserve(&b, SIZE_MAX - 1, NULL), -RC_ETOOBIG);
    CHECK_INT(b.len, 1);
}

TEST(appendf_respects_limit)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(10);
    CHECK_INT(rc_buf_appendf(&b, NULL, "%d-%s", 42, "ok"), 0);
    CHECK_STR(rc_buf_cstr(&b), "42-ok");
    CHECK_INT(rc_buf_appendf(&b, NULL, "%s", "toolongtext"), -RC_ETOOBIG);
    CHECK_STR(rc_buf_cstr(&b), "42-ok");
}

TEST(binary_data_and_consume)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(64);
    CHECK_INT(rc_buf_append(&b, "a\0b\0c", 5, NULL), 0);
    CHECK_INT(b.len, 5);
    rc_buf_consume(&b, 2);
    CHECK_MEM(b.data, b.len, "b\0c", 3);
    rc_buf_consume(&b, 100);
    CHECK_INT(b.len, 0);
    CHECK_STR(rc_buf_cstr(&b), "");
}

TEST(grows_across_many_appends)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(100000);
    for (int i = 0; i < 10000; i++)
        REQUIRE(rc_buf_append(&b, "0123456789", 10, NULL) == 0);
    CHECK_INT(b.len, 100000);
    CHECK_INT(rc_buf_putc(&b, 'x', NULL), -RC_ETOOBIG);
    CHECK(b.cap <= 100001);
}

TEST(steal_hands_over_and_empties)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(64);
    _cleanup_free_ char *s = NULL, *empty = NULL;
    size_t len = 0;
    CHECK_INT(rc_buf_append_str(&b, "hello", NULL), 0);
    CHECK_INT(rc_buf_steal(&b, &s, &len, NULL), 0);
    CHECK_STR(s, "hello");
    CHECK_INT(len, 5);
    CHECK(b.data == NULL && b.len == 0);
    CHECK_INT(rc_buf_steal(&b, &empty, NULL, NULL), 0);
    CHECK_STR(empty, "");
}

TEST(error_helpers)
{
    rc_error err = {0};
    CHECK_INT(rc_error_set(&err, RC_EPARSE, "bad %s", "thing"), -RC_EPARSE);
    CHECK_STR(err.msg, "bad thing");
    CHECK_INT(rc_error_wrap(&err, RC_EIO, "reading config"), -RC_EPARSE);
    CHECK_STR(err.msg, "reading config: bad thing");
    CHECK_STR(rc_errcode_name(-RC_ETOOBIG), "ETOOBIG");
    CHECK_STR(rc_errcode_name(9999), "EUNKNOWN");
    CHECK_INT(rc_error_set(NULL, RC_EIO, "x"), -RC_EIO);
    errno = ENOENT;
    CHECK_INT(rc_error_sys(&err, RC_EIO, "open %s", "f"), -RC_EIO);
    CHECK_INT(err.sys_errno, ENOENT);
    CHECK(strstr(err.msg, "open f: ") == err.msg);
}
