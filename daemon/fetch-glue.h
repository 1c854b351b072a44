/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * HTTPS requests for immod, each made by a helper process, immod-fetch (fetch-main.c), so
 * that TLS, HTTP and their libraries never live in the process that owns the car. A
 * request starts the helper with two pipes (fetch-frame.h), writes the request and reads
 * the answer on sd-event sources, so that neither a slow server nor a stuck helper stalls
 * the loop. The helper turns every curl code into a negative errno:
 *
 *   -ECONNREFUSED, -EHOSTUNREACH, -ENETUNREACH, -ECONNRESET  cannot connect / connection lost
 *   -ETIMEDOUT    the connect or the total timeout passed (or the helper outlived it)
 *   -EKEYREJECTED the server's certificate is not trusted (not from the configured CA, wrong name)
 *   -EPROTO       the TLS handshake or the HTTP exchange failed otherwise
 *   -EFBIG        the answer is larger than FETCH_BODY_MAX
 *   -ENOKEY       the CA file or the client certificate cannot be used
 *
 * and immod adds its own:
 *
 *   -ENOEXEC      the helper cannot be started (missing, not executable); logged with its path
 *   -EIO          the helper ended without a valid answer (logged with what was wrong)
 *
 * The helper is immod-fetch in the folder of immod's own executable when there is a file of
 * that name there (the build tree), else FETCH_HELPER_PATH (libexecdir/immod).
 */

#include <systemd/sd-event.h>

#include "config.h"
#include "fetch-frame.h"

typedef struct FetchGlue FetchGlue;
typedef struct FetchRequest FetchRequest;

/*
 * error: 0 when an HTTP answer came (any status), else a negative errno as above.
 * The body is NUL-terminated and is wiped after the callback returns.
 */
typedef void (*FetchRequestCallback)(int error, long status, const char *body, size_t size, void *userdata);

/* TLS settings and timeouts from server (which must outlive the glue). */
int fetch_glue_new(sd_event *e, const ServerConfig *server, FetchGlue **ret);
/* Drops the requests still out, without calling their callbacks (their helpers killed). */
FetchGlue *fetch_glue_free(FetchGlue *g);

/*
 * Starts a request: method "GET" or "POST", url absolute, json_body NULL for none (copied
 * and wiped when done), bearer NULL for none (copied and wiped), header one more request
 * header ("Name: value") or NULL. The callback is called exactly once, from the event
 * loop, unless the request is cancelled first.
 */
int fetch_glue_request(FetchGlue *g, const char *method, const char *url, const char *json_body, const char *bearer,
                       const char *header, FetchRequestCallback cb, void *userdata, FetchRequest **ret);
/* Drops a request without calling its callback: its helper is killed (and reaped later). */
void fetch_request_cancel(FetchRequest *r);
