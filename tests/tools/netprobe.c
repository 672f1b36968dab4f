/* netprobe - network attacks from inside a session container, for tests/integration/broker_*.sh.
 *
 * Built -static by the test (it runs in the minimal snapshot, which has no libc of its own) and
 * run as the agent uid (or the runner uid for the API channel checks). It never resolves a name:
 * every target is an IP literal or a socket path, so the only thing under test is whether a path
 * out exists. One "key=value" line per fact on stdout; the exit status says whether the attempt
 * got through (0) or was refused (1); 2 is a usage error.
 *
 *   netprobe tcp ADDR PORT     connect (IPv4 or IPv6 literal), send stdin, print the answer
 *                              (NETPROBE_HALF_CLOSE=1: shutdown(SHUT_WR) after stdin)
 *   netprobe unix PATH         connect to a unix socket, send stdin, print the answer
 *   netprobe udp ADDR PORT     send a DNS query for "plain.test" and wait 2 s for any answer
 *   netprobe raw ADDR          raw IPv4/ICMP, AF_PACKET and ICMP "ping" sockets; try to send an
 *                              echo request to ADDR with whichever opened
 *   netprobe ifaces            the network interfaces this namespace has */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define TIMEOUT_MS 3000

static int usage(void)
{
    fputs("usage: netprobe tcp ADDR PORT | unix PATH | udp ADDR PORT | raw ADDR | ifaces\n",
          stderr);
    return 2;
}

static const char *errname(int e)
{
    switch (e) {
    case EPERM:
        return "EPERM";
    case EACCES:
        return "EACCES";
    case ENETUNREACH:
        return "ENETUNREACH";
    case EHOSTUNREACH:
        return "EHOSTUNREACH";
    case ECONNREFUSED:
        return "ECONNREFUSED";
    case ETIMEDOUT:
        return "ETIMEDOUT";
    case EAFNOSUPPORT:
        return "EAFNOSUPPORT";
    case EPROTONOSUPPORT:
        return "EPROTONOSUPPORT";
    case EADDRNOTAVAIL:
        return "EADDRNOTAVAIL";
    case ENOENT:
        return "ENOENT";
    case EINVAL:
        return "EINVAL";
    case ENOSYS:
        return "ENOSYS";
    default:
        return "other";
    }
}

static int parse_port(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 1 || v > 65535)
        return -1;
    return (int)v;
}

/* ADDR PORT as a sockaddr; 0 or -1. */
static int make_addr(const char *a, const char *p, struct sockaddr_storage *ss, socklen_t *len)
{
    int port = parse_port(p);
    memset(ss, 0, sizeof *ss);
    if (port < 0)
        return -1;
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, a, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
        return 0;
    }
    if (inet_pton(AF_INET6, a, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
        return 0;
    }
    return -1;
}

/* Connect with a timeout; 0 or -errno. */
static int connect_timeout(int fd, const struct sockaddr *sa, socklen_t len)
{
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int e = 0;
    socklen_t elen = sizeof e;
    if (connect(fd, sa, len) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -errno;
    if (poll(&pfd, 1, TIMEOUT_MS) <= 0)
        return -ETIMEDOUT;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
        return -errno;
    return -e;
}

/* stdin to fd, then fd to stdout until EOF or TIMEOUT_MS of silence. */
static void exchange(int fd)
{
    char buf[8192];
    ssize_t n;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    while ((n = read(0, buf, sizeof buf)) > 0)
        if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
            break;
    /* Half-close only when asked (NETPROBE_HALF_CLOSE=1): requests carry "Connection: close"
     * and the server ends the exchange either way. */
    const char *hc = getenv("NETPROBE_HALF_CLOSE");
    if (hc && strcmp(hc, "1") == 0)
        shutdown(fd, SHUT_WR);
    while (poll(&pfd, 1, TIMEOUT_MS) > 0) {
        n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        fwrite(buf, 1, (size_t)n, stdout);
    }
    fflush(stdout);
}

static int cmd_stream(int family, const struct sockaddr *sa, socklen_t len, const char *what)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), r;
    if (fd < 0) {
        fprintf(stderr, "%s_socket=%s\n", what, errname(errno));
        return 1;
    }
    r = connect_timeout(fd, sa, len);
    if (r < 0) {
        fprintf(stderr, "%s_connect=%s\n", what, errname(-r));
        close(fd);
        return 1;
    }
    fprintf(stderr, "%s_connect=ok\n", what);
    if (fcntl(fd, F_SETFL, 0) < 0) /* blocking for the exchange */
        fprintf(stderr, "%s_fcntl=%s\n", what, errname(errno));
    exchange(fd);
    close(fd);
    return 0;
}

