/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <sys/epoll.h>

#include "curl-dlopen.h"
#include "curl-glue.h"
#include "event-util.h"
#include "log.h"

/* Connecting is a small part of an exchange: a dead address should fail well before
 * the whole request's timeout. */
#define CURL_GLUE_CONNECT_TIMEOUT_MAX_S 10U

struct CurlRequest {
        CurlGlue *glue;
        CurlRequest *prev, *next;
        CURL *easy;
        struct curl_slist *headers;
        char *body;     /* the request's body: may hold a password, so wiped */
        char *response; /* may hold a token, so wiped */
        size_t size, allocated;
        bool too_big;
        CurlRequestCallback cb;
        void *userdata;
};

struct CurlGlue {
        sd_event *event;
        const ServerConfig *server;
        bool allow_http; /* the configuration names a loopback http:// URL */
        CURLM *multi;
        sd_event_source *timer;
        CurlRequest *requests;
};

static void wipe_free(char *s, size_t n) {
        if (!s)
                return;
        explicit_bzero(s, n);
        free(s);
}

static void wipe_free_string(char *s) {
        if (s)
                wipe_free(s, strlen(s));
}

static void headers_free(struct curl_slist *l) {
        for (struct curl_slist *i = l; i; i = i->next)
                if (i->data)
                        explicit_bzero(i->data, strlen(i->data));
        sym_curl_slist_free_all(l);
}

static void request_free(CurlRequest *r) {
        if (!r)
                return;
        if (r->glue) {
                if (r->prev)
                        r->prev->next = r->next;
                else
                        r->glue->requests = r->next;
                if (r->next)
                        r->next->prev = r->prev;
        }
        if (r->easy) {
                if (r->glue)
                        (void) sym_curl_multi_remove_handle(r->glue->multi, r->easy);
                sym_curl_easy_cleanup(r->easy);
        }
        headers_free(r->headers);
        wipe_free_string(r->body);
        wipe_free(r->response, r->allocated);
        free(r);
}

void curl_request_cancel(CurlRequest *r) {
        request_free(r);
}

/* The one place where curl's codes become errno. */
static int curl_code_to_errno(CURLcode c, bool too_big) {
        switch (c) {
        case CURLE_OK:
                return 0;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_PEER_FAILED_VERIFICATION:
                return -EKEYREJECTED;
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CRL_BADFILE:
                return -ENOKEY;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_SHUTDOWN_FAILED:
        case CURLE_USE_SSL_FAILED:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_HTTP2:
        case CURLE_WEIRD_SERVER_REPLY:
                return -EPROTO;
        case CURLE_WRITE_ERROR:
                return too_big ? -EFBIG : -EIO;
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
                return -EPROTONOSUPPORT;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        default:
                return -EPROTO;
        }
}

