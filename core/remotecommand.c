/* remotecommand.c -- exec/attach streams over SPDY or WebSocket. See
 * remotecommand.h for the protocol. */
#include "remotecommand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "json.h"
#include "log.h"
#include "spdy.h"
#include "websocket.h"

/* Channels, numbered as on a WebSocket. */
enum { CH_STDIN, CH_STDOUT, CH_STDERR, CH_ERROR, CH_RESIZE, NCHAN };

/* v5's close signal: a message of this byte and a channel number. */
#define STREAM_CLOSE 255
/* A resize object longer than this is not a terminal size. */
#define RESIZE_MAX 512

static const char *const channel_names[NCHAN] = {"stdin", "stdout", "stderr", "error", "resize"};

const char *const rc_spdy_protocols[] = {
    "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io", NULL,
};

const char *const rc_websocket_protocols[] = {
    "v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io",
    "channel.k8s.io",    "base64.channel.k8s.io", "", NULL,
};

struct rc_session {
    enum rc_transport t;
    int version; /* 1 .. 5 */
    bool base64;
    rc_callbacks cb;
    void *user;
    bool want[NCHAN]; /* channels the options call for */

    spdy_session *spdy;
    ws_session *ws;
    uint32_t sid[NCHAN]; /* SPDY: the client's stream per channel, 0 if none */

    bool start_due; /* SPDY: every stream is there, on_start not yet run */
    bool user_paused; /* rc_pause_input */
    bool started, finished, gone, stdin_closed;
    /* SPDY: stdin (and its end) that arrived before the last stream opened
     * and so before on_start. spdystream buffers such data for the
     * kubelet; input cannot pause here without also holding back the
     * SYN_STREAM that would start the command. */
    vk_buf early_stdin;
    bool early_close;
    uint16_t early_width, early_height; /* the last size before on_start */
    bool early_resize;

    /* resize channel: bytes of the JSON object being collected */
    char resize[RESIZE_MAX + 1];
    size_t resize_len;
    int resize_depth;
    bool resize_in_string, resize_escape;
};

/* ---- options --------------------------------------------------------------- */

static bool truthy(const char *v)
{
    return v && (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0);
}

void rc_options_clear(rc_options *o)
{
    for (size_t i = 0; i < o->ncommand; i++)
        free(o->command[i]);
    free(o->command);
    free(o->container);
    memset(o, 0, sizeof *o);
}

int rc_parse_options(rc_options *o, rc_query_fn get, void *ud, bool exec, char *err,
                     size_t errlen)
{
    memset(o, 0, sizeof *o);
    /* The API server names them input, output and error (core/v1's
     * ExecStdinParam...); stdin, stdout and stderr, the names of
     * PodExecOptions, are taken too, for clients that come directly. */
    o->stdin = truthy(get(ud, "input", 0)) || truthy(get(ud, "stdin", 0));
    o->stdout = truthy(get(ud, "output", 0)) || truthy(get(ud, "stdout", 0));
    o->stderr = truthy(get(ud, "error", 0)) || truthy(get(ud, "stderr", 0));
    o->tty = truthy(get(ud, "tty", 0));
    if (o->tty)
        o->stderr = false;
    if (!o->stdin && !o->stdout && !o->stderr) {
        snprintf(err, errlen, "you must specify at least 1 of stdin, stdout, stderr");
        return -1;
    }
    size_t n = 0;
    while (get(ud, "command", (int)n))
        if (++n > RC_MAX_COMMAND) {
            snprintf(err, errlen, "more than %d command arguments", RC_MAX_COMMAND);
            return -1;
        }
    if (exec && n == 0) {
        snprintf(err, errlen, "command is required");
        return -1;
    }
    const char *container = get(ud, "container", 0);
    o->command = calloc(n + 1, sizeof *o->command);
    if (!o->command || (container && !(o->container = strdup(container))))
        goto nomem;
    for (; o->ncommand < n; o->ncommand++)
        if (!(o->command[o->ncommand] = strdup(get(ud, "command", (int)o->ncommand))))
            goto nomem;
    return 0;
nomem:
    rc_options_clear(o);
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- negotiation ------------------------------------------------------------ */

int rc_negotiate_spdy(const char *offered, const char **chosen)
{
    bool any = false;
    const char *p = offered;
    while (p && *p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && p[len - 1] == ' ')
            len--;
        if (len) {
            any = true;
            for (const char *const *s = rc_spdy_protocols; *s; s++)
                if (strlen(*s) == len && memcmp(*s, p, len) == 0) {
                    *chosen = *s;
                    return 0;
                }
        }
        p = end;
    }
    return any ? 403 : 400;
}

