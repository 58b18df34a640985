/* portforward.h -- the Kubernetes port-forward protocol over SPDY or
 * WebSocket, as the kubelet serves it
 * (k8s.io/kubernetes pkg/kubelet/cri/streaming/portforward).
 *
 * SPDY (X-Stream-Protocol-Version: portforward.k8s.io): one connection
 * carries any number of forwarded TCP connections. For each, the client
 * opens a pair of streams with the headers streamType (error, then data),
 * port and requestID; the pair shares the requestID (clients older than
 * that header get one made from the stream ids, as the kubelet does). Once
 * both are open the forward starts; the data stream carries the bytes both
 * ways, the client's FIN on it ends its sending, and the error stream
 * carries a message if forwarding fails. The server closes both when the
 * forward ends. A pair not completed in time is dropped with an error.
 *
 * WebSocket (subprotocol v4.channel.k8s.io, v4.base64.channel.k8s.io or
 * none): the ports come from the request's "port" query parameters, and
 * port i gets channels 2i (data, both ways) and 2i+1 (error, server to
 * client). The server opens each of them with the port in two
 * little-endian bytes. All forwards start at once; the connection ends when
 * the last one does.
 *
 * Like remotecommand.h: the session owns the transport session, does no
 * I/O, and runs on the loop thread only. A forward is named by the id the
 * session gives it in on_forward.
 */
#ifndef VKC_CORE_PORTFORWARD_H
#define VKC_CORE_PORTFORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PF_MAX_PORTS 64 /* ports of one WebSocket request */
#define PF_MAX_FORWARDS 128 /* forwards (pairs) open at once on SPDY */
#define PF_STREAM_TIMEOUT 30.0 /* seconds for a SPDY pair to complete */

/* The protocol names. */
extern const char *const pf_spdy_protocols[];
extern const char *const pf_websocket_protocols[];

/* As rc_negotiate_spdy: 0 with *chosen, 400 missing, 403 nothing fits. */
int pf_negotiate_spdy(const char *offered, const char **chosen);

/* Parse the values of the "port" query parameter (each a port or a
 * comma-separated list; get gives the n-th value or NULL) into ports.
 * Returns how many, or -1 with a message for a 400 in err. */
typedef const char *(*pf_query_fn)(void *ud, const char *key, int n);
int pf_parse_ports(pf_query_fn get, void *ud, uint16_t *ports, size_t max, char *err,
                   size_t errlen);

enum pf_transport { PF_SPDY, PF_WEBSOCKET };

/* Callbacks run from inside pf_* calls and must not free the session. */
typedef struct pf_callbacks {
    /* Forward id to port has started: connect to it. */
    void (*on_forward)(void *user, uint32_t id, uint16_t port);
    /* Bytes from the client for forward id. */
    void (*on_data)(void *user, uint32_t id, const uint8_t *data, size_t len);
    /* The client will send nothing more on forward id. */
    void (*on_close_write)(void *user, uint32_t id);
    /* The client dropped forward id (or the whole connection): stop it.
     * The id is dead when this returns; pf_end is not needed. */
    void (*on_cancel)(void *user, uint32_t id);
    /* The output queue drained after pf_writable said no. */
    void (*on_writable)(void *user);
} pf_callbacks;

typedef struct pf_session pf_session;

/* protocol: as negotiated. ports: the WebSocket request's ports (ignored
 * for SPDY). NULL for an unknown protocol, no ports on a WebSocket, or when
 * memory ran out. */
pf_session *pf_new(enum pf_transport t, const char *protocol, const uint16_t *ports,
                   size_t nports, const pf_callbacks *cb, void *user);
void pf_free(pf_session *pf);
/* The connection is upgraded: a WebSocket session starts its forwards. */
void pf_open(pf_session *pf);

/* Connection side, as in remotecommand.h. */
size_t pf_feed(pf_session *pf, const uint8_t *data, size_t len);
bool pf_wants_input(const pf_session *pf);
size_t pf_output(const pf_session *pf, const uint8_t **data);
void pf_output_sent(pf_session *pf, size_t n);
/* The connection closed: every forward is cancelled. */
void pf_connection_lost(pf_session *pf);
bool pf_closing(const pf_session *pf);
/* SPDY: drop pairs older than timeout seconds that never completed. Call
 * now and then (every few seconds). */
void pf_expire(pf_session *pf, double timeout);

/* User side. Bytes from the pod for forward id: 0, or -1 when the forward
 * or the connection is gone. */
int pf_write(pf_session *pf, uint32_t id, const void *data, size_t len);
bool pf_writable(const pf_session *pf);
void pf_pause_input(pf_session *pf, bool paused);
/* Forward id is over: error (NULL for none) goes to the client on its
 * error stream, then both of its streams close. */
void pf_end(pf_session *pf, uint32_t id, const char *error);

#endif
