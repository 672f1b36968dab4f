/* reconcile.c - make the host match the shims that are actually alive.
 *
 * Run by the daemon at start (after a crash or a restart of the launcher, a reboot, or a
 * kill -9 of anything) and each time a shim ends. A session whose lock is held has a live shim:
 * it is adopted (the daemon watches its pidfd and counts it against capacity). Any other trace of
 * a session - run dir, root-only work file, bundle, runc state - belongs to a shim that died
 * before its teardown: we take the session's lock (so a new shim of the same session waits for
 * us), force-stop the work item with the token kept in the work file - but only when the lease is
 * provably still ours (a heartbeat echoing the last_heartbeat the session's API channel recorded
 * answers 200; 409 on the stop is success) - keep the container's output like a normal end, then
 * delete the container and remove the bundle, the netns mount and the files. An item whose lease
 * ran out, or that the API re-queued or another host claimed meanwhile, is left alone: a work
 * item keeps its token when re-claimed, so a stop would kill the other host's live session. The
 * workspace is kept (marked ended) like at a normal end, for a later re-claim. */
#include "launcher.h"

#include "../broker/apichan.h"
#include "cleanup.h"
#include "log.h"
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long after the recorded lease end (record time + TTL) the lease counts as certainly
 * expired, whatever small skew there is between the record and this clock. */
#define LEASE_EXPIRED_MARGIN_MS 10000

static int64_t now_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Should the dead shim's item be force-stopped? Only when the lease can be shown to be still
 * ours: a heartbeat echoing the last recorded last_heartbeat answers 200. Without a record (the
 * runner never beat) or with a lease that has certainly run out, the API re-queues the item by
 * itself; a 412 (or 404/409/410) means it went back to the queue or to another worker, whose
 * live session a stop with our token (items keep their token when re-claimed) would kill. No
 * answer at all: stop, as before (the stop may still fail and is logged). */
static bool lease_still_ours(const rc_launcher_config *c, const char *sid, const char *env,
                             const char *work, const char *token)
{
    char path[RC_LAUNCHER_PATH_MAX];
    rc_apichan_hb_record rec;
    rc_error e = {0};
    long status = 0;
    int r;

    if ((r = rc_launcher_path(c, sid, RC_LP_HEARTBEAT, path, sizeof path, &e)) < 0 ||
        (r = rc_apichan_hb_record_read(path, &rec, &e)) < 0) {
        if (r == -RC_ENOTFOUND)
            rc_log_info("reconcile: work item %s has no heartbeat on record; not stopping it "
                        "(session %s; its lease lapses by itself)",
                        work, sid);
        else
            rc_log_warn("reconcile: work item %s has no readable heartbeat record (%s); not "
                        "stopping it (session %s; its lease lapses by itself)",
                        work, e.msg, sid);
        return false;
    }
    int64_t now = now_real_ms();
    if (rc_apichan_hb_record_expired(&rec, now, LEASE_EXPIRED_MARGIN_MS)) {
        rc_log_info("reconcile: work item %s: its lease ran out %lld s ago (ttl %ld s); not "
                    "stopping it (session %s; the API re-queues it)",
                    work, (long long)((now - rec.at_ms) / 1000 - rec.ttl_seconds), rec.ttl_seconds,
                    sid);
        return false;
    }
    r = rc_launcher_lease_check(c, env, work, token, rec.last_heartbeat, &status, &e);
    switch (r) {
    case RC_LAUNCHER_LEASE_OURS:
        return true;
    case RC_LAUNCHER_LEASE_LOST:
        rc_log_info("reconcile: work item %s was claimed again elsewhere (lease lost); not "
                    "stopping it (session %s, heartbeat answered %ld)",
                    work, sid, status);
        return false;
    case RC_LAUNCHER_LEASE_REFUSED:
        rc_log_info("reconcile: work item %s: the session token was refused (%ld; the item has "
                    "ended); not stopping it (session %s)",
                    work, status, sid);
        return false;
    default:
        rc_log_warn("reconcile %s: the lease of %s could not be checked (%s); stopping it", sid,
                    work, e.msg);
        return true;
    }
}

