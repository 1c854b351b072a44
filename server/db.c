/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <time.h>

#include "db-backend.h"
#include "db.h"
#include "log.h"

struct Db {
        const DbDriver *driver;
        void *h;
        bool pg;
};

/* Schema migrations, one list per backend: entry i brings the schema from version i to
 * i + 1 and runs in the same database transaction as the version's update. Version 1 is
 * the schema of the SQLite-only server (so a database of that server is taken over as
 * it is); never edit an entry that was released, add one. */

static const char *const sqlite_migrations[DB_SCHEMA_VERSION] = {
        /* 1 */
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
        "  BEGIN SELECT RAISE(ABORT, 'the transaction log is append-only'); END;",
        /* 2: the login rate limit and the reset requests' retries move into the database */
        "CREATE TABLE login_failures (user_id TEXT PRIMARY KEY, count INTEGER NOT NULL, since INTEGER NOT NULL);"
        "ALTER TABLE requests ADD COLUMN request_digest TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE requests ADD COLUMN idempotency_key TEXT NOT NULL DEFAULT '';"
        "CREATE INDEX requests_retry ON requests(technician, request_digest, created_at);"
        "CREATE INDEX requests_idempotency ON requests(technician, idempotency_key);"
        "CREATE INDEX sessions_expiry ON sessions(expires_at);",
};

static const char *const postgres_migrations[DB_SCHEMA_VERSION] = {
        /* 1 */
        "CREATE TABLE users ("
        "  id TEXT PRIMARY KEY, name TEXT NOT NULL, dealer TEXT NOT NULL, role TEXT NOT NULL,"
        "  title TEXT NOT NULL, password_hash TEXT NOT NULL, removed INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE sessions ("
        "  token_digest TEXT PRIMARY KEY, user_id TEXT NOT NULL, expires_at BIGINT NOT NULL);"
        "CREATE TABLE requests ("
        "  request_no TEXT PRIMARY KEY, seq BIGSERIAL NOT NULL, dealer TEXT NOT NULL, technician TEXT NOT NULL,"
        "  vin TEXT NOT NULL, repair_order TEXT NOT NULL, customer TEXT NOT NULL, approvers TEXT NOT NULL,"
        "  status TEXT NOT NULL, created_at BIGINT NOT NULL, approved_by TEXT NOT NULL DEFAULT '',"
        "  approved_at BIGINT NOT NULL DEFAULT 0, valid_till BIGINT NOT NULL DEFAULT 0,"
        "  completed_at BIGINT NOT NULL DEFAULT 0);"
        "CREATE INDEX requests_vin ON requests(dealer, vin);"
        "CREATE TABLE transactions ("
        "  seq BIGSERIAL PRIMARY KEY, transaction_id TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL,"
        "  user_id TEXT NOT NULL, dealer TEXT NOT NULL, vin TEXT NOT NULL, repair_order TEXT NOT NULL,"
        "  customer TEXT NOT NULL, kind TEXT NOT NULL, seed_digest TEXT NOT NULL, request_no TEXT NOT NULL,"
        "  passcode TEXT NOT NULL, request_digest TEXT NOT NULL);"
        "CREATE INDEX transactions_month ON transactions(dealer, created_at);"
        "CREATE INDEX transactions_retry ON transactions(user_id, request_digest, created_at);"
        /* the log is append-only, also for anyone with psql (but the table's owner, who
         * can drop the triggers: give the service a role that does not own the tables) */
        "CREATE FUNCTION transactions_append_only() RETURNS trigger LANGUAGE plpgsql AS"
        "  $f$ BEGIN RAISE EXCEPTION 'the transaction log is append-only'; END $f$;"
        "CREATE TRIGGER transactions_no_change BEFORE UPDATE OR DELETE ON transactions"
        "  FOR EACH ROW EXECUTE FUNCTION transactions_append_only();"
        "CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions"
        "  FOR EACH STATEMENT EXECUTE FUNCTION transactions_append_only();",
        /* 2 */
        "CREATE TABLE login_failures (user_id TEXT PRIMARY KEY, count INTEGER NOT NULL, since BIGINT NOT NULL);"
        "ALTER TABLE requests ADD COLUMN request_digest TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE requests ADD COLUMN idempotency_key TEXT NOT NULL DEFAULT '';"
        "CREATE INDEX requests_retry ON requests(technician, request_digest, created_at);"
        "CREATE INDEX requests_idempotency ON requests(technician, idempotency_key);"
        "CREATE INDEX sessions_expiry ON sessions(expires_at);",
};

