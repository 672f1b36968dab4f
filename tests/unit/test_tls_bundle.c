/* test_tls_bundle.c - the container side of TLS interception (launcher/tlstrust.h, issue 11):
 * which policies get a CA, the certificate check and the bundle merge (pure), the per-session
 * trust dir written from a fake snapshot (what is bound where, symlinks resolved inside the
 * snapshot, nothing but certificates written), and what config.json gets with and without a CA.
 * One test uses the real broker CA (broker/ca.h) and proves its key never reaches the dir; the
 * last one checks the RUNCELL_TLS_INTERCEPT setting. */
#include "harness.h"

#include "../broker/ca.h"
#include "../broker/policy.h"
#include "buf.h"
#include "cleanup.h"
#include "json.h"
#include "launcher.h"
#include "spec.h"
#include "tlstrust.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CERT_A                                                                                     \
    "-----BEGIN CERTIFICATE-----\n"                                                                \
    "MIIBfTCCASOgAwIBAgIUYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXowCgYIKoZI\n"                           \
    "zj0EAwIwFDESMBAGA1UEAwwJcnVuY2VsbCBjYTAeFw0yNjExMjMwMDAwMDBaFw0y\n"                           \
    "Njk5OTk5OTk5OTlaMBQxEjAQBgNVBAMMCXJ1bmNlbGwgY2E=\n"                                           \
    "-----END CERTIFICATE-----\n"
#define CERT_SYS                                                                                   \
    "-----BEGIN CERTIFICATE-----\n"                                                                \
    "U1lTVEVNUk9PVFNZU1RFTVJPT1RTWVNURU1ST09U\n"                                                   \
    "-----END CERTIFICATE-----\n"

/* ---- helpers ------------------------------------------------------------------------------- */

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

static char *slurp(const char *path)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(1 << 20);
    char chunk[4096];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        if (rc_buf_append(&b, chunk, (size_t)n, NULL) < 0)
            break;
    close(fd);
    char *out = NULL;
    size_t len;
    if (rc_buf_steal(&b, &out, &len, NULL) < 0)
        return NULL;
    return out;
}

static int mkdirs(const char *base, const char *rel)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    for (char *s = p + strlen(base) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    return mkdir(p, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

static void rm_rf(const char *path)
{
    char cmdline[1200];
    DIR *d = opendir(path);
    struct dirent *de;
    struct stat st;
    if (lstat(path, &st) < 0)
        return;
    if (!S_ISDIR(st.st_mode) || !d) {
        if (d)
            closedir(d);
        unlink(path);
        return;
    }
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(cmdline, sizeof cmdline, "%s/%s", path, de->d_name);
        rm_rf(cmdline);
    }
    closedir(d);
    rmdir(path);
}

/* Every PEM block in every file under dir is a CERTIFICATE, and no file mentions a key. */
static int scan_only_certs(const char *dir, int *ret_files)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[1024];
    struct stat st;
    int bad = 0;
    if (!d)
        return 1;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (lstat(p, &st) < 0)
            bad++;
        else if (S_ISDIR(st.st_mode))
            bad += scan_only_certs(p, ret_files);
        else {
            _cleanup_free_ char *t = slurp(p);
            (*ret_files)++;
            if (!t || strstr(t, "PRIVATE KEY") || strstr(t, "BEGIN EC") || !S_ISREG(st.st_mode))
                bad++;
            for (const char *s = t; s && (s = strstr(s, "-----BEGIN ")); s++)
                if (strncmp(s, "-----BEGIN CERTIFICATE-----", 27) != 0)
                    bad++;
        }
    }
    closedir(d);
    return bad;
}

static rc_policy *policy(const char *json)
{
    rc_policy *p = NULL;
    rc_error e = {0};
    if (rc_policy_parse(json, strlen(json), &p, &e) < 0)
        rc_test_fail(__FILE__, __LINE__, "policy: %s", e.msg);
    return p;
}

/* ---- policy -------------------------------------------------------------------------------- */

