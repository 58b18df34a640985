/* fuzz_websocket.c -- core/websocket.c: the opening handshake helpers and
 * the wslay-driven session.
 *
 * Input: one byte seeding the chunk sizes, one byte of options, then either
 * the handshake headers (NUL-separated: Upgrade, Connection,
 * Sec-WebSocket-Key, Sec-WebSocket-Version, Sec-WebSocket-Protocol) or the
 * client's bytes, as they are or built by ws_client.h from a description
 * (masked frames).
 *
 * Checked for the handshake: an accept key is 28 base64 characters; the
 * protocol chosen is one supported and one offered; a 101 response is one
 * well-formed head. For the session, fed as a connection would feed it
 * (chunks, re-offering what was not consumed, draining output, resuming
 * paused input): messages stay within max_message; on_close runs at most
 * once and nothing follows it; the session never stalls; and the
 * messages and, when nothing closed, the output are the same whether the
 * input arrives whole or in small chunks (how wslay fails a malformed
 * close frame depends on how it arrived).
 */
#include <string.h>

#include "fuzz.h"
#include "websocket.h"
#include "ws_client.h"

enum {
    OPT_HANDSHAKE = 1, /* the input is handshake headers */
    OPT_RAW = 2,       /* the input is the wire bytes */
    OPT_SMALL = 4,     /* max_message 64, high-water mark 64 */
    OPT_ECHO = 8,      /* send every message back */
    OPT_PAUSE = 16,    /* pause input on every message */
    OPT_CLOSE = 32,    /* close (1000) after the third message */
};

static const char *const supported[] = {"v5.channel.k8s.io", "v4.channel.k8s.io",
                                        "channel.k8s.io", "", NULL};

static bool offers(const char *offered, const char *proto)
{
    size_t n = strlen(proto);
    for (const char *p = offered; p && (p = strstr(p, proto)); p++) {
        bool start = p == offered || strchr(" \t,", p[-1]);
        bool end = !p[n] || strchr(" \t,", p[n]);
        if (start && end)
            return true;
    }
    return false;
}

