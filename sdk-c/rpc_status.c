/* rpc_status.c -- status values, process set-up, and the helpers the client
 * and server sides of rpc.h share (message coding, batches, arguments). */
#include "rpc_internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "log.h"

/* ---- status ------------------------------------------------------------- */

void vk_status_clear(vk_status *st)
{
    if (st == NULL)
        return;
    free(st->message);
    st->code = VK_OK;
    st->message = NULL;
}

void vk_status_set(vk_status *st, int code, const char *fmt, ...)
{
    if (st == NULL)
        return;
    char *msg = NULL;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
            msg = NULL;
        va_end(ap);
    }
    free(st->message);
    st->code = code;
    st->message = msg;
}

static const char *const code_names[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

const char *vk_status_code_name(int code)
{
    if (code < 0 || code >= (int)(sizeof(code_names) / sizeof(code_names[0])))
        return "UNKNOWN";
    return code_names[code];
}

/* ---- process set-up ------------------------------------------------------ */

/* gRPC's own diagnostics go through vk_log so that every line on stderr is
 * logfmt. GRPC_VERBOSITY still decides which of them gRPC produces. */
static void grpc_log_to_vk(gpr_log_func_args *a)
{
    enum vk_log_level level = VK_LOG_ERROR;
    if (a->severity == GPR_LOG_SEVERITY_DEBUG)
        level = VK_LOG_DEBUG;
    else if (a->severity == GPR_LOG_SEVERITY_INFO)
        level = VK_LOG_INFO;
    vk_log(level, a->message, "src=grpc file=%s line=%d", a->file, a->line);
}

void vk_rpc_init(void)
{
    gpr_set_log_function(grpc_log_to_vk);
    grpc_init();
}

void vk_rpc_shutdown(void)
{
    /* Blocking, so that gRPC's threads are gone when this returns: leak
     * checkers and fork() both need that. */
    grpc_shutdown_blocking();
}

/* ---- shared helpers ------------------------------------------------------ */

size_t vk_rpc_max_message(size_t max)
{
    if (max == 0)
        return VK_RPC_MAX_MESSAGE;
    return max > INT_MAX ? INT_MAX : max;
}

grpc_byte_buffer *vk_rpc_pack(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

ProtobufCMessage *vk_rpc_unpack(grpc_byte_buffer *bb,
                                const ProtobufCMessageDescriptor *desc)
{
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    ProtobufCMessage *msg = protobuf_c_message_unpack(
        desc, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    return msg;
}

bool vk_rpc_batch(grpc_call *call, grpc_completion_queue *cq,
                  const grpc_op *ops, size_t nops)
{
    int tag;
    grpc_call_error err = grpc_call_start_batch(call, ops, nops, &tag, NULL);
    if (err != GRPC_CALL_OK) {
        /* Only a misuse gets here (two sends at once, a second status). */
        vk_warn("grpc batch refused", "error=%d", (int)err);
        return false;
    }
    grpc_event ev = grpc_completion_queue_pluck(
        cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

const grpc_channel_args *vk_rpc_args_init(vk_rpc_args *a, size_t max,
                                          bool server)
{
    int limit = (int)vk_rpc_max_message(max);
    size_t n = 0;
    a->arg[n].type = GRPC_ARG_INTEGER;
    a->arg[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    a->arg[n++].value.integer = limit;
    a->arg[n].type = GRPC_ARG_INTEGER;
    a->arg[n].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    a->arg[n++].value.integer = limit;
    /* A reader that stops reading (a stalled `kubectl logs -f`) must stop
     * the writer, not fill memory: without this, gRPC's bandwidth-delay
     * probing grows a stream's window to megabytes, all of it buffered for
     * a reader that does not come. 64 KiB still saturates a unix socket. */
    a->arg[n].type = GRPC_ARG_INTEGER;
    a->arg[n].key = (char *)GRPC_ARG_HTTP2_BDP_PROBE;
    a->arg[n++].value.integer = 0;
    a->arg[n].type = GRPC_ARG_INTEGER;
    a->arg[n].key = (char *)GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES;
    a->arg[n++].value.integer = 64 * 1024;
    if (server) {
        /* gRPC sets SO_REUSEPORT by default, so a second server on a busy
         * port would bind and silently share it instead of failing. */
        a->arg[n].type = GRPC_ARG_INTEGER;
        a->arg[n].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
        a->arg[n++].value.integer = 0;
    }
    a->args.num_args = n;
    a->args.args = a->arg;
    return &a->args;
}

void vk_rpc_cq_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    /* Every batch was waited for, so this only sees the shutdown itself. */
    while (grpc_completion_queue_pluck(cq, NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME),
                                       NULL).type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}
