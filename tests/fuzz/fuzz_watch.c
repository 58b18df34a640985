/* fuzz_watch.c -- the watch stream parser of core/kube_watch.c.
 *
 * kube_watch reaches the network only through kube_client.h, so this target
 * links kube_watch.c with a fake client (below): kube_stream records the
 * watch's data and done callbacks, and the target plays the API server's
 * response body through them.
 *
 * Input: one byte seeding the chunk sizes, one byte of options (the event
 * size limit; whether a callback takes the object, frees the watch in the
 * middle, or frees it from on_end), then the body.
 *
 * Each body is played twice: in one piece, and cut into chunks at random
 * places. The events delivered (type and object) and the way the watch
 * ended (kind and code) must be the same both times: where TCP happens to cut the stream
 * must not matter. Every event must be one of the four types with an
 * object, and on_end must run exactly once unless the watch was freed
 * first.
 */
#include <string.h>

#include "fuzz.h"
#include "json.h"
#include "kube_watch.h"

/* ---- the fake client ------------------------------------------------------- */

struct kube_client {
    kube_data_fn on_data;
    kube_done_fn on_done;
    void *ud;
    int64_t id;
    bool cancelled;
};

struct ev_loop *kube_client_loop(const struct kube_client *c)
{
    (void)c;
    return NULL;
}

int kube_path_query(vk_buf *path, const char *key, const char *value)
{
    return vk_buf_printf(path, "%c%s=%s", strchr(path->data, '?') ? '&' : '?', key, value);
}

int64_t kube_stream(struct kube_client *c, const char *path, long timeout_ms,
                    kube_data_fn on_data, kube_done_fn done, void *ud)
{
    FUZZ_CHECK(strstr(path, "watch=1") && timeout_ms > 0);
    c->on_data = on_data;
    c->on_done = done;
    c->ud = ud;
    c->id = 1;
    c->cancelled = false;
    return c->id;
}

int kube_request_cancel(struct kube_client *c, int64_t id)
{
    FUZZ_CHECK(id == c->id && !c->cancelled);
    c->cancelled = true;
    return 0;
}

/* ---- one run ----------------------------------------------------------------- */

enum {
    OPT_TAKE = 1,         /* on_event takes every other object */
    OPT_FREE_MIDWAY = 2,  /* on_event frees the watch at the third event */
    OPT_FREE_IN_END = 4,  /* on_end frees the watch (else the owner does after) */
    OPT_SMALL_EVENTS = 8, /* max_event from the high bits: 16 to 976 bytes */
};

typedef struct run {
    struct kube_client client;
    struct kube_watch *w;
    unsigned opts;
    uint64_t log;   /* hash of everything observed */
    int events, ends;
    bool freed;
} run;

static void on_event(void *ud, enum kube_event_type type, yajl_val *object)
{
    run *r = ud;
    FUZZ_CHECK(type == KUBE_ADDED || type == KUBE_MODIFIED || type == KUBE_DELETED ||
               type == KUBE_BOOKMARK);
    FUZZ_CHECK(object && YAJL_IS_OBJECT(*object));
    FUZZ_CHECK(r->ends == 0);
    r->events++;
    vk_buf text = VK_BUF_INIT;
    vk_json_writer jw;
    FUZZ_CHECK(vk_jw_begin(&jw, &text) == 0);
    vk_jw_tree(&jw, *object);
    FUZZ_CHECK(vk_jw_end(&jw) == 0);
    const char *name = kube_event_type_name(type);
    r->log = fuzz_hash(r->log, name, strlen(name));
    r->log = fuzz_hash(r->log, text.data, text.len);
    vk_buf_free(&text);
    if ((r->opts & OPT_TAKE) && r->events % 2) {
        yajl_val mine = *object;
        *object = NULL;
        yajl_tree_free(mine);
    }
    if ((r->opts & OPT_FREE_MIDWAY) && r->events == 3) {
        kube_watch_free(r->w);
        r->freed = true;
    }
}

static void on_end(void *ud, const struct kube_watch_end *end)
{
    run *r = ud;
    FUZZ_CHECK(!r->freed);
    r->ends++;
    FUZZ_CHECK(r->ends == 1);
    FUZZ_CHECK(end->kind == KUBE_WATCH_CLOSED || end->kind == KUBE_WATCH_GONE ||
               end->kind == KUBE_WATCH_FAILED);
    FUZZ_CHECK(end->message && !strchr(end->message, '\n'));
    /* Not the message: when the input is both malformed and too long, which
     * of the two is noticed first depends on where the chunks end. */
    r->log = fuzz_hash(r->log, &end->kind, sizeof end->kind);
    r->log = fuzz_hash(r->log, &end->code, sizeof end->code);
    if (r->opts & OPT_FREE_IN_END) {
        kube_watch_free(r->w);
        r->freed = true;
    }
}

static uint64_t play(const uint8_t *body, size_t len, unsigned opts, size_t max_event,
                     uint32_t seed)
{
    run r = {.opts = opts};
    struct kube_watch_opts o = {
        .path = "/api/v1/pods",
        .resource_version = "42",
        .field_selector = "spec.nodeName=vk",
        .timeout_s = 300,
        .max_event = max_event,
        .on_event = on_event,
        .on_end = on_end,
        .ud = &r,
    };
    r.w = kube_watch_start(&r.client, &o);
    FUZZ_CHECK(r.w != NULL);

    bool stopped = false;
    size_t at = 0;
    while (at < len && !stopped) {
        size_t n = seed ? fuzz_chunk(&seed, len - at) : len - at;
        stopped = r.client.on_data((const char *)body + at, n, r.client.ud) < 0;
        at += n;
    }
    if (r.freed) {
        /* Freed inside on_event: the request was cancelled with it. */
        FUZZ_CHECK(stopped && r.client.cancelled && r.ends == 0);
    } else {
        /* What kube_client reports after a receiver stopped the body, or
         * after the server ended it. */
        struct kube_response resp = {.status = stopped ? 0 : 200, .body = "", .len = 0,
                                     .error = stopped ? "stopped by receiver" : NULL};
        r.client.on_done(&resp, r.client.ud);
        FUZZ_CHECK(r.ends == 1);
        if (!r.freed)
            kube_watch_free(r.w);
    }
    return fuzz_hash(r.log, &r.events, sizeof r.events);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint32_t seed = fuzz_byte(&in) | 0x100u;
    unsigned opts = fuzz_byte(&in);
    size_t max_event = (opts & OPT_SMALL_EVENTS) ? 16 + (opts >> 4) * 64 : 0;
    uint64_t whole = play(in.data, in.size, opts, max_event, 0);
    uint64_t chunked = play(in.data, in.size, opts, max_event, seed);
    FUZZ_CHECK(whole == chunked);
    return 0;
}
