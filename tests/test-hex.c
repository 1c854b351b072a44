/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hex.h"

static void test_unhexchar(void **state) {
        assert_int_equal(unhexchar('0'), 0);
        assert_int_equal(unhexchar('9'), 9);
        assert_int_equal(unhexchar('a'), 10);
        assert_int_equal(unhexchar('A'), 10);
        assert_int_equal(unhexchar('f'), 15);
        assert_int_equal(unhexchar('F'), 15);
        assert_int_equal(unhexchar('g'), -EINVAL);
        assert_int_equal(unhexchar('G'), -EINVAL);
        assert_int_equal(unhexchar(' '), -EINVAL);
        assert_int_equal(unhexchar('\0'), -EINVAL);
        assert_int_equal(unhexchar('/'), -EINVAL);
        assert_int_equal(unhexchar(':'), -EINVAL);
        assert_int_equal(unhexchar((char) 0xc3), -EINVAL);
}

static void test_decode(void **state) {
        static const uint8_t want[] = { 0x00, 0x1f, 0xa0, 0xff, 0x7e };
        uint8_t b[5];

        assert_int_equal(hex_decode("001fa0ff7e", b, sizeof(b)), 0);
        assert_memory_equal(b, want, sizeof(want));

        memset(b, 0, sizeof(b));
        assert_int_equal(hex_decode("001FA0FF7E", b, sizeof(b)), 0);
        assert_memory_equal(b, want, sizeof(want));

        memset(b, 0, sizeof(b));
        assert_int_equal(hex_decode("001Fa0fF7e", b, sizeof(b)), 0);
        assert_memory_equal(b, want, sizeof(want));
}

static void test_decode_master_key(void **state) {
        /* the master key of test-vectors.json: sha256('immod test master key') */
        static const uint8_t want[32] = {
                0x80, 0x9f, 0x6b, 0x43, 0xa0, 0x7b, 0x3d, 0x33, 0xf9, 0x86, 0xd7, 0x3c, 0xea, 0x5e, 0x46, 0x9c,
                0x33, 0x29, 0xd5, 0x54, 0x3d, 0xd5, 0xd1, 0x90, 0x2e, 0x92, 0xfc, 0x61, 0xca, 0xd7, 0x1d, 0x02
        };
        uint8_t b[32];

        assert_int_equal(hex_decode("809f6b43a07b3d33f986d73cea5e469c3329d5543dd5d1902e92fc61cad71d02", b, 32), 0);
        assert_memory_equal(b, want, 32);
}

static void test_decode_empty(void **state) {
        uint8_t b[1] = { 0xaa };

        assert_int_equal(hex_decode("", b, 0), 0);
        assert_int_equal(b[0], 0xaa);
        assert_int_equal(hex_decode("00", b, 0), -EINVAL);
        assert_int_equal(hex_decode("", b, 1), -EINVAL);
}

static void test_decode_bad(void **state) {
        uint8_t b[3] = { 0x11, 0x22, 0x33 };

        /* wrong lengths: short, odd, long */
        assert_int_equal(hex_decode("0102", b, 3), -EINVAL);
        assert_int_equal(hex_decode("01020", b, 3), -EINVAL);
        assert_int_equal(hex_decode("0102030", b, 3), -EINVAL);
        assert_int_equal(hex_decode("01020304", b, 3), -EINVAL);

        /* bad characters anywhere */
        assert_int_equal(hex_decode("g10203", b, 3), -EINVAL);
        assert_int_equal(hex_decode("01020G", b, 3), -EINVAL);
        assert_int_equal(hex_decode("01 203", b, 3), -EINVAL);
        assert_int_equal(hex_decode(" 010203", b, 3), -EINVAL);
        assert_int_equal(hex_decode("0x0102", b, 3), -EINVAL);
        assert_int_equal(hex_decode("01\xc3\xa9"
                                    "03",
                                    b, 3),
                         -EINVAL);
        assert_int_equal(hex_decode(NULL, b, 3), -EINVAL);

        /* ret untouched on failure, even when the bad character comes late */
        assert_int_equal(b[0], 0x11);
        assert_int_equal(b[1], 0x22);
        assert_int_equal(b[2], 0x33);
}

static void test_encode(void **state) {
        static const uint8_t in[] = { 0x00, 0x1f, 0xa0, 0xff, 0x7e };
        char s[2 * sizeof(in) + 1];

        memset(s, 'x', sizeof(s));
        hex_encode(in, sizeof(in), false, s);
        assert_string_equal(s, "001fa0ff7e");

        memset(s, 'x', sizeof(s));
        hex_encode(in, sizeof(in), true, s);
        assert_string_equal(s, "001FA0FF7E");

        memset(s, 'x', sizeof(s));
        hex_encode(in, 0, true, s);
        assert_string_equal(s, "");
}

static void test_round_trip(void **state) {
        uint8_t in[256], out[256];
        char s[2 * 256 + 1];

        for (size_t i = 0; i < 256; i++)
                in[i] = (uint8_t) i;

        for (int upper = 0; upper <= 1; upper++) {
                memset(out, 0, sizeof(out));
                hex_encode(in, sizeof(in), upper, s);
                assert_int_equal(strlen(s), 512);
                assert_true(is_hex_string(s));
                assert_int_equal(hex_decode(s, out, sizeof(out)), 0);
                assert_memory_equal(in, out, sizeof(in));
        }
}

static void test_is_hex_string(void **state) {
        assert_true(is_hex_string("0"));
        assert_true(is_hex_string("0123456789abcdefABCDEF"));
        assert_true(is_hex_string("820016696F5"));
        assert_false(is_hex_string(""));
        assert_false(is_hex_string(NULL));
        assert_false(is_hex_string("12G4"));
        assert_false(is_hex_string("12 4"));
        assert_false(is_hex_string("1234\n"));
        assert_false(is_hex_string("0x12"));
        assert_false(is_hex_string("-1"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_unhexchar),
                cmocka_unit_test(test_decode),
                cmocka_unit_test(test_decode_master_key),
                cmocka_unit_test(test_decode_empty),
                cmocka_unit_test(test_decode_bad),
                cmocka_unit_test(test_encode),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_is_hex_string),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
