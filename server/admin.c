/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* immo-passcode-admin: users, requests and reports of the reference passcode service. */
#include <getopt.h>
#include <stdio.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "password.h"
#include "report.h"

static bool arg_csv = false;

static int read_password(char ret[PASSWORD_MAX + 2]) {
        size_t l;

        if (!fgets(ret, PASSWORD_MAX + 2, stdin))
                return log_error_errno(EINVAL, "Expected the password on standard input.");
        l = strcspn(ret, "\r\n");
        if (l > PASSWORD_MAX || l == 0)
                return log_error_errno(EINVAL, "Expected a password of 1 to %d bytes.", PASSWORD_MAX);
        ret[l] = 0;
        return 0;
}

static int verb_hash_password(void) {
        char pw[PASSWORD_MAX + 2], h[PASSWORD_HASH_MAX];
        int r;

        r = read_password(pw);
        if (r < 0)
                return r;
        r = password_hash(pw, h);
        if (r < 0)
                return log_error_errno(r, "Failed to hash the password: %m");
        printf("%s\n", h);
        return 0;
}

static int verb_enroll(const ServerConfig *c, Db *db, char **args) {
        char pw[PASSWORD_MAX + 2];
        DbUser u = {};
        int r;

        if (!user_id_valid(args[0]))
                return log_error_errno(EINVAL, "\"%s\" is not a valid user id.", args[0]);
        if (!text_valid(args[1], CONFIG_NAME_MAX))
                return log_error_errno(EINVAL, "Expected a name of at most %d bytes.", CONFIG_NAME_MAX);
        if (!server_config_find_dealer(c, args[2]))
                return log_error_errno(EINVAL, "Dealer \"%s\" is not in the configuration.", args[2]);
        if (user_role_from_string(args[3], &u.role) < 0)
                return log_error_errno(EINVAL, "Expected the role technician or manager, got \"%s\".", args[3]);
        if (!text_valid(args[4], CONFIG_TITLE_MAX))
                return log_error_errno(EINVAL, "Expected a title of at most %d bytes.", CONFIG_TITLE_MAX);
        if (u.role == USER_MANAGER && !title_is_approving(args[4]))
                log_warning("\"%s\" is not an approving title: %s cannot approve reset requests.", args[4], args[0]);
        r = read_password(pw);
        if (r < 0)
                return r;
        snprintf(u.id, sizeof u.id, "%s", args[0]);
        snprintf(u.name, sizeof u.name, "%s", args[1]);
        snprintf(u.dealer, sizeof u.dealer, "%s", args[2]);
        snprintf(u.title, sizeof u.title, "%s", args[4]);
        r = password_hash(pw, u.password_hash);
        if (r < 0)
                return log_error_errno(r, "Failed to hash the password: %m");
        r = db_user_put(db, &u, true);
        if (r < 0)
                return log_error_errno(r, "Failed to enroll %s: %m", u.id);
        printf("Enrolled %s (%s, %s) at %s.\n", u.id, user_role_to_string(u.role), u.title, u.dealer);
        return 0;
}

static int verb_remove(Db *db, const char *id) {
        int r = db_user_remove(db, id);

        if (r == -ENOENT)
                return log_error_errno(r, "No enrolled user %s.", id);
        if (r < 0)
                return log_error_errno(r, "Failed to remove %s: %m", id);
        printf("Removed %s.\n", id);
        return 0;
}

static int verb_list_users(Db *db, const char *dealer) {
        _cleanup_free_ DbUser *u = NULL;
        size_t n;
        int r;

        r = db_users_list(db, dealer, &u, &n);
        if (r < 0)
                return log_error_errno(r, "Failed to list users: %m");
        printf("%-8s %-20s %-10s %-8s %s\n", "DEALER", "ID", "ROLE", "APPROVES", "NAME / TITLE");
        for (size_t i = 0; i < n; i++)
                printf("%-8s %-20s %-10s %-8s %s / %s\n", u[i].dealer, u[i].id, user_role_to_string(u[i].role),
                       u[i].role == USER_MANAGER && title_is_approving(u[i].title) ? "yes" : "no", u[i].name, u[i].title);
        return 0;
}

static int verb_list_requests(Db *db, const char *dealer) {
        _cleanup_free_ DbRequest *q = NULL;
        size_t n;
        int r;

        r = db_requests_list(db, dealer, NULL, 1000, &q, &n);
        if (r < 0)
                return log_error_errno(r, "Failed to list requests: %m");
        printf("%-16s %-8s %-17s %-10s %-12s %-12s %s\n", "REQUEST", "DEALER", "VIN", "STATUS", "TECHNICIAN",
               "DECIDED BY", "VALID TILL");
        for (size_t i = 0; i < n; i++) {
                char till[32] = "-";
                if (q[i].valid_till)
                        format_time(q[i].valid_till, till);
                printf("%-16s %-8s %-17s %-10s %-12s %-12s %s\n", q[i].request_no, q[i].dealer, q[i].vin, q[i].status,
                       q[i].technician, q[i].approved_by[0] ? q[i].approved_by : "-", till);
        }
        return 0;
}

