/* test_fcgi_handoff.c - the fcgi <-> launcher hand-off protocol (fcgi/handoff.c): request and
 * answer encoding and decoding, validation of launch items (ids, secret alphabet and length),
 * version and op checks, sanitised reasons, and a real exchange over a SOCK_SEQPACKET pair
 * including a silent peer (timeout) and a closed one. */
#include "handoff.h"
#include "harness.h"
#include "json.h"
#include "webhook.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SECRET "eyJzZXNzaW9uc190b2tlbiI6InNrLWFudC1yZXEtVE9LRU4xMjMifQ"

static const rc_handoff_item item = {
    .work_id = "work_1", .session_id = "sesn_2", .environment_id = "env_3", .secret = SECRET};

TEST(request_roundtrip_launch)
{
    rc_buf b = RC_BUF_INIT(RC_HANDOFF_MSG_MAX);
    cJSON *tree = NULL;
    rc_handoff_request req;
    REQUIRE(rc_handoff_request_encode(RC_HANDOFF_OP_LAUNCH, &item, &b, NULL) == 0);
    CHECK_STR(b.data, "{\"v\":1,\"op\":\"launch\",\"work_id\":\"work_1\",\"session_id\":\"sesn_2\","
                      "\"environment_id\":\"env_3\",\"secret\":\"" SECRET "\"}");
    REQUIRE(rc_handoff_request_decode(b.data, b.len, &tree, &req, NULL) == 0);
    CHECK_INT(req.op, RC_HANDOFF_OP_LAUNCH);
    CHECK_STR(req.item.work_id, "work_1");
    CHECK_STR(req.item.session_id, "sesn_2");
    CHECK_STR(req.item.environment_id, "env_3");
    CHECK_STR(req.item.secret, SECRET);
    cJSON_Delete(tree);
    rc_buf_free(&b);
}

TEST(request_null_secret_and_simple_ops)
{
    rc_buf b = RC_BUF_INIT(RC_HANDOFF_MSG_MAX);
    rc_handoff_item it = item;
    cJSON *tree = NULL;
    rc_handoff_request req;
    it.secret = NULL;
    REQUIRE(rc_handoff_request_encode(RC_HANDOFF_OP_LAUNCH, &it, &b, NULL) == 0);
    REQUIRE(rc_handoff_request_decode(b.data, b.len, &tree, &req, NULL) == 0);
    CHECK(req.item.secret == NULL);
    cJSON_Delete(tree);
    enum rc_handoff_op ops[] = {RC_HANDOFF_OP_RESERVE, RC_HANDOFF_OP_RELEASE, RC_HANDOFF_OP_STATUS};
    for (int i = 0; i < 3; i++) {
        rc_buf_reset(&b);
        REQUIRE(rc_handoff_request_encode(ops[i], NULL, &b, NULL) == 0);
        REQUIRE(rc_handoff_request_decode(b.data, b.len, &tree, &req, NULL) == 0);
        CHECK_INT(req.op, ops[i]);
        cJSON_Delete(tree);
    }
    rc_buf_free(&b);
}

TEST(launch_item_validation)
{
    rc_buf b = RC_BUF_INIT(RC_HANDOFF_MSG_MAX);
    rc_handoff_item it = item;
    it.work_id = "work_1\",\"x\":\"";
    CHECK_INT(rc_handoff_request_encode(RC_HANDOFF_OP_LAUNCH, &it, &b, NULL), -RC_EINVAL);
    it = item;
    it.session_id = "sesn_../x";
    CHECK_INT(rc_handoff_request_encode(RC_HANDOFF_OP_LAUNCH, &it, &b, NULL), -RC_EINVAL);
    it = item;
    it.secret = "abc\"def";
    CHECK_INT(rc_handoff_request_encode(RC_HANDOFF_OP_LAUNCH, &it, &b, NULL), -RC_EINVAL);
    char *big = malloc(RC_WORKSECRET_MAX + 2);
    REQUIRE(big);
    memset(big, 'A', RC_WORKSECRET_MAX + 1);
    big[RC_WORKSECRET_MAX + 1] = '\0';
    it.secret = big;
    CHECK_INT(rc_handoff_request_encode(RC_HANDOFF_OP_LAUNCH, &it, &b, NULL), -RC_EINVAL);
    big[RC_WORKSECRET_MAX] = '\0';
    CHECK_INT(rc_handoff_request_encode(RC_HANDOFF_OP_LAUNCH, &it, &b, NULL), 0);
    free(big);
    CHECK_INT(rc_handoff_request_encode(RC_HANDOFF_OP_LAUNCH, NULL, &b, NULL), -RC_EINVAL);
    rc_buf_free(&b);
}

