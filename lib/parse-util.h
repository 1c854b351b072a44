/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Numbers typed by people (command lines, control sockets): digits only, in a range. */

#include "util.h"

/* A whole number in [min, max] written with decimal digits only: no sign, no spaces,
 * nothing after it. -EINVAL otherwise; ret untouched on failure. */
int parse_uint_range(const char *s, unsigned long min, unsigned long max, unsigned long *ret);
/* The same into an unsigned. */
int parse_unsigned_range(const char *s, unsigned min, unsigned max, unsigned *ret);
/* Volts such as "12.6" in [0, max_volts], returned in millivolts. */
int parse_volts_mv(const char *s, double max_volts, unsigned *ret_mv);
