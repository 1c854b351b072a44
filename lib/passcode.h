/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The passcodes of vehicle-protocol.md section 6, for the simulated ECU and the passcode
 * service (the holders of the master key), and the normalization of passcodes that
 * people type or paste, for immod. All of OpenSSL is met in passcode.c.
 */

#include "util.h"

#define PASSCODE_KEY_SIZE 32       /* the master key M and every K_vin */
#define PASSCODE_SEED_SIZE 48      /* the immobilizer seed, raw */
#define PASSCODE_IMMOBILIZER_LEN 6 /* decimal digits */
#define PASSCODE_SMART_CODE_LEN 12 /* hex digits */
#define PASSCODE_DATA1_LEN 11      /* hex digits of the smart-code seed's fields */
#define PASSCODE_DATA2_LEN 12
#define PASSCODE_DATA3_LEN 8
#define PASSCODE_INPUT_MAX 256 /* longest input passcode_normalize() looks at */
#define PASSCODE_MASTER_KEY_FILE_MAX 4096

/* K_vin; -EINVAL unless vin passes vin_check_syntax(), -EIO if OpenSSL fails. */
int passcode_vin_key(const uint8_t master[32], const char *vin, uint8_t ret_kvin[32]);

/* The 6-digit immobilizer passcode and a NUL. */
int passcode_immobilizer(const uint8_t kvin[32], const uint8_t seed[48], char ret[7]);

/*
 * The 12 uppercase hex digits of the smart-code passcode and a NUL. data1..3 are the
 * fields without their check characters (11, 12 and 8 hex digits, either case); -EINVAL
 * for any other form.
 */
int passcode_smart_code(const uint8_t kvin[32], const char *vin, const char *data1, const char *data2,
                        const char *data3, char ret[13]);

typedef enum PasscodeKind {
        PASSCODE_IMMOBILIZER,
        PASSCODE_SMART_CODE,
} PasscodeKind;

/*
 * A passcode as a person typed or pasted it, white space removed and hex digits made
 * uppercase, into ret (n >= 7 or 13, else -ENOBUFS). Any other form gets -EINVAL and, if
 * ret_reason is not NULL, a sentence naming the expected form, in a per-thread buffer
 * valid until the next call in the same thread.
 */
int passcode_normalize(PasscodeKind kind, const char *input, char *ret, size_t n, const char **ret_reason);

/* The master key from a file of 64 hex digits (white space ignored); logs what is wrong. */
int passcode_read_master_key(const char *path, uint8_t ret[32]);

/* SHA-256, for the simulator's ECU identity and key-set state and the server's seed
 * digests: libcrypto is met only in this file. -EIO if OpenSSL fails. */
int sha256(const void *data, size_t size, uint8_t ret[32]);
