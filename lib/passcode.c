/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "hex.h"
#include "log.h"
#include "passcode.h"
#include "vin.h"

#define VIN_KEY_LABEL "immod/vin-key/v1:"
#define IMMOBILIZER_LABEL "immod/immobilizer-reset/v1:"
#define SMART_CODE_LABEL "immod/smart-code/v1:"

static void EVP_MAC_freep(EVP_MAC **p) {
        EVP_MAC_free(*p);
}

static void EVP_MAC_CTX_freep(EVP_MAC_CTX **p) {
        EVP_MAC_CTX_free(*p);
}

/* HMAC-SHA256 over a || b: the one place OpenSSL is called, its failures become -EIO. */
static int hmac_sha256(const uint8_t key[PASSCODE_KEY_SIZE], const void *a, size_t a_len, const void *b,
                       size_t b_len, uint8_t ret[32]) {
        _cleanup_(EVP_MAC_freep) EVP_MAC *mac = NULL;
        _cleanup_(EVP_MAC_CTX_freep) EVP_MAC_CTX *ctx = NULL;
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0),
                OSSL_PARAM_construct_end(),
        };
        uint8_t md[32];
        size_t md_len = 0;

        mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        if (!mac)
                return -EIO;

        ctx = EVP_MAC_CTX_new(mac);
        if (!ctx)
                return -ENOMEM;

        if (EVP_MAC_init(ctx, key, PASSCODE_KEY_SIZE, params) != 1 ||
            EVP_MAC_update(ctx, a, a_len) != 1 ||
            EVP_MAC_update(ctx, b, b_len) != 1 ||
            EVP_MAC_final(ctx, md, &md_len, sizeof(md)) != 1 ||
            md_len != sizeof(md)) {
                OPENSSL_cleanse(md, sizeof(md));
                return -EIO;
        }

        memcpy(ret, md, sizeof(md));
        OPENSSL_cleanse(md, sizeof(md));
        return 0;
}

int passcode_vin_key(const uint8_t master[32], const char *vin, uint8_t ret_kvin[32]) {
        if (!master || !ret_kvin || vin_check_syntax(vin, NULL) < 0)
                return -EINVAL;

        return hmac_sha256(master, VIN_KEY_LABEL, strlen(VIN_KEY_LABEL), vin, VIN_LEN, ret_kvin);
}

int passcode_immobilizer(const uint8_t kvin[32], const uint8_t seed[48], char ret[7]) {
        uint8_t h[32];
        uint32_t v;
        unsigned offset;
        int r;

        if (!kvin || !seed || !ret)
                return -EINVAL;

        r = hmac_sha256(kvin, IMMOBILIZER_LABEL, strlen(IMMOBILIZER_LABEL), seed, PASSCODE_SEED_SIZE, h);
        if (r < 0)
                return r;

        /* RFC 4226 5.3 dynamic truncation; offset <= 15, so h[offset + 3] is within h */
        offset = h[31] & 0x0f;
        v = be32(h + offset) & 0x7fffffff;
        OPENSSL_cleanse(h, sizeof(h));

        snprintf(ret, PASSCODE_IMMOBILIZER_LEN + 1, "%06u", (unsigned) (v % 1000000));
        return 0;
}

/* Copies a field of exactly len hex digits, uppercased, into ret (len + 1 chars). */
static int field_upper(const char *s, size_t len, char *ret) {
        if (!s || strnlen(s, len + 1) != len || !is_hex_string(s))
                return -EINVAL;

        for (size_t i = 0; i < len; i++)
                ret[i] = (s[i] >= 'a' && s[i] <= 'f') ? (char) (s[i] - 'a' + 'A') : s[i];
        ret[len] = '\0';
        return 0;
}

