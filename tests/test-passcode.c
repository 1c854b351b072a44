/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "hex.h"
#include "passcode.h"
#include "vectors.h"

static json_t *vectors;
static uint8_t master[PASSCODE_KEY_SIZE];
static char tmpdir[] = "/tmp/test-passcode-XXXXXX";

static int setup(void **state) {
        vectors = vectors_load();
        assert_int_equal(hex_decode(vector_string(vectors, "master_key_hex"), master, sizeof(master)), 0);
        assert_non_null(mkdtemp(tmpdir));
        return 0;
}

static int teardown(void **state) {
        DIR *d;

        json_decref(vectors);

        /* a failed test leaves its key file behind */
        d = opendir(tmpdir);
        if (d) {
                for (struct dirent *de; (de = readdir(d));)
                        if (de->d_name[0] != '.')
                                (void) unlinkat(dirfd(d), de->d_name, 0);
                closedir(d);
        }
        (void) rmdir(tmpdir);
        return 0;
}

static void vin_key(const char *vin, uint8_t ret[PASSCODE_KEY_SIZE]) {
        assert_int_equal(passcode_vin_key(master, vin, ret), 0);
}

static void test_vin_key_known(void **state) {
        /* computed independently with Python's hmac module */
        static const char want[] = "014f4ecdfe5c3b305c9724a925567bc9cb1d9866f2c6961961cdd88d8da2d6d0";
        uint8_t k[PASSCODE_KEY_SIZE], other[PASSCODE_KEY_SIZE];
        char s[2 * PASSCODE_KEY_SIZE + 1];

        vin_key("58ADZ1B16MU000123", k);
        hex_encode(k, sizeof(k), false, s);
        assert_string_equal(s, want);

        /* one character of the VIN changes the key */
        vin_key("58ADZ1B16MU000124", other);
        assert_memory_not_equal(k, other, sizeof(k));
}

static void test_vin_key_bad(void **state) {
        uint8_t k[PASSCODE_KEY_SIZE];

        memset(k, 0xaa, sizeof(k));
        assert_int_equal(passcode_vin_key(master, "58adz1b16mu000123", k), -EINVAL);
        assert_int_equal(passcode_vin_key(master, "58ADZ1B16MU00012", k), -EINVAL);
        assert_int_equal(passcode_vin_key(master, "58ADZ1B16MU0001234", k), -EINVAL);
        assert_int_equal(passcode_vin_key(master, "58ADZ1B16MO000123", k), -EINVAL);
        assert_int_equal(passcode_vin_key(master, "", k), -EINVAL);
        assert_int_equal(passcode_vin_key(master, NULL, k), -EINVAL);
        assert_int_equal(passcode_vin_key(NULL, "58ADZ1B16MU000123", k), -EINVAL);
        for (size_t i = 0; i < sizeof(k); i++)
                assert_int_equal(k[i], 0xaa);
}

static void test_vectors_immobilizer(void **state) {
        json_t *a = vectors_array(vectors, "immobilizer"), *e;
        size_t i, n = 0;

        json_array_foreach(a, i, e) {
                const char *vin = vector_string(e, "vin"), *want = vector_string(e, "passcode");
                uint8_t k[PASSCODE_KEY_SIZE], seed[PASSCODE_SEED_SIZE];
                char p[PASSCODE_IMMOBILIZER_LEN + 1];

                print_message("%s %.16s... -> %s\n", vin, vector_string(e, "seed_hex"), want);
                vin_key(vin, k);
                assert_int_equal(hex_decode(vector_string(e, "seed_hex"), seed, sizeof(seed)), 0);

                memset(p, 'x', sizeof(p));
                assert_int_equal(passcode_immobilizer(k, seed, p), 0);
                assert_string_equal(p, want);
                n++;
        }

        assert_int_equal(n, json_array_size(a));
}

