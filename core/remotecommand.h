/* remotecommand.h -- the Kubernetes remote command protocol (exec and
 * attach) over SPDY or WebSocket, as the kubelet serves it
 * (k8s.io/kubernetes pkg/kubelet/cri/streaming/remotecommand).
 *
 * SPDY: the version comes from X-Stream-Protocol-Version (v4, v3, v2 or
 * v1 channel.k8s.io, the client's first choice that is known). The client
 * opens one stream per channel, named by its streamType header: error,
 * stdin, stdout, stderr, resize (v3 and later, with a tty). The command
 * starts once every stream the options call for is open. Closing stdin is a
 * FIN on the stdin stream. v1 is served as v2 (the kubelet's v1 quirks,
 * from before Kubernetes 1.4, are not reproduced).
 *
 * WebSocket: the version is the subprotocol: v5.channel.k8s.io,
 * v4.channel.k8s.io, v4.base64.channel.k8s.io, channel.k8s.io,
 * base64.channel.k8s.io, or none (binary, as channel.k8s.io). Each message
 * starts with its channel: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize;
 * the base64 variants send text messages with the channel as an ASCII digit
 * and the data base64-encoded. v5 adds the close signal: the message
 * {255, channel} closes that channel (stdin's end of input). The server
 * opens with an empty message on the first writable channel, as the kubelet
 * does, so clients know the connection is up.
 *
 * Resize messages are JSON objects {"Width":W,"Height":H} (both from 0 to
 * 65535), possibly several in a row or split across frames. Anything else
 * on the resize channel ends the session: on_gone (the command is
 * cancelled), a BadRequest Failure (its message before v4) on the error
 * channel, and the connection closes.
 *
 * At the end the error channel carries the result: from v4 on a
 * metav1.Status document (Success; Failure with reason NonZeroExitCode and
 * an ExitCode cause, which kubectl turns into its own exit code; or an
 * InternalError), before v4 only the message of a failure. Then every
 * channel is closed and the connection ends (GOAWAY / close 1000).
 *
 * The session owns its transport session (spdy.h or websocket.h) and does
 * no I/O: the connection feeds it bytes and drains its output, the user
 * (the exec bridge) gets events and writes output. Loop thread only.
 */
#ifndef VKC_CORE_REMOTECOMMAND_H
#define VKC_CORE_REMOTECOMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* ---- request options ----------------------------------------------------- */

#define RC_MAX_COMMAND 1024 /* arguments of one exec */

typedef struct rc_options {
    bool stdin, stdout, stderr, tty;
    char **command;   /* owned, NULL-terminated; empty for attach */
    size_t ncommand;
    char *container;  /* the "container" query parameter, or NULL */
} rc_options;

/* Gives the n-th (from 0) value of query parameter key, or NULL. */
typedef const char *(*rc_query_fn)(void *ud, const char *key, int n);

/* Read command (repeated), input, output, error (as the API server sends
 * them; stdin, stdout and stderr also do), tty ("1" or "true") and
 * container from a query. With a tty, stderr is dropped (the kubelet's
 * rule: a terminal has one output). 0, or -1 with a message for a 400 in
 * err: no stream asked for, exec without a command, too many arguments. */
int rc_parse_options(rc_options *o, rc_query_fn get, void *ud, bool exec, char *err,
                     size_t errlen);
void rc_options_clear(rc_options *o);

/* ---- negotiation ---------------------------------------------------------- */

/* X-Stream-Protocol-Version values this server speaks, best first. */
extern const char *const rc_spdy_protocols[];
/* WebSocket subprotocols this server speaks (for ws_select_protocol),
 * NULL-terminated; includes "" for a client that names none. */
extern const char *const rc_websocket_protocols[];

/* The version for an X-Stream-Protocol-Version request header (its values
 * comma-separated; NULL when absent): the client's first choice among
 * rc_spdy_protocols. 0 with *chosen set; 400 when the header is missing;
 * 403 when nothing fits (answer with X-Accepted-Stream-Protocol-Versions
 * listing rc_spdy_protocols). */
int rc_negotiate_spdy(const char *offered, const char **chosen);

/* ---- the result document -------------------------------------------------- */

/* What the error channel of a v4 (or later) session carries when the
 * command ended with exit_code, or could not run (error non-NULL). */
int rc_status_json(vk_buf *out, int exit_code, const char *error);

/* ---- session --------------------------------------------------------------- */

enum rc_transport { RC_SPDY, RC_WEBSOCKET };
enum rc_output { RC_STDOUT = 1, RC_STDERR = 2 };

/* Callbacks run from inside rc_* calls and must not free the session. */
typedef struct rc_callbacks {
    /* Every stream is there: start the command. */
    void (*on_start)(void *user);
    void (*on_stdin)(void *user, const uint8_t *data, size_t len);
    /* The client closed stdin. */
    void (*on_stdin_close)(void *user);
    void (*on_resize)(void *user, uint16_t width, uint16_t height);
    /* The output queue drained after rc_writable said no. */
    void (*on_writable)(void *user);
    /* The client went away, or broke the protocol, before rc_finish:
     * cancel the command. Nothing more is called after it. */
    void (*on_gone)(void *user);
} rc_callbacks;

typedef struct rc_session rc_session;

/* protocol: the version negotiated for SPDY (rc_negotiate_spdy), the
 * subprotocol for WebSocket. o is copied (its strings are not needed
 * later). NULL for an unknown protocol or when memory ran out. */
rc_session *rc_new(enum rc_transport t, const char *protocol, const rc_options *o,
                   const rc_callbacks *cb, void *user);
void rc_free(rc_session *rc);
/* The connection is upgraded and the session's first output (if any) is on
 * its way: a WebSocket session starts the command now; a SPDY one starts it
 * from rc_feed once the client opened its streams. */
void rc_open(rc_session *rc);

/* Connection side, as spdy_feed / spdy_output / spdy_output_sent. */
size_t rc_feed(rc_session *rc, const uint8_t *data, size_t len);
bool rc_wants_input(const rc_session *rc);
size_t rc_output(const rc_session *rc, const uint8_t **data);
void rc_output_sent(rc_session *rc, size_t n);
/* The connection closed or failed: on_gone unless finished. */
void rc_connection_lost(rc_session *rc);
/* The session has said all it will: close the connection once rc_output
 * is empty. */
bool rc_closing(const rc_session *rc);
/* Whether on_start has run. */
bool rc_started(const rc_session *rc);

/* User side. Output of the command: queued whatever the mark says, dropped
 * when the client did not ask for that stream. 0, or -1 when the session
 * cannot send any more. */
int rc_write(rc_session *rc, enum rc_output which, const void *data, size_t len);
/* Below the high-water mark; when not, on_writable follows. */
bool rc_writable(const rc_session *rc);
/* Stop reading the client (stdin consumer full), or resume. */
void rc_pause_input(rc_session *rc, bool paused);
/* The command ended with exit_code, or could not run (error non-NULL):
 * send the result, close every stream and end the connection. */
void rc_finish(rc_session *rc, int exit_code, const char *error);
/* Give up on the client (streams never came): end the connection now. */
void rc_abort(rc_session *rc, const char *why);

#endif
