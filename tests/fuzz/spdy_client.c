/* spdy_client.c -- see spdy_client.h. */
#include "spdy_client.h"

#include <string.h>
#include <zlib.h>

#include "fuzz.h"
#include "spdy.h"

enum op {
    OP_SYN_STREAM,
    OP_HEADERS,
    OP_DATA,
    OP_RST_STREAM,
    OP_PING,
    OP_SETTINGS,
    OP_WINDOW_UPDATE,
    OP_GOAWAY,
    OP_RAW,
    N_OPS
};

static const char *const names[] = {"streamtype", "port", "requestid", "x-other"};
static const char *const values[] = {
    "error", "stdin", "stdout", "stderr", "resize", "data", "8080", "80",
    "0",     "1",     "65535",  "65536",  "-1",     "",     "abc",  "0x50",
};

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t stream_id(uint8_t b)
{
    return b >= 0xf0 ? 2u * (b - 0xefu) : 2u * b + 1;
}

static int append32(vk_buf *b, uint32_t v)
{
    uint8_t p[4];
    put32(p, v);
    return vk_buf_append(b, p, 4);
}

/* A length byte and that many bytes of the description, appended to b
 * (with their length in front when prefixed, as in a header block). */
static int take_bytes(fuzz_input *in, vk_buf *b, bool prefixed)
{
    size_t n = fuzz_byte(in);
    if (n > in->size)
        n = in->size;
    int rc = prefixed ? append32(b, (uint32_t)n) : 0;
    rc |= vk_buf_append(b, in->data, n);
    in->data += n;
    in->size -= n;
    return rc;
}

/* The uncompressed header block of a SYN_STREAM or HEADERS operation. */
static int take_block(fuzz_input *in, bool raw, vk_buf *block)
{
    if (raw)
        return take_bytes(in, block, false);
    int count = fuzz_byte(in) % 9;
    int rc = append32(block, (uint32_t)count);
    for (int i = 0; i < count && rc == 0; i++) {
        uint8_t pair = fuzz_byte(in);
        if (pair == 0xff) {
            rc = take_bytes(in, block, true) | take_bytes(in, block, true);
            continue;
        }
        const char *name = names[(pair >> 4) % 4], *value = values[pair & 15];
        rc = append32(block, (uint32_t)strlen(name)) | vk_buf_puts(block, name) |
             append32(block, (uint32_t)strlen(value)) | vk_buf_puts(block, value);
    }
    return rc;
}

static int compress_block(z_stream *z, const vk_buf *block, vk_buf *out)
{
    z->next_in = (Bytef *)(block->data ? block->data : "");
    z->avail_in = (uInt)block->len;
    do {
        uint8_t chunk[1024];
        z->next_out = chunk;
        z->avail_out = sizeof chunk;
        if (deflate(z, Z_SYNC_FLUSH) == Z_STREAM_ERROR)
            return -1;
        if (vk_buf_append(out, chunk, sizeof chunk - z->avail_out) < 0)
            return -1;
    } while (z->avail_out == 0);
    return 0;
}

static int control(vk_buf *out, uint16_t type, uint8_t flags, const void *payload, size_t len)
{
    uint8_t h[8] = {0x80, SPDY_VERSION, (uint8_t)(type >> 8), (uint8_t)type};
    put32(h + 4, (uint32_t)len);
    h[4] = flags;
    return vk_buf_append(out, h, 8) | vk_buf_append(out, payload, len);
}

int spdy_client_build(const uint8_t *ops, size_t len, vk_buf *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit(&z, Z_DEFAULT_COMPRESSION) != Z_OK)
        return -1;
    if (deflateSetDictionary(&z, spdy_dictionary, (uInt)spdy_dictionary_len) != Z_OK) {
        deflateEnd(&z);
        return -1;
    }
    fuzz_input in = {ops, len};
    vk_buf block = VK_BUF_INIT, payload = VK_BUF_INIT;
    int rc = 0;
    while (in.size && rc == 0) {
        enum op op = (enum op)(fuzz_byte(&in) % N_OPS);
        uint8_t p[8];
        vk_buf_reset(&block);
        vk_buf_reset(&payload);
        switch (op) {
        case OP_SYN_STREAM:
        case OP_HEADERS: {
            uint32_t id = stream_id(fuzz_byte(&in));
            uint8_t flags = fuzz_byte(&in);
            put32(p, id);
            rc = vk_buf_append(&payload, p, 4);
            if (op == OP_SYN_STREAM) {
                /* Associated stream 0, priority from the flags' spare bits. */
                memset(p, 0, 6);
                p[4] = (uint8_t)((flags & 0x70) << 1);
                rc |= vk_buf_append(&payload, p, 6);
            }
            rc |= take_block(&in, flags & 0x80, &block);
            rc |= compress_block(&z, &block, &payload);
            if (rc == 0)
                rc = control(out, op == OP_SYN_STREAM ? SPDY_SYN_STREAM : SPDY_HEADERS,
                             flags & 0x03, payload.data, payload.len);
            break;
        }
        case OP_DATA: {
            uint32_t id = stream_id(fuzz_byte(&in));
            uint8_t flags = fuzz_byte(&in) & SPDY_FLAG_FIN;
            rc = take_bytes(&in, &payload, false);
            put32(p, id & 0x7fffffffu);
            put32(p + 4, (uint32_t)payload.len);
            p[4] = flags;
            rc |= vk_buf_append(out, p, 8) | vk_buf_append(out, payload.data, payload.len);
            break;
        }
        case OP_RST_STREAM:
            put32(p, stream_id(fuzz_byte(&in)));
            put32(p + 4, fuzz_byte(&in) % 13);
            rc = control(out, SPDY_RST_STREAM, 0, p, 8);
            break;
        case OP_PING:
            put32(p, fuzz_byte(&in));
            rc = control(out, SPDY_PING, 0, p, 4);
            break;
        case OP_SETTINGS: {
            /* n entries of flags, id, value. */
            uint8_t n = fuzz_byte(&in) % 4;
            rc = append32(&payload, n);
            for (uint8_t i = 0; i < n; i++)
                rc |= append32(&payload, (uint32_t)fuzz_byte(&in) << 24 | fuzz_byte(&in)) |
                      append32(&payload, (uint32_t)fuzz_byte(&in) << 8);
            if (rc == 0)
                rc = control(out, SPDY_SETTINGS, 0, payload.data, payload.len);
            break;
        }
        case OP_WINDOW_UPDATE:
            put32(p, fuzz_byte(&in) < 0x80 ? 0 : stream_id(fuzz_byte(&in)));
            put32(p + 4, (uint32_t)fuzz_byte(&in) << 16);
            rc = control(out, SPDY_WINDOW_UPDATE, 0, p, 8);
            break;
        case OP_GOAWAY:
            put32(p, stream_id(fuzz_byte(&in)));
            put32(p + 4, fuzz_byte(&in) % 3);
            rc = control(out, SPDY_GOAWAY, 0, p, 8);
            break;
        default:
            rc = take_bytes(&in, out, false);
            break;
        }
    }
    vk_buf_free(&block);
    vk_buf_free(&payload);
    deflateEnd(&z);
    return rc < 0 ? -1 : 0;
}