static void test_immobilizer_seed_matters(void **state) {
        json_t *e = json_array_get(vectors_array(vectors, "immobilizer"), 0);
        uint8_t k[PASSCODE_KEY_SIZE], seed[PASSCODE_SEED_SIZE];
        char p[PASSCODE_IMMOBILIZER_LEN + 1];

        vin_key(vector_string(e, "vin"), k);
        assert_int_equal(hex_decode(vector_string(e, "seed_hex"), seed, sizeof(seed)), 0);

        /* one flipped bit of the seed: computed independently with Python's hmac module */
        seed[0] ^= 1;
        assert_int_equal(passcode_immobilizer(k, seed, p), 0);
        assert_string_equal(p, "136707");

        /* the same seed under another VIN's key */
        seed[0] ^= 1;
        vin_key("58ADZ1B19LU012345", k);
        assert_int_equal(passcode_immobilizer(k, seed, p), 0);
        assert_string_not_equal(p, vector_string(e, "passcode"));
}

static void test_immobilizer_bad(void **state) {
        uint8_t k[PASSCODE_KEY_SIZE] = {}, seed[PASSCODE_SEED_SIZE] = {};
        char p[PASSCODE_IMMOBILIZER_LEN + 1] = "xxxxxx";

        assert_int_equal(passcode_immobilizer(NULL, seed, p), -EINVAL);
        assert_int_equal(passcode_immobilizer(k, NULL, p), -EINVAL);
        assert_int_equal(passcode_immobilizer(k, seed, NULL), -EINVAL);
        assert_string_equal(p, "xxxxxx");
}

static void lowercase(const char *s, char *ret, size_t n) {
        assert_true(strlen(s) < n);
        for (size_t i = 0;; i++) {
                ret[i] = (char) tolower(s[i]);
                if (!s[i])
                        break;
        }
}

static void test_vectors_smart_code(void **state) {
        json_t *a = vectors_array(vectors, "smart_code"), *e;
        size_t i, n = 0;

        json_array_foreach(a, i, e) {
                const char *vin = vector_string(e, "vin"), *want = vector_string(e, "passcode");
                const char *d1 = vector_string(e, "data1"), *d2 = vector_string(e, "data2"),
                           *d3 = vector_string(e, "data3");
                char p[PASSCODE_SMART_CODE_LEN + 1], l1[16], l2[16], l3[16];
                uint8_t k[PASSCODE_KEY_SIZE];

                print_message("%s %s %s %s -> %s\n", vin, d1, d2, d3, want);
                vin_key(vin, k);

                memset(p, 'x', sizeof(p));
                assert_int_equal(passcode_smart_code(k, vin, d1, d2, d3, p), 0);
                assert_string_equal(p, want);

                /* the fields in lowercase give the same passcode */
                lowercase(d1, l1, sizeof(l1));
                lowercase(d2, l2, sizeof(l2));
                lowercase(d3, l3, sizeof(l3));
                memset(p, 'x', sizeof(p));
                assert_int_equal(passcode_smart_code(k, vin, l1, l2, l3, p), 0);
                assert_string_equal(p, want);
                n++;
        }

        assert_int_equal(n, json_array_size(a));
}

static void test_smart_code_bad(void **state) {
        static const char vin[] = "58ADZ1B16MU000123";
        const char *d1 = "134B18FBDB1", *d2 = "1E2E6470FF1F", *d3 = "761978DD";
        char p[PASSCODE_SMART_CODE_LEN + 1] = "untouched";
        uint8_t k[PASSCODE_KEY_SIZE];

        vin_key(vin, k);

        /* each field with its check character still attached, one digit short, a bad digit */
        assert_int_equal(passcode_smart_code(k, vin, "134B18FBDB1C", d2, d3, p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, vin, "134B18FBDB", d2, d3, p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, vin, "134B18FBDBG", d2, d3, p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, vin, d1, "1E2E6470FF1F0", d3, p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, vin, d1, "1E2E6470FF1", d3, p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, vin, d1, "1E2E 470FF1F", d3, p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, vin, d1, d2, "761978DD9", p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, vin, d1, d2, "761978D", p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, vin, d1, d2, "761978DX", p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, vin, d1, d2, "", p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, vin, NULL, d2, d3, p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, vin, d1, NULL, d3, p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, vin, d1, d2, NULL, p), -EINVAL);

        /* the VIN is not hex and not uppercased for the caller: it must be a valid VIN */
        assert_int_equal(passcode_smart_code(k, "58adz1b16mu000123", d1, d2, d3, p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, "58ADZ1B16MU00012", d1, d2, d3, p), -EINVAL);
        assert_int_equal(passcode_smart_code(k, NULL, d1, d2, d3, p), -EINVAL);
        assert_int_equal(passcode_smart_code(NULL, vin, d1, d2, d3, p), -EINVAL);

        assert_string_equal(p, "untouched");
}

