/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzzes the parsers of text that people type or paste, or that comes over D-Bus and from
 * configuration files: VINs, check characters, passcodes, hex, link URIs. The input, cut
 * at its first NUL, is one string handed to all of them (each in an exactly sized heap
 * buffer, so ASan sees any read past the end).
 *
 * What is checked (promised by the headers):
 *   - vin_check_syntax() accepts exactly 17 characters of 0-9 and A-Z without I, O, Q, and
 *     gives a reason otherwise; vin_compute_check_digit() is '0'-'9' or 'X' for a valid VIN
 *     and '\0' otherwise, and vin_check_digit_ok() agrees; vin_model_year() is 1980-2039;
 *     vin_make() is NULL, "Lexus" or "Toyota";
 *   - checkchar_compute() gives a character of the alphabet that checkchar_verify() then
 *     accepts, the same for the lowercase field, and fails for a character outside the
 *     alphabet or an empty field;
 *   - passcode_normalize() gives 6 digits or 12 uppercase hex digits, is idempotent, needs
 *     a buffer of 7 or 13, and gives a reason when it refuses;
 *   - hex_decode() accepts exactly 2n hex digits and decodes them (hex_encode() gives them
 *     back, in lowercase); is_hex_string() and unhexchar() agree;
 *   - link_uri_parse() gives a URI that link_uri_format() writes back as it was, and a
 *     reason when it refuses.
 */
#include <ctype.h>
#include <stdio.h>

#include "checkchar.h"
#include "fuzz.h"
#include "hex.h"
#include "link.h"
#include "passcode.h"
#include "vin.h"

static bool vin_char(char c) {
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z' && c != 'I' && c != 'O' && c != 'Q');
}

static void fuzz_vin(const char *s) {
        const char *reason = NULL, *make;
        size_t len = strlen(s);
        bool valid = len == VIN_LEN;
        unsigned year = 0;
        char cd;
        int r;

        for (size_t i = 0; valid && i < len; i++)
                valid = vin_char(s[i]);

        r = vin_check_syntax(s, &reason);
        FUZZ_CHECK(r == 0 || r == -EINVAL);
        FUZZ_CHECK((r == 0) == valid);
        if (r < 0)
                FUZZ_CHECK(reason && strlen(reason) > 0);

        cd = vin_compute_check_digit(s);
        if (valid)
                FUZZ_CHECK((cd >= '0' && cd <= '9') || cd == 'X');
        else
                FUZZ_CHECK(cd == '\0');
        FUZZ_CHECK(vin_check_digit_ok(s) == (valid && s[8] == cd));

        r = vin_model_year(s, &year);
        if (r == 0)
                FUZZ_CHECK(valid && year >= 1980 && year <= 2039);
        else
                FUZZ_CHECK(r == -EINVAL);

        make = vin_make(s);
        FUZZ_CHECK(!make || (valid && (streq(make, "Lexus") || streq(make, "Toyota"))));
}

static void fuzz_checkchar(const char *s) {
        static const struct {
                CheckAlphabet a;
                const char *chars;
        } alphabets[] = {
                { CHECKCHAR_HEX, "0123456789ABCDEF" },
                { CHECKCHAR_BASE36, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" },
        };

        for (size_t k = 0; k < ELEMENTSOF(alphabets); k++) {
                const char *chars = alphabets[k].chars;
                CheckAlphabet a = alphabets[k].a;
                bool valid = *s != '\0';
                char cd = 0, cd2 = 0, *lower;
                int r;

                for (const char *p = s; *p && valid; p++)
                        valid = strchr(chars, toupper((unsigned char) *p)) != NULL;

                r = checkchar_compute(s, a, &cd);
                FUZZ_CHECK(r == 0 || r == -EINVAL);
                FUZZ_CHECK((r == 0) == valid);
                FUZZ_CHECK(checkchar_compute(s, a, NULL) == r);
                if (r < 0) {
                        FUZZ_CHECK(checkchar_verify(s, a, '0') == -EINVAL);
                        continue;
                }
                FUZZ_CHECK(cd != '\0' && strchr(chars, cd));
                FUZZ_CHECK(checkchar_verify(s, a, cd) == 0);
                FUZZ_CHECK(checkchar_verify(s, a, (char) tolower((unsigned char) cd)) == 0);
                /* any other character of the alphabet is a mismatch */
                FUZZ_CHECK(checkchar_verify(s, a, cd == '0' ? '1' : '0') == -EBADMSG);
                FUZZ_CHECK(checkchar_verify(s, a, '*') == -EINVAL);

                lower = strdup(s);
                FUZZ_CHECK(lower);
                for (char *p = lower; *p; p++)
                        *p = (char) tolower((unsigned char) *p);
                FUZZ_CHECK(checkchar_compute(lower, a, &cd2) == 0 && cd2 == cd);
                free(lower);
        }
}

static void fuzz_passcode(const char *s) {
        static const struct {
                PasscodeKind kind;
                size_t len;
        } kinds[] = {
                { PASSCODE_IMMOBILIZER, PASSCODE_IMMOBILIZER_LEN },
                { PASSCODE_SMART_CODE, PASSCODE_SMART_CODE_LEN },
        };

        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                size_t want = kinds[k].len;
                const char *reason = NULL;
                char *out = malloc(want + 1), *small = malloc(want), again[PASSCODE_SMART_CODE_LEN + 1];
                int r;

                FUZZ_CHECK(out && small);
                r = passcode_normalize(kinds[k].kind, s, out, want + 1, &reason);
                FUZZ_CHECK(r == 0 || r == -EINVAL);
                if (r < 0)
                        FUZZ_CHECK(reason && strlen(reason) > 0);
                else {
                        FUZZ_CHECK(strlen(out) == want);
                        for (size_t i = 0; i < want; i++)
                                FUZZ_CHECK((out[i] >= '0' && out[i] <= '9') ||
                                           (kinds[k].kind == PASSCODE_SMART_CODE && out[i] >= 'A' && out[i] <= 'F'));
                        /* what it gives is in normal form already */
                        FUZZ_CHECK(passcode_normalize(kinds[k].kind, out, again, sizeof(again), NULL) == 0);
                        FUZZ_CHECK(streq(again, out));
                }
                FUZZ_CHECK(passcode_normalize(kinds[k].kind, s, small, want, NULL) == -ENOBUFS);
                free(out);
                free(small);
        }
}

