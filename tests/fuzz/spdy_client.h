/* spdy_client.h -- the bytes a SPDY/3.1 client sends, built from a compact
 * description, for the targets that fuzz the server side of SPDY
 * (fuzz_spdy, fuzz_remotecommand, fuzz_portforward).
 *
 * Mutating compressed header blocks at random mostly yields zlib errors, so
 * the description holds header blocks uncompressed and the builder
 * compresses them, through one zlib context with the SPDY dictionary, as a
 * client does. The description is a sequence of operations, each a type
 * byte followed by its arguments:
 *
 *   SYN_STREAM / HEADERS  stream byte, flags byte, then a header block:
 *                         a count byte and that many pairs. A pair is one
 *                         byte picking a name and a value from the
 *                         vocabulary Kubernetes streams use (streamType,
 *                         port, requestID; error, stdin, 8080, ...), or
 *                         0xff then a length-prefixed name and value.
 *                         With flags bit 0x80 the block is instead a length
 *                         byte and that many raw bytes (malformed blocks).
 *   DATA                  stream byte, flags byte, length byte, bytes
 *   RST_STREAM            stream byte, status byte
 *   PING                  id byte
 *   SETTINGS, WINDOW_UPDATE, GOAWAY   a few argument bytes
 *   RAW                   length byte, bytes copied as they are
 *
 * A stream byte b names stream 2b+1 (client streams are odd), or an even
 * stream for b >= 0xf0.
 */
#ifndef VKC_FUZZ_SPDY_CLIENT_H
#define VKC_FUZZ_SPDY_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Append to out the client bytes described by ops[0..len). 0, or -1 when
 * memory or zlib failed. */
int spdy_client_build(const uint8_t *ops, size_t len, vk_buf *out);

#endif
