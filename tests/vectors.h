/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The known answers of test-vectors.json, for cmocka tests. The file is named by
 * $IMMOD_TEST_VECTORS (meson test sets it); every accessor fails the running test with
 * a clear message instead of returning something missing.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

/* The whole document; the caller owns the reference. */
json_t *vectors_load(void);

/* vectors[name], which must be a non-empty array. */
json_t *vectors_array(json_t *vectors, const char *name);

/* entry[key], which must be a string. */
const char *vector_string(json_t *entry, const char *key);

/* entry[key], which must be an integer. */
long long vector_integer(json_t *entry, const char *key);

/* entry[key], which must be true or false. */
bool vector_bool(json_t *entry, const char *key);
