/* test_remotecommand.c -- exec/attach over SPDY (as kubectl 1.20 speaks it)
 * and WebSocket (v4, v5 with its close signal, base64, pre-v4): query
 * options, version negotiation, stream start, stdin and its end, resize
 * messages (malformed ones ignored), the exit status documents, failures
 * and backpressure. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/remotecommand.h"
#include "../../core/spdy.h"
#include "spdy_go_capture.h"

/* ---- options ------------------------------------------------------------------ */

struct query {
    const char *kv[32]; /* key, value, ..., NULL */
};

static const char *get(void *ud, const char *key, int n)
{
    struct query *q = ud;
    for (int i = 0; q->kv[i]; i += 2)
        if (strcmp(q->kv[i], key) == 0 && n-- == 0)
            return q->kv[i + 1];
    return NULL;
}

START_TEST(options_from_query)
{
    rc_options o;
    char err[128];
    struct query q = {{"command", "sh", "stdin", "1", "command", "-c", "stdout", "true",
                       "command", "exit 3", "stderr", "1", "container", "app", NULL}};
    ck_assert_int_eq(rc_parse_options(&o, get, &q, true, err, sizeof err), 0);
    ck_assert(o.stdin && o.stdout && o.stderr && !o.tty);
    ck_assert_uint_eq(o.ncommand, 3);
    ck_assert_str_eq(o.command[0], "sh");
    ck_assert_str_eq(o.command[1], "-c");
    ck_assert_str_eq(o.command[2], "exit 3");
    ck_assert_ptr_null(o.command[3]);
    ck_assert_str_eq(o.container, "app");
    rc_options_clear(&o);

    /* The API server's names. */
    struct query api = {{"command", "ls", "input", "1", "output", "1", "error", "1", NULL}};
    ck_assert_int_eq(rc_parse_options(&o, get, &api, true, err, sizeof err), 0);
    ck_assert(o.stdin && o.stdout && o.stderr && !o.tty);
    rc_options_clear(&o);

    /* A terminal has no separate stderr. */
    struct query tty = {{"command", "sh", "tty", "1", "stdout", "1", "stderr", "1", NULL}};
    ck_assert_int_eq(rc_parse_options(&o, get, &tty, true, err, sizeof err), 0);
    ck_assert(o.tty && o.stdout && !o.stderr);
    ck_assert_ptr_null(o.container);
    rc_options_clear(&o);

    struct query none = {{"command", "ls", "stdin", "0", NULL}};
    ck_assert_int_eq(rc_parse_options(&o, get, &none, true, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "at least 1"));

    struct query nocmd = {{"stdout", "1", NULL}};
    ck_assert_int_eq(rc_parse_options(&o, get, &nocmd, true, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "command"));
    /* Attach has none. */
    ck_assert_int_eq(rc_parse_options(&o, get, &nocmd, false, err, sizeof err), 0);
    ck_assert_uint_eq(o.ncommand, 0);
    rc_options_clear(&o);
}
END_TEST

START_TEST(spdy_negotiation)
{
    const char *v = NULL;
    ck_assert_int_eq(rc_negotiate_spdy("v4.channel.k8s.io,v3.channel.k8s.io", &v), 0);
    ck_assert_str_eq(v, "v4.channel.k8s.io");
    /* The client's preference decides. */
    ck_assert_int_eq(rc_negotiate_spdy("v9.channel.k8s.io, v2.channel.k8s.io ,v4.channel.k8s.io",
                                       &v), 0);
    ck_assert_str_eq(v, "v2.channel.k8s.io");
    ck_assert_int_eq(rc_negotiate_spdy("channel.k8s.io", &v), 0);
    ck_assert_str_eq(v, "channel.k8s.io");
    ck_assert_int_eq(rc_negotiate_spdy(NULL, &v), 400);
    ck_assert_int_eq(rc_negotiate_spdy(" , ", &v), 400);
    ck_assert_int_eq(rc_negotiate_spdy("v9.channel.k8s.io", &v), 403);
    ck_assert_int_eq(rc_negotiate_spdy("portforward.k8s.io", &v), 403);
}
END_TEST

START_TEST(status_documents)
{
    vk_buf b = VK_BUF_INIT;
    ck_assert_int_eq(rc_status_json(&b, 0, NULL), 0);
    ck_assert_str_eq(b.data, "{\"metadata\":{},\"status\":\"Success\"}");
    vk_buf_reset(&b);
    ck_assert_int_eq(rc_status_json(&b, 3, NULL), 0);
    ck_assert_str_eq(b.data,
                     "{\"metadata\":{},\"status\":\"Failure\","
                     "\"message\":\"command terminated with non-zero exit code: exit status 3\","
                     "\"reason\":\"NonZeroExitCode\","
                     "\"details\":{\"causes\":[{\"reason\":\"ExitCode\",\"message\":\"3\"}]}}");
    vk_buf_reset(&b);
    ck_assert_int_eq(rc_status_json(&b, 0, "container \"x\" not found"), 0);
    ck_assert_str_eq(b.data,
                     "{\"metadata\":{},\"status\":\"Failure\","
                     "\"message\":\"Internal error occurred: error executing command in "
                     "container: container \\\"x\\\" not found\","
                     "\"reason\":\"InternalError\","
                     "\"details\":{\"causes\":[{\"message\":\"error executing command in "
                     "container: container \\\"x\\\" not found\"}]},\"code\":500}");
    /* kubectl can only read 0..255 from the ExitCode cause. */
    vk_buf_reset(&b);
    ck_assert_int_eq(rc_status_json(&b, 300, NULL), 0);
    ck_assert_ptr_nonnull(strstr(b.data, "\"reason\":\"InternalError\""));
    ck_assert_ptr_nonnull(strstr(b.data, "exit code 300 out of range"));
    vk_buf_reset(&b);
    ck_assert_int_eq(rc_status_json(&b, -1, NULL), 0);
    ck_assert_ptr_nonnull(strstr(b.data, "\"reason\":\"InternalError\""));
    vk_buf_free(&b);
}
END_TEST

