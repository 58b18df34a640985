/* websocket.c -- WebSocket opening handshake and a wslay-driven session fed
 * from and draining into memory. See websocket.h. */
#include "websocket.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "log.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define COMPACT_AT (64u * 1024)

/* ---- handshake --------------------------------------------------------- */

/* Whether the comma-separated list has token (case-insensitive). */
static bool has_token(const char *list, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = list;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == tlen && strncasecmp(p, token, tlen) == 0)
            return true;
        p = end;
    }
    return false;
}

bool ws_is_upgrade(const char *upgrade, const char *connection)
{
    return upgrade && connection && strcasecmp(upgrade, "websocket") == 0 &&
           has_token(connection, "upgrade");
}

int ws_accept_key(const char *key, char out[29])
{
    unsigned char raw[24];
    size_t klen = strlen(key);
    /* 16 bytes in base64: 22 characters and "==". */
    if (klen != 24 || key[22] != '=' || key[23] != '=' ||
        EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18)
        return -1;
    char buf[24 + sizeof WS_GUID];
    memcpy(buf, key, 24);
    memcpy(buf + 24, WS_GUID, sizeof WS_GUID);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen;
    if (!EVP_Digest(buf, 24 + sizeof WS_GUID - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, md, 20); /* writes 28 + NUL */
    return 0;
}

const char *ws_select_protocol(const char *offered, const char *const *supported)
{
    const char *p = offered;
    bool any = false;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len) {
            any = true;
            for (const char *const *s = supported; *s; s++)
                if (strlen(*s) == len && memcmp(*s, p, len) == 0)
                    return *s;
        }
        p = end;
    }
    if (!any)
        for (const char *const *s = supported; *s; s++)
            if (**s == '\0')
                return *s;
    return NULL;
}

int ws_handshake_response(vk_buf *out, const char *key, const char *version,
                          const char *protocol, const char **err)
{
    char accept[29];
    if (!version || strcmp(version, "13") != 0) {
        *err = "unsupported Sec-WebSocket-Version (13 is)";
        return -1;
    }
    if (!key || ws_accept_key(key, accept) < 0) {
        *err = "missing or malformed Sec-WebSocket-Key";
        return -1;
    }
    size_t start = out->len;
    int rc = vk_buf_printf(out,
                           "HTTP/1.1 101 Switching Protocols\r\n"
                           "Upgrade: websocket\r\n"
                           "Connection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: %s\r\n",
                           accept);
    if (rc == 0 && protocol && *protocol)
        rc = vk_buf_printf(out, "Sec-WebSocket-Protocol: %s\r\n", protocol);
    if (rc == 0)
        rc = vk_buf_puts(out, "\r\n");
    if (rc < 0) {
        out->len = start;
        *err = "out of memory";
        return -1;
    }
    return 0;
}

/* ---- session ----------------------------------------------------------- */

struct ws_session {
    wslay_event_context_ptr ctx;
    ws_callbacks cb;
    void *user;
    ws_limits lim;

    /* the input ws_feed is offering wslay right now */
    const uint8_t *in;
    size_t in_len, in_off;
    bool paused;
    bool close_reported;
    bool failed; /* wslay gave up: nothing more is read or sent */

    vk_buf out; /* out.data[out_off .. out.len) waits to be written */
    size_t out_off;
    bool out_full;
};

void ws_limits_default(ws_limits *lim)
{
    lim->max_message = 4u << 20;
    lim->out_high_water = 256u * 1024;
}

static size_t pending(const ws_session *ws)
{
    return ws->out.len - ws->out_off;
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    (void)flags;
    ws_session *ws = user;
    size_t avail = ws->in_len - ws->in_off;
    if (avail == 0 || !ws_wants_input(ws)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < avail ? len : avail;
    memcpy(buf, ws->in + ws->in_off, n);
    ws->in_off += n;
    return (ssize_t)n;
}

/* Everything wslay sends lands in the output queue: writers look at the
 * high-water mark before queueing, so wslay never needs to hold back. */
static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)flags;
    ws_session *ws = user;
    if (vk_buf_append(&ws->out, data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    if (pending(ws) >= ws->lim.out_high_water)
        ws->out_full = true;
    return (ssize_t)len;
}

static void report_close(ws_session *ws, uint16_t code)
{
    if (ws->close_reported)
        return;
    ws->close_reported = true;
    if (ws->cb.on_close)
        ws->cb.on_close(ws->user, code);
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    (void)ctx;
    ws_session *ws = user;
    if (ws->close_reported)
        return;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME:
        ws->cb.on_message(ws->user, arg->opcode == WSLAY_TEXT_FRAME, arg->msg, arg->msg_length);
        break;
    case WSLAY_CONNECTION_CLOSE:
        report_close(ws, arg->status_code ? arg->status_code : WS_CLOSE_NO_STATUS);
        break;
    default:
        break; /* PING is answered by wslay, PONG needs nothing */
    }
}

