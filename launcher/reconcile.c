/* reconcile.c - make the host match the shims that are actually alive.
 *
 * Run by the daemon at start (after a crash or a restart of the launcher, a reboot, or a
 * kill -9 of anything) and each time a shim ends. A session whose lock is held has a live shim:
 * it is adopted (the daemon watches its pidfd and counts it against capacity). Any other trace of
 * a session - run dir, root-only work file, bundle, runc state - belongs to a shim that died
 * before its teardown: we take the session's lock (so a new shim of the same session waits for
 * us), force-stop the work item with the token kept in the work file (409 is success; a lost
 * lease makes the API refuse, which is logged and harmless), then delete the container and
 * remove the bundle, the netns mount and the files. The workspace is kept (marked ended) like at
 * a normal end, for a later re-claim. */
#include "launcher.h"

#include "cleanup.h"
#include "log.h"
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    r = rc_launcher_force_stop(c, env, work, token, &e);
    if (r < 0)
        rc_log_error("reconcile %s: force-stop of %s failed: %s", sid, work, e.msg);
    else
        rc_log_info("reconcile %s: work item %s force-stopped", sid, work);
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
