/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "battery.h"
#include "fileio.h"
#include "log.h"

/* The shipped profiles' rules (conf/profiles/, vehicle-protocol.md §2). */
#define LEXUS_START 13.0
#define LEXUS_RUNNING 12.5
#define TOYOTA_START 12.0
#define TOYOTA_RUNNING 11.5

/* The fake clock: the monitor never reads a clock itself. */
static usec_t fake_now = 1000 * USEC_PER_SEC;

static usec_t advance_ms(unsigned ms) {
        fake_now += ms * USEC_PER_MSEC;
        return fake_now;
}

static BatteryState feed(BatteryMonitor *m, double v) {
        assert_int_equal(battery_monitor_sample(m, v, advance_ms(100)), 0);
        return battery_monitor_state(m);
}

static void test_state_names(void **state) {
        assert_string_equal(battery_state_to_string(BATTERY_STATE_UNKNOWN), "unknown");
        assert_string_equal(battery_state_to_string(BATTERY_STATE_OK), "ok");
        assert_string_equal(battery_state_to_string(BATTERY_STATE_LOW), "low");
        assert_string_equal(battery_state_to_string(BATTERY_STATE_CRITICAL), "critical");
        assert_null(battery_state_to_string(_BATTERY_STATE_MAX));
        assert_null(battery_state_to_problem(BATTERY_STATE_OK));
        assert_null(battery_state_to_problem(BATTERY_STATE_UNKNOWN));
        assert_string_equal(battery_state_to_problem(BATTERY_STATE_LOW), "battery-low");
        assert_string_equal(battery_state_to_problem(BATTERY_STATE_CRITICAL), "battery-critical");
}

static void test_init(void **state) {
        BatteryMonitor m;

        assert_int_equal(battery_monitor_init(&m, LEXUS_START, LEXUS_RUNNING), 0);
        assert_int_equal(battery_monitor_state(&m), BATTERY_STATE_UNKNOWN);
        assert_true(isnan(battery_monitor_voltage(&m)));
        assert_int_equal(battery_monitor_init(&m, 12.0, 12.5), -EINVAL); /* running above start */
        assert_int_equal(battery_monitor_init(&m, NAN, 12.0), -EINVAL);
        assert_int_equal(battery_monitor_init(&m, 13.0, -1.0), -EINVAL);
        assert_int_equal(battery_monitor_init(&m, 41.0, 12.0), -EINVAL);
        /* no vehicle yet: every good reading is ok */
        assert_int_equal(battery_monitor_init(&m, 0, 0), 0);
        assert_int_equal(feed(&m, 3.0), BATTERY_STATE_OK);
}

static void check_thresholds(double start, double running) {
        BatteryMonitor m;

        assert_int_equal(battery_monitor_init(&m, start, running), 0);
        assert_int_equal(feed(&m, start + 0.5), BATTERY_STATE_OK);
        assert_int_equal(feed(&m, start), BATTERY_STATE_OK); /* at the minimum is enough */
        assert_int_equal(feed(&m, start - 0.01), BATTERY_STATE_LOW);
        assert_int_equal(feed(&m, running), BATTERY_STATE_LOW);
        assert_int_equal(feed(&m, running - 0.01), BATTERY_STATE_CRITICAL);
        assert_int_equal(feed(&m, 0.0), BATTERY_STATE_CRITICAL);
        assert_int_equal(feed(&m, start + 1.0), BATTERY_STATE_OK); /* far up: straight to ok */

        /* a first reading is classified without hysteresis */
        assert_int_equal(battery_monitor_init(&m, start, running), 0);
        assert_int_equal(feed(&m, start - 0.4), BATTERY_STATE_LOW);
        assert_int_equal(battery_monitor_init(&m, start, running), 0);
        assert_int_equal(feed(&m, running - 0.4), BATTERY_STATE_CRITICAL);
        assert_int_equal(battery_monitor_init(&m, start, running), 0);
        assert_int_equal(feed(&m, start + 0.01), BATTERY_STATE_OK);
}

