/* exec.c -- exec, attach and port-forward.
 *
 * Exec and attach ask the runtime for a streaming URL and run the session
 * with stream.c. Port-forward reaches pods on the host network directly:
 * their ports are the node's own, so a TCP connection to the loopback
 * address is exactly what the runtime's port-forward would make.
 */
#include "cri.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PF_CONNECT_MS 5000
#define PF_POLL_MS 200

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

static int dial_loopback(int32_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof err;
    if (poll(&pfd, 1, PF_CONNECT_MS) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 ||
        err) {
        close(fd);
        return -1;
    }
    return fd;
}

typedef struct pf_reader {
    int fd;
    vk_stream *io;
    bool done;
} pf_reader;

/* Socket to user, on its own thread: the user's side is read by the
 * calling thread. */
static void *pf_read_main(void *arg)
{
    pf_reader *r = arg;
    char buf[32768];
    for (;;) {
        ssize_t n = recv(r->fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
            poll(&pfd, 1, PF_POLL_MS);
            if (__atomic_load_n(&r->done, __ATOMIC_ACQUIRE))
                break;
            continue;
        }
        if (n <= 0 || vk_stream_write(r->io, buf, (size_t)n) < 0)
            break;
    }
    __atomic_store_n(&r->done, true, __ATOMIC_RELEASE);
    return NULL;
}

static int send_fully(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            poll(&pfd, 1, PF_POLL_MS);
            continue;
        }
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int cri_port_forward(vk_ctx *ctx, const char *ns, const char *pod, int32_t port, vk_stream *io)
{
    if (port <= 0 || port > 65535)
        return vk_ctx_error(ctx, VK_INVALID_ARGUMENT, "port %d is not a TCP port", port);
    cri_lock();
    cri_pod *p = pods_find(ns, pod);
    bool host = p && p->pod->host_network;
    cri_unlock();
    if (!p)
        return vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, pod);
    if (!host)
        return vk_ctx_error(ctx, VK_UNIMPLEMENTED,
                            "port-forward reaches only pods on the host network so far");
    pf_reader r = {.fd = dial_loopback(port), .io = io};
    if (r.fd < 0)
        return vk_ctx_error(ctx, VK_UNAVAILABLE, "nothing listens on port %d of pod %s/%s", port,
                            ns, pod);
    pthread_t t;
    if (pthread_create(&t, NULL, pf_read_main, &r) != 0) {
        close(r.fd);
        return vk_ctx_error(ctx, VK_INTERNAL, "cannot start a port-forward thread");
    }
    while (!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE)) {
        vk_input in;
        int rc = vk_stream_read(io, &in, PF_POLL_MS);
        if (rc < 0)
            break;
        if (rc == 0)
            continue;
        if (in.kind == VK_INPUT_EOF)
            shutdown(r.fd, SHUT_WR);
        else if (in.kind == VK_INPUT_DATA && send_fully(r.fd, in.data, in.len) < 0)
            break;
    }
    __atomic_store_n(&r.done, true, __ATOMIC_RELEASE);
    shutdown(r.fd, SHUT_RDWR);
    pthread_join(t, NULL);
    close(r.fd);
    return VK_OK;
}