int passcode_smart_code(const uint8_t kvin[32], const char *vin, const char *data1, const char *data2,
                        const char *data3, char ret[13]) {
        char d1[PASSCODE_DATA1_LEN + 1], d2[PASSCODE_DATA2_LEN + 1], d3[PASSCODE_DATA3_LEN + 1];
        char msg[VIN_LEN + 1 + PASSCODE_DATA1_LEN + 1 + PASSCODE_DATA2_LEN + 1 + PASSCODE_DATA3_LEN + 1];
        uint8_t h[32];
        int r, l;

        if (!kvin || !ret || vin_check_syntax(vin, NULL) < 0)
                return -EINVAL;

        if (field_upper(data1, PASSCODE_DATA1_LEN, d1) < 0 ||
            field_upper(data2, PASSCODE_DATA2_LEN, d2) < 0 ||
            field_upper(data3, PASSCODE_DATA3_LEN, d3) < 0)
                return -EINVAL;

        l = snprintf(msg, sizeof(msg), "%s:%s:%s:%s", vin, d1, d2, d3);
        if (l < 0 || (size_t) l != sizeof(msg) - 1)
                return -EINVAL;

        r = hmac_sha256(kvin, SMART_CODE_LABEL, strlen(SMART_CODE_LABEL), msg, (size_t) l, h);
        if (r < 0)
                return r;

        hex_encode(h, PASSCODE_SMART_CODE_LEN / 2, true, ret);
        OPENSSL_cleanse(h, sizeof(h));
        return 0;
}

/* Messages name the offending character; they are built here, hence per thread. */
static _Thread_local char reason_buf[192];

/* How a byte is named in a message: always ASCII, so a D-Bus error can carry it. */
static void describe_char(char c, char buf[static 32]) {
        unsigned char u = (unsigned char) c;

        if (u >= 0x80)
                snprintf(buf, 32, "a non-ASCII character");
        else if (u < 0x20 || u == 0x7f)
                snprintf(buf, 32, "control character 0x%02X", u);
        else
                snprintf(buf, 32, "'%c'", c);
}

static bool is_ascii_space(char c) {
        return c != '\0' && strchr(" \t\n\r\v\f", c);
}

/* The length in bytes of the white space at s (a NUL-terminated string), 0 if none. */
static size_t white_space_len(const char *s) {
        if (is_ascii_space(*s))
                return 1;
        /* U+00A0, the no-break space that web pages and PDFs put into copied text */
        if ((unsigned char) s[0] == 0xc2 && (unsigned char) s[1] == 0xa0)
                return 2;
        return 0;
}

int passcode_normalize(PasscodeKind kind, const char *input, char *ret, size_t n, const char **ret_reason) {
        char out[PASSCODE_SMART_CODE_LEN + 1], what[32];
        const char *form;
        size_t want, len = 0;
        bool hex;

        switch (kind) {
        case PASSCODE_IMMOBILIZER:
                form = "an immobilizer passcode is 6 digits (0-9)";
                want = PASSCODE_IMMOBILIZER_LEN;
                hex = false;
                break;
        case PASSCODE_SMART_CODE:
                form = "a smart-code passcode is 12 hex digits (0-9, A-F)";
                want = PASSCODE_SMART_CODE_LEN;
                hex = true;
                break;
        default:
                return -EINVAL;
        }

        if (!ret || n < want + 1)
                return -ENOBUFS;

        if (!input)
                input = "";

        /* Bounded so a pasted document is refused without being walked through. */
        if (strnlen(input, PASSCODE_INPUT_MAX + 1) > PASSCODE_INPUT_MAX) {
                snprintf(reason_buf, sizeof(reason_buf), "%s, got more than %d characters", form,
                         PASSCODE_INPUT_MAX);
                goto invalid;
        }

        for (const char *p = input; *p;) {
                size_t ws = white_space_len(p);
                char c = *p;

                if (ws > 0) {
                        p += ws;
                        continue;
                }

                if (!(c >= '0' && c <= '9') && !(hex && unhexchar(c) >= 0)) {
                        describe_char(c, what);
                        snprintf(reason_buf, sizeof(reason_buf), "%s, %s is not one", form, what);
                        goto invalid;
                }

                /* counted past want, so the message can say how many there were */
                if (len < want)
                        out[len] = (c >= 'a' && c <= 'f') ? (char) (c - 'a' + 'A') : c;
                len++;
                p++;
        }

        if (len != want) {
                snprintf(reason_buf, sizeof(reason_buf), "%s, got %zu", form, len);
                goto invalid;
        }

        out[want] = '\0';
        memcpy(ret, out, want + 1);
        return 0;

invalid:
        if (ret_reason)
                *ret_reason = reason_buf;
        return -EINVAL;
}