/* ---- the result ---------------------------------------------------------------- */

#define EXEC_ERROR_PREFIX "error executing command in container: "

int rc_status_json(vk_buf *out, int exit_code, const char *error)
{
    vk_json_writer w;
    char text[64];
    vk_buf inner = VK_BUF_INIT;
    int rc = vk_jw_begin(&w, out);

    vk_jw_map_open(&w);
    vk_jw_str(&w, "metadata");
    vk_jw_map_open(&w);
    vk_jw_map_close(&w);
    if (!error && exit_code == 0) {
        vk_jw_kv_str(&w, "status", "Success");
    } else if (!error && exit_code > 0 && exit_code <= 255) {
        /* kubectl reads the code from the ExitCode cause (0..255 only). */
        snprintf(text, sizeof text, "command terminated with non-zero exit code: exit status %d",
                 exit_code);
        vk_jw_kv_str(&w, "status", "Failure");
        vk_jw_kv_str(&w, "message", text);
        vk_jw_kv_str(&w, "reason", "NonZeroExitCode");
        vk_jw_str(&w, "details");
        vk_jw_map_open(&w);
        vk_jw_str(&w, "causes");
        vk_jw_array_open(&w);
        vk_jw_map_open(&w);
        vk_jw_kv_str(&w, "reason", "ExitCode");
        snprintf(text, sizeof text, "%d", exit_code);
        vk_jw_kv_str(&w, "message", text);
        vk_jw_map_close(&w);
        vk_jw_array_close(&w);
        vk_jw_map_close(&w);
    } else {
        /* The shape of apierrors.NewInternalError, as the kubelet sends. */
        if (error)
            w.failed |= vk_buf_printf(&inner, EXEC_ERROR_PREFIX "%s", error) < 0;
        else
            w.failed |= vk_buf_printf(&inner, EXEC_ERROR_PREFIX "exit code %d out of range",
                                      exit_code) < 0;
        vk_jw_kv_str(&w, "status", "Failure");
        if (inner.data) {
            vk_buf msg = VK_BUF_INIT;
            w.failed |= vk_buf_printf(&msg, "Internal error occurred: %s", inner.data) < 0;
            vk_jw_kv_str(&w, "message", msg.data);
            vk_buf_free(&msg);
        }
        vk_jw_kv_str(&w, "reason", "InternalError");
        vk_jw_str(&w, "details");
        vk_jw_map_open(&w);
        vk_jw_str(&w, "causes");
        vk_jw_array_open(&w);
        vk_jw_map_open(&w);
        vk_jw_kv_str(&w, "message", inner.data);
        vk_jw_map_close(&w);
        vk_jw_array_close(&w);
        vk_jw_map_close(&w);
        vk_jw_kv_int(&w, "code", 500);
    }
    vk_jw_map_close(&w);
    vk_buf_free(&inner);
    if (vk_jw_end(&w) < 0)
        rc = -1;
    return rc;
}

/* Before v4 the error channel carries the failure's message alone, as
 * Status.Error() is; nothing on success. */
static int status_text(vk_buf *out, int exit_code, const char *error)
{
    if (error)
        return vk_buf_printf(out, "Internal error occurred: " EXEC_ERROR_PREFIX "%s", error);
    if (exit_code == 0)
        return 0;
    return vk_buf_printf(out, "command terminated with non-zero exit code: exit status %d",
                         exit_code);
}