/* Results */

void db_result_clear(DbResult *r) {
        for (size_t i = 0; i < r->n_rows * r->n_cols; i++)
                free(r->cells[i]);
        free(r->cells);
        *r = (DbResult) {};
}

int db_result_add_row(DbResult *r, size_t n_cols, char **cells) {
        char **p;

        p = reallocarray(r->cells, (r->n_rows + 1) * (n_cols ? n_cols : 1), sizeof(char *));
        if (!p) {
                for (size_t c = 0; c < n_cols; c++)
                        free(cells[c]);
                free(cells);
                return -ENOMEM;
        }
        r->cells = p;
        memcpy(r->cells + r->n_rows * n_cols, cells, n_cols * sizeof(char *));
        free(cells);
        r->n_cols = n_cols;
        r->n_rows++;
        return 0;
}

const char *db_result_text(const DbResult *r, size_t row, size_t col) {
        const char *s;

        if (row >= r->n_rows || col >= r->n_cols)
                return "";
        s = r->cells[row * r->n_cols + col];
        return s ? s : "";
}

int64_t db_result_int(const DbResult *r, size_t row, size_t col) {
        return (int64_t) strtoll(db_result_text(r, row, col), NULL, 10);
}

static void text_into(const DbResult *r, size_t row, size_t col, char *buf, size_t size) {
        snprintf(buf, size, "%s", db_result_text(r, row, col));
}

/* Statements */

static int query(Db *db, const char *sql, const DbParam *p, size_t n, DbResult *ret) {
        return db->driver->query(db->h, sql, p, n, ret);
}

#define PARAMS(...) ((const DbParam[]) { __VA_ARGS__ }), ELEMENTSOF(((const DbParam[]) { __VA_ARGS__ }))

static void db_resultp(DbResult *r) {
        db_result_clear(r);
}
#define _cleanup_result_ _cleanup_(db_resultp)

/* A transaction that holds the database's write lock from its start (SQLite) or that
 * takes an advisory lock on `lock_key` (PostgreSQL): two of them with the same key,
 * on any connections of any instances, run one after the other. */
static int tx_begin(Db *db, const char *lock_key) {
        int r;

        r = query(db, db->pg ? "BEGIN" : "BEGIN IMMEDIATE", NULL, 0, NULL);
        if (r < 0 || !db->pg || !lock_key)
                return r;
        r = query(db, "SELECT pg_advisory_xact_lock(hashtext(?1))", PARAMS(P_TEXT(lock_key)), NULL);
        if (r < 0)
                (void) query(db, "ROLLBACK", NULL, 0, NULL);
        return r;
}

static int tx_end(Db *db, int r) {
        int k;

        if (r < 0) {
                (void) query(db, "ROLLBACK", NULL, 0, NULL);
                return r;
        }
        k = query(db, "COMMIT", NULL, 0, NULL);
        if (k < 0) {
                (void) query(db, "ROLLBACK", NULL, 0, NULL);
                return k;
        }
        return r;
}