static void handshake(fuzz_input *in)
{
    char *fields[5] = {NULL, NULL, NULL, NULL, NULL};
    const uint8_t *part;
    size_t len;
    for (int i = 0; i < 5 && fuzz_part(in, 0, &part, &len); i++)
        fields[i] = fuzz_cstr(part, len);

    ws_is_upgrade(fields[0], fields[1]);
    char accept[29];
    if (fields[2] && ws_accept_key(fields[2], accept) == 0) {
        FUZZ_CHECK(strlen(accept) == 28);
        FUZZ_CHECK(strspn(accept, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789+/=") == 28);
    }
    const char *proto = ws_select_protocol(fields[4], supported);
    if (proto) {
        bool known = false;
        for (int i = 0; supported[i]; i++)
            known |= proto == supported[i];
        FUZZ_CHECK(known);
        FUZZ_CHECK(!*proto || offers(fields[4], proto));
    }
    vk_buf out = VK_BUF_INIT;
    const char *err = NULL;
    if (ws_handshake_response(&out, fields[2], fields[3], proto, &err) == 0) {
        FUZZ_CHECK(strncmp(out.data, "HTTP/1.1 101 ", 13) == 0);
        const char *end = strstr(out.data, "\r\n\r\n");
        FUZZ_CHECK(end && end + 4 == out.data + out.len);
    } else {
        FUZZ_CHECK(err && *err && out.len == 0);
    }
    vk_buf_free(&out);
    for (int i = 0; i < 5; i++)
        free(fields[i]);
}

typedef struct run {
    ws_session *ws;
    unsigned opts;
    size_t max_message;
    int messages, closes;
    uint64_t log;
    bool paused;
    bool closing; /* we started the closing handshake */
} run;

static void on_message(void *user, bool text, const uint8_t *data, size_t len)
{
    run *r = user;
    FUZZ_CHECK(r->closes == 0);
    FUZZ_CHECK(len <= r->max_message);
    r->messages++;
    r->log = fuzz_hash(r->log, &text, sizeof text);
    r->log = fuzz_hash(r->log, &len, sizeof len);
    r->log = fuzz_hash(r->log, data, len);
    if (r->opts & OPT_ECHO)
        ws_send(r->ws, text, "> ", 2, data, len);
    if (r->opts & OPT_PAUSE) {
        ws_pause_input(r->ws, true);
        r->paused = true;
    }
    if ((r->opts & OPT_CLOSE) && r->messages == 3) {
        r->closing = true;
        ws_close(r->ws, WS_CLOSE_NORMAL, "done");
        FUZZ_CHECK(ws_closing(r->ws));
        FUZZ_CHECK(ws_send(r->ws, false, "x", 1, NULL, 0) == -1);
    }
}

static void on_close(void *user, uint16_t code)
{
    run *r = user;
    r->closes++;
    FUZZ_CHECK(r->closes == 1);
    /* Not logged: whether and how wslay fails a malformed close frame (its
     * reason is not UTF-8, say) depends on how the frame arrived: whole, or
     * in pieces with the end missing. */
    (void)code;
}

static const ws_callbacks callbacks = {on_message, on_close};

static void drain(run *r, uint64_t *out_hash)
{
    const uint8_t *out;
    size_t n = ws_output(r->ws, &out);
    if (n)
        *out_hash = fuzz_hash(*out_hash, out, n);
    ws_output_sent(r->ws, n);
    FUZZ_CHECK(ws_output(r->ws, &out) == 0 && ws_writable(r->ws));
}

/* Returns whether the connection was closed, by either side. */
static bool play(const uint8_t *wire, size_t len, unsigned opts, uint32_t seed,
                 uint64_t *log, uint64_t *out_hash)
{
    run r = {.opts = opts};
    ws_limits small = {64, 64};
    ws_limits lim;
    ws_limits_default(&lim);
    r.max_message = (opts & OPT_SMALL) ? small.max_message : lim.max_message;
    r.ws = ws_session_new(&callbacks, &r, (opts & OPT_SMALL) ? &small : NULL);
    FUZZ_CHECK(r.ws != NULL);
    *out_hash = 0;
    size_t at = 0;
    int stalls = 0;
    while (at < len) {
        size_t n = seed ? fuzz_chunk(&seed, len - at) : len - at;
        size_t used = ws_feed(r.ws, wire + at, n);
        FUZZ_CHECK(used <= n);
        at += used;
        drain(&r, out_hash);
        if (r.paused) {
            ws_pause_input(r.ws, false);
            r.paused = false;
        }
        /* Drained and resumed, the session must take input again. */
        stalls = used ? 0 : stalls + 1;
        FUZZ_CHECK(stalls < 2);
        if (used < n)
            FUZZ_CHECK(ws_wants_input(r.ws));
    }
    drain(&r, out_hash);
    *log = fuzz_hash(r.log, &r.messages, sizeof r.messages);
    ws_session_free(r.ws);
    return r.closes > 0 || r.closing;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint32_t seed = fuzz_byte(&in) | 0x100u;
    unsigned opts = fuzz_byte(&in);
    if (opts & OPT_HANDSHAKE) {
        handshake(&in);
        return 0;
    }
    vk_buf wire = VK_BUF_INIT;
    if (opts & OPT_RAW)
        FUZZ_CHECK(vk_buf_append(&wire, in.data, in.size) == 0);
    else
        FUZZ_CHECK(ws_client_build(in.data, in.size, &wire) == 0);

    uint64_t log1, log2, out1, out2;
    bool closed = play((const uint8_t *)wire.data, wire.len, opts, 0, &log1, &out1);
    closed |= play((const uint8_t *)wire.data, wire.len, opts, seed, &log2, &out2);
    FUZZ_CHECK(log1 == log2);
    /* A PONG that wslay queued in the same read as a close (the client's,
     * ours, or its own for a protocol error) is never sent: then the output
     * depends on where the reads ended, harmlessly, as the connection is
     * closing anyway. */
    if (!closed)
        FUZZ_CHECK(out1 == out2);
    vk_buf_free(&wire);
    return 0;
}