/* ---- events ------------------------------------------------------------------- */

static void gone(rc_session *rc)
{
    if (rc->finished || rc->gone)
        return;
    rc->gone = true;
    rc->cb.on_gone(rc->user);
}

/* Bytes of stdin held before the command starts: a client that sends more
 * before opening its last stream is not one kubectl would be. */
#define EARLY_STDIN_MAX (64u << 10)

static void stdin_close(rc_session *rc)
{
    if (!rc->want[CH_STDIN] || rc->stdin_closed || rc->gone || rc->finished)
        return;
    if (!rc->started) {
        rc->early_close = true;
        return;
    }
    rc->stdin_closed = true;
    rc->cb.on_stdin_close(rc->user);
}

static void stdin_data(rc_session *rc, const uint8_t *data, size_t len)
{
    if (!rc->want[CH_STDIN] || rc->stdin_closed || rc->gone || rc->finished || !len)
        return;
    if (!rc->started) {
        if (rc->early_close)
            return;
        if (rc->early_stdin.len + len > EARLY_STDIN_MAX ||
            vk_buf_append(&rc->early_stdin, data, len) < 0)
            rc_abort(rc, "too much stdin before the command started");
        return;
    }
    rc->cb.on_stdin(rc->user, data, len);
}

/* A terminal size sent before the command starts is held (the latest
 * wins), so the command starts at the client's size, not a default. */
static void resize(rc_session *rc, uint16_t width, uint16_t height)
{
    if (!rc->started) {
        rc->early_width = width;
        rc->early_height = height;
        rc->early_resize = true;
        return;
    }
    rc->cb.on_resize(rc->user, width, height);
}

static void bad_resize(rc_session *rc, const char *why);

/* One resize object: {"Width":W,"Height":H}, both unsigned 16-bit
 * integers as in Go's TerminalSize; field names match case-insensitively
 * and a missing one is 0, as encoding/json has it. Anything else ends the
 * session (see bad_resize): stricter than the kubelet, which stops reading
 * resizes and lets a session it can no longer size run on. */
static void resize_object(rc_session *rc)
{
    char err[128];
    yajl_val v = vk_json_parse(rc->resize, rc->resize_len, err, sizeof err);
    long long size[2] = {0, 0}; /* Width, Height */
    bool ok = v && YAJL_IS_OBJECT(v);
    for (size_t i = 0; ok && i < v->u.object.len; i++) {
        int which = strcasecmp(v->u.object.keys[i], "width") == 0    ? 0
                    : strcasecmp(v->u.object.keys[i], "height") == 0 ? 1
                                                                     : -1;
        if (which < 0)
            continue;
        yajl_val n = v->u.object.values[i];
        if (!YAJL_IS_INTEGER(n) || YAJL_GET_INTEGER(n) < 0 || YAJL_GET_INTEGER(n) > 65535)
            ok = false;
        else
            size[which] = YAJL_GET_INTEGER(n);
    }
    bool parsed = v != NULL;
    yajl_tree_free(v);
    if (ok)
        resize(rc, (uint16_t)size[0], (uint16_t)size[1]);
    else
        bad_resize(rc, parsed ? "not {\"Width\":W,\"Height\":H} with sizes from 0 to 65535" : err);
}

/* The resize channel is a stream of JSON objects (Go's json.Encoder writes
 * one per line, whitespace between); cut it into objects by brace depth,
 * outside strings. Anything else on it ends the session (bad_resize). */
