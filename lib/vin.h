/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Vehicle identification numbers (49 CFR 565): syntax, check digit, model year, make.
 */

#include "util.h"

#define VIN_LEN 17

/*
 * 0 for 17 characters of 0-9 and A-Z without I, O and Q; else -EINVAL and, if ret_reason
 * is not NULL, a sentence for people naming what is wrong and the expected form. The
 * sentence lives in a per-thread buffer, valid until the next call in the same thread.
 */
int vin_check_syntax(const char *vin, const char **ret_reason);

/* The check digit ('0'-'9' or 'X') position 9 should hold, or '\0' for an invalid VIN. */
char vin_compute_check_digit(const char *vin);
bool vin_check_digit_ok(const char *vin);

/* The model year coded in position 10, told apart by position 7 (a letter: 2010-2039). */
int vin_model_year(const char *vin, unsigned *ret_year);

/* "Lexus", "Toyota", or NULL for any other or an invalid VIN, from the WMI. */
const char *vin_make(const char *vin);
