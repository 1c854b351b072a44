/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

#include "journal.h"
#include "log.h"

#define VIN "JTHBA1D20K5012345"

static char dir[64];

static int setup(void **state) {
        strcpy(dir, "/tmp/test-journal-XXXXXX");
        assert_non_null(mkdtemp(dir));
        return 0;
}

static int teardown(void **state) {
        DIR *d = opendir(dir);
        struct dirent *de;
        char p[512];

        assert_non_null(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
                        assert_int_equal(unlink(p), 0);
                }
        closedir(d);
        assert_int_equal(rmdir(dir), 0);
        return 0;
}

static JournalRecord sample(uint64_t id) {
        return (JournalRecord) {
                .id = id,
                .kind = PROCEDURE_IMMOBILIZER_RESET,
                .vin = (char *) VIN,
                .profile = (char *) "lexus-es-ux-ls-2018-2021",
                .owner = 1000,
                .technician = (char *) "Zoë Tech",
                .repair_order = (char *) "RO-4711",
                .customer_last_name = (char *) "Müller",
                .created = 1714560000123456ULL,
                .step = "resetting",
                .sent_command = (char *) "31 01 A1 01",
                .sent_at = 1714560900654321ULL,
                .keys_before = 2,
                .battery_min = 12.345678901234567,
                .passcode_attempts = 3,
                .state = JOURNAL_STATE_RUNNING,
        };
}

