/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "hex.h"

int unhexchar(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

int hex_decode(const char *s, uint8_t *ret, size_t n) {
        if (!s || (n > 0 && !ret))
                return -EINVAL;

        /* strnlen, so a long string is not walked to its end just to be refused */
        if (n > (SIZE_MAX - 1) / 2 || strnlen(s, 2 * n + 1) != 2 * n)
                return -EINVAL;

        /* Validate everything first, so ret stays untouched on failure. */
        for (size_t i = 0; i < 2 * n; i++)
                if (unhexchar(s[i]) < 0)
                        return -EINVAL;

        for (size_t i = 0; i < n; i++)
                ret[i] = (uint8_t) (unhexchar(s[2 * i]) << 4 | unhexchar(s[2 * i + 1]));

        return 0;
}

void hex_encode(const uint8_t *p, size_t n, bool upper, char *ret) {
        const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                ret[2 * i] = digits[p[i] >> 4];
                ret[2 * i + 1] = digits[p[i] & 0x0f];
        }
        ret[2 * n] = '\0';
}

bool is_hex_string(const char *s) {
        if (!s || !*s)
                return false;

        for (; *s; s++)
                if (unhexchar(*s) < 0)
                        return false;

        return true;
}
