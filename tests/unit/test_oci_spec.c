/* test_oci_spec.c - config.json generation (oci/spec.h, oci/seccomp.c): the locked-down defaults,
 * every option's effect on the document, validation, and the credential refusal (which must hold
 * on every path into config.json and never quote the refused value). */
#include "harness.h"

#include "buf.h"
#include "cleanup.h"
#include "json.h"
#include "spec.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void base_config(rc_oci_config *c)
{
    rc_oci_config_init(c);
    c->session_id = "sesn_01ABCdef";
    c->rootfs = "/var/lib/runcell/bundles/sesn_01ABCdef/rootfs";
    c->workspace_host = "/var/lib/runcell/workspaces/sesn_01ABCdef/data";
    c->state_host = "/var/lib/runcell/bundles/sesn_01ABCdef/state";
}

static cJSON *build(const rc_oci_config *c)
{
    cJSON *spec = NULL;
    rc_error e = {0};
    if (rc_oci_spec_build(c, &spec, &e) < 0)
        rc_test_fail(__FILE__, __LINE__, "build failed: %s", e.msg);
    return spec;
}

static const cJSON *obj(const cJSON *j, const char *key)
{
    return j ? cJSON_GetObjectItemCaseSensitive(j, key) : NULL;
}

static const char *str(const cJSON *j, const char *key)
{
    const cJSON *v = obj(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *j, const char *key)
{
    const cJSON *v = obj(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -12345;
}

static bool has_string(const cJSON *arr, const char *s)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (cJSON_IsString(it) && strcmp(it->valuestring, s) == 0)
            return true;
    }
    return false;
}

static const cJSON *mount_at(const cJSON *spec, const char *dest)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj(spec, "mounts"))
    {
        const char *d = str(it, "destination");
        if (d && strcmp(d, dest) == 0)
            return it;
    }
    return NULL;
}

static const cJSON *namespace_of(const cJSON *spec, const char *type)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj(obj(spec, "linux"), "namespaces"))
    {
        const char *t = str(it, "type");
        if (t && strcmp(t, type) == 0)
            return it;
    }
    return NULL;
}

static const cJSON *syscall_rule(const cJSON *spec, const char *name)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj(obj(obj(spec, "linux"), "seccomp"), "syscalls"))
    {
        if (has_string(obj(it, "names"), name))
            return it;
    }
    return NULL;
}

static bool env_has(const cJSON *spec, const char *entry)
{
    return has_string(obj(obj(spec, "process"), "env"), entry);
}

static bool env_has_name(const cJSON *spec, const char *name)
{
    const cJSON *it;
    size_t n = strlen(name);
    cJSON_ArrayForEach(it, obj(obj(spec, "process"), "env"))
    {
        if (strncmp(it->valuestring, name, n) == 0 && it->valuestring[n] == '=')
            return true;
    }
    return false;
}

/* ---- defaults -------------------------------------------------------------------------------- */

TEST(defaults_top_level)
{
    rc_oci_config c;
    base_config(&c);
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    CHECK_STR(str(s, "ociVersion"), "1.0.2");
    CHECK_STR(str(obj(s, "root"), "path"), c.rootfs);
    CHECK(cJSON_IsTrue(obj(obj(s, "root"), "readonly")));
    CHECK_STR(str(s, "hostname"), "rc-sesn-01ABCdef");
}

TEST(defaults_namespaces_and_idmaps)
{
    rc_oci_config c;
    base_config(&c);
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    static const char *const types[] = {"pid", "ipc", "uts", "mount", "user", "cgroup", "network"};
    for (size_t i = 0; i < 7; i++) {
        const cJSON *ns = namespace_of(s, types[i]);
        CHECK(ns != NULL);
        CHECK(obj(ns, "path") == NULL); /* all new */
    }
    CHECK_INT(cJSON_GetArraySize(obj(obj(s, "linux"), "namespaces")), 7);
    const cJSON *um = cJSON_GetArrayItem(obj(obj(s, "linux"), "uidMappings"), 0);
    const cJSON *gm = cJSON_GetArrayItem(obj(obj(s, "linux"), "gidMappings"), 0);
    CHECK_INT(num(um, "containerID"), 0);
    CHECK_INT(num(um, "hostID"), 100000);
    CHECK_INT(num(um, "size"), 65536);
    CHECK_INT(num(gm, "hostID"), 100000);
    CHECK_INT(cJSON_GetArraySize(obj(obj(s, "linux"), "uidMappings")), 1);
}