static void test_thresholds_lexus(void **state) {
        check_thresholds(LEXUS_START, LEXUS_RUNNING);
}

static void test_thresholds_toyota(void **state) {
        BatteryMonitor m;

        check_thresholds(TOYOTA_START, TOYOTA_RUNNING);

        /* 12.4 V: low for a Lexus, ok for a Toyota */
        assert_int_equal(battery_monitor_init(&m, TOYOTA_START, TOYOTA_RUNNING), 0);
        assert_int_equal(feed(&m, 12.4), BATTERY_STATE_OK);
        assert_int_equal(battery_monitor_set_rules(&m, LEXUS_START, LEXUS_RUNNING), 0);
        assert_int_equal(battery_monitor_state(&m), BATTERY_STATE_CRITICAL);
        assert_int_equal(battery_monitor_set_rules(&m, 12.0, 13.0), -EINVAL);
}

static void test_hysteresis(void **state) {
        static const double hover[] = { 12.99, 13.01, 12.98, 13.05, 13.0, 13.09, 12.995 };
        BatteryMonitor m;

        assert_int_equal(battery_monitor_init(&m, LEXUS_START, LEXUS_RUNNING), 0);
        assert_int_equal(feed(&m, 13.4), BATTERY_STATE_OK);
        assert_int_equal(feed(&m, 12.99), BATTERY_STATE_LOW);
        /* hovering at the start minimum: stays low */
        for (size_t i = 0; i < ELEMENTSOF(hover); i++)
                assert_int_equal(feed(&m, hover[i]), BATTERY_STATE_LOW);
        assert_int_equal(feed(&m, 13.1), BATTERY_STATE_OK);
        /* and once ok, hovering just above stays ok */
        assert_int_equal(feed(&m, 13.0), BATTERY_STATE_OK);
        assert_int_equal(feed(&m, 13.05), BATTERY_STATE_OK);

        /* at the running minimum */
        assert_int_equal(feed(&m, 12.49), BATTERY_STATE_CRITICAL);
        assert_int_equal(feed(&m, 12.51), BATTERY_STATE_CRITICAL);
        assert_int_equal(feed(&m, 12.58), BATTERY_STATE_CRITICAL);
        assert_int_equal(feed(&m, 12.6), BATTERY_STATE_LOW);
        assert_int_equal(feed(&m, 12.5), BATTERY_STATE_LOW); /* leaving critical is not undone by 0.1 V */
        assert_int_equal(feed(&m, 12.49), BATTERY_STATE_CRITICAL);
        /* from critical straight past start + hysteresis: ok */
        assert_int_equal(feed(&m, 13.2), BATTERY_STATE_OK);
}

static void test_bad_readings(void **state) {
        BatteryMonitor m;

        assert_int_equal(battery_monitor_init(&m, LEXUS_START, LEXUS_RUNNING), 0);
        assert_int_equal(feed(&m, 13.5), BATTERY_STATE_OK);
        assert_int_equal(battery_monitor_sample(&m, NAN, advance_ms(100)), -EINVAL);
        assert_int_equal(battery_monitor_sample(&m, INFINITY, advance_ms(100)), -EINVAL);
        assert_int_equal(battery_monitor_sample(&m, -0.5, advance_ms(100)), -EINVAL);
        assert_int_equal(battery_monitor_sample(&m, 40.01, advance_ms(100)), -EINVAL);
        assert_int_equal(battery_monitor_sample(&m, 655.35, advance_ms(100)), -EINVAL);
        assert_int_equal(m.n_bad, 5u);
        assert_int_equal(battery_monitor_state(&m), BATTERY_STATE_OK);
        assert_true(battery_monitor_voltage(&m) == 13.5);
        assert_int_equal(battery_monitor_sample(&m, 40.0, advance_ms(100)), 0);
}

