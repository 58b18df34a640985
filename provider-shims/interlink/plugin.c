/* plugin.c -- HTTP to the interLink plugin, with libcurl's easy API.
 *
 * A call runs on the thread that makes it (an SDK callback thread, or the
 * poller) with an easy handle of its own, so a slow plugin answer holds up
 * only the call that waits for it. Every call is bounded: connection and
 * whole-call timeouts, or for log streams a timeout on the answer's first
 * byte and optionally on silences; answers kept in memory have a size cap.
 * A progress callback, run by curl at least once a second, lets the caller
 * abandon a call (the core cancelled it, or the shim is stopping).
 */
#include "interlink.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "json.h"

/* Of an error answer, this much is kept and the rest dropped. */
#define ERROR_BODY_MAX 4096
/* Of that, this much reaches users in a status message. */
#define DETAIL_MAX 300

struct transfer {
    CURL *curl;
    vk_buf *body;        /* a 2xx answer, buffered (plugin_call) */
    il_sink_fn sink;     /* ... or streamed (plugin_stream) */
    void *ud;
    vk_buf error_body;   /* any other answer */
    bool too_big;
    int sink_rc;
    il_cancel_fn cancel;
    void *cancel_ud;
    bool cancelled;
    bool idle_timeout;
    bool got_answer;     /* the status line arrived */
    bool timed_out;      /* by our own clock, not curl's */
    int64_t started_ms, last_rx_ms;
};

static bool success(long code)
{
    return code >= 200 && code < 300;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct transfer *t = arg;
    (void)data;
    t->got_answer = true;
    t->last_rx_ms = il_now_ms();
    return size * n;
}

static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
    struct transfer *t = arg;
    size_t len = size * n;
    long code = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
    if (!success(code)) {
        size_t room = ERROR_BODY_MAX - t->error_body.len;
        if (vk_buf_append(&t->error_body, data, len < room ? len : room) < 0)
            return 0;
        return len;
    }
    if (t->sink != NULL) {
        int rc = t->sink(t->ud, data, len);
        /* The sink may block for as long as the reader is slow; that time
         * is not the plugin's silence. */
        t->last_rx_ms = il_now_ms();
        if (rc != 0) {
            t->sink_rc = rc;
            return 0;
        }
        return len;
    }
    if (t->body->len + len > IL_RESPONSE_MAX) {
        t->too_big = true;
        return 0;
    }
    return vk_buf_append(t->body, data, len) < 0 ? 0 : len;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    struct transfer *t = arg;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    if (t->cancel != NULL && t->cancel(t->cancel_ud)) {
        t->cancelled = true;
        return 1;
    }
    int64_t now = il_now_ms();
    if ((!t->got_answer && now - t->started_ms > config.timeout_ms) ||
        (t->idle_timeout && now - t->last_rx_ms > config.timeout_ms)) {
        t->timed_out = true;
        return 1;
    }
    return 0;
}

void plugin_excerpt(const vk_buf *body, char *out, size_t n)
{
    vk_buf text = VK_BUF_INIT;
    yajl_val v = body->len ? vk_json_parse(body->data, body->len, NULL, 0) : NULL;
    static const char *const keys[] = {"detail", "message", "error"};
    for (size_t i = 0; v != NULL && i < sizeof keys / sizeof keys[0] && !text.len; i++) {
        yajl_val d = vk_json_member(v, keys[i]);
        if (YAJL_IS_STRING(d)) {
            vk_buf_puts(&text, YAJL_GET_STRING(d));
        } else if (d != NULL) {
            vk_json_writer w;
            vk_jw_begin(&w, &text);
            vk_jw_tree(&w, d);
            vk_jw_end(&w);
        }
    }
    yajl_tree_free(v);
    const vk_buf *src = text.len ? &text : body;

    size_t o = 0;
    bool in_tag = false, space = false;
    for (size_t i = 0; i < src->len && o + 4 < n && o < DETAIL_MAX; i++) {
        unsigned char c = (unsigned char)src->data[i];
        if (src == body && c == '<') {
            in_tag = true;
            space = o > 0;
        } else if (in_tag) {
            in_tag = c != '>';
        } else if (isspace(c) || c < 0x20 || c == 0x7f) {
            space = o > 0;
        } else {
            if (space)
                out[o++] = ' ';
            space = false;
            out[o++] = (char)c;
        }
    }
    if (o >= DETAIL_MAX)
        o += (size_t)snprintf(out + o, n - o, "...");
    out[o < n ? o : n - 1] = '\0';
    vk_buf_free(&text);
}

