/* fuzz_session.c - the session tool runner algorithm (runner/session.c) under hostile events.
 *
 * Input: byte 0 holds flags (bit 0: the history list fails, bit 1: every other send fails with
 * a fatal 4xx, bit 2: sends fail transiently, bit 3: idle disabled), the rest is JSON: an
 * array whose first element is the history (an array of events) and whose other elements are
 * live events fed one by one, with a second history pass (a reconnect) in the middle.
 *
 * Invariants: every posted result pairs with the call type it answers (user.tool_result +
 * tool_use_id for agent.tool_use, user.custom_tool_result + custom_tool_use_id for
 * agent.custom_tool_use) and carries is_error; no call id is posted twice while sends succeed;
 * only owned names run; nothing leaks (ASan). */
#include "json.h"
#include "session.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POSTED 256

typedef struct fz {
    const cJSON *history;
    bool list_fails, fatal_sends, transient_sends;
    bool allow_repost; /* failed sends make re-execution legitimate */
    int sends;
    int64_t now;
    cJSON *calls; /* object: call id -> type, every call event seen anywhere */
    char *posted[MAX_POSTED];
    int nposted;
} fz;

static int fz_list(void *ud, rc_api_page_fn fn, void *fn_ud, rc_error *err)
{
    fz *f = ud;
    if (f->list_fails)
        return rc_error_set(err, RC_EHTTP, "list fails");
    return fn(f->history, fn_ud, err);
}

static void check_result(fz *f, const cJSON *ev)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(ev, "is_error");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(ev, "content");
    bool custom;
    const cJSON *id, *call;

    if (!cJSON_IsString(type) || !cJSON_IsBool(err) || !cJSON_IsArray(content) ||
        cJSON_GetArraySize(content) < 1)
        abort();
    custom = strcmp(type->valuestring, "user.custom_tool_result") == 0;
    if (!custom && strcmp(type->valuestring, "user.tool_result") != 0)
        abort();
    id = cJSON_GetObjectItemCaseSensitive(ev, custom ? "custom_tool_use_id" : "tool_use_id");
    if (!cJSON_IsString(id))
        abort();
    call = cJSON_GetObjectItemCaseSensitive(f->calls, id->valuestring);
    if (!cJSON_IsString(call))
        abort(); /* a result for an id that was never a call */
    if (strcmp(call->valuestring, "mixed") != 0 &&
        strcmp(call->valuestring, custom ? "agent.custom_tool_use" : "agent.tool_use") != 0)
        abort();
}

static int fz_send(void *ud, const cJSON *ev, int64_t deadline, rc_error *err)
{
    fz *f = ud;
    const cJSON *id;
    (void)deadline;
    f->sends++;
    check_result(f, ev);
    if (f->fatal_sends && f->sends % 2 == 0)
        return rc_error_set(err, RC_EFATAL, "400");
    if (f->transient_sends && f->sends % 3 != 0)
        return rc_error_set(err, RC_ESTATUS, "503");
    id = cJSON_GetObjectItemCaseSensitive(ev, "tool_use_id");
    if (!id)
        id = cJSON_GetObjectItemCaseSensitive(ev, "custom_tool_use_id");
    for (int i = 0; i < f->nposted && !f->allow_repost; i++)
        if (strcmp(f->posted[i], id->valuestring) == 0)
            abort(); /* answered twice */
    if (f->nposted < MAX_POSTED)
        f->posted[f->nposted++] = strdup(id->valuestring);
    return 0;
}

static int fz_run(void *ud, const cJSON *call, rc_tool_result *ret, rc_error *err)
{
    fz *f = ud;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(call, "name");
    cJSON *arr, *b;
    (void)err;
    if (!cJSON_IsString(name) ||
        (strcmp(name->valuestring, "bash") != 0 && strcmp(name->valuestring, "run_tests") != 0))
        return -RC_ENOTFOUND;
    f->now += 7;
    arr = cJSON_CreateArray();
    b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "text");
    cJSON_AddStringToObject(b, "text", name->valuestring[0] == 'b' ? "" : "ok");
    cJSON_AddItemToArray(arr, b);
    ret->content = arr;
    ret->is_error = (int)(f->now % 2);
    return 0;
}

static int fz_sleep(void *ud, int64_t ms)
{
    ((fz *)ud)->now += ms;
    return 0;
}

static int64_t fz_now(void *ud)
{
    return ((fz *)ud)->now;
}

/* Remember every call event's type by id; an id used by both call types is "mixed" (the first
 * one routed decides the pairing, which this harness does not model). */
static void note_calls(fz *f, const cJSON *evs)
{
    const cJSON *ev;
    cJSON_ArrayForEach(ev, evs)
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "type");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev, "id");
        if (!cJSON_IsString(t) || !cJSON_IsString(id) || !id->valuestring[0])
            continue;
        if (strcmp(t->valuestring, "agent.tool_use") != 0 &&
            strcmp(t->valuestring, "agent.custom_tool_use") != 0)
            continue;
        const cJSON *prev = cJSON_GetObjectItemCaseSensitive(f->calls, id->valuestring);
        if (prev && strcmp(prev->valuestring, t->valuestring) == 0)
            continue;
        if (prev)
            cJSON_DeleteItemFromObjectCaseSensitive(f->calls, id->valuestring);
        cJSON_AddStringToObject(f->calls, id->valuestring, prev ? "mixed" : t->valuestring);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const rc_json_limits lim = {.max_size = 65536, .max_depth = 16};
    rc_session_io io = {
        .list = fz_list, .send = fz_send, .run_tool = fz_run, .sleep = fz_sleep, .now_ms = fz_now};
    fz f = {0};
    cJSON *root = NULL;
    const cJSON *hist, *ev;
    rc_session *s = NULL;
    rc_session_config cfg = {.max_idle_ms = 1000, .send_window_ms = 10000};
    int i = 0;

    if (size < 1)
        return 0;
    f.list_fails = data[0] & 1;
    f.fatal_sends = data[0] & 2;
    f.transient_sends = data[0] & 4;
    if (data[0] & 8)
        cfg.max_idle_ms = 0;
    if (rc_json_parse((const char *)data + 1, size - 1, &lim, &root, NULL) < 0)
        return 0;
    hist = cJSON_GetArrayItem(root, 0);
    if (!cJSON_IsArray(root) || !cJSON_IsArray(hist))
        goto out;
    f.calls = cJSON_CreateObject();
    note_calls(&f, hist);
    note_calls(&f, root);
    f.history = hist;
    io.ud = &f;
    if (rc_session_new(&cfg, &io, &s, NULL) < 0)
        goto out;
    f.allow_repost = f.fatal_sends || f.transient_sends;
    rc_session_reconcile(s, NULL);
    cJSON_ArrayForEach(ev, root)
    {
        int64_t d;
        if (i++ == 0 || !cJSON_IsObject(ev))
            continue;
        if (rc_session_on_event(s, ev, NULL) == 1)
            break;
        if (i == 3)
            rc_session_reconcile(s, NULL);
        (void)rc_session_idle_deadline(s, &d);
    }
    rc_session_reconcile(s, NULL);
out:
    rc_session_free(s);
    for (int k = 0; k < f.nposted; k++)
        free(f.posted[k]);
    cJSON_Delete(f.calls);
    cJSON_Delete(root);
    return 0;
}
