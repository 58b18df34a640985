/* metrics_http.c -- vkc's Prometheus metrics over plain HTTP. */
#include "metrics_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_server.h"

struct metrics_http {
    http_server *http;
    metrics *m;
};

static void handle(void *ud, http_request *req)
{
    metrics_http *mh = ud;
    const char *method = http_request_method(req);
    const char *path = http_request_path(req);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        http_respond(req, 405, "Allow: GET, HEAD\r\n", NULL, 0);
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        http_respond(req, 200, "Content-Type: text/plain\r\n", "ok", 2);
        return;
    }
    if (strcmp(path, "/metrics") != 0) {
        http_respond(req, 404, "Content-Type: text/plain\r\n", "not found\n", 10);
        return;
    }
    vk_buf body = VK_BUF_INIT;
    if (metrics_render(mh->m, &body) < 0)
        http_respond(req, 500, "Content-Type: text/plain\r\n", "out of memory\n", 14);
    else
        http_respond(req, 200, METRICS_HEADERS, body.data ? body.data : "", body.len);
    vk_buf_free(&body);
}

metrics_http *metrics_http_new(struct ev_loop *loop, const char *addr, metrics *m, char *err,
                               size_t errlen)
{
    /* flags.c checked the form: [host]:port, host maybe in brackets. */
    const char *colon = strrchr(addr, ':');
    size_t host_len = (size_t)(colon - addr);
    char host[256];
    if (addr[0] == '[') {
        addr++;
        host_len -= 2;
    }
    if (host_len >= sizeof host) {
        snprintf(err, errlen, "metrics address: host too long");
        return NULL;
    }
    memcpy(host, addr, host_len);
    host[host_len] = '\0';
    metrics_http *mh = calloc(1, sizeof *mh);
    if (!mh) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    mh->m = m;
    http_server_config hc = {
        .loop = loop,
        .address = host_len ? host : NULL,
        .port = atoi(colon + 1),
        .max_connections = 64, /* scrapers, not clients */
        .handler = handle,
        .ud = mh,
    };
    mh->http = http_server_new(&hc, err, errlen);
    if (!mh->http) {
        free(mh);
        return NULL;
    }
    return mh;
}

int metrics_http_port(const metrics_http *mh)
{
    return http_server_port(mh->http);
}

void metrics_http_free(metrics_http *mh)
{
    if (!mh)
        return;
    http_server_free(mh->http);
    free(mh);
}