/* ---- a recording user ------------------------------------------------------------ */

struct user {
    int starts, stdin_closes, writables, gones, resizes;
    char in[4096];
    size_t in_len;
    uint16_t w[8], h[8];
};

static void u_start(void *p)
{
    ((struct user *)p)->starts++;
}
static void u_stdin(void *p, const uint8_t *d, size_t n)
{
    struct user *u = p;
    ck_assert_uint_le(u->in_len + n, sizeof u->in);
    memcpy(u->in + u->in_len, d, n);
    u->in_len += n;
}
static void u_stdin_close(void *p)
{
    ((struct user *)p)->stdin_closes++;
}
static void u_resize(void *p, uint16_t w, uint16_t h)
{
    struct user *u = p;
    ck_assert_int_lt(u->resizes, 8);
    u->w[u->resizes] = w;
    u->h[u->resizes] = h;
    u->resizes++;
}
static void u_writable(void *p)
{
    ((struct user *)p)->writables++;
}
static void u_gone(void *p)
{
    ((struct user *)p)->gones++;
}

static const rc_callbacks ucbs = {u_start, u_stdin, u_stdin_close, u_resize, u_writable, u_gone};

static rc_session *session(struct user *u, enum rc_transport t, const char *proto, bool in,
                           bool out, bool err, bool tty)
{
    memset(u, 0, sizeof *u);
    rc_options o = {.stdin = in, .stdout = out, .stderr = err, .tty = tty};
    rc_session *rc = rc_new(t, proto, &o, &ucbs, u);
    ck_assert_ptr_nonnull(rc);
    rc_open(rc);
    return rc;
}

static void feed_all(rc_session *rc, const uint8_t *p, size_t n)
{
    ck_assert_uint_eq(rc_feed(rc, p, n), n);
}

static uint8_t out[1 << 20];

static size_t take(rc_session *rc)
{
    const uint8_t *p;
    size_t n = rc_output(rc, &p);
    ck_assert_uint_le(n, sizeof out);
    memcpy(out, p, n);
    rc_output_sent(rc, n);
    return n;
}

/* ---- SPDY helpers --------------------------------------------------------------------- */

static int refuse_all(void *u, uint32_t id, const spdy_headers *h)
{
    (void)u, (void)id, (void)h;
    return SPDY_REFUSED_STREAM;
}
static void ignore_data(void *u, uint32_t id, const uint8_t *d, size_t l)
{
    (void)u, (void)id, (void)d, (void)l;
}
static const spdy_callbacks client_cbs = {refuse_all, ignore_data, NULL, NULL, NULL};

/* The client's encoder (its own compression context). */
static spdy_session *client(void)
{
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    ck_assert_ptr_nonnull(c);
    return c;
}

static void open_stream(spdy_session *c, rc_session *rc, uint32_t id, const char *type)
{
    spdy_nv nv[] = {{"streamtype", type, 0}};
    ck_assert_int_eq(spdy_write_syn_stream(c, id, 0, nv, 1), 0);
    const uint8_t *p;
    size_t n = spdy_output(c, &p);
    feed_all(rc, p, n);
    spdy_output_sent(c, n);
}

static void send_data(rc_session *rc, uint32_t id, bool fin, const char *s, size_t len)
{
    uint8_t f[1024];
    f[0] = (uint8_t)(id >> 24);
    f[1] = (uint8_t)(id >> 16);
    f[2] = (uint8_t)(id >> 8);
    f[3] = (uint8_t)id;
    f[4] = fin ? SPDY_FLAG_FIN : 0;
    f[5] = (uint8_t)(len >> 16);
    f[6] = (uint8_t)(len >> 8);
    f[7] = (uint8_t)len;
    memcpy(f + 8, s, len);
    feed_all(rc, f, 8 + len);
}

/* The server's frames, flattened: control type (or 0 for DATA), stream id,
 * flags, and DATA payloads. */
struct sframe {
    uint16_t type;
    uint32_t id, value;
    uint8_t flags;
    char data[2048];
    size_t len;
};

