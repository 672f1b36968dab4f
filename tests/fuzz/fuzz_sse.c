/* fuzz_sse.c - the SSE parser under arbitrary bytes and chunkings.
 *
 * Input layout: byte 0 picks the event cap, bytes 1-2 seed the chunk sizes, byte 3 bounds them;
 * the rest is the stream. Invariants: no dispatched message exceeds the cap, both strings are
 * NUL-terminated, and feeding in chunks gives exactly the same messages (and the same final
 * result code) as feeding everything at once. */
#include "sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct digest {
    size_t max_event;
    size_t count;
    uint64_t hash;
} digest;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

static int on_message(const rc_sse_message *m, void *ctx, rc_error *err)
{
    digest *d = ctx;
    (void)err;

    if (m->event_len + m->data_len > d->max_event)
        abort();
    if (m->event[m->event_len] != '\0' || m->data[m->data_len] != '\0')
        abort();
    (void)rc_sse_action_name(rc_sse_classify(m));
    d->count++;
    d->hash = fnv(d->hash, &m->event_len, sizeof m->event_len);
    d->hash = fnv(d->hash, m->event, m->event_len);
    d->hash = fnv(d->hash, &m->data_len, sizeof m->data_len);
    d->hash = fnv(d->hash, m->data, m->data_len);
    return 0;
}

static int run(const uint8_t *s, size_t len, size_t max_event, unsigned seed, size_t max_chunk,
               digest *d)
{
    rc_sse_parser p = RC_SSE_PARSER_INIT;
    size_t pos = 0;
    int r = 0;

    *d = (digest){.max_event = max_event, .hash = 14695981039346656037ULL};
    if (rc_sse_init(&p, max_event, NULL) < 0)
        abort();
    while (pos < len) {
        size_t n = max_chunk ? (size_t)(rand_r(&seed) % (max_chunk + 1)) : len - pos;
        if (n > len - pos)
            n = len - pos;
        r = rc_sse_feed(&p, s + pos, n, on_message, d, NULL);
        if (r < 0)
            break;
        pos += n;
    }
    if (r < 0 && rc_sse_feed(&p, "\n", 1, on_message, d, NULL) != r)
        abort(); /* poisoned until reset */
    rc_sse_free(&p);
    return r < 0 ? r : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    digest whole, chunked;
    size_t max_event;
    unsigned seed;
    int r1, r2;

    if (size < 4)
        return 0;
    max_event = data[0] == 255 ? RC_SSE_DEFAULT_MAX_EVENT : (size_t)data[0] * 2 + 1;
    seed = (unsigned)data[1] << 8 | data[2];
    r1 = run(data + 4, size - 4, max_event, 0, 0, &whole);
    r2 = run(data + 4, size - 4, max_event, seed, (size_t)data[3] % 32 + 1, &chunked);
    if (r1 != r2 || whole.count != chunked.count || whole.hash != chunked.hash)
        abort();
    return 0;
}
