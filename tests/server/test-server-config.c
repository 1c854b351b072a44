/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The passcode server's configuration parser and its password hashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "password.h"
#include "report.h"

#define BASE                                           \
        "listen: {address: 127.0.0.1, port: 8443}\n"   \
        "tls: {certificate: s.pem, key: /etc/s.key}\n" \
        "database: db.sqlite\n"                        \
        "master_key_file: m.key\n"                     \
        "dealers:\n"                                   \
        "  - {code: D1, name: One}\n"

static int parse(const char *text, ServerConfig **ret) {
        return server_config_parse("test.yaml", "/cfg", text, strlen(text), ret);
}

static void test_good(void **state) {
        _cleanup_(server_config_freep) ServerConfig *c = NULL;

        assert_int_equal(parse(BASE "users:\n"
                                    "  - {id: t1, name: Tom, dealer: D1, role: technician, title: Technician, password: pw}\n"
                                    "  - {id: m1, name: Mia, dealer: D1, role: manager, title: Service Manager, password: pw}\n",
                               &c),
                         0);
        assert_string_equal(c->listen_address, "127.0.0.1");
        assert_int_equal(c->port, 8443);
        assert_string_equal(c->tls_certificate, "/cfg/s.pem");
        assert_string_equal(c->tls_key, "/etc/s.key");
        assert_string_equal(c->database, "/cfg/db.sqlite");
        assert_int_equal(c->approval_validity_hours, 72);
        assert_int_equal(c->n_dealers, 1);
        assert_int_equal(c->n_users, 2);
        assert_int_equal(c->users[1].role, USER_MANAGER);
        assert_true(password_hash_valid(c->users[0].password_hash));
        assert_int_equal(password_verify("pw", c->users[0].password_hash), 1);
        assert_int_equal(password_verify("pW", c->users[0].password_hash), 0);
        /* a fresh salt per user */
        assert_string_not_equal(c->users[0].password_hash, c->users[1].password_hash);
}

static void test_validity_hours(void **state) {
        _cleanup_(server_config_freep) ServerConfig *c = NULL;

        assert_int_equal(parse(BASE "approval_validity_hours: 24\n", &c), 0);
        assert_int_equal(c->approval_validity_hours, 24);
}

static void test_postgres_and_workers(void **state) {
        _cleanup_(server_config_freep) ServerConfig *c = NULL, *d = NULL;
        const char *text = "listen: {address: 127.0.0.1, port: 8443}\n"
                           "tls: {certificate: s.pem, key: /etc/s.key}\n"
                           "database: postgresql://immo@db.example:5432/immo?sslmode=verify-full\n"
                           "master_key_file: m.key\n"
                           "workers: 8\n"
                           "dealers:\n"
                           "  - {code: D1, name: One}\n";

        /* a URI is taken as it is, not as a path under the configuration's folder */
        assert_int_equal(parse(text, &c), 0);
        assert_string_equal(c->database, "postgresql://immo@db.example:5432/immo?sslmode=verify-full");
        assert_int_equal(c->workers, 8);
        assert_int_equal(parse(BASE, &d), 0);
        assert_int_equal(d->workers, 4);
}

static void test_web_root(void **state) {
        _cleanup_(server_config_freep) ServerConfig *c = NULL, *d = NULL, *e = NULL;

        /* the installed pages unless the configuration names a folder, relative to its own */
        assert_int_equal(parse(BASE, &c), 0);
        assert_string_equal(c->web_root, PASSCODE_WEB_ROOT);
        assert_int_equal(parse(BASE "web_root: www\n", &d), 0);
        assert_string_equal(d->web_root, "/cfg/www");
        assert_int_equal(parse(BASE "web_root: /srv/pages\n", &e), 0);
        assert_string_equal(e->web_root, "/srv/pages");
}

static void test_bad(void **state) {
        static const char *const bad[] = {
                BASE "workers: 0\n",
                BASE "workers: 65\n",
                BASE "approval_validity_hours: 0\n",
                BASE "approval_validity_hours: many\n",
                BASE "unknown_key: 1\n",
                BASE "users:\n  - {id: t1, name: Tom, dealer: D9, role: technician, title: T, password: pw}\n",
                BASE "users:\n  - {id: t1, name: Tom, dealer: D1, role: boss, title: T, password: pw}\n",
                BASE "users:\n  - {id: t1, name: Tom, dealer: D1, role: technician, title: T}\n",
                BASE "users:\n  - {id: t1, name: Tom, dealer: D1, role: technician, title: T, password_hash: abc}\n",
                BASE "users:\n  - {id: 'a b', name: Tom, dealer: D1, role: technician, title: T, password: pw}\n",
                BASE "users:\n  - {id: t1, name: Tom, dealer: D1, role: technician, title: T, password: pw}\n"
                     "  - {id: t1, name: Tim, dealer: D1, role: technician, title: T, password: pw}\n",
                "listen: {port: 70000}\ntls: {certificate: a, key: b}\ndatabase: d\nmaster_key_file: m\n"
                "dealers: [{code: D1, name: One}]\n",
                "listen: {port: 1}\ndatabase: d\nmaster_key_file: m\ndealers: [{code: D1, name: One}]\n",
                BASE "dealers2: []\n",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ServerConfig *c = NULL;
                int r = parse(bad[i], &c);
                if (r != -EINVAL)
                        fail_msg("case %zu parsed (%d)", i, r);
                assert_null(c);
        }
}

static void test_titles(void **state) {
        assert_true(title_is_approving("Service Manager"));
        assert_true(title_is_approving("Service/Parts Director"));
        assert_true(title_is_approving("team leader"));
        assert_false(title_is_approving("Sales Manager"));
        assert_false(title_is_approving("Technician"));
}

static void test_month(void **state) {
        int64_t from, to;

        assert_int_equal(month_parse("2026-12", &from, &to), 0);
        assert_int_equal(from, 1796083200);
        assert_int_equal(to, 1798761600);
        assert_int_equal(month_parse("2026-13", &from, &to), -EINVAL);
        assert_int_equal(month_parse("2026-1", &from, &to), -EINVAL);
        assert_int_equal(month_parse("26-01-", &from, &to), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_good),
                cmocka_unit_test(test_validity_hours),
                cmocka_unit_test(test_postgres_and_workers),
                cmocka_unit_test(test_web_root),
                cmocka_unit_test(test_bad),
                cmocka_unit_test(test_titles),
                cmocka_unit_test(test_month),
        };

        log_set_max_level(LOG_CRIT); /* the bad cases log their errors */
        return cmocka_run_group_tests(tests, NULL, NULL);
}
