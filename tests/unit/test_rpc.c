/* test_rpc.c -- the gRPC glue (rpc.h) end to end over a unix socket, with an
 * echo service whose handlers live here. Every case runs in its own process
 * (check's fork mode) with its own gRPC init/shutdown, server and channel. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../log_capture.h"

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "echo.pb-c.h"
#include "rpc.h"

#define M_UNARY "/vkc.test.Echo/Unary"
#define M_SSTREAM "/vkc.test.Echo/ServerStream"
#define M_CSTREAM "/vkc.test.Echo/ClientStream"
#define M_BIDI "/vkc.test.Echo/Bidi"
/* Methods outside echo.proto whose handlers send the wrong message type. */
#define M_BAD_REPLY "/vkc.test.Echo/BadReply"
#define M_BAD_STREAM "/vkc.test.Echo/BadStream"

typedef Vkc__Test__EchoRequest Req;
typedef Vkc__Test__EchoReply Rep;
#define REQ_DESC (&vkc__test__echo_request__descriptor)
#define REP_DESC (&vkc__test__echo_reply__descriptor)

static char dir[64];
static char addr[128];
static vk_server *srv;
static vk_channel *ch;

/* ---- what handlers report to the test ------------------------------------ */

static struct probe {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;          /* handler invocations */
    int saw_cancelled;  /* a handler saw vk_scall_cancelled true */
    int send_failed;    /* a handler saw vk_scall_send fail */
    int handler_done;   /* handlers that returned */
    int gate;           /* opened by the test */
    int received;       /* messages a client-stream handler took */
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0};

static void probe_add(int *field, int n)
{
    pthread_mutex_lock(&P.lock);
    *field += n;
    pthread_cond_broadcast(&P.cond);
    pthread_mutex_unlock(&P.lock);
}

static int probe_get(int *field)
{
    pthread_mutex_lock(&P.lock);
    int v = *field;
    pthread_mutex_unlock(&P.lock);
    return v;
}

/* How long to wait for a handler to see or do something. It only bounds
 * a failing test: under ASan on a loaded machine a handler can take
 * seconds to run. */
#define PROBE_MS 10000

/* Wait until *field >= want, up to ms. */
static bool probe_wait(int *field, int want, int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&P.lock);
    int rc = 0;
    while (*field < want && rc == 0)
        rc = pthread_cond_timedwait(&P.cond, &P.lock, &until);
    bool ok = *field >= want;
    pthread_mutex_unlock(&P.lock);
    return ok;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- echo handlers --------------------------------------------------------- */

static Req *recv_req(vk_scall *c)
{
    ProtobufCMessage *m = NULL;
    return vk_scall_recv(c, REQ_DESC, &m) == 1 ? (Req *)m : NULL;
}

static void free_msg(void *m)
{
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
}

/* Wait for the client to go away, bounded so a broken test cannot hang. */
static bool hold_until_cancelled(vk_scall *c)
{
    for (int i = 0; i < 100; i++)
        if (vk_scall_cancelled(c, 100))
            return true;
    return false;
}

static void *wait_a_second(void *arg)
{
    vk_scall_cancelled(arg, 1000);
    return NULL;
}

/* How long a look at vk_scall_cancelled takes while another thread of the
 * handler waits on it. */
static long look_while_waiting(vk_scall *c)
{
    pthread_t t;
    pthread_create(&t, NULL, wait_a_second, c);
    sleep_ms(100);
    long t0 = now_ms();
    bool cancelled = vk_scall_cancelled(c, 0);
    long took = now_ms() - t0;
    pthread_join(t, NULL);
    return cancelled ? -1 : took;
}

/* text "fail": NOT_FOUND; "nofinish": return without a status; "look": reply
 * with look_while_waiting's result as index; "whoami":
 * reply with the method as text and the deadline left as index; delay_ms:
 * wait first; count > 0: reply with that many payload bytes. */
static void h_unary(vk_scall *c, void *ud)
{
    (void)ud;
    probe_add(&P.calls, 1);
    Req *req = recv_req(c);
    if (req == NULL)
        goto out;
    if (strcmp(req->text, "fail") == 0) {
        vk_scall_finish(c, VK_NOT_FOUND, "no such thing: fail");
        goto out;
    }
    if (strcmp(req->text, "nofinish") == 0)
        goto out;
    if (req->delay_ms > 0 && vk_scall_cancelled(c, req->delay_ms)) {
        probe_add(&P.saw_cancelled, 1);
        goto out;
    }
    Rep rep = VKC__TEST__ECHO_REPLY__INIT;
    rep.text = req->text;
    rep.payload = req->payload;
    if (strcmp(req->text, "whoami") == 0) {
        rep.text = (char *)vk_scall_method(c);
        rep.index = (int32_t)vk_scall_deadline_left_ms(c);
    }
    if (strcmp(req->text, "look") == 0)
        rep.index = (int32_t)look_while_waiting(c);
    uint8_t *big = NULL;
    if (req->count > 0) {
        big = calloc(1, (size_t)req->count);
        rep.payload.data = big;
        rep.payload.len = (size_t)req->count;
    }
    vk_scall_reply(c, &rep.base);
    free(big);
out:
    free_msg(req);
    probe_add(&P.handler_done, 1);
}

/* count replies, delay_ms between them. text "hold": one reply, then wait
 * for the client to go away. */