TEST(policy_wants_ca_only_with_rules)
{
    static const char *const no[] = {"\"deny-all\"",
                                     "\"allow-all\"",
                                     "{\"allow\": [\"a.test\", \"*.b.test\"]}",
                                     "{\"allow\": {\"a.test\": [], \"b.test\": []}}",
                                     "{}",
                                     NULL};
    for (size_t i = 0; no[i]; i++) {
        rc_policy *p = policy(no[i]);
        CHECK(p && !rc_tlstrust_policy_wants_ca(p));
        rc_policy_free(p);
    }
    rc_policy *p = policy("{\"allow\": {\"a.test\": [], \"api.test\": [{\"transform\": "
                          "[{\"headers\": {\"x-key\": \"v4lue-secret\"}}]}]}}");
    CHECK(p && rc_tlstrust_policy_wants_ca(p));
    rc_policy_free(p);
    p = policy("{\"allow\": {\"api.test\": [{\"response\": {\"statusCode\": 403}}]}}");
    CHECK(p && rc_tlstrust_policy_wants_ca(p)); /* any rule: CONNECT is refused without a CA */
    rc_policy_free(p);
    CHECK(!rc_tlstrust_policy_wants_ca(NULL));
}

/* ---- the certificate check and the merge --------------------------------------------------- */

TEST(cert_check)
{
    rc_error e = {0};
    CHECK_INT(rc_tlstrust_cert_check(CERT_A, strlen(CERT_A), &e), 0);
    CHECK_INT(rc_tlstrust_cert_check("\n  " CERT_A "\n\n", strlen(CERT_A) + 5, &e), 0);
    static const char *const bad[] = {
        "",
        "hello",
        CERT_A CERT_SYS,
        CERT_A "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nAA AA!\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
        "-----BEGIN CERTIFICATE-----\nAAAA\n",
        NULL};
    for (size_t i = 0; bad[i]; i++)
        CHECK_INT(rc_tlstrust_cert_check(bad[i], strlen(bad[i]), &e), -RC_EINVAL);
    CHECK_INT(rc_tlstrust_cert_check(NULL, 0, &e), -RC_EINVAL);
}

TEST(bundle_merge)
{
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(1 << 16);
    rc_error e = {0};
    const char *comment = "# runcell per-session egress CA (TLS interception)\n";
    char want[4096];

    REQUIRE(rc_tlstrust_bundle_merge(CERT_SYS, strlen(CERT_SYS), CERT_A, strlen(CERT_A), &out,
                                     &e) == 0);
    snprintf(want, sizeof want, "%s%s%s", CERT_SYS, comment, CERT_A);
    CHECK_STR(rc_buf_cstr(&out), want);

    /* no trailing newline on either side: one is added to each */
    rc_buf_reset(&out);
    REQUIRE(rc_tlstrust_bundle_merge(CERT_SYS, strlen(CERT_SYS) - 1, CERT_A, strlen(CERT_A) - 1,
                                     &out, &e) == 0);
    CHECK_STR(rc_buf_cstr(&out), want);

    /* no system bundle: the CA alone */
    rc_buf_reset(&out);
    REQUIRE(rc_tlstrust_bundle_merge(NULL, 0, CERT_A, strlen(CERT_A), &out, &e) == 0);
    snprintf(want, sizeof want, "%s%s", comment, CERT_A);
    CHECK_STR(rc_buf_cstr(&out), want);

    /* a system "bundle" with a key, or binary, is never published; a bad CA neither */
    const char *keyed = CERT_SYS "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    CHECK_INT(rc_tlstrust_bundle_merge(keyed, strlen(keyed), CERT_A, strlen(CERT_A), &out, &e),
              -RC_EINVAL);
    CHECK_INT(rc_tlstrust_bundle_merge("a\0b", 3, CERT_A, strlen(CERT_A), &out, &e), -RC_EINVAL);
    CHECK_INT(rc_tlstrust_bundle_merge(CERT_SYS, strlen(CERT_SYS), "nope", 4, &out, &e),
              -RC_EINVAL);

    /* the output buffer's cap holds */
    _cleanup_(rc_buf_free) rc_buf small = RC_BUF_INIT(64);
    CHECK_INT(
        rc_tlstrust_bundle_merge(CERT_SYS, strlen(CERT_SYS), CERT_A, strlen(CERT_A), &small, &e),
        -RC_ETOOBIG);
}

/* ---- the trust dir from a fake snapshot ---------------------------------------------------- */

typedef struct fixture {
    char base[256], root[300], dir[300], outside[300];
} fixture;

