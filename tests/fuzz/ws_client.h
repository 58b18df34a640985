/* ws_client.h -- the bytes a WebSocket client sends, built from a compact
 * description, for the targets that fuzz the server side of WebSocket
 * (fuzz_websocket, fuzz_remotecommand, fuzz_portforward).
 *
 * Clients must mask every frame; random bytes almost never make a valid
 * masked frame, so the description holds frames unmasked and the builder
 * masks them. Each frame is two header bytes and a payload:
 *
 *   op     bits 0-2 pick the opcode (continuation, text, binary, close,
 *          ping, pong, or a reserved one), bit 3 clears FIN; 0xff instead
 *          means raw bytes follow (length byte, bytes), copied as they are
 *   form   bits 6-7 pick the length encoding (7-bit, 16-bit, 64-bit, even
 *          where a shorter one would do); 0x01 leaves the frame unmasked,
 *          0x02 sets RSV1; the other bits vary the masking key
 *   then   a length byte and that many payload bytes
 */
#ifndef VKC_FUZZ_WS_CLIENT_H
#define VKC_FUZZ_WS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Append to out the client frames described by ops[0..len). 0, or -1 when
 * memory ran out. */
int ws_client_build(const uint8_t *ops, size_t len, vk_buf *out);

#endif