static void glue_check_finished(CurlGlue *g) {
        CURLMsg *msg;
        int left;

        while ((msg = sym_curl_multi_info_read(g->multi, &left))) {
                CurlRequest *r = NULL;
                long status = 0;
                int error;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                if (sym_curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &r) != CURLE_OK || !r)
                        continue;
                error = curl_code_to_errno(msg->data.result, r->too_big);
                if (error == 0 && sym_curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
                        error = -EPROTO;
                if (error < 0)
                        log_debug("HTTPS request failed: %s.", sym_curl_easy_strerror(msg->data.result));
                /* msg belongs to the handle: nothing of it is used after this */
                (void) sym_curl_multi_remove_handle(g->multi, r->easy);
                if (!r->response) {
                        r->response = calloc(1, 1);
                        r->allocated = r->response ? 1 : 0;
                }
                if (r->cb)
                        r->cb(error, status, r->response ?: "", r->size, r->userdata);
                request_free(r);
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        CurlGlue *g = userdata;
        int action = 0, running;

        if (revents & EPOLLIN)
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                action |= CURL_CSELECT_ERR;
        if (sym_curl_multi_socket_action(g->multi, fd, action, &running) != CURLM_OK)
                log_debug("sym_curl_multi_socket_action() failed on fd %d.", fd);
        glue_check_finished(g);
        return 0;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        CurlGlue *g = userp;
        sd_event_source *s = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        (void) sym_curl_multi_assign(g->multi, fd, NULL);
                        sd_event_source_disable_unref(s);
                }
                return 0;
        }
        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
                events |= EPOLLIN;
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
                events |= EPOLLOUT;

        if (s) {
                r = sd_event_source_set_io_events(s, events);
                if (r >= 0)
                        r = sd_event_source_set_enabled(s, SD_EVENT_ON);
        } else {
                r = sd_event_add_io(g->event, &s, fd, events, on_io, g);
                if (r >= 0) {
                        (void) sd_event_source_set_description(s, "curl-io");
                        if (sym_curl_multi_assign(g->multi, fd, s) != CURLM_OK) {
                                sd_event_source_disable_unref(s);
                                r = -EIO;
                        }
                }
        }
        if (r < 0) {
                log_warning_errno(r, "Failed to watch an HTTPS socket: %m");
                return -1;
        }
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CurlGlue *g = userdata;
        int running;

        if (sym_curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running) != CURLM_OK)
                log_debug("sym_curl_multi_socket_action() failed on its timeout.");
        glue_check_finished(g);
        return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
        CurlGlue *g = userp;
        usec_t when;
        int r;

        if (timeout_ms < 0)
                return g->timer && sd_event_source_set_enabled(g->timer, SD_EVENT_OFF) < 0 ? -1 : 0;

        when = event_now(g->event) + (usec_t) timeout_ms * USEC_PER_MSEC;
        if (!g->timer) {
                r = sd_event_add_time(g->event, &g->timer, CLOCK_MONOTONIC, when, USEC_PER_MSEC, on_timer, g);
                if (r >= 0)
                        (void) sd_event_source_set_description(g->timer, "curl-timer");
        } else
                r = sd_event_source_set_time(g->timer, when);
        if (r >= 0)
                r = sd_event_source_set_enabled(g->timer, SD_EVENT_ONESHOT);
        if (r < 0) {
                log_warning_errno(r, "Failed to arm the HTTPS timer: %m");
                return -1;
        }
        return 0;
}

static size_t on_write(char *data, size_t size, size_t n, void *userdata) {
        CurlRequest *r = userdata;
        size_t len = size * n;

        if (len > CURL_GLUE_BODY_MAX - r->size) {
                r->too_big = true;
                return 0; /* curl stops with CURLE_WRITE_ERROR */
        }
        if (r->size + len + 1 > r->allocated) {
                size_t a = MAX(r->allocated * 2, r->size + len + 1);
                char *p;

                a = MIN(a, (size_t) CURL_GLUE_BODY_MAX + 1);
                p = malloc(a);
                if (!p)
                        return 0;
                if (r->response) {
                        memcpy(p, r->response, r->size);
                        wipe_free(r->response, r->allocated);
                }
                r->response = p;
                r->allocated = a;
        }
        memcpy(r->response + r->size, data, len);
        r->size += len;
        r->response[r->size] = 0;
        return len;
}

int curl_glue_new(sd_event *e, const ServerConfig *server, CurlGlue **ret) {
        CurlGlue *g;

        int r = dlopen_curl();
        if (r < 0)
                return r;
        if (sym_curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->event = sd_event_ref(e);
        g->server = server;
        g->allow_http = server->url && startswith(server->url, "http://");
        g->multi = sym_curl_multi_init();
        if (!g->multi) {
                curl_glue_free(g);
                return -ENOMEM;
        }
        if (sym_curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
            sym_curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g) != CURLM_OK ||
            sym_curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
            sym_curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g) != CURLM_OK) {
                curl_glue_free(g);
                return -EIO;
        }
        *ret = g;
        return 0;
}

CurlGlue *curl_glue_free(CurlGlue *g) {
        if (!g)
                return NULL;
        while (g->requests)
                request_free(g->requests);
        if (g->multi)
                sym_curl_multi_cleanup(g->multi);
        g->timer = sd_event_source_disable_unref(g->timer);
        sd_event_unref(g->event);
        free(g);
        sym_curl_global_cleanup();
        return NULL;
}