static int fixture_make(fixture *f)
{
    snprintf(f->base, sizeof f->base, "/tmp/rc-test-tls.XXXXXX");
    if (!mkdtemp(f->base))
        return -1;
    snprintf(f->root, sizeof f->root, "%s/rootfs", f->base);
    snprintf(f->dir, sizeof f->dir, "%s/state/tls/sesn_x", f->base);
    snprintf(f->outside, sizeof f->outside, "%s/host-secret.pem", f->base);
    char p[600];
    if (mkdirs(f->base, "rootfs/etc/ssl/certs") < 0 ||
        mkdirs(f->base, "rootfs/usr/local/share/ca-certificates") < 0 ||
        mkdirs(f->base, "rootfs/etc/pki/tls/certs") < 0 || mkdirs(f->base, "state") < 0)
        return -1;
    snprintf(p, sizeof p, "%s/etc/ssl/certs/ca-certificates.crt", f->root);
    if (write_file(p, CERT_SYS) < 0)
        return -1;
    /* Alpine's cert.pem: a symlink to the same file (one bind, not two) */
    snprintf(p, sizeof p, "%s/etc/ssl/cert.pem", f->root);
    if (symlink("certs/ca-certificates.crt", p) < 0)
        return -1;
    /* an absolute symlink that would escape to a host file if resolved on the host */
    if (write_file(f->outside, "HOST-SECRET-NOT-FOR-CONTAINERS\n") < 0)
        return -1;
    snprintf(p, sizeof p, "%s/etc/pki/tls/certs/ca-bundle.crt", f->root);
    if (symlink(f->outside, p) < 0)
        return -1;
    snprintf(p, sizeof p, "%s/usr/local/share/ca-certificates/corp.crt", f->root);
    return write_file(p, CERT_SYS);
}

static const char *bind_for(const rc_tlstrust_result *r, const char *dest)
{
    for (size_t i = 0; i < r->n_binds; i++)
        if (strcmp(r->binds[i].destination, dest) == 0)
            return r->binds[i].source;
    return NULL;
}

TEST(prepare_read_only_root)
{
    fixture f;
    rc_tlstrust_result res;
    rc_error e = {0};
    char p[700], want[4096];
    int files = 0;

    REQUIRE(fixture_make(&f) == 0);
    int r = rc_tlstrust_prepare(f.root, f.dir, CERT_A, strlen(CERT_A), false, &res, &e);
    CHECK_INT(r, 0);
    if (r < 0)
        rc_test_fail(__FILE__, __LINE__, "%s", e.msg);
    CHECK(res.system_bundle);

    snprintf(p, sizeof p, "%s/ca.pem", f.dir);
    _cleanup_free_ char *ca = slurp(p);
    CHECK_STR(ca, CERT_A);
    snprintf(p, sizeof p, "%s/ca-bundle.pem", f.dir);
    _cleanup_free_ char *bundle = slurp(p);
    snprintf(want, sizeof want, "%s# runcell per-session egress CA (TLS interception)\n%s",
             CERT_SYS, CERT_A);
    CHECK_STR(bundle, want);
    CHECK(bundle && !strstr(bundle, "HOST-SECRET"));

    /* binds: the bundle over the one real bundle file (the symlink to it is the same file; the
     * escaping symlink resolves inside the root, where nothing is), the anchor dir over its own */
    CHECK_INT(res.n_binds, 2);
    snprintf(p, sizeof p, "%s/ca-bundle.pem", f.dir);
    CHECK_STR(bind_for(&res, "/etc/ssl/certs/ca-certificates.crt"), p);
    CHECK(bind_for(&res, "/etc/pki/tls/certs/ca-bundle.crt") == NULL);
    snprintf(p, sizeof p, "%s/anchors-0", f.dir);
    CHECK_STR(bind_for(&res, "/usr/local/share/ca-certificates"), p);
    snprintf(p, sizeof p, "%s/anchors-0/runcell-ca.crt", f.dir);
    _cleanup_free_ char *anchor = slurp(p);
    CHECK_STR(anchor, CERT_A);
    snprintf(p, sizeof p, "%s/anchors-0/corp.crt", f.dir);
    _cleanup_free_ char *corp = slurp(p);
    CHECK_STR(corp, CERT_SYS);

    /* modes: a world-readable, root-made dir of certificates only */
    struct stat st;
    CHECK(stat(f.dir, &st) == 0 && (st.st_mode & 07777) == 0755);
    snprintf(p, sizeof p, "%s/ca.pem", f.dir);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0644);
    CHECK_INT(scan_only_certs(f.dir, &files), 0);
    CHECK_INT(files, 4);

    /* idempotent: a second prepare replaces the first; remove takes it all */
    CHECK_INT(rc_tlstrust_prepare(f.root, f.dir, CERT_A, strlen(CERT_A), false, &res, &e), 0);
    CHECK_INT(rc_tlstrust_remove(f.dir, &e), 0);
    CHECK(access(f.dir, F_OK) < 0 && errno == ENOENT);
    CHECK_INT(rc_tlstrust_remove(f.dir, &e), 0);
    CHECK_INT(rc_tlstrust_remove("/", &e), -RC_EINVAL);
    rm_rf(f.base);
}

