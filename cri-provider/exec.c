/* exec.c -- exec, attach and port-forward: each asks the runtime for a
 * streaming URL and runs the session with stream.c.
 */
#include "cri.h"

#include <stdio.h>
#include <string.h>

/* The running container of a pod: its runtime id into id, and whether it
 * was created with a terminal. VK_OK or an error status. */
static int running_container(vk_ctx *ctx, const char *ns, const char *pod, const char *name,
                             char *id, size_t n, bool *tty)
{
    int code = VK_OK;
    cri_lock();
    cri_pod *p = pods_find(ns, pod);
    cri_ctr *c = p && name && name[0] ? pod_ctr(p, name)
                 : p && p->n_ctrs     ? &p->ctrs[p->pod->n_init_containers]
                                      : NULL;
    if (!p)
        code = vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, pod);
    else if (!c)
        code = vk_ctx_error(ctx, VK_NOT_FOUND, "container %s not found in pod %s/%s", name, ns,
                            pod);
    else if (c->phase != CTR_RUNNING)
        code = vk_ctx_error(ctx, VK_FAILED_PRECONDITION,
                            "container %s in pod %s/%s is not running", c->spec->name, ns, pod);
    else {
        snprintf(id, n, "%s", c->id);
        if (tty)
            *tty = c->spec->tty;
    }
    cri_unlock();
    return code;
}

int cri_exec(vk_ctx *ctx, const vk_exec_request *req, vk_stream *io, int *exit_code)
{
    Runtime__V1__ExecRequest er = RUNTIME__V1__EXEC_REQUEST__INIT;
    Runtime__V1__ExecResponse *resp = NULL;
    char id[80], err[512];
    if (!req->n_command)
        return vk_ctx_error(ctx, VK_INVALID_ARGUMENT, "exec needs a command");
    int code = running_container(ctx, req->namespace, req->pod, req->container, id, sizeof id,
                                 NULL);
    if (code != VK_OK)
        return code;
    er.container_id = id;
    er.cmd = (char **)req->command;
    er.n_cmd = req->n_command;
    er.tty = req->tty;
    /* containerd 1.6 loses the output of a terminal without stdin: open
     * stdin with every terminal; nothing is sent on it unless asked. */
    er.stdin = req->in || req->tty;
    er.stdout = req->out || req->tty;
    er.stderr = req->err && !req->tty;  /* a terminal has one output */
    code = rt_call(RT("Exec"), &er.base, &runtime__v1__exec_response__descriptor, RT_QUICK_MS,
                   &resp, err, sizeof err);
    if (code != VK_OK)
        return vk_ctx_error(ctx, code == VK_NOT_FOUND ? VK_NOT_FOUND : VK_UNAVAILABLE, "%s", err);
    stream_opts o = {er.stdin, er.stdout, er.stderr, er.tty, req->width, req->height};
    code = stream_session(ctx, resp->url, &o, io, exit_code);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    if (code == VK_OK && *exit_code < 0)
        code = vk_ctx_error(ctx, VK_UNAVAILABLE, "the runtime ended the exec without a status");
    return code;
}

/* The exit code of a container that ended during an attach, or -1. */
static int exit_code_of(const char *id)
{
    Runtime__V1__ContainerStatusRequest req = RUNTIME__V1__CONTAINER_STATUS_REQUEST__INIT;
    Runtime__V1__ContainerStatusResponse *resp = NULL;
    req.container_id = (char *)id;
    if (rt_call(RT("ContainerStatus"), &req.base, &runtime__v1__container_status_response__descriptor,
                RT_QUICK_MS, &resp, NULL, 0) != VK_OK)
        return -1;
    int code = resp->status && resp->status->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED
                   ? resp->status->exit_code
                   : -1;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return code;
}

int cri_attach(vk_ctx *ctx, const vk_exec_request *req, vk_stream *io, int *exit_code)
{
    Runtime__V1__AttachRequest ar = RUNTIME__V1__ATTACH_REQUEST__INIT;
    Runtime__V1__AttachResponse *resp = NULL;
    char id[80], err[512];
    bool tty = false;
    int code = running_container(ctx, req->namespace, req->pod, req->container, id, sizeof id,
                                 &tty);
    if (code != VK_OK)
        return code;
    /* The terminal is the container's, not the request's. */
    ar.container_id = id;
    ar.tty = tty;
    ar.stdin = req->in;
    ar.stdout = req->out || tty;
    ar.stderr = req->err && !tty;
    code = rt_call(RT("Attach"), &ar.base, &runtime__v1__attach_response__descriptor,
                   RT_QUICK_MS, &resp, err, sizeof err);
    if (code != VK_OK)
        return vk_ctx_error(ctx, code == VK_NOT_FOUND ? VK_NOT_FOUND : VK_UNAVAILABLE, "%s", err);
    stream_opts o = {ar.stdin, ar.stdout, ar.stderr, tty, req->width, req->height};
    code = stream_session(ctx, resp->url, &o, io, exit_code);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    if (code == VK_OK)
        *exit_code = exit_code_of(id);
    return code;
}

/* ---- port-forward ------------------------------------------------------------------ */

/* The kubelet's way, for every pod: CRI PortForward gives the URL of the
 * runtime's port-forward server, which connects to the port inside the
 * sandbox's network namespace (the node's for hostNetwork pods). */
int cri_port_forward(vk_ctx *ctx, const char *ns, const char *pod, int32_t port, vk_stream *io)
{
    Runtime__V1__PortForwardRequest pr = RUNTIME__V1__PORT_FORWARD_REQUEST__INIT;
    Runtime__V1__PortForwardResponse *resp = NULL;
    char sandbox[80], err[512];
    if (port <= 0 || port > 65535)
        return vk_ctx_error(ctx, VK_INVALID_ARGUMENT, "port %d is not a TCP port", port);
    cri_lock();
    cri_pod *p = pods_find(ns, pod);
    snprintf(sandbox, sizeof sandbox, "%s", p ? p->sandbox_id : "");
    cri_unlock();
    if (!p)
        return vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, pod);
    if (!sandbox[0])
        return vk_ctx_error(ctx, VK_FAILED_PRECONDITION, "pod %s/%s has no sandbox yet", ns, pod);
    pr.pod_sandbox_id = sandbox;
    pr.port = &port;
    pr.n_port = 1;
    int code = rt_call(RT("PortForward"), &pr.base, &runtime__v1__port_forward_response__descriptor,
                       RT_QUICK_MS, &resp, err, sizeof err);
    if (code != VK_OK)
        return vk_ctx_error(ctx, code == VK_NOT_FOUND ? VK_NOT_FOUND : VK_UNAVAILABLE, "%s", err);
    code = stream_port_forward(ctx, resp->url, port, io);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return code;
}
