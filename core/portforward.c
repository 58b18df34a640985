/* portforward.c -- port-forward streams over SPDY or WebSocket. See
 * portforward.h for the protocol. */
#include "portforward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "log.h"
#include "spdy.h"
#include "websocket.h"

const char *const pf_spdy_protocols[] = {"portforward.k8s.io", NULL};
const char *const pf_websocket_protocols[] = {"v4.channel.k8s.io", "v4.base64.channel.k8s.io", "",
                                              NULL};

#define REQUEST_ID_MAX 64

struct fwd {
    uint32_t id;
    uint16_t port;
    char request[REQUEST_ID_MAX]; /* SPDY pairing key */
    uint32_t data_sid, error_sid; /* SPDY streams, 0 until open */
    double created;
    bool started;   /* on_forward ran */
    bool start_due; /* complete, on_forward waits for the SYN_REPLY */
    bool ended;
};

struct pf_session {
    enum pf_transport t;
    bool base64;
    pf_callbacks cb;
    void *user;
    spdy_session *spdy;
    ws_session *ws;
    struct fwd *fwd; /* SPDY: up to PF_MAX_FORWARDS; WebSocket: one per port */
    size_t nfwd, cap;
    uint32_t next_id;
    bool lost;
    bool user_paused; /* pf_pause_input */
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- negotiation and query ----------------------------------------------------- */

int pf_negotiate_spdy(const char *offered, const char **chosen)
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
            if (len == strlen(pf_spdy_protocols[0]) && memcmp(p, pf_spdy_protocols[0], len) == 0) {
                *chosen = pf_spdy_protocols[0];
                return 0;
            }
        }
        p = end;
    }
    return any ? 403 : 400;
}

