/* packed.h -- a JSON document kept deflated.
 *
 * The caches hold pods and statuses this way: a 3 KB pod is a ~19 KB yajl
 * tree, and ~0.3 KB packed without its managedFields; a tree is built
 * again only for the call that needs it. Documents are deflated against a
 * preset dictionary of what every pod the API server sends has in common
 * (field names in its order, defaulted values), so a pod costs about what
 * is its own: names, uids, times. Packed documents live in memory only, so
 * the dictionary may change from one build to the next.
 */
#ifndef VKC_CORE_PACKED_H
#define VKC_CORE_PACKED_H

#include <stddef.h>
#include <stdint.h>

#include <yajl/yajl_tree.h>

#include "buf.h"

typedef struct packed_json {
    unsigned char *z;           /* NULL: empty */
    uint32_t zlen, len;         /* deflated and original sizes */
} packed_json;

/* Replace pk's document with json[0..len). 0, or -1 (pk unchanged) when
 * memory ran out. */
int packed_set(packed_json *pk, const char *json, size_t len);
/* Replace pk's document with the tree v, written without
 * metadata.managedFields when v is a Pod: the field manager's bookkeeping,
 * ~40 % of a pod's bytes, which nothing here reads and which the API server
 * keeps as it is when a PUT has none. 0, or -1 (pk unchanged). */
int packed_set_tree(packed_json *pk, yajl_val v);
/* Replace dst's document with a copy of src's (dst is empty when src
 * is). 0, or -1 (dst unchanged) when memory ran out. */
int packed_copy(packed_json *dst, const packed_json *src);
/* Append pk's document to out. 0, or -1 when memory ran out, pk is empty
 * or its bytes do not inflate to its length. */
int packed_get(const packed_json *pk, vk_buf *out);
/* pk's document as a tree (the caller's), NULL when memory ran out or pk
 * is empty. */
yajl_val packed_tree(const packed_json *pk);
/* Wipe (the document may hold secrets) and free; pk is then empty. */
void packed_clear(packed_json *pk);

#endif
