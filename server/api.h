/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The endpoints and rules of passcode-service.md (API version 1). The handler runs on
 * the HTTP server's worker threads at once, each with its own database connection to
 * the configuration's database; whatever must hold across requests, threads and server
 * instances is decided inside the database (db.h).
 */

#include "config.h"
#include "db.h"
#include "http.h"

#define API_RETRY_WINDOW_SEC 600 /* an identical passcode (or open reset) request gets the same answer */
#define API_LOGIN_FAILURES_MAX 5 /* per user within API_LOGIN_WINDOW_SEC */
#define API_LOGIN_WINDOW_SEC 900

typedef struct Api Api;

int api_new(const ServerConfig *c, const uint8_t master_key[32], Api **ret);
Api *api_free(Api *a);

/* The configuration's users into the database (a user removed there stays removed). */
int api_sync_users(const ServerConfig *c, Db *db);

/* An HttpHandler; userdata is the Api. */
void api_handle(void *userdata, const HttpRequest *req, HttpReply *reply);