static void assert_normalized(PasscodeKind kind, const char *input, const char *want) {
        char out[PASSCODE_SMART_CODE_LEN + 1];
        const char *reason = NULL;

        memset(out, 'x', sizeof(out));
        assert_int_equal(passcode_normalize(kind, input, out, sizeof(out), &reason), 0);
        assert_null(reason);
        assert_string_equal(out, want);
}

static void assert_refused(PasscodeKind kind, const char *input, const char *want_reason) {
        char out[PASSCODE_SMART_CODE_LEN + 1] = "untouched";
        const char *reason = NULL;

        assert_int_equal(passcode_normalize(kind, input, out, sizeof(out), &reason), -EINVAL);
        assert_non_null(reason);
        print_message("\"%.40s\" -> %s\n", input ?: "(null)", reason);
        assert_string_equal(reason, want_reason);
        assert_string_equal(out, "untouched");

        assert_int_equal(passcode_normalize(kind, input, out, sizeof(out), NULL), -EINVAL);
}

static void test_normalize_immobilizer(void **state) {
        assert_normalized(PASSCODE_IMMOBILIZER, "073082", "073082");
        assert_normalized(PASSCODE_IMMOBILIZER, " 073 082\n", "073082");
        assert_normalized(PASSCODE_IMMOBILIZER, "\t0\t7 3\r\n0 8 2 \v\f", "073082");
        /* the no-break space of text copied from a web page */
        assert_normalized(PASSCODE_IMMOBILIZER, "073\xc2\xa0"
                                                "082",
                          "073082");

        assert_refused(PASSCODE_IMMOBILIZER, "07308", "an immobilizer passcode is 6 digits (0-9), got 5");
        assert_refused(PASSCODE_IMMOBILIZER, "0730821", "an immobilizer passcode is 6 digits (0-9), got 7");
        assert_refused(PASSCODE_IMMOBILIZER, "", "an immobilizer passcode is 6 digits (0-9), got 0");
        assert_refused(PASSCODE_IMMOBILIZER, " \t\n", "an immobilizer passcode is 6 digits (0-9), got 0");
        assert_refused(PASSCODE_IMMOBILIZER, NULL, "an immobilizer passcode is 6 digits (0-9), got 0");
        assert_refused(PASSCODE_IMMOBILIZER, "07308a", "an immobilizer passcode is 6 digits (0-9), 'a' is not one");
        assert_refused(PASSCODE_IMMOBILIZER, "A1A3B0DA03ED",
                       "an immobilizer passcode is 6 digits (0-9), 'A' is not one");
        assert_refused(PASSCODE_IMMOBILIZER, "073-082", "an immobilizer passcode is 6 digits (0-9), '-' is not one");
        assert_refused(PASSCODE_IMMOBILIZER, "0730\x01"
                                             "82",
                       "an immobilizer passcode is 6 digits (0-9), control character 0x01 is not one");
        assert_refused(PASSCODE_IMMOBILIZER, "07308\xc3\xa9",
                       "an immobilizer passcode is 6 digits (0-9), a non-ASCII character is not one");
}

static void test_normalize_smart_code(void **state) {
        assert_normalized(PASSCODE_SMART_CODE, "A1A3B0DA03ED", "A1A3B0DA03ED");
        assert_normalized(PASSCODE_SMART_CODE, "a1a3b0da03ed", "A1A3B0DA03ED");
        assert_normalized(PASSCODE_SMART_CODE, "a1A3 b0DA\t03eD\n", "A1A3B0DA03ED");
        assert_normalized(PASSCODE_SMART_CODE, "  A1A3\n B0DA\n 03ED  ", "A1A3B0DA03ED");
        assert_normalized(PASSCODE_SMART_CODE, "012345678912", "012345678912");

        assert_refused(PASSCODE_SMART_CODE, "A1A3B0DA03E",
                       "a smart-code passcode is 12 hex digits (0-9, A-F), got 11");
        assert_refused(PASSCODE_SMART_CODE, "A1A3B0DA03ED0",
                       "a smart-code passcode is 12 hex digits (0-9, A-F), got 13");
        assert_refused(PASSCODE_SMART_CODE, "073082",
                       "a smart-code passcode is 12 hex digits (0-9, A-F), got 6");
        assert_refused(PASSCODE_SMART_CODE, "A1A3B0DA03EG",
                       "a smart-code passcode is 12 hex digits (0-9, A-F), 'G' is not one");
        assert_refused(PASSCODE_SMART_CODE, "a1a3b0da03eg",
                       "a smart-code passcode is 12 hex digits (0-9, A-F), 'g' is not one");
        assert_refused(PASSCODE_SMART_CODE, "A1A3-B0DA-03ED",
                       "a smart-code passcode is 12 hex digits (0-9, A-F), '-' is not one");
        assert_refused(PASSCODE_SMART_CODE, "0xA1A3B0DA03ED",
                       "a smart-code passcode is 12 hex digits (0-9, A-F), 'x' is not one");
}

