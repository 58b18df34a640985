/* exec_bridge.h -- connect a client stream (exec, attach or one forwarded
 * port) to the provider's bidirectional stream (ExecInContainer,
 * AttachToContainer, PortForward through provider_client.h).
 *
 * The provider's calls block, so each bridge has two threads: a reader that
 * starts the call and then waits in pc_stream_next, and a sender that
 * passes the client's input (stdin or port data, resizes, end of input) to
 * the provider. Everything on the client's side runs on the loop:
 *
 *   provider -> reader thread -> bounded output queue -> loop -> sink.write
 *   client -> loop -> bounded input queue -> sender thread -> provider
 *
 * Backpressure both ways: the reader waits while the output queue is full,
 * and the queue drains only while the sink is writable (so a client that
 * does not read stops the reader, and gRPC flow control stops the
 * provider); when the input queue fills, the bridge asks the sink to stop
 * reading the client until the sender caught up.
 *
 * A client that goes away (exec_bridge_cancel) cancels the provider's call.
 * A provider that fails or dies mid-stream ends the client's stream with
 * its error message. The sink gets exactly one finish, after all output,
 * unless the bridge was cancelled.
 */
#ifndef VKC_CORE_EXEC_BRIDGE_H
#define VKC_CORE_EXEC_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "provider_client.h"

struct ev_loop;

/* Output queued between the reader and the loop; input queued between the
 * loop and the sender. One provider message may exceed the first. */
#define EXEC_BRIDGE_QUEUE (256u * 1024)

enum exec_bridge_kind { EXEC_BRIDGE_EXEC, EXEC_BRIDGE_ATTACH, EXEC_BRIDGE_PORT_FORWARD };

/* What to start. Strings are copied. */
typedef struct exec_bridge_request {
    enum exec_bridge_kind kind;
    const char *ns, *pod, *uid, *container; /* container: not for port-forward */
    char *const *command;                   /* exec only */
    size_t ncommand;
    bool stdin, stdout, stderr, tty;
    uint16_t port;                          /* port-forward only */
} exec_bridge_request;

/* The client's side, called on the loop. which is 1 (stdout, or a port's
 * data) or 2 (stderr). */
typedef struct exec_bridge_sink {
    void (*write)(void *ctx, int which, const void *data, size_t len);
    bool (*writable)(void *ctx);
    /* The end: exit_code, or error non-NULL (the command could not run,
     * the provider failed; for a port-forward, why forwarding failed). */
    void (*finish)(void *ctx, int exit_code, const char *error);
    void (*pause_input)(void *ctx, bool paused);
    /* Both threads are over and the sink will hear nothing more: the owner
     * may free the bridge now (also from inside this call). */
    void (*done)(void *ctx);
} exec_bridge_sink;

typedef struct exec_bridge exec_bridge;

/* Start the provider call. pc is referenced for the bridge's lifetime.
 * NULL when memory or threads ran out. */
exec_bridge *exec_bridge_start(struct ev_loop *loop, provider_client *pc,
                               const exec_bridge_request *req, const exec_bridge_sink *sink,
                               void *ctx);

/* Client events, on the loop. For a port-forward, stdin is the port's
 * data and close_stdin the client's end of sending; resize is exec's. */
void exec_bridge_stdin(exec_bridge *b, const void *data, size_t len);
void exec_bridge_resize(exec_bridge *b, uint16_t width, uint16_t height);
void exec_bridge_close_stdin(exec_bridge *b);
/* The sink can take output again. */
void exec_bridge_writable(exec_bridge *b);
/* The client is gone: cancel the call; nothing but done follows. */
void exec_bridge_cancel(exec_bridge *b);

/* Cancel if still running, wait for both threads, free. */
void exec_bridge_free(exec_bridge *b);

#endif