static void test_staleness(void **state) {
        BatteryMonitor m;

        assert_int_equal(battery_monitor_init(&m, LEXUS_START, LEXUS_RUNNING), 0);
        assert_false(battery_monitor_tick(&m, advance_ms(60000))); /* nothing yet: stays unknown */
        assert_int_equal(feed(&m, 12.8), BATTERY_STATE_LOW);
        assert_false(battery_monitor_tick(&m, advance_ms(9000)));
        assert_false(battery_monitor_tick(&m, advance_ms(1000))); /* exactly 10 s: still fresh */
        /* bad readings do not keep it fresh */
        assert_int_equal(battery_monitor_sample(&m, NAN, fake_now), -EINVAL);
        assert_true(battery_monitor_tick(&m, advance_ms(1)));
        assert_int_equal(battery_monitor_state(&m), BATTERY_STATE_UNKNOWN);
        assert_true(isnan(battery_monitor_voltage(&m)));
        assert_false(battery_monitor_tick(&m, advance_ms(1000))); /* reported once */

        /* back: classified afresh, without the hysteresis of the state before */
        assert_int_equal(feed(&m, 13.05), BATTERY_STATE_OK);
        assert_false(battery_monitor_tick(&m, advance_ms(5000)));
        assert_int_equal(battery_monitor_state(&m), BATTERY_STATE_OK);
}

static void test_notify_rate_limit(void **state) {
        BatteryMonitor m;
        unsigned notified = 0;

        assert_int_equal(battery_monitor_init(&m, TOYOTA_START, TOYOTA_RUNNING), 0);
        assert_false(battery_monitor_should_notify(&m, fake_now)); /* nothing new: unknown, NaN */
        assert_int_equal(battery_monitor_next_notify(&m), USEC_INFINITY);

        /* the first reading: unknown -> ok, told at once */
        assert_int_equal(battery_monitor_sample(&m, 12.6, fake_now), 0);
        assert_true(battery_monitor_should_notify(&m, fake_now));

        /* 100 readings in a second, each 20 mV apart: at most 4 told */
        usec_t start = fake_now;
        for (unsigned i = 1; i <= 100; i++) {
                usec_t t = start + i * 10 * USEC_PER_MSEC - 1;
                assert_int_equal(battery_monitor_sample(&m, 12.6 + (i % 2 ? 0.02 : 0.04), t), 0);
                if (battery_monitor_should_notify(&m, t))
                        notified++;
        }
        assert_int_equal(notified, 3); /* plus the first one above: 4 in that second */
        fake_now = start + USEC_PER_SEC;

        /* a change held back is told once the interval has passed */
        assert_int_equal(battery_monitor_sample(&m, 12.8, fake_now), 0);
        assert_true(battery_monitor_should_notify(&m, advance_ms(250)));
        assert_int_equal(battery_monitor_sample(&m, 12.7, advance_ms(10)), 0);
        assert_false(battery_monitor_should_notify(&m, fake_now));
        assert_int_equal(battery_monitor_next_notify(&m), fake_now - 10 * USEC_PER_MSEC + 250 * USEC_PER_MSEC);
        assert_true(battery_monitor_should_notify(&m, battery_monitor_next_notify(&m)));
        assert_int_equal(battery_monitor_next_notify(&m), USEC_INFINITY);
        fake_now += 250 * USEC_PER_MSEC;

        /* below 10 mV is no news, however long the wait */
        assert_int_equal(battery_monitor_sample(&m, 12.709, advance_ms(1000)), 0);
        assert_false(battery_monitor_should_notify(&m, fake_now));
        assert_int_equal(battery_monitor_next_notify(&m), USEC_INFINITY);
        assert_int_equal(battery_monitor_sample(&m, 12.71, advance_ms(1000)), 0); /* exactly 10 mV */
        assert_true(battery_monitor_should_notify(&m, fake_now));

        /* a state change right after a voltage notification: told at once */
        assert_int_equal(battery_monitor_sample(&m, 11.9, advance_ms(1)), 0);
        assert_int_equal(battery_monitor_state(&m), BATTERY_STATE_LOW);
        assert_int_equal(battery_monitor_next_notify(&m), 0);
        assert_true(battery_monitor_should_notify(&m, fake_now));
        assert_int_equal(battery_monitor_sample(&m, 11.4, advance_ms(1)), 0);
        assert_true(battery_monitor_should_notify(&m, fake_now));
        assert_false(battery_monitor_should_notify(&m, fake_now));

        /* going stale is a state change too */
        battery_monitor_tick(&m, advance_ms(20000));
        assert_true(battery_monitor_should_notify(&m, fake_now));
        assert_false(battery_monitor_should_notify(&m, advance_ms(1000)));
}