static void resize_data(rc_session *rc, const uint8_t *p, size_t len)
{
    if (!rc->want[CH_RESIZE])
        return;
    for (size_t i = 0; i < len && !rc->finished && !rc->gone; i++) {
        char c = (char)p[i];
        if (rc->resize_depth == 0) {
            if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
                continue;
            if (c != '{') {
                bad_resize(rc, "not a JSON object");
                return;
            }
            rc->resize_len = 0;
        }
        if (rc->resize_len == RESIZE_MAX) {
            bad_resize(rc, "too long for a terminal size");
            return;
        }
        rc->resize[rc->resize_len++] = c;
        if (rc->resize_in_string) {
            if (rc->resize_escape)
                rc->resize_escape = false;
            else if (c == '\\')
                rc->resize_escape = true;
            else if (c == '"')
                rc->resize_in_string = false;
            continue;
        }
        if (c == '"') {
            rc->resize_in_string = true;
        } else if (c == '{' || c == '[') {
            rc->resize_depth++;
        } else if ((c == '}' || c == ']') && --rc->resize_depth == 0) {
            rc->resize[rc->resize_len] = '\0';
            resize_object(rc);
            rc->resize_len = 0;
        }
    }
}

static void channel_data(rc_session *rc, int ch, const uint8_t *data, size_t len)
{
    if (ch == CH_STDIN)
        stdin_data(rc, data, len);
    else if (ch == CH_RESIZE)
        resize_data(rc, data, len);
    /* The client has nothing to say on the other channels. */
}

/* ---- SPDY ----------------------------------------------------------------------- */

static int channel_of_stream(const rc_session *rc, uint32_t id)
{
    for (int ch = 0; ch < NCHAN; ch++)
        if (rc->sid[ch] == id)
            return ch;
    return -1;
}

static bool all_streams_open(const rc_session *rc)
{
    for (int ch = 0; ch < NCHAN; ch++)
        if (rc->want[ch] && !rc->sid[ch])
            return false;
    return true;
}

static int spdy_on_stream(void *user, uint32_t id, const spdy_headers *h)
{
    rc_session *rc = user;
    const char *type = spdy_header_get(h, "streamtype");
    int ch = -1;
    for (int i = 0; type && i < NCHAN; i++)
        if (strcmp(type, channel_names[i]) == 0)
            ch = i;
    if (ch < 0 || (ch == CH_RESIZE && rc->version < 3)) {
        vk_debug("exec: refusing stream", "stream_type=\"%s\"", type ? type : "");
        return SPDY_REFUSED_STREAM;
    }
    if (rc->sid[ch] || rc->started || rc->finished)
        return SPDY_PROTOCOL_ERROR;
    rc->sid[ch] = id;
    /* on_start waits until the SYN_REPLY is out (rc_feed). Input stops
     * here meanwhile, so stdin right behind this frame finds the command
     * started. */
    if (all_streams_open(rc)) {
        rc->start_due = true;
        spdy_pause_input(rc->spdy, true);
    }
    return 0;
}

static void spdy_on_data(void *user, uint32_t id, const uint8_t *data, size_t len)
{
    rc_session *rc = user;
    channel_data(rc, channel_of_stream(rc, id), data, len);
}

static void spdy_on_fin(void *user, uint32_t id)
{
    rc_session *rc = user;
    if (channel_of_stream(rc, id) == CH_STDIN)
        stdin_close(rc);
}

static void spdy_on_reset(void *user, uint32_t id, uint32_t status)
{
    rc_session *rc = user;
    int ch = channel_of_stream(rc, id);
    vk_debug("exec: stream reset", "stream=%u status=%u", id, status);
    if (ch < 0)
        return;
    rc->sid[ch] = 0;
    if (ch == CH_STDIN)
        stdin_close(rc);
}

static const spdy_callbacks spdy_cbs = {
    .on_stream = spdy_on_stream,
    .on_data = spdy_on_data,
    .on_fin = spdy_on_fin,
    .on_reset = spdy_on_reset,
};

/* ---- WebSocket ---------------------------------------------------------------------- */