static void h_server_stream(vk_scall *c, void *ud)
{
    (void)ud;
    probe_add(&P.calls, 1);
    Req *req = recv_req(c);
    if (req == NULL)
        goto out;
    Rep rep = VKC__TEST__ECHO_REPLY__INIT;
    rep.text = req->text;
    if (strcmp(req->text, "hold") == 0) {
        if (vk_scall_send(c, &rep.base) == 0 && hold_until_cancelled(c))
            probe_add(&P.saw_cancelled, 1);
        goto out;
    }
    for (int i = 0; i < req->count; i++) {
        rep.index = i;
        if (vk_scall_send(c, &rep.base) != 0) {
            probe_add(&P.send_failed, 1);
            /* The cancel that failed the send may take a moment to show. */
            if (vk_scall_cancelled(c, 5000))
                probe_add(&P.saw_cancelled, 1);
            goto out;
        }
        if (req->delay_ms > 0 && vk_scall_cancelled(c, req->delay_ms)) {
            probe_add(&P.saw_cancelled, 1);
            if (vk_scall_send(c, &rep.base) != 0)
                probe_add(&P.send_failed, 1);
            goto out;
        }
    }
    vk_scall_finish(c, VK_OK, NULL);
out:
    free_msg(req);
    probe_add(&P.handler_done, 1);
}

/* Replies with the texts joined and the number of messages. A first
 * message "slow" makes it stop reading until the test opens the gate. */
static void h_client_stream(vk_scall *c, void *ud)
{
    (void)ud;
    probe_add(&P.calls, 1);
    char joined[256] = "";
    int n = 0, rc;
    ProtobufCMessage *m;
    while ((rc = vk_scall_recv(c, REQ_DESC, &m)) == 1) {
        Req *req = (Req *)m;
        if (n == 0 && strcmp(req->text, "slow") == 0)
            probe_wait(&P.gate, 1, 20000);
        if (strlen(joined) + strlen(req->text) < sizeof(joined))
            strcat(joined, req->text);
        n++;
        probe_add(&P.received, 1);
        free_msg(req);
    }
    if (rc == 0) {
        Rep rep = VKC__TEST__ECHO_REPLY__INIT;
        rep.text = joined;
        rep.index = n;
        vk_scall_reply(c, &rep.base);
    }
    probe_add(&P.handler_done, 1);
}

/* Sends every message back with its position. */
static void h_bidi(vk_scall *c, void *ud)
{
    (void)ud;
    probe_add(&P.calls, 1);
    int n = 0, rc;
    ProtobufCMessage *m;
    while ((rc = vk_scall_recv(c, REQ_DESC, &m)) == 1) {
        Req *req = (Req *)m;
        Rep rep = VKC__TEST__ECHO_REPLY__INIT;
        rep.text = req->text;
        rep.payload = req->payload;
        rep.index = n++;
        int sent = vk_scall_send(c, &rep.base);
        free_msg(req);
        if (sent != 0)
            break;
    }
    if (rc == 0)
        vk_scall_finish(c, VK_OK, NULL);
    probe_add(&P.handler_done, 1);
}

/* An EchoRequest whose field 3 (bytes) cannot decode as EchoReply's
 * field 3 (int32). */
static void wrong_type(Req *bad)
{
    static uint8_t junk[] = "junk";
    bad->payload.data = junk;
    bad->payload.len = 4;
}

static void h_bad_reply(vk_scall *c, void *ud)
{
    (void)ud;
    Req bad = VKC__TEST__ECHO_REQUEST__INIT;
    wrong_type(&bad);
    free_msg(recv_req(c));
    vk_scall_reply(c, &bad.base);
}

static void h_bad_stream(vk_scall *c, void *ud)
{
    (void)ud;
    Req bad = VKC__TEST__ECHO_REQUEST__INIT;
    wrong_type(&bad);
    free_msg(recv_req(c));
    if (vk_scall_send(c, &bad.base) == 0 && hold_until_cancelled(c))
        probe_add(&P.saw_cancelled, 1);
    probe_add(&P.handler_done, 1);
}

static vk_server *echo_server(const char *at, size_t max_message, int workers)
{
    vk_server *s = vk_server_new(at, max_message, workers);
    vk_server_handle(s, M_UNARY, h_unary, NULL);
    vk_server_handle(s, M_SSTREAM, h_server_stream, NULL);
    vk_server_handle(s, M_CSTREAM, h_client_stream, NULL);
    vk_server_handle(s, M_BIDI, h_bidi, NULL);
    vk_server_handle(s, M_BAD_REPLY, h_bad_reply, NULL);
    vk_server_handle(s, M_BAD_STREAM, h_bad_stream, NULL);
    return s;
}

/* ---- fixture --------------------------------------------------------------- */

