/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The server's durable state: users, sessions, the login rate limit, reset requests and
 * the append-only transaction log. Everything that two server instances must agree on
 * lives here, so instances keep nothing of their own. Two backends behind one interface
 * (db-backend.h): SQLite (a file path; WAL with synchronous=FULL) and PostgreSQL (a
 * postgresql:// URI). db_open() creates the schema or brings it forward (a
 * schema_version table and forward migrations). A function that returned 0 after a
 * write has committed it. A Db is one connection: use it from one thread at a time.
 * Errors are negative errno (-ENOENT: no such row, -EEXIST: a key taken, -ENOTCONN: the
 * database server is unreachable, -EIO: anything else the database reports).
 */

#include "config.h"

#define DB_APPROVERS_MAX 16
#define DB_TEXT_MAX 64 /* repair order, customer name, software version */
#define DB_IDEMPOTENCY_KEY_MAX 128
#define DB_SCHEMA_VERSION 2

typedef struct Db Db;

/* True for a postgresql:// (or postgres://) URI, else database is a file path. */
bool db_is_postgres(const char *database);
/* "SQLite" or "PostgreSQL". */
const char *db_backend_name(Db *db);

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

/* Also purges expired sessions. */
int db_session_add(Db *db, const char *token_digest, const char *user, int64_t expires_at);
/* -ENOENT for an unknown or expired token. */
int db_session_get(Db *db, const char *token_digest, int64_t now, char ret_user[CONFIG_ID_MAX + 1]);

/* The login rate limit: failed logins of a user counted in a window that starts with
 * the first failure; a window older than `window` seconds starts again. */

/* The failures in the current window and when it started (0 and 0 when none). */
int db_login_failures_get(Db *db, const char *user, int64_t now, int64_t window, unsigned *ret_count,
                          int64_t *ret_since);
int db_login_failure_add(Db *db, const char *user, int64_t now, int64_t window);
int db_login_failures_clear(Db *db, const char *user);

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
        char request_digest[65];                          /* of the request's body, for retries */
        char idempotency_key[DB_IDEMPOTENCY_KEY_MAX + 1]; /* the client's, or "" */
} DbRequest;

int db_request_add(Db *db, const DbRequest *r);
/* Adds r, unless it is a retry: an earlier request of the same technician with the same
 * idempotency key (at any time), or, without a key, with the same request_digest made at
 * `since` or later and still pending or approved. Then that one goes into ret and 1 is
 * returned; 0 when r was added; -EILSEQ when the key was used for a different request.
 * Atomic across connections and instances. */
int db_request_add_once(Db *db, const DbRequest *r, int64_t since, DbRequest *ret);
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

/* Commits the transaction before returning. */
int db_transaction_add(Db *db, const DbTransaction *t);
/* Adds t, unless `t->user` asked for the same (t->request_digest) at `since` or later:
 * then that transaction goes into ret and 1 is returned; 0 when t was added (and
 * committed). Atomic across connections and instances: a retry never makes a second
 * transaction, whichever instance it reaches. */
int db_transaction_issue(Db *db, const DbTransaction *t, int64_t since, DbTransaction *ret);
/* Transactions with from <= created_at < to, oldest first; dealer NULL for all. */
int db_transactions_list(Db *db, const char *dealer, int64_t from, int64_t to, DbTransaction **ret, size_t *ret_n);

/* Copying a database (SQLite into PostgreSQL, say): users (removed ones too), sessions,
 * requests and the whole transaction log, in one transaction on `to`, which must hold
 * no requests and no transactions yet. The counts copied go into ret. */
typedef struct DbCopyStats {
        size_t users, sessions, requests, transactions;
} DbCopyStats;
int db_copy(Db *from, Db *to, DbCopyStats *ret);
