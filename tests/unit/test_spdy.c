/* test_spdy.c -- the SPDY/3.1 session of sdk-c/spdy.c. As a server: what a
 * Go spdystream client really sends, frame round trips, header compression
 * checked with a fresh inflater, malformed and oversize input, zlib bombs,
 * stream id rules, PING, flow control frames and backpressure. As a client:
 * a whole exec conversation with a server session, and what a client does
 * with frames only a server sends. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "spdy.h"
#include "spdy_go_capture.h"


/* ---- recording callbacks ------------------------------------------------ */

#define MAX_EVENTS 64

struct event {
    char kind; /* 'S' stream, 'D' data, 'F' fin, 'R' reset, 'G' goaway */
    uint32_t id;
    uint32_t status;
    char type[32], port[16], reqid[16];
    char data[256];
    size_t len;
};

struct rec {
    struct event ev[MAX_EVENTS];
    int n;
    int refuse;            /* on_stream answer */
    spdy_session *s;       /* for callbacks that act on the session */
    bool pause_on_data;
};

static struct event *push(struct rec *r, char kind, uint32_t id)
{
    ck_assert_int_lt(r->n, MAX_EVENTS);
    struct event *e = &r->ev[r->n++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->id = id;
    return e;
}

static void copy_hdr(char *dst, size_t cap, const char *v)
{
    snprintf(dst, cap, "%s", v ? v : "");
}

static int on_stream(void *user, uint32_t id, const spdy_headers *h)
{
    struct rec *r = user;
    struct event *e = push(r, 'S', id);
    copy_hdr(e->type, sizeof e->type, spdy_header_get(h, "streamtype"));
    copy_hdr(e->port, sizeof e->port, spdy_header_get(h, "port"));
    copy_hdr(e->reqid, sizeof e->reqid, spdy_header_get(h, "requestid"));
    return r->refuse;
}

static void on_data(void *user, uint32_t id, const uint8_t *data, size_t len)
{
    struct rec *r = user;
    /* Pieces of one frame are merged, to compare independently of how the
     * input was split. */
    struct event *e = r->n && r->ev[r->n - 1].kind == 'D' && r->ev[r->n - 1].id == id
                          ? &r->ev[r->n - 1]
                          : push(r, 'D', id);
    size_t room = sizeof e->data - e->len;
    memcpy(e->data + e->len, data, len < room ? len : room);
    e->len += len;
    if (r->pause_on_data)
        spdy_pause_input(r->s, true);
}

static void on_fin(void *user, uint32_t id)
{
    push(user, 'F', id);
}

static void on_reset(void *user, uint32_t id, uint32_t status)
{
    push(user, 'R', id)->status = status;
}

static void on_goaway(void *user, uint32_t status)
{
    push(user, 'G', 0)->status = status;
}

static const spdy_callbacks cbs = {on_stream, on_data, on_fin, on_reset, on_goaway};

static spdy_session *server(struct rec *r, const spdy_limits *lim)
{
    memset(r, 0, sizeof *r);
    r->s = spdy_session_new(&cbs, r, lim);
    ck_assert_ptr_nonnull(r->s);
    return r->s;
}

/* ---- decoding what the server wrote ------------------------------------ */

struct frame {
    bool control;
    uint16_t type, version;
    uint8_t flags;
    uint32_t id;     /* stream id, or PING id, or GOAWAY last good id */
    uint32_t value;  /* RST/GOAWAY status, WINDOW_UPDATE delta */
    uint8_t data[256 * 1024];
    size_t len;
    int nv;          /* header pairs, -1 when the frame has no block */
    char names[8][32], values[8][64];
};

static struct frame fr;

/* A peer's inflater: fresh, with the dictionary, kept across frames. */
struct peer {
    z_stream z;
    bool ready;
};

static void peer_free(struct peer *p)
{
    if (p->ready)
        inflateEnd(&p->z);
}

static void inflate_into(struct peer *p, const uint8_t *in, size_t len, uint8_t *out,
                         size_t *out_len, size_t cap)
{
    if (!p->ready) {
        ck_assert_int_eq(inflateInit(&p->z), Z_OK);
        p->ready = true;
    }
    p->z.next_in = (Bytef *)in;
    p->z.avail_in = (uInt)len;
    p->z.next_out = out;
    p->z.avail_out = (uInt)cap;
    int r = inflate(&p->z, Z_SYNC_FLUSH);
    if (r == Z_NEED_DICT) {
        ck_assert_uint_eq(p->z.adler, 0xe3c6a7c2u);
        ck_assert_int_eq(inflateSetDictionary(&p->z, spdy_dictionary, (uInt)spdy_dictionary_len),
                         Z_OK);
        r = inflate(&p->z, Z_SYNC_FLUSH);
    }
    ck_assert(r == Z_OK || r == Z_BUF_ERROR);
    ck_assert_uint_eq(p->z.avail_in, 0);
    *out_len = cap - p->z.avail_out;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Decode the next frame of buf at *off into fr; false at the end. */
static bool next_frame(struct peer *peer, const uint8_t *buf, size_t len, size_t *off)
{
    if (*off == len)
        return false;
    ck_assert_uint_ge(len - *off, 8);
    const uint8_t *h = buf + *off;
    size_t plen = (size_t)h[5] << 16 | (size_t)h[6] << 8 | h[7];
    ck_assert_uint_ge(len - *off - 8, plen);
    const uint8_t *p = h + 8;
    memset(&fr, 0, sizeof fr);
    fr.nv = -1;
    fr.flags = h[4];
    fr.control = h[0] & 0x80;
    if (!fr.control) {
        fr.id = be32(h) & 0x7fffffff;
        ck_assert_uint_le(plen, sizeof fr.data);
        memcpy(fr.data, p, plen);
        fr.len = plen;
    } else {
        fr.version = (uint16_t)((h[0] & 0x7f) << 8 | h[1]);
        fr.type = (uint16_t)(h[2] << 8 | h[3]);
        size_t fixed = fr.type == SPDY_SYN_STREAM ? 10 : 4;
        if (plen >= 4)
            fr.id = be32(p) & 0x7fffffff;
        if (plen >= 8)
            fr.value = be32(p + 4);
        if (fr.type == SPDY_SYN_STREAM || fr.type == SPDY_SYN_REPLY || fr.type == SPDY_HEADERS) {
            uint8_t block[4096];
            size_t blen;
            inflate_into(peer, p + fixed, plen - fixed, block, &blen, sizeof block);
            ck_assert_uint_ge(blen, 4);
            fr.nv = (int)be32(block);
            size_t o = 4;
            for (int i = 0; i < fr.nv && i < 8; i++) {
                uint32_t l = be32(block + o);
                memcpy(fr.names[i], block + o + 4, l);
                o += 4 + l;
                l = be32(block + o);
                memcpy(fr.values[i], block + o + 4, l);
                o += 4 + l;
            }
            ck_assert_uint_eq(o, blen);
        }
    }
    *off += 8 + plen;
    return true;
}

/* Everything the session wants to send, marked as sent. */
static size_t take_output(spdy_session *s, uint8_t *dst, size_t cap)
{
    const uint8_t *p;
    size_t n = spdy_output(s, &p);
    ck_assert_uint_le(n, cap);
    memcpy(dst, p, n);
    spdy_output_sent(s, n);
    return n;
}

static uint8_t outbuf[1 << 20];

/* ---- client-side frame builders ---------------------------------------- */

static size_t raw_control(uint8_t *dst, uint16_t version, uint16_t type, uint8_t flags,
                          const uint8_t *payload, size_t len)
{
    dst[0] = (uint8_t)(0x80 | version >> 8);
    dst[1] = (uint8_t)version;
    dst[2] = (uint8_t)(type >> 8);
    dst[3] = (uint8_t)type;
    dst[4] = flags;
    dst[5] = (uint8_t)(len >> 16);
    dst[6] = (uint8_t)(len >> 8);
    dst[7] = (uint8_t)len;
    if (len)
        memcpy(dst + 8, payload, len);
    return 8 + len;
}

static size_t raw_u32x2(uint8_t *dst, uint16_t type, uint32_t a, uint32_t b)
{
    uint8_t p[8] = {(uint8_t)(a >> 24), (uint8_t)(a >> 16), (uint8_t)(a >> 8), (uint8_t)a,
                    (uint8_t)(b >> 24), (uint8_t)(b >> 16), (uint8_t)(b >> 8), (uint8_t)b};
    return raw_control(dst, 3, type, 0, p, 8);
}

static size_t raw_data(uint8_t *dst, uint32_t id, uint8_t flags, const void *data, size_t len)
{
    dst[0] = (uint8_t)(id >> 24 & 0x7f);
    dst[1] = (uint8_t)(id >> 16);
    dst[2] = (uint8_t)(id >> 8);
    dst[3] = (uint8_t)id;
    dst[4] = flags;
    dst[5] = (uint8_t)(len >> 16);
    dst[6] = (uint8_t)(len >> 8);
    dst[7] = (uint8_t)len;
    if (len)
        memcpy(dst + 8, data, len);
    return 8 + len;
}

/* A client: a session used only for its writer and deflate context. */
static int never_stream(void *u, uint32_t id, const spdy_headers *h)
{
    (void)u, (void)id, (void)h;
    return SPDY_REFUSED_STREAM;
}
static void no_data(void *u, uint32_t id, const uint8_t *d, size_t l)
{
    (void)u, (void)id, (void)d, (void)l;
}
static const spdy_callbacks client_cbs = {never_stream, no_data, NULL, NULL, NULL};

static size_t client_syn(spdy_session *c, uint8_t *dst, uint32_t id, uint8_t flags,
                         const char *type)
{
    spdy_nv nv[] = {{"streamtype", type, 0}};
    ck_assert_int_eq(spdy_write_syn_stream(c, id, flags, nv, 1), 0);
    return take_output(c, dst, 4096);
}

static void feed_all(spdy_session *s, const uint8_t *p, size_t len)
{
    ck_assert_uint_eq(spdy_feed(s, p, len), len);
}

/* Everything from queues into to. */
static void pump(spdy_session *from, spdy_session *to)
{
    feed_all(to, outbuf, take_output(from, outbuf, sizeof outbuf));
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(dictionary_is_spdy3)
{
    ck_assert_uint_eq(spdy_dictionary_len, 1423);
    ck_assert_uint_eq(adler32(adler32(0, NULL, 0), spdy_dictionary, (uInt)spdy_dictionary_len),
                      0xe3c6a7c2u);
    ck_assert_int_eq(memcmp(spdy_dictionary, "\0\0\0\7options", 11), 0);
    ck_assert_int_eq(memcmp(spdy_dictionary + spdy_dictionary_len - 7, ",enq=0.", 7), 0);
}
END_TEST

/* A client session opens the streams of an exec as kubectl does, sends
 * stdin and closes it, and gets output, status and their FINs. */
START_TEST(client_exec_conversation)
{
    struct rec r, cr;
    spdy_session *s = server(&r, NULL);
    memset(&cr, 0, sizeof cr);
    spdy_session *c = spdy_client_new(&cbs, &cr, NULL);
    cr.s = c;
    ck_assert_uint_eq(spdy_open(s, NULL, 0, false), 0); /* servers open nothing */

    spdy_nv error = {"streamType", "error", 0}, in = {"streamType", "stdin", 0},
            out = {"streamType", "stdout", 0};
    ck_assert_uint_eq(spdy_open(c, &error, 1, true), 1);
    ck_assert_uint_eq(spdy_open(c, &in, 1, false), 3);
    ck_assert_uint_eq(spdy_open(c, &out, 1, false), 5);
    /* Data may follow the SYN_STREAM before any reply. */
    ck_assert_int_eq(spdy_data(c, 3, "hi", 2, false), 0);
    ck_assert_int_eq(spdy_data(c, 3, NULL, 0, true), 0);
    ck_assert_int_eq(spdy_data(c, 1, "x", 1, false), -1); /* finished at open */
    pump(c, s);
    const char kinds[] = "SFSSDF";
    const uint32_t ids[] = {1, 1, 3, 5, 3, 3};
    ck_assert_int_eq(r.n, 6);
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(r.ev[i].kind, kinds[i]);
        ck_assert_uint_eq(r.ev[i].id, ids[i]);
    }
    ck_assert_str_eq(r.ev[0].type, "error");
    ck_assert_str_eq(r.ev[2].type, "stdin");
    ck_assert_str_eq(r.ev[3].type, "stdout");
    ck_assert_int_eq(memcmp(r.ev[4].data, "hi", 2), 0);

    /* The replies are taken silently; output, then the status. */
    ck_assert_int_eq(spdy_data(s, 5, "hi", 2, true), 0);
    ck_assert_int_eq(spdy_data(s, 1, "{}", 2, true), 0);
    pump(s, c);
    ck_assert(!spdy_closing(c));
    ck_assert_int_eq(cr.n, 4);
    ck_assert_int_eq(cr.ev[0].kind, 'D');
    ck_assert_uint_eq(cr.ev[0].id, 5);
    ck_assert_int_eq(cr.ev[1].kind, 'F');
    ck_assert_int_eq(cr.ev[2].kind, 'D');
    ck_assert_uint_eq(cr.ev[2].id, 1);
    ck_assert_int_eq(memcmp(cr.ev[2].data, "{}", 2), 0);
    ck_assert_int_eq(cr.ev[3].kind, 'F');
    /* Both directions of stream 5 are finished only once the client's is. */
    ck_assert_int_eq(spdy_data(c, 5, NULL, 0, true), 0);
    ck_assert_int_eq(spdy_data(c, 5, NULL, 0, true), -1);
    pump(c, s);
    ck_assert_int_eq(r.n, 7);
    ck_assert_int_eq(r.ev[6].kind, 'F');
    spdy_session_free(c);
    spdy_session_free(s);
}
END_TEST

/* What a client does with frames that only a server may send. */
START_TEST(client_frame_rules)
{
    struct rec r, cr;
    spdy_session *s = server(&r, NULL);
    memset(&cr, 0, sizeof cr);
    spdy_session *c = spdy_client_new(&cbs, &cr, NULL);
    spdy_nv out = {"streamType", "stdout", 0};
    ck_assert_uint_eq(spdy_open(c, &out, 1, false), 1);
    pump(c, s);
    pump(s, c); /* the SYN_REPLY */

    uint8_t buf[8192];
    /* A server's SYN_STREAM (even id) is refused; its block still inflated:
     * the SYN_REPLY after it must decode. */
    spdy_nv nv[] = {{"streamtype", "data", 0}};
    ck_assert_int_eq(spdy_write_syn_stream(s, 2, 0, nv, 1), 0);
    size_t n = take_output(s, buf, sizeof buf);
    static const uint8_t reply[] = {0, 0, 0, 1};
    ck_assert_int_eq(spdy_write_syn_stream(s, 4, 0, nv, 1), 0); /* advances the deflater */
    n += take_output(s, buf + n, sizeof buf - n);
    n += raw_control(buf + n, 3, SPDY_PING, 0, (const uint8_t *)"\0\0\0\2", 4); /* server's */
    n += raw_control(buf + n, 3, SPDY_PING, 0, (const uint8_t *)"\0\0\0\3", 4); /* answer */
    n += raw_data(buf + n, 9, 0, "x", 1);   /* a stream never opened */
    n += raw_control(buf + n, 3, SPDY_SYN_REPLY, 0, reply, sizeof reply); /* a second one */
    feed_all(c, buf, n);
    ck_assert(!spdy_closing(c));
    ck_assert_int_eq(cr.n, 1);
    ck_assert_int_eq(cr.ev[0].kind, 'R');
    ck_assert_uint_eq(cr.ev[0].id, 1);
    ck_assert_uint_eq(cr.ev[0].status, SPDY_STREAM_IN_USE);

    struct peer peer = {0};
    size_t on = take_output(c, outbuf, sizeof outbuf), off = 0;
    const struct {
        uint16_t type;
        uint32_t id, value;
    } want[] = {
        {SPDY_RST_STREAM, 2, SPDY_REFUSED_STREAM}, {SPDY_RST_STREAM, 4, SPDY_REFUSED_STREAM},
        {SPDY_PING, 2, 0},                          {SPDY_RST_STREAM, 9, SPDY_INVALID_STREAM},
        {SPDY_RST_STREAM, 1, SPDY_STREAM_IN_USE},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ck_assert(next_frame(&peer, outbuf, on, &off));
        ck_assert_uint_eq(fr.type, want[i].type);
        ck_assert_uint_eq(fr.id, want[i].id);
        ck_assert_uint_eq(fr.value, want[i].value);
    }
    ck_assert(!next_frame(&peer, outbuf, on, &off));
    peer_free(&peer);
    spdy_session_free(c);
    spdy_session_free(s);
}
END_TEST

static void check_go_client_events(struct rec *r)
{
    const char *types[] = {"error", "stdin", "stdout", "stderr"};
    int i = 0;
    for (; i < 4; i++) {
        ck_assert_int_eq(r->ev[i].kind, 'S');
        ck_assert_uint_eq(r->ev[i].id, 1 + 2 * (uint32_t)i);
        ck_assert_str_eq(r->ev[i].type, types[i]);
    }
    ck_assert_int_eq(r->ev[i].kind, 'D');
    ck_assert_uint_eq(r->ev[i].id, 3);
    ck_assert_uint_eq(r->ev[i].len, 6);
    ck_assert_int_eq(memcmp(r->ev[i].data, "hello\n", 6), 0);
    i++;
    ck_assert_int_eq(r->ev[i].kind, 'F');
    ck_assert_uint_eq(r->ev[i].id, 3);
    i++;
    ck_assert_int_eq(r->ev[i].kind, 'S');
    ck_assert_uint_eq(r->ev[i].id, 9);
    ck_assert_str_eq(r->ev[i].type, "error");
    ck_assert_str_eq(r->ev[i].port, "8080");
    ck_assert_str_eq(r->ev[i].reqid, "0");
    i++;
    ck_assert_int_eq(r->ev[i].kind, 'S');
    ck_assert_uint_eq(r->ev[i].id, 11);
    ck_assert_str_eq(r->ev[i].type, "data");
    i++;
    ck_assert_int_eq(r->n, i);
}

START_TEST(go_client_streams)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);
    feed_all(s, go_client, sizeof go_client);
    check_go_client_events(&r);
    ck_assert(!spdy_closing(s));