static void setup(void)
{
    vk_rpc_init();
    P.calls = P.saw_cancelled = P.send_failed = P.handler_done = 0;
    P.gate = P.received = 0;
    snprintf(dir, sizeof(dir), "/tmp/vkc-test-rpc.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(addr, sizeof(addr), "unix:%s/echo.sock", dir);
    srv = echo_server(addr, 0, 16);
    ck_assert_int_eq(vk_server_start(srv), 0);
    ch = vk_channel_open(addr, 0);
    ck_assert_ptr_nonnull(ch);
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[sizeof(dir) + 300];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void teardown(void)
{
    vk_channel_close(ch);
    vk_server_free(srv);
    remove_dir();
    vk_rpc_shutdown();
}

/* ---- helpers ----------------------------------------------------------------- */

static int unary(vk_channel *c, const char *text, int count, int delay_ms,
                 size_t payload, int timeout_ms, Rep **out, vk_status *st)
{
    Req req = VKC__TEST__ECHO_REQUEST__INIT;
    req.text = (char *)text;
    req.count = count;
    req.delay_ms = delay_ms;
    uint8_t *buf = payload > 0 ? calloc(1, payload) : NULL;
    req.payload.data = buf;
    req.payload.len = payload;
    ProtobufCMessage *resp = NULL;
    int code = vk_unary(c, M_UNARY, &req.base, REP_DESC, timeout_ms, &resp, st);
    free(buf);
    if (out != NULL)
        *out = (Rep *)resp;
    else
        free_msg(resp);
    return code;
}

static vk_call *start_stream(const char *text, int count, int delay_ms)
{
    vk_call *c = vk_call_start(ch, M_SSTREAM, 10000);
    ck_assert_ptr_nonnull(c);
    Req req = VKC__TEST__ECHO_REQUEST__INIT;
    req.text = (char *)text;
    req.count = count;
    req.delay_ms = delay_ms;
    ck_assert_int_eq(vk_call_send(c, &req.base), 0);
    ck_assert_int_eq(vk_call_close_send(c), 0);
    return c;
}

static int recv_rep(vk_call *c, Rep **out)
{
    ProtobufCMessage *m = NULL;
    int rc = vk_call_recv(c, REP_DESC, &m);
    *out = (Rep *)m;
    return rc;
}

/* A thread that does one thing after a pause. */
struct later {
    pthread_t thread;
    int after_ms;
    void (*fn)(void *);
    void *arg;
};

static void *later_main(void *arg)
{
    struct later *l = arg;
    sleep_ms(l->after_ms);
    l->fn(l->arg);
    return NULL;
}

static void later_start(struct later *l, int after_ms, void (*fn)(void *),
                        void *arg)
{
    l->after_ms = after_ms;
    l->fn = fn;
    l->arg = arg;
    ck_assert_int_eq(pthread_create(&l->thread, NULL, later_main, l), 0);
}

/* ---- unary ---------------------------------------------------------------------- */

START_TEST(unary_ok)
{
    vk_status st = {0, NULL};
    Rep *rep = NULL;
    ck_assert_int_eq(unary(ch, "hello", 0, 0, 3, 5000, &rep, &st), VK_OK);
    ck_assert_int_eq(st.code, VK_OK);
    ck_assert_ptr_nonnull(rep);
    ck_assert_str_eq(rep->text, "hello");
    ck_assert_uint_eq(rep->payload.len, 3);
    free_msg(rep);
    vk_status_clear(&st);
}
END_TEST

START_TEST(unary_error_status)
{
    vk_status st = {0, NULL};
    Rep *rep = NULL;
    ck_assert_int_eq(unary(ch, "fail", 0, 0, 0, 5000, &rep, &st), VK_NOT_FOUND);
    ck_assert_ptr_null(rep);
    ck_assert_int_eq(st.code, VK_NOT_FOUND);
    ck_assert_str_eq(st.message, "no such thing: fail");
    vk_status_clear(&st);
    ck_assert_ptr_null(st.message);
}
END_TEST

START_TEST(handler_without_status_is_internal)
{
    vk_status st = {0, NULL};
    ck_assert_int_eq(unary(ch, "nofinish", 0, 0, 0, 5000, NULL, &st),
                     VK_INTERNAL);
    ck_assert_str_eq(st.message, "handler ended without a status");
    vk_status_clear(&st);
}
END_TEST

START_TEST(unary_deadline)
{
    /* The 1 s deadline, not the handler's 10 s delay, ends the call: the
     * bound stays below the delay, with room for a loaded machine. The
     * deadline gives the handler time to start, so that it is there to
     * see the deadline pass (a call that expires before its handler runs
     * never reaches it). */
    vk_status st = {0, NULL};
    long t0 = now_ms();
    ck_assert_int_eq(unary(ch, "slow", 0, 10000, 0, 1000, NULL, &st),
                     VK_DEADLINE_EXCEEDED);
    ck_assert_int_lt(now_ms() - t0, 9000);
    /* The server side sees the deadline too. */
    ck_assert(probe_wait(&P.saw_cancelled, 1, PROBE_MS));
    vk_status_clear(&st);
}
END_TEST

START_TEST(server_sees_method_and_deadline)
{
    Rep *rep = NULL;
    ck_assert_int_eq(unary(ch, "whoami", 0, 0, 0, 5000, &rep, NULL), VK_OK);
    ck_assert_str_eq(rep->text, M_UNARY);
    /* The 5 s deadline, less the time to reach the handler: seconds on a
     * loaded machine under ASan, so only "well above 0" is asked. */
    ck_assert_int_gt(rep->index, 1000);
    ck_assert_int_le(rep->index, 5000);
    free_msg(rep);
    ck_assert_int_eq(unary(ch, "whoami", 0, 0, 0, 0, &rep, NULL), VK_OK);
    ck_assert_int_eq(rep->index, -1); /* no deadline */
    free_msg(rep);
}
END_TEST

START_TEST(cancelled_look_does_not_wait)
{
    Rep *rep = NULL;
    ck_assert_int_eq(unary(ch, "look", 0, 0, 0, 5000, &rep, NULL), VK_OK);
    /* A look that waited behind the other thread would take about 900 ms;
     * one that did not takes next to nothing, but a loaded machine can
     * stall any thread for a while. */
    ck_assert_int_ge(rep->index, 0);
    ck_assert_int_lt(rep->index, 500);
    free_msg(rep);
}
END_TEST

START_TEST(unimplemented_method)
{
    Req req = VKC__TEST__ECHO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    vk_status st = {0, NULL};
    ck_assert_int_eq(vk_unary(ch, "/vkc.test.Echo/Nope", &req.base, REP_DESC,
                              5000, &resp, &st), VK_UNIMPLEMENTED);
    ck_assert_ptr_nonnull(strstr(st.message, "/vkc.test.Echo/Nope"));
    ck_assert_int_eq(probe_get(&P.calls), 0);
    vk_status_clear(&st);
}
END_TEST

START_TEST(status_names)
{
    ck_assert_str_eq(vk_status_code_name(VK_OK), "OK");
    ck_assert_str_eq(vk_status_code_name(VK_NOT_FOUND), "NOT_FOUND");
    ck_assert_str_eq(vk_status_code_name(VK_UNAUTHENTICATED),
                     "UNAUTHENTICATED");
    ck_assert_str_eq(vk_status_code_name(99), "UNKNOWN");
    vk_status st = {0, NULL};
    vk_status_set(&st, VK_ABORTED, "try %d", 2);
    vk_status_set(&st, VK_ABORTED, "try %d", 3); /* replaces, no leak */
    ck_assert_str_eq(st.message, "try 3");
    vk_status_clear(&st);
}
END_TEST

/* ---- streams ------------------------------------------------------------------- */

START_TEST(server_stream)
{
    vk_call *c = start_stream("tick", 100, 0);
    Rep *rep;
    int n = 0;
    while (recv_rep(c, &rep) == 1) {
        ck_assert_int_eq(rep->index, n);
        ck_assert_str_eq(rep->text, "tick");
        n++;
        free_msg(rep);
    }
    ck_assert_int_eq(n, 100);
    vk_status st = {0, NULL};
    ck_assert_int_eq(vk_call_finish(c, &st), VK_OK);
    vk_call_free(c);
    vk_status_clear(&st);
}
END_TEST

START_TEST(client_stream)
{
    vk_call *c = vk_call_start(ch, M_CSTREAM, 5000);
    const char *parts[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++) {
        Req req = VKC__TEST__ECHO_REQUEST__INIT;
        req.text = (char *)parts[i];
        ck_assert_int_eq(vk_call_send(c, &req.base), 0);
    }
    ck_assert_int_eq(vk_call_close_send(c), 0);
    Rep *rep;
    ck_assert_int_eq(recv_rep(c, &rep), 1);
    ck_assert_str_eq(rep->text, "abcde");
    ck_assert_int_eq(rep->index, 5);
    free_msg(rep);
    ck_assert_int_eq(recv_rep(c, &rep), 0);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_OK);
    vk_call_free(c);
}
END_TEST

START_TEST(bidi_lockstep)
{
    vk_call *c = vk_call_start(ch, M_BIDI, 5000);
    for (int i = 0; i < 20; i++) {
        char text[16];
        snprintf(text, sizeof(text), "m%d", i);
        Req req = VKC__TEST__ECHO_REQUEST__INIT;
        req.text = text;
        ck_assert_int_eq(vk_call_send(c, &req.base), 0);
        Rep *rep;
        ck_assert_int_eq(recv_rep(c, &rep), 1);
        ck_assert_str_eq(rep->text, text);
        ck_assert_int_eq(rep->index, i);
        free_msg(rep);
    }
    ck_assert_int_eq(vk_call_close_send(c), 0);
    Rep *rep;
    ck_assert_int_eq(recv_rep(c, &rep), 0);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_OK);
    vk_call_free(c);
}
END_TEST

