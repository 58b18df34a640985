/* fuzz_portforward.c -- core/portforward.c: port-forward over SPDY (stream
 * pairs matched by requestID) and WebSocket (a channel pair per port),
 * plus its request helpers.
 *
 * Input: one byte seeding the chunk sizes, one byte of options, one byte
 * picking the protocol and the number of ports, then either query strings
 * for the helpers (NUL-separated port values, then an
 * X-Stream-Protocol-Version value) or the client's bytes, built by
 * spdy_client.h or ws_client.h from a description (or raw).
 *
 * The user side plays the forwarding: it greets each forward, echoes what
 * the client sends, and ends a forward (with or without an error) when the
 * client closes its side. Checked:
 *   - forward ids are new and ports valid; data and close-write come only
 *     for a started forward that neither ended nor was cancelled; a forward
 *     is cancelled at most once and hears nothing after;
 *   - the session never stalls;
 *   - the events are the same whether the input arrives whole or in chunks.
 * Helpers: pf_parse_ports gives ports in 1..65535 or refuses with a reason;
 * pf_negotiate_spdy picks the one known version.
 */
#include <string.h>

#include "fuzz.h"
#include "portforward.h"
#include "spdy_client.h"
#include "ws_client.h"

enum {
    OPT_HELPERS = 1,   /* the input is a query for the helpers */
    OPT_WEBSOCKET = 2, /* else SPDY */
    OPT_RAW = 4,       /* the wire bytes as they are */
    OPT_PAUSE = 8,     /* pause input on every piece of data */
    OPT_ERROR = 16,    /* end forwards with an error message */
    OPT_ECHO = 32,     /* echo data back */
};

/* ---- helpers ------------------------------------------------------------- */

#define MAX_VALUES 16

typedef struct query {
    char *values[MAX_VALUES];
    int n;
} query;

static const char *get(void *ud, const char *key, int nth)
{
    query *q = ud;
    return strcmp(key, "port") == 0 && nth < q->n ? q->values[nth] : NULL;
}

static void helpers(fuzz_input *in)
{
    query q = {.n = 0};
    const uint8_t *part;
    size_t len;
    char *offered = NULL;
    while (fuzz_part(in, 0, &part, &len)) {
        char *s = fuzz_cstr(part, len);
        if (q.n < MAX_VALUES) {
            q.values[q.n++] = s;
        } else {
            free(offered);
            offered = s;
        }
    }
    if (!offered && q.n)
        offered = q.values[--q.n];
    uint16_t ports[PF_MAX_PORTS];
    char err[128] = "";
    int n = pf_parse_ports(get, &q, ports, PF_MAX_PORTS, err, sizeof err);
    if (n < 0) {
        FUZZ_CHECK(err[0] != '\0');
    } else {
        FUZZ_CHECK(n >= 1 && n <= PF_MAX_PORTS);
        for (int i = 0; i < n; i++)
            FUZZ_CHECK(ports[i] >= 1);
    }
    const char *chosen = NULL;
    int rc = pf_negotiate_spdy(offered, &chosen);
    FUZZ_CHECK(rc == 0 || rc == 400 || rc == 403);
    FUZZ_CHECK(rc != 0 || chosen == pf_spdy_protocols[0]);
    for (int i = 0; i < q.n; i++)
        free(q.values[i]);
    free(offered);
}

/* ---- a session --------------------------------------------------------------- */

#define MAX_FWD 256

enum fwd_state { STARTED, WRITE_CLOSED, ENDED, CANCELLED };

typedef struct run {
    pf_session *pf;
    unsigned opts;
    uint32_t ids[MAX_FWD];
    enum fwd_state states[MAX_FWD];
    size_t n;
    bool paused, lost;
    uint64_t log;
    uint32_t data_id; /* data pieces of one forward in a row are one event */
    uint64_t data_hash;
} run;

static enum fwd_state *state_of(run *r, uint32_t id)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->ids[i] == id)
            return &r->states[i];
    return NULL;
}

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

static void event(run *r, char kind, uint32_t id, uint32_t arg)
{
    flush_data(r);
    r->log = fuzz_hash(r->log, &kind, 1);
    r->log = fuzz_hash(r->log, &id, sizeof id);
    r->log = fuzz_hash(r->log, &arg, sizeof arg);
}

static void on_forward(void *user, uint32_t id, uint16_t port)
{
    run *r = user;
    FUZZ_CHECK(!r->lost);
    FUZZ_CHECK(id != 0 && !state_of(r, id));
    FUZZ_CHECK(port >= 1);
    FUZZ_CHECK(r->n < MAX_FWD);
    r->ids[r->n] = id;
    r->states[r->n++] = STARTED;
    event(r, 'F', id, port);
    pf_write(r->pf, id, "hello", 5);
}