static int migrate(Db *db) {
        const char *const *m = db->pg ? postgres_migrations : sqlite_migrations;
        _cleanup_result_ DbResult res = {};
        int64_t v;
        int r;

        r = tx_begin(db, "immo-passcode-server schema");
        if (r < 0)
                return r;
        r = db->driver->script(db->h, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
        if (r >= 0)
                r = query(db, "SELECT MAX(version) FROM schema_version", NULL, 0, &res);
        if (r < 0)
                return tx_end(db, r);
        v = db_result_int(&res, 0, 0);
        if (v > DB_SCHEMA_VERSION) {
                log_error("The database's schema is at version %lld, newer than this server's %d: use a newer server.",
                          (long long) v, DB_SCHEMA_VERSION);
                return tx_end(db, -EPROTO);
        }
        for (int64_t i = v; i < DB_SCHEMA_VERSION && r >= 0; i++) {
                log_info("Database: bringing the schema from version %lld to %lld.", (long long) i, (long long) i + 1);
                r = db->driver->script(db->h, m[i]);
        }
        if (r >= 0 && v < DB_SCHEMA_VERSION) {
                r = query(db, "DELETE FROM schema_version", NULL, 0, NULL);
                if (r >= 0)
                        r = query(db, "INSERT INTO schema_version (version) VALUES (?1)", PARAMS(P_INT(DB_SCHEMA_VERSION)),
                                  NULL);
        }
        return tx_end(db, r);
}

bool db_is_postgres(const char *database) {
        return startswith(database, "postgresql://") || startswith(database, "postgres://");
}

const char *db_backend_name(Db *db) {
        return db->driver->name;
}

int db_open(const char *where, Db **ret) {
        _cleanup_(db_closep) Db *db = NULL;
        int r;

        db = calloc(1, sizeof *db);
        if (!db)
                return -ENOMEM;
        db->pg = db_is_postgres(where);
        db->driver = db->pg ? &db_driver_postgres : &db_driver_sqlite;
        r = db->driver->open(where, &db->h);
        if (r < 0)
                return r;
        r = migrate(db);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(db);
        return 0;
}

Db *db_close(Db *db) {
        if (!db)
                return NULL;
        if (db->h)
                db->driver->close(db->h);
        free(db);
        return NULL;
}

/* Users */

#define USER_COLUMNS "id, name, dealer, role, title, password_hash, removed"

int db_user_put(Db *db, const DbUser *u, bool enable) {
        return query(db,
                     "INSERT INTO users (id, name, dealer, role, title, password_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                     "ON CONFLICT(id) DO UPDATE SET name = ?2, dealer = ?3, role = ?4, title = ?5, password_hash = ?6, "
                     "removed = CASE WHEN ?7 <> 0 THEN 0 ELSE users.removed END",
                     PARAMS(P_TEXT(u->id), P_TEXT(u->name), P_TEXT(u->dealer), P_TEXT(user_role_to_string(u->role)),
                            P_TEXT(u->title), P_TEXT(u->password_hash), P_INT(enable)),
                     NULL);
}

static void read_user(const DbResult *res, size_t i, DbUser *u) {
        memset(u, 0, sizeof *u);
        text_into(res, i, 0, u->id, sizeof u->id);
        text_into(res, i, 1, u->name, sizeof u->name);
        text_into(res, i, 2, u->dealer, sizeof u->dealer);
        if (user_role_from_string(db_result_text(res, i, 3), &u->role) < 0)
                u->role = USER_TECHNICIAN;
        text_into(res, i, 4, u->title, sizeof u->title);
        text_into(res, i, 5, u->password_hash, sizeof u->password_hash);
        u->removed = db_result_int(res, i, 6) != 0;
}

int db_user_get(Db *db, const char *id, DbUser *ret) {
        _cleanup_result_ DbResult res = {};
        int r;

        r = query(db, "SELECT " USER_COLUMNS " FROM users WHERE id = ?1", PARAMS(P_TEXT(id)), &res);
        if (r < 0)
                return r;
        if (res.n_rows == 0)
                return -ENOENT;
        read_user(&res, 0, ret);
        return 0;
}

int db_user_remove(Db *db, const char *id) {
        DbResult res = {};
        int r;

        r = tx_begin(db, NULL);
        if (r < 0)
                return r;
        r = query(db, "UPDATE users SET removed = 1 WHERE id = ?1 AND removed = 0", PARAMS(P_TEXT(id)), &res);
        if (r >= 0 && res.changes == 0)
                r = -ENOENT;
        db_result_clear(&res);
        /* a removed user's sessions end with the removal */
        if (r >= 0)
                r = query(db, "DELETE FROM sessions WHERE user_id = ?1", PARAMS(P_TEXT(id)), NULL);
        return tx_end(db, r);
}

/* The rows of res as an array of `size`-byte elements. */
static int collect(const DbResult *res, size_t size, void (*read)(const DbResult *, size_t, void *), void **ret,
                   size_t *ret_n) {
        void *a = calloc(res->n_rows ? res->n_rows : 1, size);

        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < res->n_rows; i++)
                read(res, i, (uint8_t *) a + i * size);
        *ret = a;
        *ret_n = res->n_rows;
        return 0;
}