#define BIDI_N 300

static void *bidi_sender(void *arg)
{
    vk_call *c = arg;
    static uint8_t payload[4096];
    intptr_t failed = 0;
    for (int i = 0; i < BIDI_N && !failed; i++) {
        Req req = VKC__TEST__ECHO_REQUEST__INIT;
        req.text = "x";
        req.payload.data = payload;
        req.payload.len = sizeof(payload);
        failed = vk_call_send(c, &req.base) != 0;
    }
    failed |= vk_call_close_send(c) != 0;
    return (void *)failed;
}

/* One thread sends while another receives on the same call. */
START_TEST(bidi_concurrent)
{
    vk_call *c = vk_call_start(ch, M_BIDI, 10000);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, bidi_sender, c), 0);
    Rep *rep;
    int n = 0;
    while (recv_rep(c, &rep) == 1) {
        ck_assert_int_eq(rep->index, n);
        ck_assert_uint_eq(rep->payload.len, 4096);
        n++;
        free_msg(rep);
    }
    void *failed;
    pthread_join(t, &failed);
    ck_assert_ptr_null(failed);
    ck_assert_int_eq(n, BIDI_N);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_OK);
    vk_call_free(c);
}
END_TEST

/* ---- cancellation and failure ---------------------------------------------------- */

START_TEST(client_cancel_mid_stream)
{
    vk_call *c = start_stream("tick", 1000000, 5);
    Rep *rep;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(recv_rep(c, &rep), 1);
        free_msg(rep);
    }
    vk_call_cancel(c);
    vk_status st = {0, NULL};
    ck_assert_int_eq(vk_call_finish(c, &st), VK_CANCELLED);
    vk_call_free(c);
    /* The handler learns of it and its next send fails. */
    ck_assert(probe_wait(&P.handler_done, 1, PROBE_MS));
    ck_assert_int_eq(probe_get(&P.saw_cancelled), 1);
    ck_assert_int_eq(probe_get(&P.send_failed), 1);
    vk_status_clear(&st);
}
END_TEST

static void cancel_call(void *arg)
{
    vk_call_cancel(arg);
}

START_TEST(cancel_unblocks_recv)
{
    vk_call *c = start_stream("hold", 0, 0);
    Rep *rep;
    ck_assert_int_eq(recv_rep(c, &rep), 1);
    free_msg(rep);
    struct later l;
    later_start(&l, 100, cancel_call, c);
    /* Blocked until the cancel: the handler holds the call for 10 s. */
    long t0 = now_ms();
    ck_assert_int_eq(recv_rep(c, &rep), 0);
    ck_assert_int_lt(now_ms() - t0, 8000);
    pthread_join(l.thread, NULL);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_CANCELLED);
    vk_call_free(c);
    ck_assert(probe_wait(&P.saw_cancelled, 1, PROBE_MS));
}
END_TEST

/* Freeing an unfinished call cancels it; the handler sees that. */
START_TEST(free_cancels)
{
    vk_call *c = start_stream("hold", 0, 0);
    Rep *rep;
    ck_assert_int_eq(recv_rep(c, &rep), 1);
    free_msg(rep);
    vk_call_free(c);
    ck_assert(probe_wait(&P.saw_cancelled, 1, PROBE_MS));
}
END_TEST

static void stop_server(void *arg)
{
    vk_server_stop(arg, 0);
}

/* A grace far longer than the call it lets finish (20 replies 20 ms
 * apart) needs on a loaded machine. */
static void stop_server_gently(void *arg)
{
    vk_server_stop(arg, 20000);
}

