/* test_log.c - log lines are valid JSON with the context fields, and no secret ever reaches them.
 */
#include "cleanup.h"
#include "harness.h"
#include "log.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

/* Log through a pipe and return everything written (caller frees). */
struct capture {
    int rfd, wfd;
};

static int capture_start(struct capture *c, int level)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
    c->rfd = p[0];
    c->wfd = p[1];
    rc_log_init("test", level, c->wfd);
    return 0;
}

static char *capture_end(struct capture *c)
{
    static char data[1 << 20];
    ssize_t n = read(c->rfd, data, sizeof data - 1);
    rc_log_init("test", RC_LOG_INFO, 2);
    close(c->rfd);
    close(c->wfd);
    data[n > 0 ? n : 0] = '\0';
    return strdup(data);
}

TEST(line_is_json_with_context)
{
    struct capture c;
    _cleanup_free_ char *out = NULL;
    cJSON *j;
    REQUIRE(capture_start(&c, RC_LOG_DEBUG) == 0);
    rc_log_set_context("sesn_123", "work_456");
    rc_log_info("hello \"world\"\n\ttab %d", 7);
    rc_log_set_context(NULL, NULL);
    out = capture_end(&c);
    REQUIRE(out[strlen(out) - 1] == '\n');
    j = cJSON_Parse(out);
    REQUIRE(j != NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "level")), "info");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "component")), "test");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "session_id")), "sesn_123");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "work_id")), "work_456");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "msg")), "hello \"world\"\n\ttab 7");
    CHECK(cJSON_GetObjectItem(j, "ts") != NULL);
    cJSON_Delete(j);
}

TEST(context_omitted_when_unset_and_level_filters)
{
    struct capture c;
    _cleanup_free_ char *out = NULL;
    REQUIRE(capture_start(&c, RC_LOG_WARN) == 0);
    rc_log_info("dropped");
    rc_log_warn("kept");
    out = capture_end(&c);
    CHECK(strstr(out, "dropped") == NULL);
    CHECK(strstr(out, "kept") != NULL);
    CHECK(strstr(out, "session_id") == NULL);
}

TEST(registered_secret_never_reaches_log)
{
    const char *secret = "s3cr3t\"value/with+chars";
    struct capture c;
    _cleanup_free_ char *out = NULL;
    REQUIRE(rc_log_register_secret(secret, NULL) == 0);
    REQUIRE(capture_start(&c, RC_LOG_DEBUG) == 0);
    rc_log_error("token=%s and again %s", secret, secret);
    rc_log_set_context(secret, NULL); /* even misused as context it is not a message: */
    rc_log_set_context(NULL, NULL);
    out = capture_end(&c);
    CHECK(strstr(out, "s3cr3t") == NULL);
    CHECK(strstr(out, "value/with") == NULL);
    CHECK(strstr(out, "[REDACTED]") != NULL);
    rc_log_unregister_secret(secret);
}

TEST(known_token_patterns_redacted)
{
    char s[] = "key sk-ant-api03-AbC_dEf-123 hook whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw= "
               "hdr Authorization: bearer abc.def-ghi end";
    rc_redact(s);
    CHECK(strstr(s, "AbC_dEf") == NULL);
    CHECK(strstr(s, "MfKQ9r8") == NULL);
    CHECK(strstr(s, "abc.def") == NULL);
    CHECK(strstr(s, "sk-ant-[REDACTED]") != NULL);
    CHECK(strstr(s, "whsec_[REDACTED]") != NULL);
    CHECK(strstr(s, "end") != NULL);
}

TEST(short_secret_refused)
{
    rc_error err = {0};
    CHECK_INT(rc_log_register_secret("abc", &err), -RC_EINVAL);
    CHECK_INT(rc_log_register_secret(NULL, NULL), -RC_EINVAL);
}

TEST(secret_table_bounded)
{
    char v[32];
    int i, r = 0;
    for (i = 0; i < RC_LOG_SECRETS_MAX + 1 && r == 0; i++) {
        snprintf(v, sizeof v, "secret-%04d", i);
        r = rc_log_register_secret(v, NULL);
    }
    CHECK_INT(r, -RC_ETOOBIG);
    for (i = 0; i < RC_LOG_SECRETS_MAX + 1; i++) {
        snprintf(v, sizeof v, "secret-%04d", i);
        rc_log_unregister_secret(v);
    }
    CHECK_INT(rc_log_register_secret("secret-again", NULL), 0);
    rc_log_unregister_secret("secret-again");
}

TEST(long_message_truncated_still_json)
{
    struct capture c;
    _cleanup_free_ char *out = NULL;
    char *big = malloc(RC_LOG_LINE_MAX * 2);
    cJSON *j;
    REQUIRE(big != NULL);
    memset(big, '"', RC_LOG_LINE_MAX * 2 - 1);
    big[RC_LOG_LINE_MAX * 2 - 1] = '\0';
    REQUIRE(capture_start(&c, RC_LOG_DEBUG) == 0);
    rc_log_info("%s", big);
    out = capture_end(&c);
    free(big);
    j = cJSON_Parse(out);
    CHECK(j != NULL);
    cJSON_Delete(j);
}

static void *log_many(void *arg)
{
    for (int i = 0; i < 200; i++)
        rc_log_info("thread %s line %d", (const char *)arg, i);
    return NULL;
}

TEST(concurrent_lines_do_not_interleave)
{
    struct capture c;
    _cleanup_free_ char *out = NULL;
    pthread_t t1, t2;
    int lines = 0;
    REQUIRE(capture_start(&c, RC_LOG_DEBUG) == 0);
    pthread_create(&t1, NULL, log_many, "A");
    pthread_create(&t2, NULL, log_many, "B");
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    out = capture_end(&c);
    for (char *line = out, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        cJSON *j;
        *nl = '\0';
        j = cJSON_Parse(line);
        CHECK(j != NULL);
        cJSON_Delete(j);
        lines++;
    }
    CHECK_INT(lines, 400);
}

TEST(secret_straddling_the_length_cut_is_redacted)
{
    const char *secret = "SECRETVALUE-straddle-0123456789";
    struct capture c;
    _cleanup_free_ char *out = NULL;
    size_t pad = RC_LOG_LINE_MAX - 5; /* the secret starts before the cut */
    char *padding = malloc(pad + 1);
    REQUIRE(padding != NULL);
    memset(padding, 'a', pad);
    padding[pad] = '\0';
    REQUIRE(rc_log_register_secret(secret, NULL) == 0);
    REQUIRE(capture_start(&c, RC_LOG_DEBUG) == 0);
    rc_log_info("%s%s", padding, secret);
    out = capture_end(&c);
    free(padding);
    rc_log_unregister_secret(secret);
    CHECK(strstr(out, "SECRET") == NULL);
    CHECK(strstr(out, "...") != NULL);
}

TEST(secret_equal_to_the_marker_terminates)
{
    char s[] = "x [REDACTED] y";
    REQUIRE(rc_log_register_secret("[REDACTED]", NULL) == 0);
    rc_redact(s);
    rc_log_unregister_secret("[REDACTED]");
    CHECK_STR(s, "x [REDACTED] y");
}