TEST(prepare_writable_root_and_odd_snapshots)
{
    fixture f;
    rc_tlstrust_result res;
    rc_error e = {0};
    char p[700];

    REQUIRE(fixture_make(&f) == 0);
    /* writable root: the CA file is bound into the anchor dir (runc makes it in the overlay) */
    CHECK_INT(rc_tlstrust_prepare(f.root, f.dir, CERT_A, strlen(CERT_A), true, &res, &e), 0);
    snprintf(p, sizeof p, "%s/ca.pem", f.dir);
    CHECK_STR(bind_for(&res, "/usr/local/share/ca-certificates/runcell-ca.crt"), p);
    CHECK(bind_for(&res, "/usr/local/share/ca-certificates") == NULL);

    /* an anchor dir with a subdirectory is left alone (not bound) */
    snprintf(p, sizeof p, "%s/usr/local/share/ca-certificates/sub", f.root);
    REQUIRE(mkdir(p, 0755) == 0);
    CHECK_INT(rc_tlstrust_prepare(f.root, f.dir, CERT_A, strlen(CERT_A), false, &res, &e), 0);
    CHECK(bind_for(&res, "/usr/local/share/ca-certificates") == NULL);
    CHECK_INT(res.n_binds, 1);

    /* a "bundle" with a key in the snapshot refuses the whole thing (nothing key-like published) */
    snprintf(p, sizeof p, "%s/etc/ssl/certs/ca-certificates.crt", f.root);
    REQUIRE(write_file(p, CERT_SYS
                       "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n") == 0);
    CHECK_INT(rc_tlstrust_prepare(f.root, f.dir, CERT_A, strlen(CERT_A), false, &res, &e),
              -RC_EINVAL);

    /* no system bundle at all: the bundle is the CA alone, and nothing is bound over the root */
    unlink(p);
    CHECK_INT(rc_tlstrust_prepare(f.root, f.dir, CERT_A, strlen(CERT_A), false, &res, &e), 0);
    CHECK(!res.system_bundle);
    CHECK_INT(res.n_binds, 0);
    snprintf(p, sizeof p, "%s/ca-bundle.pem", f.dir);
    _cleanup_free_ char *bundle = slurp(p);
    CHECK(bundle && strstr(bundle, CERT_A) && !strstr(bundle, "U1lTVEVN"));

    /* a bad certificate writes nothing */
    CHECK_INT(rc_tlstrust_prepare(f.root, f.dir, "junk", 4, false, &res, &e), -RC_EINVAL);
    CHECK_INT(rc_tlstrust_remove(f.dir, &e), 0);
    rm_rf(f.base);
}

/* ---- config.json --------------------------------------------------------------------------- */

static void base_config(rc_oci_config *c)
{
    rc_oci_config_init(c);
    c->session_id = "sesn_01ABCdef";
    c->rootfs = "/var/lib/runcell/bundles/sesn_01ABCdef/rootfs";
    c->workspace_host = "/var/lib/runcell/workspaces/sesn_01ABCdef/data";
    c->state_host = "/var/lib/runcell/bundles/sesn_01ABCdef/state";
    c->http_proxy = c->https_proxy = "http://127.0.0.1:3128";
}

