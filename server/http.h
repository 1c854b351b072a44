/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * HTTPS with JSON bodies, on libmicrohttpd (the one place that meets it). Requests are
 * handled on a pool of `workers` threads (libmicrohttpd's thread pool), each serving its
 * share of the connections; the bounds (64 connections, 32 per address, 30 s idle
 * timeout, HTTP_BODY_MAX) are the server's whole, whatever the number of workers. Bodies above HTTP_BODY_MAX,
 * bodies that are not `application/json`, and JSON that is not an object are answered
 * here with 413, 415 and 400; everything else goes to the handler. Every answer carries
 * the safety headers (no caching, HTTP_CONTENT_SECURITY_POLICY, nosniff, no referrer, no
 * framing): the same server answers the API and the service's own pages (web-pages.h).
 */

#include <jansson.h>

#include "util.h"

#define HTTP_BODY_MAX (16U * 1024U)
#define HTTP_BEARER_MAX 256
#define HTTP_IDEMPOTENCY_KEY_MAX 128
/* sent with every answer, the API's included (web-pages.h) */
#define HTTP_CONTENT_SECURITY_POLICY                                                                    \
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " \
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

typedef struct HttpRequest {
        const char *method;
        const char *path;
        const char *bearer;          /* the token of "Authorization: Bearer", or NULL */
        bool wants_csv;              /* Accept names text/csv */
        const char *idempotency_key; /* the "Idempotency-Key" header (printable ASCII), or NULL */
        json_t *body;                /* a JSON object, or NULL when the request had no body */
        void *connection;
} HttpRequest;

/* A query parameter, or NULL. */
const char *http_request_query(const HttpRequest *r, const char *key);

typedef struct HttpReply {
        unsigned status;
        json_t *json;             /* owned; sent when text is NULL */
        char *text;               /* owned */
        const char *content_type; /* of text */
} HttpReply;

typedef void (*HttpHandler)(void *userdata, const HttpRequest *req, HttpReply *reply);

typedef struct HttpServer HttpServer;

int http_server_start(const char *address, unsigned port, unsigned workers, const char *cert_pem,
                      const char *key_pem, HttpHandler handler, void *userdata, HttpServer **ret);
HttpServer *http_server_stop(HttpServer *s);

/* A JSON error body {error, message}, as every error is answered. */
void http_reply_error(HttpReply *reply, unsigned status, const char *id, const char *format, ...) _printf_(4, 5);
