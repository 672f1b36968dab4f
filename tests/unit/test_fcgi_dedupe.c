/* test_fcgi_dedupe.c - the webhook id table (fcgi/dedupe.c): new / in flight / done, forgetting
 * after a failed drain, expiry, the memory bound (eviction of the oldest done id, never of an
 * in-flight one), id length limits, and concurrent use. */
#include "dedupe.h"
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static rc_fcgi_dedupe *make(size_t cap, int64_t ttl)
{
    rc_fcgi_dedupe *d = NULL;
    return rc_fcgi_dedupe_new(cap, ttl, &d, NULL) == 0 ? d : NULL;
}

TEST(new_in_flight_done)
{
    rc_fcgi_dedupe *d = make(8, 1000);
    REQUIRE(d);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_1", 0, NULL), RC_FCGI_DEDUPE_NEW);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_1", 10, NULL), RC_FCGI_DEDUPE_IN_FLIGHT);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_2", 10, NULL), RC_FCGI_DEDUPE_NEW);
    rc_fcgi_dedupe_finish(d, "whe_1", true, 20);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_1", 30, NULL), RC_FCGI_DEDUPE_DONE);
    size_t in_flight = 99;
    CHECK_INT(rc_fcgi_dedupe_count(d, 30, &in_flight), 2);
    CHECK_INT(in_flight, 1);
    rc_fcgi_dedupe_free(d);
}

TEST(failed_drain_is_forgotten)
{
    rc_fcgi_dedupe *d = make(8, 1000);
    REQUIRE(d);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_x", 0, NULL), RC_FCGI_DEDUPE_NEW);
    rc_fcgi_dedupe_finish(d, "whe_x", false, 5);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_x", 6, NULL), RC_FCGI_DEDUPE_NEW);
    rc_fcgi_dedupe_finish(d, "unknown", true, 5); /* ignored */
    CHECK_INT(rc_fcgi_dedupe_count(d, 6, NULL), 1);
    rc_fcgi_dedupe_free(d);
}

TEST(done_expires_after_ttl)
{
    rc_fcgi_dedupe *d = make(4, 100);
    REQUIRE(d);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_e", 0, NULL), RC_FCGI_DEDUPE_NEW);
    rc_fcgi_dedupe_finish(d, "whe_e", true, 1000);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_e", 1099, NULL), RC_FCGI_DEDUPE_DONE);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_e", 1100, NULL), RC_FCGI_DEDUPE_NEW);
    rc_fcgi_dedupe_free(d);
}

TEST(in_flight_never_expires)
{
    rc_fcgi_dedupe *d = make(2, 10);
    REQUIRE(d);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_slow", 0, NULL), RC_FCGI_DEDUPE_NEW);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_slow", 1000000, NULL), RC_FCGI_DEDUPE_IN_FLIGHT);
    rc_fcgi_dedupe_free(d);
}

TEST(full_table_evicts_oldest_done)
{
    rc_fcgi_dedupe *d = make(3, 1000000);
    REQUIRE(d);
    const char *ids[] = {"whe_a", "whe_b", "whe_c"};
    for (int i = 0; i < 3; i++) {
        CHECK_INT(rc_fcgi_dedupe_begin(d, ids[i], i, NULL), RC_FCGI_DEDUPE_NEW);
        rc_fcgi_dedupe_finish(d, ids[i], true, 100 + i);
    }
    /* whe_a finished first, so it goes first. */
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_d", 200, NULL), RC_FCGI_DEDUPE_NEW);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_b", 200, NULL), RC_FCGI_DEDUPE_DONE);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_c", 200, NULL), RC_FCGI_DEDUPE_DONE);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_a", 200, NULL), RC_FCGI_DEDUPE_NEW); /* evicts b */
    CHECK_INT(rc_fcgi_dedupe_count(d, 200, NULL), 3);
    rc_fcgi_dedupe_free(d);
}

TEST(full_of_in_flight_refuses)
{
    rc_fcgi_dedupe *d = make(2, 1000);
    rc_error err = {0};
    REQUIRE(d);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_1", 0, NULL), RC_FCGI_DEDUPE_NEW);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_2", 0, NULL), RC_FCGI_DEDUPE_NEW);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_3", 0, &err), -RC_ETOOBIG);
    CHECK_INT(err.code, RC_ETOOBIG);
    /* Both stay in flight: nothing was evicted. */
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_1", 0, NULL), RC_FCGI_DEDUPE_IN_FLIGHT);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "whe_2", 0, NULL), RC_FCGI_DEDUPE_IN_FLIGHT);
    rc_fcgi_dedupe_free(d);
}

TEST(id_limits)
{
    rc_fcgi_dedupe *d = make(4, 1000);
    char id[RC_FCGI_DEDUPE_ID_MAX + 2];
    REQUIRE(d);
    CHECK_INT(rc_fcgi_dedupe_begin(d, "", 0, NULL), -RC_EINVAL);
    CHECK_INT(rc_fcgi_dedupe_begin(d, NULL, 0, NULL), -RC_EINVAL);
    memset(id, 'a', RC_FCGI_DEDUPE_ID_MAX);
    id[RC_FCGI_DEDUPE_ID_MAX] = '\0';
    CHECK_INT(rc_fcgi_dedupe_begin(d, id, 0, NULL), RC_FCGI_DEDUPE_NEW);
    CHECK_INT(rc_fcgi_dedupe_begin(d, id, 0, NULL), RC_FCGI_DEDUPE_IN_FLIGHT);
    id[RC_FCGI_DEDUPE_ID_MAX] = 'a';
    id[RC_FCGI_DEDUPE_ID_MAX + 1] = '\0';
    CHECK_INT(rc_fcgi_dedupe_begin(d, id, 0, NULL), -RC_EINVAL);
    rc_fcgi_dedupe_free(d);
    CHECK(make(0, 1) == NULL);
}

struct race {
    rc_fcgi_dedupe *d;
    int news;
};

static void *racer(void *arg)
{
    struct race *r = arg;
    char id[32];
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "whe_%d", i);
        if (rc_fcgi_dedupe_begin(r->d, id, 0, NULL) == RC_FCGI_DEDUPE_NEW) {
            r->news++;
            rc_fcgi_dedupe_finish(r->d, id, true, 0);
        }
    }
    return NULL;
}

TEST(concurrent_begin_each_id_new_once)
{
    struct race r[4];
    pthread_t t[4];
    rc_fcgi_dedupe *d = make(1024, 1000000);
    int total = 0;
    REQUIRE(d);
    for (int i = 0; i < 4; i++) {
        r[i] = (struct race){.d = d};
        pthread_create(&t[i], NULL, racer, &r[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += r[i].news;
    }
    CHECK_INT(total, 200);
    rc_fcgi_dedupe_free(d);
}
