/* tlstrust.h - the container side of TLS interception (issue 11): make a session's container
 * trust the session's own interception CA, whose private key never leaves the shim's memory.
 *
 * The egress proxy terminates TLS for domains whose policy entry has rules (broker/ca.h holds
 * the CA). The shim asks rc_tlstrust_policy_wants_ca() whether a session needs one, and, when it
 * made one, writes the CERTIFICATE (never the key) into a root-owned per-session host dir,
 * S/tls/<sid> (rc_tlstrust_prepare):
 *
 *   ca.pem          the CA certificate alone
 *   ca-bundle.pem   the snapshot's system bundle (if it has one) followed by the CA certificate
 *   anchors-<n>/    for a read-only root: copies of the snapshot's anchor dir
 *                   (/usr/local/share/ca-certificates, /etc/pki/ca-trust/source/anchors) plus
 *                   the CA, bound over that dir so update-ca-certificates in a nested build
 *                   finds it
 *
 * The dir is bound read-only at RC_OCI_DEFAULT_CA_DIR (/run/runcell-ca) and the trust variables
 * point there (oci/spec.c); the bundle is also bound over every system bundle file the snapshot
 * has. Targets inside the snapshot are looked up with openat2(RESOLVE_IN_ROOT), so a symlink in a
 * snapshot can never make the shim read a host file into the container. Bind mounts need an
 * existing target in a read-only root, so only targets that exist are used (a writable root, an
 * overlay, lets runc create the anchor file instead). */
#ifndef RUNCELL_LAUNCHER_TLSTRUST_H
#define RUNCELL_LAUNCHER_TLSTRUST_H

#include "../oci/spec.h"
#include "buf.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>

#define RC_TLSTRUST_SYSTEM_BUNDLE_MAX ((size_t)16 << 20) /* a larger system bundle is refused */
#define RC_TLSTRUST_CA_PEM_MAX        ((size_t)64 << 10)
#define RC_TLSTRUST_ANCHOR_FILES_MAX  256u              /* entries of an anchor dir copied */
#define RC_TLSTRUST_ANCHOR_FILE_MAX   ((size_t)1 << 20) /* bytes of one copied anchor */
#define RC_TLSTRUST_BINDS_MAX         RC_OCI_CA_BINDS_MAX
#define RC_TLSTRUST_ANCHOR_NAME       "runcell-ca.crt"

struct rc_policy;

/* True when some domain of the policy has request rules: only then does the proxy terminate TLS
 * (a CONNECT to such a domain is refused without a CA), so only then is a CA made. */
bool rc_tlstrust_policy_wants_ca(const struct rc_policy *p);

/* 0 when pem[0..len) is exactly one PEM CERTIFICATE block (surrounding whitespace allowed) and
 * nothing else: no key block of any kind. -RC_EINVAL otherwise. */
int rc_tlstrust_cert_check(const char *pem, size_t len, rc_error *err);

/* Pure: the merged bundle = system[0..system_len) (may be empty), a newline if it does not end
 * with one, a comment line naming the runcell CA, then the CA certificate (checked with
 * rc_tlstrust_cert_check). A system bundle holding a private key block is refused (-RC_EINVAL):
 * the bundle is published into the container. out is appended to; it is left unchanged on
 * failure only in length (the caller discards it). */
int rc_tlstrust_bundle_merge(const char *system, size_t system_len, const char *ca_pem,
                             size_t ca_len, rc_buf *out, rc_error *err);

typedef struct rc_tlstrust_result {
    rc_oci_bind binds[RC_TLSTRUST_BINDS_MAX]; /* read-only binds for rc_oci_config.ca_binds */
    size_t n_binds;
    char sources[RC_TLSTRUST_BINDS_MAX][512]; /* storage of binds[i].source */
    char dests[RC_TLSTRUST_BINDS_MAX][256];   /* storage of binds[i].destination */
    bool system_bundle;                       /* the snapshot had a system bundle */
} rc_tlstrust_result;

/* Write dir (created 0755, root-owned; it must not exist yet, or hold only what an earlier call
 * wrote) from the CA certificate ca_pem and the snapshot rootfs at rootfs (the store's copy,
 * read with RESOLVE_IN_ROOT). writable_root: the container root is an overlay, so anchor files
 * may be bound at targets that do not exist yet. Fills *ret (which points into itself: do not
 * copy it while binds are in use). */
int rc_tlstrust_prepare(const char *rootfs, const char *dir, const char *ca_pem, size_t ca_len,
                        bool writable_root, rc_tlstrust_result *ret, rc_error *err);

/* Remove dir and everything in it (missing is fine; never crosses a mount point). */
int rc_tlstrust_remove(const char *dir, rc_error *err);

#endif
