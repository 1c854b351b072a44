/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "log.h"

#define VIN "JTHBA1D20K5012345"

static char dir[64], log_path[128];

static int setup(void **state) {
        strcpy(dir, "/tmp/test-audit-XXXXXX");
        assert_non_null(mkdtemp(dir));
        snprintf(log_path, sizeof(log_path), "%s/audit.log", dir);
        return 0;
}

static int teardown(void **state) {
        (void) unlink(log_path);
        assert_int_equal(rmdir(dir), 0);
        return 0;
}

static AuditRecord sample(uint64_t id) {
        return (AuditRecord) {
                .id = id,
                .uid = 1000,
                .technician = (char *) "Zoë Tech",
                .time = 1714561900123456ULL, /* 2024-05-01T11:11:40Z */
                .created = 1714560000000001ULL,
                .kind = PROCEDURE_IMMOBILIZER_RESET,
                .vin = (char *) VIN,
                .profile = (char *) "lexus-es-ux-ls-2018-2021",
                .repair_order = (char *) "RO-4711",
                .result = AUDIT_SUCCEEDED,
                .error = NULL,
                .keys_before = 2,
                .keys_after = 0,
                .battery_min = 12.345678901234567,
                .passcode_attempts = 2,
        };
}

static void append_raw(const char *text) {
        FILE *f = fopen(log_path, "ae");

        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
        assert_int_equal(fclose(f), 0);
}

