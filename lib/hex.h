/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Hex digits as people and the passcode service see binary data: seeds, keys, Data1..3.
 */

#include "util.h"

/* The value 0..15 of a hex digit in either case, or -EINVAL. */
int unhexchar(char c);

/* Exactly 2n hex digits, either case, into n bytes; -EINVAL for anything else. */
int hex_decode(const char *s, uint8_t *ret, size_t n);

/* n bytes as 2n hex digits and a NUL: ret must hold 2n+1 chars. */
void hex_encode(const uint8_t *p, size_t n, bool upper, char *ret);

/* True for a non-empty string of hex digits only (either case). */
bool is_hex_string(const char *s);