TEST(defaults_process)
{
    rc_oci_config c;
    base_config(&c);
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    const cJSON *p = obj(s, "process");
    CHECK(cJSON_IsFalse(obj(p, "terminal")));
    CHECK(cJSON_IsTrue(obj(p, "noNewPrivileges")));
    CHECK_INT(num(obj(p, "user"), "uid"), 0);
    CHECK_INT(num(obj(p, "user"), "gid"), 0);
    CHECK_STR(str(p, "cwd"), "/workspace");
    CHECK_STR(cJSON_GetArrayItem(obj(p, "args"), 0)->valuestring, RC_OCI_DEFAULT_RUNNER_PATH);
    CHECK_INT(num(p, "oomScoreAdj"), 500);
    const cJSON *caps = obj(p, "capabilities");
    static const char *const sets[] = {"bounding", "effective", "permitted"};
    for (size_t i = 0; i < 3; i++) {
        const cJSON *set = obj(caps, sets[i]);
        CHECK_INT(cJSON_GetArraySize(set), 3);
        CHECK(has_string(set, "CAP_SETUID"));
        CHECK(has_string(set, "CAP_SETGID"));
        CHECK(has_string(set, "CAP_KILL"));
    }
    CHECK_INT(cJSON_GetArraySize(obj(caps, "inheritable")), 0);
    CHECK_INT(cJSON_GetArraySize(obj(caps, "ambient")), 0);
    const cJSON *rl = obj(p, "rlimits");
    CHECK_STR(str(cJSON_GetArrayItem(rl, 0), "type"), "RLIMIT_NOFILE");
    CHECK_INT(num(cJSON_GetArrayItem(rl, 0), "hard"), 4096);
    CHECK_STR(str(cJSON_GetArrayItem(rl, 1), "type"), "RLIMIT_NPROC");
    CHECK_INT(num(cJSON_GetArrayItem(rl, 1), "soft"), 1024);
}

TEST(defaults_env_is_minimal)
{
    rc_oci_config c;
    base_config(&c);
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    CHECK(env_has(s, "ANTHROPIC_SESSION_ID=sesn_01ABCdef"));
    CHECK(env_has(s, "RUNCELL_WORKDIR=/workspace"));
    CHECK(env_has(s, "RUNCELL_TOOL_UID=1000"));
    CHECK(env_has(s, "RUNCELL_TOOL_GID=1000"));
    CHECK(env_has(s, "HOME=/workspace"));
    CHECK(env_has_name(s, "PATH"));
    /* Unset inputs are left out, never written empty. */
    CHECK(!env_has_name(s, "ANTHROPIC_BASE_URL"));
    CHECK(!env_has_name(s, "RUNCELL_API_SOCKET"));
    CHECK(!env_has_name(s, "HTTP_PROXY"));
    CHECK(!env_has_name(s, "RUNCELL_MAX_IDLE_MS"));
    CHECK_INT(cJSON_GetArraySize(obj(obj(s, "process"), "env")), 7);
}

