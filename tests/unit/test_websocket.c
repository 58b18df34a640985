/* test_websocket.c -- the WebSocket handshake (RFC 6455 example key,
 * subprotocol choice) and the wslay session: masked client frames,
 * fragmentation, ping/pong, close codes, size limits, output framing and
 * backpressure. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/websocket.h"

/* ---- recording callbacks ------------------------------------------------ */

struct rec {
    int messages;
    bool text;
    uint8_t data[100000];
    size_t len;
    int closes;
    uint16_t code;
    ws_session *ws;
    bool pause_on_message;
};

static void on_message(void *user, bool text, const uint8_t *data, size_t len)
{
    struct rec *r = user;
    r->messages++;
    r->text = text;
    ck_assert_uint_le(len, sizeof r->data);
    memcpy(r->data, data, len);
    r->len = len;
    if (r->pause_on_message)
        ws_pause_input(r->ws, true);
}

static void on_close(void *user, uint16_t code)
{
    struct rec *r = user;
    r->closes++;
    r->code = code;
}

static const ws_callbacks cbs = {on_message, on_close};

static ws_session *session(struct rec *r, const ws_limits *lim)
{
    memset(r, 0, sizeof *r);
    r->ws = ws_session_new(&cbs, r, lim);
    ck_assert_ptr_nonnull(r->ws);
    return r->ws;
}

/* ---- framing helpers ------------------------------------------------------ */

