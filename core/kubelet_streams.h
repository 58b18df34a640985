/* kubelet_streams.h -- serve exec, attach, port-forward and run: the
 * kubelet API's upgrade hook (kubelet_api_set_upgrade).
 *
 * An exec, attach or port-forward request is checked (options, protocol
 * version), answered with 101 and moved off HTTP (http_upgrade). Its bytes
 * then go through a remotecommand or portforward session (SPDY or
 * WebSocket, whichever the client asked for), and each command or forwarded
 * connection runs on the provider through an exec bridge. /run executes a
 * command and answers its output as a plain HTTP response.
 *
 * The connection's output drains into the HTTP server only while it is
 * writable; the session stops taking input when its own queue fills; so a
 * slow client holds at most two bounded buffers before the provider is
 * pushed back. A client that does not open its SPDY streams within 30 s is
 * disconnected. A connection that moves no byte in either direction for
 * the idle timeout (the kubelet's --streaming-connection-idle-timeout,
 * 4 h unless set) is closed and its provider calls cancelled, so a
 * provider that never answers cannot hold a session for ever. /run is a
 * plain request and has no such limit. Loop thread only.
 */
#ifndef VKC_CORE_KUBELET_STREAMS_H
#define VKC_CORE_KUBELET_STREAMS_H

#include "http_server.h"
#include "kubelet_api.h"
#include "metrics.h"
#include "provider_client.h"

struct ev_loop;

typedef struct kubelet_streams kubelet_streams;

kubelet_streams *kubelet_streams_new(struct ev_loop *loop);
/* Close exec, attach and port-forward connections idle this many seconds
 * (0: never); applies to connections upgraded from now on. */
void kubelet_streams_set_idle_timeout(kubelet_streams *ks, double seconds);
/* Count idle closes in m (kubelet_api_stream_idle_timeouts_total); once. */
void kubelet_streams_set_metrics(kubelet_streams *ks, metrics *m);
/* The hook: kubelet_api_set_upgrade(api, kubelet_streams_upgrade, ks). */
void kubelet_streams_upgrade(void *ks, http_request *req, const kubelet_stream_target *t,
                             provider_client *pc);
/* After http_server_free (which ends every connection) and before the loop
 * is destroyed: cancels what still runs on the provider and waits for it. */
void kubelet_streams_free(kubelet_streams *ks);

#endif
