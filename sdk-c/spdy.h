/* spdy.h -- SPDY/3.1 as Kubernetes streaming uses it, either side.
 *
 * kubectl exec/attach/port-forward upgrade their HTTP connection to SPDY
 * and speak it through moby/spdystream (k8s.io/apimachinery
 * httpstream/spdy); so do the kubelet's streaming server and the one
 * embedded in container runtimes (containerd's CRI). The core serves
 * kubectl with a server session; vkc-provider-cri is a client of the
 * runtime's server. Both share this one implementation.
 *
 * This is a transport-independent session: bytes in through spdy_feed,
 * events out through callbacks, frames out into an output queue that the
 * connection drains (spdy_output / spdy_output_sent). Nothing here does I/O
 * or blocks; a session belongs to one thread.
 *
 * What spdystream does, and so what this session does:
 *  - The client opens every stream (odd ids, increasing); the server answers
 *    each SYN_STREAM with a SYN_REPLY carrying no headers, or refuses it
 *    with RST_STREAM. A server session never opens streams; a client
 *    session opens them (spdy_open) and refuses any the server opens.
 *  - Header blocks are zlib-compressed with the SPDY/3 dictionary, one
 *    compression context per direction for the whole connection, each block
 *    ending in a sync flush. Every block is inflated, even on a stream that
 *    is refused, or the context would lose step with the peer's.
 *  - Flow control: spdystream never sends WINDOW_UPDATE, ignores the ones it
 *    receives, and writes DATA frames without looking at any window. A peer
 *    that honoured SPDY windows would stall after 64 KiB, so windows are not
 *    enforced in either direction; WINDOW_UPDATE and SETTINGS are validated
 *    and otherwise ignored. Backpressure is the TCP connection's, as with
 *    spdystream: spdy_feed stops consuming while the output queue is above
 *    its high-water mark or the user paused input, and writers look at
 *    spdy_writable before queueing more.
 *  - PINGs the peer starts (odd ids from a client, even from a server) are
 *    echoed.
 *  - Closing a direction is an empty DATA frame with FIN (for stdin, the
 *    remote command's EOF).
 *
 * Limits: a control frame may carry at most max_control bytes and a header
 * block may inflate to at most max_header_block bytes (a zlib bomb stops
 * there); a DATA frame longer than max_data is refused with RST_STREAM
 * FRAME_TOO_LARGE and its payload skipped without being buffered. DATA
 * payloads are handed over as they arrive, so a frame is never buffered
 * whole. Session errors send GOAWAY and make spdy_closing true: the
 * connection should flush the output queue and close.
 */
#ifndef VKC_SDK_SPDY_H
#define VKC_SDK_SPDY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RST_STREAM status codes (SPDY/3 section 2.6.3). */
enum spdy_rst_status {
    SPDY_PROTOCOL_ERROR = 1,
    SPDY_INVALID_STREAM = 2,
    SPDY_REFUSED_STREAM = 3,
    SPDY_UNSUPPORTED_VERSION = 4,
    SPDY_CANCEL = 5,
    SPDY_INTERNAL_ERROR = 6,
    SPDY_FLOW_CONTROL_ERROR = 7,
    SPDY_STREAM_IN_USE = 8,
    SPDY_STREAM_ALREADY_CLOSED = 9,
    SPDY_FRAME_TOO_LARGE = 11,
};

/* GOAWAY status codes. */
enum spdy_goaway_status {
    SPDY_GOAWAY_OK = 0,
    SPDY_GOAWAY_PROTOCOL_ERROR = 1,
    SPDY_GOAWAY_INTERNAL_ERROR = 2,
};

/* Control frame types. */
enum spdy_frame_type {
    SPDY_SYN_STREAM = 1,
    SPDY_SYN_REPLY = 2,
    SPDY_RST_STREAM = 3,
    SPDY_SETTINGS = 4,
    SPDY_PING = 6,
    SPDY_GOAWAY = 7,
    SPDY_HEADERS = 8,
    SPDY_WINDOW_UPDATE = 9,
};

#define SPDY_VERSION 3
#define SPDY_FLAG_FIN 0x01
#define SPDY_FLAG_UNIDIRECTIONAL 0x02

/* The SPDY/3 header compression dictionary (spec section 2.6.10.1). */
extern const unsigned char spdy_dictionary[];
extern const size_t spdy_dictionary_len;

/* One name/value pair of a header block. The name is lowercase; several
 * values are NUL-separated in value, so as a C string value is the first. */
typedef struct spdy_nv {
    const char *name;
    const char *value;
    size_t value_len;
} spdy_nv;

typedef struct spdy_headers {
    const spdy_nv *nv;
    size_t count;
} spdy_headers;

/* The first value of header name (lowercase), or NULL. */
const char *spdy_header_get(const spdy_headers *h, const char *name);

