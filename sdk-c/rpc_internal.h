/* rpc_internal.h -- what rpc_client.c and rpc_server.c share. Not part of the
 * SDK's interface: nothing outside sdk-c/rpc_*.c includes it. */
#ifndef VKC_RPC_INTERNAL_H
#define VKC_RPC_INTERNAL_H

#include <grpc/grpc.h>

#include "rpc.h"

/* Pack msg into a new byte buffer the caller destroys. (gRPC aborts when
 * memory runs out, so there is no failure to report.) */
grpc_byte_buffer *vk_rpc_pack(const ProtobufCMessage *msg);
/* Decode bb as desc; NULL when it does not decode. bb stays the caller's. */
ProtobufCMessage *vk_rpc_unpack(grpc_byte_buffer *bb,
                                const ProtobufCMessageDescriptor *desc);

/* Start a batch and wait for it. The tag lives on this function's stack, so
 * concurrent batches on one call (a sender and a receiver) never share one.
 * true when the batch was accepted and completed successfully. */
bool vk_rpc_batch(grpc_call *call, grpc_completion_queue *cq,
                  const grpc_op *ops, size_t nops);

/* Channel/server arguments capping messages at max bytes both ways, and
 * what a stream may buffer unread. `storage` must outlive the returned
 * struct's use. */
typedef struct vk_rpc_args {
    grpc_arg arg[5];
    grpc_channel_args args;
} vk_rpc_args;
const grpc_channel_args *vk_rpc_args_init(vk_rpc_args *storage, size_t max,
                                          bool server);

/* Shut a per-call completion queue down, drain it and destroy it. */
void vk_rpc_cq_destroy(grpc_completion_queue *cq);

/* Message sizes the caller may request: 0 means VK_RPC_MAX_MESSAGE, and
 * gRPC takes an int. */
size_t vk_rpc_max_message(size_t max);

#endif