static int verb_report(Db *db, const ServerConfig *c, const char *dealer, const char *month, bool csv) {
        _cleanup_free_ char *text = NULL;
        json_t *j = NULL;
        int64_t from, to;
        int r;

        if (month_parse(month, &from, &to) < 0)
                return log_error_errno(EINVAL, "Expected a month as YYYY-MM, got \"%s\".", month);
        if (dealer && !server_config_find_dealer(c, dealer))
                return log_error_errno(EINVAL, "Dealer \"%s\" is not in the configuration.", dealer);
        r = report_build(db, c, dealer, month, csv ? NULL : &j, csv ? &text : NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to build the report: %m");
        if (!csv) {
                text = json_dumps(j, JSON_INDENT(2));
                json_decref(j);
                if (!text)
                        return log_oom();
                puts(text);
        } else
                fputs(text, stdout);
        return fflush(stdout) == 0 ? 0 : -errno;
}

/* A database that starts small (SQLite) moves to PostgreSQL as it is: users, sessions,
 * requests and the whole transaction log, in one transaction on the target. */
static int verb_copy_to(Db *db, const char *target) {
        _cleanup_(db_closep) Db *to = NULL;
        DbCopyStats s;
        int r;

        r = db_open(target, &to);
        if (r < 0)
                return log_error_errno(r, "Failed to open the target database: %m");
        r = db_copy(db, to, &s);
        if (r < 0)
                return log_error_errno(r, "Failed to copy the database (the target is unchanged): %m");
        printf("Copied %zu users, %zu sessions, %zu reset requests and %zu transactions from %s into %s.\n", s.users,
               s.sessions, s.requests, s.transactions, db_backend_name(db), db_backend_name(to));
        return 0;
}

static void help(void) {
        printf("immo-passcode-admin --config FILE COMMAND ...\n\n"
               "Commands:\n"
               "  enroll ID NAME DEALER technician|manager TITLE   enroll a user (password on stdin)\n"
               "  remove ID                                         remove a user, ending his sessions\n"
               "  list-users [DEALER]\n"
               "  list-requests [DEALER]\n"
               "  report DEALER YYYY-MM [--csv]                     the monthly transaction report\n"
               "  nicb-export YYYY-MM                               every dealer's transactions as CSV\n"
               "  copy-to DATABASE                                  copy the configured database into another\n"
               "                                                    (a postgresql:// URI or a file), which\n"
               "                                                    must hold no requests or transactions yet\n"
               "  hash-password                                     a password_hash for the configuration\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "csv", no_argument, NULL, 'C' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(server_config_freep) ServerConfig *c = NULL;
        _cleanup_(db_closep) Db *db = NULL;
        const char *config = NULL, *verb;
        char **args;
        int n, r, o;

        log_set_ident("immo-passcode-admin");
        while ((o = getopt_long(argc, argv, "c:h", options, NULL)) >= 0)
                switch (o) {
                case 'c':
                        config = optarg;
                        break;
                case 'C':
                        arg_csv = true;
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }
        if (optind >= argc) {
                help();
                return EXIT_FAILURE;
        }
        verb = argv[optind];
        args = argv + optind + 1;
        n = argc - optind - 1;
        if (streq(verb, "hash-password"))
                return verb_hash_password() < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        if (!config) {
                log_error("--config FILE is needed.");
                return EXIT_FAILURE;
        }
        r = server_config_load(config, &c);
        if (r < 0)
                return EXIT_FAILURE;
        r = db_open(c->database, &db);
        if (r < 0)
                return EXIT_FAILURE;

        if (streq(verb, "enroll") && n == 5)
                r = verb_enroll(c, db, args);
        else if (streq(verb, "remove") && n == 1)
                r = verb_remove(db, args[0]);
        else if (streq(verb, "list-users") && n <= 1)
                r = verb_list_users(db, n ? args[0] : NULL);
        else if (streq(verb, "list-requests") && n <= 1)
                r = verb_list_requests(db, n ? args[0] : NULL);
        else if (streq(verb, "report") && n == 2)
                r = verb_report(db, c, args[0], args[1], arg_csv);
        else if (streq(verb, "nicb-export") && n == 1)
                r = verb_report(db, c, NULL, args[0], true);
        else if (streq(verb, "copy-to") && n == 1)
                r = verb_copy_to(db, args[0]);
        else {
                log_error("Unknown command or wrong number of arguments: %s (see --help).", verb);
                r = -EINVAL;
        }
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
