/* fuzz_reflector.c -- core/kube_reflector.c on top of core/kube_watch.c:
 * paged lists, then watches from the right resourceVersion, relists on 410.
 *
 * Both reach the API server only through kube_client.h; this target links
 * them with a fake client (below) that answers each request, list page or
 * watch, with the next part of the input. Backoff is set to a microsecond
 * so that retries happen within the run.
 *
 * Input: NUL-separated parts, each a control byte and a body. A list
 * request gets status 200, 410 or 500 (control byte % 3) and the body; a
 * watch gets the body in chunks (sizes seeded by the control byte), then
 * ends cleanly, or with a 410 when the control byte's top bit is set. The
 * run ends when the parts do. When the input's last byte is '!', the owner
 * frees the reflector from inside its third callback.
 *
 * Checked: on_replace gets every item of the pages of one list, once the
 * list is complete; on_event never sees a BOOKMARK; a watch starts from the
 * resourceVersion of the list, or of the newest event or bookmark since;
 * a list is paged with the server's continue token; freeing the reflector
 * from inside a callback is safe.
 */
#include <string.h>

#include <ev.h>

#include "fuzz.h"
#include "json.h"
#include "kube_reflector.h"

/* ---- the fake client ------------------------------------------------------ */

struct kube_client {
    struct ev_loop *loop;
    /* The request waiting for its answer: a list page or a watch. */
    bool waiting, is_watch;
    int64_t id;
    kube_done_fn done;
    kube_data_fn on_data;
    void *ud;
    char *path;
};

struct ev_loop *kube_client_loop(const struct kube_client *c)
{
    return c->loop;
}

int kube_path_query(vk_buf *path, const char *key, const char *value)
{
    return vk_buf_printf(path, "%c%s=%s", strchr(path->data, '?') ? '&' : '?', key, value);
}

static int64_t submit(struct kube_client *c, const char *path, bool watch)
{
    FUZZ_CHECK(!c->waiting);
    c->waiting = true;
    c->is_watch = watch;
    c->path = strdup(path);
    FUZZ_CHECK(c->path != NULL);
    return ++c->id;
}

int64_t kube_request(struct kube_client *c, const char *method, const char *path,
                     const char *content_type, const void *body, size_t len, long timeout_ms,
                     kube_done_fn done, void *ud)
{
    (void)content_type;
    (void)body;
    (void)timeout_ms;
    FUZZ_CHECK(strcmp(method, "GET") == 0 && len == 0);
    c->done = done;
    c->ud = ud;
    return submit(c, path, false);
}

int64_t kube_stream(struct kube_client *c, const char *path, long timeout_ms,
                    kube_data_fn on_data, kube_done_fn done, void *ud)
{
    FUZZ_CHECK(strstr(path, "watch=1") && timeout_ms > 0);
    c->done = done;
    c->on_data = on_data;
    c->ud = ud;
    return submit(c, path, true);
}

int kube_request_cancel(struct kube_client *c, int64_t id)
{
    if (!c->waiting || id != c->id)
        return -1;
    c->waiting = false;
    free(c->path);
    c->path = NULL;
    return 0;
}

/* ---- the owner ------------------------------------------------------------- */

typedef struct owner {
    struct kube_reflector *r;
    bool free_in_callback; /* free the reflector at the third callback */
    int callbacks;
    size_t page_items;     /* items in the pages of the list so far */
    char rv[80];           /* where the next watch must start */
    bool rv_known;         /* every body since the list was understood here */
} owner;

static owner own;

static void maybe_free(void)
{
    if (own.free_in_callback && ++own.callbacks == 3) {
        kube_reflector_free(own.r);
        own.r = NULL;
    }
}

static void on_replace(void *ud, yajl_val *items, size_t n)
{
    (void)ud;
    FUZZ_CHECK(n == own.page_items);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(items[i] != NULL);
    if (n) {
        yajl_val mine = items[0];
        items[0] = NULL;
        yajl_tree_free(mine);
    }
    own.page_items = 0;
    own.rv_known = true;
    maybe_free();
}

static void on_event(void *ud, enum kube_event_type type, yajl_val *object)
{
    (void)ud;
    FUZZ_CHECK(type == KUBE_ADDED || type == KUBE_MODIFIED || type == KUBE_DELETED);
    FUZZ_CHECK(object && YAJL_IS_OBJECT(*object));
    maybe_free();
}

/* What a usable resourceVersion in obj moves the watch to. */
static void note_rv(yajl_val obj)
{
    const char *rv = vk_json_str(vk_json_get(obj, "metadata", "resourceVersion", NULL), NULL);
    if (rv && *rv && strlen(rv) <= 64)
        snprintf(own.rv, sizeof own.rv, "%s", rv);
}

/* ---- answering -------------------------------------------------------------- */

static const char *query_value(const char *path, const char *key, char *out, size_t n)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "%s=", key);
    const char *p = strstr(path, pattern);
    if (!p)
        return NULL;
    p += strlen(pattern);
    snprintf(out, n, "%.*s", (int)strcspn(p, "&"), p);
    return out;
}

/* The list page text: count its items and note where a watch would start,
 * as the reflector should. */