/* A port as the kubelet reads one: decimal, 1..65535. */
static int parse_port(const char *s, size_t len)
{
    if (len == 0 || len > 5)
        return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

int pf_parse_ports(pf_query_fn get, void *ud, uint16_t *ports, size_t max, char *err,
                   size_t errlen)
{
    size_t n = 0;
    const char *v;
    for (int i = 0; (v = get(ud, "port", i)); i++) {
        const char *p = v;
        for (;;) {
            const char *end = strchr(p, ',');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            int port = parse_port(p, len);
            if (port < 0) {
                snprintf(err, errlen, "unable to parse \"%s\" as a port", v);
                return -1;
            }
            if (n == max) {
                snprintf(err, errlen, "more than %zu ports", max);
                return -1;
            }
            ports[n++] = (uint16_t)port;
            if (!end)
                break;
            p = end + 1;
        }
    }
    if (n == 0) {
        snprintf(err, errlen, "query parameter \"port\" is required");
        return -1;
    }
    return (int)n;
}

/* ---- forwards -------------------------------------------------------------------- */

static struct fwd *find(pf_session *pf, uint32_t id)
{
    for (size_t i = 0; i < pf->nfwd; i++)
        if (pf->fwd[i].id == id)
            return &pf->fwd[i];
    return NULL;
}

static struct fwd *find_stream(pf_session *pf, uint32_t sid)
{
    for (size_t i = 0; i < pf->nfwd; i++)
        if (pf->fwd[i].data_sid == sid || pf->fwd[i].error_sid == sid)
            return &pf->fwd[i];
    return NULL;
}

static struct fwd *add(pf_session *pf)
{
    if (pf->nfwd == pf->cap) {
        size_t cap = pf->cap ? pf->cap * 2 : 4;
        struct fwd *p = realloc(pf->fwd, cap * sizeof *p);
        if (!p)
            return NULL;
        pf->fwd = p;
        pf->cap = cap;
    }
    struct fwd *f = &pf->fwd[pf->nfwd++];
    memset(f, 0, sizeof *f);
    f->id = ++pf->next_id;
    f->created = now();
    return f;
}

static void drop(pf_session *pf, struct fwd *f)
{
    *f = pf->fwd[--pf->nfwd];
}

/* The client dropped a forward: tell the user (if it started) and forget. */
static void cancel(pf_session *pf, struct fwd *f)
{
    uint32_t id = f->id;
    bool started = f->started && !f->ended;
    drop(pf, f);
    if (started)
        pf->cb.on_cancel(pf->user, id);
}

/* ---- SPDY -------------------------------------------------------------------------- */

static int spdy_on_stream(void *user, uint32_t sid, const spdy_headers *h)
{
    pf_session *pf = user;
    const char *type = spdy_header_get(h, "streamtype");
    const char *port_s = spdy_header_get(h, "port");
    const char *request = spdy_header_get(h, "requestid");
    int port = port_s ? parse_port(port_s, strlen(port_s)) : -1;
    bool is_data = type && strcmp(type, "data") == 0;
    if (port < 0 || !type || (!is_data && strcmp(type, "error") != 0)) {
        vk_debug("port-forward: refusing stream", "stream=%u type=\"%s\" port=\"%s\"", sid,
                 type ? type : "", port_s ? port_s : "");
        return SPDY_REFUSED_STREAM;
    }
    char made[16];
    if (!request || !*request) {
        /* Clients before requestID open error then data with consecutive
         * ids: the kubelet pairs them by the error stream's id. */
        snprintf(made, sizeof made, "%u", is_data ? sid - 2 : sid);
        request = made;
    }
    if (strlen(request) >= REQUEST_ID_MAX)
        return SPDY_REFUSED_STREAM;

    struct fwd *f = NULL;
    for (size_t i = 0; i < pf->nfwd; i++)
        if (!pf->fwd[i].started && !pf->fwd[i].start_due &&
            strcmp(pf->fwd[i].request, request) == 0)
            f = &pf->fwd[i];
    if (!f) {
        if (pf->nfwd >= PF_MAX_FORWARDS || !(f = add(pf)))
            return SPDY_REFUSED_STREAM;
        snprintf(f->request, sizeof f->request, "%s", request);
        f->port = (uint16_t)port;
    }
    uint32_t *slot = is_data ? &f->data_sid : &f->error_sid;
    if (*slot)
        return SPDY_PROTOCOL_ERROR; /* the pair has this one already */
    *slot = sid;
    if (is_data)
        f->port = (uint16_t)port; /* the kubelet forwards the data stream's port */
    if (f->data_sid && f->error_sid) {
        /* on_forward waits for the SYN_REPLY (pf_feed); input stops here
         * meanwhile, so data right behind this frame finds it started. */
        f->start_due = true;
        spdy_pause_input(pf->spdy, true);
    }
    return 0;
}

static void spdy_on_data(void *user, uint32_t sid, const uint8_t *data, size_t len)
{
    pf_session *pf = user;
    struct fwd *f = find_stream(pf, sid);
    if (!f || sid != f->data_sid || f->ended)
        return;
    if (!f->started) {
        vk_debug("port-forward: data before the pair is complete", "stream=%u", sid);
        return;
    }
    pf->cb.on_data(pf->user, f->id, data, len);
}

static void spdy_on_fin(void *user, uint32_t sid)
{
    pf_session *pf = user;
    struct fwd *f = find_stream(pf, sid);
    if (f && sid == f->data_sid && f->started && !f->ended)
        pf->cb.on_close_write(pf->user, f->id);
}

static void spdy_on_reset(void *user, uint32_t sid, uint32_t status)
{
    pf_session *pf = user;
    struct fwd *f = find_stream(pf, sid);
    vk_debug("port-forward: stream reset", "stream=%u status=%u", sid, status);
    if (!f)
        return;
    /* Whichever of the two went, the forward cannot go on. */
    uint32_t other = sid == f->data_sid ? f->error_sid : f->data_sid;
    if (other)
        spdy_rst(pf->spdy, other, SPDY_CANCEL);
    cancel(pf, f);
}

static const spdy_callbacks spdy_cbs = {
    .on_stream = spdy_on_stream,
    .on_data = spdy_on_data,
    .on_fin = spdy_on_fin,
    .on_reset = spdy_on_reset,
};

/* ---- WebSocket ---------------------------------------------------------------------- */

static void cancel_all(pf_session *pf)
{
    while (pf->nfwd)
        cancel(pf, &pf->fwd[pf->nfwd - 1]);
}

static void ws_on_message(void *user, bool text, const uint8_t *data, size_t len)
{
    (void)text;
    pf_session *pf = user;
    if (len == 0)
        return;
    int ch = pf->base64 ? data[0] - '0' : data[0];
    /* Even channels carry data; the odd (error) ones are the server's. */
    if (ch < 0 || ch % 2)
        return;
    struct fwd *f = find(pf, (uint32_t)ch / 2 + 1);
    if (!f || !f->started || f->ended)
        return;
    if (!pf->base64) {
        pf->cb.on_data(pf->user, f->id, data + 1, len - 1);
        return;
    }
    size_t blen = len - 1;
    uint8_t *raw = blen % 4 == 0 ? malloc(blen / 4 * 3 + 1) : NULL;
    int n = raw ? EVP_DecodeBlock(raw, data + 1, (int)blen) : -1;
    if (n >= 0) {
        if (blen && data[len - 1] == '=')
            n -= data[len - 2] == '=' ? 2 : 1;
        pf->cb.on_data(pf->user, f->id, raw, (size_t)n);
    } else {
        vk_debug("port-forward: bad base64 message", "channel=%d", ch);
    }
    free(raw);
}

static void ws_on_close(void *user, uint16_t code)
{
    pf_session *pf = user;
    vk_debug("port-forward: websocket closed by client", "code=%u", code);
    pf->lost = true;
    cancel_all(pf);
}

static const ws_callbacks ws_cbs = {ws_on_message, ws_on_close};

static int ws_channel_send(pf_session *pf, int ch, const void *data, size_t len)
{
    uint8_t head = (uint8_t)ch;
    if (!pf->base64)
        return ws_send(pf->ws, false, &head, 1, data, len);
    head = (uint8_t)('0' + ch);
    uint8_t *b64 = malloc((len + 2) / 3 * 4 + 1);
    if (!b64)
        return -1;
    int n = EVP_EncodeBlock(b64, data, (int)len);
    int r = ws_send(pf->ws, true, &head, 1, b64, (size_t)n);
    free(b64);
    return r;
}

/* ---- life cycle ------------------------------------------------------------------------ */

pf_session *pf_new(enum pf_transport t, const char *protocol, const uint16_t *ports,
                   size_t nports, const pf_callbacks *cb, void *user)
{
    const char *const *known = t == PF_SPDY ? pf_spdy_protocols : pf_websocket_protocols;
    bool ok = false;
    for (const char *const *k = known; *k; k++)
        ok |= strcmp(*k, protocol) == 0;
    if (!ok || (t == PF_WEBSOCKET && (nports == 0 || nports > PF_MAX_PORTS)))
        return NULL;
    pf_session *pf = calloc(1, sizeof *pf);
    if (!pf)
        return NULL;
    pf->t = t;
    pf->base64 = strstr(protocol, "base64") != NULL;
    pf->cb = *cb;
    pf->user = user;
    if (t == PF_SPDY) {
        if (!(pf->spdy = spdy_session_new(&spdy_cbs, pf, NULL)))
            goto fail;
        return pf;
    }
    if (!(pf->ws = ws_session_new(&ws_cbs, pf, NULL)))
        goto fail;
    for (size_t i = 0; i < nports; i++) {
        struct fwd *f = add(pf);
        if (!f)
            goto fail;
        f->port = ports[i];
        /* Each channel opens with its port, little-endian. */
        uint8_t le[2] = {(uint8_t)ports[i], (uint8_t)(ports[i] >> 8)};
        if (ws_channel_send(pf, 2 * (int)i, le, 2) < 0 ||
            ws_channel_send(pf, 2 * (int)i + 1, le, 2) < 0)
            goto fail;
    }
    return pf;
fail:
    pf_free(pf);
    return NULL;
}

void pf_free(pf_session *pf)
{
    if (!pf)
        return;
    spdy_session_free(pf->spdy);
    ws_session_free(pf->ws);
    free(pf->fwd);
    free(pf);
}

static bool transport_closing(const pf_session *pf)
{
    return pf->spdy ? spdy_closing(pf->spdy) : ws_closing(pf->ws);
}

/* Run on_forward for complete pairs, now that their replies are queued.
 * The callback may end forwards, so the scan restarts after each. True when
 * any started (and input held back for it may flow again). */
static bool start_due(pf_session *pf)
{
    bool any = false;
    for (bool again = true; again && !pf->lost;) {
        again = false;
        for (size_t i = 0; i < pf->nfwd; i++) {
            struct fwd *f = &pf->fwd[i];
            if (f->start_due) {
                f->start_due = false;
                f->started = true;
                pf->cb.on_forward(pf->user, f->id, f->port);
                again = any = true;
                break;
            }
        }
    }
    if (any && pf->spdy)
        spdy_pause_input(pf->spdy, pf->user_paused);
    return any;
}

void pf_open(pf_session *pf)
{
    if (pf->ws)
        for (size_t i = 0; i < pf->nfwd; i++)
            pf->fwd[i].start_due = true;
    start_due(pf);
}

size_t pf_feed(pf_session *pf, const uint8_t *data, size_t len)
{
    size_t used = 0;
    do {
        used += pf->spdy ? spdy_feed(pf->spdy, data + used, len - used)
                         : ws_feed(pf->ws, data + used, len - used);
        if (transport_closing(pf)) {
            if (pf->spdy && spdy_error(pf->spdy) && !pf->lost)
                vk_info("port-forward: client broke the SPDY protocol", "error=\"%s\"",
                        spdy_error(pf->spdy));
            pf_connection_lost(pf);
            return used;
        }
    } while (start_due(pf) && used < len);
    return used;
}

bool pf_wants_input(const pf_session *pf)
{
    return pf->spdy ? spdy_wants_input(pf->spdy) : ws_wants_input(pf->ws);
}

size_t pf_output(const pf_session *pf, const uint8_t **data)
{
    return pf->spdy ? spdy_output(pf->spdy, data) : ws_output(pf->ws, data);
}

void pf_output_sent(pf_session *pf, size_t n)
{
    bool resume = pf->spdy ? spdy_output_sent(pf->spdy, n) : ws_output_sent(pf->ws, n);
    if (resume && !pf->lost && pf->cb.on_writable)
        pf->cb.on_writable(pf->user);
}

void pf_connection_lost(pf_session *pf)
{
    if (pf->lost)
        return;
    pf->lost = true;
    cancel_all(pf);
}

bool pf_closing(const pf_session *pf)
{
    return transport_closing(pf);
}

void pf_expire(pf_session *pf, double timeout)
{
    if (!pf->spdy)
        return;
    double t = now();
    for (size_t i = 0; i < pf->nfwd;) {
        struct fwd *f = &pf->fwd[i];
        if (f->started || f->start_due || t - f->created < timeout) {
            i++;
            continue;
        }
        vk_debug("port-forward: pair timed out", "request=\"%s\"", f->request);
        if (f->error_sid) {
            static const char msg[] = "timed out waiting for streams";
            spdy_data(pf->spdy, f->error_sid, msg, sizeof msg - 1, true);
        }
        if (f->data_sid)
            spdy_rst(pf->spdy, f->data_sid, SPDY_CANCEL);
        drop(pf, f);
    }
}

int pf_write(pf_session *pf, uint32_t id, const void *data, size_t len)
{
    struct fwd *f = find(pf, id);
    if (!f || f->ended || pf->lost || transport_closing(pf))
        return -1;
    if (len == 0)
        return 0;
    if (pf->spdy)
        return spdy_data(pf->spdy, f->data_sid, data, len, false);
    return ws_channel_send(pf, 2 * (int)(f->id - 1), data, len);
}

bool pf_writable(const pf_session *pf)
{
    return pf->spdy ? spdy_writable(pf->spdy) : ws_writable(pf->ws);
}

void pf_pause_input(pf_session *pf, bool paused)
{
    pf->user_paused = paused;
    if (pf->spdy)
        spdy_pause_input(pf->spdy, paused);
    else
        ws_pause_input(pf->ws, paused);
}

void pf_end(pf_session *pf, uint32_t id, const char *error)
{
    struct fwd *f = find(pf, id);
    if (!f || f->ended)
        return;
    f->ended = true;
    if (pf->lost || transport_closing(pf))
        return;
    if (pf->spdy) {
        if (error)
            spdy_data(pf->spdy, f->error_sid, error, strlen(error), false);
        spdy_data(pf->spdy, f->data_sid, NULL, 0, true);
        spdy_data(pf->spdy, f->error_sid, NULL, 0, true);
        drop(pf, f);
        return;
    }
    if (error)
        ws_channel_send(pf, 2 * (int)(f->id - 1) + 1, error, strlen(error));
    /* WebSocket forwards keep their slot (it maps to channels); the
     * connection ends with the last of them. */
    for (size_t i = 0; i < pf->nfwd; i++)
        if (!pf->fwd[i].ended)
            return;
    ws_close(pf->ws, WS_CLOSE_NORMAL, NULL);
}
