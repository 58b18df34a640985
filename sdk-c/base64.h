/* base64.h -- decode the base64 of Kubernetes []byte fields (Secret data,
 * kubeconfig *-data, a docker config's "auth"): Go's base64.StdEncoding,
 * padding required, CR and LF skipped as Go's decoder does. */
#ifndef VKC_BASE64_H
#define VKC_BASE64_H

#include <stddef.h>

#include "buf.h"

/* Append the bytes that in[0..len) encodes to out (NUL-terminated as
 * always). 0; -1 for malformed input, -2 when memory ran out; out is
 * unchanged on failure. */
int vk_base64_decode(const char *in, size_t len, vk_buf *out);

#endif