static void test_allows_reset(void **state) {
        BatteryMonitor m;
        const char *reason = "untouched";

        assert_int_equal(battery_monitor_init(&m, LEXUS_START, LEXUS_RUNNING), 0);
        assert_false(battery_allows_reset(&m, &reason));
        assert_non_null(strstr(reason, "not known"));

        assert_int_equal(feed(&m, 13.6), BATTERY_STATE_OK);
        assert_true(battery_allows_reset(&m, &reason));
        assert_null(reason);
        assert_true(battery_allows_reset(&m, NULL));

        assert_int_equal(feed(&m, 12.4), BATTERY_STATE_CRITICAL);
        assert_false(battery_allows_reset(&m, &reason));
        assert_string_equal(reason, "the battery is at 12.40 V; a reset needs at least 13.0 V: "
                                    "connect a power supply holding 13.5 V");

        /* just below: never shown as the threshold itself */
        assert_int_equal(feed(&m, 12.999), BATTERY_STATE_LOW);
        assert_false(battery_allows_reset(&m, &reason));
        assert_non_null(strstr(reason, "at 12.99 V"));

        /* risen above 13.0 V but still low by the hysteresis: names the figure that counts */
        assert_int_equal(feed(&m, 13.05), BATTERY_STATE_LOW);
        assert_false(battery_allows_reset(&m, &reason));
        assert_non_null(strstr(reason, "at 13.05 V; a reset needs at least 13.1 V"));

        assert_int_equal(battery_monitor_init(&m, TOYOTA_START, TOYOTA_RUNNING), 0);
        assert_int_equal(feed(&m, 11.8), BATTERY_STATE_LOW);
        assert_false(battery_allows_reset(&m, &reason));
        assert_string_equal(reason, "the battery is at 11.80 V; a reset needs at least 12.0 V: "
                                    "connect a power supply holding 12.5 V");
}