START_TEST(server_dies_mid_stream)
{
    vk_call *c = start_stream("hold", 0, 0);
    Rep *rep;
    ck_assert_int_eq(recv_rep(c, &rep), 1);
    free_msg(rep);
    struct later l;
    later_start(&l, 100, stop_server, srv);
    long t0 = now_ms();
    ck_assert_int_eq(recv_rep(c, &rep), 0);
    vk_status st = {0, NULL};
    int code = vk_call_finish(c, &st);
    ck_assert_msg(code == VK_UNAVAILABLE || code == VK_CANCELLED,
                  "finish gave %s", vk_status_code_name(code));
    ck_assert_int_lt(now_ms() - t0, 8000); /* the handler would hold it 10 s */
    pthread_join(l.thread, NULL); /* stop returned: every handler is done */
    ck_assert_int_eq(probe_get(&P.handler_done), 1);
    vk_call_free(c);
    /* New calls fail fast instead of hanging: UNAVAILABLE, not the end of
     * a deadline that leaves a loaded machine time. */
    ck_assert_int_eq(unary(ch, "x", 0, 0, 0, 10000, NULL, &st), VK_UNAVAILABLE);
    vk_status_clear(&st);
}
END_TEST

START_TEST(deadline_mid_stream)
{
    /* 400 replies 50 ms apart (20 s) cannot fit in 1 s: the deadline ends
     * the call, well before the replies would, even on a loaded machine. */
    vk_call *c = vk_call_start(ch, M_SSTREAM, 1000);
    ck_assert_ptr_nonnull(c);
    Req req = VKC__TEST__ECHO_REQUEST__INIT;
    req.text = "tick";
    req.count = 400;
    req.delay_ms = 50;
    ck_assert_int_eq(vk_call_send(c, &req.base), 0);
    ck_assert_int_eq(vk_call_close_send(c), 0);
    long t0 = now_ms();
    Rep *rep;
    int n = 0;
    while (recv_rep(c, &rep) == 1) {
        n++;
        free_msg(rep);
    }
    ck_assert_int_gt(n, 0);
    ck_assert_int_lt(n, 400);
    vk_status st = {0, NULL};
    ck_assert_int_eq(vk_call_finish(c, &st), VK_DEADLINE_EXCEEDED);
    ck_assert_int_lt(now_ms() - t0, 10000);
    vk_call_free(c);
    /* The handler learnt it while waiting between replies, and returned. */
    ck_assert(probe_wait(&P.saw_cancelled, 1, PROBE_MS));
    ck_assert(probe_wait(&P.handler_done, 1, PROBE_MS));
    vk_status_clear(&st);
}
END_TEST

/* The echo server in a process of its own: this binary again, told by the
 * environment to serve at addr (see main). */
static pid_t spawn_server(const char *at)
{
    char env[200];
    snprintf(env, sizeof(env), "VKC_TEST_RPC_SERVE=%s", at);
    char *const envp[] = {env, NULL};
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Dies with the test, should an assertion end it before its kill. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execle("/proc/self/exe", "test_rpc", (char *)NULL, envp);
        _exit(127);
    }
    return pid;
}

static int serve_main(const char *at)
{
    vk_rpc_init();
    vk_server *s = echo_server(at, 0, 4);
    if (vk_server_start(s) != 0)
        return 1;
    for (;;)
        pause(); /* until killed */
}

START_TEST(peer_killed_mid_stream)
{
    char child_addr[160];
    snprintf(child_addr, sizeof(child_addr), "unix:%s/child.sock", dir);
    pid_t pid = spawn_server(child_addr);
    vk_channel *c = vk_channel_open(child_addr, 0);
    long until = now_ms() + 20000; /* a process start, slow under ASan and load */
    while (!vk_channel_wait_ready(c, 200) && now_ms() < until)
        ;
    ck_assert_msg(now_ms() < until, "the server child did not come up");

    vk_call *call = vk_call_start(c, M_SSTREAM, 10000);
    Req req = VKC__TEST__ECHO_REQUEST__INIT;
    req.text = "hold";
    ck_assert_int_eq(vk_call_send(call, &req.base), 0);
    ck_assert_int_eq(vk_call_close_send(call), 0);
    Rep *rep;
    ck_assert_int_eq(recv_rep(call, &rep), 1);
    free_msg(rep);

    /* The dead peer is noticed when its connection drops, well before the
     * call's 10 s deadline (the bound is wide for a loaded machine). */
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    long t0 = now_ms();
    ck_assert_int_eq(recv_rep(call, &rep), 0);
    vk_status st = {0, NULL};
    ck_assert_int_eq(vk_call_finish(call, &st), VK_UNAVAILABLE);
    ck_assert_int_lt(now_ms() - t0, 8000);
    vk_call_free(call);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* New calls fail fast instead of hanging: UNAVAILABLE, well before
     * their deadline. */
    t0 = now_ms();
    ck_assert_int_eq(unary(c, "x", 0, 0, 0, 10000, NULL, &st), VK_UNAVAILABLE);
    ck_assert_int_lt(now_ms() - t0, 8000);
    vk_channel_close(c);
    vk_status_clear(&st);
}
END_TEST

START_TEST(server_stop_with_grace)
{
    /* A call that ends within the grace period is not cut short. */
    vk_call *c = start_stream("tick", 20, 20);
    Rep *rep;
    ck_assert_int_eq(recv_rep(c, &rep), 1);
    free_msg(rep);
    struct later l;
    later_start(&l, 0, stop_server_gently, srv);
    int n = 1;
    while (recv_rep(c, &rep) == 1) {
        n++;
        free_msg(rep);
    }
    ck_assert_int_eq(n, 20);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_OK);
    vk_call_free(c);
    pthread_join(l.thread, NULL);
}
END_TEST

/* ---- flow control ----------------------------------------------------------------- */

#define BP_MESSAGES 64
#define BP_PAYLOAD (1u << 20)

struct sender {
    vk_call *call;
    atomic_int sent;
    int reply_index;
    int code;
};

