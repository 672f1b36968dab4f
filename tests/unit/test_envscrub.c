/* test_envscrub.c - variables are wiped and removed by prefix; others are left alone. */
#include "envscrub.h"
#include "harness.h"

#include <stdlib.h>

TEST(removes_prefixed_and_keeps_others)
{
    static const char *const prefixes[] = {"ANTHROPIC_", "RUNCELL_"};
    setenv("ANTHROPIC_ENVIRONMENT_KEY", "sk-ant-oat01-secret", 1);
    setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:1", 1);
    setenv("RUNCELL_X", "y", 1);
    setenv("RC_TEST_KEEP", "kept", 1);
    setenv("XANTHROPIC_NOT_A_PREFIX", "kept", 1);
    CHECK_INT(rc_env_scrub_prefixes(prefixes, 2), 3);
    CHECK(getenv("ANTHROPIC_ENVIRONMENT_KEY") == NULL);
    CHECK(getenv("ANTHROPIC_BASE_URL") == NULL);
    CHECK(getenv("RUNCELL_X") == NULL);
    CHECK_STR(getenv("RC_TEST_KEEP"), "kept");
    CHECK_STR(getenv("XANTHROPIC_NOT_A_PREFIX"), "kept");
    CHECK_INT(rc_env_scrub_prefixes(prefixes, 2), 0);
}

TEST(value_is_wiped_in_place)
{
    static const char *const prefixes[] = {"ANTHROPIC_"};
    char *entry = strdup("ANTHROPIC_WORK_SECRET=abcdef");
    REQUIRE(entry != NULL);
    REQUIRE(putenv(entry) == 0); /* environ now points at our buffer */
    CHECK_INT(rc_env_scrub_prefixes(prefixes, 1), 1);
    CHECK(getenv("ANTHROPIC_WORK_SECRET") == NULL);
    CHECK(strstr(entry + 22, "abcdef") == NULL); /* the bytes that held the value are zero */
    free(entry);
}