    /* Each stream got a SYN_REPLY with an empty header block, readable
     * with a fresh inflater. */
    struct peer peer = {0};
    size_t n = take_output(s, outbuf, sizeof outbuf), off = 0;
    uint32_t want[] = {1, 3, 5, 7, 9, 11};
    for (int i = 0; i < 6; i++) {
        ck_assert(next_frame(&peer, outbuf, n, &off));
        ck_assert(fr.control);
        ck_assert_uint_eq(fr.version, 3);
        ck_assert_uint_eq(fr.type, SPDY_SYN_REPLY);
        ck_assert_uint_eq(fr.flags, 0);
        ck_assert_uint_eq(fr.id, want[i]);
        ck_assert_int_eq(fr.nv, 0);
    }
    ck_assert(!next_frame(&peer, outbuf, n, &off));
    peer_free(&peer);
    spdy_session_free(s);
}
END_TEST

START_TEST(go_client_byte_by_byte)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);
    for (size_t i = 0; i < sizeof go_client; i++)
        ck_assert_uint_eq(spdy_feed(s, go_client + i, 1), 1);
    /* Data arrives in 1-byte pieces, merged by the recorder. */
    check_go_client_events(&r);
    spdy_session_free(s);
}
END_TEST

START_TEST(header_round_trip)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    uint8_t buf[8192];

    /* Names are lowercased; a value with a NUL holds several values. */
    spdy_nv nv[] = {{"StreamType", "stdout", 0}, {"x-multi", "a\0b", 3}, {"empty", "", 0}};
    ck_assert_int_eq(spdy_write_syn_stream(c, 1, 0, nv, 3), 0);
    size_t n = take_output(c, buf, sizeof buf);

    /* A fresh inflater reads the block the writer produced. */
    struct peer peer = {0};
    size_t off = 0;
    ck_assert(next_frame(&peer, buf, n, &off));
    ck_assert_uint_eq(fr.type, SPDY_SYN_STREAM);
    ck_assert_uint_eq(fr.id, 1);
    ck_assert_int_eq(fr.nv, 3);
    ck_assert_str_eq(fr.names[0], "streamtype");
    ck_assert_str_eq(fr.values[0], "stdout");
    ck_assert_int_eq(memcmp(fr.values[1], "a\0b", 3), 0);
    peer_free(&peer);

    feed_all(s, buf, n);
    ck_assert_int_eq(r.n, 1);
    ck_assert_str_eq(r.ev[0].type, "stdout");

    /* The second block of the same context works too (sync flush). */
    spdy_nv nv2[] = {{"streamtype", "stderr", 0}};
    ck_assert_int_eq(spdy_write_syn_stream(c, 3, 0, nv2, 1), 0);
    n = take_output(c, buf, sizeof buf);
    feed_all(s, buf, n);
    ck_assert_int_eq(r.n, 2);
    ck_assert_str_eq(r.ev[1].type, "stderr");

    spdy_session_free(c);
    spdy_session_free(s);
}
END_TEST

