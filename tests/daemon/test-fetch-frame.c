/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The checks both ends of immod-fetch's pipe make (fetch-frame.h): each request field
 * against its limit and its characters, and the answer's header as immod reads it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "fetch-frame.h"

static int field_check(FetchField f, const char *data, size_t size) {
        const char *why = NULL;
        int r = fetch_field_check(f, data, size, &why);

        /* a refusal always says why */
        assert_true(r == 0 || (r == -EINVAL && why && why[0]));
        return r;
}

static void test_fields(void **state) {
        static char big[FETCH_BODY_MAX + 1];

        assert_int_equal(field_check(FETCH_FIELD_METHOD, "GET", 3), 0);
        assert_int_equal(field_check(FETCH_FIELD_METHOD, "POST", 4), 0);
        assert_int_equal(field_check(FETCH_FIELD_METHOD, "PUT", 3), -EINVAL);
        assert_int_equal(field_check(FETCH_FIELD_METHOD, "GETX", 4), -EINVAL);
        assert_int_equal(field_check(FETCH_FIELD_METHOD, "", 0), -EINVAL);
        assert_int_equal(field_check(FETCH_FIELD_URL, "https://a/", 10), 0);
        assert_int_equal(field_check(FETCH_FIELD_URL, "", 0), -EINVAL);
        assert_int_equal(field_check(FETCH_FIELD_URL, "https://a/\r\nX: y", 16), -EINVAL);
        /* a body may span lines, a header or a token may not */
        assert_int_equal(field_check(FETCH_FIELD_BODY, "{\n\"a\": 1\n}", 10), 0);
        assert_int_equal(field_check(FETCH_FIELD_HEADER, "A: b\nC: d", 9), -EINVAL);
        assert_int_equal(field_check(FETCH_FIELD_BEARER, "ab\rcd", 5), -EINVAL);
        assert_int_equal(field_check(FETCH_FIELD_BEARER, "ab\0cd", 5), -EINVAL);
        assert_int_equal(field_check(FETCH_FIELD_BODY, "{\"a\":\0}", 7), -EINVAL);
        /* optional fields may be absent (length 0) */
        assert_int_equal(field_check(FETCH_FIELD_CA_FILE, "", 0), 0);
        assert_int_equal(field_check(FETCH_FIELD_CLIENT_KEY, "", 0), 0);

        memset(big, 'x', sizeof(big));
        assert_int_equal(field_check(FETCH_FIELD_BODY, big, FETCH_BODY_MAX), 0);
        assert_int_equal(field_check(FETCH_FIELD_BODY, big, FETCH_BODY_MAX + 1), -EINVAL);
        assert_int_equal(field_check(FETCH_FIELD_HEADER, big, fetch_field_max(FETCH_FIELD_HEADER)), 0);
        assert_int_equal(field_check(FETCH_FIELD_HEADER, big, fetch_field_max(FETCH_FIELD_HEADER) + 1), -EINVAL);
        assert_int_equal(field_check(_FETCH_FIELD_MAX, "x", 1), -EINVAL);

        for (FetchField f = 0; f < _FETCH_FIELD_MAX; f++) {
                assert_non_null(fetch_field_to_string(f));
                assert_true(fetch_field_max(f) > 0);
        }
        assert_null(fetch_field_to_string(_FETCH_FIELD_MAX));
}

static int answer_check(uint32_t magic, int32_t error, uint32_t status, uint32_t body_size) {
        FetchAnswerHeader h = { .magic = magic, .error = error, .status = status, .body_size = body_size };
        const char *why = NULL;
        int r = fetch_answer_header_check(&h, &why);

        assert_true(r == 0 || (r == -EBADMSG && why && why[0]));
        return r;
}

static void test_answer_header(void **state) {
        assert_int_equal(answer_check(FETCH_ANSWER_MAGIC, 0, 200, 17), 0);
        assert_int_equal(answer_check(FETCH_ANSWER_MAGIC, 0, 100, 0), 0);
        assert_int_equal(answer_check(FETCH_ANSWER_MAGIC, 0, 599, FETCH_BODY_MAX), 0);
        assert_int_equal(answer_check(FETCH_ANSWER_MAGIC, -ECONNREFUSED, 0, 0), 0);
        /* the request's magic is not the answer's */
        assert_int_equal(answer_check(FETCH_REQUEST_MAGIC, 0, 200, 0), -EBADMSG);
        assert_int_equal(answer_check(FETCH_ANSWER_MAGIC, 0, 99, 0), -EBADMSG);
        assert_int_equal(answer_check(FETCH_ANSWER_MAGIC, 0, 600, 0), -EBADMSG);
        assert_int_equal(answer_check(FETCH_ANSWER_MAGIC, 0, 200, FETCH_BODY_MAX + 1), -EBADMSG);
        assert_int_equal(answer_check(FETCH_ANSWER_MAGIC, 5, 0, 0), -EBADMSG);
        assert_int_equal(answer_check(FETCH_ANSWER_MAGIC, -4096, 0, 0), -EBADMSG);
        assert_int_equal(answer_check(FETCH_ANSWER_MAGIC, -EPROTO, 200, 0), -EBADMSG);
        assert_int_equal(answer_check(FETCH_ANSWER_MAGIC, -EPROTO, 0, 3), -EBADMSG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fields),
                cmocka_unit_test(test_answer_header),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
