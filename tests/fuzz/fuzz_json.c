/* fuzz_json.c -- sdk-c/json.h: vk_json_parse and what is built on it.
 *
 * Every Kubernetes object and provider JSON field goes through
 * vk_json_parse. Checked: a parsed tree re-emitted with vk_json_gen_tree
 * parses again and re-emits byte for byte the same (so splicing a tree into
 * another document never produces invalid JSON); vk_json_parse_bytes
 * agrees with vk_json_parse; the typed lookups take any shape; and
 * vk_json_quote and vk_jw_str turn any bytes into one valid JSON string.
 */
#include <string.h>

#include "fuzz.h"
#include "json.h"

/* Emit v alone as a document. */
static vk_buf emit(yajl_val v)
{
    vk_buf out = VK_BUF_INIT;
    vk_json_writer w;
    FUZZ_CHECK(vk_jw_begin(&w, &out) == 0);
    vk_jw_tree(&w, v);
    FUZZ_CHECK(vk_jw_end(&w) == 0);
    return out;
}

/* Walk the tree with the lenient lookups, as callers walk untrusted
 * documents; count what was seen so the calls are not optimised away. */
static size_t walk(yajl_val v, int depth)
{
    size_t seen = 1;
    seen += vk_json_str(v, NULL) != NULL;
    seen += vk_json_int(v, 0) != 0;
    seen += vk_json_bool(v, false);
    seen += vk_json_member(v, "metadata") != NULL;
    seen += vk_json_get(v, "metadata", "name", NULL) != NULL;
    if (YAJL_IS_OBJECT(v)) {
        for (size_t i = 0; i < v->u.object.len; i++) {
            FUZZ_CHECK(v->u.object.keys[i] != NULL);
            /* With duplicate keys the last one wins. */
            yajl_val found = vk_json_member(v, v->u.object.keys[i]);
            FUZZ_CHECK(found != NULL || v->u.object.values[i] == NULL);
            seen += walk(v->u.object.values[i], depth + 1);
        }
    } else if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; i < v->u.array.len; i++)
            seen += walk(v->u.array.values[i], depth + 1);
    }
    FUZZ_CHECK(depth <= VK_JSON_MAX_DEPTH + 1);
    return seen;
}

static void check_string_doc(const char *doc, size_t len, const uint8_t *raw, size_t raw_len,
                             bool exact)
{
    char err[160];
    yajl_val v = vk_json_parse(doc, len, err, sizeof err);
    FUZZ_CHECK(v != NULL);
    FUZZ_CHECK(YAJL_IS_STRING(v));
    if (exact)
        FUZZ_CHECK(strlen(v->u.string) == raw_len && memcmp(v->u.string, raw, raw_len) == 0);
    yajl_tree_free(v);
}

/* Whether data is valid UTF-8 without NUL bytes: such text survives
 * quoting and parsing unchanged. */
static bool plain_utf8(const uint8_t *data, size_t size)
{
    vk_buf q = VK_BUF_INIT;
    FUZZ_CHECK(vk_json_quote(&q, (const char *)data, size) == 0);
    bool plain = memchr(data, 0, size) == NULL && strstr(q.data, "\\ufffd") == NULL;
    vk_buf_free(&q);
    return plain;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    char err[160] = "";
    yajl_val v = vk_json_parse(text, size, err, sizeof err);
    yajl_val b = vk_json_parse_bytes(data, size, NULL, 0);
    FUZZ_CHECK((v == NULL) == (b == NULL));
    yajl_tree_free(b);
    if (!v) {
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(strchr(err, '\n') == NULL);
    } else {
        walk(v, 0);
        vk_buf once = emit(v);
        char err2[160];
        yajl_val again = vk_json_parse(once.data, once.len, err2, sizeof err2);
        if (!again)
            fprintf(stderr, "re-emitted tree does not parse (%s): %s\n", err2, once.data);
        FUZZ_CHECK(again != NULL);
        vk_buf twice = emit(again);
        FUZZ_CHECK(once.len == twice.len && memcmp(once.data, twice.data, once.len) == 0);
        vk_buf_free(&twice);
        yajl_tree_free(again);
        vk_buf_free(&once);
        yajl_tree_free(v);
    }

    /* Any bytes quoted are one JSON string; valid UTF-8 comes back as is. */
    vk_buf q = VK_BUF_INIT;
    FUZZ_CHECK(vk_json_quote(&q, (const char *)data, size) == 0);
    FUZZ_CHECK(q.len >= 2 && q.data[0] == '"' && q.data[q.len - 1] == '"');
    check_string_doc(q.data, q.len, data, size, plain_utf8(data, size));
    vk_buf_free(&q);

    /* The writer's strings: invalid UTF-8 becomes U+FFFD, never bad JSON. */
    vk_buf w_out = VK_BUF_INIT;
    vk_json_writer w;
    FUZZ_CHECK(vk_jw_begin(&w, &w_out) == 0);
    vk_jw_str(&w, text);
    FUZZ_CHECK(vk_jw_end(&w) == 0);
    size_t prefix = strlen(text);
    check_string_doc(w_out.data, w_out.len, data, prefix, plain_utf8(data, prefix));
    vk_buf_free(&w_out);

    free(text);
    return 0;
}