START_TEST(data_round_trip)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    uint8_t buf[8192];
    feed_all(s, buf, client_syn(c, buf, 1, 0, "stdout"));
    take_output(s, outbuf, sizeof outbuf);

    ck_assert_int_eq(spdy_data(s, 1, "abc", 3, false), 0);
    ck_assert_int_eq(spdy_data(s, 1, "", 0, true), 0);
    /* Finished: nothing more may be sent. */
    ck_assert_int_eq(spdy_data(s, 1, "x", 1, false), -1);
    ck_assert_int_eq(spdy_data(s, 99, "x", 1, false), -1);

    struct peer peer = {0};
    size_t n = take_output(s, outbuf, sizeof outbuf), off = 0;
    ck_assert(next_frame(&peer, outbuf, n, &off));
    ck_assert(!fr.control);
    ck_assert_uint_eq(fr.id, 1);
    ck_assert_uint_eq(fr.flags, 0);
    ck_assert_uint_eq(fr.len, 3);
    ck_assert_int_eq(memcmp(fr.data, "abc", 3), 0);
    ck_assert(next_frame(&peer, outbuf, n, &off));
    ck_assert_uint_eq(fr.flags, SPDY_FLAG_FIN);
    ck_assert_uint_eq(fr.len, 0);
    ck_assert(!next_frame(&peer, outbuf, n, &off));

    /* Large writes are split into frames; FIN rides on the last one. */
    feed_all(s, buf, client_syn(c, buf, 3, 0, "stderr"));
    take_output(s, outbuf, sizeof outbuf);
    static uint8_t big[200000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)i;
    ck_assert_int_eq(spdy_data(s, 3, big, sizeof big, true), 0);
    n = take_output(s, outbuf, sizeof outbuf);
    off = 0;
    size_t got = 0;
    int frames = 0;
    while (next_frame(&peer, outbuf, n, &off)) {
        ck_assert_uint_eq(fr.id, 3);
        ck_assert_int_eq(memcmp(fr.data, big + got, fr.len), 0);
        got += fr.len;
        frames++;
        ck_assert_uint_eq(fr.flags, got == sizeof big ? SPDY_FLAG_FIN : 0);
    }
    ck_assert_uint_eq(got, sizeof big);
    ck_assert_int_gt(frames, 1);
    peer_free(&peer);
    spdy_session_free(c);
    spdy_session_free(s);
}
END_TEST

