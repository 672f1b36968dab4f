/* ca.c - the per-session interception CA and its leaf certificates (see ca.h).
 *
 * Everything is built with OpenSSL's X509 API in memory: no configuration file, no temporary
 * file, no key ever serialised. Extensions are added from fixed strings (the only variable part,
 * the subjectAltName, is a host name already checked to be LDH labels or an address that
 * inet_pton accepted, so it can never smuggle a ',' or another extension in). The leaf cache is
 * a small array behind a mutex: a session reaches a handful of hosts. */
#include "ca.h"

#include "cleanup.h"
#include "policy.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIFETIME_MIN_S 60u
#define LIFETIME_MAX_S ((uint64_t)90 * 24 * 3600)

typedef struct leaf_entry {
    char host[RC_POLICY_HOST_MAX + 1];
    X509 *cert;
} leaf_entry;

typedef struct leaf_cache {
    pthread_mutex_t lock;
    leaf_entry *entries;
    size_t n;
} leaf_cache;

struct rc_ca {
    X509 *cert;
    EVP_PKEY *key;      /* the CA's signing key: never leaves this struct */
    EVP_PKEY *leaf_key; /* shared by every leaf */
    int64_t not_after;
    leaf_cache *cache; /* behind a pointer so a const rc_ca can still fill it */
};

static void x509_freep(X509 **x)
{
    X509_free(*x);
}

static void pkey_freep(EVP_PKEY **k)
{
    EVP_PKEY_free(*k);
}

static int tls_fail(rc_error *err, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[160] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return rc_error_set(err, RC_EIO, "ca: %s%s%s", what, buf[0] ? ": " : "", buf);
}

static EVP_PKEY *new_p256_key(void)
{
    return EVP_EC_gen("P-256");
}