static void *bp_sender(void *arg)
{
    struct sender *s = arg;
    Req first = VKC__TEST__ECHO_REQUEST__INIT;
    first.text = "slow";
    if (vk_call_send(s->call, &first.base) != 0)
        return NULL;
    uint8_t *payload = calloc(1, BP_PAYLOAD);
    for (int i = 0; i < BP_MESSAGES; i++) {
        Req req = VKC__TEST__ECHO_REQUEST__INIT;
        req.payload.data = payload;
        req.payload.len = BP_PAYLOAD;
        if (vk_call_send(s->call, &req.base) != 0)
            break;
        atomic_fetch_add(&s->sent, 1);
    }
    free(payload);
    vk_call_close_send(s->call);
    Rep *rep;
    if (recv_rep(s->call, &rep) == 1) {
        s->reply_index = rep->index;
        free_msg(rep);
    }
    s->code = vk_call_finish(s->call, NULL);
    return NULL;
}

START_TEST(send_blocks_when_peer_stops_reading)
{
    struct sender s = {vk_call_start(ch, M_CSTREAM, 30000), 0, -1, -1};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, bp_sender, &s), 0);

    /* Wait until the sender stalls: no progress for 500 ms. */
    int last = -1, stable_for = 0;
    while (stable_for < 500) {
        sleep_ms(100);
        int now = atomic_load(&s.sent);
        stable_for = now == last ? stable_for + 100 : 0;
        last = now;
    }
    /* A few windows' worth got through (3 to 5 MB here), not all 64. */
    ck_assert_int_lt(last, BP_MESSAGES / 2);
    ck_assert_int_eq(probe_get(&P.received), 0);

    probe_add(&P.gate, 1); /* the handler reads again */
    pthread_join(t, NULL);
    ck_assert_int_eq(atomic_load(&s.sent), BP_MESSAGES);
    ck_assert_int_eq(s.reply_index, BP_MESSAGES + 1);
    ck_assert_int_eq(s.code, VK_OK);
    vk_call_free(s.call);
}
END_TEST

/* ---- limits and bad input --------------------------------------------------------- */

START_TEST(oversize_request_refused_locally)
{
    vk_channel *small = vk_channel_open(addr, 1024);
    vk_status st = {0, NULL};
    ck_assert_int_eq(unary(small, "big", 0, 0, 2048, 5000, NULL, &st),
                     VK_RESOURCE_EXHAUSTED);
    ck_assert_ptr_nonnull(strstr(st.message, "exceeds"));
    ck_assert_int_eq(probe_get(&P.calls), 0);

    vk_call *c = vk_call_start(small, M_BIDI, 5000);
    Req req = VKC__TEST__ECHO_REQUEST__INIT;
    uint8_t big[2048] = {0};
    req.payload.data = big;
    req.payload.len = sizeof(big);
    ck_assert_int_eq(vk_call_send(c, &req.base), -1);
    ck_assert_int_eq(vk_call_finish(c, &st), VK_RESOURCE_EXHAUSTED);
    ck_assert_ptr_nonnull(strstr(st.message, "exceeds"));
    vk_call_free(c);

    /* Small messages still pass. */
    ck_assert_int_eq(unary(small, "ok", 0, 0, 100, 5000, NULL, &st), VK_OK);
    vk_channel_close(small);
    vk_status_clear(&st);
}
END_TEST

START_TEST(oversize_on_server)
{
    char small_addr[160];
    snprintf(small_addr, sizeof(small_addr), "unix:%s/small.sock", dir);
    vk_server *small = echo_server(small_addr, 4096, 4);
    ck_assert_int_eq(vk_server_start(small), 0);
    vk_channel *c = vk_channel_open(small_addr, 0);
    vk_status st = {0, NULL};

    /* Request above the server's limit: gRPC refuses it. */
    ck_assert_int_eq(unary(c, "in", 0, 0, 8000, 5000, NULL, &st),
                     VK_RESOURCE_EXHAUSTED);
    /* Reply above the server's limit: the glue refuses it. */
    ck_assert_int_eq(unary(c, "out", 8000, 0, 0, 5000, NULL, &st),
                     VK_RESOURCE_EXHAUSTED);
    ck_assert_ptr_nonnull(strstr(st.message, "exceeds"));
    /* And the server goes on serving. */
    ck_assert_int_eq(unary(c, "ok", 100, 0, 0, 5000, NULL, &st), VK_OK);

    vk_channel_close(c);
    vk_server_stop(small, 1000);
    vk_server_free(small);
    vk_status_clear(&st);
}
END_TEST

START_TEST(malformed_request)
{
    /* An EchoReply whose field 2 (bytes) is EchoRequest's int32 count. */
    Rep wrong = VKC__TEST__ECHO_REPLY__INIT;
    uint8_t bytes[] = "abc";
    wrong.payload.data = bytes;
    wrong.payload.len = 3;
    ProtobufCMessage *resp = NULL;
    vk_status st = {0, NULL};
    ck_assert_int_eq(vk_unary(ch, M_UNARY, &wrong.base, REP_DESC, 5000, &resp,
                              &st), VK_INVALID_ARGUMENT);
    ck_assert_str_eq(st.message, "malformed vkc.test.EchoRequest message");
    vk_status_clear(&st);
}
END_TEST

/* Raw bytes that are no protobuf at all, sent with gRPC core directly. */
static grpc_status_code raw_unary(const char *target, const char *method,
                                  const char *bytes, size_t len,
                                  char *details, size_t details_len)
{
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *gch = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(5000, GPR_TIMESPAN));
    grpc_call *call = grpc_channel_create_call(
        gch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
        grpc_slice_from_static_string(method), NULL, deadline, NULL);
    grpc_slice s = grpc_slice_from_copied_buffer(bytes, len);
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&s, 1), *recv = NULL;
    grpc_slice_unref(s);
    grpc_metadata_array imd, tmd;
    grpc_metadata_array_init(&imd);
    grpc_metadata_array_init(&tmd);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice det = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &imd;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &tmd;
    ops[5].data.recv_status_on_client.status = &code;
    ops[5].data.recv_status_on_client.status_details = &det;
    int tag;
    ck_assert_int_eq(grpc_call_start_batch(call, ops, 6, &tag, NULL),
                     GRPC_CALL_OK);
    grpc_event ev = grpc_completion_queue_pluck(
        cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    ck_assert_int_eq(ev.type, GRPC_OP_COMPLETE);
    snprintf(details, details_len, "%.*s", (int)GRPC_SLICE_LENGTH(det),
             (const char *)GRPC_SLICE_START_PTR(det));

    grpc_byte_buffer_destroy(send);
    if (recv != NULL)
        grpc_byte_buffer_destroy(recv);
    grpc_slice_unref(det);
    grpc_metadata_array_destroy(&imd);
    grpc_metadata_array_destroy(&tmd);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME),
                                       NULL).type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    grpc_channel_destroy(gch);
    return code;
}