static void test_normalize_length_bound(void **state) {
        char in[PASSCODE_INPUT_MAX + 2];

        /* white space counts toward the bound: 250 spaces and 6 digits are 256 */
        memset(in, ' ', PASSCODE_INPUT_MAX - 6);
        strcpy(in + PASSCODE_INPUT_MAX - 6, "073082");
        assert_int_equal(strlen(in), PASSCODE_INPUT_MAX);
        assert_normalized(PASSCODE_IMMOBILIZER, in, "073082");

        memset(in, ' ', PASSCODE_INPUT_MAX - 5);
        strcpy(in + PASSCODE_INPUT_MAX - 5, "073082");
        assert_int_equal(strlen(in), PASSCODE_INPUT_MAX + 1);
        assert_refused(PASSCODE_IMMOBILIZER, in,
                       "an immobilizer passcode is 6 digits (0-9), got more than 256 characters");

        memset(in, 'A', PASSCODE_INPUT_MAX + 1);
        in[PASSCODE_INPUT_MAX + 1] = '\0';
        assert_refused(PASSCODE_SMART_CODE, in,
                       "a smart-code passcode is 12 hex digits (0-9, A-F), got more than 256 characters");

        /* within the bound, many digits are counted, not cut */
        memset(in, '1', 200);
        in[200] = '\0';
        assert_refused(PASSCODE_IMMOBILIZER, in, "an immobilizer passcode is 6 digits (0-9), got 200");
}

static void test_normalize_buffer(void **state) {
        char out[PASSCODE_SMART_CODE_LEN + 1] = "untouched";

        assert_int_equal(passcode_normalize(PASSCODE_IMMOBILIZER, "073082", out, 6, NULL), -ENOBUFS);
        assert_int_equal(passcode_normalize(PASSCODE_SMART_CODE, "A1A3B0DA03ED", out, 12, NULL), -ENOBUFS);
        assert_int_equal(passcode_normalize(PASSCODE_SMART_CODE, "A1A3B0DA03ED", NULL, 13, NULL), -ENOBUFS);
        assert_int_equal(passcode_normalize((PasscodeKind) 9, "073082", out, sizeof(out), NULL), -EINVAL);
        assert_string_equal(out, "untouched");

        /* exactly enough room */
        assert_int_equal(passcode_normalize(PASSCODE_IMMOBILIZER, "073082", out, 7, NULL), 0);
        assert_string_equal(out, "073082");
}

/* Writes a master key file in the test's directory and returns its path. */
static const char *write_key_file(const char *name, const void *data, size_t size) {
        static char path[256];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, size), (ssize_t) size);
        assert_int_equal(close(fd), 0);
        return path;
}

static void assert_key_file_ok(const char *name, const char *content, size_t size) {
        uint8_t k[PASSCODE_KEY_SIZE] = {};
        const char *path = write_key_file(name, content, size);

        assert_int_equal(passcode_read_master_key(path, k), 0);
        assert_memory_equal(k, master, sizeof(k));
        assert_int_equal(unlink(path), 0);
}

static void assert_key_file_bad(const char *name, const char *content, size_t size, int want) {
        uint8_t k[PASSCODE_KEY_SIZE];
        const char *path = write_key_file(name, content, size);

        memset(k, 0xaa, sizeof(k));
        print_message("%s:\n", name);
        assert_int_equal(passcode_read_master_key(path, k), want);
        for (size_t i = 0; i < sizeof(k); i++)
                assert_int_equal(k[i], 0xaa);
        assert_int_equal(unlink(path), 0);
}

