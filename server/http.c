/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "http.h"
#include "log.h"

struct HttpServer {
        struct MHD_Daemon *daemon;
        HttpHandler handler;
        void *userdata;
};

typedef struct Upload {
        char *data;
        size_t size;
        bool too_large;
} Upload;

const char *http_request_query(const HttpRequest *r, const char *key) {
        return MHD_lookup_connection_value(r->connection, MHD_GET_ARGUMENT_KIND, key);
}

void http_reply_error(HttpReply *reply, unsigned status, const char *id, const char *format, ...) {
        char message[512];
        va_list ap;

        va_start(ap, format);
        vsnprintf(message, sizeof message, format, ap);
        va_end(ap);
        json_decref(reply->json);
        reply->status = status;
        reply->json = json_pack("{s:s, s:s}", "error", id, "message", message);
        if (!reply->json) {
                /* JSON holds only UTF-8: a message that echoes bytes of a request (a path) or
                 * was cut inside a character is sent with its non-ASCII bytes as '?' */
                for (char *p = message; *p; p++)
                        if ((unsigned char) *p >= 0x80)
                                *p = '?';
                reply->json = json_pack("{s:s, s:s}", "error", id, "message", message);
        }
}

static enum MHD_Result send_reply(struct MHD_Connection *c, HttpReply *reply) {
        struct MHD_Response *resp;
        enum MHD_Result ret;
        const char *type;
        char *body;