static int spdy_frames(const uint8_t *b, size_t n, struct sframe *f, int max)
{
    int k = 0;
    size_t off = 0;
    while (off < n) {
        ck_assert_int_lt(k, max);
        const uint8_t *h = b + off;
        size_t len = (size_t)h[5] << 16 | (size_t)h[6] << 8 | h[7];
        struct sframe *x = &f[k++];
        memset(x, 0, sizeof *x);
        x->flags = h[4];
        if (h[0] & 0x80) {
            x->type = (uint16_t)(h[2] << 8 | h[3]);
            x->id = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 8 | h[11];
            x->id &= 0x7fffffff;
            if (len >= 8)
                x->value = (uint32_t)h[12] << 24 | (uint32_t)h[13] << 16 |
                           (uint32_t)h[14] << 8 | h[15];
        } else {
            x->id = ((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3]);
            ck_assert_uint_lt(len, sizeof x->data);
            memcpy(x->data, h + 8, len);
            x->len = len;
        }
        off += 8 + len;
    }
    ck_assert_uint_eq(off, n);
    return k;
}

static struct sframe frames[64];

/* ---- SPDY tests ---------------------------------------------------------------------------- */

START_TEST(spdy_go_client_exec)
{
    struct user u;
    rc_session *rc = session(&u, RC_SPDY, "v4.channel.k8s.io", true, true, true, false);
    /* kubectl's own bytes: four streams, stdin data, stdin FIN, and a
     * port-forward pair this session refuses. */
    feed_all(rc, go_client, sizeof go_client);
    ck_assert_int_eq(u.starts, 1);
    ck_assert(rc_started(rc));
    ck_assert_uint_eq(u.in_len, 6);
    ck_assert_int_eq(memcmp(u.in, "hello\n", 6), 0);
    ck_assert_int_eq(u.stdin_closes, 1);
    ck_assert_int_eq(u.gones, 0);

    int k = spdy_frames(out, take(rc), frames, 64);
    ck_assert_int_eq(k, 6);
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq(frames[i].type, SPDY_SYN_REPLY);
        ck_assert_uint_eq(frames[i].id, 1 + 2 * (uint32_t)i);
    }
    /* A second error stream, and a type exec does not know. */
    ck_assert_uint_eq(frames[4].type, SPDY_RST_STREAM);
    ck_assert_uint_eq(frames[4].id, 9);
    ck_assert_uint_eq(frames[4].value, SPDY_PROTOCOL_ERROR);
    ck_assert_uint_eq(frames[5].id, 11);
    ck_assert_uint_eq(frames[5].value, SPDY_REFUSED_STREAM);

    ck_assert_int_eq(rc_write(rc, RC_STDOUT, "out", 3), 0);
    ck_assert_int_eq(rc_write(rc, RC_STDERR, "err", 3), 0);
    rc_finish(rc, 3, NULL);
    ck_assert(rc_closing(rc));
    ck_assert_int_eq(rc_write(rc, RC_STDOUT, "late", 4), -1);

    k = spdy_frames(out, take(rc), frames, 64);
    /* stdout data, stderr data, FIN stdout, FIN stderr, the status, FIN
     * error, FIN on our half of stdin, GOAWAY. */
    ck_assert_int_eq(k, 8);
    ck_assert_uint_eq(frames[0].id, 5);
    ck_assert_int_eq(memcmp(frames[0].data, "out", 3), 0);
    ck_assert_uint_eq(frames[1].id, 7);
    ck_assert_uint_eq(frames[2].id, 5);
    ck_assert_uint_eq(frames[2].flags, SPDY_FLAG_FIN);
    ck_assert_uint_eq(frames[3].id, 7);
    ck_assert_uint_eq(frames[3].flags, SPDY_FLAG_FIN);
    ck_assert_uint_eq(frames[4].id, 1);
    frames[4].data[frames[4].len] = '\0';
    ck_assert_ptr_nonnull(strstr(frames[4].data, "\"reason\":\"NonZeroExitCode\""));
    ck_assert_ptr_nonnull(strstr(frames[4].data, "{\"reason\":\"ExitCode\",\"message\":\"3\"}"));
    ck_assert_uint_eq(frames[5].id, 1);
    ck_assert_uint_eq(frames[5].flags, SPDY_FLAG_FIN);
    ck_assert_uint_eq(frames[6].id, 3);
    ck_assert_uint_eq(frames[7].type, SPDY_GOAWAY);
    ck_assert_uint_eq(frames[7].value, SPDY_GOAWAY_OK);

    rc_connection_lost(rc); /* after the end: not "gone" */
    ck_assert_int_eq(u.gones, 0);
    rc_free(rc);
}
END_TEST

