/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdbool.h>
#include <stdlib.h>

#include "vectors.h"

json_t *vectors_load(void) {
        json_error_t error;
        const char *path;
        json_t *v;

        path = getenv("IMMOD_TEST_VECTORS");
        if (!path || !*path)
                fail_msg("IMMOD_TEST_VECTORS is not set; run the tests through 'meson test' "
                         "or set it to the path of tests/test-vectors.json");

        v = json_load_file(path, JSON_REJECT_DUPLICATES, &error);
        if (!v)
                fail_msg("Failed to load test vectors from %s (IMMOD_TEST_VECTORS), line %d: %s", path,
                         error.line, error.text);
        if (!json_is_object(v))
                fail_msg("Test vectors %s: the top level is not a JSON object", path);

        return v;
}

json_t *vectors_array(json_t *vectors, const char *name) {
        json_t *a = json_object_get(vectors, name);

        if (!json_is_array(a) || json_array_size(a) == 0)
                fail_msg("Test vectors: \"%s\" is missing or not a non-empty array", name);
        return a;
}

const char *vector_string(json_t *entry, const char *key) {
        json_t *s = json_object_get(entry, key);

        if (!json_is_string(s))
                fail_msg("Test vectors: an entry has no string \"%s\"", key);
        return json_string_value(s);
}

long long vector_integer(json_t *entry, const char *key) {
        json_t *i = json_object_get(entry, key);

        if (!json_is_integer(i))
                fail_msg("Test vectors: an entry has no integer \"%s\"", key);
        return json_integer_value(i);
}

bool vector_bool(json_t *entry, const char *key) {
        json_t *b = json_object_get(entry, key);

        if (!json_is_boolean(b))
                fail_msg("Test vectors: an entry has no boolean \"%s\"", key);
        return json_is_true(b);
}
