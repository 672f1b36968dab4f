/* oci_probe - reports, from inside a session container, what the OCI tests assert.
 *
 * Built -static by tests/integration/oci_*.sh so it runs in a busybox rootfs without a libc.
 * It starts as the container's process (the runner's uid, with the kept capabilities), prints
 * what the runner has, then switches to the agent uid exactly as the runner does before a tool
 * (setgroups + setresgid + setresuid, ids from RUNCELL_TOOL_UID/GID) and prints what a tool has.
 * One "key=value" line per fact, so the shell test can grep.
 *
 *   oci_probe                report (the default)
 *   oci_probe forkbomb       as the agent, fork until refused; report how many
 *   oci_probe memhog MB      as the agent, a child touches MB MiB; report how it ended
 *   oci_probe sleep S        sleep S seconds (for the wall-clock kill test)
 *   oci_probe exit N         exit with status N
 *   oci_probe as-agent CMD.. switch to the agent uid and exec CMD (like the runner's tools) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

static void status_field(const char *prefix, const char *field)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "re");
    size_t n = strlen(field);
    if (!f) {
        printf("%s%s=unreadable\n", prefix, field);
        return;
    }
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            char *v = line + n + 1;
            v += strspn(v, " \t");
            v[strcspn(v, "\n")] = '\0';
            printf("%s%s=%s\n", prefix, field, v);
        }
    }
    fclose(f);
}

static void creds(const char *prefix)
{
    static const char *const fields[] = {"CapInh", "CapPrm",     "CapEff",  "CapBnd",
                                         "CapAmb", "NoNewPrivs", "Seccomp", NULL};
    printf("%suid=%d\n%sgid=%d\n", prefix, (int)geteuid(), prefix, (int)getegid());
    for (size_t i = 0; fields[i]; i++)
        status_field(prefix, fields[i]);
}

static void idmap(const char *name)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/%s", name);
    FILE *f = fopen(path, "re");
    if (!f || !fgets(line, sizeof line, f)) {
        printf("%s=unreadable\n", name);
        if (f)
            fclose(f);
        return;
    }
    fclose(f);
    unsigned long a, b, c;
    if (sscanf(line, "%lu %lu %lu", &a, &b, &c) == 3)
        printf("%s=%lu %lu %lu\n", name, a, b, c);
}

/* Masked: a character device (/dev/null bound over a file) or an empty read-only directory. */
static void masked(const char *key, const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        printf("%s=absent\n", key);
        return;
    }
    if (S_ISCHR(st.st_mode)) {
        char b;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, &b, 1) : -1;
        if (fd >= 0)
            close(fd);
        printf("%s=%s\n", key, n == 0 ? "masked" : "readable");
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        int entries = 0;
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                entries++;
        if (d)
            closedir(d);
        printf("%s=%s\n", key, entries == 0 ? "masked" : "readable");
        return;
    }
    printf("%s=readable\n", key);
}

static void try_write(const char *key, const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/.oci_probe_%d", dir, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        printf("%s=%s\n", key, errno == EROFS ? "ro" : strerror(errno));
        return;
    }
    close(fd);
    unlink(path);
    printf("%s=rw\n", key);
}

static void net_ifaces(void)
{
    char line[512], names[256] = "";
    FILE *f = fopen("/proc/net/dev", "re");
    int lineno = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (++lineno <= 2)
            continue;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        char *name = line + strspn(line, " ");
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s%s", used ? "," : "", name);
    }
    if (f)
        fclose(f);
    printf("net=%s\n", names);
}

static void mounts(void)
{
    char line[1024], out[4096] = "";
    FILE *f = fopen("/proc/self/mountinfo", "re");
    while (f && fgets(line, sizeof line, f)) {
        char mp[512];
        if (sscanf(line, "%*s %*s %*s %*s %511s", mp) != 1)
            continue;
        size_t used = strlen(out);
        snprintf(out + used, sizeof out - used, "%s%s", used ? " " : "", mp);
    }
    if (f)
        fclose(f);
    printf("mounts=%s\n", out);
}

/* "ro" when the mount at exactly this mount point is read-only. */
static void mount_ro(const char *key, const char *mountpoint)
{
    char line[1024], state[8] = "none";
    FILE *f = fopen("/proc/self/mountinfo", "re");
    while (f && fgets(line, sizeof line, f)) {
        char mp[512], opts[256];
        if (sscanf(line, "%*s %*s %*s %*s %511s %255s", mp, opts) != 2 || strcmp(mp, mountpoint))
            continue;
        snprintf(state, sizeof state, "%s",
                 strncmp(opts, "ro", 2) == 0 && (opts[2] == ',' || !opts[2]) ? "ro" : "rw");
    }
    if (f)
        fclose(f);
    printf("%s=%s\n", key, state);
}