#define KEY_HEX "809f6b43a07b3d33f986d73cea5e469c3329d5543dd5d1902e92fc61cad71d02"
#define KEY_FILE(name, s) name, s, sizeof(s) - 1

static void test_master_key_file(void **state) {
        char big[PASSCODE_MASTER_KEY_FILE_MAX + 1];
        uint8_t k[PASSCODE_KEY_SIZE];

        assert_string_equal(KEY_HEX, vector_string(vectors, "master_key_hex"));

        assert_key_file_ok(KEY_FILE("plain", KEY_HEX));
        assert_key_file_ok(KEY_FILE("newline", KEY_HEX "\n"));
        assert_key_file_ok(KEY_FILE("upper", "809F6B43A07B3D33F986D73CEA5E469C3329D5543DD5D1902E92FC61CAD71D02\n"));
        assert_key_file_ok(KEY_FILE("spread",
                                    "  809f6b43 a07b3d33 f986d73c ea5e469c\n"
                                    "\t3329d554 3dd5d190 2e92fc61 cad71d02\r\n\n"));

        /* the size bound: white space to exactly 4096 bytes is read, one byte more is not */
        memset(big, '\n', sizeof(big));
        memcpy(big, KEY_HEX, 64);
        assert_key_file_ok("4096", big, PASSCODE_MASTER_KEY_FILE_MAX);
        assert_key_file_bad("4097", big, PASSCODE_MASTER_KEY_FILE_MAX + 1, -EINVAL);

        assert_key_file_bad(KEY_FILE("empty", ""), -EINVAL);
        assert_key_file_bad(KEY_FILE("blank", " \n\n"), -EINVAL);
        assert_key_file_bad(KEY_FILE("short",
                                     "809f6b43a07b3d33f986d73cea5e469c3329d5543dd5d1902e92fc61cad71d0\n"),
                            -EINVAL);
        assert_key_file_bad(KEY_FILE("long", KEY_HEX "0\n"), -EINVAL);
        assert_key_file_bad(KEY_FILE("twice", KEY_HEX "\n" KEY_HEX "\n"), -EINVAL);
        assert_key_file_bad(KEY_FILE("half", "809f6b43a07b3d33f986d73cea5e469c"), -EINVAL);
        assert_key_file_bad(KEY_FILE("bad-char",
                                     "809f6b43a07b3d33f986d73cea5e469c3329d5543dd5d1902e92fc61cad71d0g\n"),
                            -EINVAL);
        assert_key_file_bad(KEY_FILE("prefixed", "0x" KEY_HEX "\n"), -EINVAL);
        assert_key_file_bad(KEY_FILE("key-value", "key=" KEY_HEX "\n"), -EINVAL);
        assert_key_file_bad(KEY_FILE("colons", "80:9f:6b:43:a0:7b:3d:33:f9:86:d7:3c:ea:5e:46:9c:"
                                               "33:29:d5:54:3d:d5:d1:90:2e:92:fc:61:ca:d7:1d:02\n"),
                            -EINVAL);
        assert_key_file_bad("nul", KEY_HEX "\0", 65, -EINVAL);
        assert_key_file_bad(KEY_FILE("utf8", "\xef\xbb\xbf" KEY_HEX "\n"), -EINVAL);

        /* not there, not a file */
        memset(k, 0xaa, sizeof(k));
        snprintf(big, sizeof(big), "%s/missing", tmpdir);
        assert_int_equal(passcode_read_master_key(big, k), -ENOENT);
        assert_int_equal(passcode_read_master_key(tmpdir, k), -EINVAL);
        for (size_t i = 0; i < sizeof(k); i++)
                assert_int_equal(k[i], 0xaa);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vin_key_known),
                cmocka_unit_test(test_vin_key_bad),
                cmocka_unit_test(test_vectors_immobilizer),
                cmocka_unit_test(test_immobilizer_seed_matters),
                cmocka_unit_test(test_immobilizer_bad),
                cmocka_unit_test(test_vectors_smart_code),
                cmocka_unit_test(test_smart_code_bad),
                cmocka_unit_test(test_normalize_immobilizer),
                cmocka_unit_test(test_normalize_smart_code),
                cmocka_unit_test(test_normalize_length_bound),
                cmocka_unit_test(test_normalize_buffer),
                cmocka_unit_test(test_master_key_file),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