int passcode_read_master_key(const char *path, uint8_t ret[32]) {
        _cleanup_close_ int fd = -1;
        char buf[PASSCODE_MASTER_KEY_FILE_MAX + 1], digits[2 * PASSCODE_KEY_SIZE + 1], what[32];
        uint8_t key[PASSCODE_KEY_SIZE];
        size_t size = 0, n_digits = 0;
        struct stat st;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return log_error_errno(errno, "Failed to open master key file %s: %m", path);

        if (fstat(fd, &st) < 0)
                return log_error_errno(errno, "Failed to stat master key file %s: %m", path);
        if (!S_ISREG(st.st_mode))
                return log_error_errno(EINVAL, "Master key file %s is not a regular file.", path);
        if (st.st_mode & (S_IROTH | S_IWOTH))
                log_warning("Master key file %s is accessible to other users, it should be mode 0600 or 0640.",
                            path);

        /* Read one byte past the limit rather than trust st_size: the file may be growing. */
        while (size < sizeof(buf)) {
                ssize_t l = read(fd, buf + size, sizeof(buf) - size);

                if (l < 0) {
                        if (errno == EINTR)
                                continue;
                        r = log_error_errno(errno, "Failed to read master key file %s: %m", path);
                        goto finish;
                }
                if (l == 0)
                        break;
                size += (size_t) l;
        }

        if (size > PASSCODE_MASTER_KEY_FILE_MAX) {
                r = log_error_errno(EINVAL, "Master key file %s is larger than %d bytes, "
                                            "it should hold 64 hex digits.",
                                    path, PASSCODE_MASTER_KEY_FILE_MAX);
                goto finish;
        }

        for (size_t i = 0; i < size; i++) {
                if (is_ascii_space(buf[i]))
                        continue;

                if (unhexchar(buf[i]) < 0) {
                        describe_char(buf[i], what);
                        r = log_error_errno(EINVAL, "Master key file %s: %s at byte %zu is not a hex digit, "
                                                    "the file must hold 64 hex digits (white space is ignored).",
                                            path, what, i + 1);
                        goto finish;
                }

                if (n_digits < 2 * PASSCODE_KEY_SIZE)
                        digits[n_digits] = buf[i];
                n_digits++;
        }

        if (n_digits != 2 * PASSCODE_KEY_SIZE) {
                r = log_error_errno(EINVAL, "Master key file %s holds %zu hex digits, expected 64 (a 32-byte key).",
                                    path, n_digits);
                goto finish;
        }

        digits[2 * PASSCODE_KEY_SIZE] = '\0';
        r = hex_decode(digits, key, sizeof(key));
        if (r < 0) {
                /* cannot happen: every digit was checked above */
                log_error_errno(r, "Master key file %s could not be decoded.", path);
                goto finish;
        }

        memcpy(ret, key, sizeof(key));
        r = 0;

finish:
        explicit_bzero(buf, sizeof(buf));
        explicit_bzero(digits, sizeof(digits));
        explicit_bzero(key, sizeof(key));
        return r;
}

int sha256(const void *data, size_t size, uint8_t ret[32]) {
        unsigned len = 0;

        if (EVP_Digest(data, size, ret, &len, EVP_sha256(), NULL) != 1 || len != 32)
                return -EIO;
        return 0;
}