static void expect_page(const uint8_t *body, size_t len, long status)
{
    if (status != 200)
        return;
    yajl_val page = vk_json_parse_bytes(body, len, NULL, 0);
    yajl_val items = vk_json_member(page, "items");
    const char *cont = vk_json_str(vk_json_get(page, "metadata", "continue", NULL), "");
    if (page && YAJL_IS_ARRAY(items))
        own.page_items += items->u.array.len;
    if (page && !*cont)
        note_rv(page);
    yajl_tree_free(page);
}

/* The events of a watch body, for the resourceVersion the next watch
 * should start from, as kube_watch.c dispatches them: in order, up to the
 * first that is not ADDED, MODIFIED, DELETED or BOOKMARK with an object.
 * Only bodies of events one per line are understood here; after any other
 * the expectation is dropped until the next list. */
static void expect_events(const uint8_t *body, size_t len)
{
    vk_buf wrapped = VK_BUF_INIT;
    FUZZ_CHECK(vk_buf_puts(&wrapped, "[") == 0);
    for (size_t i = 0; i < len; i++) {
        char ch = (char)body[i];
        FUZZ_CHECK(vk_buf_append(&wrapped, &ch, 1) == 0);
        if (ch == '\n' && i + 1 < len)
            FUZZ_CHECK(vk_buf_puts(&wrapped, ",") == 0);
    }
    FUZZ_CHECK(vk_buf_puts(&wrapped, "]") == 0);
    yajl_val all = vk_json_parse(wrapped.data, wrapped.len, NULL, 0);
    if (!YAJL_IS_ARRAY(all))
        own.rv_known = false;
    for (size_t i = 0; YAJL_IS_ARRAY(all) && i < all->u.array.len; i++) {
        yajl_val ev = all->u.array.values[i];
        const char *type = vk_json_str(vk_json_member(ev, "type"), "");
        yajl_val obj = vk_json_member(ev, "object");
        bool known = !strcmp(type, "ADDED") || !strcmp(type, "MODIFIED") ||
                     !strcmp(type, "DELETED") || !strcmp(type, "BOOKMARK");
        if (!YAJL_IS_OBJECT(obj) || !known)
            break;
        note_rv(obj);
    }
    yajl_tree_free(all);
    vk_buf_free(&wrapped);
}

/* Answer the waiting request with part (control byte, body). */
static void answer(struct kube_client *c, const uint8_t *part, size_t len)
{
    uint8_t ctl = len ? part[0] : 0;
    const uint8_t *body = len ? part + 1 : part;
    size_t blen = len ? len - 1 : 0;
    char *path = c->path;
    c->path = NULL;
    c->waiting = false;
    char value[128];
    if (!c->is_watch) {
        /* After a page with a continue token comes the next page. */
        static const long statuses[] = {200, 410, 500};
        long status = statuses[ctl % 3];
        expect_page(body, blen, status);
        char *text = fuzz_cstr(body, blen);
        struct kube_response resp = {status, text, blen, status == 200 ? NULL : "refused", false};
        c->done(&resp, c->ud);
        free(text);
        free(path);
        return;
    }
    /* A watch starts from the list's or the newest event's version. */
    if (own.rv_known && !strchr(own.rv, '&')) {
        const char *rv = query_value(path, "resourceVersion", value, sizeof value);
        FUZZ_CHECK(rv && strcmp(rv, own.rv) == 0);
    }
    free(path);
    expect_events(body, blen);
    uint32_t seed = ctl | 0x100u;
    int64_t id = c->id;
    bool stopped = false;
    for (size_t at = 0; at < blen && !stopped;) {
        size_t n = fuzz_chunk(&seed, blen - at);
        stopped = c->on_data((const char *)body + at, n, c->ud) < 0;
        at += n;
        /* Freed, or cancelled with the reflector: nothing more. */
        if (c->id != id || (!c->waiting && stopped && !own.r))
            return;
    }
    if (!own.r)
        return;
    struct kube_response resp = {ctl & 0x80 ? 410 : stopped ? 0 : 200, "", 0,
                                 ctl & 0x80 ? "Gone" : stopped ? "stopped by receiver" : NULL,
                                 false};
    c->done(&resp, c->ud);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    struct kube_client c = {.loop = ev_default_loop(0)};
    FUZZ_CHECK(c.loop != NULL);
    memset(&own, 0, sizeof own);
    own.free_in_callback = size && data[size - 1] == '!';
    struct kube_reflector_config cfg = {
        .path = "/api/v1/pods",
        .field_selector = "spec.nodeName=vk",
        .page_size = 2,
        .watch_timeout_s = 300,
        .max_items = 16,
        .backoff_initial_s = 1e-6,
        .backoff_max_s = 1e-6,
        .on_replace = on_replace,
        .on_event = on_event,
    };
    own.r = kube_reflector_start(&c, &cfg);
    FUZZ_CHECK(own.r != NULL);
    const uint8_t *part;
    size_t len;
    for (int rounds = 0; own.r && rounds < 256; rounds++) {
        ev_run(c.loop, EVRUN_NOWAIT);
        if (!c.waiting)
            continue;
        if (!fuzz_part(&in, 0, &part, &len))
            break;
        if (!c.is_watch && own.page_items && strstr(c.path, "continue=") == NULL)
            own.page_items = 0; /* a new list from the start */
        answer(&c, part, len);
    }
    kube_reflector_free(own.r);
    FUZZ_CHECK(!c.waiting);
    /* The loop lives on, with nothing left running: ev_run counts what is. */
    FUZZ_CHECK(ev_run(c.loop, EVRUN_NOWAIT) == 0);
    return 0;
}
