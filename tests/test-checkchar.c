/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>

#include "checkchar.h"
#include "vectors.h"

static json_t *vectors;

static int setup(void **state) {
        vectors = vectors_load();
        return 0;
}

static int teardown(void **state) {
        json_decref(vectors);
        return 0;
}

static const char *alphabet_chars(CheckAlphabet a) {
        return a == CHECKCHAR_HEX ? "0123456789ABCDEF" : "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
}

/* Every check a CD must pass: computed, verified, case-blind, and no other CD verifies. */
static void assert_cd(const char *field, CheckAlphabet a, char want) {
        char cd = 0, lower[64];

        print_message("%s %s -> %c\n", a == CHECKCHAR_HEX ? "hex" : "base36", field, want);

        assert_int_equal(checkchar_compute(field, a, &cd), 0);
        assert_int_equal(cd, want);
        assert_int_equal(checkchar_verify(field, a, want), 0);
        assert_int_equal(checkchar_verify(field, a, (char) tolower(want)), 0);

        for (const char *c = alphabet_chars(a); *c; c++)
                if (*c != want)
                        assert_int_equal(checkchar_verify(field, a, *c), -EBADMSG);

        assert_true(strlen(field) < sizeof(lower));
        for (size_t i = 0;; i++) {
                lower[i] = (char) tolower(field[i]);
                if (!field[i])
                        break;
        }
        cd = 0;
        assert_int_equal(checkchar_compute(lower, a, &cd), 0);
        assert_int_equal(cd, want);
        assert_int_equal(checkchar_verify(lower, a, want), 0);
}

static CheckAlphabet alphabet_from_name(const char *name) {
        if (strcmp(name, "hex") == 0)
                return CHECKCHAR_HEX;
        if (strcmp(name, "base36") == 0)
                return CHECKCHAR_BASE36;
        fail_msg("unknown alphabet \"%s\" in the test vectors", name);
        return CHECKCHAR_HEX;
}

static void test_vectors_check_characters(void **state) {
        json_t *a = vectors_array(vectors, "check_characters"), *e;
        size_t i, n = 0;

        json_array_foreach(a, i, e) {
                const char *cd = vector_string(e, "cd");

                assert_int_equal(strlen(cd), 1);
                assert_cd(vector_string(e, "field"), alphabet_from_name(vector_string(e, "alphabet")), cd[0]);
                n++;
        }

        assert_int_equal(n, json_array_size(a));
}

static void test_vectors_smart_code_cds(void **state) {
        static const struct {
                const char *field, *cd;
                CheckAlphabet alphabet;
        } fields[] = {
                { "vin", "cd_vin", CHECKCHAR_BASE36 },
                { "data1", "cd_data1", CHECKCHAR_HEX },
                { "data2", "cd_data2", CHECKCHAR_HEX },
                { "data3", "cd_data3", CHECKCHAR_HEX },
        };
        json_t *a = vectors_array(vectors, "smart_code"), *e;
        size_t i, n = 0;

        json_array_foreach(a, i, e)
                for (size_t j = 0; j < ELEMENTSOF(fields); j++) {
                        const char *cd = vector_string(e, fields[j].cd);

                        assert_int_equal(strlen(cd), 1);
                        assert_cd(vector_string(e, fields[j].field), fields[j].alphabet, cd[0]);
                        n++;
                }

        assert_int_equal(n, 4 * json_array_size(a));
}

static void test_by_hand(void **state) {
        /* "1": 2*1 = 2, CD = 16-2 = 14 */
        assert_cd("1", CHECKCHAR_HEX, 'E');
        /* "F": 2*15 = 30 = 1*16+14, 1+14 = 15, CD = 1 */
        assert_cd("F", CHECKCHAR_HEX, '1');
        /* "FF": 15 + 15*1 = 30, CD = 16 - 14 = 2 */
        assert_cd("FF", CHECKCHAR_HEX, '2');
        /* "Z": 2*35 = 70 = 1*36+34, 1+34 = 35, CD = 1 */
        assert_cd("Z", CHECKCHAR_BASE36, '1');
        /* "10": 0*2 + 1*1 = 1, CD = 35 */
        assert_cd("10", CHECKCHAR_BASE36, 'Z');
        assert_cd("0", CHECKCHAR_HEX, '0');
        assert_cd("0", CHECKCHAR_BASE36, '0');
}

