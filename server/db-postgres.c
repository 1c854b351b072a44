/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The PostgreSQL driver, through libpq: a connection per thread, reconnected when lost. */
#include <libpq-fe.h>
#include <stdio.h>

#include "db-backend.h"
#include "log.h"

#define PG_PARAMS_MAX 32
#define OID_INT8 20
#define OID_TEXT 25

typedef struct Pg {
        PGconn *conn;
} Pg;

static void on_notice(void *arg, const char *message) {
        log_debug("PostgreSQL: %.*s", (int) strcspn(message, "\n"), message);
}

static void pg_close(void *h) {
        Pg *pg = h;

        if (!pg)
                return;
        PQfinish(pg->conn);
        free(pg);
}

static int pg_open(const char *uri, void **ret) {
        /* the URI's own connect_timeout, if any, comes later and wins */
        const char *const keys[] = { "connect_timeout", "application_name", "dbname", NULL };
        const char *const values[] = { "10", "immo-passcode-server", uri, NULL };
        Pg *pg;

        pg = calloc(1, sizeof *pg);
        if (!pg)
                return -ENOMEM;
        pg->conn = PQconnectdbParams(keys, values, 1);
        if (!pg->conn) {
                free(pg);
                return -ENOMEM;
        }
        if (PQstatus(pg->conn) != CONNECTION_OK) {
                log_error("Failed to connect to PostgreSQL: %.*s", (int) strcspn(PQerrorMessage(pg->conn), "\n"),
                          PQerrorMessage(pg->conn));
                pg_close(pg);
                return -ENOTCONN;
        }
        PQsetNoticeProcessor(pg->conn, on_notice, NULL);
        *ret = pg;
        return 0;
}

/* A lost connection is made again before the next statement. */
static int pg_ensure(Pg *pg) {
        if (PQstatus(pg->conn) == CONNECTION_OK)
                return 0;
        PQreset(pg->conn);
        if (PQstatus(pg->conn) != CONNECTION_OK) {
                log_error("PostgreSQL is unreachable: %.*s", (int) strcspn(PQerrorMessage(pg->conn), "\n"),
                          PQerrorMessage(pg->conn));
                return -ENOTCONN;
        }
        log_info("Reconnected to PostgreSQL.");
        return 0;
}

static int pg_error(Pg *pg, PGresult *res, const char *sql) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(pg->conn);

        if (state && streq(state, "23505")) { /* unique_violation */
                log_debug("Database: \"%.60s\": %s", sql, msg);
                return -EEXIST;
        }
        log_error("Database: \"%.60s\" failed: %.*s", sql, (int) strcspn(msg, "\n"), msg);
        if (state && streq(state, "P0001")) /* raise_exception: the append-only trigger */
                return -EPERM;
        if (state && (streq(state, "40001") || streq(state, "40P01") || streq(state, "55P03")))
                return -EBUSY;
        if (PQstatus(pg->conn) != CONNECTION_OK)
                return -ENOTCONN;
        return -EIO;
}

static int pg_script(void *h, const char *sql) {
        Pg *pg = h;
        PGresult *res;
        int r;

        r = pg_ensure(pg);
        if (r < 0)
                return r;
        res = PQexec(pg->conn, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
                r = pg_error(pg, res, sql);
        PQclear(res);
        return r;
}

/* "?N" as "$N": db.c's SQL never holds a question mark elsewhere. */
static char *pg_sql(const char *sql) {
        char *s = strdup(sql);

        if (s)
                for (char *p = s; *p; p++)
                        if (*p == '?')
                                *p = '$';
        return s;
}

static int pg_query(void *h, const char *sql, const DbParam *p, size_t n, DbResult *ret) {
        Pg *pg = h;
        const char *values[PG_PARAMS_MAX];
        char ints[PG_PARAMS_MAX][24];
        Oid types[PG_PARAMS_MAX];
        _cleanup_free_ char *text = NULL;
        DbResult res = {};
        PGresult *pr = NULL;
        int r;

        if (n > PG_PARAMS_MAX)
                return -E2BIG;
        text = pg_sql(sql);
        if (!text)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                switch (p[i].type) {
                case DB_PARAM_NULL:
                        values[i] = NULL;
                        types[i] = OID_TEXT;
                        break;
                case DB_PARAM_TEXT:
                        values[i] = p[i].text;
                        types[i] = OID_TEXT;
                        break;
                case DB_PARAM_INT:
                        snprintf(ints[i], sizeof ints[i], "%lld", (long long) p[i].i);
                        values[i] = ints[i];
                        types[i] = OID_INT8;
                        break;
                }

        for (unsigned attempt = 0;; attempt++) {
                bool in_transaction;

                r = pg_ensure(pg);
                if (r < 0)
                        return r;
                in_transaction = PQtransactionStatus(pg->conn) != PQTRANS_IDLE;
                pr = PQexecParams(pg->conn, text, (int) n, types, values, NULL, NULL, 0);
                if (PQresultStatus(pr) == PGRES_COMMAND_OK || PQresultStatus(pr) == PGRES_TUPLES_OK)
                        break;
                /* A connection found dead (a server restarted since the last statement): a
                 * read or the start of a transaction changed nothing and is sent again once,
                 * but never a statement inside a transaction, which died with the connection. */
                if (attempt == 0 && !in_transaction && PQstatus(pg->conn) != CONNECTION_OK &&
                    (startswith(sql, "SELECT") || startswith(sql, "BEGIN"))) {
                        PQclear(pr);
                        continue;
                }
                r = pg_error(pg, pr, sql);
                PQclear(pr);
                return r;
        }

        size_t rows = (size_t) PQntuples(pr), cols = (size_t) PQnfields(pr);
        for (size_t i = 0; i < rows && r >= 0; i++) {
                char **cells = calloc(cols ? cols : 1, sizeof(char *));
                if (!cells) {
                        r = -ENOMEM;
                        break;
                }
                for (size_t c = 0; c < cols; c++)
                        if (!PQgetisnull(pr, (int) i, (int) c) && !(cells[c] = strdup(PQgetvalue(pr, (int) i, (int) c))))
                                r = -ENOMEM;
                if (r < 0) {
                        for (size_t c = 0; c < cols; c++)
                                free(cells[c]);
                        free(cells);
                        break;
                }
                r = db_result_add_row(&res, cols, cells);
        }
        res.n_cols = cols;
        res.changes = strtoull(PQcmdTuples(pr), NULL, 10);
        PQclear(pr);
        if (r < 0 || !ret)
                db_result_clear(&res);
        else
                *ret = res;
        return r;
}

const DbDriver db_driver_postgres = {
        .name = "PostgreSQL",
        .open = pg_open,
        .close = pg_close,
        .query = pg_query,
        .script = pg_script,
};
