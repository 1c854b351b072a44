/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "checkchar.h"

static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

static int alphabet_size(CheckAlphabet a) {
        switch (a) {
        case CHECKCHAR_HEX:
                return 16;
        case CHECKCHAR_BASE36:
                return 36;
        default:
                return -EINVAL;
        }
}

/* The code point of c in an alphabet of n characters, or -EINVAL. */
static int code_point(char c, int n) {
        int v;

        if (c >= '0' && c <= '9')
                v = c - '0';
        else if (c >= 'A' && c <= 'Z')
                v = c - 'A' + 10;
        else if (c >= 'a' && c <= 'z')
                v = c - 'a' + 10;
        else
                return -EINVAL;

        return v < n ? v : -EINVAL;
}

int checkchar_compute(const char *field, CheckAlphabet a, char *ret_cd) {
        int n, factor = 2;
        unsigned sum = 0;
        size_t len;

        n = alphabet_size(a);
        if (n < 0)
                return n;

        if (!field || !*field)
                return -EINVAL;

        /* From the right, so the rightmost character is doubled as in Luhn's original. */
        len = strlen(field);
        for (size_t i = len; i > 0; i--) {
                int v = code_point(field[i - 1], n), addend;

                if (v < 0)
                        return v;

                addend = factor * v;
                addend = addend / n + addend % n;
                /* reduced as we go, so no field is long enough to overflow */
                sum = (sum + (unsigned) addend) % (unsigned) n;
                factor = factor == 2 ? 1 : 2;
        }

        if (ret_cd)
                *ret_cd = digits[(n - (int) sum) % n];
        return 0;
}

int checkchar_verify(const char *field, CheckAlphabet a, char cd) {
        char expected;
        int n, v, r;

        n = alphabet_size(a);
        if (n < 0)
                return n;

        v = code_point(cd, n);
        if (v < 0)
                return v;

        r = checkchar_compute(field, a, &expected);
        if (r < 0)
                return r;

        return digits[v] == expected ? 0 : -EBADMSG;
}
