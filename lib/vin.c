/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "vin.h"

/* Messages name the offending character; they are built here, hence per thread. */
static _Thread_local char reason_buf[192];

/* How a byte is named in a message: always ASCII, so a D-Bus error can carry it. */
static void describe_char(char c, char buf[static 32]) {
        unsigned char u = (unsigned char) c;

        if (u == ' ')
                snprintf(buf, 32, "a space");
        else if (u >= 0x80)
                snprintf(buf, 32, "a non-ASCII character");
        else if (u < 0x20 || u == 0x7f)
                snprintf(buf, 32, "control character 0x%02X", u);
        else
                snprintf(buf, 32, "'%c'", c);
}

static bool is_utf8_continuation(char c) {
        return ((unsigned char) c & 0xc0) == 0x80;
}

int vin_check_syntax(const char *vin, const char **ret_reason) {
        char what[32];
        size_t len = 0, pos = 0;

        if (!vin)
                vin = "";

        /* Count characters, not bytes, so "got N" matches what the person typed. */
        for (const char *p = vin; *p; p++)
                if (!is_utf8_continuation(*p))
                        len++;

        if (len != VIN_LEN) {
                snprintf(reason_buf, sizeof(reason_buf), "a VIN has %d characters, got %zu", VIN_LEN, len);
                goto invalid;
        }

        /* Any non-ASCII byte fails, so up to the first one bytes and characters agree. */
        for (size_t i = 0; vin[i]; i++) {
                char c = vin[i];

                pos = i + 1;

                if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z' && !strchr("IOQ", c)))
                        continue;

                describe_char(c, what);
                if (strchr("IOQioq", c))
                        snprintf(reason_buf, sizeof(reason_buf),
                                 "%s at position %zu is not allowed in a VIN (letters I, O and Q are never used)",
                                 what, pos);
                else if (c >= 'a' && c <= 'z')
                        snprintf(reason_buf, sizeof(reason_buf),
                                 "a VIN is written in capital letters, %s at position %zu is lowercase",
                                 what, pos);
                else
                        snprintf(reason_buf, sizeof(reason_buf),
                                 "%s at position %zu is not allowed in a VIN "
                                 "(only digits 0-9 and capital letters A-Z except I, O and Q)",
                                 what, pos);
                goto invalid;
        }

        return 0;

invalid:
        if (ret_reason)
                *ret_reason = reason_buf;
        return -EINVAL;
}

/* 49 CFR 565.15 table I; 0 where the letter is never used in a VIN. */
static int transliterate(char c) {
        /* each value under its letter */
        /* clang-format off */
        static const int letters[26] = {
                /* A  B  C  D  E  F  G  H  I  J  K  L  M */
                   1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4,
                /* N  O  P  Q  R  S  T  U  V  W  X  Y  Z */
                   5, 0, 7, 0, 9, 2, 3, 4, 5, 6, 7, 8, 9,
        };
        /* clang-format on */

        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'A' && c <= 'Z' && letters[c - 'A'] > 0)
                return letters[c - 'A'];
        return -EINVAL;
}

char vin_compute_check_digit(const char *vin) {
        /* 49 CFR 565.15 table II; position 9 is the check digit itself and weighs 0 */
        static const int weights[VIN_LEN] = { 8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2 };
        int sum = 0;

        if (vin_check_syntax(vin, NULL) < 0)
                return '\0';

        for (size_t i = 0; i < VIN_LEN; i++)
                sum += transliterate(vin[i]) * weights[i];

        sum %= 11;
        return sum == 10 ? 'X' : (char) ('0' + sum);
}

bool vin_check_digit_ok(const char *vin) {
        char cd = vin_compute_check_digit(vin);

        return cd != '\0' && vin[8] == cd;
}

int vin_model_year(const char *vin, unsigned *ret_year) {
        /* The 30-year cycle, 1980 first; I, O, Q, U, Z and 0 are never year codes. */
        static const char codes[] = "ABCDEFGHJKLMNPRSTVWXY123456789";
        const char *p;
        unsigned year;

        if (vin_check_syntax(vin, NULL) < 0)
                return -EINVAL;

        p = strchr(codes, vin[9]);
        if (!p)
                return -EINVAL;

        year = 1980 + (unsigned) (p - codes);
        /* The year codes repeat every 30 years; for light vehicles a letter in position 7
         * marks the 2010-2039 cycle, a digit the 1980-2009 one. */
        if (vin[6] >= 'A' && vin[6] <= 'Z')
                year += 30;

        *ret_year = year;
        return 0;
}

const char *vin_make(const char *vin) {
        static const char *const lexus[] = { "JTH", "JTJ", "58A", "2T2" };
        static const char *const toyota[] = { "JT", "4T", "5T", "2T" };

        if (vin_check_syntax(vin, NULL) < 0)
                return NULL;

        /* Lexus first: its WMIs share their first two letters with Toyota's. */
        for (size_t i = 0; i < ELEMENTSOF(lexus); i++)
                if (startswith(vin, lexus[i]))
                        return "Lexus";

        for (size_t i = 0; i < ELEMENTSOF(toyota); i++)
                if (startswith(vin, toyota[i]))
                        return "Toyota";

        return NULL;
}