static void test_trace(void **state) {
        BatteryTrace *t = malloc(sizeof *t);
        BatteryTraceBucket b;

        assert_non_null(t);
        battery_trace_begin(t, fake_now);
        assert_true(isnan(battery_trace_minimum(t)));
        assert_int_equal(battery_trace_n_buckets(t), 0);
        assert_int_equal(battery_trace_get(t, 0, &b), -ERANGE);

        /* three readings in the first second: one bucket */
        usec_t start = fake_now;
        assert_int_equal(battery_trace_add(t, 13.4, start), 1);
        assert_int_equal(battery_trace_add(t, 13.2, start + 400 * USEC_PER_MSEC), 1);
        assert_int_equal(battery_trace_add(t, 13.6, start + 999 * USEC_PER_MSEC), 1);
        assert_int_equal(battery_trace_add(t, NAN, start + 999 * USEC_PER_MSEC), -EINVAL);
        assert_int_equal(battery_trace_add(t, 50.0, start + 999 * USEC_PER_MSEC), -EINVAL);
        assert_int_equal(battery_trace_n_buckets(t), 1);
        assert_int_equal(battery_trace_get(t, 0, &b), 0);
        assert_int_equal(b.n, 3);
        assert_true(b.min == 13.2 && b.max == 13.6);
        assert_true(fabs(b.sum / b.n - 13.4) < 1e-9);
        assert_true(battery_trace_minimum(t) == 13.2);

        /* a dip, then a whole reset's worth and more: the ring stays bounded, the minimum stays */
        assert_int_equal(battery_trace_add(t, 12.1, start + USEC_PER_SEC), 1);
        for (unsigned i = 2; i < 3000; i++)
                assert_int_equal(battery_trace_add(t, 13.0 + (i % 7) * 0.05, start + i * USEC_PER_SEC), 1);
        assert_int_equal(battery_trace_n_buckets(t), BATTERY_TRACE_BUCKETS);
        assert_int_equal(t->n_samples, 3 + 1 + 2998);
        assert_true(battery_trace_minimum(t) == 12.1);
        assert_true(t->minimum_at == start + USEC_PER_SEC);
        /* oldest first, the newest last */
        assert_int_equal(battery_trace_get(t, 0, &b), 0);
        assert_true(b.start == start + (3000 - BATTERY_TRACE_BUCKETS) * USEC_PER_SEC);
        assert_int_equal(battery_trace_get(t, BATTERY_TRACE_BUCKETS - 1, &b), 0);
        assert_true(b.start == start + 2999 * USEC_PER_SEC);
        assert_int_equal(battery_trace_get(t, BATTERY_TRACE_BUCKETS, &b), -ERANGE);

        /* ended: later readings are not this procedure's */
        battery_trace_end(t, start + 3000 * USEC_PER_SEC);
        assert_int_equal(battery_trace_add(t, 5.0, start + 3001 * USEC_PER_SEC), 0);
        assert_true(battery_trace_minimum(t) == 12.1);

        /* a new procedure starts clean */
        battery_trace_begin(t, start + 4000 * USEC_PER_SEC);
        assert_true(isnan(battery_trace_minimum(t)));
        assert_int_equal(battery_trace_n_buckets(t), 0);
        free(t);
}

static char tmpdir[] = "/tmp/test-battery-XXXXXX";

static const char *hwmon_file(const char *name, const char *content, size_t size) {
        static char path[256];

        snprintf(path, sizeof path, "%s/%s", tmpdir, name);
        assert_int_equal(write_file_atomic(path, content, size, 0644), 0);
        return path;
}

static int read_content(const char *content, double *v) {
        return battery_read_hwmon(hwmon_file("in1_input", content, strlen(content)), v);
}

static void test_hwmon(void **state) {
        static const char *const bad[] = {
                "", "\n", " 12345\n", "12345 \n", "12345\n\n", "\t12345", "-1\n", "-12000\n", "+12000\n",
                "12.5\n", "12,500\n", "0x3000\n", "abc\n", "12345abc\n", "12345\r\n", "1234567890\n",
                "99999999999999999999999\n"
        };
        static const char nul_inside[] = { '1', '2', '\0', '3', '4', '\n' };
        char big[200];
        double v = -1;

        assert_int_equal(read_content("12345\n", &v), 0);
        assert_true(fabs(v - 12.345) < 1e-9);
        assert_int_equal(read_content("13500", &v), 0);
        assert_true(fabs(v - 13.5) < 1e-9);
        assert_int_equal(read_content("0\n", &v), 0);
        assert_true(v == 0.0);
        assert_int_equal(read_content("000012000\n", &v), 0); /* 9 digits, leading zeros */
        assert_true(fabs(v - 12.0) < 1e-9);
        /* big but a number: the reader passes it on, the monitor rejects it */
        assert_int_equal(read_content("655350\n", &v), 0);
        assert_true(fabs(v - 655.35) < 1e-9);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                v = -1;
                assert_int_equal(read_content(bad[i], &v), -EINVAL);
                assert_true(v == -1); /* untouched on failure */
        }

        /* a NUL inside */
        assert_int_equal(battery_read_hwmon(hwmon_file("nul", nul_inside, sizeof(nul_inside)), &v), -EINVAL);
        /* larger than any reading */
        memset(big, '1', sizeof big);
        assert_int_equal(battery_read_hwmon(hwmon_file("big", big, sizeof big), &v), -EINVAL);
        /* not there, not a file */
        char missing[300];
        snprintf(missing, sizeof missing, "%s/no-such-file", tmpdir);
        assert_int_equal(battery_read_hwmon(missing, &v), -ENOENT);
        assert_int_equal(battery_read_hwmon(tmpdir, &v), -EBADF);
        assert_true(v == -1);
}

