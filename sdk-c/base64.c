/* base64.c -- Go's base64.StdEncoding decoder, for Kubernetes []byte fields. */
#include "base64.h"

static int sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int vk_base64_decode(const char *in, size_t len, vk_buf *out)
{
    size_t start = out->len, n = 0, pad = 0;
    unsigned acc = 0;
    int rc = 0;
    if (vk_buf_append(out, "", 0) < 0)
        return -2;
    for (size_t i = 0; i < len && rc == 0; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '\r' || c == '\n')
            continue;
        int v = sextet(c);
        if (c == '=' && n % 4 >= 2 && pad < 2)
            pad++;
        else if (v < 0 || pad)
            rc = -1; /* not base64, or data after the padding */
        acc = acc << 6 | (unsigned)(v < 0 ? 0 : v);
        if (rc == 0 && ++n % 4 == 0) {
            unsigned char three[3] = {(unsigned char)(acc >> 16), (unsigned char)(acc >> 8),
                                      (unsigned char)acc};
            if (vk_buf_append(out, three, 3) < 0)
                rc = -2;
            acc = 0;
        }
    }
    if (rc == 0 && n % 4)
        rc = -1;
    if (rc == 0)
        out->len -= pad;
    else
        out->len = start;
    out->data[out->len] = '\0';
    return rc;
}
