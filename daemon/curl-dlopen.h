/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libcurl, loaded when a passcode service is first used rather than linked: the process
 * that owns the car carries TLS and HTTP (and the 27 libraries they bring) only where a
 * service is configured. The functions curl-glue.c calls, as sym_ pointers.
 */

#include <curl/curl.h>

extern CURLcode (*sym_curl_global_init)(long flags);
extern void (*sym_curl_global_cleanup)(void);
extern CURL *(*sym_curl_easy_init)(void);
extern CURLcode (*sym_curl_easy_setopt)(CURL *curl, CURLoption option, ...);
extern CURLcode (*sym_curl_easy_getinfo)(CURL *curl, CURLINFO info, ...);
extern const char *(*sym_curl_easy_strerror)(CURLcode code);
extern void (*sym_curl_easy_cleanup)(CURL *curl);
extern CURLM *(*sym_curl_multi_init)(void);
extern CURLMcode (*sym_curl_multi_setopt)(CURLM *multi, CURLMoption option, ...);
extern CURLMcode (*sym_curl_multi_add_handle)(CURLM *multi, CURL *curl);
extern CURLMcode (*sym_curl_multi_remove_handle)(CURLM *multi, CURL *curl);
extern CURLMcode (*sym_curl_multi_assign)(CURLM *multi, curl_socket_t s, void *p);
extern CURLMcode (*sym_curl_multi_socket_action)(CURLM *multi, curl_socket_t s, int ev_bitmask, int *running);
extern CURLMsg *(*sym_curl_multi_info_read)(CURLM *multi, int *msgs_in_queue);
extern CURLMcode (*sym_curl_multi_cleanup)(CURLM *multi);
extern struct curl_slist *(*sym_curl_slist_append)(struct curl_slist *list, const char *s);
extern void (*sym_curl_slist_free_all)(struct curl_slist *list);

/* Loads libcurl once (later calls return at once); -EOPNOTSUPP, with the reason logged,
 * when it is not installed or lacks a function. */
int dlopen_curl(void);
