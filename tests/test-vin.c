/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "vectors.h"
#include "vin.h"

static json_t *vectors;

static int setup(void **state) {
        vectors = vectors_load();
        return 0;
}

static int teardown(void **state) {
        json_decref(vectors);
        return 0;
}

static void test_vectors_check_digit(void **state) {
        json_t *a = vectors_array(vectors, "vin_check_digit"), *e;
        size_t i, n_valid = 0, n_invalid = 0;

        json_array_foreach(a, i, e) {
                const char *vin = vector_string(e, "vin");
                const char *reason = NULL;

                print_message("VIN %s\n", vin);
                assert_int_equal(vin_check_syntax(vin, &reason), 0);
                assert_null(reason);

                if (vector_bool(e, "valid")) {
                        const char *cd = vector_string(e, "check_digit");

                        assert_int_equal(strlen(cd), 1);
                        assert_int_equal(vin_compute_check_digit(vin), cd[0]);
                        assert_int_equal(vin[8], cd[0]);
                        assert_true(vin_check_digit_ok(vin));
                        n_valid++;
                } else {
                        char fixed[VIN_LEN + 1];
                        char cd = vin_compute_check_digit(vin);

                        assert_true(cd == 'X' || (cd >= '0' && cd <= '9'));
                        assert_int_not_equal(cd, vin[8]);
                        assert_false(vin_check_digit_ok(vin));

                        /* with the digit put right, the same VIN passes */
                        strcpy(fixed, vin);
                        fixed[8] = cd;
                        assert_true(vin_check_digit_ok(fixed));
                        n_invalid++;
                }
        }

        assert_int_equal(n_valid + n_invalid, json_array_size(a));
        assert_true(n_valid > 0);
        assert_true(n_invalid > 0);
}

static void test_vectors_make_year(void **state) {
        json_t *a = vectors_array(vectors, "vin_check_digit"), *e;
        size_t i, n = 0;

        json_array_foreach(a, i, e) {
                const char *vin = vector_string(e, "vin");
                unsigned year = 0;

                if (!vector_bool(e, "valid"))
                        continue;

                print_message("VIN %s: %s %lld\n", vin, vector_string(e, "make"), vector_integer(e, "year"));
                assert_non_null(vin_make(vin));
                assert_string_equal(vin_make(vin), vector_string(e, "make"));
                assert_int_equal(vin_model_year(vin, &year), 0);
                assert_int_equal(year, vector_integer(e, "year"));
                n++;
        }

        assert_true(n > 0);
}

static void test_check_digit_known(void **state) {
        /* the textbook example whose check digit is X */
        assert_int_equal(vin_compute_check_digit("1M8GDM9AXKP042788"), 'X');
        assert_true(vin_check_digit_ok("1M8GDM9AXKP042788"));
        assert_false(vin_check_digit_ok("1M8GDM9A0KP042788"));

        assert_int_equal(vin_compute_check_digit("11111111111111111"), '1');
        assert_true(vin_check_digit_ok("11111111111111111"));

        assert_int_equal(vin_compute_check_digit("JTJHY7AX4K4012345"), '3');
        assert_int_equal(vin_compute_check_digit("2T2BZMCA5KC123456"), '0');
        assert_int_equal(vin_compute_check_digit("5TDZA23C06S123456"), '4');

        /* position 9 weighs nothing: any digit there gives the same answer */
        assert_int_equal(vin_compute_check_digit("58ADZ1B1XMU000123"), '6');
}

static void test_check_digit_invalid_vin(void **state) {
        assert_int_equal(vin_compute_check_digit("58ADZ1B16MU00012"), '\0');
        assert_int_equal(vin_compute_check_digit("58adz1b16mu000123"), '\0');
        assert_int_equal(vin_compute_check_digit("58ADZ1B16MO000123"), '\0');
        assert_int_equal(vin_compute_check_digit(""), '\0');
        assert_int_equal(vin_compute_check_digit(NULL), '\0');
        assert_false(vin_check_digit_ok("58ADZ1B16MU00012"));
        assert_false(vin_check_digit_ok("58adz1b16mu000123"));
        assert_false(vin_check_digit_ok("58ADZ1B16MU0001233"));
}

