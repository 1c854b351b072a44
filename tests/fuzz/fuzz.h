/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shared by the fuzz targets: reading the fuzz input as a stream of small decisions, and
 * checking invariants. A target is built either with libFuzzer (clang, -fsanitize=fuzzer)
 * or with replay-main.c, which runs every file of its seed corpus (a normal build).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant the code under test promises: a failure is a bug, and the input a crasher. */
#define FUZZ_CHECK(x)                                                                          \
        do {                                                                                   \
                if (!(x)) {                                                                    \
                        fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, \
                                #x);                                                           \
                        abort();                                                               \
                }                                                                              \
        } while (0)

typedef struct FuzzInput {
        const uint8_t *p;
        size_t n;
} FuzzInput;

static inline bool fuzz_eof(const FuzzInput *in) {
        return in->n == 0;
}

/* Past the end every read gives zeros, so a short input is still a valid program. */
static inline uint8_t fuzz_u8(FuzzInput *in) {
        if (in->n == 0)
                return 0;
        in->n--;
        return *in->p++;
}

static inline uint16_t fuzz_u16(FuzzInput *in) {
        uint16_t hi = fuzz_u8(in);
        return (uint16_t) (hi << 8 | fuzz_u8(in));
}

static inline bool fuzz_bool(FuzzInput *in) {
        return fuzz_u8(in) & 1;
}

/* Fills buf with the next n bytes (zeros past the end). */
static inline void fuzz_bytes(FuzzInput *in, uint8_t *buf, size_t n) {
        for (size_t i = 0; i < n; i++)
                buf[i] = fuzz_u8(in);
}

/* A reproducible message body, so big messages cost two bytes of input. */
static inline void fuzz_pattern(uint8_t *buf, size_t n, uint8_t seed) {
        uint32_t x = 0x9e3779b9u * (seed + 1u);

        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf[i] = (uint8_t) x;
        }
}