START_TEST(spdy_start_waits_for_every_stream)
{
    struct user u;
    rc_session *rc = session(&u, RC_SPDY, "v4.channel.k8s.io", false, true, true, false);
    spdy_session *c = client();
    open_stream(c, rc, 1, "error");
    open_stream(c, rc, 3, "stdout");
    ck_assert_int_eq(u.starts, 0);
    /* Unknown types are refused; a type twice is a protocol error. */
    open_stream(c, rc, 5, "bogus");
    open_stream(c, rc, 7, "stdout");
    ck_assert_int_eq(u.starts, 0);
    open_stream(c, rc, 9, "stderr");
    ck_assert_int_eq(u.starts, 1);
    int k = spdy_frames(out, take(rc), frames, 64);
    ck_assert_int_eq(k, 5);
    ck_assert_uint_eq(frames[2].type, SPDY_RST_STREAM);
    ck_assert_uint_eq(frames[2].value, SPDY_REFUSED_STREAM);
    ck_assert_uint_eq(frames[3].type, SPDY_RST_STREAM);
    ck_assert_uint_eq(frames[3].value, SPDY_PROTOCOL_ERROR);
    ck_assert_uint_eq(frames[4].type, SPDY_SYN_REPLY);
    /* Streams after the start are refused too. */
    open_stream(c, rc, 11, "stdin");
    k = spdy_frames(out, take(rc), frames, 64);
    ck_assert_int_eq(k, 1);
    ck_assert_uint_eq(frames[0].type, SPDY_RST_STREAM);
    spdy_session_free(c);
    rc_free(rc);

    /* A client that never opens them all is given up on. */
    rc = session(&u, RC_SPDY, "v4.channel.k8s.io", true, true, false, false);
    c = client();
    open_stream(c, rc, 1, "error");
    ck_assert(!rc_started(rc));
    rc_abort(rc, "timed out waiting for client to create streams");
    ck_assert(rc_closing(rc));
    ck_assert_int_eq(u.gones, 0);
    k = spdy_frames(out, take(rc), frames, 64);
    ck_assert_uint_eq(frames[k - 1].type, SPDY_GOAWAY);
    spdy_session_free(c);
    rc_free(rc);
}
END_TEST

START_TEST(spdy_stdin_in_the_same_read_as_the_streams)
{
    /* A client that does not wait for SYN_REPLY: streams and stdin arrive
     * in one read; the command must be started before stdin is handed on. */
    struct user u;
    rc_session *rc = session(&u, RC_SPDY, "v4.channel.k8s.io", true, true, false, false);
    spdy_session *c = client();
    static uint8_t all[4096];
    size_t n = 0;
    const char *types[] = {"error", "stdin", "stdout"};
    for (uint32_t i = 0; i < 3; i++) {
        spdy_nv nv[] = {{"streamtype", types[i], 0}};
        ck_assert_int_eq(spdy_write_syn_stream(c, 1 + 2 * i, 0, nv, 1), 0);
    }
    const uint8_t *p;
    size_t m = spdy_output(c, &p);
    memcpy(all, p, m);
    n = m;
    uint8_t d[12] = {0, 0, 0, 3, SPDY_FLAG_FIN, 0, 0, 4, 'e', 'c', 'h', 'o'};
    memcpy(all + n, d, sizeof d);
    n += sizeof d;
    feed_all(rc, all, n);
    ck_assert_int_eq(u.starts, 1);
    ck_assert_uint_eq(u.in_len, 4);
    ck_assert_int_eq(memcmp(u.in, "echo", 4), 0);
    ck_assert_int_eq(u.stdin_closes, 1);
    /* The replies went out before anything else could. */
    int k = spdy_frames(out, take(rc), frames, 64);
    ck_assert_int_eq(k, 3);
    spdy_session_free(c);
    rc_free(rc);
}
END_TEST

START_TEST(spdy_tty_resize)
{
    struct user u;
    rc_session *rc = session(&u, RC_SPDY, "v4.channel.k8s.io", true, true, true, true);
    spdy_session *c = client();
    open_stream(c, rc, 1, "error");
    open_stream(c, rc, 3, "stdin");
    open_stream(c, rc, 5, "stdout");
    ck_assert_int_eq(u.starts, 0); /* no stderr with a tty, but a resize stream */
    open_stream(c, rc, 7, "resize");
    ck_assert_int_eq(u.starts, 1);

    /* Go's json.Encoder: one object per line, split anywhere. */
    const char *a = "{\"Width\":80,\"Height\":24}\n{\"Width\":1";
    const char *b = "00,\"Height\":50}\n";
    send_data(rc, 7, false, a, strlen(a));
    ck_assert_int_eq(u.resizes, 1);
    send_data(rc, 7, false, b, strlen(b));
    ck_assert_int_eq(u.resizes, 2);
    ck_assert_uint_eq(u.w[0], 80);
    ck_assert_uint_eq(u.h[0], 24);
    ck_assert_uint_eq(u.w[1], 100);
    ck_assert_uint_eq(u.h[1], 50);

    /* Field names match case-insensitively, as encoding/json has it. */
    const char *ok = "{\"width\":3,\"HEIGHT\":4} \r\n";
    send_data(rc, 7, false, ok, strlen(ok));
    ck_assert_int_eq(u.resizes, 3);
    ck_assert_uint_eq(u.w[2], 3);
    ck_assert_uint_eq(u.h[2], 4);
    ck_assert_int_eq(u.gones, 0);
    ck_assert(!rc_closing(rc));
    spdy_session_free(c);
    rc_free(rc);
}
END_TEST

/* A resize message that is not a terminal size ends the session: the
 * command is cancelled (on_gone), the error stream says why, and the
 * connection goes away. */
