/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "parse-util.h"

#define NUMBER_MAX_CHARS 20

static bool starts_with_digit(const char *s) {
        return s && *s >= '0' && *s <= '9';
}

int parse_uint_range(const char *s, unsigned long min, unsigned long max, unsigned long *ret) {
        unsigned long v;
        char *end;

        /* strtoul() would take "-1", " 7" and "+7"; people's numbers start with a digit */
        if (!starts_with_digit(s) || strlen(s) > NUMBER_MAX_CHARS)
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_unsigned_range(const char *s, unsigned min, unsigned max, unsigned *ret) {
        unsigned long v;
        int r;

        r = parse_uint_range(s, min, max, &v);
        if (r < 0)
                return r;
        *ret = (unsigned) v;
        return 0;
}

int parse_volts_mv(const char *s, double max_volts, unsigned *ret_mv) {
        double v;
        char *end;

        if (!starts_with_digit(s) || strlen(s) > NUMBER_MAX_CHARS)
                return -EINVAL;
        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || *end || !(v >= 0.0 && v <= max_volts))
                return -EINVAL;
        *ret_mv = (unsigned) (v * 1000.0 + 0.5);
        return 0;
}
