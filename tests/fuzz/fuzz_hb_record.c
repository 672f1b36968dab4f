/* fuzz_hb_record.c - libFuzzer target for the API channel's heartbeat record (broker/apichan.c
 * rc_apichan_hb_record_*): the parser of a heartbeat answer (upstream bytes) and of the record
 * file (read back by the launcher's reconcile after a crash).
 *
 * Input: the first byte selects the mode, the rest is the text.
 *   even: parsed as a heartbeat answer; odd: parsed as a record.
 * Checks (abort on violation): whatever parses has a last_heartbeat of printable ASCII within
 * RC_APICHAN_HB_VALUE_MAX, a state of [a-z_] only and a TTL within bounds; formatting it succeeds
 * and parsing the formatted record gives the same record back. */
#include "apichan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static void check_shape(const rc_apichan_hb_record *r)
{
    size_t n = strlen(r->last_heartbeat);
    CHECK(n <= RC_APICHAN_HB_VALUE_MAX);
    for (size_t i = 0; i < n; i++)
        CHECK(r->last_heartbeat[i] >= 0x20 && r->last_heartbeat[i] <= 0x7e);
    for (const char *p = r->state; *p; p++)
        CHECK((*p >= 'a' && *p <= 'z') || *p == '_');
    CHECK(r->ttl_seconds >= 0 && r->ttl_seconds <= 10000000L);
    CHECK(r->at_ms >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    rc_apichan_hb_record rec, back;
    char buf[RC_APICHAN_HB_RECORD_MAX];
    int r = (data[0] & 1)
                ? rc_apichan_hb_record_parse(text, len, &rec, NULL)
                : rc_apichan_hb_record_from_answer(text, len, 1790000000000LL, &rec, NULL);
    if (r < 0)
        return 0;
    check_shape(&rec);
    int n = rc_apichan_hb_record_format(&rec, buf, sizeof buf, NULL);
    CHECK(n > 0 && (size_t)n < sizeof buf);
    CHECK(rc_apichan_hb_record_parse(buf, (size_t)n, &back, NULL) == 0);
    CHECK(strcmp(back.last_heartbeat, rec.last_heartbeat) == 0);
    CHECK(strcmp(back.state, rec.state) == 0);
    CHECK(back.ttl_seconds == rec.ttl_seconds && back.at_ms == rec.at_ms);
    return 0;
}