static void read_user_cb(const DbResult *res, size_t i, void *p) {
        read_user(res, i, p);
}

int db_users_list(Db *db, const char *dealer, DbUser **ret, size_t *ret_n) {
        _cleanup_result_ DbResult res = {};
        int r;

        r = query(db, "SELECT " USER_COLUMNS " FROM users WHERE removed = 0 AND (?1 IS NULL OR dealer = ?1) ORDER BY dealer, id",
                  PARAMS(P_TEXT(dealer)), &res);
        if (r < 0)
                return r;
        return collect(&res, sizeof(DbUser), read_user_cb, (void **) ret, ret_n);
}

/* Sessions */

int db_session_add(Db *db, const char *token_digest, const char *user, int64_t expires_at) {
        int r;

        r = query(db, "DELETE FROM sessions WHERE expires_at <= ?1", PARAMS(P_INT(time(NULL))), NULL);
        if (r < 0)
                return r;
        return query(db, "INSERT INTO sessions (token_digest, user_id, expires_at) VALUES (?1, ?2, ?3)",
                     PARAMS(P_TEXT(token_digest), P_TEXT(user), P_INT(expires_at)), NULL);
}

int db_session_get(Db *db, const char *token_digest, int64_t now, char ret_user[CONFIG_ID_MAX + 1]) {
        _cleanup_result_ DbResult res = {};
        int r;

        r = query(db, "SELECT user_id FROM sessions WHERE token_digest = ?1 AND expires_at > ?2",
                  PARAMS(P_TEXT(token_digest), P_INT(now)), &res);
        if (r < 0)
                return r;
        if (res.n_rows == 0)
                return -ENOENT;
        text_into(&res, 0, 0, ret_user, CONFIG_ID_MAX + 1);
        return 0;
}

/* The login rate limit */

int db_login_failures_get(Db *db, const char *user, int64_t now, int64_t window, unsigned *ret_count,
                          int64_t *ret_since) {
        _cleanup_result_ DbResult res = {};
        int r;

        r = query(db, "SELECT count, since FROM login_failures WHERE user_id = ?1 AND since > ?2",
                  PARAMS(P_TEXT(user), P_INT(now - window)), &res);
        if (r < 0)
                return r;
        *ret_count = res.n_rows ? (unsigned) db_result_int(&res, 0, 0) : 0;
        *ret_since = res.n_rows ? db_result_int(&res, 0, 1) : 0;
        return 0;
}

int db_login_failure_add(Db *db, const char *user, int64_t now, int64_t window) {
        /* one statement: two instances counting at once both count */
        return query(db,
                     "INSERT INTO login_failures (user_id, count, since) VALUES (?1, 1, ?2) "
                     "ON CONFLICT(user_id) DO UPDATE SET "
                     "count = CASE WHEN login_failures.since <= ?3 THEN 1 ELSE login_failures.count + 1 END, "
                     "since = CASE WHEN login_failures.since <= ?3 THEN ?2 ELSE login_failures.since END",
                     PARAMS(P_TEXT(user), P_INT(now), P_INT(now - window)), NULL);
}

int db_login_failures_clear(Db *db, const char *user) {
        return query(db, "DELETE FROM login_failures WHERE user_id = ?1", PARAMS(P_TEXT(user)), NULL);
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
        char approvers[DB_APPROVERS_MAX * (CONFIG_ID_MAX + 1) + 1];

        approvers_join(q, approvers, sizeof approvers);
        return query(db,
                     "INSERT INTO requests (request_no, dealer, technician, vin, repair_order, customer, approvers, "
                     "status, created_at, approved_by, approved_at, valid_till, completed_at, request_digest, "
                     "idempotency_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                     PARAMS(P_TEXT(q->request_no), P_TEXT(q->dealer), P_TEXT(q->technician), P_TEXT(q->vin),
                            P_TEXT(q->repair_order), P_TEXT(q->customer), P_TEXT(approvers), P_TEXT(q->status),
                            P_INT(q->created_at), P_TEXT(q->approved_by), P_INT(q->approved_at), P_INT(q->valid_till),
                            P_INT(q->completed_at), P_TEXT(q->request_digest), P_TEXT(q->idempotency_key)),
                     NULL);
}