static void ws_on_message(void *user, bool text, const uint8_t *data, size_t len)
{
    (void)text;
    rc_session *rc = user;
    if (len == 0)
        return;
    if (rc->version >= 5 && data[0] == STREAM_CLOSE) {
        if (len != 2) {
            gone(rc);
            ws_close(rc->ws, WS_CLOSE_PROTOCOL_ERROR, "malformed stream close signal");
            return;
        }
        if (data[1] == CH_STDIN)
            stdin_close(rc);
        return;
    }
    int ch = rc->base64 ? data[0] - '0' : data[0];
    if (ch < 0 || ch >= NCHAN) {
        vk_debug("exec: message for an unknown channel", "channel=%d", ch);
        return;
    }
    if (!rc->base64) {
        channel_data(rc, ch, data + 1, len - 1);
        return;
    }
    /* Text: base64 of the payload, padded, as Go's StdEncoding writes. */
    size_t blen = len - 1;
    if (blen % 4) {
        vk_debug("exec: bad base64 message", "channel=%d", ch);
        return;
    }
    uint8_t *raw = malloc(blen / 4 * 3 + 1);
    int n = raw ? EVP_DecodeBlock(raw, data + 1, (int)blen) : -1;
    if (n < 0) {
        vk_debug("exec: bad base64 message", "channel=%d", ch);
        free(raw);
        return;
    }
    /* EVP_DecodeBlock counts padding as zero bytes. */
    if (blen && data[len - 1] == '=')
        n -= data[len - 2] == '=' ? 2 : 1;
    channel_data(rc, ch, raw, (size_t)n);
    free(raw);
}

static void ws_on_close(void *user, uint16_t code)
{
    rc_session *rc = user;
    vk_debug("exec: websocket closed by client", "code=%u", code);
    gone(rc);
}

static const ws_callbacks ws_cbs = {ws_on_message, ws_on_close};

/* ---- life cycle ------------------------------------------------------------------------ */

static int version_of(enum rc_transport t, const char *protocol, bool *base64)
{
    *base64 = false;
    if (t == RC_SPDY) {
        for (int i = 0; rc_spdy_protocols[i]; i++)
            if (strcmp(protocol, rc_spdy_protocols[i]) == 0)
                return 4 - i;
        return -1;
    }
    static const struct {
        const char *name;
        int version;
        bool base64;
    } ws[] = {
        {"v5.channel.k8s.io", 5, false},  {"v4.channel.k8s.io", 4, false},
        {"v4.base64.channel.k8s.io", 4, true}, {"channel.k8s.io", 1, false},
        {"base64.channel.k8s.io", 1, true}, {"", 1, false},
    };
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        if (strcmp(protocol, ws[i].name) == 0) {
            *base64 = ws[i].base64;
            return ws[i].version;
        }
    return -1;
}

rc_session *rc_new(enum rc_transport t, const char *protocol, const rc_options *o,
                   const rc_callbacks *cb, void *user)
{
    bool base64;
    int version = version_of(t, protocol, &base64);
    if (version < 0)
        return NULL;
    rc_session *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    rc->t = t;
    rc->version = version;
    rc->base64 = base64;
    rc->cb = *cb;
    rc->user = user;
    rc->want[CH_ERROR] = true;
    rc->want[CH_STDIN] = o->stdin;
    rc->want[CH_STDOUT] = o->stdout;
    rc->want[CH_STDERR] = o->stderr && !o->tty;
    /* A WebSocket always has the resize channel; SPDY has the stream from
     * v3 on, when there is a terminal to resize. */
    rc->want[CH_RESIZE] = o->tty && (t == RC_WEBSOCKET || version >= 3);

    if (t == RC_SPDY) {
        rc->spdy = spdy_session_new(&spdy_cbs, rc, NULL);
        if (!rc->spdy)
            goto fail;
        return rc;
    }
    rc->ws = ws_session_new(&ws_cbs, rc, NULL);
    if (!rc->ws)
        goto fail;
    /* The kubelet's hello: an empty message on the first writable channel. */
    uint8_t first = rc->want[CH_STDOUT] ? CH_STDOUT : rc->want[CH_STDERR] ? CH_STDERR : CH_ERROR;
    uint8_t head = rc->base64 ? (uint8_t)('0' + first) : first;
    if (ws_send(rc->ws, rc->base64, &head, 1, NULL, 0) < 0)
        goto fail;
    return rc;
fail:
    rc_free(rc);
    return NULL;
}

