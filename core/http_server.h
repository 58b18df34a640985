/* http_server.h -- an HTTP/1.1 server on a libev loop.
 *
 * Non-blocking TLS (OpenSSL; plain HTTP without a TLS context), HTTP/1.1
 * parsing (http-parser), keep-alive, one request at a time per connection. Every resource a client can make
 * the server hold is bounded: connections, request head size and header
 * count, request body, buffered input, time to send a complete request, and
 * time idle between requests. A client past a limit gets 431, 413 or 400
 * and the connection is closed; one past a time limit is disconnected.
 *
 * A request is handed to the handler once complete. The handler answers at
 * once or later (after an asynchronous call), in one of three ways:
 *
 *   http_respond           a complete response
 *   http_stream_begin      a chunked response, then http_write ... and
 *                          http_stream_end (or http_close to cut it short)
 *   http_upgrade           the connection leaves HTTP: raw bytes both ways
 *                          (SPDY, WebSocket)
 *
 * Backpressure: http_writable tells whether the connection's output buffer
 * is below its high-water mark. A producer that is told "no" stops and waits
 * for its `writable` callback. A client that stops reading therefore stops
 * the producer, and the server's memory stays bounded.
 *
 * Lifetime: the http_request is the connection's handle. From the moment
 * the handler gets it until the response is complete (or the connection
 * was closed by http_close), the request is the handler's; the `closed`
 * callback of http_watch tells it that the client went away first, after
 * which it must not touch the request again. Callbacks run from the loop,
 * never from inside an http_* call, and the request stays valid during
 * them. Reading goes on while a response is produced, so a client that
 * disconnects is noticed even when the response has nothing to send.
 *
 * The process must ignore SIGPIPE.
 */
#ifndef VKC_CORE_HTTP_SERVER_H
#define VKC_CORE_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct ev_loop;

typedef struct http_server http_server;
typedef struct http_request http_request;

typedef void (*http_handler_fn)(void *ud, http_request *req);

/* Zero fields take the defaults in brackets. */
typedef struct http_server_config {
    struct ev_loop *loop;
    const char *address;        /* numeric: "0.0.0.0", "::", "127.0.0.1" */
    int port;                   /* 0: an ephemeral port (http_server_port) */
    SSL_CTX *tls;               /* tls.h; referenced, not owned; NULL: plain HTTP */
    size_t max_head;            /* request line + headers [16 KiB] */
    int max_headers;            /* [100] */
    size_t max_body;            /* [1 MiB] */
    int max_connections;        /* [1024] */
    double request_timeout;     /* seconds for TLS handshake + a whole request [30] */
    double idle_timeout;        /* seconds between keep-alive requests [120] */
    size_t high_water;          /* output buffer bytes; see http_writable [256 KiB] */
    http_handler_fn handler;
    void *ud;
} http_server_config;

/* Listen. NULL on failure with a one-line message in err. */
http_server *http_server_new(const http_server_config *cfg, char *err, size_t errlen);
/* The bound port. */
int http_server_port(const http_server *s);
/* Close every connection (their `closed` callbacks run) and the listener. */
void http_server_free(http_server *s);

/* ---- the request -------------------------------------------------------- */

const char *http_request_method(const http_request *r);      /* "GET" */
/* The path, percent-decoded; the query is not part of it. */
const char *http_request_path(const http_request *r);
/* The first value of a query parameter, decoded; NULL when absent. */
const char *http_request_query(const http_request *r, const char *key);
/* The n-th value (from 0) of a repeated one ("command=ls&command=-l");
 * NULL past the last. */
const char *http_request_query_nth(const http_request *r, const char *key, int n);
/* The first header of that name (case-insensitive); NULL when absent. */
const char *http_request_header(const http_request *r, const char *name);
const char *http_request_body(const http_request *r, size_t *len);
/* The client's address, without the port: "10.0.0.1", "::1". */
const char *http_request_peer(const http_request *r);
/* The client's certificate, verified against the client CA; NULL when it
 * sent none. Valid as long as the request. */
X509 *http_request_peer_cert(const http_request *r);
/* The client asked to switch protocols ("Connection: Upgrade"). */
bool http_request_is_upgrade(const http_request *r);

/* ---- callbacks -------------------------------------------------------------- */

typedef struct http_callbacks {
    /* The client went away (or the server is shutting down) before the
     * response was complete. The request is gone once this returns. */
    void (*closed)(void *ud);
    /* The output buffer drained below the high-water mark after
     * http_writable said it was not. May be NULL for one-shot responses. */
    void (*writable)(void *ud);
    /* Upgraded connections: bytes from the client, all of them consumed.
     * http_pause_reading stops the flow. */
    void (*data)(void *ud, const char *data, size_t len);
} http_callbacks;

/* Learn about the client going away while the response is being made.
 * cb must outlive the request; replaces earlier callbacks. */
void http_watch(http_request *r, const http_callbacks *cb, void *ud);

/* ---- responses -------------------------------------------------------------- */

/* headers: "Name: value\r\n" lines (Content-Type and the like), or NULL.
 * Content-Length, Transfer-Encoding and Connection are the server's. A
 * HEAD request gets the head only. The request is no longer the
 * handler's. */
void http_respond(http_request *r, int status, const char *headers,
                  const char *body, size_t len);

/* Start a streamed response; its body follows through http_write. */
void http_stream_begin(http_request *r, int status, const char *headers);
/* Finish it; the request is no longer the handler's. */
void http_stream_end(http_request *r);

/* Queue bytes: body bytes of a streamed response (one chunk), or raw bytes
 * on an upgraded connection. Never blocks and takes every byte, except
 * when the buffer is far past the high-water mark (a producer that ignores
 * http_writable) or the connection is closing: then -1 and nothing is
 * queued; stop producing (`closed` follows if the client went away).
 * Empty writes are no-ops. */
int http_write(http_request *r, const void *data, size_t len);
/* Below the high-water mark. When not, `writable` runs once it is. */
bool http_writable(http_request *r);

/* Send what is queued, then close, without finishing a chunked body: the
 * client sees a cut-off response. `closed` does not run. */
void http_close(http_request *r);

/* ---- upgrades --------------------------------------------------------------- */

/* Switch to raw bytes: head (the 101 response, written by the caller) goes
 * out first, then whatever http_write queues. Bytes the client sent after
 * the request head, and everything after, arrive through cb->data once
 * http_upgrade has returned. The connection ends with http_close or with
 * the client (cb->closed). */
void http_upgrade(http_request *r, const char *head, size_t len,
                  const http_callbacks *cb, void *ud);
/* Stop (true) or resume (false) delivering client bytes on an upgraded
 * connection. While paused, input up to a small bound is buffered, then
 * the server stops reading and TCP pushes back on the client. */
void http_pause_reading(http_request *r, bool paused);

#endif
