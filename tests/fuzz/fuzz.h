/* fuzz.h -- helpers shared by the libFuzzer targets in tests/fuzz.
 *
 * A target is one LLVMFuzzerTestOneInput. Besides surviving every input
 * under ASan and UBSan, each checks what the code under test promises;
 * FUZZ_CHECK turns a broken promise into an abort, which libFuzzer reports
 * as a crash and saves as a reproducer.
 */
#ifndef VKC_FUZZ_H
#define VKC_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                          \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                       \
            abort();                                                              \
        }                                                                         \
    } while (0)

/* A malloc'ed NUL-terminated copy of data: most parsers take C strings, or
 * need text[len] == '\0'. Bytes after an embedded NUL stay in the copy. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Reading an input from the front: small decisions first, the rest as the
 * payload. Past the end, bytes read as 0. */
typedef struct fuzz_input {
    const uint8_t *data;
    size_t size;
} fuzz_input;

static inline uint8_t fuzz_byte(fuzz_input *in)
{
    if (!in->size)
        return 0;
    in->size--;
    return *in->data++;
}

/* The next part of an input made of parts separated by sep (the last part
 * runs to the end). false when none is left. */
static inline bool fuzz_part(fuzz_input *in, uint8_t sep, const uint8_t **part, size_t *len)
{
    if (!in->data)
        return false;
    const uint8_t *end = in->size ? memchr(in->data, sep, in->size) : NULL;
    *part = in->data;
    if (end) {
        *len = (size_t)(end - in->data);
        in->size -= *len + 1;
        in->data = end + 1;
    } else {
        *len = in->size;
        in->data = NULL;
        in->size = 0;
    }
    return true;
}

/* Chunk sizes for streaming parsers, drawn from a seed so that a run can be
 * repeated exactly: mostly small (1 to 16 bytes) to split tokens, headers
 * and frames at every position, sometimes large. */
static inline size_t fuzz_chunk(uint32_t *state, size_t left)
{
    uint32_t x = *state ? *state : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    size_t n = (x & 7) ? 1 + (x >> 8) % 16 : 1 + (x >> 8) % 4096;
    return n < left ? n : left;
}

/* FNV-1a, to fold what a run observed into a value two runs can compare. */
static inline uint64_t fuzz_hash(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    if (!h)
        h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

#endif