START_TEST(truncated_input_waits)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);
    /* Every prefix of the capture is consumed without a premature event. */
    size_t first = 8 + 0x29; /* the first SYN_STREAM */
    feed_all(s, go_client, first - 1);
    ck_assert_int_eq(r.n, 0);
    feed_all(s, go_client + first - 1, 1);
    ck_assert_int_eq(r.n, 1);
    ck_assert(!spdy_closing(s));
    spdy_session_free(s);
}
END_TEST

static void expect_goaway(spdy_session *s, uint32_t status)
{
    ck_assert(spdy_closing(s));
    ck_assert_ptr_nonnull(spdy_error(s));
    struct peer peer = {0};
    size_t n = take_output(s, outbuf, sizeof outbuf), off = 0;
    bool seen = false;
    while (next_frame(&peer, outbuf, n, &off))
        if (fr.control && fr.type == SPDY_GOAWAY) {
            ck_assert_uint_eq(fr.value, status);
            seen = true;
        }
    ck_assert(seen);
    peer_free(&peer);
    /* A closing session swallows whatever else comes. */
    ck_assert_uint_eq(spdy_feed(s, go_client, sizeof go_client), sizeof go_client);
    ck_assert_uint_eq(spdy_output(s, &(const uint8_t *){NULL}), 0);
}

