/* test_portforward.c -- port-forward over SPDY (stream pairs by requestID,
 * the legacy pairing by stream id, kubectl's own bytes, half-close, errors,
 * resets, timeouts) and WebSocket (port prefixes, channels, base64, end of
 * the last forward). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/portforward.h"
#include "../../core/spdy.h"
#include "spdy_go_capture.h"

struct user {
    int forwards, closes, cancels, writables;
    uint32_t id[8];
    uint16_t port[8];
    uint32_t cancelled[8];
    char in[1024];
    size_t in_len;
    uint32_t in_id;
};

static void u_forward(void *p, uint32_t id, uint16_t port)
{
    struct user *u = p;
    ck_assert_int_lt(u->forwards, 8);
    u->id[u->forwards] = id;
    u->port[u->forwards] = port;
    u->forwards++;
}
static void u_data(void *p, uint32_t id, const uint8_t *d, size_t n)
{
    struct user *u = p;
    memcpy(u->in + u->in_len, d, n);
    u->in_len += n;
    u->in_id = id;
}
static void u_close_write(void *p, uint32_t id)
{
    (void)id;
    ((struct user *)p)->closes++;
}
static void u_cancel(void *p, uint32_t id)
{
    struct user *u = p;
    u->cancelled[u->cancels++] = id;
}
static void u_writable(void *p)
{
    ((struct user *)p)->writables++;
}

static const pf_callbacks ucbs = {u_forward, u_data, u_close_write, u_cancel, u_writable};

static uint8_t out[1 << 16];

static size_t take(pf_session *pf)
{
    const uint8_t *p;
    size_t n = pf_output(pf, &p);
    ck_assert_uint_le(n, sizeof out);
    memcpy(out, p, n);
    pf_output_sent(pf, n);
    return n;
}

static void feed_all(pf_session *pf, const uint8_t *p, size_t n)
{
    ck_assert_uint_eq(pf_feed(pf, p, n), n);
}

/* ---- SPDY ---------------------------------------------------------------------- */

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

static void open_stream(spdy_session *c, pf_session *pf, uint32_t sid, const char *type,
                        const char *port, const char *request)
{
    spdy_nv nv[3] = {{"streamtype", type, 0}, {"port", port, 0}, {"requestid", request, 0}};
    ck_assert_int_eq(spdy_write_syn_stream(c, sid, 0, nv, request ? 3 : 2), 0);
    const uint8_t *p;
    size_t n = spdy_output(c, &p);
    feed_all(pf, p, n);
    spdy_output_sent(c, n);
}

