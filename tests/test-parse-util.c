/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "parse-util.h"

static void test_uint_range(void **state) {
        unsigned long v = 99;
        unsigned u = 99;

        assert_int_equal(parse_uint_range("0", 0, 10, &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(parse_uint_range("4095", 1, 4095, &v), 0);
        assert_int_equal(v, 4095);
        assert_int_equal(parse_unsigned_range("7", 1, 7, &u), 0);
        assert_int_equal(u, 7);

        static const char *const bad[] = { "", "-1", "+1", " 1", "1 ", "1x", "0x10", "4096", "1.5",
                                           "99999999999999999999999" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(parse_uint_range(bad[i], 0, 4095, &v), -EINVAL);
        assert_int_equal(parse_uint_range(NULL, 0, 1, &v), -EINVAL);
        assert_int_equal(parse_unsigned_range("8", 1, 7, &u), -EINVAL);
        assert_int_equal(parse_unsigned_range("0", 1, 7, &u), -EINVAL);
        assert_int_equal(u, 7); /* untouched on failure */
        assert_int_equal(v, 4095);
}

static void test_volts(void **state) {
        unsigned mv = 1;

        assert_int_equal(parse_volts_mv("12.6", 30.0, &mv), 0);
        assert_int_equal(mv, 12600);
        assert_int_equal(parse_volts_mv("0", 30.0, &mv), 0);
        assert_int_equal(mv, 0);
        assert_int_equal(parse_volts_mv("8.9995", 30.0, &mv), 0);
        assert_int_equal(mv, 9000);
        assert_int_equal(parse_volts_mv("30", 30.0, &mv), 0);
        assert_int_equal(mv, 30000);

        static const char *const bad[] = { "", "-1", "30.1", "nan", "inf", "12,6", "12.6V", " 12", ".5", "1e400" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(parse_volts_mv(bad[i], 30.0, &mv), -EINVAL);
        assert_int_equal(mv, 30000);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_uint_range),
                cmocka_unit_test(test_volts),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
