/* harness.h - runcell's small unit-test harness.
 *
 * A test file defines tests with TEST(name) { ... } and links harness.c, which provides main().
 * Output is TAP-style, one line per test ("ok - suite.name", "not ok - suite.name",
 * "ok - suite.name # SKIP reason"), which tests/run.sh counts into the suite's final
 * "N passed, N failed" line. CHECK* records a failure and continues; REQUIRE* also returns. */
#ifndef RUNCELL_TEST_HARNESS_H
#define RUNCELL_TEST_HARNESS_H

#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef void (*rc_test_fn)(void);
void rc_test_register(const char *name, rc_test_fn fn);
void rc_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rc_test_skip(const char *reason);
/* Number of failures recorded so far in the current test. */
int rc_test_failures(void);

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void test_register_##name(void)                            \
    {                                                                                              \
        rc_test_register(#name, test_##name);                                                      \
    }                                                                                              \
    static void test_##name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            rc_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                                  \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            rc_test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);                                \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        if (_a != _b)                                                                              \
            rc_test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, _a, _b);            \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *_a = (a), *_b = (b);                                                           \
        if (!_a || !_b || strcmp(_a, _b) != 0)                                                     \
            rc_test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,                 \
                         _a ? _a : "(null)", _b ? _b : "(null)");                                  \
    } while (0)

#define CHECK_MEM(a, alen, b, blen)                                                                \
    do {                                                                                           \
        size_t _al = (alen), _bl = (blen);                                                         \
        if (_al != _bl || memcmp((a), (b), _al) != 0)                                              \
            rc_test_fail(__FILE__, __LINE__, "%s (%zu bytes) != %s (%zu bytes)", #a, _al, #b,      \
                         _bl);                                                                     \
    } while (0)

#define SKIP(reason)                                                                               \
    do {                                                                                           \
        rc_test_skip(reason);                                                                      \
        return;                                                                                    \
    } while (0)

#endif