static int cmd_tcp(const char *a, const char *p)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (make_addr(a, p, &ss, &len) < 0)
        return usage();
    return cmd_stream(ss.ss_family, (struct sockaddr *)&ss, len, "tcp");
}

static int cmd_unix(const char *path)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof un.sun_path)
        return usage();
    memcpy(un.sun_path, path, strlen(path) + 1);
    return cmd_stream(AF_UNIX, (struct sockaddr *)&un, sizeof un, "unix");
}

/* A DNS query (id 0x5263, RD, one question: plain.test A IN). */
static const unsigned char dns_query[] = {
    0x52, 0x63, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 5,    'p',
    'l',  'a',  'i',  'n',  4,    't',  'e',  's',  't',  0,    0x00, 0x01, 0x00, 0x01};

static int cmd_udp(const char *a, const char *p)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char buf[512];
    if (make_addr(a, p, &ss, &len) < 0)
        return usage();
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        printf("udp_socket=%s\n", errname(errno));
        return 1;
    }
    if (sendto(fd, dns_query, sizeof dns_query, 0, (struct sockaddr *)&ss, len) < 0) {
        printf("udp_send=%s\n", errname(errno));
        close(fd);
        return 1;
    }
    printf("udp_send=ok\n");
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 2000) <= 0 || recv(fd, buf, sizeof buf, 0) <= 0) {
        printf("udp_answer=none\n");
        close(fd);
        return 1;
    }
    printf("udp_answer=yes\n");
    close(fd);
    return 0;
}

static unsigned short icmp_sum(const void *data, size_t len)
{
    const unsigned char *p = data;
    unsigned long sum = 0;
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (unsigned long)(p[i] << 8 | p[i + 1]);
    if (len & 1)
        sum += (unsigned long)p[len - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return htons((unsigned short)~sum);
}

/* Try to send an echo request on fd; 1 when the kernel accepted it. */
static int try_echo(int fd, const char *addr, const char *what)
{
    struct sockaddr_in to = {.sin_family = AF_INET};
    struct icmphdr h = {.type = ICMP_ECHO, .un.echo.id = htons(0x5263), .un.echo.sequence = 1};
    if (inet_pton(AF_INET, addr, &to.sin_addr) != 1)
        return 0;
    h.checksum = icmp_sum(&h, sizeof h);
    if (sendto(fd, &h, sizeof h, 0, (struct sockaddr *)&to, sizeof to) < 0) {
        printf("%s_send=%s\n", what, errname(errno));
        return 0;
    }
    printf("%s_send=ok\n", what);
    return 1;
}

static int cmd_raw(const char *addr)
{
    static const struct {
        const char *what;
        int family, type, proto;
        bool echo;
    } t[] = {
        {"raw_icmp", AF_INET, SOCK_RAW, IPPROTO_ICMP, true},
        {"raw_tcp", AF_INET, SOCK_RAW, IPPROTO_TCP, false},
        {"raw_ip6", AF_INET6, SOCK_RAW, IPPROTO_ICMPV6, false},
        {"packet", AF_PACKET, SOCK_RAW, 0, false},
        {"ping", AF_INET, SOCK_DGRAM, IPPROTO_ICMP, true},
    };
    int through = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int proto = t[i].family == AF_PACKET ? htons(ETH_P_ALL) : t[i].proto;
        int fd = socket(t[i].family, t[i].type | SOCK_CLOEXEC, proto);
        if (fd < 0) {
            printf("%s=%s\n", t[i].what, errname(errno));
            continue;
        }
        printf("%s=opened\n", t[i].what);
        if (t[i].echo)
            through |= try_echo(fd, addr, t[i].what);
        close(fd);
    }
    return through ? 0 : 1;
}

static int cmd_ifaces(void)
{
    struct ifaddrs *ifa, *i;
    int n = 0;
    if (getifaddrs(&ifa) < 0) {
        printf("ifaces=%s\n", errname(errno));
        return 1;
    }
    for (i = ifa; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_PACKET)
            continue;
        printf("iface=%s\n", i->ifa_name);
        n++;
    }
    freeifaddrs(ifa);
    printf("ifaces=%d\n", n);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "tcp") == 0)
        return cmd_tcp(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "unix") == 0)
        return cmd_unix(argv[2]);
    if (argc == 4 && strcmp(argv[1], "udp") == 0)
        return cmd_udp(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "raw") == 0)
        return cmd_raw(argv[2]);
    if (argc == 2 && strcmp(argv[1], "ifaces") == 0)
        return cmd_ifaces();
    return usage();
}
