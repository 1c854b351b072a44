/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <time.h>

#include "parse-util.h"
#include "report.h"

int month_parse(const char *s, int64_t *ret_from, int64_t *ret_to) {
        char y[5], m[3];
        unsigned year, month;
        struct tm a = {}, b = {};

        if (strlen(s) != 7 || s[4] != '-')
                return -EINVAL;
        memcpy(y, s, 4);
        y[4] = 0;
        memcpy(m, s + 5, 2);
        m[2] = 0;
        if (parse_unsigned_range(y, 1970, 9999, &year) < 0 || parse_unsigned_range(m, 1, 12, &month) < 0)
                return -EINVAL;
        a.tm_year = (int) year - 1900;
        a.tm_mon = (int) month - 1;
        a.tm_mday = 1;
        b = a;
        if (++b.tm_mon == 12) {
                b.tm_mon = 0;
                b.tm_year++;
        }
        *ret_from = (int64_t) timegm(&a);
        *ret_to = (int64_t) timegm(&b);
        return 0;
}

void format_time(int64_t t, char buf[32]) {
        time_t tt = (time_t) t;
        struct tm tm;

        if (!gmtime_r(&tt, &tm))
                snprintf(buf, 32, "%lld", (long long) t);
        else
                strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A CSV field, quoted when it holds a comma, quote or line break; a leading = + - @ is
 * defused so a spreadsheet never runs it as a formula. */
static int csv_field(FILE *f, const char *s, bool last) {
        bool quote = strpbrk(s, ",\"\r\n") || strchr("=+-@", s[0]) != NULL;

        if (quote) {
                fputc('"', f);
                if (s[0] && strchr("=+-@", s[0]))
                        fputc('\'', f);
                for (const char *p = s; *p; p++) {
                        if (*p == '"')
                                fputc('"', f);
                        fputc(*p, f);
                }
                fputc('"', f);
        } else
                fputs(s, f);
        fputs(last ? "\r\n" : ",", f);
        return 0;
}

int report_build(Db *db, const ServerConfig *c, const char *dealer, const char *month, json_t **ret_json,
                 char **ret_csv) {
        _cleanup_free_ DbTransaction *t = NULL;
        _cleanup_free_ DbUser *users = NULL;
        size_t n = 0, n_users = 0;
        int64_t from, to;
        int r;

        r = month_parse(month, &from, &to);
        if (r < 0)
                return r;
        r = db_transactions_list(db, dealer, from, to, &t, &n);
        if (r < 0)
                return r;
        r = db_users_list(db, NULL, &users, &n_users);
        if (r < 0)
                return r;

        if (ret_json) {
                const ConfigDealer *d = dealer ? server_config_find_dealer(c, dealer) : NULL;
                json_t *list = json_array(), *o;

                if (!list)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        const char *name = "";
                        char when[32];

                        for (size_t j = 0; j < n_users; j++)
                                if (streq(users[j].id, t[i].user))
                                        name = users[j].name;
                        format_time(t[i].created_at, when);
                        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
                                                              "transaction_id", t[i].transaction_id,
                                                              "time", when,
                                                              "dealer", t[i].dealer,
                                                              "technician", t[i].user,
                                                              "technician_name", name,
                                                              "vin", t[i].vin,
                                                              "repair_order", t[i].repair_order,
                                                              "customer", t[i].customer,
                                                              "kind", t[i].kind,
                                                              "request_no", t[i].request_no,
                                                              "seed_digest", t[i].seed_digest));
                }
                o = json_pack("{s:s?, s:s?, s:s, s:I, s:o}", "dealer", dealer, "dealer_name", d ? d->name : NULL,
                              "month", month, "count", (json_int_t) n, "transactions", list);
                if (!o)
                        return -ENOMEM;
                *ret_json = o;
                return 0;
        }

        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        if (!f)
                return -errno;
        fputs("transaction_id,time,dealer,technician,technician_name,vin,repair_order,customer,kind,request_no,seed_digest\r\n", f);
        for (size_t i = 0; i < n; i++) {
                const char *name = "";
                char when[32];

                for (size_t j = 0; j < n_users; j++)
                        if (streq(users[j].id, t[i].user))
                                name = users[j].name;
                format_time(t[i].created_at, when);
                csv_field(f, t[i].transaction_id, false);
                csv_field(f, when, false);
                csv_field(f, t[i].dealer, false);
                csv_field(f, t[i].user, false);
                csv_field(f, name, false);
                csv_field(f, t[i].vin, false);
                csv_field(f, t[i].repair_order, false);
                csv_field(f, t[i].customer, false);
                csv_field(f, t[i].kind, false);
                csv_field(f, t[i].request_no, false);
                csv_field(f, t[i].seed_digest, true);
        }
        if (fclose(f) != 0)
                return -errno;
        *ret_csv = TAKE_PTR(buf);
        return 0;
}