START_TEST(malformed_frames_fail_session)
{
    struct rec r;
    uint8_t buf[64];
    spdy_session *s;

    /* SYN_STREAM shorter than its fixed part. */
    s = server(&r, NULL);
    feed_all(s, buf, raw_control(buf, 3, SPDY_SYN_STREAM, 0, (const uint8_t *)"\0\0\0\1", 4));
    expect_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
    spdy_session_free(s);

    /* Another SPDY version. */
    s = server(&r, NULL);
    feed_all(s, buf, raw_control(buf, 2, SPDY_PING, 0, (const uint8_t *)"\0\0\0\1", 4));
    expect_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
    spdy_session_free(s);

    /* PING, RST_STREAM, GOAWAY, WINDOW_UPDATE of the wrong size. */
    uint16_t types[] = {SPDY_PING, SPDY_RST_STREAM, SPDY_GOAWAY, SPDY_WINDOW_UPDATE};
    for (int i = 0; i < 4; i++) {
        s = server(&r, NULL);
        feed_all(s, buf, raw_control(buf, 3, types[i], 0, (const uint8_t *)"\0\0\0\1\0", 5));
        expect_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
        spdy_session_free(s);
    }

    /* SETTINGS whose count disagrees with its length. */
    s = server(&r, NULL);
    feed_all(s, buf, raw_control(buf, 3, SPDY_SETTINGS, 0,
                                 (const uint8_t *)"\0\0\0\2\0\0\0\1\0\0\0\1", 12));
    expect_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
    spdy_session_free(s);

    /* A header block that is not zlib. */
    s = server(&r, NULL);
    feed_all(s, buf, raw_control(buf, 3, SPDY_SYN_STREAM, 0,
                                 (const uint8_t *)"\0\0\0\1\0\0\0\0\0\0garbage!", 18));
    expect_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
    ck_assert_int_eq(r.n, 0);
    spdy_session_free(s);

    /* DATA on stream 0. */
    s = server(&r, NULL);
    feed_all(s, buf, raw_data(buf, 0, 0, "x", 1));
    expect_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
    spdy_session_free(s);
}
END_TEST

START_TEST(oversize_control_frame)
{
    struct rec r;
    spdy_limits lim;
    spdy_limits_default(&lim);
    lim.max_control = 100;
    spdy_session *s = server(&r, &lim);
    /* Only the header is needed to refuse it: the 16 MiB never arrive. */
    uint8_t h[8] = {0x80, 3, 0, SPDY_SYN_STREAM, 0, 0xff, 0xff, 0xff};
    feed_all(s, h, sizeof h);
    expect_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
    spdy_session_free(s);
}
END_TEST

START_TEST(oversize_data_frame_reset_and_skipped)
{
    struct rec r;
    spdy_limits lim;
    spdy_limits_default(&lim);
    lim.max_data = 16;
    spdy_session *s = server(&r, &lim);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    static uint8_t buf[8192];
    size_t n = client_syn(c, buf, 1, 0, "stdin");
    n += client_syn(c, buf + n, 3, 0, "stdin");
    n += raw_data(buf + n, 1, 0, "0123456789abcdefXYZ", 19);
    n += raw_data(buf + n, 3, 0, "ok", 2);
    feed_all(s, buf, n);
    ck_assert(!spdy_closing(s));
    ck_assert_int_eq(r.n, 4);
    ck_assert_int_eq(r.ev[2].kind, 'R');
    ck_assert_uint_eq(r.ev[2].id, 1);
    ck_assert_uint_eq(r.ev[2].status, SPDY_FRAME_TOO_LARGE);
    ck_assert_int_eq(r.ev[3].kind, 'D');
    ck_assert_uint_eq(r.ev[3].id, 3);

    struct peer peer = {0};
    size_t on = take_output(s, outbuf, sizeof outbuf), off = 0;
    int rsts = 0;
    while (next_frame(&peer, outbuf, on, &off))
        if (fr.type == SPDY_RST_STREAM) {
            ck_assert_uint_eq(fr.id, 1);
            ck_assert_uint_eq(fr.value, SPDY_FRAME_TOO_LARGE);
            rsts++;
        }
    ck_assert_int_eq(rsts, 1);
    peer_free(&peer);
    spdy_session_free(c);
    spdy_session_free(s);
}
END_TEST

