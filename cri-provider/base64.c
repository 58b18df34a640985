/* base64.c -- decode the base64 of Kubernetes []byte fields (Secret data,
 * a docker config's "auth"): Go's base64.StdEncoding, padded, no line
 * breaks. */
#include "cri.h"

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

int cri_base64_decode(const char *in, size_t len, vk_buf *out)
{
    size_t start = out->len;
    if (len % 4)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        size_t pad = 0;
        for (size_t j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)in[i + j];
            /* Padding only in the last group, and only at its end. */
            if (c == '=' && i + 4 == len && j >= 2) {
                pad++;
                v[j] = 0;
                continue;
            }
            v[j] = pad ? -1 : sextet(c);
            if (v[j] < 0)
                goto bad;
        }
        unsigned char b[3] = {
            (unsigned char)(v[0] << 2 | v[1] >> 4),
            (unsigned char)((v[1] & 15) << 4 | v[2] >> 2),
            (unsigned char)((v[2] & 3) << 6 | v[3]),
        };
        if (vk_buf_append(out, b, 3 - pad) < 0)
            goto bad;
    }
    return 0;
bad:
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    return -1;
}