static const char *errname(int e)
{
    switch (e) {
    case 0:
        return "OK";
    case EPERM:
        return "EPERM";
    case EACCES:
        return "EACCES";
    case ENOSYS:
        return "ENOSYS";
    case EINVAL:
        return "EINVAL";
    case EAGAIN:
        return "EAGAIN";
    default:
        return "other";
    }
}

static void syscalls(const char *prefix)
{
    int r = unshare(CLONE_NEWUSER);
    printf("%sunshare_user=%s\n", prefix, errname(r == 0 ? 0 : errno));
    r = mount("none", "/tmp", "tmpfs", 0, NULL);
    printf("%smount=%s\n", prefix, errname(r == 0 ? 0 : errno));
    r = (int)syscall(SYS_io_uring_setup, 1, NULL);
    printf("%sio_uring=%s\n", prefix, errname(r == 0 ? 0 : errno));
}

static int become_agent(void)
{
    const char *u = getenv("RUNCELL_TOOL_UID"), *g = getenv("RUNCELL_TOOL_GID");
    if (!u || !g) {
        printf("agent=no RUNCELL_TOOL_UID/GID\n");
        return -1;
    }
    uid_t uid = (uid_t)strtoul(u, NULL, 10);
    gid_t gid = (gid_t)strtoul(g, NULL, 10);
    if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
        printf("agent=switch failed: %s\n", strerror(errno));
        return -1;
    }
    printf("agent=switched\n");
    return 0;
}

static int report(void)
{
    struct utsname un;
    idmap("uid_map");
    idmap("gid_map");
    creds("runner.");
    if (uname(&un) == 0)
        printf("hostname=%s\n", un.nodename);
    masked("kcore", "/proc/kcore");
    masked("keys", "/proc/keys");
    masked("timer_list", "/proc/timer_list");
    masked("sched_debug", "/proc/sched_debug");
    masked("scsi", "/proc/scsi");
    masked("firmware", "/sys/firmware");
    try_write("root", "");
    mount_ro("proc_sys", "/proc/sys");
    mount_ro("proc_sysrq", "/proc/sysrq-trigger");
    try_write("runner.state", "/run/runcell");
    net_ifaces();
    mounts();
    syscalls("runner.");
    if (become_agent() == 0) {
        creds("agent.");
        try_write("agent.workspace", "/workspace");
        try_write("agent.tmp", "/tmp");
        try_write("agent.root", "");
        printf("agent.setuid0=%s\n", errname(setuid(0) == 0 ? 0 : errno));
        syscalls("agent.");
    }
    printf("done=1\n");
    return 0;
}

static int forkbomb(void)
{
    int made = 0, err = 0;
    if (become_agent() < 0)
        return 1;
    fflush(stdout);
    for (int i = 0; i < 100000; i++) {
        pid_t p = fork();
        if (p < 0) {
            err = errno;
            break;
        }
        if (p == 0) {
            pause();
            _exit(0);
        }
        made++;
    }
    printf("forkbomb.made=%d\nforkbomb.stopped_by=%s\n", made, errname(err));
    kill(0, SIGKILL); /* ourselves included: the container ends with every child */
    return 0;
}

static int memhog(long mb)
{
    if (become_agent() < 0)
        return 1;
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        for (long i = 0; i < mb; i++) {
            char *m =
                mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED)
                _exit(3);
            memset(m, 0x5a, 1 << 20);
            if (i % 16 == 0) {
                printf("memhog.touched_mb=%ld\n", i);
                fflush(stdout);
            }
        }
        _exit(0);
    }
    int st = 0;
    if (p < 0 || waitpid(p, &st, 0) < 0)
        return 1;
    if (WIFSIGNALED(st))
        printf("memhog.child=signal %d\n", WTERMSIG(st));
    else
        printf("memhog.child=exit %d\n", WEXITSTATUS(st));
    printf("memhog.survivor=1\n");
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2)
        return report();
    if (strcmp(argv[1], "forkbomb") == 0)
        return forkbomb();
    if (strcmp(argv[1], "memhog") == 0 && argc == 3)
        return memhog(strtol(argv[2], NULL, 10));
    if (strcmp(argv[1], "sleep") == 0 && argc == 3) {
        printf("sleeping\n");
        sleep((unsigned)strtoul(argv[2], NULL, 10));
        return 0;
    }
    if (strcmp(argv[1], "as-agent") == 0 && argc >= 3) {
        if (become_agent() < 0)
            return 1;
        fflush(stdout);
        execv(argv[2], argv + 2);
        fprintf(stderr, "exec %s: %s\n", argv[2], strerror(errno));
        return 127;
    }
    if (strcmp(argv[1], "exit") == 0 && argc == 3)
        return (int)strtol(argv[2], NULL, 10);
    fprintf(stderr, "usage: oci_probe [forkbomb | memhog MB | sleep S | exit N]\n");
    return 2;
}
