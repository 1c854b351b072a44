/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dlfcn.h>
#include <errno.h>

#include "curl-dlopen.h"
#include "log.h"
#include "util.h"

#define LIBCURL_SONAME "libcurl.so.4"

CURLcode (*sym_curl_global_init)(long flags);
void (*sym_curl_global_cleanup)(void);
CURL *(*sym_curl_easy_init)(void);
CURLcode (*sym_curl_easy_setopt)(CURL *curl, CURLoption option, ...);
CURLcode (*sym_curl_easy_getinfo)(CURL *curl, CURLINFO info, ...);
const char *(*sym_curl_easy_strerror)(CURLcode code);
void (*sym_curl_easy_cleanup)(CURL *curl);
CURLM *(*sym_curl_multi_init)(void);
CURLMcode (*sym_curl_multi_setopt)(CURLM *multi, CURLMoption option, ...);
CURLMcode (*sym_curl_multi_add_handle)(CURLM *multi, CURL *curl);
CURLMcode (*sym_curl_multi_remove_handle)(CURLM *multi, CURL *curl);
CURLMcode (*sym_curl_multi_assign)(CURLM *multi, curl_socket_t s, void *p);
CURLMcode (*sym_curl_multi_socket_action)(CURLM *multi, curl_socket_t s, int ev_bitmask, int *running);
CURLMsg *(*sym_curl_multi_info_read)(CURLM *multi, int *msgs_in_queue);
CURLMcode (*sym_curl_multi_cleanup)(CURLM *multi);
struct curl_slist *(*sym_curl_slist_append)(struct curl_slist *list, const char *s);
void (*sym_curl_slist_free_all)(struct curl_slist *list);

#define SYM(name) \
        { #name, (void **) &sym_##name }

int dlopen_curl(void) {
        static const struct {
                const char *name;
                void **ptr;
        } syms[] = {
                SYM(curl_global_init),
                SYM(curl_global_cleanup),
                SYM(curl_easy_init),
                SYM(curl_easy_setopt),
                SYM(curl_easy_getinfo),
                SYM(curl_easy_strerror),
                SYM(curl_easy_cleanup),
                SYM(curl_multi_init),
                SYM(curl_multi_setopt),
                SYM(curl_multi_add_handle),
                SYM(curl_multi_remove_handle),
                SYM(curl_multi_assign),
                SYM(curl_multi_socket_action),
                SYM(curl_multi_info_read),
                SYM(curl_multi_cleanup),
                SYM(curl_slist_append),
                SYM(curl_slist_free_all),
        };
        static void *handle = NULL;
        void *h;

        if (handle)
                return 0;
        /* never unloaded: libcurl's global state must outlive every handle */
        h = dlopen(LIBCURL_SONAME, RTLD_NOW | RTLD_NODELETE);
        if (!h)
                return log_error_errno(EOPNOTSUPP, "Cannot load %s (package libcurl4): %s; passcodes and approvals "
                                                   "cannot be fetched.",
                                       LIBCURL_SONAME, dlerror());
        for (size_t i = 0; i < ELEMENTSOF(syms); i++) {
                *syms[i].ptr = dlsym(h, syms[i].name);
                if (!*syms[i].ptr) {
                        log_error("%s lacks %s(); passcodes and approvals cannot be fetched.", LIBCURL_SONAME,
                                  syms[i].name);
                        (void) dlclose(h);
                        return -EOPNOTSUPP;
                }
        }
        handle = h;
        return 0;
}