static int request_setup(CurlGlue *g, CurlRequest *r, const char *method, const char *url, const char *bearer,
                         const char *header) {
        const ServerConfig *s = g->server;
        unsigned timeout_s = s->timeout_s ?: CONFIG_DEFAULT_SERVER_TIMEOUT_S;
        const char *protocols = g->allow_http ? "https,http" : "https";
        struct curl_slist *l;
        CURLcode c = CURLE_OK;

#define SET(opt, val)                                                \
        do {                                                         \
                if (c == CURLE_OK)                                   \
                        c = sym_curl_easy_setopt(r->easy, opt, val); \
        } while (0)

        SET(CURLOPT_URL, url);
        SET(CURLOPT_PRIVATE, r);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_PROTOCOLS_STR, protocols);
        SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
        if (s->ca_file)
                SET(CURLOPT_CAINFO, s->ca_file);
        if (s->client_cert) {
                SET(CURLOPT_SSLCERT, s->client_cert);
                SET(CURLOPT_SSLKEY, s->client_key);
        }
        SET(CURLOPT_CONNECTTIMEOUT, (long) MIN(timeout_s, CURL_GLUE_CONNECT_TIMEOUT_MAX_S));
        SET(CURLOPT_TIMEOUT, (long) timeout_s);
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) CURL_GLUE_BODY_MAX);
        SET(CURLOPT_WRITEFUNCTION, on_write);
        SET(CURLOPT_WRITEDATA, r);
        SET(CURLOPT_USERAGENT, "immod/" IMMOD_VERSION);
        if (streq(method, "POST")) {
                SET(CURLOPT_POST, 1L);
                SET(CURLOPT_POSTFIELDS, r->body ?: "");
                SET(CURLOPT_POSTFIELDSIZE, (long) (r->body ? strlen(r->body) : 0));
        } else if (!streq(method, "GET"))
                SET(CURLOPT_CUSTOMREQUEST, method);
#undef SET
        if (c != CURLE_OK)
                return curl_code_to_errno(c, false);

        l = sym_curl_slist_append(NULL, "Accept: application/json");
        if (!l)
                return -ENOMEM;
        r->headers = l;
        if (r->body) {
                l = sym_curl_slist_append(r->headers, "Content-Type: application/json");
                if (!l)
                        return -ENOMEM;
                r->headers = l;
        }
        if (bearer) {
                size_t n = strlen("Authorization: Bearer ") + strlen(bearer) + 1;
                char *h = malloc(n);

                if (!h)
                        return -ENOMEM;
                snprintf(h, n, "Authorization: Bearer %s", bearer);
                l = sym_curl_slist_append(r->headers, h);
                wipe_free(h, n); /* sym_curl_slist_append() copied it */
                if (!l)
                        return -ENOMEM;
                r->headers = l;
        }
        if (header) {
                l = sym_curl_slist_append(r->headers, header);
                if (!l)
                        return -ENOMEM;
                r->headers = l;
        }
        c = sym_curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
        return curl_code_to_errno(c, false);
}

int curl_glue_request(CurlGlue *g, const char *method, const char *url, const char *json_body, const char *bearer,
                      const char *header, CurlRequestCallback cb, void *userdata, CurlRequest **ret) {
        CurlRequest *r;
        int k;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->cb = cb;
        r->userdata = userdata;
        if (json_body) {
                r->body = strdup(json_body);
                if (!r->body) {
                        request_free(r);
                        return -ENOMEM;
                }
        }
        r->easy = sym_curl_easy_init();
        if (!r->easy) {
                request_free(r);
                return -ENOMEM;
        }
        k = request_setup(g, r, method, url, bearer, header);
        if (k < 0) {
                request_free(r);
                return k;
        }
        if (sym_curl_multi_add_handle(g->multi, r->easy) != CURLM_OK) {
                request_free(r);
                return -EIO;
        }
        r->glue = g;
        r->next = g->requests;
        if (g->requests)
                g->requests->prev = r;
        g->requests = r;
        if (ret)
                *ret = r;
        return 0;
}