static const char *const trust_vars[] = {
    "SSL_CERT_FILE",       "CURL_CA_BUNDLE",     "REQUESTS_CA_BUNDLE",
    "GIT_SSL_CAINFO",      "PIP_CERT",           "NPM_CONFIG_CAFILE",
    "AWS_CA_BUNDLE",       "CARGO_HTTP_CAINFO",  "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "NODE_EXTRA_CA_CERTS", "NODE_USE_SYSTEM_CA", NULL};

static const char *env_value(const cJSON *spec, const char *name)
{
    const cJSON *env =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(spec, "process"), "env");
    const cJSON *it;
    size_t n = strlen(name);
    cJSON_ArrayForEach(it, env)
    {
        if (cJSON_IsString(it) && !strncmp(it->valuestring, name, n) && it->valuestring[n] == '=')
            return it->valuestring + n + 1;
    }
    return NULL;
}

static const cJSON *mount_at(const cJSON *spec, const char *dest)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(spec, "mounts"))
    {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(it, "destination");
        if (cJSON_IsString(d) && !strcmp(d->valuestring, dest))
            return it;
    }
    return NULL;
}

static bool mount_ro_bind(const cJSON *m, const char *source)
{
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(m, "source");
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(m, "options"), *it;
    bool ro = false, bind = false, rw = false;
    cJSON_ArrayForEach(it, opts)
    {
        ro = ro || !strcmp(it->valuestring, "ro");
        rw = rw || !strcmp(it->valuestring, "rw");
        bind = bind || !strcmp(it->valuestring, "bind");
    }
    return cJSON_IsString(src) && !strcmp(src->valuestring, source) && ro && bind && !rw;
}

TEST(spec_without_ca_has_no_trust_env_or_mounts)
{
    rc_oci_config c;
    base_config(&c);
    _cleanup_json_ cJSON *spec = NULL;
    rc_error e = {0};
    REQUIRE(rc_oci_spec_build(&c, &spec, &e) == 0);
    for (size_t i = 0; trust_vars[i]; i++)
        CHECK(env_value(spec, trust_vars[i]) == NULL);
    CHECK(mount_at(spec, RC_OCI_DEFAULT_CA_DIR) == NULL);
    CHECK(mount_at(spec, "/etc/ssl/certs/ca-certificates.crt") == NULL);
}

TEST(spec_with_ca)
{
    rc_oci_config c;
    rc_oci_bind binds[] = {
        {"/var/lib/runcell/tls/s/ca-bundle.pem", "/etc/ssl/certs/ca-certificates.crt"},
        {"/var/lib/runcell/tls/s/anchors-0", "/usr/local/share/ca-certificates"}};
    base_config(&c);
    c.ca_dir_host = "/var/lib/runcell/tls/s";
    c.ca_binds = binds;
    c.n_ca_binds = 2;
    _cleanup_json_ cJSON *spec = NULL;
    rc_error e = {0};
    REQUIRE(rc_oci_spec_build(&c, &spec, &e) == 0);
    for (size_t i = 0; trust_vars[i] && strcmp(trust_vars[i], "NODE_EXTRA_CA_CERTS"); i++)
        CHECK_STR(env_value(spec, trust_vars[i]), "/run/runcell-ca/ca-bundle.pem");
    CHECK_STR(env_value(spec, "NODE_EXTRA_CA_CERTS"), "/run/runcell-ca/ca.pem");
    CHECK_STR(env_value(spec, "NODE_USE_SYSTEM_CA"), "1");
    CHECK_STR(env_value(spec, "HTTPS_PROXY"), "http://127.0.0.1:3128");
    CHECK(mount_ro_bind(mount_at(spec, "/run/runcell-ca"), "/var/lib/runcell/tls/s"));
    CHECK(mount_ro_bind(mount_at(spec, "/etc/ssl/certs/ca-certificates.crt"),
                        "/var/lib/runcell/tls/s/ca-bundle.pem"));
    CHECK(mount_ro_bind(mount_at(spec, "/usr/local/share/ca-certificates"),
                        "/var/lib/runcell/tls/s/anchors-0"));

    /* the CA dir comes after /run (a tmpfs it lies in) */
    const cJSON *it;
    int idx = 0, run_at = -1, ca_at = -1;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(spec, "mounts"))
    {
        const char *d = cJSON_GetObjectItemCaseSensitive(it, "destination")->valuestring;
        if (!strcmp(d, "/run"))
            run_at = idx;
        if (!strcmp(d, "/run/runcell-ca"))
            ca_at = idx;
        idx++;
    }
    CHECK(run_at >= 0 && ca_at > run_at);
}

