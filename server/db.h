/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The server's durable state in SQLite: users, sessions, reset requests and the
 * append-only transaction log. The one place that meets SQLite. WAL with
 * synchronous=FULL: a function that returned 0 after a write has committed it, and the
 * commit survives kill -9 and power loss. Errors are negative errno (-ENOENT: no such
 * row, -EEXIST: a key taken, -EIO: anything SQLite reports).
 */

#include "config.h"

#define DB_APPROVERS_MAX 16
#define DB_TEXT_MAX 64 /* repair order, customer name, software version */

typedef struct Db Db;

int db_open(const char *path, Db **ret);
Db *db_close(Db *db);
static inline void db_closep(Db **db) {
        db_close(*db);
}

/* Users */

typedef struct DbUser {
        char id[CONFIG_ID_MAX + 1];
        char name[CONFIG_NAME_MAX + 1];
        char dealer[CONFIG_DEALER_MAX + 1];
        UserRole role;
        char title[CONFIG_TITLE_MAX + 1];
        char password_hash[160];
        bool removed;
} DbUser;

/* Inserts or updates a user; `enable` also clears a removal, else a removed user stays removed. */
int db_user_put(Db *db, const DbUser *u, bool enable);
int db_user_get(Db *db, const char *id, DbUser *ret);
int db_user_remove(Db *db, const char *id);
/* The enrolled (not removed) users of a dealer, or of all dealers when dealer is NULL. */
int db_users_list(Db *db, const char *dealer, DbUser **ret, size_t *ret_n);

/* Sessions: the SHA-256 of a bearer token in hex. */

int db_session_add(Db *db, const char *token_digest, const char *user, int64_t expires_at);
/* -ENOENT for an unknown or expired token; purges expired sessions. */
int db_session_get(Db *db, const char *token_digest, int64_t now, char ret_user[CONFIG_ID_MAX + 1]);

/* Reset requests */

typedef struct DbRequest {
        char request_no[33];
        char dealer[CONFIG_DEALER_MAX + 1];
        char technician[CONFIG_ID_MAX + 1];
        char vin[18];
        char repair_order[DB_TEXT_MAX + 1];
        char customer[DB_TEXT_MAX + 1];
        char approvers[DB_APPROVERS_MAX][CONFIG_ID_MAX + 1];
        size_t n_approvers;
        char status[16]; /* pending, approved, denied, completed */
        int64_t created_at;
        char approved_by[CONFIG_ID_MAX + 1]; /* or the manager who denied */
        int64_t approved_at;                 /* 0 when none */
        int64_t valid_till;
        int64_t completed_at;
} DbRequest;

int db_request_add(Db *db, const DbRequest *r);
int db_request_get(Db *db, const char *request_no, DbRequest *ret);
/* Writes status, approved_by, approved_at, valid_till and completed_at, only when the
 * stored status still is `expected_status`; -ESTALE otherwise. */
int db_request_update(Db *db, const DbRequest *r, const char *expected_status);
/* Newest first, at most `limit`; vin and dealer may be NULL for any. */
int db_requests_list(Db *db, const char *dealer, const char *vin, size_t limit, DbRequest **ret, size_t *ret_n);

/* Transactions: append-only. */

typedef struct DbTransaction {
        char transaction_id[33];
        int64_t created_at;
        char user[CONFIG_ID_MAX + 1];
        char dealer[CONFIG_DEALER_MAX + 1];
        char vin[18];
        char repair_order[DB_TEXT_MAX + 1];
        char customer[DB_TEXT_MAX + 1];
        char kind[16];
        char seed_digest[65];
        char request_no[33];
        char passcode[13];
        char request_digest[65]; /* of the whole passcode request, for retries */
} DbTransaction;

/* Commits the transaction (one SQLite transaction) before returning. */
int db_transaction_add(Db *db, const DbTransaction *t);
/* The newest transaction by `user` with `request_digest` created at `since` or later. */
int db_transaction_find_retry(Db *db, const char *user, const char *request_digest, int64_t since, DbTransaction *ret);
/* Transactions with from <= created_at < to, oldest first; dealer NULL for all. */
int db_transactions_list(Db *db, const char *dealer, int64_t from, int64_t to, DbTransaction **ret, size_t *ret_n);
