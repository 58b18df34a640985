/* provider_client.h -- the core's side of the Provider service.
 *
 * One blocking function per RPC of proto/provider.proto. Each returns the
 * gRPC status code and fills st (may be NULL) with code and message; the
 * message of a provider error is the provider's, meant for users. Unary
 * calls carry a deadline (the client's default unless stated). Call them
 * from worker threads (work.h), never from the event loop.
 *
 * Optional RPCs are checked against the capabilities the handshake
 * declared: one the provider did not declare is answered UNIMPLEMENTED
 * locally, without a round trip, as the contract promises providers.
 *
 * A client is reference counted: the supervisor holds one reference per
 * provider incarnation, and a module that keeps using the client after its
 * "provider up" notification takes its own (pc_ref) and drops it when its
 * last call returned. Streams hold a reference too. After the provider went
 * down every call fails promptly (UNAVAILABLE) or hangs until its deadline
 * when the provider hung; streams must be cancelled by their owner.
 */
#ifndef VKC_CORE_PROVIDER_CLIENT_H
#define VKC_CORE_PROVIDER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "metrics.h"
#include "provider.pb-c.h"
#include "rpc.h"

/* Optional RPCs, as bits of a capability set. */
enum pc_cap {
    PC_CAP_WATCH_POD_STATUS = 1u << 0,
    PC_CAP_WATCH_NODE = 1u << 1,
    PC_CAP_GET_CONTAINER_LOGS = 1u << 2,
    PC_CAP_EXEC = 1u << 3,
    PC_CAP_ATTACH = 1u << 4,
    PC_CAP_PORT_FORWARD = 1u << 5,
    PC_CAP_GET_STATS_SUMMARY = 1u << 6,
    PC_CAP_GET_METRICS_RESOURCE = 1u << 7,
};

/* Comma-separated names of caps ("" for none) into b. */
int pc_caps_format(unsigned caps, vk_buf *b);

typedef struct provider_client provider_client;

/* What the handshake told. Strings are owned; pc_info_clear frees them. */
typedef struct pc_info {
    unsigned protocol_version;
    char *name;
    char *version;
    unsigned caps;
} pc_info;

void pc_info_clear(pc_info *info);

/* target "unix:/path". unary_timeout_ms is the default deadline of unary
 * calls. errors (may be NULL) counts failed calls by method. */
provider_client *pc_new(const char *target, int unary_timeout_ms, metric *errors);
provider_client *pc_ref(provider_client *pc);
void pc_unref(provider_client *pc);
/* Wait until connected, up to timeout_ms. */
bool pc_wait_ready(provider_client *pc, int timeout_ms);

/* Declare and learn versions and capabilities; the capabilities then
 * guard the optional calls. Done before the client is shared. */
int pc_handshake(provider_client *pc, const char *node_name, const char *core_target,
                 int timeout_ms, pc_info *info, vk_status *st);
int pc_ping(provider_client *pc, int timeout_ms, vk_status *st);
/* VK_OK when the provider declared cap, else VK_UNIMPLEMENTED with a
 * message naming the RPC. */
int pc_require(provider_client *pc, enum pc_cap cap, vk_status *st);

/* ---- pods: JSON in, JSON out --------------------------------------- */

int pc_create_pod(provider_client *pc, const char *pod_json, size_t len, vk_status *st);
int pc_update_pod(provider_client *pc, const char *pod_json, size_t len, vk_status *st);
int pc_delete_pod(provider_client *pc, const char *pod_json, size_t len, vk_status *st);
/* The pod / PodStatus JSON is appended to out. uid may be NULL. */
int pc_get_pod(provider_client *pc, const char *ns, const char *name, const char *uid,
               vk_buf *out, vk_status *st);
int pc_get_pod_status(provider_client *pc, const char *ns, const char *name,
                      const char *uid, vk_buf *out, vk_status *st);
/* *out on VK_OK; free with protobuf_c_message_free_unpacked. */
int pc_get_pods(provider_client *pc, Vkc__Provider__V1__GetPodsResponse **out,
                vk_status *st);

/* ---- node and stats ------------------------------------------------ */

int pc_get_node(provider_client *pc, Vkc__Provider__V1__Node **out, vk_status *st);
int pc_get_stats_summary(provider_client *pc, vk_buf *out, vk_status *st);
int pc_get_metrics_resource(provider_client *pc, vk_buf *out, vk_status *st);

/* ---- streams ---------------------------------------------------------
 *
 * A stream call returns VK_OK with *out set once the call started; errors
 * of the provider (NOT_FOUND, ...) then end the stream and pc_stream_finish
 * tells them. Streams have no deadline: the owner cancels. One thread may
 * send while another receives. */

typedef struct pc_stream pc_stream;

/* Yields PodStatusEvent. */
int pc_watch_pod_status(provider_client *pc, pc_stream **out, vk_status *st);
/* Yields Node. */
int pc_watch_node(provider_client *pc, pc_stream **out, vk_status *st);
/* Yields LogChunk. */
int pc_get_container_logs(provider_client *pc,
                          const Vkc__Provider__V1__GetContainerLogsRequest *req,
                          pc_stream **out, vk_status *st);
/* Send start, then yield ExecOutput. */
int pc_exec(provider_client *pc, const Vkc__Provider__V1__ExecStart *start,
            pc_stream **out, vk_status *st);
int pc_attach(provider_client *pc, const Vkc__Provider__V1__ExecStart *start,
              pc_stream **out, vk_status *st);
/* Send start, then yield PortForwardOutput. */
int pc_port_forward(provider_client *pc, const Vkc__Provider__V1__PortForwardStart *start,
                    pc_stream **out, vk_status *st);

/* Next message: 1 with *msg (the type the call yields; free it with
 * protobuf_c_message_free_unpacked), 0 at the end or on failure, -1 when
 * a message did not decode. */
int pc_stream_next(pc_stream *s, ProtobufCMessage **msg);
/* Exec/attach input: 0, or -1 once the call is over. */
int pc_stream_stdin(pc_stream *s, const void *data, size_t len);
int pc_stream_resize(pc_stream *s, uint32_t width, uint32_t height);
int pc_stream_close_stdin(pc_stream *s);
/* Port-forward input. */
int pc_stream_data(pc_stream *s, const void *data, size_t len);
int pc_stream_close_write(pc_stream *s);
/* From any thread: end the call; a blocked next/send returns. */
void pc_stream_cancel(pc_stream *s);
/* The final status, once next returned 0 or -1 (or after a cancel). */
int pc_stream_finish(pc_stream *s, vk_status *st);
void pc_stream_free(pc_stream *s);

#endif