START_TEST(spdy_bad_resize_ends_the_session)
{
    static char longobj[1001]; /* too long to be a terminal size */
    memset(longobj, ' ', sizeof longobj - 1);
    longobj[0] = '{';
    memcpy(longobj + 1, "\"Width\":1,\"Height\":2", 20);
    longobj[sizeof longobj - 2] = '}';
    const char *bad[] = {
        "{\"Width\":\"wide\",\"Height\":1}", "{\"Width\":70000,\"Height\":1}",
        "{\"Width\":-1,\"Height\":1}", "xyz", "{\"Width\":1,,}", "[1,2]",
        "{\"Width\":1.5,\"Height\":1}", "{\"Width\":\"}{\\\"\"}",
        longobj,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct user u;
        rc_session *rc = session(&u, RC_SPDY, "v4.channel.k8s.io", true, true, false, true);
        spdy_session *c = client();
        open_stream(c, rc, 1, "error");
        open_stream(c, rc, 3, "stdin");
        open_stream(c, rc, 5, "stdout");
        open_stream(c, rc, 7, "resize");
        ck_assert_int_eq(u.starts, 1);
        take(rc);
        const char *good = "{\"Width\":80,\"Height\":24}\n";
        send_data(rc, 7, false, good, strlen(good));
        ck_assert_int_eq(u.resizes, 1);
        /* A missing field is 0, as Go decodes it: not a bad message. */
        send_data(rc, 7, false, "{\"Height\":9}{}", 14);
        ck_assert_int_eq(u.resizes, 3);
        ck_assert_int_eq(u.gones, 0);

        send_data(rc, 7, false, bad[i], strlen(bad[i]));
        ck_assert_msg(u.gones == 1, "case %zu: the command was not cancelled", i);
        ck_assert_int_eq(u.resizes, 3);
        ck_assert(rc_closing(rc));
        int k = spdy_frames(out, take(rc), frames, 64);
        bool said = false;
        for (int j = 0; j < k; j++) {
            if (frames[j].id != 1 || !frames[j].len)
                continue;
            frames[j].data[frames[j].len] = '\0';
            said = strstr(frames[j].data, "\"status\":\"Failure\"") &&
                   strstr(frames[j].data, "\"reason\":\"BadRequest\"") &&
                   strstr(frames[j].data, "invalid resize message");
        }
        ck_assert_msg(said, "case %zu: no BadRequest on the error stream", i);
        ck_assert_uint_eq(frames[k - 1].type, SPDY_GOAWAY);
        /* The cancelled command's end adds nothing. */
        ck_assert_int_eq(rc_write(rc, RC_STDOUT, "late", 4), -1);
        rc_finish(rc, 0, NULL);
        const uint8_t *p;
        ck_assert_uint_eq(rc_output(rc, &p), 0);
        rc_connection_lost(rc);
        ck_assert_int_eq(u.gones, 1);
        spdy_session_free(c);
        rc_free(rc);
    }
}
END_TEST

START_TEST(spdy_v2_errors_are_text)
{
    struct user u;
    rc_session *rc = session(&u, RC_SPDY, "v2.channel.k8s.io", false, true, false, true);
    spdy_session *c = client();
    open_stream(c, rc, 1, "error");
    open_stream(c, rc, 3, "resize"); /* v2 has none */
    open_stream(c, rc, 5, "stdout");
    ck_assert_int_eq(u.starts, 1);
    take(rc);
    rc_finish(rc, 3, NULL);
    int k = spdy_frames(out, take(rc), frames, 64);
    /* FIN stdout, the message, FIN error, GOAWAY. */
    ck_assert_int_eq(k, 4);
    ck_assert_uint_eq(frames[1].id, 1);
    frames[1].data[frames[1].len] = '\0';
    ck_assert_str_eq(frames[1].data, "command terminated with non-zero exit code: exit status 3");
    spdy_session_free(c);
    rc_free(rc);

    /* Success says nothing before v4. */
    rc = session(&u, RC_SPDY, "v3.channel.k8s.io", false, true, false, false);
    c = client();
    open_stream(c, rc, 1, "error");
    open_stream(c, rc, 3, "stdout");
    take(rc);
    rc_finish(rc, 0, NULL);
    k = spdy_frames(out, take(rc), frames, 64);
    ck_assert_int_eq(k, 3);
    for (int i = 0; i < 2; i++)
        ck_assert_uint_eq(frames[i].len, 0);
    spdy_session_free(c);
    rc_free(rc);
}
END_TEST

START_TEST(spdy_client_goes_away)
{
    struct user u;
    rc_session *rc = session(&u, RC_SPDY, "v4.channel.k8s.io", true, true, false, false);
    spdy_session *c = client();
    open_stream(c, rc, 1, "error");
    open_stream(c, rc, 3, "stdin");
    open_stream(c, rc, 5, "stdout");
    ck_assert_int_eq(u.starts, 1);
    rc_connection_lost(rc);
    rc_connection_lost(rc);
    ck_assert_int_eq(u.gones, 1);
    ck_assert_int_eq(rc_write(rc, RC_STDOUT, "x", 1), -1);
    spdy_session_free(c);
    rc_free(rc);

    /* A protocol error is the client going away too. */
    rc = session(&u, RC_SPDY, "v4.channel.k8s.io", true, true, false, false);
    uint8_t junk[16] = {0x80, 9, 0, 1, 0, 0, 0, 8};
    feed_all(rc, junk, sizeof junk);
    ck_assert_int_eq(u.gones, 1);
    ck_assert(rc_closing(rc));
    rc_free(rc);
}
END_TEST