void rc_free(rc_session *rc)
{
    if (!rc)
        return;
    spdy_session_free(rc->spdy);
    ws_session_free(rc->ws);
    vk_buf_free(&rc->early_stdin);
    free(rc);
}

static bool transport_closing(const rc_session *rc)
{
    return rc->spdy ? spdy_closing(rc->spdy) : ws_closing(rc->ws);
}

/* Run on_start when due; true when it ran and held input may follow. */
static bool start_if_due(rc_session *rc)
{
    if (!rc->start_due || rc->started || rc->gone || rc->finished || transport_closing(rc))
        return false;
    rc->start_due = false;
    rc->started = true;
    if (rc->spdy)
        spdy_pause_input(rc->spdy, rc->user_paused);
    rc->cb.on_start(rc->user);
    if (rc->early_resize && !rc->gone && !rc->finished)
        rc->cb.on_resize(rc->user, rc->early_width, rc->early_height);
    if (rc->early_stdin.len && !rc->gone && !rc->finished)
        rc->cb.on_stdin(rc->user, (const uint8_t *)rc->early_stdin.data, rc->early_stdin.len);
    vk_buf_free(&rc->early_stdin);
    if (rc->early_close)
        stdin_close(rc);
    return true;
}

void rc_open(rc_session *rc)
{
    if (rc->ws)
        rc->start_due = true;
    start_if_due(rc);
}

size_t rc_feed(rc_session *rc, const uint8_t *data, size_t len)
{
    size_t used = 0;
    do
        used += rc->spdy ? spdy_feed(rc->spdy, data + used, len - used)
                         : ws_feed(rc->ws, data + used, len - used);
    while (start_if_due(rc) && used < len);
    /* A protocol error closes the transport under us. */
    if (transport_closing(rc) && !rc->finished && !rc->gone) {
        if (rc->spdy && spdy_error(rc->spdy))
            vk_info("exec: client broke the SPDY protocol", "error=\"%s\"", spdy_error(rc->spdy));
        gone(rc);
    }
    return used;
}

bool rc_wants_input(const rc_session *rc)
{
    return rc->spdy ? spdy_wants_input(rc->spdy) : ws_wants_input(rc->ws);
}

size_t rc_output(const rc_session *rc, const uint8_t **data)
{
    return rc->spdy ? spdy_output(rc->spdy, data) : ws_output(rc->ws, data);
}

void rc_output_sent(rc_session *rc, size_t n)
{
    bool resume = rc->spdy ? spdy_output_sent(rc->spdy, n) : ws_output_sent(rc->ws, n);
    if (resume && !rc->gone && !rc->finished && rc->cb.on_writable)
        rc->cb.on_writable(rc->user);
}

void rc_connection_lost(rc_session *rc)
{
    gone(rc);
}

bool rc_closing(const rc_session *rc)
{
    return transport_closing(rc);
}

bool rc_started(const rc_session *rc)
{
    return rc->started;
}

bool rc_writable(const rc_session *rc)
{
    return rc->spdy ? spdy_writable(rc->spdy) : ws_writable(rc->ws);
}

void rc_pause_input(rc_session *rc, bool paused)
{
    rc->user_paused = paused;
    if (rc->spdy)
        spdy_pause_input(rc->spdy, paused || rc->start_due);
    else
        ws_pause_input(rc->ws, paused);
}

/* Send on a channel; a channel the client does not have swallows. */
static int send_channel(rc_session *rc, int ch, const void *data, size_t len)
{
    if (rc->spdy) {
        if (!rc->sid[ch])
            return 0;
        return spdy_data(rc->spdy, rc->sid[ch], data, len, false);
    }
    if (!rc->want[ch])
        return 0;
    uint8_t head = (uint8_t)ch;
    if (!rc->base64)
        return ws_send(rc->ws, false, &head, 1, data, len);
    head = (uint8_t)('0' + ch);
    uint8_t *b64 = malloc((len + 2) / 3 * 4 + 1);
    if (!b64)
        return -1;
    int n = EVP_EncodeBlock(b64, data, (int)len);
    int r = ws_send(rc->ws, true, &head, 1, b64, (size_t)n);
    free(b64);
    return r;
}