/* A random positive 127-bit serial number. */
static int set_random_serial(X509 *x)
{
    unsigned char raw[16];
    BIGNUM *bn;
    int ok;

    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    raw[0] &= 0x7f;
    raw[0] |= 0x01; /* never zero, never negative */
    bn = BN_bin2bn(raw, sizeof raw, NULL);
    ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

static int add_ext(X509 *issuer, X509 *subject, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&ctx, issuer, subject, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return -1;
    ok = X509_add_ext(subject, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

static int set_cn(X509_NAME *name, const char *cn)
{
    return X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                      0) == 1
               ? 0
               : -1;
}

/* Version, serial, validity [not_before, not_after] and the public key of a new certificate. */
static X509 *cert_skeleton(EVP_PKEY *pub, time_t not_before, time_t not_after)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    if (X509_set_version(x, 2) != 1 || set_random_serial(x) < 0 ||
        !ASN1_TIME_set(X509_getm_notBefore(x), not_before) ||
        !ASN1_TIME_set(X509_getm_notAfter(x), not_after) || X509_set_pubkey(x, pub) != 1) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static bool label_valid(const char *label)
{
    size_t n = strlen(label);
    if (n == 0 || n > RC_CA_LABEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)label[i] < 0x20 || (unsigned char)label[i] > 0x7e)
            return false;
    return true;
}

static int build_ca_cert(rc_ca *ca, const char *label, uint64_t lifetime_s, rc_error *err)
{
    _cleanup_(x509_freep) X509 *x = NULL;
    char cn[RC_CA_LABEL_MAX + 32];
    time_t now = time(NULL);
    time_t nb = now - RC_CA_BACKDATE_S;

    snprintf(cn, sizeof cn, "runcell session CA %s", label);
    ca->not_after = (int64_t)nb + (int64_t)lifetime_s;
    x = cert_skeleton(ca->key, nb, (time_t)ca->not_after);
    if (!x || set_cn(X509_get_subject_name(x), cn) < 0 ||
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "O", MBSTRING_ASC,
                                   (const unsigned char *)"runcell", -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(x)) != 1)
        return tls_fail(err, "cannot build the CA certificate");
    if (add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
        add_ext(x, x, NID_key_usage, "critical,keyCertSign") < 0 ||
        add_ext(x, x, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(x, x, NID_authority_key_identifier, "keyid:always") < 0)
        return tls_fail(err, "cannot add the CA extensions");
    if (X509_sign(x, ca->key, EVP_sha256()) <= 0)
        return tls_fail(err, "cannot sign the CA certificate");
    ca->cert = take_ptr(x);
    return 0;
}

int rc_ca_new(const char *label, uint64_t lifetime_s, rc_ca **ret_ca, rc_error *err)
{
    _cleanup_(rc_ca_freep) rc_ca *ca = NULL;
    int r;

    if (!label || !label_valid(label))
        return rc_error_set(err, RC_EINVAL, "ca: the label must be 1-%u printable ASCII bytes",
                            RC_CA_LABEL_MAX);
    if (lifetime_s < LIFETIME_MIN_S || lifetime_s > LIFETIME_MAX_S)
        return rc_error_set(err, RC_EINVAL, "ca: lifetime must be between %u s and 90 days",
                            LIFETIME_MIN_S);
    ca = calloc(1, sizeof *ca);
    if (!ca || !(ca->cache = calloc(1, sizeof *ca->cache)))
        return rc_error_set(err, RC_ENOMEM, "ca: out of memory");
    pthread_mutex_init(&ca->cache->lock, NULL);
    ca->key = new_p256_key();
    ca->leaf_key = new_p256_key();
    if (!ca->key || !ca->leaf_key)
        return tls_fail(err, "cannot generate an EC P-256 key");
    r = build_ca_cert(ca, label, lifetime_s, err);
    if (r < 0)
        return r;
    *ret_ca = take_ptr(ca);
    return 0;
}

int rc_ca_cert_pem(const rc_ca *ca, rc_buf *out, rc_error *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n;
    int r;

    if (!bio)
        return rc_error_set(err, RC_ENOMEM, "ca: out of memory");
    if (PEM_write_bio_X509(bio, ca->cert) != 1) {
        BIO_free(bio);
        return tls_fail(err, "cannot write the CA certificate");
    }
    n = BIO_get_mem_data(bio, &data);
    r = n > 0 ? rc_buf_append(out, data, (size_t)n, err)
              : rc_error_set(err, RC_EIO, "ca: empty PEM");
    BIO_free(bio);
    return r < 0 ? r : 0;
}

void rc_ca_free(rc_ca *ca)
{
    if (!ca)
        return;
    if (ca->cache) {
        for (size_t i = 0; i < ca->cache->n; i++)
            X509_free(ca->cache->entries[i].cert);
        free(ca->cache->entries);
        pthread_mutex_destroy(&ca->cache->lock);
        free(ca->cache);
    }
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    EVP_PKEY_free(ca->leaf_key);
    free(ca);
}

X509 *rc_ca_cert(const rc_ca *ca)
{
    return ca->cert;
}

int64_t rc_ca_not_after(const rc_ca *ca)
{
    return ca->not_after;
}

size_t rc_ca_cached_leaves(const rc_ca *ca)
{
    size_t n;
    pthread_mutex_lock(&ca->cache->lock);
    n = ca->cache->n;
    pthread_mutex_unlock(&ca->cache->lock);
    return n;
}

/* ---- leaves ---- */

/* "DNS:name" or "IP:addr" for a host that is a valid name or an IP literal; -1 otherwise. */
static int san_value(const char *host, char *out, size_t n)
{
    unsigned char tmp[16];
    if (inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1)
        return snprintf(out, n, "IP:%s", host) < (int)n ? 0 : -1;
    if (!rc_policy_hostname_valid(host))
        return -1;
    return snprintf(out, n, "DNS:%s", host) < (int)n ? 0 : -1;
}

static int mint_leaf(const rc_ca *ca, const char *host, const char *san, X509 **ret, rc_error *err)
{
    _cleanup_(x509_freep) X509 *x = NULL;
    time_t now = time(NULL), nb = now - RC_CA_BACKDATE_S;

    if ((int64_t)now >= ca->not_after)
        return rc_error_set(err, RC_EINVAL, "ca: the session CA has expired");
    x = cert_skeleton(ca->leaf_key, nb, (time_t)ca->not_after);
    if (!x || set_cn(X509_get_subject_name(x), host) < 0 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) != 1)
        return tls_fail(err, "cannot build a leaf certificate");
    if (add_ext(ca->cert, x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(ca->cert, x, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(ca->cert, x, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(ca->cert, x, NID_subject_alt_name, san) < 0 ||
        add_ext(ca->cert, x, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(ca->cert, x, NID_authority_key_identifier, "keyid:always") < 0)
        return tls_fail(err, "cannot add the leaf extensions");
    if (X509_sign(x, ca->key, EVP_sha256()) <= 0)
        return tls_fail(err, "cannot sign a leaf certificate");
    *ret = take_ptr(x);
    return 0;
}

static X509 *cache_find(leaf_cache *c, const char *host)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->entries[i].host, host) == 0)
            return c->entries[i].cert;
    return NULL;
}

/* Keep cert in the cache (taking a reference) when there is room. */
static void cache_add(leaf_cache *c, const char *host, X509 *cert)
{
    if (c->n >= RC_CA_LEAF_CACHE_MAX)
        return;
    if (!c->entries && !(c->entries = calloc(RC_CA_LEAF_CACHE_MAX, sizeof *c->entries)))
        return;
    snprintf(c->entries[c->n].host, sizeof c->entries[c->n].host, "%s", host);
    if (X509_up_ref(cert) != 1)
        return;
    c->entries[c->n++].cert = cert;
}

int rc_ca_leaf(const rc_ca *ca, const char *host, X509 **ret_cert, EVP_PKEY **ret_key,
               rc_error *err)
{
    char san[RC_POLICY_HOST_MAX + 8];
    _cleanup_(x509_freep) X509 *cert = NULL;
    _cleanup_(pkey_freep) EVP_PKEY *key = NULL;
    leaf_cache *c = ca->cache;
    int r = 0;

    if (!host || strlen(host) > RC_POLICY_HOST_MAX || san_value(host, san, sizeof san) < 0)
        return rc_error_set(err, RC_EINVAL, "ca: not a host name or IP address");
    if (EVP_PKEY_up_ref(ca->leaf_key) != 1)
        return tls_fail(err, "cannot reference the leaf key");
    key = ca->leaf_key;
    pthread_mutex_lock(&c->lock);
    cert = cache_find(c, host);
    if (cert && X509_up_ref(cert) != 1)
        cert = NULL;
    if (!cert) {
        r = mint_leaf(ca, host, san, &cert, err);
        if (r == 0)
            cache_add(c, host, cert);
    }
    pthread_mutex_unlock(&c->lock);
    if (r < 0)
        return r;
    *ret_cert = take_ptr(cert);
    *ret_key = take_ptr(key);
    return 0;
}