static int http_code_to_grpc(long code)
{
    switch (code) {
    case 404: return VK_NOT_FOUND;
    case 400: case 422: return VK_INVALID_ARGUMENT;
    case 401: case 403: return VK_PERMISSION_DENIED;
    case 408: case 429: return VK_UNAVAILABLE;
    default: return code >= 500 ? VK_UNAVAILABLE : VK_UNKNOWN;
    }
}

/* Curl failures before the request could have reached the plugin. */
static bool never_sent(CURLcode rc)
{
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
           rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_URL_MALFORMAT ||
           rc == CURLE_UNSUPPORTED_PROTOCOL;
}

static const char *where(void)
{
    return config.plugin_socket ? config.plugin_socket : config.plugin_url;
}

static int run(const char *method, const char *path, const char *body, size_t len,
               struct transfer *t, vk_status *st, bool *unknown)
{
    char url[2048], errbuf[CURL_ERROR_SIZE] = "";
    if (unknown != NULL)
        *unknown = false;
    if (snprintf(url, sizeof url, "%s%s", config.plugin_url, path) >= (int)sizeof url) {
        vk_status_set(st, VK_INVALID_ARGUMENT, "the interLink plugin URL is too long");
        return st->code;
    }
    t->curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = headers ? curl_slist_append(headers, "Expect:") : NULL;
    if (t->curl == NULL || h2 == NULL) {
        curl_slist_free_all(headers);
        if (t->curl != NULL)
            curl_easy_cleanup(t->curl);
        vk_status_set(st, VK_RESOURCE_EXHAUSTED, "out of memory calling the interLink plugin");
        return st->code;
    }
    headers = h2;

    CURL *c = t->curl;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (config.plugin_socket != NULL)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, config.plugin_socket);
    /* interLink sends its bodies with GET as well (/status, /getLogs). */
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "vkc-provider-interlink/" IL_VERSION);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads */
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)config.timeout_ms);
    if (t->sink == NULL)
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)config.timeout_ms);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);

    t->started_ms = t->last_rx_ms = il_now_ms();
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    t->curl = NULL;
    if (t->sink_rc == 1 || (rc == CURLE_OK && success(code)))
        return VK_OK;
    if (unknown != NULL)
        *unknown = success(code) || (code == 0 && !never_sent(rc));
    if (t->sink_rc < 0) {
        vk_status_set(st, VK_CANCELLED, "the reader went away");
    } else if (t->cancelled) {
        vk_status_set(st, VK_CANCELLED, "%s %s to the interLink plugin was cancelled",
                      method, path);
    } else if (t->timed_out || rc == CURLE_OPERATION_TIMEDOUT) {
        vk_status_set(st, VK_DEADLINE_EXCEEDED,
                      "the interLink plugin at %s did not answer %s %s within %lld ms",
                      where(), method, path, (long long)config.timeout_ms);
    } else if (t->too_big) {
        vk_status_set(st, VK_INTERNAL,
                      "the interLink plugin's answer to %s %s is larger than %u MiB",
                      method, path, IL_RESPONSE_MAX >> 20);
    } else if (rc != CURLE_OK) {
        vk_status_set(st, VK_UNAVAILABLE, "cannot reach the interLink plugin at %s: %s",
                      where(), errbuf[0] ? errbuf : curl_easy_strerror(rc));
    } else {
        char detail[DETAIL_MAX + 8];
        plugin_excerpt(&t->error_body, detail, sizeof detail);
        vk_status_set(st, http_code_to_grpc(code),
                      "the interLink plugin answered %s %s with HTTP %ld%s%s", method,
                      path, code, detail[0] ? ": " : "", detail);
    }
    return st->code;
}

int plugin_call(const char *method, const char *path, const char *body, size_t len,
                vk_buf *resp, vk_status *st, il_cancel_fn cancel, void *ud, bool *unknown)
{
    struct transfer t = {.body = resp, .cancel = cancel, .cancel_ud = ud};
    int code = run(method, path, body, len, &t, st, unknown);
    vk_buf_free(&t.error_body);
    return code;
}

int plugin_stream(const char *method, const char *path, const char *body, size_t len,
                  bool idle_timeout, il_sink_fn sink, il_cancel_fn cancel, void *ud,
                  vk_status *st)
{
    struct transfer t = {.sink = sink, .ud = ud, .cancel = cancel, .cancel_ud = ud,
                         .idle_timeout = idle_timeout};
    int code = run(method, path, body, len, &t, st, NULL);
    vk_buf_free(&t.error_body);
    return code;
}