/* Push wslay's queued frames into the output queue. */
static void flush(ws_session *ws)
{
    if (ws->failed)
        return;
    if (wslay_event_send(ws->ctx) < 0) {
        ws->failed = true;
        report_close(ws, WS_CLOSE_ABNORMAL);
    }
}

ws_session *ws_session_new(const ws_callbacks *cb, void *user, const ws_limits *lim)
{
    ws_session *ws = calloc(1, sizeof *ws);
    if (!ws)
        return NULL;
    ws->cb = *cb;
    ws->user = user;
    if (lim)
        ws->lim = *lim;
    else
        ws_limits_default(&ws->lim);
    struct wslay_event_callbacks wcb = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .on_msg_recv_callback = msg_cb,
    };
    if (wslay_event_context_server_init(&ws->ctx, &wcb, ws) != 0) {
        free(ws);
        return NULL;
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->lim.max_message);
    return ws;
}

void ws_session_free(ws_session *ws)
{
    if (!ws)
        return;
    wslay_event_context_free(ws->ctx);
    vk_buf_free(&ws->out);
    free(ws);
}

bool ws_wants_input(const ws_session *ws)
{
    return !ws->paused && pending(ws) < ws->lim.out_high_water;
}

void ws_pause_input(ws_session *ws, bool paused)
{
    ws->paused = paused;
}

size_t ws_feed(ws_session *ws, const uint8_t *data, size_t len)
{
    if (ws->failed || !wslay_event_get_read_enabled(ws->ctx))
        return len;
    ws->in = data;
    ws->in_len = len;
    ws->in_off = 0;
    if (wslay_event_recv(ws->ctx) < 0) {
        ws->failed = true;
        report_close(ws, WS_CLOSE_ABNORMAL);
    }
    size_t used = ws->in_off;
    ws->in = NULL;
    ws->in_len = ws->in_off = 0;
    flush(ws);
    if (ws->failed || !wslay_event_get_read_enabled(ws->ctx)) {
        /* wslay stopped reading: a close arrived, or it failed the
         * connection (bad framing, unmasked frame, message too big) and
         * queued a close of its own. */
        if (!ws->close_reported) {
            uint16_t code = wslay_event_get_close_received(ws->ctx)
                                ? wslay_event_get_status_code_received(ws->ctx)
                                : wslay_event_get_status_code_sent(ws->ctx);
            vk_debug("websocket failed", "code=%u", code);
            report_close(ws, code);
        }
        return len;
    }
    return used;
}

size_t ws_output(const ws_session *ws, const uint8_t **data)
{
    /* Nothing queued yet: out.data is NULL, and NULL + 0 is undefined. */
    *data = ws->out.data ? (const uint8_t *)ws->out.data + ws->out_off : NULL;
    return pending(ws);
}

bool ws_output_sent(ws_session *ws, size_t n)
{
    if (n > pending(ws))
        n = pending(ws);
    ws->out_off += n;
    if (ws->out_off == ws->out.len) {
        vk_buf_reset(&ws->out);
        ws->out_off = 0;
    } else if (ws->out_off >= COMPACT_AT && ws->out_off * 2 >= ws->out.len) {
        memmove(ws->out.data, ws->out.data + ws->out_off, pending(ws));
        ws->out.len -= ws->out_off;
        ws->out_off = 0;
    }
    if (ws->out_full && pending(ws) < ws->lim.out_high_water / 2) {
        ws->out_full = false;
        return true;
    }
    return false;
}

bool ws_writable(const ws_session *ws)
{
    return pending(ws) < ws->lim.out_high_water;
}

int ws_send(ws_session *ws, bool text, const void *head, size_t head_len, const void *body,
            size_t body_len)
{
    if (ws_closing(ws))
        return -1;
    uint8_t *msg = malloc(head_len + body_len + 1);
    if (!msg)
        return -1;
    if (head_len)
        memcpy(msg, head, head_len);
    if (body_len)
        memcpy(msg + head_len, body, body_len);
    struct wslay_event_msg m = {
        .opcode = text ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME,
        .msg = msg,
        .msg_length = head_len + body_len,
    };
    int rc = wslay_event_queue_msg(ws->ctx, &m); /* wslay keeps a copy */
    free(msg);
    if (rc != 0)
        return -1;
    flush(ws);
    return ws->failed ? -1 : 0;
}

void ws_close(ws_session *ws, uint16_t code, const char *reason)
{
    if (ws_closing(ws))
        return;
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > 120)
        rlen = 120; /* a close frame's payload is at most 125 bytes */
    if (wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, rlen) != 0)
        ws->failed = true;
    flush(ws);
}

bool ws_closing(const ws_session *ws)
{
    return ws->failed || wslay_event_get_close_sent(ws->ctx) ||
           !wslay_event_get_write_enabled(ws->ctx);
}