enum { OP_CONT = 0, OP_TEXT = 1, OP_BIN = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

/* A client frame, masked unless mask is false. */
static size_t frame(uint8_t *dst, bool fin, int op, bool mask, const void *payload, size_t len)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t o = 0;
    dst[o++] = (uint8_t)((fin ? 0x80 : 0) | op);
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        dst[o++] = (uint8_t)(m | len);
    } else if (len < 65536) {
        dst[o++] = m | 126;
        dst[o++] = (uint8_t)(len >> 8);
        dst[o++] = (uint8_t)len;
    } else {
        dst[o++] = m | 127;
        for (int i = 7; i >= 0; i--)
            dst[o++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (mask) {
        memcpy(dst + o, key, 4);
        o += 4;
    }
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        dst[o + i] = mask ? (uint8_t)(p[i] ^ key[i % 4]) : p[i];
    return o + len;
}

struct sframe {
    bool fin, masked;
    int op;
    uint8_t payload[200000];
    size_t len;
};

static struct sframe sf;

/* Decode the next server frame of buf at *off; false at the end. */
static bool next_server_frame(const uint8_t *buf, size_t n, size_t *off)
{
    if (*off == n)
        return false;
    const uint8_t *p = buf + *off;
    size_t o = 2;
    sf.fin = p[0] & 0x80;
    sf.op = p[0] & 0x0f;
    sf.masked = p[1] & 0x80;
    uint64_t len = p[1] & 0x7f;
    if (len == 126) {
        len = (uint64_t)p[2] << 8 | p[3];
        o = 4;
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        o = 10;
    }
    ck_assert(!sf.masked); /* a server never masks */
    ck_assert_uint_le(len, sizeof sf.payload);
    ck_assert_uint_le(*off + o + len, n);
    memcpy(sf.payload, p + o, len);
    sf.len = len;
    *off += o + len;
    return true;
}

static uint8_t out[1 << 20];

static size_t take_output(ws_session *ws)
{
    const uint8_t *p;
    size_t n = ws_output(ws, &p);
    ck_assert_uint_le(n, sizeof out);
    memcpy(out, p, n);
    ws_output_sent(ws, n);
    return n;
}

static void feed_all(ws_session *ws, const uint8_t *p, size_t n)
{
    ck_assert_uint_eq(ws_feed(ws, p, n), n);
}

/* ---- handshake ------------------------------------------------------------ */

START_TEST(accept_key_rfc6455_example)
{
    char acc[29];
    ck_assert_int_eq(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", acc), 0);
    ck_assert_str_eq(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ck_assert_int_eq(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ", acc), -1);
    ck_assert_int_eq(ws_accept_key("", acc), -1);
    ck_assert_int_eq(ws_accept_key("dGhlIHNhbXBsZSBub25j!Q==", acc), -1);
    ck_assert_int_eq(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==x", acc), -1);
}
END_TEST

START_TEST(upgrade_detection)
{
    ck_assert(ws_is_upgrade("websocket", "Upgrade"));
    ck_assert(ws_is_upgrade("WebSocket", "keep-alive, Upgrade"));
    ck_assert(ws_is_upgrade("websocket", "upgrade ,keep-alive"));
    ck_assert(!ws_is_upgrade("SPDY/3.1", "Upgrade"));
    ck_assert(!ws_is_upgrade("websocket", "keep-alive"));
    ck_assert(!ws_is_upgrade("websocket", "upgrades"));
    ck_assert(!ws_is_upgrade(NULL, "Upgrade"));
    ck_assert(!ws_is_upgrade("websocket", NULL));
}
END_TEST

START_TEST(protocol_selection)
{
    const char *const sup[] = {"v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io",
                               "base64.channel.k8s.io", "", NULL};
    /* The client's order wins, as in wsstream. */
    ck_assert_str_eq(ws_select_protocol("v4.channel.k8s.io, v5.channel.k8s.io", sup),
                     "v4.channel.k8s.io");
    ck_assert_str_eq(ws_select_protocol("foo,  base64.channel.k8s.io ", sup),
                     "base64.channel.k8s.io");
    ck_assert_str_eq(ws_select_protocol(NULL, sup), "");
    ck_assert_str_eq(ws_select_protocol(" , ", sup), "");
    ck_assert_ptr_null(ws_select_protocol("v9.channel.k8s.io", sup));
    /* A prefix is not a match. */
    ck_assert_ptr_null(ws_select_protocol("v4.channel.k8s", sup));
    const char *const no_empty[] = {"v4.channel.k8s.io", NULL};
    ck_assert_ptr_null(ws_select_protocol(NULL, no_empty));
}
END_TEST

START_TEST(handshake_response)
{
    vk_buf b = VK_BUF_INIT;
    const char *err = NULL;
    ck_assert_int_eq(
        ws_handshake_response(&b, "dGhlIHNhbXBsZSBub25jZQ==", "13", "v4.channel.k8s.io", &err), 0);
    ck_assert_str_eq(b.data, "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                             "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n"
                             "\r\n");
    vk_buf_reset(&b);
    ck_assert_int_eq(ws_handshake_response(&b, "dGhlIHNhbXBsZSBub25jZQ==", "13", "", &err), 0);
    ck_assert_ptr_null(strstr(b.data, "Sec-WebSocket-Protocol"));
    vk_buf_reset(&b);
    ck_assert_int_eq(ws_handshake_response(&b, "dGhlIHNhbXBsZSBub25jZQ==", "8", NULL, &err), -1);
    ck_assert_ptr_nonnull(strstr(err, "Version"));
    ck_assert_int_eq(ws_handshake_response(&b, NULL, "13", NULL, &err), -1);
    ck_assert_ptr_nonnull(strstr(err, "Key"));
    ck_assert_uint_eq(b.len, 0);
    vk_buf_free(&b);
}
END_TEST

/* ---- session ---------------------------------------------------------------- */

START_TEST(masked_messages)
{
    struct rec r;
    ws_session *ws = session(&r, NULL);
    uint8_t buf[1024];
    feed_all(ws, buf, frame(buf, true, OP_BIN, true, "\0hello", 6));
    ck_assert_int_eq(r.messages, 1);
    ck_assert(!r.text);
    ck_assert_uint_eq(r.len, 6);
    ck_assert_int_eq(memcmp(r.data, "\0hello", 6), 0);

    feed_all(ws, buf, frame(buf, true, OP_TEXT, true, "0aGk=", 5));
    ck_assert_int_eq(r.messages, 2);
    ck_assert(r.text);
    ck_assert_int_eq(memcmp(r.data, "0aGk=", 5), 0);

    /* One byte at a time. */
    size_t n = frame(buf, true, OP_BIN, true, "\3abc", 4);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(ws_feed(ws, buf + i, 1), 1);
    ck_assert_int_eq(r.messages, 3);
    ck_assert_int_eq(memcmp(r.data, "\3abc", 4), 0);
    ck_assert_int_eq(r.closes, 0);
    ck_assert(!ws_closing(ws));
    ws_session_free(ws);
}
END_TEST

START_TEST(fragmented_message_with_ping_inside)
{
    struct rec r;
    ws_session *ws = session(&r, NULL);
    uint8_t buf[1024];
    size_t n = frame(buf, false, OP_BIN, true, "\0ab", 3);
    n += frame(buf + n, true, OP_PING, true, "p1", 2); /* control frames may interleave */
    n += frame(buf + n, false, OP_CONT, true, "cd", 2);
    n += frame(buf + n, true, OP_CONT, true, "ef", 2);
    feed_all(ws, buf, n);
    ck_assert_int_eq(r.messages, 1);
    ck_assert_uint_eq(r.len, 7);
    ck_assert_int_eq(memcmp(r.data, "\0abcdef", 7), 0);

    n = take_output(ws);
    size_t off = 0;
    ck_assert(next_server_frame(out, n, &off));
    ck_assert_int_eq(sf.op, OP_PONG);
    ck_assert(sf.fin);
    ck_assert_uint_eq(sf.len, 2);
    ck_assert_int_eq(memcmp(sf.payload, "p1", 2), 0);
    ck_assert(!next_server_frame(out, n, &off));
    ws_session_free(ws);
}
END_TEST

START_TEST(unmasked_client_frame_fails)
{
    struct rec r;
    ws_session *ws = session(&r, NULL);
    uint8_t buf[64];
    size_t n = frame(buf, true, OP_BIN, false, "\0x", 2);
    n += frame(buf + n, true, OP_BIN, true, "\0y", 2); /* never delivered */
    feed_all(ws, buf, n);
    ck_assert_int_eq(r.messages, 0);
    ck_assert_int_eq(r.closes, 1);
    ck_assert_uint_eq(r.code, WS_CLOSE_PROTOCOL_ERROR);
    ck_assert(ws_closing(ws));
    n = take_output(ws);
    size_t off = 0;
    ck_assert(next_server_frame(out, n, &off));
    ck_assert_int_eq(sf.op, OP_CLOSE);
    ck_assert_uint_eq((unsigned)(sf.payload[0] << 8 | sf.payload[1]), WS_CLOSE_PROTOCOL_ERROR);
    /* More input is swallowed. */
    feed_all(ws, buf, n < sizeof buf ? n : sizeof buf);
    ck_assert_int_eq(r.closes, 1);
    ws_session_free(ws);
}
END_TEST

START_TEST(client_close_is_answered)
{
    struct rec r;
    ws_session *ws = session(&r, NULL);
    uint8_t buf[64];
    feed_all(ws, buf, frame(buf, true, OP_CLOSE, true, "\x03\xe8" "bye", 5));
    ck_assert_int_eq(r.closes, 1);
    ck_assert_uint_eq(r.code, 1000);
    ck_assert(ws_closing(ws));
    size_t n = take_output(ws), off = 0;
    ck_assert(next_server_frame(out, n, &off));
    ck_assert_int_eq(sf.op, OP_CLOSE);
    ck_assert_uint_eq((unsigned)(sf.payload[0] << 8 | sf.payload[1]), 1000);
    ck_assert_int_eq(ws_send(ws, false, "x", 1, NULL, 0), -1);
    ws_session_free(ws);

    /* A close without a code reports 1005. */
    ws = session(&r, NULL);
    feed_all(ws, buf, frame(buf, true, OP_CLOSE, true, "", 0));
    ck_assert_uint_eq(r.code, WS_CLOSE_NO_STATUS);
    ws_session_free(ws);
}
END_TEST

START_TEST(message_too_big)
{
    struct rec r;
    ws_limits lim;
    ws_limits_default(&lim);
    lim.max_message = 100;
    ws_session *ws = session(&r, &lim);
    static uint8_t payload[200], buf[400];
    size_t n = frame(buf, false, OP_BIN, true, payload, 60);
    n += frame(buf + n, true, OP_CONT, true, payload, 60); /* 120 in all */
    feed_all(ws, buf, n);
    ck_assert_int_eq(r.messages, 0);
    ck_assert_int_eq(r.closes, 1);
    ck_assert_uint_eq(r.code, WS_CLOSE_TOO_BIG);
    n = take_output(ws);
    size_t off = 0;
    ck_assert(next_server_frame(out, n, &off));
    ck_assert_int_eq(sf.op, OP_CLOSE);
    ck_assert_uint_eq((unsigned)(sf.payload[0] << 8 | sf.payload[1]), WS_CLOSE_TOO_BIG);
    ws_session_free(ws);
}
END_TEST

START_TEST(server_frames)
{
    struct rec r;
    ws_session *ws = session(&r, NULL);
    static uint8_t big[70000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7);
    uint8_t ch = 1;
    ck_assert_int_eq(ws_send(ws, false, &ch, 1, "out", 3), 0);
    ck_assert_int_eq(ws_send(ws, true, "1", 1, "b3V0", 4), 0);
    ck_assert_int_eq(ws_send(ws, false, &ch, 1, big, 300), 0);
    ck_assert_int_eq(ws_send(ws, false, &ch, 1, big, sizeof big), 0);
    ck_assert_int_eq(ws_send(ws, false, &ch, 1, NULL, 0), 0); /* channel byte alone */
    size_t n = take_output(ws), off = 0;

    ck_assert(next_server_frame(out, n, &off));
    ck_assert(sf.fin);
    ck_assert_int_eq(sf.op, OP_BIN);
    ck_assert_uint_eq(sf.len, 4);
    ck_assert_int_eq(memcmp(sf.payload, "\1out", 4), 0);
    ck_assert(next_server_frame(out, n, &off));
    ck_assert_int_eq(sf.op, OP_TEXT);
    ck_assert_int_eq(memcmp(sf.payload, "1b3V0", 5), 0);
    ck_assert(next_server_frame(out, n, &off));
    ck_assert_uint_eq(sf.len, 301);
    ck_assert_int_eq(memcmp(sf.payload + 1, big, 300), 0);
    ck_assert(next_server_frame(out, n, &off));
    ck_assert_uint_eq(sf.len, sizeof big + 1);
    ck_assert_int_eq(memcmp(sf.payload + 1, big, sizeof big), 0);
    ck_assert(next_server_frame(out, n, &off));
    ck_assert_uint_eq(sf.len, 1);
    ck_assert(!next_server_frame(out, n, &off));

    ws_close(ws, WS_CLOSE_NORMAL, "done");
    ck_assert(ws_closing(ws));
    ck_assert_int_eq(ws_send(ws, false, &ch, 1, "x", 1), -1);
    n = take_output(ws);
    off = 0;
    ck_assert(next_server_frame(out, n, &off));
    ck_assert_int_eq(sf.op, OP_CLOSE);
    ck_assert_uint_eq(sf.len, 6);
    ck_assert_int_eq(memcmp(sf.payload, "\x03\xe8" "done", 6), 0);
    ws_session_free(ws);
}
END_TEST

START_TEST(backpressure_stops_input)
{
    struct rec r;
    ws_limits lim;
    ws_limits_default(&lim);
    lim.out_high_water = 1000;
    ws_session *ws = session(&r, &lim);
    static uint8_t big[3000];
    uint8_t buf[64];
    ck_assert(ws_writable(ws));
    ck_assert_int_eq(ws_send(ws, false, NULL, 0, big, sizeof big), 0);
    ck_assert(!ws_writable(ws));
    ck_assert(!ws_wants_input(ws));
    size_t n = frame(buf, true, OP_BIN, true, "\0x", 2);
    ck_assert_uint_eq(ws_feed(ws, buf, n), 0);
    ck_assert_int_eq(r.messages, 0);

    const uint8_t *p;
    size_t pend = ws_output(ws, &p);
    ck_assert(!ws_output_sent(ws, pend - 600));
    ck_assert(ws_output_sent(ws, 200));
    ck_assert(ws_wants_input(ws));
    feed_all(ws, buf, n);
    ck_assert_int_eq(r.messages, 1);

    ws_pause_input(ws, true);
    ck_assert_uint_eq(ws_feed(ws, buf, n), 0);
    ws_pause_input(ws, false);

    /* A pause from inside on_message stops reading once what wslay
     * already buffered (4 KiB) is processed. */
    r.pause_on_message = true;
    static uint8_t many[20 * 1100], msg[1000];
    size_t total = 0;
    for (int i = 0; i < 20; i++) {
        msg[0] = (uint8_t)i;
        total += frame(many + total, true, OP_BIN, true, msg, sizeof msg);
    }
    r.messages = 0;
    size_t used = ws_feed(ws, many, total);
    ck_assert_uint_lt(used, total);
    ck_assert_int_ge(r.messages, 1);
    ck_assert_int_lt(r.messages, 20);
    r.pause_on_message = false;
    ws_pause_input(ws, false);
    feed_all(ws, many + used, total - used);
    ck_assert_int_eq(r.messages, 20);
    ck_assert_uint_eq(r.data[0], 19);
    ws_session_free(ws);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("websocket");
    TCase *t = tcase_create("core");
    tcase_add_test(t, accept_key_rfc6455_example);
    tcase_add_test(t, upgrade_detection);
    tcase_add_test(t, protocol_selection);
    tcase_add_test(t, handshake_response);
    tcase_add_test(t, masked_messages);
    tcase_add_test(t, fragmented_message_with_ping_inside);
    tcase_add_test(t, unmasked_client_frame_fails);
    tcase_add_test(t, client_close_is_answered);
    tcase_add_test(t, message_too_big);
    tcase_add_test(t, server_frames);
    tcase_add_test(t, backpressure_stops_input);
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
