/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Password hashes: "pbkdf2-sha256$ITERATIONS$SALT$HASH" (salt and hash in hex), a random
 * 16-byte salt per user. The server's one meeting with OpenSSL.
 */

#include "util.h"

#define PASSWORD_HASH_MAX 160
#define PASSWORD_MAX 256

/* ret must hold PASSWORD_HASH_MAX bytes. -EIO when OpenSSL fails. */
int password_hash(const char *password, char ret[PASSWORD_HASH_MAX]);
/* True when `hash` has the form above. */
bool password_hash_valid(const char *hash);
/* 1 on a match, 0 otherwise (also for a malformed hash); the comparison is constant-time. */
int password_verify(const char *password, const char *hash);
/* n random bytes from the kernel. */
int random_bytes(void *p, size_t n);
