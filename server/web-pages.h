/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The service's own web pages (www/: the bulletins' screens for the request, the manager's
 * inbox and decision, the passcodes and the report). A fixed list of files, read once at
 * start from the configured folder and answered from memory: a URL is only ever compared
 * with that list, never made into a path. The pages call the API like any client; nothing
 * is decided in them.
 */

#include "http.h"

#define WEB_PAGE_MAX (256U * 1024U)

typedef struct WebPages WebPages;

/* The files of `dir`; when one is missing, a warning and no pages (the API still serves). */
int web_pages_load(const char *dir, WebPages **ret);
WebPages *web_pages_free(WebPages *w);

/* GET of "/" or of one of the files; 404 or 405 otherwise. */
void web_pages_handle(const WebPages *w, const HttpRequest *req, HttpReply *reply);
