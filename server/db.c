/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <sqlite3.h>
#include <stdio.h>

#include "db.h"
#include "log.h"

struct Db {
        sqlite3 *sql;
};

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS users ("
        "  id TEXT PRIMARY KEY, name TEXT NOT NULL, dealer TEXT NOT NULL, role TEXT NOT NULL,"
        "  title TEXT NOT NULL, password_hash TEXT NOT NULL, removed INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE IF NOT EXISTS sessions ("
        "  token_digest TEXT PRIMARY KEY, user_id TEXT NOT NULL, expires_at INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS requests ("
        "  request_no TEXT PRIMARY KEY, dealer TEXT NOT NULL, technician TEXT NOT NULL, vin TEXT NOT NULL,"
        "  repair_order TEXT NOT NULL, customer TEXT NOT NULL, approvers TEXT NOT NULL, status TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL, approved_by TEXT NOT NULL DEFAULT '', approved_at INTEGER NOT NULL DEFAULT 0,"
        "  valid_till INTEGER NOT NULL DEFAULT 0, completed_at INTEGER NOT NULL DEFAULT 0);"
        "CREATE INDEX IF NOT EXISTS requests_vin ON requests(dealer, vin);"
        "CREATE TABLE IF NOT EXISTS transactions ("
        "  seq INTEGER PRIMARY KEY AUTOINCREMENT, transaction_id TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL,"
        "  user_id TEXT NOT NULL, dealer TEXT NOT NULL, vin TEXT NOT NULL, repair_order TEXT NOT NULL,"
        "  customer TEXT NOT NULL, kind TEXT NOT NULL, seed_digest TEXT NOT NULL, request_no TEXT NOT NULL,"
        "  passcode TEXT NOT NULL, request_digest TEXT NOT NULL);"
        "CREATE INDEX IF NOT EXISTS transactions_month ON transactions(dealer, created_at);"
        "CREATE INDEX IF NOT EXISTS transactions_retry ON transactions(user_id, request_digest, created_at);"
        /* the log is append-only, also for anyone with the sqlite3 shell */
        "CREATE TRIGGER IF NOT EXISTS transactions_no_update BEFORE UPDATE ON transactions"
        "  BEGIN SELECT RAISE(ABORT, 'the transaction log is append-only'); END;"
        "CREATE TRIGGER IF NOT EXISTS transactions_no_delete BEFORE DELETE ON transactions"
        "  BEGIN SELECT RAISE(ABORT, 'the transaction log is append-only'); END;";

static int sql_error(Db *db, int rc, const char *what) {
        log_error("Database: %s failed: %s", what, sqlite3_errmsg(db->sql));
        if (rc == SQLITE_CONSTRAINT)
                return -EEXIST;
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
                return -EBUSY;
        return -EIO;
}

static int exec(Db *db, const char *sql) {
        char *err = NULL;
        int rc;

        rc = sqlite3_exec(db->sql, sql, NULL, NULL, &err);
        if (rc != SQLITE_OK) {
                log_error("Database: \"%.40s...\" failed: %s", sql, err ? err : sqlite3_errstr(rc));
                sqlite3_free(err);
                return rc == SQLITE_BUSY ? -EBUSY : -EIO;
        }
        return 0;
}

static int prepare(Db *db, const char *sql, sqlite3_stmt **ret) {
        int rc = sqlite3_prepare_v2(db->sql, sql, -1, ret, NULL);
        if (rc != SQLITE_OK)
                return sql_error(db, rc, "prepare");
        return 0;
}

static void finalizep(sqlite3_stmt **s) {
        sqlite3_finalize(*s);
}
#define _cleanup_stmt_ _cleanup_(finalizep)

static void bind_text(sqlite3_stmt *s, int i, const char *v) {
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

static void column_text(sqlite3_stmt *s, int i, char *buf, size_t size) {
        const unsigned char *t = sqlite3_column_text(s, i);
        snprintf(buf, size, "%s", t ? (const char *) t : "");
}

/* Runs a statement that returns no rows. */
static int step_done(Db *db, sqlite3_stmt *s, const char *what) {
        int rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
                return sql_error(db, rc, what);
        return 0;
}

int db_open(const char *path, Db **ret) {
        _cleanup_(db_closep) Db *db = NULL;
        int rc, r;

        db = calloc(1, sizeof *db);
        if (!db)
                return -ENOMEM;
        rc = sqlite3_open_v2(path, &db->sql, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
        if (rc != SQLITE_OK) {
                log_error("Failed to open database %s: %s", path,
                          db->sql ? sqlite3_errmsg(db->sql) : sqlite3_errstr(rc));
                return -EIO;
        }
        sqlite3_busy_timeout(db->sql, 5000);
        r = exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
        if (r < 0)
                return r;
        r = exec(db, schema);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(db);
        return 0;
}

Db *db_close(Db *db) {
        if (!db)
                return NULL;
        sqlite3_close_v2(db->sql);
        free(db);
        return NULL;
}

/* Users */

int db_user_put(Db *db, const DbUser *u, bool enable) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db,
                    "INSERT INTO users (id, name, dealer, role, title, password_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                    "ON CONFLICT(id) DO UPDATE SET name=?2, dealer=?3, role=?4, title=?5, password_hash=?6, "
                    "removed = CASE WHEN ?7 THEN 0 ELSE removed END",
                    &s);
        if (r < 0)
                return r;
        bind_text(s, 1, u->id);
        bind_text(s, 2, u->name);
        bind_text(s, 3, u->dealer);
        bind_text(s, 4, user_role_to_string(u->role));
        bind_text(s, 5, u->title);
        bind_text(s, 6, u->password_hash);
        sqlite3_bind_int(s, 7, enable);
        return step_done(db, s, "storing a user");
}

static void read_user(sqlite3_stmt *s, DbUser *u) {
        char role[16];

        memset(u, 0, sizeof *u);
        column_text(s, 0, u->id, sizeof u->id);
        column_text(s, 1, u->name, sizeof u->name);
        column_text(s, 2, u->dealer, sizeof u->dealer);
        column_text(s, 3, role, sizeof role);
        if (user_role_from_string(role, &u->role) < 0)
                u->role = USER_TECHNICIAN;
        column_text(s, 4, u->title, sizeof u->title);
        column_text(s, 5, u->password_hash, sizeof u->password_hash);
        u->removed = sqlite3_column_int(s, 6) != 0;
}

#define USER_COLUMNS "id, name, dealer, role, title, password_hash, removed"

int db_user_get(Db *db, const char *id, DbUser *ret) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        int r, rc;

        r = prepare(db, "SELECT " USER_COLUMNS " FROM users WHERE id = ?1", &s);
        if (r < 0)
                return r;
        bind_text(s, 1, id);
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return sql_error(db, rc, "reading a user");
        read_user(s, ret);
        return 0;
}