static void send_data(pf_session *pf, uint32_t id, bool fin, const char *s, size_t len)
{
    uint8_t f[256] = {(uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id,
                      fin ? SPDY_FLAG_FIN : 0, 0, 0, (uint8_t)len};
    memcpy(f + 8, s, len);
    feed_all(pf, f, 8 + len);
}

struct sframe {
    uint16_t type;
    uint32_t id, value;
    uint8_t flags;
    char data[512];
    size_t len;
};

static struct sframe fr[32];

static int frames(const uint8_t *b, size_t n)
{
    int k = 0;
    size_t off = 0;
    while (off < n) {
        const uint8_t *h = b + off;
        size_t len = (size_t)h[5] << 16 | (size_t)h[6] << 8 | h[7];
        struct sframe *x = &fr[k++];
        memset(x, 0, sizeof *x);
        x->flags = h[4];
        if (h[0] & 0x80) {
            x->type = (uint16_t)(h[2] << 8 | h[3]);
            x->id = ((uint32_t)h[10] << 8 | h[11]);
            if (len >= 8)
                x->value = h[15];
        } else {
            x->id = (uint32_t)h[2] << 8 | h[3];
            memcpy(x->data, h + 8, len);
            x->len = len;
        }
        off += 8 + len;
    }
    return k;
}

START_TEST(spdy_kubectl_pair)
{
    struct user u = {0};
    pf_session *pf = pf_new(PF_SPDY, "portforward.k8s.io", NULL, 0, &ucbs, &u);
    ck_assert_ptr_nonnull(pf);
    pf_open(pf);
    /* kubectl's bytes: the four exec streams are refused (no port), then
     * its error+data pair for 8080, requestID 0, starts a forward. */
    feed_all(pf, go_client, sizeof go_client);
    ck_assert_int_eq(u.forwards, 1);
    ck_assert_uint_eq(u.port[0], 8080);
    ck_assert_uint_eq(u.in_len, 0); /* stdin data went to a refused stream */
    int k = frames(out, take(pf));
    ck_assert_int_eq(k, 6);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(fr[i].type, SPDY_RST_STREAM);
    ck_assert_uint_eq(fr[4].type, SPDY_SYN_REPLY);
    ck_assert_uint_eq(fr[5].type, SPDY_SYN_REPLY);

    send_data(pf, 11, false, "GET /", 5);
    ck_assert_uint_eq(u.in_len, 5);
    ck_assert_uint_eq(u.in_id, u.id[0]);
    ck_assert_int_eq(pf_write(pf, u.id[0], "HTTP/1.0 200", 12), 0);
    send_data(pf, 11, true, "", 0);
    ck_assert_int_eq(u.closes, 1);
    pf_end(pf, u.id[0], NULL);
    ck_assert_int_eq(pf_write(pf, u.id[0], "x", 1), -1);
    k = frames(out, take(pf));
    ck_assert_int_eq(k, 3);
    ck_assert_uint_eq(fr[0].id, 11);
    ck_assert_int_eq(memcmp(fr[0].data, "HTTP/1.0 200", 12), 0);
    ck_assert_uint_eq(fr[1].id, 11);
    ck_assert_uint_eq(fr[1].flags, SPDY_FLAG_FIN);
    ck_assert_uint_eq(fr[2].id, 9);
    ck_assert_uint_eq(fr[2].flags, SPDY_FLAG_FIN);
    ck_assert(!pf_closing(pf));
    pf_connection_lost(pf);
    ck_assert_int_eq(u.cancels, 0); /* nothing was running */
    pf_free(pf);
}
END_TEST

START_TEST(spdy_pairs_errors_and_resets)
{
    struct user u = {0};
    pf_session *pf = pf_new(PF_SPDY, "portforward.k8s.io", NULL, 0, &ucbs, &u);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    pf_open(pf);
    /* Two requests interleaved, paired by requestID. */
    open_stream(c, pf, 1, "error", "80", "a");
    open_stream(c, pf, 3, "error", "81", "b");
    open_stream(c, pf, 5, "data", "81", "b");
    ck_assert_int_eq(u.forwards, 1);
    ck_assert_uint_eq(u.port[0], 81);
    open_stream(c, pf, 7, "data", "80", "a");
    ck_assert_int_eq(u.forwards, 2);
    ck_assert_uint_eq(u.port[1], 80);
    /* Legacy: no requestID, error then data with consecutive ids. */
    open_stream(c, pf, 9, "error", "82", NULL);
    open_stream(c, pf, 11, "data", "82", NULL);
    ck_assert_int_eq(u.forwards, 3);
    ck_assert_uint_eq(u.port[2], 82);
    /* Bad headers are refused. */
    open_stream(c, pf, 13, "data", "0", "c");
    open_stream(c, pf, 15, "data", "http", "c");
    open_stream(c, pf, 17, "stdin", "80", "c");
    ck_assert_int_eq(u.forwards, 3);
    take(pf);

    /* A failure goes to the error stream, then both close. */
    pf_end(pf, u.id[0], "error forwarding port 81: connection refused");
    int k = frames(out, take(pf));
    ck_assert_int_eq(k, 3);
    ck_assert_uint_eq(fr[0].id, 3);
    fr[0].data[fr[0].len] = '\0';
    ck_assert_str_eq(fr[0].data, "error forwarding port 81: connection refused");
    ck_assert_uint_eq(fr[1].id, 5);
    ck_assert_uint_eq(fr[2].id, 3);

    /* The client resets a data stream: the forward is cancelled and the
     * error stream reset too. */
    uint8_t rst[16] = {0x80, 3, 0, SPDY_RST_STREAM, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, SPDY_CANCEL};
    feed_all(pf, rst, sizeof rst);
    ck_assert_int_eq(u.cancels, 1);
    ck_assert_uint_eq(u.cancelled[0], u.id[1]);
    k = frames(out, take(pf));
    ck_assert_int_eq(k, 1);
    ck_assert_uint_eq(fr[0].type, SPDY_RST_STREAM);
    ck_assert_uint_eq(fr[0].id, 1);

    /* The connection goes: the remaining forward is cancelled. */
    pf_connection_lost(pf);
    ck_assert_int_eq(u.cancels, 2);
    ck_assert_uint_eq(u.cancelled[1], u.id[2]);
    spdy_session_free(c);
    pf_free(pf);
}
END_TEST

START_TEST(spdy_data_in_the_same_read_as_the_pair)
{
    struct user u = {0};
    pf_session *pf = pf_new(PF_SPDY, "portforward.k8s.io", NULL, 0, &ucbs, &u);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    spdy_nv e[] = {{"streamtype", "error", 0}, {"port", "80", 0}, {"requestid", "1", 0}};
    spdy_nv d[] = {{"streamtype", "data", 0}, {"port", "80", 0}, {"requestid", "1", 0}};
    ck_assert_int_eq(spdy_write_syn_stream(c, 1, 0, e, 3), 0);
    ck_assert_int_eq(spdy_write_syn_stream(c, 3, 0, d, 3), 0);
    static uint8_t all[4096];
    const uint8_t *p;
    size_t n = spdy_output(c, &p);
    memcpy(all, p, n);
    uint8_t frame[11] = {0, 0, 0, 3, 0, 0, 0, 3, 'G', 'E', 'T'};
    memcpy(all + n, frame, sizeof frame);
    n += sizeof frame;
    feed_all(pf, all, n);
    ck_assert_int_eq(u.forwards, 1);
    ck_assert_uint_eq(u.in_len, 3);
    spdy_session_free(c);
    pf_free(pf);
}
END_TEST

START_TEST(spdy_incomplete_pair_expires)
{
    struct user u = {0};
    pf_session *pf = pf_new(PF_SPDY, "portforward.k8s.io", NULL, 0, &ucbs, &u);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    open_stream(c, pf, 1, "error", "80", "x");
    take(pf);
    pf_expire(pf, 3600); /* not yet */
    ck_assert_uint_eq(take(pf), 0);
    pf_expire(pf, 0);
    int k = frames(out, take(pf));
    ck_assert_int_eq(k, 1);
    ck_assert_uint_eq(fr[0].id, 1);
    ck_assert_uint_eq(fr[0].flags, SPDY_FLAG_FIN);
    fr[0].data[fr[0].len] = '\0';
    ck_assert_str_eq(fr[0].data, "timed out waiting for streams");
    /* A late data stream for it starts a new, lone pair. */
    open_stream(c, pf, 3, "data", "80", "x");
    ck_assert_int_eq(u.forwards, 0);
    spdy_session_free(c);
    pf_free(pf);
}
END_TEST

static const char *get_port(void *ud, const char *key, int n)
{
    const char *const *v = ud;
    if (strcmp(key, "port") != 0)
        return NULL;
    for (int i = 0; v[i]; i++)
        if (i == n)
            return v[i];
    return NULL;
}

START_TEST(query_ports)
{
    uint16_t ports[4];
    char err[128];
    const char *ok[] = {"80,8080", "9090", NULL};
    ck_assert_int_eq(pf_parse_ports(get_port, ok, ports, 4, err, sizeof err), 3);
    ck_assert_uint_eq(ports[0], 80);
    ck_assert_uint_eq(ports[1], 8080);
    ck_assert_uint_eq(ports[2], 9090);
    const char *none[] = {NULL};
    ck_assert_int_eq(pf_parse_ports(get_port, none, ports, 4, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "required"));
    const char *bad[][2] = {{"0", NULL}, {"65536", NULL}, {"80,", NULL}, {"x", NULL},
                            {"", NULL}, {"-1", NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_int_eq(pf_parse_ports(get_port, bad[i], ports, 4, err, sizeof err), -1);
    const char *many[] = {"1,2,3,4,5", NULL};
    ck_assert_int_eq(pf_parse_ports(get_port, many, ports, 4, err, sizeof err), -1);

    const char *v = NULL;
    ck_assert_int_eq(pf_negotiate_spdy("portforward.k8s.io", &v), 0);
    ck_assert_str_eq(v, "portforward.k8s.io");
    ck_assert_int_eq(pf_negotiate_spdy("v4.channel.k8s.io", &v), 403);
    ck_assert_int_eq(pf_negotiate_spdy(NULL, &v), 400);
}
END_TEST

/* ---- WebSocket ------------------------------------------------------------------- */

static size_t ws_frame(uint8_t *dst, int op, const void *payload, size_t len)
{
    static const uint8_t key[4] = {9, 8, 7, 6};
    dst[0] = (uint8_t)(0x80 | op);
    dst[1] = (uint8_t)(0x80 | len);
    memcpy(dst + 2, key, 4);
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        dst[6 + i] = p[i] ^ key[i % 4];
    return 6 + len;
}

static void ws_msg(pf_session *pf, int op, const void *payload, size_t len)
{
    uint8_t f[256];
    feed_all(pf, f, ws_frame(f, op, payload, len));
}

struct wmsg {
    int op;
    uint8_t data[256];
    size_t len;
};
static struct wmsg m[16];

static int messages(const uint8_t *b, size_t n)
{
    int k = 0;
    for (size_t off = 0; off < n; k++) {
        size_t len = b[off + 1] & 0x7f;
        m[k].op = b[off] & 0x0f;
        memcpy(m[k].data, b + off + 2, len);
        m[k].len = len;
        off += 2 + len;
    }
    return k;
}

START_TEST(ws_two_ports)
{
    struct user u = {0};
    uint16_t ports[] = {8080, 53};
    pf_session *pf = pf_new(PF_WEBSOCKET, "v4.channel.k8s.io", ports, 2, &ucbs, &u);
    ck_assert_ptr_nonnull(pf);
    pf_open(pf);
    ck_assert_int_eq(u.forwards, 2);
    ck_assert_uint_eq(u.port[0], 8080);
    ck_assert_uint_eq(u.port[1], 53);
    /* Every channel opens with its port, little-endian. */
    int k = messages(out, take(pf));
    ck_assert_int_eq(k, 4);
    const uint8_t want[4][3] = {{0, 0x90, 0x1f}, {1, 0x90, 0x1f}, {2, 53, 0}, {3, 53, 0}};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(m[i].op, 2);
        ck_assert_uint_eq(m[i].len, 3);
        ck_assert_int_eq(memcmp(m[i].data, want[i], 3), 0);
    }
    ws_msg(pf, 2, "\2query", 6);
    ck_assert_uint_eq(u.in_id, u.id[1]);
    ck_assert_uint_eq(u.in_len, 5);
    ws_msg(pf, 2, "\3nope", 5); /* an error channel: the client has no say */
    ws_msg(pf, 2, "\7nope", 5); /* no such port */
    ck_assert_uint_eq(u.in_len, 5);

    ck_assert_int_eq(pf_write(pf, u.id[1], "answer", 6), 0);
    pf_end(pf, u.id[1], "gone");
    ck_assert(!pf_closing(pf));
    pf_end(pf, u.id[0], NULL); /* the last one ends the connection */
    ck_assert(pf_closing(pf));
    k = messages(out, take(pf));
    ck_assert_int_eq(k, 3);
    ck_assert_int_eq(memcmp(m[0].data, "\2answer", 7), 0);
    ck_assert_int_eq(memcmp(m[1].data, "\3gone", 5), 0);
    ck_assert_int_eq(m[2].op, 8);
    pf_free(pf);
}
END_TEST

START_TEST(ws_base64_and_client_close)
{
    struct user u = {0};
    uint16_t port = 80;
    pf_session *pf = pf_new(PF_WEBSOCKET, "v4.base64.channel.k8s.io", &port, 1, &ucbs, &u);
    pf_open(pf);
    int k = messages(out, take(pf));
    ck_assert_int_eq(k, 2);
    ck_assert_int_eq(m[0].op, 1);
    ck_assert_uint_eq(m[0].len, 5);
    ck_assert_int_eq(memcmp(m[0].data, "0UAA=", 5), 0); /* base64 of 80, 0 */
    ws_msg(pf, 1, "0aGk=", 5);
    ck_assert_uint_eq(u.in_len, 2);
    ck_assert_int_eq(memcmp(u.in, "hi", 2), 0);
    ws_msg(pf, 8, "\x03\xe8", 2);
    ck_assert_int_eq(u.cancels, 1);
    ck_assert_int_eq(pf_write(pf, u.id[0], "x", 1), -1);
    pf_free(pf);

    ck_assert_ptr_null(pf_new(PF_WEBSOCKET, "v4.channel.k8s.io", &port, 0, &ucbs, &u));
    ck_assert_ptr_null(pf_new(PF_WEBSOCKET, "v5.channel.k8s.io", &port, 1, &ucbs, &u));
    ck_assert_ptr_null(pf_new(PF_SPDY, "v4.channel.k8s.io", NULL, 0, &ucbs, &u));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("portforward");
    TCase *t = tcase_create("core");
    tcase_add_test(t, spdy_kubectl_pair);
    tcase_add_test(t, spdy_pairs_errors_and_resets);
    tcase_add_test(t, spdy_data_in_the_same_read_as_the_pair);
    tcase_add_test(t, spdy_incomplete_pair_expires);
    tcase_add_test(t, query_ports);
    tcase_add_test(t, ws_two_ports);
    tcase_add_test(t, ws_base64_and_client_close);
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
