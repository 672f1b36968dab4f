/* forward.c - the forwardURL key and token (see forward.h). The claims are built with snprintf
 * from values checked here (no quote or backslash can reach them), then base64url-encoded and
 * signed with OpenSSL's HMAC. */
#include "forward.h"

#include "base64.h"
#include "cleanup.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int rc_forward_key_load(const char *path, rc_forward_key *ret, rc_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    rc_forward_key k = {0};
    struct stat st;
    ssize_t n;

    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "forward key: cannot open %s", path);
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "forward key: %s is not a regular file", path);
    if (st.st_mode & 077)
        return rc_error_set(err, RC_EINVAL,
                            "forward key: %s is readable by group or others (chmod 0600)", path);
    n = read(fd, k.bytes, sizeof k.bytes);
    if (n < 0)
        return rc_error_sys(err, RC_EIO, "forward key: cannot read %s", path);
    k.len = (size_t)n;
    if (k.len == sizeof k.bytes) {
        explicit_bzero(&k, sizeof k);
        return rc_error_set(err, RC_ETOOBIG, "forward key: %s is larger than %u bytes", path,
                            RC_FORWARD_KEY_MAX - 1);
    }
    while (k.len && (k.bytes[k.len - 1] == '\n' || k.bytes[k.len - 1] == '\r'))
        k.len--;
    if (k.len < RC_FORWARD_KEY_MIN) {
        explicit_bzero(&k, sizeof k);
        return rc_error_set(err, RC_EINVAL, "forward key: %s holds fewer than %u bytes", path,
                            RC_FORWARD_KEY_MIN);
    }
    *ret = k;
    explicit_bzero(&k, sizeof k);
    return 0;
}

void rc_forward_key_clear(rc_forward_key *k)
{
    explicit_bzero(k, sizeof *k);
}

static bool claim_text_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
            return false;
    return true;
}

/* Append base64url(data) to out at *pos. */
static int put_b64(const void *data, size_t n, char *out, size_t outsz, size_t *pos, rc_error *err)
{
    int len =
        rc_base64_encode(data, n, RC_BASE64_URL | RC_BASE64_NOPAD, out + *pos, outsz - *pos, err);
    if (len < 0)
        return len;
    *pos += (size_t)len;
    return 0;
}

int rc_forward_token(const rc_forward_key *k, const char *session_id, const char *aud, int64_t now,
                     char *out, size_t outsz, rc_error *err)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    unsigned char nonce[16], mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    char claims[1024], jti[33];
    size_t pos = 0;
    int n, r;

    if (!claim_text_ok(session_id, 128) || !claim_text_ok(aud, 512))
        return rc_error_set(err, RC_EINVAL, "forward token: session id or URL not printable");
    if (RAND_bytes(nonce, sizeof nonce) != 1)
        return rc_error_set(err, RC_EIO, "forward token: no randomness");
    for (size_t i = 0; i < sizeof nonce; i++)
        snprintf(jti + 2 * i, 3, "%02x", nonce[i]);
    n = snprintf(claims, sizeof claims,
                 "{\"iss\":\"runcell\",\"aud\":\"%s\",\"sid\":\"%s\",\"iat\":%lld,\"exp\":%lld,"
                 "\"jti\":\"%s\"}",
                 aud, session_id, (long long)now, (long long)now + RC_FORWARD_TOKEN_TTL, jti);
    if (n < 0 || (size_t)n >= sizeof claims)
        return rc_error_set(err, RC_ETOOBIG, "forward token: claims too long");
    r = put_b64(header, sizeof header - 1, out, outsz, &pos, err);
    if (r >= 0 && pos + 1 < outsz)
        out[pos++] = '.';
    if (r >= 0)
        r = put_b64(claims, (size_t)n, out, outsz, &pos, err);
    if (r < 0)
        return r;
    if (!HMAC(EVP_sha256(), k->bytes, (int)k->len, (const unsigned char *)out, pos, mac, &mac_len))
        return rc_error_set(err, RC_EIO, "forward token: HMAC failed");
    if (pos + 1 >= outsz)
        return rc_error_set(err, RC_ETOOBIG, "forward token: buffer too small");
    out[pos++] = '.';
    r = put_b64(mac, mac_len, out, outsz, &pos, err);
    explicit_bzero(mac, sizeof mac);
    return r < 0 ? r : (int)pos;
}
