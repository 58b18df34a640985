/* fuzz_spdy.c -- the SPDY/3.1 server session of sdk-c/spdy.c: frame parser,
 * header block inflation and parsing, stream rules, backpressure.
 *
 * Input: one byte seeding the chunk sizes, one byte of options, then the
 * client's bytes: as they are (raw), or built by spdy_client.h from a
 * description, which gets well-compressed header blocks past zlib.
 *
 * The session is fed like a connection would feed it: in chunks, offering
 * again what it did not consume, draining its output, resuming input the
 * user paused. Checked:
 *   - the callbacks follow the stream rules: streams open with increasing
 *     odd ids; data and FIN only on an open stream, nothing after FIN but
 *     a reset, nothing at all after a reset or after the user's spdy_rst;
 *   - header names are lowercase;
 *   - the session never stalls: with its output drained and input not
 *     paused, it consumes;
 *   - the callbacks, and the session's output, are the same whether the
 *     input arrives in one piece or in small chunks.
 */
#include <string.h>

#include "fuzz.h"
#include "spdy.h"
#include "spdy_client.h"

enum {
    OPT_RAW = 1,          /* the input is the wire bytes */
    OPT_SMALL = 2,        /* tight limits: every limit path is reachable */
    OPT_ECHO = 4,         /* echo data back (output then depends on chunking) */
    OPT_PAUSE = 8,        /* pause input on every data piece */
    OPT_REFUSE = 16,      /* refuse every third stream */
    OPT_FIN_REPLY = 32,   /* answer a FIN with data, then our own FIN */
    OPT_FIN_RESET = 64,   /* answer a FIN with spdy_rst */
    OPT_GOAWAY = 128,     /* after the input, the server goes away */
};

enum state { OPEN, HALF_CLOSED, GONE };

#define MAX_STREAMS 1024

typedef struct run {
    spdy_session *s;
    unsigned opts;
    uint32_t ids[MAX_STREAMS];
    enum state states[MAX_STREAMS];
    size_t n;
    uint32_t last_id;
    int accepted;
    uint64_t log;
    uint32_t data_id; /* stream of the data being merged into data_hash */
    uint64_t data_hash;
    bool paused;
} run;

static enum state *state_of(run *r, uint32_t id)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->ids[i] == id)
            return &r->states[i];
    return NULL;
}

/* Data pieces of one stream in a row count as one event: how the input
 * was cut must not show. */
static void flush_data(run *r)
{
    if (!r->data_id)
        return;
    r->log = fuzz_hash(r->log, "D", 1);
    r->log = fuzz_hash(r->log, &r->data_id, sizeof r->data_id);
    r->log = fuzz_hash(r->log, &r->data_hash, sizeof r->data_hash);
    r->data_id = 0;
    r->data_hash = 0;
}

static void event(run *r, char kind, uint32_t id, uint32_t status)
{
    flush_data(r);
    r->log = fuzz_hash(r->log, &kind, 1);
    r->log = fuzz_hash(r->log, &id, sizeof id);
    r->log = fuzz_hash(r->log, &status, sizeof status);
}

static int on_stream(void *user, uint32_t id, const spdy_headers *h)
{
    run *r = user;
    FUZZ_CHECK(id & 1);
    FUZZ_CHECK(id > r->last_id);
    FUZZ_CHECK(!state_of(r, id));
    r->last_id = id;
    for (size_t i = 0; i < h->count; i++) {
        const char *name = h->nv[i].name;
        FUZZ_CHECK(name && h->nv[i].value);
        for (const char *c = name; *c; c++)
            FUZZ_CHECK(!(*c >= 'A' && *c <= 'Z'));
        FUZZ_CHECK(spdy_header_get(h, name) != NULL);
        r->log = fuzz_hash(r->log, name, strlen(name));
        r->log = fuzz_hash(r->log, h->nv[i].value, h->nv[i].value_len);
    }
    event(r, 'S', id, (uint32_t)h->count);
    if ((r->opts & OPT_REFUSE) && r->accepted++ % 3 == 2)
        return SPDY_REFUSED_STREAM;
    if (r->n < MAX_STREAMS) {
        r->ids[r->n] = id;
        r->states[r->n++] = OPEN;
    }
    return 0;
}