int db_user_remove(Db *db, const char *id) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db, "UPDATE users SET removed = 1 WHERE id = ?1 AND removed = 0", &s);
        if (r < 0)
                return r;
        bind_text(s, 1, id);
        r = step_done(db, s, "removing a user");
        if (r < 0)
                return r;
        if (sqlite3_changes(db->sql) == 0)
                return -ENOENT;
        /* a removed user's sessions end with the removal */
        return exec(db, "DELETE FROM sessions WHERE user_id NOT IN (SELECT id FROM users WHERE removed = 0)");
}

/* Collects rows into a growing array of `size`-byte elements. */
static int collect(Db *db, sqlite3_stmt *s, size_t size, void (*read)(sqlite3_stmt *, void *), void **ret, size_t *ret_n) {
        _cleanup_free_ void *a = NULL;
        size_t n = 0, allocated = 0;
        int rc;

        for (;;) {
                rc = sqlite3_step(s);
                if (rc == SQLITE_DONE)
                        break;
                if (rc != SQLITE_ROW)
                        return sql_error(db, rc, "reading rows");
                if (n == allocated) {
                        size_t k = allocated ? allocated * 2 : 16;
                        void *p = reallocarray(a, k, size);
                        if (!p)
                                return -ENOMEM;
                        a = p;
                        allocated = k;
                }
                read(s, (uint8_t *) a + n * size);
                n++;
        }
        *ret = TAKE_PTR(a);
        *ret_n = n;
        return 0;
}

static void read_user_cb(sqlite3_stmt *s, void *p) {
        read_user(s, p);
}

int db_users_list(Db *db, const char *dealer, DbUser **ret, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db, "SELECT " USER_COLUMNS " FROM users WHERE removed = 0 AND (?1 IS NULL OR dealer = ?1) ORDER BY dealer, id",
                    &s);
        if (r < 0)
                return r;
        if (dealer)
                bind_text(s, 1, dealer);
        return collect(db, s, sizeof(DbUser), read_user_cb, (void **) ret, ret_n);
}

/* Sessions */

int db_session_add(Db *db, const char *token_digest, const char *user, int64_t expires_at) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db, "INSERT INTO sessions (token_digest, user_id, expires_at) VALUES (?1, ?2, ?3)", &s);
        if (r < 0)
                return r;
        bind_text(s, 1, token_digest);
        bind_text(s, 2, user);
        sqlite3_bind_int64(s, 3, expires_at);
        return step_done(db, s, "storing a session");
}