static char *read_all(void) {
        static char buf[8192];
        FILE *f = fopen(log_path, "re");
        size_t n;

        assert_non_null(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = 0;
        fclose(f);
        return buf;
}

static void test_round_trip(void **state) {
        AuditRecord a = sample(1), b = sample(2), *r = NULL;
        size_t n = 0;
        struct stat st;

        b.kind = PROCEDURE_KEY_ERASURE;
        b.result = AUDIT_FAILED;
        b.error = (char *) "org.immod.Immod1.Error.CountMismatch";
        b.keys_before = -1;
        b.keys_after = -1;
        b.battery_min = NAN;
        b.technician = (char *) "";
        b.repair_order = (char *) "";
        b.uid = 0;
        b.time = 1714561900999999ULL;

        assert_int_equal(audit_append(dir, &a), 0);
        assert_int_equal(audit_append(dir, &b), 0);
        assert_int_equal(stat(log_path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_true(strncmp(read_all(),
                            "{\"version\":1,\"id\":1,\"time\":\"2024-05-01T11:11:40Z\",\"usec\":1714561900123456,", 74) ==
                    0);

        assert_int_equal(audit_read(dir, 0, &r, &n), 0);
        assert_int_equal(n, 2);
        /* newest first */
        assert_int_equal(r[0].id, 2);
        assert_int_equal(r[0].kind, PROCEDURE_KEY_ERASURE);
        assert_int_equal(r[0].result, AUDIT_FAILED);
        assert_string_equal(r[0].error, "org.immod.Immod1.Error.CountMismatch");
        assert_int_equal(r[0].keys_before, -1);
        assert_int_equal(r[0].keys_after, -1);
        assert_true(isnan(r[0].battery_min));
        assert_string_equal(r[0].technician, "");
        assert_int_equal(r[0].uid, 0);
        assert_int_equal(r[0].time, 1714561900999999ULL);

        assert_int_equal(r[1].id, 1);
        assert_int_equal(r[1].uid, 1000);
        assert_string_equal(r[1].technician, "Zoë Tech");
        assert_int_equal(r[1].time, 1714561900123456ULL);
        assert_int_equal(r[1].created, 1714560000000001ULL);
        assert_int_equal(r[1].kind, PROCEDURE_IMMOBILIZER_RESET);
        assert_string_equal(r[1].vin, VIN);
        assert_string_equal(r[1].profile, "lexus-es-ux-ls-2018-2021");
        assert_string_equal(r[1].repair_order, "RO-4711");
        assert_int_equal(r[1].result, AUDIT_SUCCEEDED);
        assert_null(r[1].error);
        assert_int_equal(r[1].keys_before, 2);
        assert_int_equal(r[1].keys_after, 0);
        assert_true(r[1].battery_min == 12.345678901234567);
        assert_int_equal(r[1].passcode_attempts, 2);
        audit_records_free(r, n);
}

static void test_limit(void **state) {
        AuditRecord *r = NULL;
        size_t n = 0;

        for (uint64_t i = 1; i <= 10; i++) {
                AuditRecord a = sample(i);

                assert_int_equal(audit_append(dir, &a), 0);
        }
        assert_int_equal(audit_read(dir, 3, &r, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(r[0].id, 10);
        assert_int_equal(r[1].id, 9);
        assert_int_equal(r[2].id, 8);
        audit_records_free(r, n);

        assert_int_equal(audit_read(dir, 100, &r, &n), 0);
        assert_int_equal(n, 10);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(r[i].id, 10 - i);
        audit_records_free(r, n);
}

static void test_empty_and_missing(void **state) {
        AuditRecord *r = (AuditRecord *) 0x1;
        size_t n = 99;

        assert_int_equal(audit_read(dir, 0, &r, &n), 0);
        assert_null(r);
        assert_int_equal(n, 0);

        append_raw("");
        r = (AuditRecord *) 0x1;
        n = 99;
        assert_int_equal(audit_read(dir, 0, &r, &n), 0);
        assert_null(r);
        assert_int_equal(n, 0);

        append_raw("\n\n");
        assert_int_equal(audit_read(dir, 5, &r, &n), 0);
        assert_null(r);
        assert_int_equal(n, 0);
}

static void test_crash_cut_line(void **state) {
        AuditRecord a = sample(1), b = sample(2), c = sample(3), *r = NULL;
        size_t n = 0;

        assert_int_equal(audit_append(dir, &a), 0);
        assert_int_equal(audit_append(dir, &b), 0);
        /* a crash in the middle of the third append: half a line, no newline */
        append_raw("{\"version\":1,\"id\":3,\"time\":\"2024-05-");

        assert_int_equal(audit_read(dir, 0, &r, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(r[0].id, 2);
        assert_int_equal(r[1].id, 1);
        audit_records_free(r, n);

        /* the next append continues the cut line; its record is still found */
        assert_int_equal(audit_append(dir, &c), 0);
        assert_int_equal(audit_read(dir, 0, &r, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(r[0].id, 3);
        assert_int_equal(r[1].id, 2);
        assert_int_equal(r[2].id, 1);
        audit_records_free(r, n);
}

static void test_corrupt_lines_skipped(void **state) {
        AuditRecord a = sample(1), b = sample(2), *r = NULL;
        size_t n = 0;

        assert_int_equal(audit_append(dir, &a), 0);
        append_raw("garbage\n");
        append_raw("{\"version\":1,\"id\":7}\n"); /* fields missing */
        append_raw("{\"version\":9,\"id\":7}\n"); /* unknown version */
        append_raw("[1,2,3]\n");
        assert_int_equal(audit_append(dir, &b), 0);
        /* a valid-looking record with a wrong kind */
        {
                char *line = strdup(read_all());
                char *p;

                assert_non_null(line);
                p = strrchr(line, '\n');
                *p = 0;
                p = strrchr(line, '\n');
                p = strstr(p, "immobilizer-reset");
                assert_non_null(p);
                memcpy(p, "immobilizer-rexet", strlen("immobilizer-rexet"));
                append_raw(strrchr(line, '\n') + 1);
                append_raw("\n");
                free(line);
        }

        assert_int_equal(audit_read(dir, 0, &r, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(r[0].id, 2);
        assert_int_equal(r[1].id, 1);
        audit_records_free(r, n);
}

static void test_append_rejects(void **state) {
        AuditRecord a = sample(1);

        a.result = AUDIT_FAILED; /* without an error */
        assert_int_equal(audit_append(dir, &a), -EINVAL);
        a = sample(1);
        a.error = (char *) "org.immod.Immod1.Error.Busy"; /* succeeded with an error */
        assert_int_equal(audit_append(dir, &a), -EINVAL);
        a = sample(1);
        a.result = AUDIT_CANCELLED;
        a.error = (char *) "not a name!";
        assert_int_equal(audit_append(dir, &a), -EINVAL);
        a = sample(1);
        a.technician = (char *) "x\ny";
        assert_int_equal(audit_append(dir, &a), -EINVAL);
        a = sample(1);
        a.vin = (char *) "short";
        assert_int_equal(audit_append(dir, &a), -EINVAL);
        a = sample(1);
        a.kind = _PROCEDURE_KIND_MAX;
        assert_int_equal(audit_append(dir, &a), -EINVAL);
        a = sample(1);
        a.keys_after = 256;
        assert_int_equal(audit_append(dir, &a), -EINVAL);
        assert_int_equal(access(log_path, F_OK), -1);
}

/* The voltage trace goes with the record and comes back as written, to the millivolt. */
static void test_trace(void **state) {
        AuditTracePoint points[3] = { { 0, 13.2, 13.81 }, { 8, 12.0004, 13.5 }, { 960, 12.9, 13.0 } };
        AuditRecord rec = sample(7), *r = NULL;
        size_t n = 0;

        rec.trace = points;
        rec.n_trace = ELEMENTSOF(points);
        assert_int_equal(audit_append(dir, &rec), 0);
        assert_int_equal(audit_read(dir, 0, &r, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(r[0].n_trace, 3);
        assert_int_equal(r[0].trace[2].offset_s, 960);
        assert_true(fabs(r[0].trace[1].min_v - 12.0) < 1e-9);
        assert_true(fabs(r[0].trace[0].max_v - 13.81) < 1e-9);
        audit_records_free(r, n);

        /* refused when it makes no sense: nothing is written */
        points[1].min_v = 14.0; /* above its max */
        assert_int_equal(audit_append(dir, &rec), -EINVAL);
        rec.n_trace = AUDIT_TRACE_MAX + 1;
        assert_int_equal(audit_append(dir, &rec), -EINVAL);

        /* a record whose trace is malformed is skipped, the others are read */
        append_raw("{\"version\":1,\"id\":8,\"time\":\"2024-05-01T11:11:40Z\",\"usec\":1714561900123456,"
                   "\"created\":1714560000000001,\"uid\":1,\"technician\":\"\",\"vin\":\"" VIN "\","
                   "\"profile\":\"p\",\"repair_order\":\"\",\"kind\":\"key-erasure\",\"result\":\"succeeded\","
                   "\"error\":null,\"keys_before\":2,\"keys_after\":1,\"battery_min\":null,"
                   "\"passcode_attempts\":1,\"trace\":[[1,\"x\",2]]}\n");
        assert_int_equal(audit_read(dir, 0, &r, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(r[0].id, 7);
        audit_records_free(r, n);
}

/* A full log becomes audit.log.1 and a new one starts; the history reads across both,
 * newest first, and nothing is lost. */
static void test_rotation(void **state) {
        char rotated[160], line[1024];
        AuditRecord *r = NULL, one = sample(1);
        size_t n = 0, len;
        unsigned k = 0;
        FILE *f;

        /* a log as full as one more record makes it rotate, of valid records 1..k */
        assert_int_equal(audit_append(dir, &one), 0);
        f = fopen(log_path, "re");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof(line), f));
        fclose(f);
        assert_non_null(strstr(line, "\"id\":1,"));
        len = strlen(line);
        f = fopen(log_path, "we");
        assert_non_null(f);
        while (ftell(f) + (long) len <= (long) AUDIT_ROTATE_BYTES) {
                const char *id = strstr(line, "\"id\":1,");
                fprintf(f, "%.*s\"id\":%u,%s", (int) (id - line), line, ++k, id + strlen("\"id\":1,"));
        }
        fclose(f);
        assert_true(k > 100);

        one = sample(k + 1);
        assert_int_equal(audit_append(dir, &one), 0);
        snprintf(rotated, sizeof(rotated), "%s.1", log_path);
        assert_int_equal(access(rotated, F_OK), 0);

        assert_int_equal(audit_read(dir, 3, &r, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(r[0].id, k + 1); /* the new log */
        assert_int_equal(r[1].id, k);     /* the rotated one */
        assert_int_equal(r[2].id, k - 1);
        audit_records_free(r, n);

        assert_int_equal(audit_read(dir, 0, &r, &n), 0);
        assert_int_equal(n, k + 1);
        for (size_t i = 0; i < n; i++) /* every record once, newest first, across chunks and files */
                assert_int_equal(r[i].id, k + 1 - i);
        audit_records_free(r, n);
        assert_int_equal(unlink(rotated), 0);
}

/* A line longer than the reader's chunk (junk here), between records: the records on both
 * sides are read, in order. */
static void test_long_line(void **state) {
        AuditRecord a = sample(1), b = sample(2), *r = NULL;
        size_t n = 0;
        char *junk = malloc(200 * 1024 + 2);

        assert_non_null(junk);
        memset(junk, 'x', 200 * 1024);
        strcpy(junk + 200 * 1024, "\n");
        assert_int_equal(audit_append(dir, &a), 0);
        append_raw(junk);
        assert_int_equal(audit_append(dir, &b), 0);
        free(junk);

        assert_int_equal(audit_read(dir, 0, &r, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(r[0].id, 2);
        assert_int_equal(r[1].id, 1);
        audit_records_free(r, n);
}

/* A reader that is open while the log rotates goes on with the log it read (now
 * audit.log.1) and then the older ones: nothing twice, nothing missed. */
static void test_reader_across_rotation(void **state) {
        char rotated[160];
        AuditReader *reader = NULL;
        AuditRecord rec, one;
        uint64_t expect = 0;
        unsigned k = 0;
        struct stat st;

        /* records 1..k, until the next one rotates the log */
        for (;;) {
                one = sample(++k);
                assert_int_equal(audit_append(dir, &one), 0);
                assert_int_equal(stat(log_path, &st), 0);
                if ((uint64_t) st.st_size + (uint64_t) st.st_size / k > AUDIT_ROTATE_BYTES)
                        break;
        }
        assert_int_equal(audit_reader_new(dir, &reader), 0);
        assert_int_equal(audit_reader_next(reader, &rec), 1);
        assert_int_equal(rec.id, k);
        audit_record_done(&rec);

        one = sample(k + 1);
        assert_int_equal(audit_append(dir, &one), 0);
        snprintf(rotated, sizeof(rotated), "%s.1", log_path);
        assert_int_equal(access(rotated, F_OK), 0);

        expect = k - 1;
        while (audit_reader_next(reader, &rec) == 1) {
                assert_int_equal(rec.id, expect);
                expect--;
                audit_record_done(&rec);
        }
        assert_int_equal(expect, 0);
        audit_reader_free(reader);
        assert_int_equal(unlink(rotated), 0);
}

static void test_too_large(void **state) {
        AuditRecord *r = NULL;
        size_t n = 0;

        assert_int_equal(truncate(log_path, 0) < 0 ? (append_raw(""), 0) : 0, 0);
        assert_int_equal(truncate(log_path, AUDIT_FILE_MAX + 1), 0);
        assert_int_equal(audit_read(dir, 0, &r, &n), -EFBIG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_limit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_empty_and_missing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crash_cut_line, setup, teardown),
                cmocka_unit_test_setup_teardown(test_corrupt_lines_skipped, setup, teardown),
                cmocka_unit_test_setup_teardown(test_append_rejects, setup, teardown),
                cmocka_unit_test_setup_teardown(test_trace, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reader_across_rotation, setup, teardown),
                cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
        };

        log_set_max_level(LOG_DEBUG);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