START_TEST(zlib_bomb_stops_at_limit)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);

    /* A 16 MiB value inflates from about 16 KiB. */
    z_stream z = {0};
    ck_assert_int_eq(deflateInit(&z, 9), Z_OK);
    ck_assert_int_eq(deflateSetDictionary(&z, spdy_dictionary, (uInt)spdy_dictionary_len), Z_OK);
    static uint8_t comp[200000];
    uint8_t hdr[] = {0, 0, 0, 1, 0, 0, 0, 1, 'a', 0x01, 0, 0, 0};
    static uint8_t zeros[1 << 20];
    z.next_out = comp + 18;
    z.avail_out = sizeof comp - 18;
    z.next_in = hdr;
    z.avail_in = sizeof hdr;
    ck_assert_int_eq(deflate(&z, Z_NO_FLUSH), Z_OK);
    for (int i = 0; i < 16; i++) {
        z.next_in = zeros;
        z.avail_in = sizeof zeros;
        ck_assert_int_eq(deflate(&z, i == 15 ? Z_SYNC_FLUSH : Z_NO_FLUSH), Z_OK);
    }
    size_t clen = sizeof comp - 18 - z.avail_out;
    deflateEnd(&z);
    ck_assert_uint_lt(clen, 65536 - 10);

    uint8_t *f = comp + 8;
    memcpy(f, "\0\0\0\1\0\0\0\0\0\0", 10);
    size_t plen = 10 + clen;
    uint8_t h[8] = {0x80, 3, 0, SPDY_SYN_STREAM, 0, (uint8_t)(plen >> 16), (uint8_t)(plen >> 8),
                    (uint8_t)plen};
    memcpy(comp, h, 8);
    feed_all(s, comp, 8 + plen);
    expect_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
    ck_assert_int_eq(r.n, 0);
    spdy_session_free(s);
}
END_TEST

START_TEST(unknown_control_type_ignored)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);
    uint8_t buf[1024];
    /* CREDENTIAL (10) and an unassigned type, then a real stream. */
    size_t n = raw_control(buf, 3, 10, 0, (const uint8_t *)"whatever", 8);
    n += raw_control(buf + n, 3, 0x7ff, 0xff, (const uint8_t *)"x", 1);
    memcpy(buf + n, go_client, 8 + 0x29);
    n += 8 + 0x29;
    feed_all(s, buf, n);
    ck_assert(!spdy_closing(s));
    ck_assert_int_eq(r.n, 1);
    ck_assert_str_eq(r.ev[0].type, "error");
    spdy_session_free(s);
}
END_TEST

START_TEST(stream_id_rules)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    uint8_t buf[4096];

    /* An even id is the server's: refused, session goes on. */
    feed_all(s, buf, client_syn(c, buf, 2, 0, "stdin"));
    ck_assert_int_eq(r.n, 0);
    ck_assert(!spdy_closing(s));
    struct peer peer = {0};
    size_t n = take_output(s, outbuf, sizeof outbuf), off = 0;
    ck_assert(next_frame(&peer, outbuf, n, &off));
    ck_assert_uint_eq(fr.type, SPDY_RST_STREAM);
    ck_assert_uint_eq(fr.id, 2);
    ck_assert_uint_eq(fr.value, SPDY_PROTOCOL_ERROR);

    feed_all(s, buf, client_syn(c, buf, 5, 0, "stdin"));
    ck_assert_int_eq(r.n, 1);
    /* Ids must grow. */
    feed_all(s, buf, client_syn(c, buf, 3, 0, "stdin"));
    ck_assert_int_eq(r.n, 1);
    expect_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
    peer_free(&peer);
    spdy_session_free(c);
    spdy_session_free(s);
}
END_TEST

START_TEST(refused_and_too_many_streams)
{
    struct rec r;
    spdy_limits lim;
    spdy_limits_default(&lim);
    lim.max_streams = 1;
    spdy_session *s = server(&r, &lim);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    uint8_t buf[4096];

    r.refuse = SPDY_REFUSED_STREAM;
    feed_all(s, buf, client_syn(c, buf, 1, 0, "bogus"));
    r.refuse = 0;
    feed_all(s, buf, client_syn(c, buf, 3, 0, "stdin"));
    feed_all(s, buf, client_syn(c, buf, 5, 0, "stdin")); /* over the limit */
    ck_assert_int_eq(r.n, 2);

    struct peer peer = {0};
    size_t n = take_output(s, outbuf, sizeof outbuf), off = 0;
    ck_assert(next_frame(&peer, outbuf, n, &off));
    ck_assert_uint_eq(fr.type, SPDY_RST_STREAM);
    ck_assert_uint_eq(fr.id, 1);
    ck_assert_uint_eq(fr.value, SPDY_REFUSED_STREAM);
    ck_assert(next_frame(&peer, outbuf, n, &off));
    ck_assert_uint_eq(fr.type, SPDY_SYN_REPLY);
    ck_assert_uint_eq(fr.id, 3);
    ck_assert(next_frame(&peer, outbuf, n, &off));
    ck_assert_uint_eq(fr.type, SPDY_RST_STREAM);
    ck_assert_uint_eq(fr.id, 5);
    ck_assert_uint_eq(fr.value, SPDY_REFUSED_STREAM);

    /* Data on the refused stream is dropped without a word. */
    feed_all(s, buf, raw_data(buf, 1, 0, "x", 1));
    ck_assert_int_eq(r.n, 2);
    ck_assert_uint_eq(take_output(s, outbuf, sizeof outbuf), 0);
    peer_free(&peer);
    spdy_session_free(c);
    spdy_session_free(s);
}
END_TEST

