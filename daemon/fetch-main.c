/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * immod-fetch: one HTTPS request for immod, then exit. immod starts it for each call to the
 * passcode service, so that TLS, HTTP and the libraries they bring never live in the process
 * that owns the car. The request comes on stdin and the answer goes to stdout, framed as
 * fetch-frame.h says; what goes wrong is logged on stderr, which is immod's.
 *
 * Exit status: 0 when an answer was written (an HTTP answer or an errno), 1 when the request
 * was not valid or the answer could not be written.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>

#include "fetch-frame.h"
#include "fileio.h"
#include "log.h"

/* Connecting is a small part of an exchange: a dead address should fail well before the
 * whole request's timeout. */
#define FETCH_CONNECT_TIMEOUT_MAX_S 10U

typedef struct Request {
        FetchRequestHeader header;
        char *fields[_FETCH_FIELD_MAX]; /* NULL when absent; wiped */
        size_t sizes[_FETCH_FIELD_MAX];
} Request;

typedef struct Response {
        char *data; /* may hold a token or a passcode, so wiped */
        size_t size, allocated;
        bool too_big;
} Response;

static void request_done(Request *q) {
        for (size_t i = 0; i < _FETCH_FIELD_MAX; i++)
                wipe_free(q->fields[i], q->sizes[i] + 1);
}

static const char *read_error(int r) {
        return r == -EPIPE ? "the input ended first" : strerror(-r);
}

static int read_request(int fd, Request *q) {
        const char *why;
        uint8_t extra;
        int r;

        r = read_exact(fd, &q->header, sizeof(q->header));
        if (r < 0)
                return log_error_errno(r, "Cannot read the request's header (%zu bytes) from immod: %s",
                                       sizeof(q->header), read_error(r));
        if (q->header.magic != FETCH_REQUEST_MAGIC)
                return log_error_errno(EINVAL, "The request does not start with the magic number %#x, got %#x.",
                                       FETCH_REQUEST_MAGIC, q->header.magic);
        if (q->header.timeout_s < 1 || q->header.timeout_s > FETCH_TIMEOUT_S_MAX)
                return log_error_errno(EINVAL, "The request's timeout is %u s; expected 1 to %u s.",
                                       q->header.timeout_s, FETCH_TIMEOUT_S_MAX);
        if (q->header.flags & ~FETCH_FLAGS_ALL)
                return log_error_errno(EINVAL, "The request's flags %#x hold unknown bits; expected only %#x.",
                                       q->header.flags, FETCH_FLAGS_ALL);

        for (FetchField f = 0; f < _FETCH_FIELD_MAX; f++) {
                uint32_t size;

                r = read_exact(fd, &size, sizeof(size));
                if (r < 0)
                        return log_error_errno(r, "Cannot read the length of the request's %s: %s",
                                               fetch_field_to_string(f), read_error(r));
                if (size > fetch_field_max(f))
                        return log_error_errno(EINVAL, "The request's %s is %u bytes long; expected at most %zu.",
                                               fetch_field_to_string(f), size, fetch_field_max(f));
                if (size == 0)
                        continue;
                q->fields[f] = malloc(size + 1);
                if (!q->fields[f])
                        return log_oom();
                q->sizes[f] = size;
                r = read_exact(fd, q->fields[f], size);
                if (r < 0)
                        return log_error_errno(r, "Cannot read the request's %s (%u bytes): %s",
                                               fetch_field_to_string(f), size, read_error(r));
                q->fields[f][size] = 0;
                if (fetch_field_check(f, q->fields[f], size, &why) < 0)
                        return log_error_errno(EINVAL, "The request's %s %s.", fetch_field_to_string(f), why);
        }
        if (!q->fields[FETCH_FIELD_METHOD] || !q->fields[FETCH_FIELD_URL])
                return log_error_errno(EINVAL, "The request has no %s; expected a method and a URL.",
                                       q->fields[FETCH_FIELD_METHOD] ? "URL" : "method");
        if (!!q->fields[FETCH_FIELD_CLIENT_CERT] != !!q->fields[FETCH_FIELD_CLIENT_KEY])
                return log_error_errno(EINVAL, "The request has a client certificate or key without the other; "
                                               "expected both or neither.");

        r = read_exact(fd, &extra, 1);
        if (r != -EPIPE)
                return log_error_errno(r < 0 ? r : EINVAL, "The request does not end after its last field: %s",
                                       r < 0 ? strerror(-r) : "more bytes follow");
        return 0;
}

/* The one place where curl's codes become errno (the list is in fetch-glue.h). */
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

static size_t on_write(char *data, size_t size, size_t n, void *userdata) {
        Response *b = userdata;
        size_t len = size * n;

        if (len > FETCH_BODY_MAX - b->size) {
                b->too_big = true;
                return 0; /* curl stops with CURLE_WRITE_ERROR */
        }
        if (b->size + len + 1 > b->allocated) {
                size_t a = MIN(MAX(b->allocated * 2, b->size + len + 1), (size_t) FETCH_BODY_MAX + 1);
                char *p = malloc(a);

                if (!p)
                        return 0;
                if (b->data) {
                        memcpy(p, b->data, b->size);
                        wipe_free(b->data, b->allocated);
                }
                b->data = p;
                b->allocated = a;
        }
        memcpy(b->data + b->size, data, len);
        b->size += len;
        return len;
}

static void headers_free(struct curl_slist *l) {
        for (struct curl_slist *i = l; i; i = i->next)
                if (i->data)
                        explicit_bzero(i->data, strlen(i->data));
        curl_slist_free_all(l);
}

/* Appends one header to *l: false when out of memory. */
static bool header_add(struct curl_slist **l, const char *h) {
        struct curl_slist *n = curl_slist_append(*l, h);

        if (!n)
                return false;
        *l = n;
        return true;
}