static void write_text(const char *name, const char *text) {
        char p[512];
        FILE *f;

        snprintf(p, sizeof(p), "%s/%s", dir, name);
        f = fopen(p, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
        assert_int_equal(fclose(f), 0);
}

static size_t count_files(void) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

static void test_round_trip(void **state) {
        JournalRecord a = sample(7), b = sample(3), *r = NULL;
        size_t n = 99;
        struct stat st;
        char p[512];

        b.kind = PROCEDURE_KEY_ERASURE;
        b.step = "touch-keys";
        b.sent_command = NULL;
        b.sent_at = 0;
        b.keys_before = -1;
        b.battery_min = NAN;
        b.technician = (char *) "";
        b.repair_order = (char *) "";
        b.customer_last_name = NULL;
        b.owner = 0;
        b.state = JOURNAL_STATE_WAITING;

        assert_int_equal(journal_write(dir, &a), 0);
        assert_int_equal(journal_write(dir, &b), 0);
        /* atomic replace leaves no temporary file behind */
        a.step = "smart-code-passcode";
        a.sent_command = NULL;
        a.sent_at = 0;
        assert_int_equal(journal_write(dir, &a), 0);
        a.step = "resetting";
        a.sent_command = (char *) "31 01 A1 01";
        a.sent_at = 1714560900654321ULL;
        assert_int_equal(journal_write(dir, &a), 0);
        assert_int_equal(count_files(), 2);

        snprintf(p, sizeof(p), "%s/procedure-7.json", dir);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);

        assert_int_equal(journal_load_all(dir, &r, &n), 0);
        assert_int_equal(n, 2);
        /* ordered by id */
        assert_int_equal(r[0].id, 3);
        assert_int_equal(r[0].kind, PROCEDURE_KEY_ERASURE);
        assert_string_equal(r[0].step, "touch-keys");
        assert_null(r[0].sent_command);
        assert_int_equal(r[0].sent_at, 0);
        assert_int_equal(r[0].keys_before, -1);
        assert_true(isnan(r[0].battery_min));
        assert_string_equal(r[0].technician, "");
        assert_string_equal(r[0].repair_order, "");
        assert_string_equal(r[0].customer_last_name, "");
        assert_int_equal(r[0].owner, 0);
        assert_int_equal(r[0].state, JOURNAL_STATE_WAITING);

        assert_int_equal(r[1].id, 7);
        assert_int_equal(r[1].kind, PROCEDURE_IMMOBILIZER_RESET);
        assert_string_equal(r[1].vin, VIN);
        assert_string_equal(r[1].profile, "lexus-es-ux-ls-2018-2021");
        assert_int_equal(r[1].owner, 1000);
        assert_string_equal(r[1].technician, "Zoë Tech");
        assert_string_equal(r[1].repair_order, "RO-4711");
        assert_string_equal(r[1].customer_last_name, "Müller");
        assert_int_equal(r[1].created, 1714560000123456ULL);
        assert_string_equal(r[1].step, "resetting");
        assert_string_equal(r[1].sent_command, "31 01 A1 01");
        assert_int_equal(r[1].sent_at, 1714560900654321ULL);
        assert_int_equal(r[1].keys_before, 2);
        assert_true(r[1].battery_min == 12.345678901234567);
        assert_int_equal(r[1].passcode_attempts, 3);
        assert_int_equal(r[1].state, JOURNAL_STATE_RUNNING);
        journal_records_free(r, n);

        assert_int_equal(journal_remove(dir, 7), 0);
        assert_int_equal(journal_remove(dir, 7), 0); /* already gone */
        assert_int_equal(journal_load_all(dir, &r, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(r[0].id, 3);
        journal_records_free(r, n);
}

static void test_empty_and_missing(void **state) {
        JournalRecord *r = (JournalRecord *) 0x1;
        char missing[600];
        size_t n = 99;

        assert_int_equal(journal_load_all(dir, &r, &n), 0);
        assert_null(r);
        assert_int_equal(n, 0);

        snprintf(missing, sizeof(missing), "%s/nope", dir);
        r = (JournalRecord *) 0x1;
        n = 99;
        assert_int_equal(journal_load_all(missing, &r, &n), 0);
        assert_null(r);
        assert_int_equal(n, 0);
}

static void test_write_rejects(void **state) {
        JournalRecord a = sample(1);

        a.step = "touch-keys"; /* a step of key-erasure, not of the reset */
        assert_int_equal(journal_write(dir, &a), -EINVAL);
        a = sample(1);
        a.kind = _PROCEDURE_KIND_MAX;
        assert_int_equal(journal_write(dir, &a), -EINVAL);
        a = sample(1);
        a.vin = (char *) "JTHBA1D20K501234O";
        assert_int_equal(journal_write(dir, &a), -EINVAL);
        a = sample(1);
        a.sent_command = (char *) "31 01 a1 01";
        assert_int_equal(journal_write(dir, &a), -EINVAL);
        a = sample(1);
        a.sent_at = 0;
        assert_int_equal(journal_write(dir, &a), -EINVAL);
        a = sample(1);
        a.technician = (char *) "evil\nline";
        assert_int_equal(journal_write(dir, &a), -EINVAL);
        a = sample(1);
        a.repair_order = (char *) "\xc3\x28";
        assert_int_equal(journal_write(dir, &a), -EINVAL);
        a = sample(1);
        a.customer_last_name = (char *) "Smith\r";
        assert_int_equal(journal_write(dir, &a), -EINVAL);
        a = sample(0);
        assert_int_equal(journal_write(dir, &a), -EINVAL);
        a = sample((uint64_t) INT64_MAX + 1);
        assert_int_equal(journal_write(dir, &a), -EINVAL);
        a = sample(1);
        a.battery_min = -1.0;
        assert_int_equal(journal_write(dir, &a), -EINVAL);
        a = sample(1);
        a.state = _JOURNAL_STATE_MAX;
        assert_int_equal(journal_write(dir, &a), -EINVAL);
        assert_int_equal(count_files(), 0);
}

#define GOOD_BODY(id, kind, step)                                                                       \
        "{\"version\":1,\"id\":" id ",\"kind\":\"" kind "\",\"vin\":\"" VIN "\",\"profile\":\"p\","     \
        "\"owner\":1000,\"technician\":\"\",\"repair_order\":\"\",\"created\":5,\"step\":\"" step "\"," \
        "\"sent\":null,\"keys_before\":null,\"battery_min\":null,\"passcode_attempts\":0,\"state\":\"running\"}"

static void test_invalid_files_skipped(void **state) {
        JournalRecord a = sample(5), *r = NULL;
        size_t n = 0;

        assert_int_equal(journal_write(dir, &a), 0);
        write_text("procedure-1.json", "{ not json");
        write_text("procedure-2.json", GOOD_BODY("2", "key-erasure", "resetting")); /* wrong step */
        write_text("procedure-3.json", GOOD_BODY("3", "key-repair", "done"));       /* unknown kind */
        write_text("procedure-4.json", GOOD_BODY("44", "key-erasure", "done"));     /* id differs */
        write_text("procedure-6.json", "");
        write_text("procedure-8.json", "[]");
        write_text("procedure-9.json",
                   "{\"version\":2,\"id\":9}"); /* a future version */
        write_text("procedure-10.json",
                   "{\"version\":1,\"id\":\"10\"}"); /* wrong type */
        write_text("procedure-11.json", GOOD_BODY("11", "key-registration", "done"));
        write_text("procedure-011.json", GOOD_BODY("11", "key-registration", "done")); /* not canonical */
        write_text("procedure-12.json.tmpAbCdEf", "half");                             /* crash leftover */
        write_text("other.txt", "unrelated");
        assert_int_equal(mkdir(strcat(strcpy((char[600]) {}, dir), "/procedure-13.json"), 0700), 0);

        assert_int_equal(journal_load_all(dir, &r, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(r[0].id, 5);
        assert_int_equal(r[1].id, 11);
        assert_int_equal(r[1].kind, PROCEDURE_KEY_REGISTRATION);
        assert_string_equal(r[1].step, "done");
        journal_records_free(r, n);

        /* the stale temporary file is gone, the invalid journals stay for a person to see */
        {
                char p[600];

                snprintf(p, sizeof(p), "%s/procedure-12.json.tmpAbCdEf", dir);
                assert_int_equal(access(p, F_OK), -1);
                snprintf(p, sizeof(p), "%s/procedure-13.json", dir);
                assert_int_equal(rmdir(p), 0);
        }
}

static void test_extra_key_and_types(void **state) {
        JournalRecord *r = NULL;
        size_t n = 0;

        write_text("procedure-1.json",
                   "{\"version\":1,\"id\":1,\"kind\":\"key-erasure\",\"vin\":\"" VIN "\",\"profile\":\"p\","
                   "\"owner\":1000,\"technician\":\"\",\"repair_order\":\"\",\"created\":5,\"step\":\"done\","
                   "\"sent\":null,\"keys_before\":null,\"battery_min\":null,\"passcode_attempts\":0,"
                   "\"state\":\"running\",\"passcode\":\"secret\"}");
        write_text("procedure-2.json",
                   "{\"version\":1,\"id\":2,\"kind\":\"key-erasure\",\"vin\":\"" VIN "\",\"profile\":\"p\","
                   "\"owner\":1000,\"technician\":\"\",\"repair_order\":\"\",\"created\":5,\"step\":\"done\","
                   "\"sent\":{\"command\":\"31 01 A1 01\"},\"keys_before\":null,\"battery_min\":null,"
                   "\"passcode_attempts\":0,\"state\":\"running\"}");
        write_text("procedure-3.json",
                   "{\"version\":1,\"id\":3,\"kind\":\"key-erasure\",\"vin\":\"" VIN "\",\"profile\":\"p\","
                   "\"owner\":1000,\"technician\":\"\",\"repair_order\":\"\",\"created\":5,\"step\":\"done\","
                   "\"sent\":null,\"keys_before\":\"2\",\"battery_min\":null,\"passcode_attempts\":0,"
                   "\"state\":\"running\"}");
        write_text("procedure-4.json",
                   "{\"version\":1,\"id\":4,\"kind\":\"key-erasure\",\"vin\":\"" VIN "\",\"profile\":\"p\","
                   "\"owner\":1000,\"technician\":\"\",\"repair_order\":\"\",\"created\":5,\"step\":\"done\","
                   "\"sent\":null,\"keys_before\":2,\"battery_min\":11,\"passcode_attempts\":0,"
                   "\"state\":\"asleep\"}");
        write_text("procedure-5.json",
                   "{\"version\":1,\"id\":5,\"kind\":\"key-erasure\",\"vin\":\"" VIN "\",\"profile\":\"p\","
                   "\"owner\":1000,\"technician\":\"\",\"repair_order\":\"\",\"created\":5,\"step\":\"done\","
                   "\"sent\":null,\"keys_before\":2,\"battery_min\":11,\"passcode_attempts\":0,"
                   "\"state\":\"failed\"}");
        assert_int_equal(journal_load_all(dir, &r, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(r[0].id, 5);
        assert_true(r[0].battery_min == 11.0);
        assert_int_equal(r[0].state, JOURNAL_STATE_FAILED);
        journal_records_free(r, n);
}

/* A journal written before customer_last_name was journalled still loads, with "". */
static void test_without_customer(void **state) {
        JournalRecord *r = NULL;
        size_t n = 0;

        write_text("procedure-1.json", GOOD_BODY("1", "key-registration", "smart-code-passcode"));
        write_text("procedure-2.json",
                   "{\"version\":1,\"id\":2,\"kind\":\"key-erasure\",\"vin\":\"" VIN "\",\"profile\":\"p\","
                   "\"owner\":1000,\"technician\":\"\",\"repair_order\":\"RO-1\",\"customer_last_name\":\"Smith\","
                   "\"created\":5,\"step\":\"declare-keys\",\"sent\":null,\"keys_before\":null,"
                   "\"battery_min\":null,\"passcode_attempts\":0,\"state\":\"waiting\"}");
        write_text("procedure-3.json",
                   "{\"version\":1,\"id\":3,\"kind\":\"key-erasure\",\"vin\":\"" VIN "\",\"profile\":\"p\","
                   "\"owner\":1000,\"technician\":\"\",\"repair_order\":\"\",\"customer_last_name\":7,"
                   "\"created\":5,\"step\":\"done\",\"sent\":null,\"keys_before\":null,"
                   "\"battery_min\":null,\"passcode_attempts\":0,\"state\":\"running\"}");
        assert_int_equal(journal_load_all(dir, &r, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(r[0].id, 1);
        assert_string_equal(r[0].step, "smart-code-passcode");
        assert_non_null(r[0].customer_last_name);
        assert_string_equal(r[0].customer_last_name, "");
        assert_int_equal(r[1].id, 2);
        assert_string_equal(r[1].customer_last_name, "Smith");
        assert_string_equal(r[1].repair_order, "RO-1");
        journal_records_free(r, n);
}

static void test_too_large(void **state) {
        char *big = malloc(JOURNAL_FILE_MAX + 2);
        JournalRecord a = sample(2), *r = NULL;
        size_t n = 0;

        assert_non_null(big);
        memset(big, ' ', JOURNAL_FILE_MAX + 1);
        big[JOURNAL_FILE_MAX + 1] = 0;
        write_text("procedure-1.json", big);
        free(big);
        assert_int_equal(journal_write(dir, &a), 0);
        assert_int_equal(journal_load_all(dir, &r, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(r[0].id, 2);
        journal_records_free(r, n);
}

static void test_too_many(void **state) {
        JournalRecord *r = NULL;
        size_t n = 0;

        for (unsigned i = 1; i <= JOURNAL_MAX_FILES + 3; i++) {
                JournalRecord a = sample(i);

                assert_int_equal(journal_write(dir, &a), 0);
        }
        assert_int_equal(journal_load_all(dir, &r, &n), 0);
        assert_int_equal(n, JOURNAL_MAX_FILES);
        for (size_t i = 1; i < n; i++)
                assert_true(r[i - 1].id < r[i].id);
        journal_records_free(r, n);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_empty_and_missing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_write_rejects, setup, teardown),
                cmocka_unit_test_setup_teardown(test_invalid_files_skipped, setup, teardown),
                cmocka_unit_test_setup_teardown(test_extra_key_and_types, setup, teardown),
                cmocka_unit_test_setup_teardown(test_without_customer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
                cmocka_unit_test_setup_teardown(test_too_many, setup, teardown),
        };

        log_set_max_level(LOG_DEBUG);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