static void assert_syntax_error(const char *vin, const char *want) {
        const char *reason = NULL;

        assert_int_equal(vin_check_syntax(vin, &reason), -EINVAL);
        assert_non_null(reason);
        print_message("%s -> %s\n", vin ?: "(null)", reason);
        assert_string_equal(reason, want);

        /* ret_reason is optional */
        assert_int_equal(vin_check_syntax(vin, NULL), -EINVAL);
}

static void test_syntax_length(void **state) {
        assert_syntax_error("58ADZ1B16MU00012", "a VIN has 17 characters, got 16");
        assert_syntax_error("58ADZ1B16MU0001234", "a VIN has 17 characters, got 18");
        assert_syntax_error("", "a VIN has 17 characters, got 0");
        assert_syntax_error(NULL, "a VIN has 17 characters, got 0");
        assert_syntax_error("58ADZ1B16MU000123\n", "a VIN has 17 characters, got 18");
        assert_syntax_error(" 58ADZ1B16MU000123", "a VIN has 17 characters, got 18");
        /* characters, not bytes: U+00C9 is two bytes */
        assert_syntax_error("58ADZ1B16MU00012\xc3\x89\xc3\x89", "a VIN has 17 characters, got 18");
}

static void test_syntax_letters(void **state) {
        assert_syntax_error("58ADZ1B16MO000123",
                            "'O' at position 11 is not allowed in a VIN (letters I, O and Q are never used)");
        assert_syntax_error("I8ADZ1B16MU000123",
                            "'I' at position 1 is not allowed in a VIN (letters I, O and Q are never used)");
        assert_syntax_error("58ADZ1B16MU00012Q",
                            "'Q' at position 17 is not allowed in a VIN (letters I, O and Q are never used)");
        assert_syntax_error("58ADZ1B16MU0o0123",
                            "'o' at position 13 is not allowed in a VIN (letters I, O and Q are never used)");
}

static void test_syntax_lowercase(void **state) {
        assert_syntax_error("58adz1b16mu000123", "a VIN is written in capital letters, 'a' at position 3 is lowercase");
        assert_syntax_error("58ADZ1B16MU00012x", "a VIN is written in capital letters, 'x' at position 17 is lowercase");
}

static void test_syntax_other(void **state) {
        assert_syntax_error("58ADZ-B16MU000123",
                            "'-' at position 6 is not allowed in a VIN "
                            "(only digits 0-9 and capital letters A-Z except I, O and Q)");
        assert_syntax_error("58ADZ B16MU000123",
                            "a space at position 6 is not allowed in a VIN "
                            "(only digits 0-9 and capital letters A-Z except I, O and Q)");
        assert_syntax_error("58ADZ\tB16MU000123",
                            "control character 0x09 at position 6 is not allowed in a VIN "
                            "(only digits 0-9 and capital letters A-Z except I, O and Q)");
        assert_syntax_error("58ADZ\xc3\x89"
                            "B16MU000123",
                            "a non-ASCII character at position 6 is not allowed in a VIN "
                            "(only digits 0-9 and capital letters A-Z except I, O and Q)");
        /* a stray continuation byte is a character too */
        assert_syntax_error("58ADZ1B16MU000123\x80",
                            "a non-ASCII character at position 18 is not allowed in a VIN "
                            "(only digits 0-9 and capital letters A-Z except I, O and Q)");
}

static void test_syntax_ok(void **state) {
        const char *reason = NULL;

        assert_int_equal(vin_check_syntax("58ADZ1B16MU000123", &reason), 0);
        assert_null(reason);
        /* syntax only: a wrong check digit is a different question */
        assert_int_equal(vin_check_syntax("58ADZ1B10MU000123", &reason), 0);
        assert_int_equal(vin_check_syntax("0123456789ABCDEFG", NULL), 0);
        assert_int_equal(vin_check_syntax("HJKLMNPRSTUVWXYZ0", NULL), 0);
}

static void assert_year(const char *vin, unsigned want) {
        unsigned year = 0;

        assert_int_equal(vin_model_year(vin, &year), 0);
        print_message("%s -> %u\n", vin, year);
        assert_int_equal(year, want);
}