TEST(defaults_mounts)
{
    rc_oci_config c;
    base_config(&c);
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    const cJSON *ws = mount_at(s, "/workspace");
    REQUIRE(ws);
    CHECK_STR(str(ws, "type"), "bind");
    CHECK_STR(str(ws, "source"), c.workspace_host);
    CHECK(has_string(obj(ws, "options"), "rw"));
    CHECK(has_string(obj(ws, "options"), "nosuid"));
    const cJSON *st = mount_at(s, "/run/runcell");
    REQUIRE(st);
    CHECK_STR(str(st, "source"), c.state_host);
    CHECK(has_string(obj(st, "options"), "noexec"));
    const cJSON *tmp = mount_at(s, "/tmp");
    REQUIRE(tmp);
    CHECK_STR(str(tmp, "type"), "tmpfs");
    CHECK(has_string(obj(tmp, "options"), "size=268435456"));
    CHECK(mount_at(s, "/run") != NULL);
    const cJSON *sys = mount_at(s, "/sys");
    REQUIRE(sys);
    CHECK_STR(str(sys, "type"), "sysfs");
    CHECK(has_string(obj(sys, "options"), "ro"));
    CHECK(mount_at(s, "/sys/fs/cgroup") != NULL);
    CHECK(mount_at(s, "/proc") != NULL);
    CHECK(mount_at(s, RC_OCI_DEFAULT_API_DIR) == NULL); /* no API dir unless given */
}

