/* fuzz_remotecommand.c -- core/remotecommand.c: exec and attach over SPDY
 * and WebSocket (channels, the resize stream of JSON objects, base64
 * variants, v5's close signal), plus its request helpers.
 *
 * Input: one byte seeding the chunk sizes, one byte of options, one byte
 * picking the protocol version, then either query strings for the helpers
 * (NUL-separated key=value, then an X-Stream-Protocol-Version value) or the
 * client's bytes, built by spdy_client.h or ws_client.h from a description
 * (or raw).
 *
 * The user side plays the exec bridge: it echoes stdin to stdout, finishes
 * the command when stdin closes (or when the input ends), and optionally
 * pauses input on every piece of stdin. Checked:
 *   - on_start runs at most once, and stdin, stdin close and resize reach
 *     the user only once the command started (the bridge drops them
 *     before: kubelet_streams.c has no command to give them to);
 *   - stdin closes at most once; nothing follows on_gone, nothing follows
 *     rc_finish but on_writable;
 *   - the session never stalls;
 *   - the events are the same whether the input arrives whole or in chunks.
 * Helpers: rc_parse_options refuses or gives what the query says;
 * rc_negotiate_spdy picks a known version; rc_status_json is a JSON object.
 */
#include <string.h>

#include "fuzz.h"
#include "json.h"
#include "remotecommand.h"
#include "spdy_client.h"
#include "ws_client.h"

enum {
    OPT_HELPERS = 1,   /* the input is a query for the helpers */
    OPT_WEBSOCKET = 2, /* else SPDY */
    OPT_RAW = 4,       /* the wire bytes as they are */
    OPT_STDIN = 8,
    OPT_STDOUT = 16,
    OPT_STDERR = 32,
    OPT_TTY = 64,
    OPT_PAUSE = 128,   /* pause input on every piece of stdin */
};

/* ---- helpers ------------------------------------------------------------- */

#define MAX_PARAMS 16

typedef struct query {
    char *keys[MAX_PARAMS], *values[MAX_PARAMS];
    int n;
} query;

static const char *get(void *ud, const char *key, int nth)
{
    query *q = ud;
    for (int i = 0; i < q->n; i++)
        if (strcmp(q->keys[i], key) == 0 && nth-- == 0)
            return q->values[i];
    return NULL;
}

static void helpers(fuzz_input *in, uint8_t version)
{
    query q = {.n = 0};
    const uint8_t *part;
    size_t len;
    char *offered = NULL;
    while (fuzz_part(in, 0, &part, &len)) {
        char *s = fuzz_cstr(part, len);
        char *eq = strchr(s, '=');
        if (!eq || q.n == MAX_PARAMS) {
            free(offered);
            offered = s;
            continue;
        }
        *eq = '\0';
        q.keys[q.n] = s;
        q.values[q.n++] = eq + 1;
    }
    rc_options o;
    char err[128] = "";
    if (rc_parse_options(&o, get, &q, version & 1, err, sizeof err) == 0) {
        FUZZ_CHECK(o.stdin || o.stdout || o.stderr);
        FUZZ_CHECK(!(o.tty && o.stderr));
        FUZZ_CHECK(o.ncommand <= RC_MAX_COMMAND && o.command[o.ncommand] == NULL);
        for (size_t i = 0; i < o.ncommand; i++)
            FUZZ_CHECK(strcmp(o.command[i], get(&q, "command", (int)i)) == 0);
        FUZZ_CHECK(!(version & 1) || o.ncommand > 0);
        rc_options_clear(&o);
    } else {
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(o.command == NULL && o.container == NULL);
    }

    const char *chosen = NULL;
    int rc = rc_negotiate_spdy(offered, &chosen);
    FUZZ_CHECK(rc == 0 || rc == 400 || rc == 403);
    if (rc == 0) {
        bool known = false;
        for (int i = 0; rc_spdy_protocols[i]; i++)
            known |= chosen == rc_spdy_protocols[i];
        FUZZ_CHECK(known);
    }

    vk_buf doc = VK_BUF_INIT;
    int exit_code = (int)(int8_t)version * 3;
    FUZZ_CHECK(rc_status_json(&doc, exit_code, (version & 2) ? offered : NULL) == 0);
    yajl_val v = vk_json_parse(doc.data, doc.len, err, sizeof err);
    FUZZ_CHECK(YAJL_IS_OBJECT(v));
    const char *status = vk_json_str(vk_json_member(v, "status"), "");
    FUZZ_CHECK(strcmp(status, "Success") == 0 || strcmp(status, "Failure") == 0);
    yajl_tree_free(v);
    vk_buf_free(&doc);

    for (int i = 0; i < q.n; i++)
        free(q.keys[i]);
    free(offered);
}

/* ---- a session --------------------------------------------------------------- */

typedef struct run {
    rc_session *rc;
    unsigned opts;
    int starts, stdin_closes;
    bool gone, finished, paused;
    uint64_t log;
    uint64_t stdin_hash; /* stdin pieces in a row are one event */
    bool stdin_pending;
} run;

static void flush_stdin(run *r)
{
    if (!r->stdin_pending)
        return;
    r->log = fuzz_hash(r->log, "I", 1);
    r->log = fuzz_hash(r->log, &r->stdin_hash, sizeof r->stdin_hash);
    r->stdin_pending = false;
    r->stdin_hash = 0;
}

static void event(run *r, char kind, const void *data, size_t len)
{
    flush_stdin(r);
    r->log = fuzz_hash(r->log, &kind, 1);
    if (len)
        r->log = fuzz_hash(r->log, data, len);
}

