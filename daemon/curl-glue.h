/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The one adapter to libcurl: HTTPS requests on curl's multi-socket interface, driven by
 * sd-event io and timer sources, so that a slow server never stalls the loop. Every curl
 * code is turned into a negative errno here and nowhere else:
 *
 *   -ECONNREFUSED, -EHOSTUNREACH, -ENETUNREACH, -ECONNRESET  cannot connect / connection lost
 *   -ETIMEDOUT    the connect or the total timeout passed
 *   -EKEYREJECTED the server's certificate is not trusted (not from the configured CA, wrong name)
 *   -EPROTO       the TLS handshake or the HTTP exchange failed otherwise
 *   -EFBIG        the answer is larger than CURL_GLUE_BODY_MAX
 *   -ENOKEY       the CA file or the client certificate cannot be used
 */

#include <systemd/sd-event.h>

#include "config.h"

#define CURL_GLUE_BODY_MAX (256U * 1024U)

typedef struct CurlGlue CurlGlue;
typedef struct CurlRequest CurlRequest;

/*
 * error: 0 when an HTTP answer came (any status), else a negative errno as above.
 * The body is NUL-terminated and is wiped after the callback returns.
 */
typedef void (*CurlRequestCallback)(int error, long status, const char *body, size_t size, void *userdata);

/* TLS settings and timeouts from server (which must outlive the glue). */
int curl_glue_new(sd_event *e, const ServerConfig *server, CurlGlue **ret);
/* Drops the requests still out, without calling their callbacks. */
CurlGlue *curl_glue_free(CurlGlue *g);

/*
 * Starts a request: method "GET" or "POST", url absolute, json_body NULL for none (copied
 * and wiped when done), bearer NULL for none (copied and wiped). The callback is called
 * exactly once, from the event loop, unless the request is cancelled first.
 */
/* `header`: one more request header ("Name: value"), or NULL. */
int curl_glue_request(CurlGlue *g, const char *method, const char *url, const char *json_body, const char *bearer,
                      const char *header, CurlRequestCallback cb, void *userdata, CurlRequest **ret);
/* Drops a request without calling its callback. */
void curl_request_cancel(CurlRequest *r);