#define REQUEST_COLUMNS                                                                                \
        "request_no, dealer, technician, vin, repair_order, customer, approvers, status, created_at, " \
        "approved_by, approved_at, valid_till, completed_at, request_digest, idempotency_key"

static void read_request(const DbResult *res, size_t i, void *p) {
        DbRequest *q = p;

        memset(q, 0, sizeof *q);
        text_into(res, i, 0, q->request_no, sizeof q->request_no);
        text_into(res, i, 1, q->dealer, sizeof q->dealer);
        text_into(res, i, 2, q->technician, sizeof q->technician);
        text_into(res, i, 3, q->vin, sizeof q->vin);
        text_into(res, i, 4, q->repair_order, sizeof q->repair_order);
        text_into(res, i, 5, q->customer, sizeof q->customer);
        approvers_split(db_result_text(res, i, 6), q);
        text_into(res, i, 7, q->status, sizeof q->status);
        q->created_at = db_result_int(res, i, 8);
        text_into(res, i, 9, q->approved_by, sizeof q->approved_by);
        q->approved_at = db_result_int(res, i, 10);
        q->valid_till = db_result_int(res, i, 11);
        q->completed_at = db_result_int(res, i, 12);
        text_into(res, i, 13, q->request_digest, sizeof q->request_digest);
        text_into(res, i, 14, q->idempotency_key, sizeof q->idempotency_key);
}

int db_request_get(Db *db, const char *request_no, DbRequest *ret) {
        _cleanup_result_ DbResult res = {};
        int r;

        r = query(db, "SELECT " REQUEST_COLUMNS " FROM requests WHERE request_no = ?1", PARAMS(P_TEXT(request_no)), &res);
        if (r < 0)
                return r;
        if (res.n_rows == 0)
                return -ENOENT;
        read_request(&res, 0, ret);
        return 0;
}

int db_request_add_once(Db *db, const DbRequest *q, int64_t since, DbRequest *ret) {
        _cleanup_result_ DbResult res = {};
        int r;

        r = tx_begin(db, q->technician);
        if (r < 0)
                return r;
        if (q->idempotency_key[0])
                r = query(db, "SELECT " REQUEST_COLUMNS " FROM requests WHERE technician = ?1 AND idempotency_key = ?2",
                          PARAMS(P_TEXT(q->technician), P_TEXT(q->idempotency_key)), &res);
        else
                r = query(db,
                          db->pg ? "SELECT " REQUEST_COLUMNS " FROM requests WHERE technician = ?1 AND request_digest = ?2 "
                                   "AND created_at >= ?3 AND status IN ('pending', 'approved') ORDER BY seq DESC LIMIT 1"
                                 : "SELECT " REQUEST_COLUMNS " FROM requests WHERE technician = ?1 AND request_digest = ?2 "
                                   "AND created_at >= ?3 AND status IN ('pending', 'approved') ORDER BY rowid DESC LIMIT 1",
                          PARAMS(P_TEXT(q->technician), P_TEXT(q->request_digest), P_INT(since)), &res);
        if (r >= 0 && res.n_rows > 0) {
                read_request(&res, 0, ret);
                r = streq(ret->request_digest, q->request_digest) ? 1 : -EILSEQ;
        } else if (r >= 0)
                r = db_request_add(db, q);
        return tx_end(db, r);
}

int db_request_update(Db *db, const DbRequest *q, const char *expected_status) {
        _cleanup_result_ DbResult res = {};
        int r;

        r = query(db,
                  "UPDATE requests SET status = ?2, approved_by = ?3, approved_at = ?4, valid_till = ?5, "
                  "completed_at = ?6 WHERE request_no = ?1 AND status = ?7",
                  PARAMS(P_TEXT(q->request_no), P_TEXT(q->status), P_TEXT(q->approved_by), P_INT(q->approved_at),
                         P_INT(q->valid_till), P_INT(q->completed_at), P_TEXT(expected_status)),
                  &res);
        if (r < 0)
                return r;
        return res.changes == 1 ? 0 : -ESTALE;
}