static void command_event(run *r)
{
    FUZZ_CHECK(!r->gone);
    FUZZ_CHECK(!r->finished);
    FUZZ_CHECK(r->starts == 1);
}

static void finish(run *r, int code)
{
    if (r->finished || r->gone)
        return;
    r->finished = true;
    rc_finish(r->rc, code, code < 0 ? "killed" : NULL);
}

static void on_start(void *user)
{
    run *r = user;
    FUZZ_CHECK(!r->gone && !r->finished);
    r->starts++;
    FUZZ_CHECK(r->starts == 1);
    FUZZ_CHECK(rc_started(r->rc));
    event(r, 'S', NULL, 0);
    rc_write(r->rc, RC_STDOUT, "$ ", 2);
}

static void on_stdin(void *user, const uint8_t *data, size_t len)
{
    run *r = user;
    command_event(r);
    FUZZ_CHECK(len > 0 && r->stdin_closes == 0);
    r->stdin_pending = true;
    r->stdin_hash = fuzz_hash(r->stdin_hash, data, len);
    if (r->opts & OPT_PAUSE) {
        rc_pause_input(r->rc, true);
        r->paused = true;
    }
}

static void on_stdin_close(void *user)
{
    run *r = user;
    command_event(r);
    r->stdin_closes++;
    FUZZ_CHECK(r->stdin_closes == 1);
    event(r, 'C', NULL, 0);
    rc_write(r->rc, RC_STDERR, "eof\n", 4);
    finish(r, 3);
}

static void on_resize(void *user, uint16_t width, uint16_t height)
{
    run *r = user;
    command_event(r);
    uint16_t size[2] = {width, height};
    event(r, 'R', size, sizeof size);
}

static void on_writable(void *user)
{
    run *r = user;
    FUZZ_CHECK(!r->gone);
}

static void on_gone(void *user)
{
    run *r = user;
    FUZZ_CHECK(!r->gone && !r->finished);
    r->gone = true;
    event(r, 'G', NULL, 0);
}

static const rc_callbacks callbacks = {on_start, on_stdin, on_stdin_close, on_resize,
                                       on_writable, on_gone};

static void drain(run *r)
{
    const uint8_t *out;
    size_t n = rc_output(r->rc, &out);
    rc_output_sent(r->rc, n);
    FUZZ_CHECK(rc_output(r->rc, &out) == 0 && rc_writable(r->rc));
}

static uint64_t play(const uint8_t *wire, size_t len, unsigned opts, const char *protocol,
                     uint32_t seed)
{
    run r = {.opts = opts};
    static char *command[] = {"sh", NULL};
    rc_options o = {
        .stdin = opts & OPT_STDIN,
        .stdout = opts & OPT_STDOUT,
        .stderr = opts & OPT_STDERR,
        .tty = opts & OPT_TTY,
        .command = command,
        .ncommand = 1,
    };
    if (!o.stdin && !o.stdout && !o.stderr)
        o.stdout = true;
    r.rc = rc_new((opts & OPT_WEBSOCKET) ? RC_WEBSOCKET : RC_SPDY, protocol, &o, &callbacks, &r);
    FUZZ_CHECK(r.rc != NULL);
    drain(&r);
    rc_open(r.rc);
    size_t at = 0;
    int stalls = 0;
    while (at < len && !rc_closing(r.rc)) {
        size_t n = seed ? fuzz_chunk(&seed, len - at) : len - at;
        size_t used = rc_feed(r.rc, wire + at, n);
        FUZZ_CHECK(used <= n);
        at += used;
        drain(&r);
        if (r.paused) {
            rc_pause_input(r.rc, false);
            r.paused = false;
        }
        stalls = used ? 0 : stalls + 1;
        FUZZ_CHECK(stalls < 2);
    }
    /* The command ends on its own, then the connection goes. */
    if (r.starts)
        finish(&r, (int)(opts & 7) - 1);
    drain(&r);
    rc_connection_lost(r.rc);
    flush_stdin(&r);
    FUZZ_CHECK(rc_started(r.rc) == (r.starts == 1));
    rc_free(r.rc);
    return r.log;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint32_t seed = fuzz_byte(&in) | 0x100u;
    unsigned opts = fuzz_byte(&in);
    uint8_t version = fuzz_byte(&in);
    if (opts & OPT_HELPERS) {
        helpers(&in, version);
        return 0;
    }
    const char *const *protocols =
        (opts & OPT_WEBSOCKET) ? rc_websocket_protocols : rc_spdy_protocols;
    size_t n_protocols = 0;
    while (protocols[n_protocols])
        n_protocols++;
    const char *protocol = protocols[version % n_protocols];

    vk_buf wire = VK_BUF_INIT;
    if (opts & OPT_RAW)
        FUZZ_CHECK(vk_buf_append(&wire, in.data, in.size) == 0);
    else if (opts & OPT_WEBSOCKET)
        FUZZ_CHECK(ws_client_build(in.data, in.size, &wire) == 0);
    else
        FUZZ_CHECK(spdy_client_build(in.data, in.size, &wire) == 0);

    uint64_t whole = play((const uint8_t *)wire.data, wire.len, opts, protocol, 0);
    uint64_t chunked = play((const uint8_t *)wire.data, wire.len, opts, protocol, seed);
    FUZZ_CHECK(whole == chunked);
    vk_buf_free(&wire);
    return 0;
}