static void test_model_year(void **state) {
        /* position 7 a letter: the 2010-2039 cycle */
        assert_year("58ADZ1B16AU000123", 2010);
        assert_year("58ADZ1B16HU000123", 2017);
        assert_year("58ADZ1B16JU000123", 2018);
        assert_year("58ADZ1B16PU000123", 2023);
        assert_year("58ADZ1B16RU000123", 2024);
        assert_year("58ADZ1B16VU000123", 2027);
        assert_year("58ADZ1B16YU000123", 2030);
        assert_year("58ADZ1B161U000123", 2031);
        assert_year("58ADZ1B169U000123", 2039);
        /* the ends of the letters in position 7 */
        assert_year("58ADZ1A16MU000123", 2021);
        assert_year("58ADZ1Z16MU000123", 2021);

        /* position 7 a digit: the 1980-2009 cycle */
        assert_year("58ADZ1916AU000123", 1980);
        assert_year("58ADZ1016MU000123", 1991);
        assert_year("1M8GDM9AXKP042788", 1989);
        assert_year("58ADZ1916YU000123", 2000);
        assert_year("58ADZ19161U000123", 2001);
        assert_year("58ADZ19169U000123", 2009);
        assert_year("5TDZA23C06S123456", 2006);
}

static void test_model_year_invalid(void **state) {
        unsigned year = 4242;

        /* never year codes: 0, U, Z (and I, O, Q, which no VIN holds) */
        assert_int_equal(vin_model_year("58ADZ1B160U000123", &year), -EINVAL);
        assert_int_equal(vin_model_year("58ADZ1B16UU000123", &year), -EINVAL);
        assert_int_equal(vin_model_year("58ADZ1B16ZU000123", &year), -EINVAL);
        assert_int_equal(vin_model_year("58ADZ1B16OU000123", &year), -EINVAL);
        assert_int_equal(vin_model_year("58ADZ1B16QU000123", &year), -EINVAL);
        assert_int_equal(vin_model_year("58ADZ1B16mU000123", &year), -EINVAL);
        assert_int_equal(vin_model_year("58ADZ1B16MU00012", &year), -EINVAL);
        assert_int_equal(vin_model_year(NULL, &year), -EINVAL);
        assert_int_equal(year, 4242);
}

static void test_make(void **state) {
        assert_string_equal(vin_make("JTHB5LFF2J5000141"), "Lexus");
        assert_string_equal(vin_make("JTJHY7AX4K4012345"), "Lexus");
        assert_string_equal(vin_make("58ADZ1B16MU000123"), "Lexus");
        assert_string_equal(vin_make("2T2BZMCA5KC123456"), "Lexus");

        assert_string_equal(vin_make("JTDKN3DU0A0123456"), "Toyota");
        assert_string_equal(vin_make("JTNB11HK0J3000000"), "Toyota");
        assert_string_equal(vin_make("4T1BZ1FB0KU000777"), "Toyota");
        assert_string_equal(vin_make("5TDZA23C06S123456"), "Toyota");
        assert_string_equal(vin_make("2T1BURHE0JC000000"), "Toyota");
        assert_string_equal(vin_make("2T3P1RFV0KW000000"), "Toyota");

        assert_null(vin_make("1M8GDM9AXKP042788"));
        assert_null(vin_make("1HGCM82633A004352"));
        assert_null(vin_make("WDB1240221A000000"));
        assert_null(vin_make("3TMCZ5AN0KM000000"));
        assert_null(vin_make("J1HB5LFF2J5000141"));

        /* only valid VINs have a make */
        assert_null(vin_make("JTHB5LFF2J500014"));
        assert_null(vin_make("jthb5lff2j5000141"));
        assert_null(vin_make("JT"));
        assert_null(vin_make(""));
        assert_null(vin_make(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vectors_check_digit),
                cmocka_unit_test(test_vectors_make_year),
                cmocka_unit_test(test_check_digit_known),
                cmocka_unit_test(test_check_digit_invalid_vin),
                cmocka_unit_test(test_syntax_length),
                cmocka_unit_test(test_syntax_letters),
                cmocka_unit_test(test_syntax_lowercase),
                cmocka_unit_test(test_syntax_other),
                cmocka_unit_test(test_syntax_ok),
                cmocka_unit_test(test_model_year),
                cmocka_unit_test(test_model_year_invalid),
                cmocka_unit_test(test_make),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
