/* ca.h - the per-session interception CA: a short-lived EC P-256 certificate authority that the
 * egress proxy uses to terminate TLS for domains with transform or forwardURL rules
 * (reference-app 8.8, 9.3.7).
 *
 * The shim creates one CA per session (rc_ca_new) and installs only its certificate
 * (rc_ca_cert_pem) in the container's trust store; the private key lives in the broker's memory
 * and is never written anywhere. The proxy asks for a leaf certificate per host name or IP
 * literal (rc_ca_leaf): leaves are minted on first use, cached for the CA's lifetime, and expire
 * with the CA (never later). All leaves share one EC P-256 key generated with the CA, so a new
 * host costs one signature, not a key generation.
 *
 * The CA is basicConstraints CA:TRUE with pathlen 0 and keyUsage keyCertSign (critical); leaves
 * carry CA:FALSE, digitalSignature, extendedKeyUsage serverAuth and one subjectAltName (DNS for
 * names, IP for literals). rc_ca_leaf is thread-safe; everything else is set up once. */
#ifndef RUNCELL_BROKER_CA_H
#define RUNCELL_BROKER_CA_H

#include "buf.h"
#include "err.h"

#include <openssl/types.h>
#include <stdint.h>

#define RC_CA_LABEL_MAX      128u
#define RC_CA_LEAF_CACHE_MAX 1024u /* distinct hosts cached; later ones are minted each time */
#define RC_CA_BACKDATE_S     300u  /* notBefore = now - 5 min, for clocks slightly behind */

typedef struct rc_ca rc_ca;

/* A fresh EC P-256 CA "runcell session CA <label>", valid from now-5 min for lifetime_s seconds
 * (basicConstraints CA:TRUE pathlen 0, keyUsage keyCertSign). label: printable ASCII, at most
 * RC_CA_LABEL_MAX bytes (typically the session id); lifetime_s: 60 s .. 90 days. */
int rc_ca_new(const char *label, uint64_t lifetime_s, rc_ca **ret_ca, rc_error *err);
/* The CA certificate as PEM (never the key), appended to out. */
int rc_ca_cert_pem(const rc_ca *ca, rc_buf *out, rc_error *err);
void rc_ca_free(rc_ca *ca);

static inline void rc_ca_freep(rc_ca **ca)
{
    if (*ca)
        rc_ca_free(*ca);
}

/* The leaf for host (a lowercase host name, or an IPv4/IPv6 literal without brackets), minted
 * on first use and cached. *ret_cert and *ret_key are new references the caller frees
 * (X509_free, EVP_PKEY_free). -RC_EINVAL for a host that is neither. Thread-safe. */
int rc_ca_leaf(const rc_ca *ca, const char *host, X509 **ret_cert, EVP_PKEY **ret_key,
               rc_error *err);
/* The CA certificate itself (borrowed; lives as long as ca). */
X509 *rc_ca_cert(const rc_ca *ca);
/* Unix time at which the CA (and so every leaf) expires. */
int64_t rc_ca_not_after(const rc_ca *ca);
/* Number of leaves in the cache (for tests). */
size_t rc_ca_cached_leaves(const rc_ca *ca);

#endif