static void fuzz_hex(const char *s, uint8_t sel) {
        size_t len = strlen(s), n;
        bool all_hex = true;
        uint8_t *buf;
        char *back;
        int r;

        for (size_t i = 0; i < len; i++) {
                bool x = isxdigit((unsigned char) s[i]);
                FUZZ_CHECK((unhexchar(s[i]) >= 0) == x);
                all_hex = all_hex && x;
        }
        FUZZ_CHECK(is_hex_string(s) == (len > 0 && all_hex));

        /* the right size, and another one the input byte picks */
        for (unsigned k = 0; k < 2; k++) {
                n = k == 0 ? len / 2 : sel % 48;
                buf = malloc(n + 1);
                FUZZ_CHECK(buf);
                r = hex_decode(s, buf, n);
                FUZZ_CHECK(r == 0 || r == -EINVAL);
                FUZZ_CHECK((r == 0) == (len == 2 * n && all_hex));
                if (r == 0) {
                        back = malloc(2 * n + 1);
                        FUZZ_CHECK(back);
                        hex_encode(buf, n, false, back);
                        for (size_t i = 0; i < 2 * n; i++)
                                FUZZ_CHECK(back[i] == tolower((unsigned char) s[i]));
                        FUZZ_CHECK(back[2 * n] == '\0');
                        free(back);
                }
                free(buf);
        }
        FUZZ_CHECK(hex_decode(NULL, NULL, 0) == -EINVAL);
}

static void fuzz_link(const char *s) {
        const char *reason = NULL;
        char buf[sizeof(((LinkUri *) 0)->name) + 32];
        LinkUri u, v;
        int r;

        memset(&u, 0x5a, sizeof(u));
        r = link_uri_parse(s, &u, &reason);
        FUZZ_CHECK(r == 0 || r == -EINVAL);
        if (r < 0) {
                FUZZ_CHECK(reason && strlen(reason) > 0);
                return;
        }
        FUZZ_CHECK(u.kind == LINK_VBUS || u.kind == LINK_SOCKETCAN || u.kind == LINK_SOCKETCAN_ISOTP);
        FUZZ_CHECK(memchr(u.name, '\0', sizeof(u.name)));
        FUZZ_CHECK(u.name[0] != '\0');
        if (u.kind != LINK_VBUS)
                FUZZ_CHECK(strlen(u.name) < IFNAMSIZ);

        link_uri_format(&u, buf, sizeof(buf));
        FUZZ_CHECK(streq(buf, s));
        FUZZ_CHECK(link_uri_parse(buf, &v, NULL) == 0);
        FUZZ_CHECK(v.kind == u.kind && streq(v.name, u.name));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t len = strnlen((const char *) data, size);
        char *s;

        /* exactly sized: a read past the NUL is a heap overflow */
        s = malloc(len + 1);
        FUZZ_CHECK(s);
        memcpy(s, data, len);
        s[len] = '\0';

        fuzz_vin(s);
        fuzz_checkchar(s);
        fuzz_passcode(s);
        fuzz_hex(s, size > len + 1 ? data[len + 1] : (uint8_t) len);
        fuzz_link(s);

        free(s);
        return 0;
}