TEST(defaults_masked_and_readonly_paths)
{
    rc_oci_config c;
    base_config(&c);
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    const cJSON *m = obj(obj(s, "linux"), "maskedPaths");
    static const char *const want[] = {
        "/proc/kcore", "/proc/keys", "/proc/timer_list",    "/proc/sched_debug", "/sys/firmware",
        "/proc/scsi",  "/proc/acpi", "/proc/latency_stats", "/proc/timer_stats"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(has_string(m, want[i]));
    const cJSON *ro = obj(obj(s, "linux"), "readonlyPaths");
    CHECK(has_string(ro, "/proc/sys"));
    CHECK(has_string(ro, "/proc/sysrq-trigger"));
    CHECK(has_string(ro, "/proc/bus"));
}

TEST(defaults_resources)
{
    rc_oci_config c;
    base_config(&c);
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    const cJSON *res = obj(obj(s, "linux"), "resources");
    CHECK_INT(num(obj(res, "memory"), "limit"), 2048ll << 20);
    CHECK_INT(num(obj(res, "memory"), "swap"), 2048ll << 20); /* memory + 0 swap */
    CHECK_INT(num(obj(res, "pids"), "limit"), 512);
    CHECK_INT(num(obj(res, "cpu"), "quota"), 100000);
    CHECK_INT(num(obj(res, "cpu"), "period"), 100000);
    const cJSON *dev = cJSON_GetArrayItem(obj(res, "devices"), 0);
    CHECK(cJSON_IsFalse(obj(dev, "allow")));
    CHECK_STR(str(dev, "access"), "rwm");
    CHECK_STR(str(obj(s, "linux"), "cgroupsPath"), "/runcell/sesn_01ABCdef");
}

TEST(seccomp_profile)
{
    rc_oci_config c;
    base_config(&c);
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    const cJSON *sc = obj(obj(s, "linux"), "seccomp");
    CHECK_STR(str(sc, "defaultAction"), "SCMP_ACT_ERRNO");
    CHECK_INT(cJSON_GetArraySize(obj(sc, "architectures")), 1);
    const cJSON *read = syscall_rule(s, "read");
    REQUIRE(read);
    CHECK_STR(str(read, "action"), "SCMP_ACT_ALLOW");
    CHECK(syscall_rule(s, "setresuid") != NULL);
    CHECK(syscall_rule(s, "setfsuid") != NULL);
    /* never allowed: namespaces, mounts, modules, io_uring, bpf, keyring, reboot */
    static const char *const denied[] = {"mount",
                                         "umount2",
                                         "unshare",
                                         "setns",
                                         "init_module",
                                         "io_uring_setup",
                                         "bpf",
                                         "keyctl",
                                         "add_key",
                                         "reboot",
                                         "kexec_load",
                                         "pivot_root",
                                         "chroot",
                                         "open_by_handle_at",
                                         "perf_event_open",
                                         "userfaultfd",
                                         "swapon",
                                         "acct",
                                         "syslog",
                                         NULL};
    for (size_t i = 0; denied[i]; i++)
        if (syscall_rule(s, denied[i]))
            rc_test_fail(__FILE__, __LINE__, "%s is allowed", denied[i]);
    const cJSON *clone = syscall_rule(s, "clone");
    REQUIRE(clone);
    const cJSON *arg = cJSON_GetArrayItem(obj(clone, "args"), 0);
    CHECK_STR(str(arg, "op"), "SCMP_CMP_MASKED_EQ");
    CHECK_INT(num(arg, "value"), 2114060288);
    const cJSON *clone3 = syscall_rule(s, "clone3");
    REQUIRE(clone3);
    CHECK_STR(str(clone3, "action"), "SCMP_ACT_ERRNO");
    CHECK_INT(num(clone3, "errnoRet"), 38);
    const cJSON *sock = syscall_rule(s, "socket");
    REQUIRE(sock);
    CHECK_STR(str(cJSON_GetArrayItem(obj(sock, "args"), 0), "op"), "SCMP_CMP_NE");
    CHECK_INT(num(cJSON_GetArrayItem(obj(sock, "args"), 0), "value"), 40);
}

/* ---- options --------------------------------------------------------------------------------- */

TEST(option_joined_netns)
{
    rc_oci_config c;
    base_config(&c);
    c.netns_path = "/run/netns/broker";
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    CHECK_STR(str(namespace_of(s, "network"), "path"), "/run/netns/broker");
    CHECK_STR(str(mount_at(s, "/sys"), "type"), "tmpfs");
    CHECK(mount_at(s, "/sys/fs/cgroup") == NULL);
}

TEST(option_writable_root_and_limits)
{
    rc_oci_config c;
    base_config(&c);
    c.writable_root = true;
    c.memory_limit = 256ll << 20;
    c.swap_limit = -1;
    c.pids_limit = 0;
    c.cpu_quota = 0;
    c.tmp_size = 64ull << 20;
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    CHECK(cJSON_IsFalse(obj(obj(s, "root"), "readonly")));
    const cJSON *res = obj(obj(s, "linux"), "resources");
    CHECK_INT(num(obj(res, "memory"), "limit"), 256ll << 20);
    CHECK(obj(obj(res, "memory"), "swap") == NULL);
    CHECK(obj(res, "pids") == NULL);
    CHECK(obj(res, "cpu") == NULL);
    CHECK(has_string(obj(mount_at(s, "/tmp"), "options"), "size=67108864"));
}

TEST(option_swap_adds_to_memory)
{
    rc_oci_config c;
    base_config(&c);
    c.memory_limit = 100ll << 20;
    c.swap_limit = 50ll << 20;
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    CHECK_INT(num(obj(obj(obj(s, "linux"), "resources"), "memory"), "swap"), 150ll << 20);
}

TEST(option_runner_inputs_and_api_dir)
{
    rc_oci_config c;
    const char *extra[] = {"TZ=UTC", NULL};
    const char *args[] = {"/bin/oci_probe", "report", NULL};
    base_config(&c);
    c.environment_id = "env_abc";
    c.work_id = "work_def";
    c.base_url = "http://broker.internal";
    c.api_dir_host = "/run/runcell/api/sesn_01ABCdef";
    c.max_idle_ms = 30000;
    c.log_level = "debug";
    c.http_proxy = "http://proxy:3128";
    c.no_proxy = "localhost";
    c.extra_env = extra;
    c.args = args;
    c.hostname = "agent-box";
    c.agent_uid = 2000;
    c.agent_gid = 2001;
    c.map_host_uid = 300000;
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    CHECK(env_has(s, "ANTHROPIC_ENVIRONMENT_ID=env_abc"));
    CHECK(env_has(s, "ANTHROPIC_WORK_ID=work_def"));
    CHECK(env_has(s, "ANTHROPIC_BASE_URL=http://broker.internal"));
    CHECK(env_has(s, "RUNCELL_API_SOCKET=/run/runcell-api/api.sock"));
    CHECK(env_has(s, "RUNCELL_MAX_IDLE_MS=30000"));
    CHECK(env_has(s, "RUNCELL_LOG_LEVEL=debug"));
    CHECK(env_has(s, "HTTP_PROXY=http://proxy:3128"));
    CHECK(env_has(s, "http_proxy=http://proxy:3128"));
    CHECK(env_has(s, "NO_PROXY=localhost"));
    CHECK(env_has(s, "ALL_PROXY=http://proxy:3128"));
    CHECK(env_has(s, "all_proxy=http://proxy:3128"));
    CHECK(env_has(s, "NODE_USE_ENV_PROXY=1"));
    CHECK(env_has(s, "TZ=UTC"));
    CHECK(env_has(s, "RUNCELL_TOOL_UID=2000"));
    CHECK(env_has(s, "RUNCELL_TOOL_GID=2001"));
    const cJSON *api = mount_at(s, "/run/runcell-api");
    REQUIRE(api);
    CHECK(has_string(obj(api, "options"), "ro"));
    CHECK_STR(str(api, "source"), c.api_dir_host);
    CHECK_STR(cJSON_GetArrayItem(obj(obj(s, "process"), "args"), 1)->valuestring, "report");
    CHECK_STR(str(s, "hostname"), "agent-box");
    CHECK_INT(num(cJSON_GetArrayItem(obj(obj(s, "linux"), "uidMappings"), 0), "hostID"), 300000);
    CHECK_INT(num(cJSON_GetArrayItem(obj(obj(s, "linux"), "gidMappings"), 0), "hostID"), 100000);
}

TEST(default_hostname_is_cut)
{
    rc_oci_config c;
    char id[129];
    memset(id, 'a', 128);
    id[128] = '\0';
    base_config(&c);
    c.session_id = id;
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    CHECK_INT(strlen(str(s, "hostname")), RC_OCI_HOSTNAME_MAX);
}

/* ---- validation ------------------------------------------------------------------------------ */

static void expect_invalid(const rc_oci_config *c, const char *why)
{
    cJSON *s = NULL;
    rc_error e = {0};
    int r = rc_oci_spec_build(c, &s, &e);
    if (r != -RC_EINVAL)
        rc_test_fail(__FILE__, __LINE__, "%s: build returned %d, want -RC_EINVAL", why, r);
    if (s)
        cJSON_Delete(s);
    if (!e.msg[0])
        rc_test_fail(__FILE__, __LINE__, "%s: no message", why);
}

TEST(validation)
{
    rc_oci_config c;
#define INVALID(field, value)                                                                      \
    do {                                                                                           \
        base_config(&c);                                                                           \
        c.field = value;                                                                           \
        expect_invalid(&c, #field " = " #value);                                                   \
    } while (0)
    INVALID(session_id, NULL);
    INVALID(session_id, "");
    INVALID(session_id, "../etc");
    INVALID(session_id, "-rf");
    INVALID(session_id, "a b");
    INVALID(hostname, "bad host");
    INVALID(rootfs, NULL);
    INVALID(rootfs, "relative/root");
    INVALID(rootfs, "/a/../b");
    INVALID(rootfs, "/a/./b");
    INVALID(workspace_host, "/a,b");
    INVALID(state_host, "/a\nb");
    INVALID(netns_path, "netns");
    INVALID(map_host_uid, 0);
    INVALID(map_size, 0);
    INVALID(map_host_gid, 4294967000u);
    INVALID(agent_uid, 0);
    INVALID(agent_uid, 65536);
    INVALID(runner_gid, 70000);
    INVALID(runner_uid, 990);
    INVALID(memory_limit, 1024);
    INVALID(cpu_period, 10);
    INVALID(nofile, 1);
    INVALID(tmp_size, 0);
    INVALID(oom_score_adj, 2000);
    INVALID(api_socket_name, "a/b");
    static const char *const relative[] = {"oci_probe", NULL};
    static const char *const empty[] = {NULL};
    INVALID(args, relative);
    INVALID(args, empty);
#undef INVALID
}

/* ---- credentials ----------------------------------------------------------------------------- */

static void expect_refused(const rc_oci_config *c, const char *secret)
{
    cJSON *s = NULL;
    rc_error e = {0};
    int r = rc_oci_spec_build(c, &s, &e);
    if (r != -RC_EINVAL)
        rc_test_fail(__FILE__, __LINE__, "credential %s accepted (%d)", secret, r);
    if (s)
        cJSON_Delete(s);
    if (strstr(e.msg, secret))
        rc_test_fail(__FILE__, __LINE__, "message quotes the credential: %s", e.msg);
}

TEST(credentials_refused_everywhere)
{
    rc_oci_config c;
    base_config(&c);
    c.base_url = "http://h/sk-ant-api03-SECRET1";
    expect_refused(&c, "SECRET1");
    base_config(&c);
    c.environment_id = "whsec_SECRET2";
    expect_refused(&c, "SECRET2");
    base_config(&c);
    c.https_proxy = "http://user:SECRET3@proxy:3128";
    expect_refused(&c, "SECRET3");
    base_config(&c);
    c.base_url = "https://tok:SECRET4@api";
    expect_refused(&c, "SECRET4");
    base_config(&c);
    const char *e1[] = {"FOO=bar", "X=prefix-sk-ant-admin01-SECRET5", NULL};
    c.extra_env = e1;
    expect_refused(&c, "SECRET5");
    base_config(&c);
    const char *e2[] = {"ANTHROPIC_API_KEY=SECRET6", NULL};
    c.extra_env = e2;
    expect_refused(&c, "SECRET6");
    base_config(&c);
    const char *e3[] = {"ANTHROPIC_WORK_SECRET=SECRET7", NULL};
    c.extra_env = e3;
    expect_refused(&c, "SECRET7");
    base_config(&c);
    const char *e4[] = {"AUTH=Bearer SECRET8", NULL};
    c.extra_env = e4;
    expect_refused(&c, "SECRET8");
    base_config(&c);
    const char *a1[] = {"/bin/sh", "-c", "curl -H 'x-api-key: sk-ant-SECRET9'", NULL};
    c.args = a1;
    expect_refused(&c, "SECRET9");
    base_config(&c);
    const char *e5[] = {"=noname", NULL};
    c.extra_env = e5;
    expect_refused(&c, "noname");
}

TEST(env_check)
{
    CHECK_INT(rc_oci_env_check("PATH=/bin", NULL), 0);
    CHECK_INT(rc_oci_env_check("_X1=", NULL), 0);
    CHECK_INT(rc_oci_env_check("1X=a", NULL), -RC_EINVAL);
    CHECK_INT(rc_oci_env_check("A-B=a", NULL), -RC_EINVAL);
    CHECK_INT(rc_oci_env_check("NOEQUALS", NULL), -RC_EINVAL);
    CHECK_INT(rc_oci_env_check(NULL, NULL), -RC_EINVAL);
    CHECK_INT(rc_oci_env_check("ANTHROPIC_ENVIRONMENT_KEY=x", NULL), -RC_EINVAL);
    CHECK_INT(rc_oci_env_check("ANTHROPIC_AUTH_TOKEN=x", NULL), -RC_EINVAL);
    CHECK_INT(rc_oci_env_check("ANTHROPIC_SESSION_ID=sesn_1", NULL), 0);
    CHECK_INT(rc_oci_value_check("x bearer y", NULL), -RC_EINVAL);
    CHECK_INT(rc_oci_value_check(NULL, NULL), 0);
}

/* ---- writing --------------------------------------------------------------------------------- */

static int tmpdir_open(char *path, size_t n)
{
    snprintf(path, n, "/tmp/rc-test-oci-spec.XXXXXX");
    if (!mkdtemp(path))
        return -1;
    return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static void tmpdir_remove(const char *path, int fd)
{
    (void)unlinkat(fd, "config.json", 0);
    (void)unlinkat(fd, ".config.json.tmp", 0);
    close(fd);
    rmdir(path);
}

TEST(write_is_private_and_parses_back)
{
    char dir[64];
    rc_oci_config c;
    rc_error e = {0};
    int fd = tmpdir_open(dir, sizeof dir);
    REQUIRE(fd >= 0);
    base_config(&c);
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    CHECK_INT(rc_oci_spec_write(s, fd, "config.json", &e), 0);
    struct stat st;
    CHECK_INT(fstatat(fd, "config.json", &st, 0), 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    CHECK(faccessat(fd, ".config.json.tmp", F_OK, 0) < 0);
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "re");
    REQUIRE(f);
    static char text[1 << 17];
    size_t n = fread(text, 1, sizeof text, f);
    fclose(f);
    _cleanup_json_ cJSON *back = NULL;
    rc_json_limits lim = {.max_size = sizeof text, .max_depth = 32};
    CHECK_INT(rc_json_parse(text, n, &lim, &back, &e), 0);
    CHECK_STR(str(back, "ociVersion"), "1.0.2");
    tmpdir_remove(dir, fd);
}

TEST(write_rechecks_an_edited_tree)
{
    char dir[64];
    rc_oci_config c;
    rc_error e = {0};
    int fd = tmpdir_open(dir, sizeof dir);
    REQUIRE(fd >= 0);
    base_config(&c);
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    cJSON *env = (cJSON *)obj(obj(s, "process"), "env");
    cJSON_AddItemToArray(env, cJSON_CreateString("SNEAKY=sk-ant-api03-SECRETX"));
    CHECK_INT(rc_oci_spec_write(s, fd, "config.json", &e), -RC_EINVAL);
    CHECK(strstr(e.msg, "SECRETX") == NULL);
    CHECK(faccessat(fd, "config.json", F_OK, 0) < 0);
    CHECK_INT(rc_oci_spec_write(s, fd, "../x", &e), -RC_EINVAL);
    tmpdir_remove(dir, fd);
}

TEST(set_args)
{
    rc_oci_config c;
    rc_error e = {0};
    base_config(&c);
    _cleanup_json_ cJSON *s = build(&c);
    REQUIRE(s);
    const char *args[] = {"/bin/sh", "-c", "echo hi", NULL};
    CHECK_INT(rc_oci_spec_set_args(s, args, &e), 0);
    const cJSON *a = obj(obj(s, "process"), "args");
    CHECK_INT(cJSON_GetArraySize(a), 3);
    CHECK_STR(cJSON_GetArrayItem(a, 2)->valuestring, "echo hi");
    const char *bad[] = {"/bin/sh", "-c", "echo whsec_abc", NULL};
    CHECK_INT(rc_oci_spec_set_args(s, bad, &e), -RC_EINVAL);
    CHECK_STR(cJSON_GetArrayItem(obj(obj(s, "process"), "args"), 2)->valuestring, "echo hi");
    const char *rel[] = {"sh", NULL};
    CHECK_INT(rc_oci_spec_set_args(s, rel, &e), -RC_EINVAL);
}

TEST(session_id_shape)
{
    CHECK(rc_oci_session_id_valid("sesn_011CZkZAtmR3yMPDzynEDxu7"));
    CHECK(rc_oci_session_id_valid("a-b_c"));
    CHECK(!rc_oci_session_id_valid("."));
    CHECK(!rc_oci_session_id_valid("a/b"));
    CHECK(!rc_oci_session_id_valid("-a"));
    CHECK(!rc_oci_session_id_valid(NULL));
}
