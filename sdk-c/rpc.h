/* rpc.h -- gRPC calls on the gRPC C core, protobuf-c messages.
 *
 * Every call owns a completion queue of its own (pluck type), and every
 * function that starts an operation waits for that operation before it
 * returns. So no tag ever outlives the stack frame that created it, which is
 * where hand-driven gRPC usually goes wrong. Concurrency comes from threads:
 * a bidirectional stream may have one thread in vk_call_send and another in
 * vk_call_recv at the same time; vk_call_cancel may be called from any
 * thread. Code living on a libev loop reaches these functions through
 * work.h (a bounded thread pool that reports back to the loop).
 *
 * Flow control: vk_call_send / vk_scall_send return only when gRPC has taken
 * the message, which it does only within the peer's HTTP/2 window. A peer
 * that stops reading makes the sender block: nothing queues without bound.
 */
#ifndef VKC_RPC_H
#define VKC_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

/* gRPC status codes, as on the wire. */
enum {
    VK_OK = 0, VK_CANCELLED = 1, VK_UNKNOWN = 2, VK_INVALID_ARGUMENT = 3,
    VK_DEADLINE_EXCEEDED = 4, VK_NOT_FOUND = 5, VK_ALREADY_EXISTS = 6,
    VK_PERMISSION_DENIED = 7, VK_RESOURCE_EXHAUSTED = 8,
    VK_FAILED_PRECONDITION = 9, VK_ABORTED = 10, VK_OUT_OF_RANGE = 11,
    VK_UNIMPLEMENTED = 12, VK_INTERNAL = 13, VK_UNAVAILABLE = 14,
    VK_DATA_LOSS = 15, VK_UNAUTHENTICATED = 16
};

/* Default and maximum message size in both directions. */
#define VK_RPC_MAX_MESSAGE (16u << 20)

/* The outcome of a call. `message` is owned (free with vk_status_clear). */
typedef struct vk_status {
    int code;
    char *message;
} vk_status;

void vk_status_clear(vk_status *st);
/* Set code and a printf-formatted message, replacing what was there. */
void vk_status_set(vk_status *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *vk_status_code_name(int code); /* "NOT_FOUND" */

/* Call once per process before anything else here; vk_rpc_shutdown at exit
 * after every channel, call and server is gone. */
void vk_rpc_init(void);
void vk_rpc_shutdown(void);

/* ---- client ---------------------------------------------------------- */

typedef struct vk_channel vk_channel;

/* target: "unix:/path", "unix:///path" or "host:port". max_message 0 means
 * VK_RPC_MAX_MESSAGE. Never NULL for a syntactically valid target;
 * connection happens lazily. Plaintext: the socket's file mode (or
 * loopback) is the access control. */
vk_channel *vk_channel_open(const char *target, size_t max_message);
void vk_channel_close(vk_channel *ch);
/* Wait until the channel is connected, up to timeout_ms. true when ready. */
bool vk_channel_wait_ready(vk_channel *ch, int timeout_ms);

/* One unary call. method is the full path "/pkg.Service/Method".
 * timeout_ms > 0 sets the deadline. Returns the status code (st filled when
 * non-NULL); *resp is set only on VK_OK and must be freed with
 * protobuf_c_message_free_unpacked. A response that does not decode ends
 * as VK_INTERNAL "malformed response". */
int vk_unary(vk_channel *ch, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, int timeout_ms,
             ProtobufCMessage **resp, vk_status *st);

typedef struct vk_call vk_call;

/* Start a streaming call (server, client or bidirectional). timeout_ms <= 0:
 * no deadline. NULL only when the call cannot be created at all. */
vk_call *vk_call_start(vk_channel *ch, const char *method, int timeout_ms);
/* Send one message; blocks under flow control. 0 on success, -1 when the
 * call is over (cancelled, failed, or the message is above the size limit;
 * vk_call_finish then tells why). */
int vk_call_send(vk_call *c, const ProtobufCMessage *msg);
/* Half-close: no more messages from this side. 0 or -1. */
int vk_call_close_send(vk_call *c);
/* Receive one message: 1 with *out set (free it with
 * protobuf_c_message_free_unpacked), 0 at the end of the stream or when the
 * call failed (vk_call_finish tells which), -1 when the message did not
 * decode (the call is then cancelled with VK_INTERNAL). */
int vk_call_recv(vk_call *c, const ProtobufCMessageDescriptor *desc,
                 ProtobufCMessage **out);
/* Cancel from any thread; blocked send/recv return promptly. */
void vk_call_cancel(vk_call *c);
/* Wait for the final status; returns its code. Call once, after the last
 * send/recv returned. It waits for the server to end the call: to give up
 * on a stream that is still running, vk_call_cancel first. */
int vk_call_finish(vk_call *c, vk_status *st);
/* Release. Cancels the call first if it has not finished. */
void vk_call_free(vk_call *c);

/* ---- server ---------------------------------------------------------- */

typedef struct vk_server vk_server;
typedef struct vk_scall vk_scall;

/* A handler runs on a worker thread of its own and owns the call until it
 * returns. It must end the call with vk_scall_reply or vk_scall_finish;
 * if it does not, the server finishes it with VK_INTERNAL. */
typedef void (*vk_handler)(vk_scall *call, void *ud);

/* addr: "unix:/path" or "host:port". max_workers bounds concurrent calls;
 * a call beyond it is answered VK_RESOURCE_EXHAUSTED at once. */
vk_server *vk_server_new(const char *addr, size_t max_message, int max_workers);
/* Register a handler for "/pkg.Service/Method" before vk_server_start.
 * Unregistered methods are answered VK_UNIMPLEMENTED. */
void vk_server_handle(vk_server *s, const char *method, vk_handler fn, void *ud);
/* Bind and start serving. 0, or -1 when the address cannot be bound (a TCP
 * port in use fails: no SO_REUSEPORT sharing). A unix socket is made mode
 * 0600 between bind and start; keep it in a private directory as well. */
int vk_server_start(vk_server *s);
/* Stop accepting, give running calls grace_ms to end, cancel the rest, and
 * wait for every handler to return. Does nothing on a server that is not
 * running (or that another thread is already stopping). */
void vk_server_stop(vk_server *s, int grace_ms);
/* Free a stopped (or never started) server. */
void vk_server_free(vk_server *s);

const char *vk_scall_method(const vk_scall *c);
/* Milliseconds until the client's deadline, or -1 when it set none. */
long vk_scall_deadline_left_ms(const vk_scall *c);
/* Receive one client message: 1 with *out set, 0 when the client
 * half-closed or went away, -1 when it did not decode (the call then ends
 * with VK_INVALID_ARGUMENT). */
int vk_scall_recv(vk_scall *c, const ProtobufCMessageDescriptor *desc,
                  ProtobufCMessage **out);
/* Send one message; blocks under flow control. 0, or -1 when the client is
 * gone or the message is above the size limit (the call then ends with
 * VK_RESOURCE_EXHAUSTED). */
int vk_scall_send(vk_scall *c, const ProtobufCMessage *msg);
/* Unary reply: message and OK status in one batch. 0 or -1. */
int vk_scall_reply(vk_scall *c, const ProtobufCMessage *msg);
/* End the call with a status (message may be NULL). 0 or -1. */
int vk_scall_finish(vk_scall *c, int code, const char *message);
/* True once the client cancelled, its deadline passed or it disconnected.
 * Waits up to wait_ms for that to happen (0: just look). A handler with
 * nothing to read uses it as an interruptible sleep. Any thread of the
 * handler may call it, also while another waits in it. */
bool vk_scall_cancelled(vk_scall *c, int wait_ms);

#endif