START_TEST(spdy_backpressure)
{
    struct user u;
    rc_session *rc = session(&u, RC_SPDY, "v4.channel.k8s.io", true, true, false, false);
    spdy_session *c = client();
    open_stream(c, rc, 1, "error");
    open_stream(c, rc, 3, "stdin");
    open_stream(c, rc, 5, "stdout");
    take(rc);
    static uint8_t big[300 * 1024];
    ck_assert(rc_writable(rc));
    ck_assert_int_eq(rc_write(rc, RC_STDOUT, big, sizeof big), 0);
    ck_assert(!rc_writable(rc));
    ck_assert(!rc_wants_input(rc));
    uint8_t f[9] = {0, 0, 0, 3, 0, 0, 0, 1, 'x'};
    ck_assert_uint_eq(rc_feed(rc, f, sizeof f), 0); /* stdin waits */
    ck_assert_uint_eq(u.in_len, 0);
    take(rc);
    ck_assert_int_eq(u.writables, 1);
    feed_all(rc, f, sizeof f);
    ck_assert_uint_eq(u.in_len, 1);

    rc_pause_input(rc, true);
    ck_assert_uint_eq(rc_feed(rc, f, sizeof f), 0);
    rc_pause_input(rc, false);
    feed_all(rc, f, sizeof f);
    ck_assert_uint_eq(u.in_len, 2);
    spdy_session_free(c);
    rc_free(rc);
}
END_TEST

/* ---- WebSocket helpers -------------------------------------------------------------------- */

static size_t ws_frame(uint8_t *dst, int op, const void *payload, size_t len)
{
    static const uint8_t key[4] = {1, 2, 3, 4};
    size_t o = 0;
    dst[o++] = (uint8_t)(0x80 | op);
    ck_assert_uint_lt(len, 126);
    dst[o++] = (uint8_t)(0x80 | len);
    memcpy(dst + o, key, 4);
    o += 4;
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        dst[o + i] = p[i] ^ key[i % 4];
    return o + len;
}

static void ws_msg(rc_session *rc, int op, const void *payload, size_t len)
{
    uint8_t f[256];
    feed_all(rc, f, ws_frame(f, op, payload, len));
}

struct wmsg {
    int op;
    uint8_t data[1024];
    size_t len;
};

static struct wmsg msgs[32];

static int ws_messages(const uint8_t *b, size_t n)
{
    int k = 0;
    size_t off = 0;
    while (off < n) {
        ck_assert_int_lt(k, 32);
        const uint8_t *h = b + off;
        size_t len = h[1] & 0x7f, o = 2;
        if (len == 126) {
            len = (size_t)h[2] << 8 | h[3];
            o = 4;
        }
        ck_assert(h[0] & 0x80);
        msgs[k].op = h[0] & 0x0f;
        ck_assert_uint_le(len, sizeof msgs[k].data);
        memcpy(msgs[k].data, h + o, len);
        msgs[k].len = len;
        k++;
        off += o + len;
    }
    ck_assert_uint_eq(off, n);
    return k;
}

/* ---- WebSocket tests ------------------------------------------------------------------------ */

START_TEST(ws_v4_exec)
{
    struct user u;
    rc_session *rc = session(&u, RC_WEBSOCKET, "v4.channel.k8s.io", true, true, true, true);
    ck_assert_int_eq(u.starts, 1); /* no streams to wait for */
    int k = ws_messages(out, take(rc));
    ck_assert_int_eq(k, 1);
    ck_assert_int_eq(msgs[0].op, 2);
    ck_assert_uint_eq(msgs[0].len, 1);
    ck_assert_uint_eq(msgs[0].data[0], 1); /* hello on stdout */

    ws_msg(rc, 2, "\0hi", 3);
    ck_assert_uint_eq(u.in_len, 2);
    ck_assert_int_eq(memcmp(u.in, "hi", 2), 0);
    ws_msg(rc, 2, "\4{\"Width\":120,\"Height\":40}", 26);
    ck_assert_int_eq(u.resizes, 1);
    ck_assert_uint_eq(u.w[0], 120);
    ck_assert_uint_eq(u.h[0], 40);
    ws_msg(rc, 2, "\4{\"Width\":1,", 12); /* split across messages */
    ws_msg(rc, 2, "\4\"Height\":2}", 12);
    ck_assert_int_eq(u.resizes, 2);
    ck_assert_uint_eq(u.w[1], 1);
    ck_assert_uint_eq(u.h[1], 2);
    /* Unknown channels and the close signal of v5 mean nothing here. */
    ws_msg(rc, 2, "\x09x", 2);
    ws_msg(rc, 2, "\xff\0", 2);
    ck_assert_int_eq(u.stdin_closes, 0);
    ck_assert_int_eq(u.gones, 0);

    ck_assert_int_eq(rc_write(rc, RC_STDOUT, "out", 3), 0);
    rc_write(rc, RC_STDERR, "dropped: a tty has no stderr", 28);
    rc_finish(rc, 0, NULL);
    ck_assert(rc_closing(rc));
    k = ws_messages(out, take(rc));
    ck_assert_int_eq(k, 3);
    ck_assert_int_eq(memcmp(msgs[0].data, "\1out", 4), 0);
    ck_assert_uint_eq(msgs[1].data[0], 3);
    msgs[1].data[msgs[1].len] = '\0';
    ck_assert_str_eq((char *)msgs[1].data + 1, "{\"metadata\":{},\"status\":\"Success\"}");
    ck_assert_int_eq(msgs[2].op, 8);
    ck_assert_uint_eq((unsigned)(msgs[2].data[0] << 8 | msgs[2].data[1]), 1000);
    rc_free(rc);
}
END_TEST