static void stop_item(const rc_launcher_config *c, const char *sid)
{
    char env[RC_LAUNCHER_SESSION_ID_MAX + 1], work[RC_LAUNCHER_SESSION_ID_MAX + 1];
    char *token = NULL;
    rc_error e = {0};
    int r = rc_launcher_work_read(c, sid, env, work, sizeof env, &token, &e);

    if (r == -RC_ENOTFOUND)
        return; /* never claimed by a shim, or already stopped */
    if (r < 0) {
        rc_log_error("reconcile %s: %s", sid, e.msg);
        return;
    }
    if (token)
        rc_log_register_secret(token, NULL);
    if (!token || lease_still_ours(c, sid, env, work, token)) {
        r = rc_launcher_force_stop(c, env, work, token, &e);
        if (r < 0)
            rc_log_error("reconcile %s: force-stop of %s failed: %s", sid, work, e.msg);
        else
            rc_log_info("reconcile %s: work item %s force-stopped", sid, work);
    }
    if (token)
        rc_log_unregister_secret(token);
    rc_worksecret_free(token);
}

/* Anything of the session on the host: run dir, work file, bundle, runc state, netns, the
 * session CA's files. */
static bool has_traces(const rc_launcher_config *c, const char *sid)
{
    static const int kinds[] = {RC_LP_RUN_SESSION, RC_LP_WORK, RC_LP_NETNS, RC_LP_TLS};
    char p[RC_LAUNCHER_PATH_MAX];
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (rc_launcher_path(c, sid, kinds[i], p, sizeof p, NULL) == 0 && access(p, F_OK) == 0)
            return true;
    snprintf(p, sizeof p, "%s/bundles/%s", c->state_dir, sid);
    if (access(p, F_OK) == 0)
        return true;
    snprintf(p, sizeof p, "%s/runc/%s", c->state_dir, sid);
    return access(p, F_OK) == 0;
}

int rc_launcher_reconcile_session(const rc_launcher_config *c, const char *sid, rc_error *err)
{
    char dir[RC_LAUNCHER_PATH_MAX];
    _cleanup_close_ int lock = -1;
    int r;

    if ((r = rc_launcher_path(c, sid, RC_LP_RUN_SESSION, dir, sizeof dir, err)) < 0)
        return r;
    if (!has_traces(c, sid))
        return 0;
    r = rc_launcher_session_lock(c, sid, 0, &lock, err);
    if (r == -RC_ETIMEOUT)
        return 0; /* a live shim holds it */
    if (r < 0)
        return r;
    stop_item(c, sid);
    rc_launcher_keep_output(c, sid); /* like a normal end: the bundle goes next */
    r = rc_launcher_session_cleanup(c, sid, c->purge_workspace, false, err);
    return r < 0 ? r : 1;
}

int rc_launcher_reconcile_all(const rc_launcher_config *c, rc_launcher_adopt_fn adopt,
                              void *userdata, rc_error *err)
{
    char(*ids)[RC_LAUNCHER_SESSION_ID_MAX + 1] = NULL;
    size_t n = 0;
    int cleaned = 0, r;

    if ((r = rc_launcher_session_ids(c, &ids, &n, err)) < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        rc_launcher_session_info info;
        rc_error e = {0};
        r = rc_launcher_session_locked(c, ids[i], &e);
        if (r == 1) {
            if (rc_launcher_info_read(c, ids[i], &info, &e) == 0 && info.pid > 0 && adopt)
                adopt(ids[i], info.pid, userdata);
            else
                rc_log_warn("reconcile %s: live shim without a readable state file", ids[i]);
            continue;
        }
        r = rc_launcher_reconcile_session(c, ids[i], &e);
        if (r < 0)
            rc_log_error("reconcile %s: %s", ids[i], e.msg);
        else if (r > 0)
            cleaned++;
    }
    free(ids);
    return cleaned;
}
