/* rpc_client.c -- client side of rpc.h: channels, unary and streaming calls.
 *
 * A streaming call starts its receive-status batch in vk_call_start and
 * reaps it in vk_call_finish (or vk_call_free); every other batch is started
 * and waited for inside one function. The status batch also carries the
 * initial metadata in both directions, so send and receive batches later on
 * hold nothing but messages and can run on two threads at once.
 */
#include "rpc_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

struct vk_channel {
    grpc_channel *ch;
    size_t max_message;
};

struct vk_call {
    grpc_call *call;
    grpc_completion_queue *cq;
    size_t max_message;
    /* Filled by the status batch; valid once status_done. */
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_status_code status;
    grpc_slice details;
    int status_tag;          /* its address is the status batch's tag */
    bool status_pending;     /* status batch started, not yet reaped */
};

/* The absolute deadline timeout_ms from now; infinite when timeout_ms < 0. */
static gpr_timespec deadline_after(long timeout_ms)
{
    if (timeout_ms < 0)
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

/* A malloc'd copy of a slice as a C string; NULL for an empty slice. */
static char *slice_strdup(grpc_slice s)
{
    size_t len = GRPC_SLICE_LENGTH(s);
    if (len == 0)
        return NULL;
    char *str = malloc(len + 1);
    if (str == NULL)
        return NULL;
    memcpy(str, GRPC_SLICE_START_PTR(s), len);
    str[len] = '\0';
    return str;
}

/* ---- channel ------------------------------------------------------------ */

vk_channel *vk_channel_open(const char *target, size_t max_message)
{
    vk_channel *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->max_message = vk_rpc_max_message(max_message);
    vk_rpc_args storage;
    const grpc_channel_args *args = vk_rpc_args_init(&storage, max_message,
                                                     false);
    /* Plain text: the core talks to its provider over a unix socket (or
     * loopback) that file permissions already protect. */
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c->ch = grpc_channel_create(target, creds, args);
    grpc_channel_credentials_release(creds);
    if (c->ch == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void vk_channel_close(vk_channel *c)
{
    if (c == NULL)
        return;
    grpc_channel_destroy(c->ch);
    free(c);
}

bool vk_channel_wait_ready(vk_channel *c, int timeout_ms)
{
    gpr_timespec deadline = deadline_after(timeout_ms < 0 ? 0 : timeout_ms);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_connectivity_state state;
    int tag;
    for (;;) {
        state = grpc_channel_check_connectivity_state(c->ch, 1);
        if (state == GRPC_CHANNEL_READY || state == GRPC_CHANNEL_SHUTDOWN)
            break;
        grpc_channel_watch_connectivity_state(c->ch, state, deadline, cq, &tag);
        grpc_event ev = grpc_completion_queue_pluck(
            cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (!ev.success) /* the deadline passed first */
            break;
    }
    vk_rpc_cq_destroy(cq);
    return state == GRPC_CHANNEL_READY;
}

/* ---- helpers ------------------------------------------------------------ */

static grpc_call *create_call(vk_channel *c, grpc_completion_queue *cq,
                              const char *method, int timeout_ms)
{
    gpr_timespec deadline = deadline_after(timeout_ms > 0 ? timeout_ms : -1);
    return grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                    grpc_slice_from_static_string(method),
                                    NULL, deadline, NULL);
}

static void fill_status(vk_status *st, grpc_status_code code,
                        grpc_slice details)
{
    if (st == NULL)
        return;
    vk_status_clear(st);
    st->code = (int)code;
    st->message = slice_strdup(details);
}

/* Refuse a message above the limit before gRPC sees it: gRPC would fail
 * the whole call with a less helpful message after copying it. */
static bool too_big(const ProtobufCMessage *msg, size_t max, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    return *len > max;
}

/* ---- unary -------------------------------------------------------------- */

static int unary_result(grpc_status_code code, grpc_slice details,
                        grpc_byte_buffer *reply,
                        const ProtobufCMessageDescriptor *resp_desc,
                        ProtobufCMessage **resp, vk_status *st)
{
    if (code != GRPC_STATUS_OK) {
        fill_status(st, code, details);
        return (int)code;
    }
    if (reply == NULL) {
        vk_status_set(st, VK_INTERNAL, "missing %s response", resp_desc->name);
        return VK_INTERNAL;
    }
    *resp = vk_rpc_unpack(reply, resp_desc);
    if (*resp == NULL) {
        vk_status_set(st, VK_INTERNAL, "malformed response: not a valid %s",
                      resp_desc->name);
        return VK_INTERNAL;
    }
    vk_status_set(st, VK_OK, NULL);
    return VK_OK;
}

int vk_unary(vk_channel *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, int timeout_ms,
             ProtobufCMessage **resp, vk_status *st)
{
    *resp = NULL;
    size_t len;
    if (too_big(req, c->max_message, &len)) {
        vk_status_set(st, VK_RESOURCE_EXHAUSTED,
                      "request of %zu bytes exceeds the %zu byte limit", len,
                      c->max_message);
        return VK_RESOURCE_EXHAUSTED;
    }
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call = create_call(c, cq, method, timeout_ms);
    if (call == NULL) {
        vk_rpc_cq_destroy(cq);
        vk_status_set(st, VK_INTERNAL, "cannot create call %s", method);
        return VK_INTERNAL;
    }

    grpc_byte_buffer *send = vk_rpc_pack(req), *reply = NULL;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &reply;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[5].data.recv_status_on_client.status = &code;
    ops[5].data.recv_status_on_client.status_details = &details;

    int rc;
    if (vk_rpc_batch(call, cq, ops, 6)) {
        rc = unary_result(code, details, reply, resp_desc, resp, st);
    } else {
        vk_status_set(st, VK_INTERNAL, "call %s failed to run", method);
        rc = VK_INTERNAL;
    }

    grpc_byte_buffer_destroy(send);
    if (reply != NULL)
        grpc_byte_buffer_destroy(reply);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    grpc_call_unref(call);
    vk_rpc_cq_destroy(cq);
    return rc;
}

/* ---- streaming ---------------------------------------------------------- */

static void call_destroy(vk_call *c)
{
    if (c->call != NULL)
        grpc_call_unref(c->call);
    vk_rpc_cq_destroy(c->cq);
    grpc_slice_unref(c->details);
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    free(c);
}

vk_call *vk_call_start(vk_channel *ch, const char *method, int timeout_ms)
{
    vk_call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->max_message = ch->max_message;
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    c->call = create_call(ch, c->cq, method, timeout_ms);
    if (c->call == NULL) {
        call_destroy(c);
        return NULL;
    }

    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    ops[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[2].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[2].data.recv_status_on_client.status = &c->status;
    ops[2].data.recv_status_on_client.status_details = &c->details;
    if (grpc_call_start_batch(c->call, ops, 3, &c->status_tag, NULL)
        != GRPC_CALL_OK) {
        call_destroy(c);
        return NULL;
    }
    c->status_pending = true;
    return c;
}

int vk_call_send(vk_call *c, const ProtobufCMessage *msg)
{
    size_t len;
    if (too_big(msg, c->max_message, &len)) {
        /* Ending the call here makes vk_call_finish report the reason. */
        char why[96];
        snprintf(why, sizeof(why),
                 "request of %zu bytes exceeds the %zu byte limit", len,
                 c->max_message);
        grpc_call_cancel_with_status(c->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                     why, NULL);
        return -1;
    }
    grpc_byte_buffer *bb = vk_rpc_pack(msg);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    bool ok = vk_rpc_batch(c->call, c->cq, &op, 1);
    grpc_byte_buffer_destroy(bb);
    return ok ? 0 : -1;
}

int vk_call_close_send(vk_call *c)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    return vk_rpc_batch(c->call, c->cq, &op, 1) ? 0 : -1;
}

int vk_call_recv(vk_call *c, const ProtobufCMessageDescriptor *desc,
                 ProtobufCMessage **out)
{
    *out = NULL;
    grpc_byte_buffer *bb = NULL;
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    if (!vk_rpc_batch(c->call, c->cq, &op, 1) || bb == NULL) {
        if (bb != NULL)
            grpc_byte_buffer_destroy(bb);
        return 0;
    }
    *out = vk_rpc_unpack(bb, desc);
    grpc_byte_buffer_destroy(bb);
    if (*out == NULL) {
        char why[160];
        snprintf(why, sizeof(why), "malformed %s message from server",
                 desc->name);
        grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, why, NULL);
        return -1;
    }
    return 1;
}

void vk_call_cancel(vk_call *c)
{
    grpc_call_cancel(c->call, NULL);
}

/* Reap the status batch. It ends when the server sends its status, the
 * deadline passes, the call is cancelled or the connection dies. */
static void wait_status(vk_call *c)
{
    if (!c->status_pending)
        return;
    grpc_completion_queue_pluck(c->cq, &c->status_tag,
                                gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    c->status_pending = false;
}

int vk_call_finish(vk_call *c, vk_status *st)
{
    wait_status(c);
    fill_status(st, c->status, c->details);
    return (int)c->status;
}

void vk_call_free(vk_call *c)
{
    if (c == NULL)
        return;
    if (c->status_pending) {
        grpc_call_cancel(c->call, NULL);
        wait_status(c);
    }
    call_destroy(c);
}
