/* main.c - runcell-launcher's entry point: configuration, snapshot resolution, then either the
 * daemon (daemon.c) or, when re-executed by the daemon with --shim, one session's shim (shim.c).
 * Re-executing ourselves gives every shim a fresh process image: no inherited daemon state, no
 * threads, only the item socket on fd 3. */
#include "launcher.h"

#include "../oci/bundle.h"
#include "../oci/runc.h"
#include "../oci/snapshot.h"
#include "cleanup.h"
#include "log.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHIM_ITEM_FD 3

static int usage_error(const char *msg)
{
    fprintf(stderr, "runcell-launcher: %s (see --help)\n", msg);
    return RC_LAUNCHER_EXIT_USAGE;
}

static bool looks_like_digest(const char *s)
{
    char tmp[RC_SNAPSHOT_DIGEST_SIZE];
    return rc_snapshot_digest_parse(s, tmp, NULL) == 0;
}

/* RUNCELL_SNAPSHOT: a digest already in the store, or a tarball imported now (once per
 * content: the store is keyed by digest). */
static int resolve_snapshot(const rc_launcher_config *c, char *digest, rc_error *err)
{
    _cleanup_(rc_snapshot_store_freep) rc_snapshot_store *store = NULL;
    char dir[RC_LAUNCHER_PATH_MAX], rootfs[PATH_MAX];
    int r;

    if (!c->snapshot)
        return rc_error_set(err, RC_EINVAL, "RUNCELL_SNAPSHOT is not set");
    if ((r = rc_bundle_snapshot_dir(c->state_dir, dir, sizeof dir, err)) < 0 ||
        (r = rc_snapshot_store_open(dir, NULL, &store, err)) < 0)
        return r;
    if (looks_like_digest(c->snapshot)) {
        if ((r = rc_snapshot_digest_parse(c->snapshot, digest, err)) < 0)
            return r;
        return rc_snapshot_rootfs_path(store, digest, rootfs, sizeof rootfs, err);
    }
    return rc_snapshot_import(store, c->snapshot, digest, err);
}

/* --check-config: the configuration loaded (or we would not be here), every policy parses, and
 * runc is there (the daemon refuses to start without it). */
static int check_config(const rc_launcher_config *c)
{
    rc_error e = {0};
    _cleanup_free_ char *runc = NULL;
    int n = rc_launcher_policy_check_all(c, &e);
    if (n < 0) {
        fprintf(stderr, "runcell-launcher: egress policy: %s\n", e.msg);
        return RC_LAUNCHER_EXIT_USAGE;
    }
    if (rc_runc_find(c->runc_path, &runc, &e) < 0) {
        fprintf(stderr, "runcell-launcher: runc: %s\n", e.msg);
        return RC_LAUNCHER_EXIT_USAGE;
    }
    printf("configuration ok: %d egress polic%s checked\n", n, n == 1 ? "y" : "ies");
    return RC_LAUNCHER_EXIT_OK;
}

static int run_daemon(const rc_launcher_config *c)
{
    char digest[RC_SNAPSHOT_DIGEST_SIZE], self[PATH_MAX];
    rc_error e = {0};
    ssize_t n;

    if (geteuid() != 0) {
        fprintf(stderr, "runcell-launcher: must run as root\n");
        return RC_LAUNCHER_EXIT_USAGE;
    }
    n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return RC_LAUNCHER_EXIT_FAIL;
    self[n] = '\0';
    if (rc_launcher_policy_check_all(c, &e) < 0) {
        rc_log_error("egress policy: %s", e.msg);
        return RC_LAUNCHER_EXIT_USAGE;
    }
    if (rc_launcher_state_init(c, &e) < 0 || resolve_snapshot(c, digest, &e) < 0) {
        rc_log_error("%s", e.msg);
        return RC_LAUNCHER_EXIT_FAIL;
    }
    rc_log_info("snapshot %s", digest);
    if (rc_launcher_daemon_run(c, digest, self, &e) < 0) {
        rc_log_error("%s", e.msg);
        return RC_LAUNCHER_EXIT_FAIL;
    }
    return RC_LAUNCHER_EXIT_OK;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"env-file", required_argument, NULL, 'e'}, {"shim", no_argument, NULL, 's'},
        {"check-config", no_argument, NULL, 'c'},   {"snapshot", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    const char *env_file = NULL, *snapshot = NULL;
    bool shim = false, check_only = false;
    rc_launcher_config cfg;
    rc_error e = {0};
    int ch;

    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'e':
            env_file = optarg;
            break;
        case 's':
            shim = true;
            break;
        case 'c':
            check_only = true;
            break;
        case 'S':
            snapshot = optarg;
            break;
        case 'h':
            fputs(rc_launcher_help(), stdout);
            return RC_LAUNCHER_EXIT_OK;
        default:
            return usage_error("unknown option");
        }
    }
    if (optind != argc)
        return usage_error("unexpected argument");
    rc_log_init(shim ? "shim" : "launcher", RC_LOG_INFO, -1);
    if (rc_launcher_config_load(env_file, &cfg, &e) < 0) {
        rc_log_error("configuration: %s", e.msg);
        return RC_LAUNCHER_EXIT_USAGE;
    }
    if (check_only)
        return check_config(&cfg);
    if (shim) {
        if (!snapshot || !looks_like_digest(snapshot))
            return usage_error("--shim needs --snapshot DIGEST");
        return rc_launcher_shim_main(&cfg, snapshot, SHIM_ITEM_FD);
    }
    return run_daemon(&cfg);
}