START_TEST(bad_header_block_resets_stream_only)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    uint8_t buf[4096];

    /* Valid zlib, nonsense inside: a count larger than the block. Sent
     * through the client's own context so both stay in step. */
    spdy_nv nv[] = {{"streamtype", "stdin", 0}};
    ck_assert_int_eq(spdy_write_syn_stream(c, 1, 0, nv, 1), 0);
    size_t n = take_output(c, buf, sizeof buf);
    /* Re-encode the same frame's block with a lying count by inflating,
     * patching and deflating with a twin context. */
    z_stream in = {0}, de = {0};
    uint8_t plain[256], comp[512];
    ck_assert_int_eq(inflateInit(&in), Z_OK);
    in.next_in = buf + 18;
    in.avail_in = (uInt)(n - 18);
    in.next_out = plain;
    in.avail_out = sizeof plain;
    ck_assert_int_eq(inflate(&in, Z_SYNC_FLUSH), Z_NEED_DICT);
    ck_assert_int_eq(inflateSetDictionary(&in, spdy_dictionary, (uInt)spdy_dictionary_len), Z_OK);
    ck_assert_int_eq(inflate(&in, Z_SYNC_FLUSH), Z_OK);
    size_t plen = sizeof plain - in.avail_out;
    inflateEnd(&in);
    plain[3] = 9;
    ck_assert_int_eq(deflateInit(&de, 6), Z_OK);
    ck_assert_int_eq(deflateSetDictionary(&de, spdy_dictionary, (uInt)spdy_dictionary_len), Z_OK);
    de.next_in = plain;
    de.avail_in = (uInt)plen;
    de.next_out = comp;
    de.avail_out = sizeof comp;
    ck_assert_int_eq(deflate(&de, Z_SYNC_FLUSH), Z_OK);
    size_t clen = sizeof comp - de.avail_out;
    uint8_t frame[600];
    uint8_t fixed[10] = {0, 0, 0, 1};
    memcpy(frame + 8, fixed, 10);
    memcpy(frame + 18, comp, clen);
    raw_control(frame, 3, SPDY_SYN_STREAM, 0, frame + 8, 10 + clen);
    feed_all(s, frame, 18 + clen);
    ck_assert(!spdy_closing(s));
    ck_assert_int_eq(r.n, 0);

    /* The next block, from the same (twin) context, still decodes. */
    plain[3] = 1;
    plain[0] = 0;
    de.next_in = plain;
    de.avail_in = (uInt)plen;
    de.next_out = comp;
    de.avail_out = sizeof comp;
    ck_assert_int_eq(deflate(&de, Z_SYNC_FLUSH), Z_OK);
    clen = sizeof comp - de.avail_out;
    deflateEnd(&de);
    uint8_t fixed3[10] = {0, 0, 0, 3};
    memcpy(frame + 8, fixed3, 10);
    memcpy(frame + 18, comp, clen);
    raw_control(frame, 3, SPDY_SYN_STREAM, 0, frame + 8, 10 + clen);
    feed_all(s, frame, 18 + clen);
    ck_assert_int_eq(r.n, 1);
    ck_assert_uint_eq(r.ev[0].id, 3);
    ck_assert_str_eq(r.ev[0].type, "stdin");

    struct peer peer = {0};
    size_t on = take_output(s, outbuf, sizeof outbuf), off = 0;
    ck_assert(next_frame(&peer, outbuf, on, &off));
    ck_assert_uint_eq(fr.type, SPDY_RST_STREAM);
    ck_assert_uint_eq(fr.id, 1);
    ck_assert_uint_eq(fr.value, SPDY_PROTOCOL_ERROR);
    peer_free(&peer);
    spdy_session_free(c);
    spdy_session_free(s);
}
END_TEST

START_TEST(ping_settings_window_update)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);
    uint8_t buf[256];
    size_t n = raw_control(buf, 3, SPDY_PING, 0, (const uint8_t *)"\0\0\0\7", 4);
    n += raw_control(buf + n, 3, SPDY_PING, 0, (const uint8_t *)"\0\0\0\2", 4); /* even: ours */
    n += raw_control(buf + n, 3, SPDY_SETTINGS, 0,
                     (const uint8_t *)"\0\0\0\1\0\0\0\7\0\1\0\0", 12);
    n += raw_u32x2(buf + n, SPDY_WINDOW_UPDATE, 0, 65536);
    n += raw_u32x2(buf + n, SPDY_WINDOW_UPDATE, 1, 1000); /* unknown stream: ignored */
    feed_all(s, buf, n);
    ck_assert(!spdy_closing(s));
    ck_assert_int_eq(r.n, 0);

    struct peer peer = {0};
    size_t on = take_output(s, outbuf, sizeof outbuf), off = 0;
    ck_assert(next_frame(&peer, outbuf, on, &off));
    ck_assert_uint_eq(fr.type, SPDY_PING);
    ck_assert_uint_eq(fr.id, 7);
    ck_assert(!next_frame(&peer, outbuf, on, &off));
    peer_free(&peer);
    spdy_session_free(s);
}
END_TEST

START_TEST(client_reset_and_goaway)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    uint8_t buf[4096];
    feed_all(s, buf, client_syn(c, buf, 1, 0, "stdin"));
    take_output(s, outbuf, sizeof outbuf);

    size_t n = raw_u32x2(buf, SPDY_RST_STREAM, 1, SPDY_CANCEL);
    n += raw_data(buf + n, 1, 0, "late", 4); /* after the reset: dropped */
    n += raw_u32x2(buf + n, SPDY_GOAWAY, 1, SPDY_GOAWAY_OK);
    feed_all(s, buf, n);
    ck_assert_int_eq(r.n, 3);
    ck_assert_int_eq(r.ev[1].kind, 'R');
    ck_assert_uint_eq(r.ev[1].status, SPDY_CANCEL);
    ck_assert_int_eq(r.ev[2].kind, 'G');
    ck_assert_int_eq(spdy_data(s, 1, "x", 1, false), -1);
    ck_assert_uint_eq(take_output(s, outbuf, sizeof outbuf), 0);

    /* After the client's GOAWAY new streams are refused. */
    feed_all(s, buf, client_syn(c, buf, 3, 0, "stdin"));
    ck_assert_int_eq(r.n, 3);
    struct peer peer = {0};
    size_t on = take_output(s, outbuf, sizeof outbuf), off = 0;
    ck_assert(next_frame(&peer, outbuf, on, &off));
    ck_assert_uint_eq(fr.type, SPDY_RST_STREAM);
    ck_assert_uint_eq(fr.value, SPDY_REFUSED_STREAM);
    peer_free(&peer);
    spdy_session_free(c);
    spdy_session_free(s);
}
END_TEST

START_TEST(data_errors_reset)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    uint8_t buf[4096];
    feed_all(s, buf, client_syn(c, buf, 1, 0, "stdin"));
    take_output(s, outbuf, sizeof outbuf);

    size_t n = raw_data(buf, 1, SPDY_FLAG_FIN, "a", 1);
    n += raw_data(buf + n, 1, 0, "b", 1); /* after FIN */
    n += raw_data(buf + n, 7, 0, "c", 1); /* never opened */
    feed_all(s, buf, n);
    ck_assert_int_eq(r.n, 4); /* S, D, F, R */
    ck_assert_int_eq(r.ev[3].kind, 'R');
    ck_assert_uint_eq(r.ev[3].status, SPDY_STREAM_ALREADY_CLOSED);

    struct peer peer = {0};
    size_t on = take_output(s, outbuf, sizeof outbuf), off = 0;
    ck_assert(next_frame(&peer, outbuf, on, &off));
    ck_assert_uint_eq(fr.id, 1);
    ck_assert_uint_eq(fr.value, SPDY_STREAM_ALREADY_CLOSED);
    ck_assert(next_frame(&peer, outbuf, on, &off));
    ck_assert_uint_eq(fr.id, 7);
    ck_assert_uint_eq(fr.value, SPDY_INVALID_STREAM);
    peer_free(&peer);
    spdy_session_free(c);
    spdy_session_free(s);
}
END_TEST