int db_requests_list(Db *db, const char *dealer, const char *vin, size_t limit, DbRequest **ret, size_t *ret_n) {
        _cleanup_result_ DbResult res = {};
        int r;

        r = query(db,
                  db->pg ? "SELECT " REQUEST_COLUMNS " FROM requests WHERE (?1 IS NULL OR dealer = ?1) AND "
                           "(?2 IS NULL OR vin = ?2) ORDER BY created_at DESC, seq DESC LIMIT ?3"
                         : "SELECT " REQUEST_COLUMNS " FROM requests WHERE (?1 IS NULL OR dealer = ?1) AND "
                           "(?2 IS NULL OR vin = ?2) ORDER BY created_at DESC, rowid DESC LIMIT ?3",
                  PARAMS(P_TEXT(dealer), P_TEXT(vin), P_INT(limit)), &res);
        if (r < 0)
                return r;
        return collect(&res, sizeof(DbRequest), read_request, (void **) ret, ret_n);
}

/* Transactions */

int db_transaction_add(Db *db, const DbTransaction *t) {
        /* one statement in autocommit: committed (with SQLite's synchronous=FULL and
         * PostgreSQL's synchronous_commit, on disk) when it returns */
        return query(db,
                     "INSERT INTO transactions (transaction_id, created_at, user_id, dealer, vin, repair_order, "
                     "customer, kind, seed_digest, request_no, passcode, request_digest) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                     PARAMS(P_TEXT(t->transaction_id), P_INT(t->created_at), P_TEXT(t->user), P_TEXT(t->dealer),
                            P_TEXT(t->vin), P_TEXT(t->repair_order), P_TEXT(t->customer), P_TEXT(t->kind),
                            P_TEXT(t->seed_digest), P_TEXT(t->request_no), P_TEXT(t->passcode),
                            P_TEXT(t->request_digest)),
                     NULL);
}

#define TRANSACTION_COLUMNS                                                                             \
        "transaction_id, created_at, user_id, dealer, vin, repair_order, customer, kind, seed_digest, " \
        "request_no, passcode, request_digest"

static void read_transaction(const DbResult *res, size_t i, void *p) {
        DbTransaction *t = p;

        memset(t, 0, sizeof *t);
        text_into(res, i, 0, t->transaction_id, sizeof t->transaction_id);
        t->created_at = db_result_int(res, i, 1);
        text_into(res, i, 2, t->user, sizeof t->user);
        text_into(res, i, 3, t->dealer, sizeof t->dealer);
        text_into(res, i, 4, t->vin, sizeof t->vin);
        text_into(res, i, 5, t->repair_order, sizeof t->repair_order);
        text_into(res, i, 6, t->customer, sizeof t->customer);
        text_into(res, i, 7, t->kind, sizeof t->kind);
        text_into(res, i, 8, t->seed_digest, sizeof t->seed_digest);
        text_into(res, i, 9, t->request_no, sizeof t->request_no);
        text_into(res, i, 10, t->passcode, sizeof t->passcode);
        text_into(res, i, 11, t->request_digest, sizeof t->request_digest);
}

int db_transaction_issue(Db *db, const DbTransaction *t, int64_t since, DbTransaction *ret) {
        _cleanup_result_ DbResult res = {};
        char key[CONFIG_ID_MAX + 66];
        int r;

        snprintf(key, sizeof key, "%s:%s", t->user, t->request_digest);
        r = tx_begin(db, key);
        if (r < 0)
                return r;
        r = query(db,
                  "SELECT " TRANSACTION_COLUMNS " FROM transactions WHERE user_id = ?1 AND request_digest = ?2 "
                  "AND created_at >= ?3 ORDER BY seq DESC LIMIT 1",
                  PARAMS(P_TEXT(t->user), P_TEXT(t->request_digest), P_INT(since)), &res);
        if (r >= 0 && res.n_rows > 0) {
                read_transaction(&res, 0, ret);
                r = 1;
        } else if (r >= 0)
                r = db_transaction_add(db, t);
        return tx_end(db, r);
}

