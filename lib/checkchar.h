/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The check characters (CD) shown beside the smart-code seed's fields: Luhn mod N,
 * N = 16 over 0-9A-F for Data1..3, N = 36 over 0-9A-Z for the VIN. Lowercase input
 * counts as the same character.
 */

#include "util.h"

typedef enum CheckAlphabet {
        CHECKCHAR_HEX,    /* 0-9A-F, N = 16 */
        CHECKCHAR_BASE36, /* 0-9A-Z, N = 36 */
} CheckAlphabet;

/* -EINVAL for an empty field or a character outside the alphabet. */
int checkchar_compute(const char *field, CheckAlphabet a, char *ret_cd);

/* 0 when cd matches, -EBADMSG when it does not, -EINVAL for a bad field or cd. */
int checkchar_verify(const char *field, CheckAlphabet a, char cd);
