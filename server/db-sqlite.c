/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The SQLite driver: one file, WAL with synchronous=FULL, a connection per thread. */
#include <sqlite3.h>
#include <stdio.h>

#include "db-backend.h"
#include "log.h"

static int sqlite_error(sqlite3 *s, int rc, const char *sql) {
        int ext = sqlite3_extended_errcode(s);

        if ((rc & 0xff) == SQLITE_CONSTRAINT) {
                if (ext == SQLITE_CONSTRAINT_TRIGGER) {
                        log_error("Database: refused: %s", sqlite3_errmsg(s));
                        return -EPERM;
                }
                log_debug("Database: \"%.60s\": %s", sql, sqlite3_errmsg(s));
                return -EEXIST;
        }
        log_error("Database: \"%.60s\" failed: %s", sql, sqlite3_errmsg(s));
        if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
                return -EBUSY;
        return -EIO;
}

static int sqlite_script(void *h, const char *sql) {
        sqlite3 *s = h;
        char *err = NULL;
        int rc;

        rc = sqlite3_exec(s, sql, NULL, NULL, &err);
        if (rc != SQLITE_OK) {
                log_error("Database: \"%.60s...\" failed: %s", sql, err ? err : sqlite3_errstr(rc));
                sqlite3_free(err);
                return (rc & 0xff) == SQLITE_BUSY ? -EBUSY : -EIO;
        }
        return 0;
}

static void sqlite_close(void *h) {
        sqlite3_close_v2(h);
}

static int sqlite_open(const char *path, void **ret) {
        sqlite3 *s = NULL;
        int rc, r;

        rc = sqlite3_open_v2(path, &s, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
        if (rc != SQLITE_OK) {
                log_error("Failed to open database %s: %s", path, s ? sqlite3_errmsg(s) : sqlite3_errstr(rc));
                sqlite3_close_v2(s);
                return -EIO;
        }
        sqlite3_extended_result_codes(s, 1);
        sqlite3_busy_timeout(s, 5000);
        r = sqlite_script(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
        if (r < 0) {
                sqlite3_close_v2(s);
                return r;
        }
        *ret = s;
        return 0;
}

static int sqlite_query(void *h, const char *sql, const DbParam *p, size_t n, DbResult *ret) {
        sqlite3 *s = h;
        sqlite3_stmt *st = NULL;
        DbResult res = {};
        int rc, r = 0;

        rc = sqlite3_prepare_v2(s, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return sqlite_error(s, rc, sql);
        for (size_t i = 0; i < n; i++)
                switch (p[i].type) {
                case DB_PARAM_NULL:
                        sqlite3_bind_null(st, (int) i + 1);
                        break;
                case DB_PARAM_TEXT:
                        sqlite3_bind_text(st, (int) i + 1, p[i].text, -1, SQLITE_TRANSIENT);
                        break;
                case DB_PARAM_INT:
                        sqlite3_bind_int64(st, (int) i + 1, p[i].i);
                        break;
                }
        for (;;) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_DONE)
                        break;
                if (rc != SQLITE_ROW) {
                        r = sqlite_error(s, rc, sql);
                        goto finish;
                }
                size_t cols = (size_t) sqlite3_column_count(st);
                char **cells = calloc(cols ? cols : 1, sizeof(char *));
                if (!cells) {
                        r = -ENOMEM;
                        goto finish;
                }
                for (size_t c = 0; c < cols; c++) {
                        const unsigned char *t = sqlite3_column_text(st, (int) c);
                        if (t && !(cells[c] = strdup((const char *) t)))
                                r = -ENOMEM;
                }
                if (r >= 0)
                        r = db_result_add_row(&res, cols, cells);
                else {
                        for (size_t c = 0; c < cols; c++)
                                free(cells[c]);
                        free(cells);
                }
                if (r < 0)
                        goto finish;
        }
        res.changes = (uint64_t) sqlite3_changes(s);
finish:
        sqlite3_finalize(st);
        if (r < 0 || !ret)
                db_result_clear(&res);
        else
                *ret = res;
        return r;
}

const DbDriver db_driver_sqlite = {
        .name = "SQLite",
        .open = sqlite_open,
        .close = sqlite_close,
        .query = sqlite_query,
        .script = sqlite_script,
};