        if (reply->text) {
                body = TAKE_PTR(reply->text);
                type = reply->content_type ? reply->content_type : "text/plain; charset=utf-8";
        } else {
                if (!reply->json)
                        reply->json = json_object();
                body = json_dumps(reply->json, JSON_COMPACT);
                if (!body)
                        return MHD_NO;
                type = "application/json";
        }
        resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        /* every answer may show a passcode or a request: never cached. The pages are
         * files of this server only (no inline script or style), never framed, and no
         * address leaks to another site. */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        MHD_add_response_header(resp, "Content-Security-Policy", HTTP_CONTENT_SECURITY_POLICY);
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
        if (reply->status == 401)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        ret = MHD_queue_response(c, reply->status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static bool is_json_type(const char *t) {
        size_t l = strlen("application/json");

        if (!t || strncasecmp(t, "application/json", l) != 0)
                return false;
        t += l;
        return *t == 0 || *t == ';' || *t == ' ';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        HttpServer *s = cls;
        Upload *u = *con_cls;
        HttpReply reply = { .status = 200 };
        HttpRequest req = { .method = method, .path = url, .connection = c };
        const char *v;
        enum MHD_Result ret;

        if (!u) {
                u = calloc(1, sizeof *u);
                if (!u)
                        return MHD_NO;
                *con_cls = u;
                v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
                if (v && (strlen(v) > 9 || strtoul(v, NULL, 10) > HTTP_BODY_MAX))
                        u->too_large = true;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                if (!u->too_large && u->size + *upload_data_size <= HTTP_BODY_MAX) {
                        char *p = realloc(u->data, u->size + *upload_data_size + 1);
                        if (!p)
                                return MHD_NO;
                        u->data = p;
                        memcpy(u->data + u->size, upload_data, *upload_data_size);
                        u->size += *upload_data_size;
                        u->data[u->size] = 0;
                } else
                        u->too_large = true;
                *upload_data_size = 0;
                return MHD_YES;
        }

        if (u->too_large) {
                http_reply_error(&reply, 413, "payload-too-large", "The request body is larger than %u bytes.", HTTP_BODY_MAX);
                goto send;
        }
        if (u->size > 0) {
                json_error_t err;

                if (!is_json_type(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE))) {
                        http_reply_error(&reply, 415, "unsupported-media-type", "The request body must be application/json.");
                        goto send;
                }
                req.body = json_loadb(u->data, u->size, JSON_REJECT_DUPLICATES, &err);
                if (!req.body || !json_is_object(req.body)) {
                        http_reply_error(&reply, 400, "invalid-json", "The request body must be a JSON object%s%s.",
                                         req.body ? "" : ": ", req.body ? "" : err.text);
                        goto send;
                }
        }
        v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        if (v) {
                const char *t = NULL;
                if (strncasecmp(v, "Bearer ", 7) == 0)
                        t = v + 7;
                if (t && strlen(t) <= HTTP_BEARER_MAX)
                        req.bearer = t;
        }
        v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
        req.wants_csv = v && strcasestr(v, "text/csv");
        v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
        if (v) {
                bool ok = *v && strlen(v) <= HTTP_IDEMPOTENCY_KEY_MAX;
                for (const char *p = v; ok && *p; p++)
                        ok = *p > ' ' && *p < 127;
                if (!ok) {
                        http_reply_error(&reply, 400, "invalid-request",
                                         "The Idempotency-Key must be 1 to %u printable characters without spaces.",
                                         HTTP_IDEMPOTENCY_KEY_MAX);
                        goto send;
                }
                req.idempotency_key = v;
        }

        s->handler(s->userdata, &req, &reply);

send:
        ret = send_reply(c, &reply);
        json_decref(req.body);
        json_decref(reply.json);
        free(reply.text);
        return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
        Upload *u = *con_cls;

        if (u) {
                free(u->data);
                free(u);
                *con_cls = NULL;
        }
}

static void on_mhd_log(void *cls, const char *format, va_list ap) {
        char buf[512];

        vsnprintf(buf, sizeof buf, format, ap);
        buf[strcspn(buf, "\n")] = 0;
        log_debug("libmicrohttpd: %s", buf);
}

int http_server_start(const char *address, unsigned port, unsigned workers, const char *cert_pem,
                      const char *key_pem, HttpHandler handler, void *userdata, HttpServer **ret) {
        struct sockaddr_storage ss = {};
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS | MHD_USE_ERROR_LOG;
        HttpServer *s;

        if (inet_pton(AF_INET, address, &((struct sockaddr_in *) &ss)->sin_addr) == 1) {
                ss.ss_family = AF_INET;
                ((struct sockaddr_in *) &ss)->sin_port = htons((uint16_t) port);
        } else if (inet_pton(AF_INET6, address, &((struct sockaddr_in6 *) &ss)->sin6_addr) == 1) {
                ss.ss_family = AF_INET6;
                ((struct sockaddr_in6 *) &ss)->sin6_port = htons((uint16_t) port);
                flags |= MHD_USE_IPv6;
        } else
                return log_error_errno(EINVAL, "Listen address \"%s\" is not an IPv4 or IPv6 address.", address);

        s = calloc(1, sizeof *s);
        if (!s)
                return log_oom();
        s->handler = handler;
        s->userdata = userdata;
        s->daemon = MHD_start_daemon(flags, (uint16_t) port, NULL, NULL, on_request, s,
                                     MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &ss,
                                     MHD_OPTION_HTTPS_MEM_CERT, cert_pem,
                                     MHD_OPTION_HTTPS_MEM_KEY, key_pem,
                                     MHD_OPTION_THREAD_POOL_SIZE, (unsigned) MAX(workers, 1U),
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) 30,
                                     MHD_OPTION_CONNECTION_LIMIT, (unsigned) 64,
                                     MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned) 32,
                                     MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                                     MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                                     MHD_OPTION_END);
        if (!s->daemon) {
                free(s);
                return log_error_errno(EADDRNOTAVAIL, "Failed to start HTTPS on %s port %u (address in use, or bad certificate or key).",
                                       address, port);
        }
        *ret = s;
        return 0;
}

HttpServer *http_server_stop(HttpServer *s) {
        if (!s)
                return NULL;
        MHD_stop_daemon(s->daemon);
        free(s);
        return NULL;
}