static void test_a010(void **state) {
        static const uint8_t ok[] = { 0x62, 0xA0, 0x10, 0x33, 0x90 }; /* 13200 mV */
        static const uint8_t zero[] = { 0x62, 0xA0, 0x10, 0x00, 0x00 };
        static const uint8_t max[] = { 0x62, 0xA0, 0x10, 0xFF, 0xFF };
        static const uint8_t nrc[] = { 0x7F, 0x22, 0x31 };
        static const uint8_t nrc_long[] = { 0x7F, 0x22, 0x31, 0x00, 0x00 };
        static const uint8_t wrong_did[] = { 0x62, 0xA0, 0x11, 0x33, 0x90 };
        static const uint8_t wrong_sid[] = { 0x22, 0xA0, 0x10, 0x33, 0x90 };
        static const uint8_t longer[] = { 0x62, 0xA0, 0x10, 0x33, 0x90, 0x00 };
        double v = -1;

        assert_int_equal(battery_parse_a010(ok, sizeof ok, &v), 0);
        assert_true(fabs(v - 13.2) < 1e-9);
        assert_int_equal(battery_parse_a010(zero, sizeof zero, &v), 0);
        assert_true(v == 0.0);
        assert_int_equal(battery_parse_a010(max, sizeof max, &v), 0);
        assert_true(fabs(v - 65.535) < 1e-9);

        v = -1;
        assert_int_equal(battery_parse_a010(nrc, sizeof nrc, &v), -EBADMSG);
        assert_int_equal(battery_parse_a010(nrc_long, sizeof nrc_long, &v), -EBADMSG);
        assert_int_equal(battery_parse_a010(wrong_did, sizeof wrong_did, &v), -EBADMSG);
        assert_int_equal(battery_parse_a010(wrong_sid, sizeof wrong_sid, &v), -EBADMSG);
        assert_int_equal(battery_parse_a010(longer, sizeof longer, &v), -EBADMSG);
        for (size_t n = 0; n < sizeof ok; n++)
                assert_int_equal(battery_parse_a010(ok, n, &v), -EBADMSG);
        assert_int_equal(battery_parse_a010(NULL, 5, &v), -EBADMSG);
        assert_true(v == -1);

        /* a profile naming another DID */
        assert_int_equal(battery_parse_answer(0xA011, wrong_did, sizeof wrong_did, &v), 0);
        assert_true(fabs(v - 13.2) < 1e-9);
}

static int setup(void **state) {
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
        static const char *const names[] = { "in1_input", "nul", "big" };
        char path[300];

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
                (void) unlink(path);
        }
        return rmdir(tmpdir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_state_names),
                cmocka_unit_test(test_init),
                cmocka_unit_test(test_thresholds_lexus),
                cmocka_unit_test(test_thresholds_toyota),
                cmocka_unit_test(test_hysteresis),
                cmocka_unit_test(test_bad_readings),
                cmocka_unit_test(test_staleness),
                cmocka_unit_test(test_notify_rate_limit),
                cmocka_unit_test(test_allows_reset),
                cmocka_unit_test(test_trace),
                cmocka_unit_test(test_hwmon),
                cmocka_unit_test(test_a010),
        };

        log_set_max_level(LOG_EMERG); /* the bad files are meant to be bad */
        return cmocka_run_group_tests(tests, setup, teardown);
}
