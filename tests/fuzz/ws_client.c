/* ws_client.c -- see ws_client.h. */
#include "ws_client.h"

#include "fuzz.h"

static const uint8_t opcodes[] = {0x0, 0x1, 0x2, 0x8, 0x9, 0xa, 0x3, 0xb};

int ws_client_build(const uint8_t *ops, size_t len, vk_buf *out)
{
    fuzz_input in = {ops, len};
    int rc = 0;
    while (in.size && rc == 0) {
        uint8_t op = fuzz_byte(&in);
        uint8_t form = fuzz_byte(&in);
        size_t n = fuzz_byte(&in);
        if (n > in.size)
            n = in.size;
        if (op == 0xff) {
            rc = vk_buf_append(out, in.data, n);
        } else {
            bool masked = form != 0x01;
            uint8_t h[14];
            size_t hl = 0;
            h[hl++] = (uint8_t)((op & 0x08 ? 0 : 0x80) | (form == 0x02 ? 0x40 : 0) |
                                opcodes[op & 7]);
            uint8_t m = masked ? 0x80 : 0;
            switch (form >> 6) {
            case 2:
                h[hl++] = m | 126;
                h[hl++] = (uint8_t)(n >> 8);
                h[hl++] = (uint8_t)n;
                break;
            case 3:
                h[hl++] = m | 127;
                for (int i = 7; i >= 0; i--)
                    h[hl++] = (uint8_t)((uint64_t)n >> (8 * i));
                break;
            default:
                h[hl++] = m | (uint8_t)n;
                if (n > 125) {
                    /* 7 bits cannot say it: use 16. */
                    h[hl - 1] = m | 126;
                    h[hl++] = (uint8_t)(n >> 8);
                    h[hl++] = (uint8_t)n;
                }
                break;
            }
            uint8_t key[4] = {form, (uint8_t)(form ^ 0x5a), (uint8_t)(form + 1), 0x3c};
            if (masked) {
                for (int i = 0; i < 4; i++)
                    h[hl++] = key[i];
            }
            rc = vk_buf_append(out, h, hl);
            for (size_t i = 0; i < n && rc == 0; i++) {
                uint8_t b = in.data[i] ^ (masked ? key[i % 4] : 0);
                rc = vk_buf_append(out, &b, 1);
            }
        }
        in.data += n;
        in.size -= n;
    }
    return rc;
}