static void on_data(void *user, uint32_t id, const uint8_t *data, size_t len)
{
    run *r = user;
    enum state *st = state_of(r, id);
    FUZZ_CHECK(len > 0);
    FUZZ_CHECK(!st || *st == OPEN);
    if (r->data_id != id)
        flush_data(r);
    r->data_id = id;
    r->data_hash = fuzz_hash(r->data_hash, data, len);
    if (r->opts & OPT_ECHO)
        spdy_data(r->s, id, data, len, false);
    if (r->opts & OPT_PAUSE) {
        spdy_pause_input(r->s, true);
        r->paused = true;
    }
}

static void on_fin(void *user, uint32_t id)
{
    run *r = user;
    enum state *st = state_of(r, id);
    FUZZ_CHECK(!st || *st == OPEN);
    if (st)
        *st = HALF_CLOSED;
    event(r, 'F', id, 0);
    if (r->opts & OPT_FIN_REPLY) {
        /* Data, then the FIN alone, as remotecommand and portforward end
         * their streams. */
        spdy_data(r->s, id, "bye", 3, false);
        spdy_data(r->s, id, NULL, 0, true);
    } else if (r->opts & OPT_FIN_RESET) {
        spdy_rst(r->s, id, SPDY_CANCEL);
        if (st)
            *st = GONE;
    }
}

static void on_reset(void *user, uint32_t id, uint32_t status)
{
    run *r = user;
    enum state *st = state_of(r, id);
    FUZZ_CHECK(!st || *st != GONE);
    if (st)
        *st = GONE;
    event(r, 'R', id, status);
}

static void on_goaway(void *user, uint32_t status)
{
    event(user, 'G', 0, status);
}

static const spdy_callbacks callbacks = {on_stream, on_data, on_fin, on_reset, on_goaway};

static void drain(run *r, uint64_t *out_hash)
{
    const uint8_t *out;
    size_t n = spdy_output(r->s, &out);
    if (n)
        *out_hash = fuzz_hash(*out_hash, out, n);
    spdy_output_sent(r->s, n);
    FUZZ_CHECK(spdy_output(r->s, &out) == 0 && spdy_writable(r->s));
}

static void play(const uint8_t *wire, size_t len, unsigned opts, uint32_t seed,
                 uint64_t *log, uint64_t *out_hash)
{
    run *r = calloc(1, sizeof *r);
    FUZZ_CHECK(r != NULL);
    r->opts = opts;
    spdy_limits small = {256, 512, 64, 4, 128};
    r->s = spdy_session_new(&callbacks, r, (opts & OPT_SMALL) ? &small : NULL);
    FUZZ_CHECK(r->s != NULL);
    *out_hash = 0;
    size_t at = 0;
    int stalls = 0;
    while (at < len) {
        size_t n = seed ? fuzz_chunk(&seed, len - at) : len - at;
        size_t used = spdy_feed(r->s, wire + at, n);
        FUZZ_CHECK(used <= n);
        at += used;
        drain(r, out_hash);
        if (r->paused) {
            spdy_pause_input(r->s, false);
            r->paused = false;
        }
        /* Drained and resumed, the session must take input again. */
        stalls = used ? 0 : stalls + 1;
        FUZZ_CHECK(stalls < 2);
        if (used < n)
            FUZZ_CHECK(spdy_wants_input(r->s));
        if (spdy_closing(r->s))
            FUZZ_CHECK(spdy_feed(r->s, wire + at, len - at) == len - at);
        if (spdy_closing(r->s))
            break;
    }
    if (opts & OPT_GOAWAY) {
        spdy_goaway(r->s, SPDY_GOAWAY_OK);
        FUZZ_CHECK(spdy_closing(r->s));
    }
    drain(r, out_hash);
    flush_data(r);
    *log = r->log;
    spdy_session_free(r->s);
    free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint32_t seed = fuzz_byte(&in) | 0x100u;
    unsigned opts = fuzz_byte(&in);
    vk_buf wire = VK_BUF_INIT;
    if (opts & OPT_RAW)
        FUZZ_CHECK(vk_buf_append(&wire, in.data, in.size) == 0);
    else
        FUZZ_CHECK(spdy_client_build(in.data, in.size, &wire) == 0);

    uint64_t log1, log2, out1, out2;
    play((const uint8_t *)wire.data, wire.len, opts, 0, &log1, &out1);
    play((const uint8_t *)wire.data, wire.len, opts, seed, &log2, &out2);
    FUZZ_CHECK(log1 == log2);
    if (!(opts & OPT_ECHO))
        FUZZ_CHECK(out1 == out2);
    vk_buf_free(&wire);
    return 0;
}