START_TEST(garbage_request)
{
    char details[256];
    ck_assert_int_eq(raw_unary(addr, M_UNARY, "\xff\xff\xff\xff\xff", 5,
                               details, sizeof(details)),
                     GRPC_STATUS_INVALID_ARGUMENT);
    ck_assert_str_eq(details, "malformed vkc.test.EchoRequest message");
    ck_assert(probe_wait(&P.handler_done, 1, PROBE_MS));
}
END_TEST

START_TEST(malformed_response)
{
    Req req = VKC__TEST__ECHO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    vk_status st = {0, NULL};
    ck_assert_int_eq(vk_unary(ch, M_BAD_REPLY, &req.base, REP_DESC, 5000,
                              &resp, &st), VK_INTERNAL);
    ck_assert_ptr_null(resp);
    ck_assert_ptr_nonnull(strstr(st.message, "malformed response"));

    /* Streaming: recv says -1, the call is cancelled, finish says why. */
    vk_call *c = vk_call_start(ch, M_BAD_STREAM, 5000);
    ck_assert_int_eq(vk_call_send(c, &req.base), 0);
    ck_assert_int_eq(vk_call_close_send(c), 0);
    Rep *rep;
    ck_assert_int_eq(recv_rep(c, &rep), -1);
    ck_assert_ptr_null(rep);
    ck_assert_int_eq(vk_call_finish(c, &st), VK_INTERNAL);
    ck_assert_str_eq(st.message,
                     "malformed vkc.test.EchoReply message from server");
    vk_call_free(c);
    ck_assert(probe_wait(&P.saw_cancelled, 1, PROBE_MS));
    vk_status_clear(&st);
}
END_TEST

/* ---- what bad input logs (tests/log_capture.h) ----------------------------- */

START_TEST(bad_input_logged_once)
{
    char small_addr[160];
    snprintf(small_addr, sizeof(small_addr), "unix:%s/small.sock", dir);
    vk_server *small = echo_server(small_addr, 4096, 4);
    ck_assert_int_eq(vk_server_start(small), 0);
    vk_channel *c = vk_channel_open(small_addr, 0);
    vk_status st = {0, NULL};
    char details[256];
    log_capture cap;
    log_capture_start(&cap);

    /* Garbage for a request: one line naming method, type and size. */
    ck_assert_int_eq(raw_unary(addr, M_UNARY, "\xff\xff\xff\xff\xff", 5,
                               details, sizeof(details)),
                     GRPC_STATUS_INVALID_ARGUMENT);
    /* A reply over the limit: the server says so once. */
    ck_assert_int_eq(unary(c, "out", 8000, 0, 0, 5000, NULL, &st),
                     VK_RESOURCE_EXHAUSTED);
    /* A request over the server's limit never reaches the glue: gRPC
     * answers it, so only the client can tell, from a status that says
     * the limit (the core's callers log that). */
    ck_assert_int_eq(unary(c, "in", 0, 0, 8000, 5000, NULL, &st),
                     VK_RESOURCE_EXHAUSTED);
    ck_assert_ptr_nonnull(strstr(st.message, "4096"));
    ck_assert(probe_wait(&P.handler_done, 2, PROBE_MS));

    char *log = log_capture_end(&cap);
    ck_assert_int_eq(lines_with(log, "msg=\"malformed request\"",
                                "method=" M_UNARY " message=vkc.test.EchoRequest bytes=5"), 1);
    ck_assert_int_eq(lines_with(log, "msg=\"reply over the size limit\"",
                                "limit=4096"), 1);
    ck_assert_int_eq(lines_with(log, "level=warn", ""), 2);
    free(log);

    vk_channel_close(c);
    vk_server_stop(small, 1000);
    vk_server_free(small);
    vk_status_clear(&st);
}
END_TEST

/* A peer sending garbage in a loop cannot flood the log: a burst of ten
 * lines, then one a second. */
START_TEST(bad_input_log_is_rate_limited)
{
    char details[256];
    log_capture cap;
    log_capture_start(&cap);
    long t0 = now_ms();
    for (int i = 0; i < 30; i++)
        ck_assert_int_eq(raw_unary(addr, M_UNARY, "\xff\xff", 2, details,
                                   sizeof(details)),
                         GRPC_STATUS_INVALID_ARGUMENT);
    long took_s = (now_ms() - t0) / 1000;
    char *log = log_capture_end(&cap);
    int n = lines_with(log, "msg=\"malformed request\"", "");
    free(log);
    ck_assert_int_ge(n, 10);
    ck_assert_int_le(n, 10 + took_s + 1);
}
END_TEST