int rc_write(rc_session *rc, enum rc_output which, const void *data, size_t len)
{
    if (rc->finished || rc->gone || transport_closing(rc))
        return -1;
    if (len == 0)
        return 0;
    return send_channel(rc, which == RC_STDOUT ? CH_STDOUT : CH_STDERR, data, len);
}

/* Send the result on the error channel (after the output on SPDY), close
 * every stream and end the connection. */
static void send_result(rc_session *rc, const vk_buf *doc)
{
    if (rc->spdy) {
        /* Output first: the client waits for stdout and stderr to end,
         * then reads the error stream to its end. */
        static const int order[] = {CH_STDOUT, CH_STDERR, CH_ERROR, CH_STDIN, CH_RESIZE};
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
            int ch = order[i];
            if (!rc->sid[ch])
                continue;
            if (ch == CH_ERROR && doc->len)
                spdy_data(rc->spdy, rc->sid[ch], doc->data, doc->len, false);
            spdy_data(rc->spdy, rc->sid[ch], NULL, 0, true);
        }
        spdy_goaway(rc->spdy, SPDY_GOAWAY_OK);
    } else {
        if (doc->len)
            send_channel(rc, CH_ERROR, doc->data, doc->len);
        ws_close(rc->ws, WS_CLOSE_NORMAL, NULL);
    }
}

void rc_finish(rc_session *rc, int exit_code, const char *error)
{
    if (rc->finished || transport_closing(rc))
        return;
    rc->finished = true;
    vk_buf doc = VK_BUF_INIT;
    int r = rc->version >= 4 ? rc_status_json(&doc, exit_code, error)
                             : status_text(&doc, exit_code, error);
    if (r < 0)
        vk_warn("exec: cannot build the result", "exit_code=%d", exit_code);
    send_result(rc, &doc);
    vk_buf_free(&doc);
}

/* The shape of apierrors.NewBadRequest. */
static int bad_request_json(vk_buf *out, const char *message)
{
    vk_json_writer w;
    vk_jw_begin(&w, out);
    vk_jw_map_open(&w);
    vk_jw_str(&w, "metadata");
    vk_jw_map_open(&w);
    vk_jw_map_close(&w);
    vk_jw_kv_str(&w, "status", "Failure");
    vk_jw_kv_str(&w, "message", message);
    vk_jw_kv_str(&w, "reason", "BadRequest");
    vk_jw_kv_int(&w, "code", 400);
    vk_jw_map_close(&w);
    return vk_jw_end(&w);
}

/* A resize message that is not a terminal size: the client does not speak
 * the protocol, and guessing leaves a terminal at the wrong size. End the
 * session as a whole: cancel the command, say why on the error channel,
 * close. */
static void bad_resize(rc_session *rc, const char *why)
{
    if (rc->finished || rc->gone || transport_closing(rc))
        return;
    vk_info("exec: invalid resize message, ending the session", "error=\"%s\"", why);
    gone(rc);
    rc->finished = true;
    vk_buf msg = VK_BUF_INIT, doc = VK_BUF_INIT;
    int r = vk_buf_printf(&msg, "invalid resize message: %s", why);
    if (r == 0 && rc->version >= 4)
        r = bad_request_json(&doc, msg.data);
    else if (r == 0)
        r = vk_buf_append(&doc, msg.data, msg.len);
    if (r < 0)
        vk_warn("exec: cannot build the result", "error=\"%s\"", why);
    send_result(rc, &doc);
    vk_buf_free(&msg);
    vk_buf_free(&doc);
}

void rc_abort(rc_session *rc, const char *why)
{
    if (rc->finished || transport_closing(rc))
        return;
    vk_info("exec: giving up on the client", "reason=\"%s\"", why);
    rc->finished = true;
    if (rc->spdy)
        spdy_goaway(rc->spdy, SPDY_GOAWAY_OK);
    else
        ws_close(rc->ws, WS_CLOSE_INTERNAL_ERROR, why);
}