static void on_data(void *user, uint32_t id, const uint8_t *data, size_t len)
{
    run *r = user;
    enum fwd_state *st = state_of(r, id);
    FUZZ_CHECK(st && *st == STARTED);
    if (r->data_id != id)
        flush_data(r);
    r->data_id = id;
    r->data_hash = fuzz_hash(r->data_hash, data, len);
    if (r->opts & OPT_ECHO)
        pf_write(r->pf, id, data, len);
    if (r->opts & OPT_PAUSE) {
        pf_pause_input(r->pf, true);
        r->paused = true;
    }
}

static void on_close_write(void *user, uint32_t id)
{
    run *r = user;
    enum fwd_state *st = state_of(r, id);
    FUZZ_CHECK(st && *st == STARTED);
    *st = WRITE_CLOSED;
    event(r, 'W', id, 0);
    /* The pod's side is done too: the forward ends. */
    *st = ENDED;
    pf_end(r->pf, id, (r->opts & OPT_ERROR) ? "connection refused" : NULL);
}

static void on_cancel(void *user, uint32_t id)
{
    run *r = user;
    enum fwd_state *st = state_of(r, id);
    FUZZ_CHECK(st && (*st == STARTED || *st == WRITE_CLOSED));
    *st = CANCELLED;
    event(r, 'X', id, 0);
}

static void on_writable(void *user)
{
    (void)user;
}

static const pf_callbacks callbacks = {on_forward, on_data, on_close_write, on_cancel,
                                       on_writable};

static void drain(run *r)
{
    const uint8_t *out;
    size_t n = pf_output(r->pf, &out);
    pf_output_sent(r->pf, n);
    FUZZ_CHECK(pf_output(r->pf, &out) == 0 && pf_writable(r->pf));
}

static uint64_t play(const uint8_t *wire, size_t len, unsigned opts, const char *protocol,
                     size_t nports, uint32_t seed)
{
    run *r = calloc(1, sizeof *r);
    FUZZ_CHECK(r != NULL);
    r->opts = opts;
    uint16_t ports[3] = {8080, 53, 65535};
    r->pf = pf_new((opts & OPT_WEBSOCKET) ? PF_WEBSOCKET : PF_SPDY, protocol, ports, nports,
                   &callbacks, r);
    FUZZ_CHECK(r->pf != NULL);
    drain(r);
    pf_open(r->pf);
    size_t at = 0;
    int stalls = 0;
    while (at < len && !pf_closing(r->pf)) {
        size_t n = seed ? fuzz_chunk(&seed, len - at) : len - at;
        size_t used = pf_feed(r->pf, wire + at, n);
        FUZZ_CHECK(used <= n);
        at += used;
        drain(r);
        if (r->paused) {
            pf_pause_input(r->pf, false);
            r->paused = false;
        }
        stalls = used ? 0 : stalls + 1;
        FUZZ_CHECK(stalls < 2);
    }
    /* Pairs never completed expire; forwards still open end; then the
     * connection goes. */
    pf_expire(r->pf, 0);
    for (size_t i = 0; i < r->n; i++) {
        if (r->states[i] == STARTED) {
            r->states[i] = ENDED;
            pf_end(r->pf, r->ids[i], NULL);
        }
    }
    drain(r);
    pf_connection_lost(r->pf);
    r->lost = true;
    pf_free(r->pf);
    flush_data(r);
    uint64_t log = r->log;
    free(r);
    return log;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint32_t seed = fuzz_byte(&in) | 0x100u;
    unsigned opts = fuzz_byte(&in);
    uint8_t pick = fuzz_byte(&in);
    if (opts & OPT_HELPERS) {
        helpers(&in);
        return 0;
    }
    const char *const *protocols =
        (opts & OPT_WEBSOCKET) ? pf_websocket_protocols : pf_spdy_protocols;
    size_t n_protocols = 0;
    while (protocols[n_protocols])
        n_protocols++;
    const char *protocol = protocols[pick % n_protocols];
    size_t nports = 1 + (pick >> 4) % 3;

    vk_buf wire = VK_BUF_INIT;
    if (opts & OPT_RAW)
        FUZZ_CHECK(vk_buf_append(&wire, in.data, in.size) == 0);
    else if (opts & OPT_WEBSOCKET)
        FUZZ_CHECK(ws_client_build(in.data, in.size, &wire) == 0);
    else
        FUZZ_CHECK(spdy_client_build(in.data, in.size, &wire) == 0);

    uint64_t whole = play((const uint8_t *)wire.data, wire.len, opts, protocol, nports, 0);
    uint64_t chunked = play((const uint8_t *)wire.data, wire.len, opts, protocol, nports, seed);
    FUZZ_CHECK(whole == chunked);
    vk_buf_free(&wire);
    return 0;
}
