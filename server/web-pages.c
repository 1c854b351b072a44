/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "fileio.h"
#include "log.h"
#include "web-pages.h"

static const struct {
        const char *url;
        const char *file;
        const char *type;
} web_files[] = {
        { "/", "index.html", "text/html; charset=utf-8" },
        { "/index.html", "index.html", "text/html; charset=utf-8" },
        { "/style.css", "style.css", "text/css; charset=utf-8" },
        { "/app.js", "app.js", "text/javascript; charset=utf-8" },
        { "/api.js", "api.js", "text/javascript; charset=utf-8" },
        { "/icon.svg", "icon.svg", "image/svg+xml" },
};

struct WebPages {
        char *dir;
        char *content[ELEMENTSOF(web_files)];
};

WebPages *web_pages_free(WebPages *w) {
        if (!w)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(web_files); i++)
                free(w->content[i]);
        free(w->dir);
        free(w);
        return NULL;
}

int web_pages_load(const char *dir, WebPages **ret) {
        WebPages *w = calloc(1, sizeof *w);
        int r;

        if (!w)
                return log_oom();
        w->dir = strdup(dir);
        if (!w->dir) {
                web_pages_free(w);
                return log_oom();
        }
        for (size_t i = 0; i < ELEMENTSOF(web_files); i++) {
                _cleanup_free_ char *path = NULL;

                if (asprintf(&path, "%s/%s", dir, web_files[i].file) < 0) {
                        web_pages_free(w);
                        return log_oom();
                }
                r = read_file_bounded(path, WEB_PAGE_MAX, &w->content[i], NULL);
                if (r < 0) {
                        log_warning_errno(r, "Web pages not served: cannot read %s (%m); only the API is served.", path);
                        for (size_t j = 0; j < ELEMENTSOF(web_files); j++)
                                w->content[j] = mfree(w->content[j]);
                        break;
                }
        }
        *ret = w;
        return 0;
}

void web_pages_handle(const WebPages *w, const HttpRequest *req, HttpReply *reply) {
        for (size_t i = 0; i < ELEMENTSOF(web_files); i++) {
                if (!streq(req->path, web_files[i].url))
                        continue;
                if (!w->content[i])
                        return http_reply_error(reply, 404, "not-found",
                                                "The web pages are not installed in %s; the API lives under /api/v1/.", w->dir);
                if (!streq(req->method, "GET") && !streq(req->method, "HEAD"))
                        return http_reply_error(reply, 405, "method-not-allowed", "Use GET here.");
                reply->text = strdup(w->content[i]);
                if (!reply->text)
                        return http_reply_error(reply, 500, "internal-error", "Out of memory; try again.");
                reply->content_type = web_files[i].type;
                return;
        }
        http_reply_error(reply, 404, "not-found", "Unknown path; the pages are at / and the API under /api/v1/.");
}