/* The request's headers in *ret (also on failure, for the caller to free). */
static CURLcode headers_make(const Request *q, struct curl_slist **ret) {
        const char *bearer = q->fields[FETCH_FIELD_BEARER];

        if (!header_add(ret, "Accept: application/json"))
                return CURLE_OUT_OF_MEMORY;
        if (q->fields[FETCH_FIELD_BODY] && !header_add(ret, "Content-Type: application/json"))
                return CURLE_OUT_OF_MEMORY;
        if (bearer) {
                size_t n = strlen("Authorization: Bearer ") + strlen(bearer) + 1;
                char *h = malloc(n);
                bool ok;

                if (!h)
                        return CURLE_OUT_OF_MEMORY;
                snprintf(h, n, "Authorization: Bearer %s", bearer);
                ok = header_add(ret, h);
                wipe_free(h, n); /* curl_slist_append() copied it */
                if (!ok)
                        return CURLE_OUT_OF_MEMORY;
        }
        if (q->fields[FETCH_FIELD_HEADER] && !header_add(ret, q->fields[FETCH_FIELD_HEADER]))
                return CURLE_OUT_OF_MEMORY;
        return CURLE_OK;
}

/* The exchange: 0 with *ret_status, or a negative errno of fetch-glue.h. */
static int perform(const Request *q, Response *b, long *ret_status) {
        unsigned timeout_s = q->header.timeout_s;
        const char *body = q->fields[FETCH_FIELD_BODY];
        struct curl_slist *headers = NULL;
        CURLcode c;
        CURL *easy;

        easy = curl_easy_init();
        if (!easy)
                return -ENOMEM;

        c = headers_make(q, &headers);

#define SET(opt, val)                                         \
        do {                                                  \
                if (c == CURLE_OK)                            \
                        c = curl_easy_setopt(easy, opt, val); \
        } while (0)

        SET(CURLOPT_URL, q->fields[FETCH_FIELD_URL]);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_PROTOCOLS_STR, q->header.flags & FETCH_FLAG_ALLOW_HTTP ? "https,http" : "https");
        SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
        if (q->fields[FETCH_FIELD_CA_FILE])
                SET(CURLOPT_CAINFO, q->fields[FETCH_FIELD_CA_FILE]);
        if (q->fields[FETCH_FIELD_CLIENT_CERT]) {
                SET(CURLOPT_SSLCERT, q->fields[FETCH_FIELD_CLIENT_CERT]);
                SET(CURLOPT_SSLKEY, q->fields[FETCH_FIELD_CLIENT_KEY]);
        }
        SET(CURLOPT_CONNECTTIMEOUT, (long) MIN(timeout_s, FETCH_CONNECT_TIMEOUT_MAX_S));
        SET(CURLOPT_TIMEOUT, (long) timeout_s);
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) FETCH_BODY_MAX);
        SET(CURLOPT_WRITEFUNCTION, on_write);
        SET(CURLOPT_WRITEDATA, b);
        SET(CURLOPT_USERAGENT, "immod/" IMMOD_VERSION);
        SET(CURLOPT_HTTPHEADER, headers);
        if (streq(q->fields[FETCH_FIELD_METHOD], "POST")) {
                SET(CURLOPT_POST, 1L);
                SET(CURLOPT_POSTFIELDS, body ?: "");
                SET(CURLOPT_POSTFIELDSIZE, (long) q->sizes[FETCH_FIELD_BODY]);
        }
#undef SET

        if (c == CURLE_OK)
                c = curl_easy_perform(easy);
        if (c == CURLE_OK && curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, ret_status) != CURLE_OK)
                c = CURLE_WEIRD_SERVER_REPLY;
        if (c != CURLE_OK)
                log_info("HTTPS request failed: %s.", curl_easy_strerror(c));
        curl_easy_cleanup(easy);
        headers_free(headers);
        return curl_code_to_errno(c, b->too_big);
}

static int write_answer(int fd, int error, long status, const Response *b) {
        FetchAnswerHeader h = {
                .magic = FETCH_ANSWER_MAGIC,
                .error = error,
        };
        const char *why;
        int r;

        if (error == 0) {
                h.status = (uint32_t) status;
                h.body_size = (uint32_t) b->size;
        }
        /* what immod would refuse is refused here, with the reason, rather than sent */
        if (fetch_answer_header_check(&h, &why) < 0) {
                log_error("The server's answer cannot be passed on: %s (HTTP status %ld).", why, status);
                h = (FetchAnswerHeader) { .magic = FETCH_ANSWER_MAGIC, .error = -EPROTO };
        }
        r = write_all(fd, &h, sizeof(h));
        if (r >= 0 && h.body_size > 0)
                r = write_all(fd, b->data, b->size);
        if (r < 0)
                return log_error_errno(r, "Cannot write the answer to immod: %m");
        return 0;
}

int main(int argc, char *argv[]) {
        Request q = {};
        Response b = {};
        long status = 0;
        int r, error;

        log_set_ident("immod-fetch");
        if (argc != 1) {
                log_error("Takes no arguments: the request comes on stdin (immod starts this program).");
                return 1;
        }
        /* a write to a closed pipe is an error to report, not a silent death */
        (void) signal(SIGPIPE, SIG_IGN);

        r = read_request(STDIN_FILENO, &q);
        if (r < 0) {
                request_done(&q);
                return 1;
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                log_error("Cannot initialise libcurl.");
                error = -ENOMEM;
        } else
                error = perform(&q, &b, &status);
        request_done(&q);

        r = write_answer(STDOUT_FILENO, error, status, &b);
        wipe_free(b.data, b.allocated);
        curl_global_cleanup();
        return r < 0 ? 1 : 0;
}