int db_session_get(Db *db, const char *token_digest, int64_t now, char ret_user[CONFIG_ID_MAX + 1]) {
        _cleanup_stmt_ sqlite3_stmt *p = NULL, *s = NULL;
        int r, rc;

        r = prepare(db, "DELETE FROM sessions WHERE expires_at <= ?1", &p);
        if (r < 0)
                return r;
        sqlite3_bind_int64(p, 1, now);
        r = step_done(db, p, "purging sessions");
        if (r < 0)
                return r;

        r = prepare(db, "SELECT user_id FROM sessions WHERE token_digest = ?1 AND expires_at > ?2", &s);
        if (r < 0)
                return r;
        bind_text(s, 1, token_digest);
        sqlite3_bind_int64(s, 2, now);
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return sql_error(db, rc, "reading a session");
        column_text(s, 0, ret_user, CONFIG_ID_MAX + 1);
        return 0;
}

/* Requests */

static void approvers_join(const DbRequest *q, char *buf, size_t size) {
        size_t o = 0;

        buf[0] = 0;
        for (size_t i = 0; i < q->n_approvers && o < size; i++)
                o += (size_t) snprintf(buf + o, size - o, "%s%s", i ? "," : "", q->approvers[i]);
}

static void approvers_split(const char *s, DbRequest *q) {
        q->n_approvers = 0;
        while (*s && q->n_approvers < DB_APPROVERS_MAX) {
                size_t l = strcspn(s, ",");
                snprintf(q->approvers[q->n_approvers++], CONFIG_ID_MAX + 1, "%.*s", (int) MIN(l, (size_t) CONFIG_ID_MAX), s);
                s += l;
                if (*s == ',')
                        s++;
        }
}

int db_request_add(Db *db, const DbRequest *q) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        char approvers[DB_APPROVERS_MAX * (CONFIG_ID_MAX + 1) + 1];
        int r;

        r = prepare(db,
                    "INSERT INTO requests (request_no, dealer, technician, vin, repair_order, customer, approvers, "
                    "status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    &s);
        if (r < 0)
                return r;
        approvers_join(q, approvers, sizeof approvers);
        bind_text(s, 1, q->request_no);
        bind_text(s, 2, q->dealer);
        bind_text(s, 3, q->technician);
        bind_text(s, 4, q->vin);
        bind_text(s, 5, q->repair_order);
        bind_text(s, 6, q->customer);
        bind_text(s, 7, approvers);
        bind_text(s, 8, q->status);
        sqlite3_bind_int64(s, 9, q->created_at);
        return step_done(db, s, "storing a reset request");
}

#define REQUEST_COLUMNS                                                                                  \
        "request_no, dealer, technician, vin, repair_order, customer, approvers, status, created_at, " \
        "approved_by, approved_at, valid_till, completed_at"

static void read_request(sqlite3_stmt *s, void *p) {
        DbRequest *q = p;
        char approvers[DB_APPROVERS_MAX * (CONFIG_ID_MAX + 1) + 1];

        memset(q, 0, sizeof *q);
        column_text(s, 0, q->request_no, sizeof q->request_no);
        column_text(s, 1, q->dealer, sizeof q->dealer);
        column_text(s, 2, q->technician, sizeof q->technician);
        column_text(s, 3, q->vin, sizeof q->vin);
        column_text(s, 4, q->repair_order, sizeof q->repair_order);
        column_text(s, 5, q->customer, sizeof q->customer);
        column_text(s, 6, approvers, sizeof approvers);
        approvers_split(approvers, q);
        column_text(s, 7, q->status, sizeof q->status);
        q->created_at = sqlite3_column_int64(s, 8);
        column_text(s, 9, q->approved_by, sizeof q->approved_by);
        q->approved_at = sqlite3_column_int64(s, 10);
        q->valid_till = sqlite3_column_int64(s, 11);
        q->completed_at = sqlite3_column_int64(s, 12);
}

int db_request_get(Db *db, const char *request_no, DbRequest *ret) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        int r, rc;

        r = prepare(db, "SELECT " REQUEST_COLUMNS " FROM requests WHERE request_no = ?1", &s);
        if (r < 0)
                return r;
        bind_text(s, 1, request_no);
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return sql_error(db, rc, "reading a reset request");
        read_request(s, ret);
        return 0;
}

int db_request_update(Db *db, const DbRequest *q, const char *expected_status) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db,
                    "UPDATE requests SET status = ?2, approved_by = ?3, approved_at = ?4, valid_till = ?5, "
                    "completed_at = ?6 WHERE request_no = ?1 AND status = ?7",
                    &s);
        if (r < 0)
                return r;
        bind_text(s, 1, q->request_no);
        bind_text(s, 2, q->status);
        bind_text(s, 3, q->approved_by);
        sqlite3_bind_int64(s, 4, q->approved_at);
        sqlite3_bind_int64(s, 5, q->valid_till);
        sqlite3_bind_int64(s, 6, q->completed_at);
        bind_text(s, 7, expected_status);
        r = step_done(db, s, "updating a reset request");
        if (r < 0)
                return r;
        return sqlite3_changes(db->sql) == 1 ? 0 : -ESTALE;
}

