/* json.h -- small helpers over yajl shared by the core and the SDK: parsing
 * with this project's limits, typed lookups in a parsed tree, re-emitting a
 * tree, and writing JSON into a vk_buf.
 *
 * Lookups never fail on a wrong shape: asking a string for a member, or an
 * object for its integer value, gives NULL or the default, so callers walk
 * untrusted documents without checking every step.
 */
#ifndef VKC_JSON_H
#define VKC_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "buf.h"

/* Deepest nesting vk_json_parse accepts. yajl_tree frees recursively, and
 * yajl_gen stops at 128 levels: staying below it means every parsed tree can
 * be re-emitted, even spliced one level down into another document. */
#define VK_JSON_MAX_DEPTH 100

/* Parse text[0..len); text[len] must be '\0' (C strings and vk_buf are).
 * Refuses NUL bytes inside, comments, and nesting deeper than
 * VK_JSON_MAX_DEPTH. NULL on failure with a one-line message in err
 * ("parse error at byte 12: invalid object key (must be a string)").
 * Free the tree with yajl_tree_free. */
yajl_val vk_json_parse(const char *text, size_t len, char *err, size_t errlen);
/* The same for bytes that are not NUL-terminated (protobuf bytes fields):
 * parses a temporary copy. */
yajl_val vk_json_parse_bytes(const void *data, size_t len, char *err, size_t errlen);

/* Member key of object v; NULL when v is not an object or has no such
 * member. With duplicate keys the last wins, as in Go's encoding/json. */
yajl_val vk_json_member(yajl_val v, const char *key);
/* Follow a NULL-terminated path of member names:
 * vk_json_get(pod, "metadata", "name", NULL). */
yajl_val vk_json_get(yajl_val v, ...) __attribute__((sentinel));

/* v as a string, integer or boolean; def when v is NULL or of another type
 * (a fraction, or an integer outside int64, is not an integer). */
const char *vk_json_str(yajl_val v, const char *def);
int64_t vk_json_int(yajl_val v, int64_t def);
bool vk_json_bool(yajl_val v, bool def);

/* Emit tree v through g: strings re-escaped, numbers exactly as written. */
yajl_gen_status vk_json_gen_tree(yajl_gen g, yajl_val v);

/* Append s[0..len) to out as a quoted JSON string literal. Bytes that are
 * not UTF-8 become U+FFFD, as Go's encoding/json does, so the result is
 * always valid JSON. 0, or -1 when memory ran out (out unchanged). */
int vk_json_quote(vk_buf *out, const char *s, size_t len);

/* A JSON writer: a yajl_gen appending to a vk_buf, with a sticky error so
 * a document is written as straight-line calls and checked once, at
 * vk_jw_end. Keep it at one address while in use (yajl holds a pointer). */
typedef struct vk_json_writer {
    yajl_gen g;      /* for direct yajl_gen calls; report them via vk_jw_check */
    vk_buf *out;
    size_t start;    /* out->len at vk_jw_begin */
    bool failed;
} vk_json_writer;

/* 0, or -1 when memory ran out (then vk_jw_end is still safe to call). */
int vk_jw_begin(vk_json_writer *w, vk_buf *out);
/* Free the generator. 0 when everything was written; otherwise -1 and out
 * is cut back to its length at vk_jw_begin. */
int vk_jw_end(vk_json_writer *w);
void vk_jw_check(vk_json_writer *w, yajl_gen_status st);

void vk_jw_map_open(vk_json_writer *w);
void vk_jw_map_close(vk_json_writer *w);
void vk_jw_array_open(vk_json_writer *w);
void vk_jw_array_close(vk_json_writer *w);
/* A string (also how keys are written); null for NULL. Invalid UTF-8
 * becomes U+FFFD, as in vk_json_quote. */
void vk_jw_str(vk_json_writer *w, const char *s);
void vk_jw_int(vk_json_writer *w, int64_t v);
void vk_jw_bool(vk_json_writer *w, bool v);
void vk_jw_tree(vk_json_writer *w, yajl_val v);
/* "key": value members. vk_jw_kv_str writes nothing when s is NULL, which
 * is how optional (omitempty) fields are left out. */
void vk_jw_kv_str(vk_json_writer *w, const char *key, const char *s);
void vk_jw_kv_int(vk_json_writer *w, const char *key, int64_t v);
void vk_jw_kv_bool(vk_json_writer *w, const char *key, bool v);

#endif