int db_transactions_list(Db *db, const char *dealer, int64_t from, int64_t to, DbTransaction **ret, size_t *ret_n) {
        _cleanup_result_ DbResult res = {};
        int r;

        r = query(db,
                  "SELECT " TRANSACTION_COLUMNS " FROM transactions WHERE (?1 IS NULL OR dealer = ?1) AND "
                  "created_at >= ?2 AND created_at < ?3 ORDER BY seq",
                  PARAMS(P_TEXT(dealer), P_INT(from), P_INT(to)), &res);
        if (r < 0)
                return r;
        return collect(&res, sizeof(DbTransaction), read_transaction, (void **) ret, ret_n);
}

/* Copying */

static int copy_rows(Db *from, Db *to, DbCopyStats *s) {
        _cleanup_result_ DbResult users = {}, sessions = {}, requests = {}, transactions = {}, check = {};
        int r;

        r = query(to, "SELECT (SELECT COUNT(*) FROM requests) + (SELECT COUNT(*) FROM transactions)", NULL, 0, &check);
        if (r < 0)
                return r;
        if (db_result_int(&check, 0, 0) != 0)
                return log_error_errno(ENOTEMPTY, "The target database already holds requests or transactions.");

        r = query(from, "SELECT " USER_COLUMNS " FROM users ORDER BY id", NULL, 0, &users);
        if (r < 0)
                return r;
        for (size_t i = 0; i < users.n_rows; i++) {
                DbUser u;
                read_user(&users, i, &u);
                r = query(to,
                          "INSERT INTO users (id, name, dealer, role, title, password_hash, removed) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO UPDATE SET name = ?2, dealer = ?3, "
                          "role = ?4, title = ?5, password_hash = ?6, removed = ?7",
                          PARAMS(P_TEXT(u.id), P_TEXT(u.name), P_TEXT(u.dealer), P_TEXT(user_role_to_string(u.role)),
                                 P_TEXT(u.title), P_TEXT(u.password_hash), P_INT(u.removed)),
                          NULL);
                if (r < 0)
                        return r;
        }
        s->users = users.n_rows;

        r = query(from, "SELECT token_digest, user_id, expires_at FROM sessions WHERE expires_at > ?1",
                  PARAMS(P_INT(time(NULL))), &sessions);
        if (r < 0)
                return r;
        for (size_t i = 0; i < sessions.n_rows; i++) {
                r = query(to, "INSERT INTO sessions (token_digest, user_id, expires_at) VALUES (?1, ?2, ?3) "
                              "ON CONFLICT(token_digest) DO NOTHING",
                          PARAMS(P_TEXT(db_result_text(&sessions, i, 0)), P_TEXT(db_result_text(&sessions, i, 1)),
                                 P_INT(db_result_int(&sessions, i, 2))),
                          NULL);
                if (r < 0)
                        return r;
        }
        s->sessions = sessions.n_rows;

        r = query(from,
                  from->pg ? "SELECT " REQUEST_COLUMNS " FROM requests ORDER BY created_at, seq"
                           : "SELECT " REQUEST_COLUMNS " FROM requests ORDER BY created_at, rowid",
                  NULL, 0, &requests);
        if (r < 0)
                return r;
        for (size_t i = 0; i < requests.n_rows; i++) {
                DbRequest q;
                read_request(&requests, i, &q);
                r = db_request_add(to, &q);
                if (r < 0)
                        return r;
        }
        s->requests = requests.n_rows;

        r = query(from, "SELECT " TRANSACTION_COLUMNS " FROM transactions ORDER BY seq", NULL, 0, &transactions);
        if (r < 0)
                return r;
        for (size_t i = 0; i < transactions.n_rows; i++) {
                DbTransaction t;
                read_transaction(&transactions, i, &t);
                r = db_transaction_add(to, &t);
                if (r < 0)
                        return r;
        }
        s->transactions = transactions.n_rows;
        return 0;
}

int db_copy(Db *from, Db *to, DbCopyStats *ret) {
        DbCopyStats s = {};
        int r;

        r = tx_begin(to, "immo-passcode-server schema");
        if (r < 0)
                return r;
        r = tx_end(to, copy_rows(from, to, &s));
        if (r < 0)
                return r;
        *ret = s;
        return 0;
}