typedef struct spdy_callbacks {
    /* Server sessions: the client opened stream id. Return 0 to accept it (the session
     * replies with SYN_REPLY when the callback returns, so it must not send
     * on id yet), or an spdy_rst_status to refuse it. Headers are valid
     * during the call only. A SYN_STREAM with FIN is followed by on_fin. */
    int (*on_stream)(void *user, uint32_t id, const spdy_headers *h);
    /* Payload bytes of an accepted stream, in pieces of any size. */
    void (*on_data)(void *user, uint32_t id, const uint8_t *data, size_t len);
    /* The peer closed its direction of the stream. */
    void (*on_fin)(void *user, uint32_t id);
    /* The stream is gone: the peer reset it (status is its RST_STREAM
     * status), or the session did for a frame the stream could not take
     * (data after FIN, an oversize DATA frame). No further callbacks for
     * id. */
    void (*on_reset)(void *user, uint32_t id, uint32_t status);
    /* The peer sent GOAWAY: no new streams will come (to a client: it
     * takes no more). May be NULL. */
    void (*on_goaway)(void *user, uint32_t status);
} spdy_callbacks;

typedef struct spdy_limits {
    size_t max_control;       /* control frame payload */
    size_t max_header_block;  /* inflated header block */
    size_t max_data;          /* DATA frame payload accepted */
    size_t max_streams;       /* open streams at once */
    size_t out_high_water;    /* output queue size that stops input */
} spdy_limits;

/* 64 KiB, 64 KiB, 16 MiB - 1 (the wire maximum), 256, 256 KiB. */
void spdy_limits_default(spdy_limits *lim);

typedef struct spdy_session spdy_session;

/* A server session. lim NULL means the defaults. NULL when memory ran
 * out. */
spdy_session *spdy_session_new(const spdy_callbacks *cb, void *user, const spdy_limits *lim);
/* A client session: on_stream is never called and may be NULL. */
spdy_session *spdy_client_new(const spdy_callbacks *cb, void *user, const spdy_limits *lim);
void spdy_session_free(spdy_session *s);

/* Parse bytes from the connection and run callbacks. Returns how many
 * bytes were consumed: fewer than len when input is paused or the output
 * queue is above the high-water mark (offer the rest again later), all of
 * them once the session is closing (they are discarded). */
size_t spdy_feed(spdy_session *s, const uint8_t *data, size_t len);
/* Whether spdy_feed would consume anything now. */
bool spdy_wants_input(const spdy_session *s);
/* Stop or resume consuming input (the user's consumer is full). */
void spdy_pause_input(spdy_session *s, bool paused);

/* Bytes waiting to be written: *data points at them until the next call
 * into the session. */
size_t spdy_output(const spdy_session *s, const uint8_t **data);
/* n of them were written. Returns true when this brought the queue from at
 * or above the high-water mark to below half of it: writers may resume. */
bool spdy_output_sent(spdy_session *s, size_t n);
/* Whether the output queue is below the high-water mark. */
bool spdy_writable(const spdy_session *s);

/* Send len bytes on stream id, then FIN when fin. 0, or -1 when the stream
 * is not open for sending (unknown, reset, already finished) or memory ran
 * out. The bytes are queued whatever the high-water mark says; callers that
 * care check spdy_writable first. */
int spdy_data(spdy_session *s, uint32_t id, const void *data, size_t len, bool fin);
/* Client sessions: open a stream with the header block nv (value_len 0
 * means strlen(value)), finished in our direction at once when fin. Data
 * may follow at once: spdystream takes it before its SYN_REPLY is sent.
 * The stream's id, or 0 when it cannot be opened (a server session, the
 * session closing or told to go away, max_streams open, no memory). */
uint32_t spdy_open(spdy_session *s, const spdy_nv *nv, size_t count, bool fin);
/* Reset stream id; no callbacks follow for it. */
void spdy_rst(spdy_session *s, uint32_t id, enum spdy_rst_status status);
/* Send GOAWAY and stop taking input: spdy_closing becomes true. */
void spdy_goaway(spdy_session *s, enum spdy_goaway_status status);

/* True once GOAWAY was sent (by spdy_goaway or a session error): close the
 * connection when spdy_output has nothing left. */
bool spdy_closing(const spdy_session *s);
/* Why the session failed, for logs; NULL when it did not. */
const char *spdy_error(const spdy_session *s);

/* ---- raw frames --------------------------------------------------------
 * Each appends one frame to the output queue without touching the stream
 * table, so tests and tools can make a server session write what a client
 * (a right or a wrong one) would; its header compression context is then
 * the client's. For nv, value_len 0 means strlen(value). 0, or -1 when
 * memory ran out. */
int spdy_write_syn_stream(spdy_session *s, uint32_t id, uint8_t flags, const spdy_nv *nv,
                          size_t count);
int spdy_write_ping(spdy_session *s, uint32_t id);

#endif