TEST(spec_refuses_bad_ca_binds)
{
    rc_oci_config c;
    rc_oci_bind bad[] = {{"/h/ca.pem", "/proc/self/x"}, {"/h/ca.pem", "/"},
                         {"relative", "/etc/x"},        {"/h/ca.pem", "/etc/../proc"},
                         {"/h/ca.pem", "/dev/null"},    {"/h/ca.pem", "/sys/kernel"}};
    rc_error e = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        base_config(&c);
        c.ca_dir_host = "/h";
        c.ca_binds = &bad[i];
        c.n_ca_binds = 1;
        CHECK_INT(rc_oci_config_validate(&c, &e), -RC_EINVAL);
    }
    base_config(&c);
    c.ca_binds = bad; /* binds without the dir */
    c.n_ca_binds = 1;
    CHECK_INT(rc_oci_config_validate(&c, &e), -RC_EINVAL);
    base_config(&c);
    c.ca_dir_host = "relative/dir";
    CHECK_INT(rc_oci_config_validate(&c, &e), -RC_EINVAL);
    base_config(&c);
    c.ca_dir_host = "/h";
    c.ca_binds = bad;
    c.n_ca_binds = RC_OCI_CA_BINDS_MAX + 1;
    CHECK_INT(rc_oci_config_validate(&c, &e), -RC_EINVAL);
}

/* ---- with the real broker CA: its certificate passes, its key never reaches the dir --------- */

TEST(real_ca_publishes_certificate_only)
{
    _cleanup_(rc_ca_freep) rc_ca *ca = NULL;
    _cleanup_(rc_buf_free) rc_buf pem = RC_BUF_INIT(RC_TLSTRUST_CA_PEM_MAX);
    rc_tlstrust_result res;
    rc_error e = {0};
    fixture f;
    int files = 0;

    if (rc_ca_new("sesn_unit_test", 3600, &ca, &e) < 0) {
        rc_test_fail(__FILE__, __LINE__, "rc_ca_new: %s", e.msg);
        return;
    }
    REQUIRE(rc_ca_cert_pem(ca, &pem, &e) == 0);
    CHECK_INT(rc_tlstrust_cert_check(pem.data, pem.len, &e), 0);
    REQUIRE(fixture_make(&f) == 0);
    REQUIRE(rc_tlstrust_prepare(f.root, f.dir, pem.data, pem.len, false, &res, &e) == 0);
    CHECK_INT(scan_only_certs(f.dir, &files), 0);
    CHECK(files >= 3);
    char p[700];
    snprintf(p, sizeof p, "%s/ca.pem", f.dir);
    _cleanup_free_ char *got = slurp(p);
    CHECK_STR(got, rc_buf_cstr(&pem));
    rm_rf(f.base);
}

/* ---- the setting --------------------------------------------------------------------------- */

TEST(config_tls_intercept)
{
    rc_launcher_config c;
    rc_error e = {0};
    unsetenv("RUNCELL_TLS_INTERCEPT");
    REQUIRE(rc_launcher_config_load(NULL, &c, &e) == 0);
    CHECK(c.tls_intercept); /* on by default */
    setenv("RUNCELL_TLS_INTERCEPT", "0", 1);
    REQUIRE(rc_launcher_config_load(NULL, &c, &e) == 0);
    CHECK(!c.tls_intercept);
    setenv("RUNCELL_TLS_INTERCEPT", "1", 1);
    REQUIRE(rc_launcher_config_load(NULL, &c, &e) == 0);
    CHECK(c.tls_intercept);
    static const char *const bad[] = {"yes", "true", "2", "00", " 1", NULL};
    for (size_t i = 0; bad[i]; i++) {
        setenv("RUNCELL_TLS_INTERCEPT", bad[i], 1);
        CHECK_INT(rc_launcher_config_load(NULL, &c, &e), -RC_EINVAL);
        CHECK(strstr(e.msg, "RUNCELL_TLS_INTERCEPT must be 0 or 1") != NULL);
    }
    unsetenv("RUNCELL_TLS_INTERCEPT");
    CHECK(strstr(rc_launcher_help(), "RUNCELL_TLS_INTERCEPT") != NULL);
}
