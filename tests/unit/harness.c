/* harness.c - main() for unit-test binaries: runs every registered test (or those whose name
 * contains argv[1]) in registration order and prints one TAP-style line per test. */
#include "harness.h"

#include <stdarg.h>
#include <stdlib.h>

#define MAX_TESTS 512

static struct {
    const char *name;
    rc_test_fn fn;
} tests[MAX_TESTS];
static size_t ntests;
static int cur_failures;
static char cur_skip[256];

void rc_test_register(const char *name, rc_test_fn fn)
{
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "harness: too many tests\n");
        abort();
    }
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
}

void rc_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    cur_failures++;
    printf("#   %s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

void rc_test_skip(const char *reason)
{
    snprintf(cur_skip, sizeof cur_skip, "%s", reason);
}

int rc_test_failures(void)
{
    return cur_failures;
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    const char *suite = getenv("RC_TEST_SUITE");
    int failed = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < ntests; i++) {
        if (filter && !strstr(tests[i].name, filter))
            continue;
        cur_failures = 0;
        cur_skip[0] = '\0';
        tests[i].fn();
        if (cur_failures) {
            printf("not ok - %s.%s\n", suite ? suite : "unit", tests[i].name);
            failed++;
        } else if (cur_skip[0]) {
            printf("ok - %s.%s # SKIP %s\n", suite ? suite : "unit", tests[i].name, cur_skip);
        } else {
            printf("ok - %s.%s\n", suite ? suite : "unit", tests[i].name);
        }
    }
    return failed ? 1 : 0;
}