int db_requests_list(Db *db, const char *dealer, const char *vin, size_t limit, DbRequest **ret, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db,
                    "SELECT " REQUEST_COLUMNS " FROM requests WHERE (?1 IS NULL OR dealer = ?1) AND "
                    "(?2 IS NULL OR vin = ?2) ORDER BY created_at DESC, rowid DESC LIMIT ?3",
                    &s);
        if (r < 0)
                return r;
        if (dealer)
                bind_text(s, 1, dealer);
        if (vin)
                bind_text(s, 2, vin);
        sqlite3_bind_int64(s, 3, (sqlite3_int64) limit);
        return collect(db, s, sizeof(DbRequest), read_request, (void **) ret, ret_n);
}

/* Transactions */

int db_transaction_add(Db *db, const DbTransaction *t) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db,
                    "INSERT INTO transactions (transaction_id, created_at, user_id, dealer, vin, repair_order, "
                    "customer, kind, seed_digest, request_no, passcode, request_digest) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    &s);
        if (r < 0)
                return r;
        bind_text(s, 1, t->transaction_id);
        sqlite3_bind_int64(s, 2, t->created_at);
        bind_text(s, 3, t->user);
        bind_text(s, 4, t->dealer);
        bind_text(s, 5, t->vin);
        bind_text(s, 6, t->repair_order);
        bind_text(s, 7, t->customer);
        bind_text(s, 8, t->kind);
        bind_text(s, 9, t->seed_digest);
        bind_text(s, 10, t->request_no);
        bind_text(s, 11, t->passcode);
        bind_text(s, 12, t->request_digest);
        /* autocommit: the INSERT is one SQLite transaction, committed (and, with
         * synchronous=FULL, on disk) when sqlite3_step() returns SQLITE_DONE */
        r = step_done(db, s, "appending a transaction");
        if (r < 0)
                return r;
        return sqlite3_get_autocommit(db->sql) ? 0 : -EIO;
}

#define TRANSACTION_COLUMNS                                                                        \
        "transaction_id, created_at, user_id, dealer, vin, repair_order, customer, kind, seed_digest, " \
        "request_no, passcode, request_digest"

static void read_transaction(sqlite3_stmt *s, void *p) {
        DbTransaction *t = p;

        memset(t, 0, sizeof *t);
        column_text(s, 0, t->transaction_id, sizeof t->transaction_id);
        t->created_at = sqlite3_column_int64(s, 1);
        column_text(s, 2, t->user, sizeof t->user);
        column_text(s, 3, t->dealer, sizeof t->dealer);
        column_text(s, 4, t->vin, sizeof t->vin);
        column_text(s, 5, t->repair_order, sizeof t->repair_order);
        column_text(s, 6, t->customer, sizeof t->customer);
        column_text(s, 7, t->kind, sizeof t->kind);
        column_text(s, 8, t->seed_digest, sizeof t->seed_digest);
        column_text(s, 9, t->request_no, sizeof t->request_no);
        column_text(s, 10, t->passcode, sizeof t->passcode);
        column_text(s, 11, t->request_digest, sizeof t->request_digest);
}

int db_transaction_find_retry(Db *db, const char *user, const char *request_digest, int64_t since, DbTransaction *ret) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        int r, rc;

        r = prepare(db,
                    "SELECT " TRANSACTION_COLUMNS " FROM transactions WHERE user_id = ?1 AND request_digest = ?2 "
                    "AND created_at >= ?3 ORDER BY seq DESC LIMIT 1",
                    &s);
        if (r < 0)
                return r;
        bind_text(s, 1, user);
        bind_text(s, 2, request_digest);
        sqlite3_bind_int64(s, 3, since);
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return sql_error(db, rc, "reading a transaction");
        read_transaction(s, ret);
        return 0;
}

int db_transactions_list(Db *db, const char *dealer, int64_t from, int64_t to, DbTransaction **ret, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db,
                    "SELECT " TRANSACTION_COLUMNS " FROM transactions WHERE (?1 IS NULL OR dealer = ?1) AND "
                    "created_at >= ?2 AND created_at < ?3 ORDER BY seq",
                    &s);
        if (r < 0)
                return r;
        if (dealer)
                bind_text(s, 1, dealer);
        sqlite3_bind_int64(s, 2, from);
        sqlite3_bind_int64(s, 3, to);
        return collect(db, s, sizeof(DbTransaction), read_transaction, (void **) ret, ret_n);
}
