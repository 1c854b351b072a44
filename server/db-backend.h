/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What db.c needs of a database: open, one statement with numbered parameters (?1, ?2,
 * ...) and rows of text back, and a script of several statements. Two drivers: SQLite
 * (db-sqlite.c) and PostgreSQL through libpq (db-postgres.c). db.c writes its SQL once
 * for both; where they differ (the schema, row order, locks) it says so itself.
 *
 * Errors are negative errno: -EEXIST a unique key taken, -EPERM a trigger refused the
 * change (the append-only log), -EBUSY a lock or serialization conflict, -ENOTCONN the
 * connection to the server is lost (the next statement reconnects), -EIO anything else.
 */

#include <stdint.h>

#include "util.h"

typedef enum DbParamType {
        DB_PARAM_NULL,
        DB_PARAM_TEXT,
        DB_PARAM_INT,
} DbParamType;

typedef struct DbParam {
        DbParamType type;
        const char *text;
        int64_t i;
} DbParam;

/* Text, or NULL for an SQL NULL. */
static inline DbParam P_TEXT(const char *s) {
        return (DbParam) { .type = s ? DB_PARAM_TEXT : DB_PARAM_NULL, .text = s };
}
static inline DbParam P_INT(int64_t v) {
        return (DbParam) { .type = DB_PARAM_INT, .i = v };
}

typedef struct DbResult {
        size_t n_rows, n_cols;
        char **cells;     /* row-major, NULL for an SQL NULL */
        uint64_t changes; /* rows inserted, updated or deleted */
} DbResult;

void db_result_clear(DbResult *r);
/* The cell's text, "" for NULL. */
const char *db_result_text(const DbResult *r, size_t row, size_t col);
int64_t db_result_int(const DbResult *r, size_t row, size_t col);
/* A result of n_cols columns (the drivers fill it row by row). */
int db_result_add_row(DbResult *r, size_t n_cols, char **cells_taken);

typedef struct DbDriver {
        const char *name;
        int (*open)(const char *where, void **ret);
        void (*close)(void *h);
        /* One statement; ret may be NULL. On error nothing is left in ret. */
        int (*query)(void *h, const char *sql, const DbParam *params, size_t n_params, DbResult *ret);
        /* Several statements separated by semicolons, without parameters. */
        int (*script)(void *h, const char *sql);
} DbDriver;

extern const DbDriver db_driver_sqlite;
extern const DbDriver db_driver_postgres;