START_TEST(max_workers)
{
    char one_addr[160];
    snprintf(one_addr, sizeof(one_addr), "unix:%s/one.sock", dir);
    vk_server *one = echo_server(one_addr, 0, 1);
    ck_assert_int_eq(vk_server_start(one), 0);
    vk_channel *c = vk_channel_open(one_addr, 0);

    vk_call *hold = vk_call_start(c, M_SSTREAM, 10000);
    Req req = VKC__TEST__ECHO_REQUEST__INIT;
    req.text = "hold";
    ck_assert_int_eq(vk_call_send(hold, &req.base), 0);
    Rep *rep;
    ck_assert_int_eq(recv_rep(hold, &rep), 1); /* its handler is running */
    free_msg(rep);

    vk_status st = {0, NULL};
    ck_assert_int_eq(unary(c, "x", 0, 0, 0, 5000, NULL, &st),
                     VK_RESOURCE_EXHAUSTED);
    ck_assert_ptr_nonnull(strstr(st.message, "busy"));

    vk_call_cancel(hold);
    vk_call_finish(hold, NULL);
    vk_call_free(hold);
    ck_assert(probe_wait(&P.handler_done, 1, PROBE_MS));
    /* The slot frees once the handler thread has cleaned up: poll for it,
     * with room for a loaded machine. */
    int code = VK_RESOURCE_EXHAUSTED;
    for (long end = now_ms() + PROBE_MS; code == VK_RESOURCE_EXHAUSTED && now_ms() < end;) {
        code = unary(c, "x", 0, 0, 0, 5000, NULL, &st);
        if (code == VK_RESOURCE_EXHAUSTED)
            sleep_ms(20);
    }
    ck_assert_int_eq(code, VK_OK);

    vk_channel_close(c);
    vk_server_free(one);
    vk_status_clear(&st);
}
END_TEST

/* ---- addresses -------------------------------------------------------------------- */

START_TEST(unix_socket_is_private)
{
    char path[160], at[170];
    snprintf(path, sizeof(path), "%s/private.sock", dir);
    snprintf(at, sizeof(at), "unix://%s", path); /* the unix:///abs form */
    mode_t old = umask(0); /* without the glue the socket would be 0777 */
    vk_server *s = vk_server_new(at, 0, 1);
    int rc = vk_server_start(s);
    umask(old);
    ck_assert_int_eq(rc, 0);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert(S_ISSOCK(sb.st_mode));
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    vk_server_free(s);
}
END_TEST

START_TEST(bad_address)
{
    vk_server *s = vk_server_new("unix:/nonexistent-vkc-dir/x.sock", 0, 1);
    ck_assert_int_eq(vk_server_start(s), -1);
    vk_server_stop(s, 0); /* harmless on a server that never ran */
    vk_server_free(s);
}
END_TEST

static int free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

START_TEST(tcp_loopback)
{
    char at[64];
    snprintf(at, sizeof(at), "127.0.0.1:%d", free_tcp_port());
    vk_server *s = echo_server(at, 0, 4);
    ck_assert_int_eq(vk_server_start(s), 0);
    vk_channel *c = vk_channel_open(at, 0);
    ck_assert(vk_channel_wait_ready(c, 5000));
    Rep *rep = NULL;
    ck_assert_int_eq(unary(c, "tcp", 0, 0, 0, 5000, &rep, NULL), VK_OK);
    ck_assert_str_eq(rep->text, "tcp");
    free_msg(rep);

    /* The port is taken: a second server must fail, not share it. */
    vk_server *twin = vk_server_new(at, 0, 1);
    ck_assert_int_eq(vk_server_start(twin), -1);
    vk_server_free(twin);

    vk_channel_close(c);
    vk_server_free(s);
}
END_TEST

START_TEST(wait_ready)
{
    ck_assert(vk_channel_wait_ready(ch, 5000));
    char nobody[160];
    snprintf(nobody, sizeof(nobody), "unix:%s/nobody.sock", dir);
    vk_channel *c = vk_channel_open(nobody, 0);
    long t0 = now_ms();
    ck_assert(!vk_channel_wait_ready(c, 300));
    long took = now_ms() - t0;
    ck_assert_int_ge(took, 250);
    ck_assert_int_lt(took, 5000); /* gives up near its 300 ms, with room for load */
    vk_channel_close(c);
}
END_TEST

/* ---- main ------------------------------------------------------------------------- */

static TCase *tcase(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *rpc_suite(void)
{
    Suite *s = suite_create("rpc");
    TCase *tc = tcase(s, "unary");
    tcase_add_test(tc, unary_ok);
    tcase_add_test(tc, unary_error_status);
    tcase_add_test(tc, handler_without_status_is_internal);
    tcase_add_test(tc, unary_deadline);
    tcase_add_test(tc, server_sees_method_and_deadline);
    tcase_add_test(tc, cancelled_look_does_not_wait);
    tcase_add_test(tc, unimplemented_method);
    tcase_add_test(tc, status_names);

    tc = tcase(s, "streams");
    tcase_add_test(tc, server_stream);
    tcase_add_test(tc, client_stream);
    tcase_add_test(tc, bidi_lockstep);
    tcase_add_test(tc, bidi_concurrent);

    tc = tcase(s, "failure");
    tcase_add_test(tc, client_cancel_mid_stream);
    tcase_add_test(tc, cancel_unblocks_recv);
    tcase_add_test(tc, free_cancels);
    tcase_add_test(tc, server_dies_mid_stream);
    tcase_add_test(tc, deadline_mid_stream);
    tcase_add_test(tc, peer_killed_mid_stream);
    tcase_add_test(tc, server_stop_with_grace);
    tcase_add_test(tc, send_blocks_when_peer_stops_reading);

    tc = tcase(s, "limits");
    tcase_add_test(tc, oversize_request_refused_locally);
    tcase_add_test(tc, oversize_on_server);
    tcase_add_test(tc, malformed_request);
    tcase_add_test(tc, garbage_request);
    tcase_add_test(tc, malformed_response);
    tcase_add_test(tc, bad_input_logged_once);
    tcase_add_test(tc, bad_input_log_is_rate_limited);
    tcase_add_test(tc, max_workers);

    tc = tcase(s, "addresses");
    tcase_add_test(tc, unix_socket_is_private);
    tcase_add_test(tc, bad_address);
    tcase_add_test(tc, tcp_loopback);
    tcase_add_test(tc, wait_ready);
    return s;
}

int main(void)
{
    const char *serve = getenv("VKC_TEST_RPC_SERVE");
    if (serve != NULL)
        return serve_main(serve);
    SRunner *sr = srunner_create(rpc_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
