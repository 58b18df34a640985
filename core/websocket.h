/* websocket.h -- the server side of a WebSocket (RFC 6455) on an upgraded
 * HTTP/1.1 connection: the opening handshake, and a session that frames
 * messages with wslay.
 *
 * Like spdy.h, the session does no I/O: bytes in through ws_feed, whole
 * messages out through a callback, frames out into an output queue the
 * connection drains (ws_output / ws_output_sent). wslay reassembles
 * fragmented messages, unmasks client frames (and fails the connection on
 * unmasked ones), answers PINGs and the closing handshake. One thread.
 *
 * Backpressure: ws_feed stops consuming while the output queue is above its
 * high-water mark or the user paused input, so a client that does not read
 * cannot make the server buffer without bound. A pause takes effect once the
 * bytes wslay already read (at most its 4 KiB buffer) are processed, so a
 * few more messages may arrive after it. Received messages are bounded
 * by max_message (a longer one fails the connection with 1009).
 */
#ifndef VKC_CORE_WEBSOCKET_H
#define VKC_CORE_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Close codes used here (RFC 6455 section 7.4.1). */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_NO_STATUS = 1005,
    WS_CLOSE_ABNORMAL = 1006,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL_ERROR = 1011,
};

/* ---- handshake --------------------------------------------------------- */

/* Whether the request asks for a WebSocket: Upgrade is "websocket" and
 * Connection lists "upgrade" (either may be NULL when absent). */
bool ws_is_upgrade(const char *upgrade, const char *connection);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + the RFC
 * 6455 GUID)), 28 characters. -1 when key is not the base64 of 16 bytes. */
int ws_accept_key(const char *key, char out[29]);

/* The subprotocol to speak: the first of the client's offer (a
 * Sec-WebSocket-Protocol value, comma-separated; NULL when absent) that is
 * in supported (NULL-terminated), as Kubernetes' wsstream chooses. A client
 * that offers nothing gets "" when "" is in supported. NULL when nothing
 * fits. The result points into supported. */
const char *ws_select_protocol(const char *offered, const char *const *supported);

/* Check the handshake headers (key, version; may be NULL when absent) and
 * append the "101 Switching Protocols" response to out, naming protocol
 * unless it is NULL or "". 0, or -1 with *err saying what is wrong (answer
 * 400; for a wrong version, with "Sec-WebSocket-Version: 13"). */
int ws_handshake_response(vk_buf *out, const char *key, const char *version,
                          const char *protocol, const char **err);

/* ---- session ----------------------------------------------------------- */

typedef struct ws_callbacks {
    /* A whole text or binary message. data is valid during the call. */
    void (*on_message)(void *user, bool text, const uint8_t *data, size_t len);
    /* The peer closed (code as received; 1005 when it gave none) or the
     * connection failed (the code we sent, 1006 when none could be sent).
     * Called once; no messages follow. */
    void (*on_close)(void *user, uint16_t code);
} ws_callbacks;

typedef struct ws_limits {
    size_t max_message;    /* received message, reassembled */
    size_t out_high_water; /* output queue size that stops input */
} ws_limits;

/* 4 MiB, 256 KiB. */
void ws_limits_default(ws_limits *lim);

typedef struct ws_session ws_session;

/* lim NULL means the defaults. NULL when memory ran out. */
ws_session *ws_session_new(const ws_callbacks *cb, void *user, const ws_limits *lim);
void ws_session_free(ws_session *ws);

/* Bytes from the connection. Returns how many were consumed: fewer than
 * len while paused or above the high-water mark, all of them once reading
 * is over (closing handshake or failure; they are discarded). Callbacks must
 * not free the session. */
size_t ws_feed(ws_session *ws, const uint8_t *data, size_t len);
bool ws_wants_input(const ws_session *ws);
void ws_pause_input(ws_session *ws, bool paused);

/* As spdy_output / spdy_output_sent / spdy_writable. */
size_t ws_output(const ws_session *ws, const uint8_t **data);
bool ws_output_sent(ws_session *ws, size_t n);
bool ws_writable(const ws_session *ws);

/* Queue one message made of head then body (either may be empty), as text
 * or binary. 0, or -1 once closing or when memory ran out. */
int ws_send(ws_session *ws, bool text, const void *head, size_t head_len, const void *body,
            size_t body_len);
/* Start the closing handshake with code and a short reason (may be NULL). */
void ws_close(ws_session *ws, uint16_t code, const char *reason);
/* True once our close frame is queued or the connection failed: close the
 * connection when ws_output has nothing left. */
bool ws_closing(const ws_session *ws);

#endif