START_TEST(syn_stream_with_fin_and_goaway_status)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    uint8_t buf[4096];
    feed_all(s, buf, client_syn(c, buf, 1, SPDY_FLAG_FIN, "error"));
    ck_assert_int_eq(r.n, 2);
    ck_assert_int_eq(r.ev[1].kind, 'F');
    /* The server can still answer on its half. */
    ck_assert_int_eq(spdy_data(s, 1, "{}", 2, true), 0);
    spdy_goaway(s, SPDY_GOAWAY_OK);
    ck_assert(spdy_closing(s));
    ck_assert_ptr_null(spdy_error(s));
    struct peer peer = {0};
    size_t on = take_output(s, outbuf, sizeof outbuf), off = 0;
    ck_assert(next_frame(&peer, outbuf, on, &off)); /* SYN_REPLY */
    ck_assert(next_frame(&peer, outbuf, on, &off)); /* DATA FIN */
    ck_assert(next_frame(&peer, outbuf, on, &off));
    ck_assert_uint_eq(fr.type, SPDY_GOAWAY);
    ck_assert_uint_eq(fr.id, 1); /* last good stream */
    ck_assert_uint_eq(fr.value, SPDY_GOAWAY_OK);
    peer_free(&peer);
    spdy_session_free(c);
    spdy_session_free(s);
}
END_TEST

START_TEST(backpressure_stops_input)
{
    struct rec r;
    spdy_limits lim;
    spdy_limits_default(&lim);
    lim.out_high_water = 1000;
    spdy_session *s = server(&r, &lim);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    uint8_t buf[4096];
    feed_all(s, buf, client_syn(c, buf, 1, 0, "stdout"));
    ck_assert(spdy_writable(s));

    static uint8_t chunk[2000];
    ck_assert_int_eq(spdy_data(s, 1, chunk, sizeof chunk, false), 0);
    ck_assert(!spdy_writable(s));
    ck_assert(!spdy_wants_input(s));
    /* Above the mark: input is left where it is. */
    size_t n = raw_data(buf, 1, 0, "x", 1);
    ck_assert_uint_eq(spdy_feed(s, buf, n), 0);

    const uint8_t *p;
    size_t out = spdy_output(s, &p);
    ck_assert_uint_gt(out, 2000);
    ck_assert(!spdy_output_sent(s, out - 600)); /* 600 left: above half */
    ck_assert(spdy_output_sent(s, 200));        /* 400 left: writers resume */
    ck_assert(spdy_writable(s));
    ck_assert_uint_eq(spdy_feed(s, buf, n), n);

    /* The user's own pause. */
    spdy_pause_input(s, true);
    ck_assert_uint_eq(spdy_feed(s, buf, n), 0);
    spdy_pause_input(s, false);
    ck_assert_uint_eq(spdy_feed(s, buf, n), n);

    /* A pause from inside on_data stops at the frame's end. */
    r.pause_on_data = true;
    size_t two = raw_data(buf, 1, 0, "a", 1);
    two += raw_data(buf + two, 1, 0, "b", 1);
    ck_assert_uint_eq(spdy_feed(s, buf, two), 9);
    spdy_session_free(c);
    spdy_session_free(s);
}
END_TEST

START_TEST(user_reset_inside_data)
{
    struct rec r;
    spdy_session *s = server(&r, NULL);
    spdy_session *c = spdy_session_new(&client_cbs, NULL, NULL);
    uint8_t buf[4096];
    feed_all(s, buf, client_syn(c, buf, 1, 0, "stdin"));
    spdy_rst(s, 1, SPDY_CANCEL);
    ck_assert_int_eq(spdy_data(s, 1, "x", 1, false), -1);
    /* Frames for it are dropped quietly now. */
    feed_all(s, buf, raw_data(buf, 1, SPDY_FLAG_FIN, "abc", 3));
    ck_assert_int_eq(r.n, 1);
    spdy_session_free(c);
    spdy_session_free(s);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("spdy");
    TCase *t = tcase_create("core");
    /* More than check's default 4 s a test (zlib_bomb_stops_at_limit takes
     * a fair part of a second): only a hang should reach the limit. */
    tcase_set_timeout(t, 30);
    tcase_add_test(t, dictionary_is_spdy3);
    tcase_add_test(t, client_exec_conversation);
    tcase_add_test(t, client_frame_rules);
    tcase_add_test(t, go_client_streams);
    tcase_add_test(t, go_client_byte_by_byte);
    tcase_add_test(t, header_round_trip);
    tcase_add_test(t, data_round_trip);
    tcase_add_test(t, truncated_input_waits);
    tcase_add_test(t, malformed_frames_fail_session);
    tcase_add_test(t, oversize_control_frame);
    tcase_add_test(t, oversize_data_frame_reset_and_skipped);
    tcase_add_test(t, zlib_bomb_stops_at_limit);
    tcase_add_test(t, unknown_control_type_ignored);
    tcase_add_test(t, stream_id_rules);
    tcase_add_test(t, refused_and_too_many_streams);
    tcase_add_test(t, bad_header_block_resets_stream_only);
    tcase_add_test(t, ping_settings_window_update);
    tcase_add_test(t, client_reset_and_goaway);
    tcase_add_test(t, data_errors_reset);
    tcase_add_test(t, syn_stream_with_fin_and_goaway_status);
    tcase_add_test(t, backpressure_stops_input);
    tcase_add_test(t, user_reset_inside_data);
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