TEST(request_decode_refusals)
{
    const char *bad[] = {
        "",
        "[]",
        "{\"op\":\"reserve\"}",
        "{\"v\":2,\"op\":\"reserve\"}",
        "{\"v\":1,\"op\":\"explode\"}",
        "{\"v\":1,\"op\":\"launch\",\"work_id\":\"work_1\"}",
        "{\"v\":1,\"op\":\"launch\",\"work_id\":\"work_1\",\"session_id\":\"sesn_1\","
        "\"environment_id\":\"env_1\",\"secret\":5}",
        "{\"v\":1,\"op\":\"launch\",\"work_id\":\"job_1\",\"session_id\":\"sesn_1\","
        "\"environment_id\":\"env_1\",\"secret\":null}",
        "{\"v\":1,\"v\":1,\"op\":\"reserve\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cJSON *tree = NULL;
        rc_handoff_request req;
        CHECK(rc_handoff_request_decode(bad[i], strlen(bad[i]), &tree, &req, NULL) < 0);
        CHECK(tree == NULL);
    }
}

TEST(answer_roundtrip)
{
    rc_buf b = RC_BUF_INIT(1024);
    rc_handoff_answer a = rc_handoff_answer_make(RC_HANDOFF_OK, NULL), d;
    a.active = 3;
    a.capacity = 8;
    a.reserved = 0;
    REQUIRE(rc_handoff_answer_encode(&a, &b, NULL) == 0);
    CHECK_STR(b.data, "{\"status\":\"ok\",\"active\":3,\"capacity\":8,\"reserved\":0}");
    REQUIRE(rc_handoff_answer_decode(b.data, b.len, &d, NULL) == 0);
    CHECK_INT(d.status, RC_HANDOFF_OK);
    CHECK_INT(d.active, 3);
    CHECK_INT(d.capacity, 8);
    CHECK_INT(d.reserved, 0);
    rc_buf_reset(&b);
    a = rc_handoff_answer_make(RC_HANDOFF_REFUSED, "bad \"item\"\n\\");
    REQUIRE(rc_handoff_answer_encode(&a, &b, NULL) == 0);
    REQUIRE(rc_handoff_answer_decode(b.data, b.len, &d, NULL) == 0);
    CHECK_INT(d.status, RC_HANDOFF_REFUSED);
    CHECK_STR(d.reason, "bad ?item???");
    CHECK_INT(d.active, -1);
    rc_buf_free(&b);
    CHECK(rc_handoff_answer_decode("{\"status\":\"maybe\"}", 18, &d, NULL) < 0);
    CHECK(rc_handoff_answer_decode("{\"status\":\"ok\",\"active\":-2}", 27, &d, NULL) < 0);
    CHECK(rc_handoff_answer_decode("nope", 4, &d, NULL) < 0);
}

/* A peer that answers each request with the given answer (or stays silent / closes). */
struct peer {
    int fd;
    int mode; /* 0 answer, 1 silent, 2 close */
    char got[512];
};

static void *peer_main(void *arg)
{
    struct peer *p = arg;
    rc_buf b = RC_BUF_INIT(RC_HANDOFF_MSG_MAX);
    rc_handoff_answer a = rc_handoff_answer_make(RC_HANDOFF_ACCEPTED, NULL);
    int n = rc_handoff_recv(p->fd, &b, NULL);
    if (n > 0)
        snprintf(p->got, sizeof p->got, "%s", b.data);
    if (p->mode == 0) {
        rc_buf_reset(&b);
        rc_handoff_answer_encode(&a, &b, NULL);
        rc_handoff_send(p->fd, &b, NULL);
    } else if (p->mode == 2) {
        close(p->fd);
        p->fd = -1;
    } else {
        usleep(600000);
    }
    rc_buf_free(&b);
    return NULL;
}

static int exchange(int mode, rc_handoff_answer *a, struct peer *p)
{
    int sv[2];
    pthread_t t;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    int r;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -1000;
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    *p = (struct peer){.fd = sv[1], .mode = mode};
    pthread_create(&t, NULL, peer_main, p);
    r = rc_handoff_call(sv[0], RC_HANDOFF_OP_LAUNCH, &item, a, NULL);
    pthread_join(t, NULL);
    close(sv[0]);
    if (p->fd >= 0)
        close(p->fd);
    return r;
}

TEST(exchange_over_seqpacket)
{
    rc_handoff_answer a;
    struct peer p;
    CHECK_INT(exchange(0, &a, &p), 0);
    CHECK_INT(a.status, RC_HANDOFF_ACCEPTED);
    CHECK(strstr(p.got, "\"secret\":\"" SECRET "\"") != NULL);
    CHECK_INT(exchange(1, &a, &p), -RC_ETIMEOUT);
    CHECK(exchange(2, &a, &p) < 0);
}

TEST(connect_failure)
{
    int fd = -1;
    rc_error err = {0};
    CHECK_INT(rc_handoff_connect("/nonexistent/launcher.sock", 100, &fd, &err), -RC_EIO);
    CHECK_INT(fd, -1);
    CHECK(strstr(err.msg, "connect") != NULL);
}
