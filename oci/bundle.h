/* bundle.h - a session's OCI bundle and its workspace, under runcell's state dir.
 *
 * Layout (state dir and every directory on the way to a mount source are 0711: inside its user
 * namespace runc 1.1 resolves bind-mount sources as the container's root, an unprivileged host
 * uid that needs search permission):
 *
 *   <state>/bundles/<session>/config.json      generated (rc_oci_spec_build), 0600
 *   <state>/bundles/<session>/snapshot         the snapshot digest the bundle was made from
 *   <state>/bundles/<session>/state/           runner state dir (/run/runcell), owned by the
 *                                              runner's mapped uid, 0700
 *   <state>/bundles/<session>/rootfs/          read-only root: an idmapped bind mount of the
 *                                              snapshot (on-disk id N shows as map_host + N, so
 *                                              the container sees the archive's owners)
 *   <state>/bundles/<session>/lower/           writable root: the same idmapped mount, used as
 *   <state>/bundles/<session>/overlay/{upper,work,merged}
 *                                              the lower layer of an overlay mounted on merged
 *   <state>/bundles/<session>/{output.log,runc.log,init.pid}   written by the runc driver
 *   <state>/workspaces/<session>/data/         bind-mounted at /workspace, owned by the agent's
 *                                              mapped uid; kept when the bundle is removed so a
 *                                              re-claimed session finds its files again
 *   <state>/workspaces/<session>/fs.img        with a workspace size: a sparse ext4 image of that
 *                                              size (0600, root), loop-mounted on data/ while the
 *                                              bundle exists (nodev, nosuid): the session's cap.
 *                                              A full image is ENOSPC inside it only. Kept with
 *                                              the workspace; its size is fixed when it is made
 *   <state>/workspaces/<session>/ended          written when the bundle is removed; the
 *                                              retention policy removes the workspace once it
 *                                              is older than the retention period
 *   <state>/runc/                              runc --root
 *   <state>/snapshots/                         the snapshot store (oci/snapshot.h)
 *
 * The snapshot's rootfs is shared read-only between sessions; the bundle never writes into it
 * (it checks the mount points exist instead of letting runc create them). The bundle holds the
 * snapshot (rc_snapshot_hold) while the rc_bundle object is alive, so prune cannot remove it. */
#ifndef RUNCELL_OCI_BUNDLE_H
#define RUNCELL_OCI_BUNDLE_H

#include "err.h"
#include "snapshot.h"
#include "spec.h"

#include <stdbool.h>
#include <stdint.h>

#define RC_BUNDLE_DEFAULT_STATE_DIR      "/var/lib/runcell"
#define RC_BUNDLE_DEFAULT_RETENTION_S    (7 * 24 * 3600) /* workspaces of ended sessions */
#define RC_BUNDLE_DEFAULT_WORKSPACE_SIZE (10ull << 30)   /* the launcher's default cap (sparse) */
#define RC_BUNDLE_MIN_WORKSPACE_SIZE     (16ull << 20)   /* smallest image made */

typedef struct rc_bundle rc_bundle;

enum rc_bundle_idmap {
    RC_BUNDLE_IDMAP_AUTO = 0, /* idmapped snapshot mount when the kernel/filesystem can */
    RC_BUNDLE_IDMAP_ON,       /* required: fail without it */
    RC_BUNDLE_IDMAP_OFF,      /* the snapshot dir as is (its files show as nobody inside) */
};

typedef struct rc_bundle_opts {
    const char *state_dir;       /* absolute; NULL = RC_BUNDLE_DEFAULT_STATE_DIR */
    rc_snapshot_store *store;    /* the store holding the snapshot */
    const char *snapshot_digest; /* "sha256:<hex>" or bare hex */
    int idmap;                   /* enum rc_bundle_idmap */
    uint64_t workspace_size;     /* bytes: cap of a new workspace (its fs.img); 0: no cap (a
                                  * plain directory). An existing fs.img is always used, as is */
} rc_bundle_opts;

/* Create the bundle for cfg->session_id: directories, workspace (reused when it exists; its
 * image made and loop-mounted, see opts->workspace_size), the overlay mount when
 * cfg->writable_root, and config.json. Needs root for the mounts. cfg's rootfs, workspace_host and
 * state_host are ignored (the bundle sets them); everything else is used as given. Fails with
 * -RC_EINVAL if a bundle for the session already exists; a failed create leaves no bundle (the
 * workspace stays). */
int rc_bundle_create(const rc_bundle_opts *opts, const rc_oci_config *cfg, rc_bundle **ret,
                     rc_error *err);

/* Open an existing bundle (holding its snapshot when store is non-NULL). -RC_ENOTFOUND when
 * there is none. */
int rc_bundle_open(const char *state_dir, rc_snapshot_store *store, const char *session_id,
                   rc_bundle **ret, rc_error *err);

/* Open every bundle under the state dir (holding each one's snapshot), e.g. to keep `snapshot
 * prune` off snapshots that bundles use while no process has them open. Bundles that cannot be
 * opened (half removed) are skipped. *ret_list (may be NULL when *ret_n is 0) is freed with
 * rc_bundle_list_free. */
int rc_bundle_open_all(const char *state_dir, rc_snapshot_store *store, rc_bundle ***ret_list,
                       size_t *ret_n, rc_error *err);
void rc_bundle_list_free(rc_bundle **list, size_t n);

void rc_bundle_free(rc_bundle *b);
static inline void rc_bundle_freep(rc_bundle **b)
{
    if (*b)
        rc_bundle_free(*b);
}

const char *rc_bundle_dir(const rc_bundle *b); /* <state>/bundles/<session> */
const char *rc_bundle_session_id(const rc_bundle *b);
const char *rc_bundle_workspace_dir(const rc_bundle *b); /* <state>/workspaces/<s>/data */
const char *rc_bundle_rootfs(const rc_bundle *b);        /* the root runc uses */
const char *rc_bundle_snapshot_digest(const rc_bundle *b);

/* Replace process.args in config.json (the CLI's `run SESSION -- CMD...`). */
int rc_bundle_set_args(rc_bundle *b, const char *const *args, rc_error *err);

/* Remove the bundle: unmount the workspace image (its loop device goes with it) and the
 * overlay, delete the bundle directory, and mark the workspace ended (or delete it too, image
 * included, when purge_workspace). The caller deletes the runc container first.
 * Frees nothing: call rc_bundle_free afterwards. */
int rc_bundle_remove(rc_bundle *b, bool purge_workspace, rc_error *err);

/* The same by session id, for a bundle that may be half made or already gone (idempotent). */
int rc_bundle_remove_id(const char *state_dir, const char *session_id, bool purge_workspace,
                        rc_error *err);

/* Retention policy: remove every workspace whose session has no bundle and whose end is at least
 * retention_s seconds before now (a workspace without a bundle or an end mark is marked ended
 * now; a workspace image left mounted without a bundle is unmounted). Returns the number
 * removed. */
int rc_bundle_prune_workspaces(const char *state_dir, int64_t retention_s, int64_t now,
                               rc_error *err);

/* Create the state dir (0711, or add search permission to an existing one) and its bundles/
 * and workspaces/ (0711) and runc/ (0700) subdirectories. Idempotent. */
int rc_bundle_state_init(const char *state_dir, rc_error *err);

/* <state>/runc and <state>/snapshots into buf. */
int rc_bundle_runc_root(const char *state_dir, char *buf, size_t bufsz, rc_error *err);
int rc_bundle_snapshot_dir(const char *state_dir, char *buf, size_t bufsz, rc_error *err);

#endif