/* Luhn mod N catches every single-character substitution; check that ours does. */
static void test_single_substitution_detected(void **state) {
        static const struct {
                const char *field;
                CheckAlphabet alphabet;
        } fields[] = {
                { "820016696F5", CHECKCHAR_HEX },
                { "7A56D524B100", CHECKCHAR_HEX },
                { "JTHB5LFF2J5000141", CHECKCHAR_BASE36 },
        };

        for (size_t f = 0; f < ELEMENTSOF(fields); f++) {
                char copy[32], cd;
                size_t len = strlen(fields[f].field);

                assert_int_equal(checkchar_compute(fields[f].field, fields[f].alphabet, &cd), 0);
                strcpy(copy, fields[f].field);
                for (size_t i = 0; i < len; i++) {
                        for (const char *c = alphabet_chars(fields[f].alphabet); *c; c++) {
                                if (*c == fields[f].field[i])
                                        continue;
                                copy[i] = *c;
                                assert_int_equal(checkchar_verify(copy, fields[f].alphabet, cd), -EBADMSG);
                        }
                        copy[i] = fields[f].field[i];
                }
        }
}

static void test_bad_input(void **state) {
        char cd = '?';

        assert_int_equal(checkchar_compute("820016696G5", CHECKCHAR_HEX, &cd), -EINVAL);
        assert_int_equal(checkchar_compute("820016696g5", CHECKCHAR_HEX, &cd), -EINVAL);
        assert_int_equal(checkchar_compute("8200 16696F5", CHECKCHAR_HEX, &cd), -EINVAL);
        assert_int_equal(checkchar_compute("JTHB5LFF2J5000141", CHECKCHAR_HEX, &cd), -EINVAL);
        assert_int_equal(checkchar_compute("JTHB5LFF-J5000141", CHECKCHAR_BASE36, &cd), -EINVAL);
        assert_int_equal(checkchar_compute("JTHB5LFF\xc3\x89J5000141", CHECKCHAR_BASE36, &cd), -EINVAL);
        assert_int_equal(checkchar_compute("", CHECKCHAR_HEX, &cd), -EINVAL);
        assert_int_equal(checkchar_compute("", CHECKCHAR_BASE36, &cd), -EINVAL);
        assert_int_equal(checkchar_compute(NULL, CHECKCHAR_HEX, &cd), -EINVAL);
        assert_int_equal(checkchar_compute("820016696F5", (CheckAlphabet) 7, &cd), -EINVAL);
        /* ret_cd untouched on failure */
        assert_int_equal(cd, '?');

        /* a bad field or a CD outside the alphabet is bad input, not a mismatch */
        assert_int_equal(checkchar_verify("820016696G5", CHECKCHAR_HEX, 'B'), -EINVAL);
        assert_int_equal(checkchar_verify("820016696F5", CHECKCHAR_HEX, 'G'), -EINVAL);
        assert_int_equal(checkchar_verify("820016696F5", CHECKCHAR_HEX, ' '), -EINVAL);
        assert_int_equal(checkchar_verify("820016696F5", CHECKCHAR_HEX, '\0'), -EINVAL);
        assert_int_equal(checkchar_verify("JTHB5LFF2J5000141", CHECKCHAR_BASE36, '*'), -EINVAL);
        assert_int_equal(checkchar_verify("", CHECKCHAR_HEX, '0'), -EINVAL);
        assert_int_equal(checkchar_verify(NULL, CHECKCHAR_HEX, '0'), -EINVAL);
        assert_int_equal(checkchar_verify("820016696F5", (CheckAlphabet) 7, 'B'), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vectors_check_characters),
                cmocka_unit_test(test_vectors_smart_code_cds),
                cmocka_unit_test(test_by_hand),
                cmocka_unit_test(test_single_substitution_detected),
                cmocka_unit_test(test_bad_input),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