START_TEST(ws_bad_resize_ends_the_session)
{
    struct user u;
    rc_session *rc = session(&u, RC_WEBSOCKET, "v5.channel.k8s.io", true, true, false, true);
    take(rc);
    ws_msg(rc, 2, "\4{\"Width\":", 10);
    ck_assert_int_eq(u.gones, 0);
    ws_msg(rc, 2, "\4}", 2); /* {"Width":} */
    ck_assert_int_eq(u.gones, 1);
    ck_assert_int_eq(u.resizes, 0);
    ck_assert(rc_closing(rc));
    int k = ws_messages(out, take(rc));
    ck_assert_int_eq(k, 2);
    ck_assert_uint_eq(msgs[0].data[0], 3);
    msgs[0].data[msgs[0].len] = '\0';
    ck_assert_ptr_nonnull(strstr((char *)msgs[0].data, "\"reason\":\"BadRequest\""));
    ck_assert_ptr_nonnull(strstr((char *)msgs[0].data, "invalid resize message"));
    ck_assert_ptr_nonnull(strstr((char *)msgs[0].data, "\"code\":400"));
    ck_assert_int_eq(msgs[1].op, 8);
    ws_msg(rc, 2, "\0more stdin", 11); /* nothing else reaches the user */
    ck_assert_uint_eq(u.in_len, 0);
    rc_finish(rc, 0, NULL);
    const uint8_t *p;
    ck_assert_uint_eq(rc_output(rc, &p), 0);
    rc_free(rc);

    /* Before v4 the error channel carries the message alone. */
    rc = session(&u, RC_WEBSOCKET, "channel.k8s.io", true, true, false, true);
    take(rc);
    ws_msg(rc, 2, "\4nonsense", 9);
    ck_assert_int_eq(u.gones, 1);
    k = ws_messages(out, take(rc));
    ck_assert_int_eq(k, 2);
    msgs[0].data[msgs[0].len] = '\0';
    ck_assert_str_eq((char *)msgs[0].data + 1, "invalid resize message: not a JSON object");
    rc_free(rc);
}
END_TEST

START_TEST(ws_v5_close_signal)
{
    struct user u;
    rc_session *rc = session(&u, RC_WEBSOCKET, "v5.channel.k8s.io", true, false, true, false);
    int k = ws_messages(out, take(rc));
    ck_assert_int_eq(k, 1);
    ck_assert_uint_eq(msgs[0].data[0], 2); /* hello on stderr: no stdout */
    ws_msg(rc, 2, "\0abc", 4);
    ws_msg(rc, 2, "\xff\0", 2);
    ck_assert_int_eq(u.stdin_closes, 1);
    ws_msg(rc, 2, "\0late", 5); /* after the close: dropped */
    ws_msg(rc, 2, "\xff\0", 2);
    ck_assert_int_eq(u.stdin_closes, 1);
    ck_assert_uint_eq(u.in_len, 3);
    rc_finish(rc, 3, NULL);
    k = ws_messages(out, take(rc));
    ck_assert_int_eq(k, 2);
    msgs[0].data[msgs[0].len] = '\0';
    ck_assert_ptr_nonnull(strstr((char *)msgs[0].data + 1, "\"message\":\"3\""));
    rc_free(rc);

    /* A close signal without its channel breaks the protocol. */
    rc = session(&u, RC_WEBSOCKET, "v5.channel.k8s.io", true, true, false, false);
    take(rc);
    ws_msg(rc, 2, "\xff", 1);
    ck_assert_int_eq(u.gones, 1);
    ck_assert(rc_closing(rc));
    k = ws_messages(out, take(rc));
    ck_assert_int_eq(msgs[k - 1].op, 8);
    ck_assert_uint_eq((unsigned)(msgs[k - 1].data[0] << 8 | msgs[k - 1].data[1]), 1002);
    rc_free(rc);
}
END_TEST

