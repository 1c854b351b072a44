/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <sys/random.h>

#include "hex.h"
#include "password.h"
#include "parse-util.h"

#define PBKDF2_ITERATIONS 60000U
#define SALT_SIZE 16
#define HASH_SIZE 32

int random_bytes(void *p, size_t n) {
        uint8_t *q = p;

        while (n > 0) {
                ssize_t k = getrandom(q, n, 0);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                q += k;
                n -= (size_t) k;
        }
        return 0;
}

static int pbkdf2(const char *password, const uint8_t *salt, unsigned iterations, uint8_t out[HASH_SIZE]) {
        if (PKCS5_PBKDF2_HMAC(password, (int) strlen(password), salt, SALT_SIZE, (int) iterations, EVP_sha256(),
                              HASH_SIZE, out) != 1)
                return -EIO;
        return 0;
}

int password_hash(const char *password, char ret[PASSWORD_HASH_MAX]) {
        uint8_t salt[SALT_SIZE], h[HASH_SIZE];
        char salt_hex[2 * SALT_SIZE + 1], h_hex[2 * HASH_SIZE + 1];
        int r;

        if (strlen(password) > PASSWORD_MAX)
                return -EINVAL;
        r = random_bytes(salt, sizeof salt);
        if (r < 0)
                return r;
        r = pbkdf2(password, salt, PBKDF2_ITERATIONS, h);
        if (r < 0)
                return r;
        hex_encode(salt, sizeof salt, false, salt_hex);
        hex_encode(h, sizeof h, false, h_hex);
        snprintf(ret, PASSWORD_HASH_MAX, "pbkdf2-sha256$%u$%s$%s", PBKDF2_ITERATIONS, salt_hex, h_hex);
        OPENSSL_cleanse(h, sizeof h);
        return 0;
}

static int password_hash_split(const char *hash, unsigned *ret_iter, uint8_t salt[SALT_SIZE], uint8_t h[HASH_SIZE]) {
        const char *p = startswith(hash, "pbkdf2-sha256$");
        char iter[16], salt_hex[2 * SALT_SIZE + 1], h_hex[2 * HASH_SIZE + 1];
        const char *d1, *d2;

        if (!p)
                return -EINVAL;
        d1 = strchr(p, '$');
        if (!d1 || (size_t) (d1 - p) >= sizeof iter)
                return -EINVAL;
        d2 = strchr(d1 + 1, '$');
        if (!d2 || (size_t) (d2 - d1 - 1) != 2 * SALT_SIZE || strlen(d2 + 1) != 2 * HASH_SIZE)
                return -EINVAL;
        memcpy(iter, p, (size_t) (d1 - p));
        iter[d1 - p] = 0;
        memcpy(salt_hex, d1 + 1, 2 * SALT_SIZE);
        salt_hex[2 * SALT_SIZE] = 0;
        strcpy(h_hex, d2 + 1);
        if (parse_unsigned_range(iter, 1000, 10000000, ret_iter) < 0)
                return -EINVAL;
        if (hex_decode(salt_hex, salt, SALT_SIZE) < 0 || hex_decode(h_hex, h, HASH_SIZE) < 0)
                return -EINVAL;
        return 0;
}

bool password_hash_valid(const char *hash) {
        uint8_t salt[SALT_SIZE], h[HASH_SIZE];
        unsigned iter;

        return password_hash_split(hash, &iter, salt, h) >= 0;
}

int password_verify(const char *password, const char *hash) {
        uint8_t salt[SALT_SIZE], want[HASH_SIZE], got[HASH_SIZE];
        unsigned iter;
        int r;

        if (strlen(password) > PASSWORD_MAX)
                return 0;
        if (password_hash_split(hash, &iter, salt, want) < 0)
                return 0;
        r = pbkdf2(password, salt, iter, got);
        if (r < 0)
                return r;
        r = CRYPTO_memcmp(want, got, HASH_SIZE) == 0;
        OPENSSL_cleanse(got, sizeof got);
        return r;
}