START_TEST(ws_base64)
{
    struct user u;
    rc_session *rc = session(&u, RC_WEBSOCKET, "v4.base64.channel.k8s.io", true, true, false,
                             false);
    int k = ws_messages(out, take(rc));
    ck_assert_int_eq(msgs[0].op, 1);
    ck_assert_uint_eq(msgs[0].len, 1);
    ck_assert_uint_eq(msgs[0].data[0], '1');

    ws_msg(rc, 1, "0aGk=", 5);      /* "hi" */
    ws_msg(rc, 1, "0aGVsbG8=", 9);  /* "hello" */
    ws_msg(rc, 1, "0YWJj", 5);      /* "abc" */
    ws_msg(rc, 1, "0!!!!", 5);      /* not base64: dropped */
    ws_msg(rc, 1, "0abc", 4);       /* not padded: dropped */
    ck_assert_uint_eq(u.in_len, 10);
    ck_assert_int_eq(memcmp(u.in, "hihelloabc", 10), 0);
    ws_msg(rc, 1, "4eyJXaWR0aCI6MiwiSGVpZ2h0IjozfQ==", 33); /* {"Width":2,"Height":3} */
    ck_assert_int_eq(u.resizes, 0); /* no tty: no resize channel */

    ck_assert_int_eq(rc_write(rc, RC_STDOUT, "out", 3), 0);
    rc_finish(rc, 0, "boom");
    k = ws_messages(out, take(rc));
    ck_assert_int_eq(k, 3);
    ck_assert_int_eq(msgs[0].op, 1);
    ck_assert_uint_eq(msgs[0].len, 5);
    ck_assert_int_eq(memcmp(msgs[0].data, "1b3V0", 5), 0);
    ck_assert_uint_eq(msgs[1].data[0], '3');
    rc_free(rc);
}
END_TEST

START_TEST(ws_pre_v4_errors_are_text)
{
    struct user u;
    rc_session *rc = session(&u, RC_WEBSOCKET, "channel.k8s.io", false, true, false, false);
    take(rc);
    rc_finish(rc, 0, "no such container");
    int k = ws_messages(out, take(rc));
    ck_assert_int_eq(k, 2);
    msgs[0].data[msgs[0].len] = '\0';
    ck_assert_str_eq((char *)msgs[0].data,
                     "\3Internal error occurred: error executing command in container: "
                     "no such container");
    rc_free(rc);

    /* No subprotocol at all is the binary channel protocol; success is
     * silent. */
    rc = session(&u, RC_WEBSOCKET, "", false, true, false, false);
    take(rc);
    rc_finish(rc, 0, NULL);
    k = ws_messages(out, take(rc));
    ck_assert_int_eq(k, 1);
    ck_assert_int_eq(msgs[0].op, 8);
    rc_free(rc);

    rc_options o = {.stdout = true};
    ck_assert_ptr_null(rc_new(RC_WEBSOCKET, "v9.channel.k8s.io", &o, &ucbs, &u));
    ck_assert_ptr_null(rc_new(RC_SPDY, "v5.channel.k8s.io", &o, &ucbs, &u));
}
END_TEST

START_TEST(ws_client_close_and_backpressure)
{
    struct user u;
    rc_session *rc = session(&u, RC_WEBSOCKET, "v4.channel.k8s.io", true, true, false, false);
    take(rc);
    static uint8_t big[300 * 1024];
    ck_assert_int_eq(rc_write(rc, RC_STDOUT, big, sizeof big), 0);
    ck_assert(!rc_writable(rc));
    uint8_t f[64];
    size_t n = ws_frame(f, 2, "\0x", 2);
    ck_assert_uint_eq(rc_feed(rc, f, n), 0);
    const uint8_t *p;
    size_t pend = rc_output(rc, &p);
    rc_output_sent(rc, pend);
    ck_assert_int_eq(u.writables, 1);
    feed_all(rc, f, n);
    ck_assert_uint_eq(u.in_len, 1);

    ws_msg(rc, 8, "\x03\xe8", 2);
    ck_assert_int_eq(u.gones, 1);
    ck_assert(rc_closing(rc));
    rc_finish(rc, 0, NULL); /* too late: nothing more is sent */
    rc_free(rc);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("remotecommand");
    TCase *t = tcase_create("core");
    tcase_add_test(t, options_from_query);
    tcase_add_test(t, spdy_negotiation);
    tcase_add_test(t, status_documents);
    tcase_add_test(t, spdy_go_client_exec);
    tcase_add_test(t, spdy_start_waits_for_every_stream);
    tcase_add_test(t, spdy_stdin_in_the_same_read_as_the_streams);
    tcase_add_test(t, spdy_tty_resize);
    tcase_add_test(t, spdy_bad_resize_ends_the_session);
    tcase_add_test(t, spdy_v2_errors_are_text);
    tcase_add_test(t, spdy_client_goes_away);
    tcase_add_test(t, spdy_backpressure);
    tcase_add_test(t, ws_v4_exec);
    tcase_add_test(t, ws_bad_resize_ends_the_session);
    tcase_add_test(t, ws_v5_close_signal);
    tcase_add_test(t, ws_base64);
    tcase_add_test(t, ws_pre_v4_errors_are_text);
    tcase_add_test(t, ws_client_close_and_backpressure);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
