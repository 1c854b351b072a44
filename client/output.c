/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>

#include "messages.h"
#include "output.h"

#define LABEL_WIDTH 12

int output_json_line(json_t *j) {
        /* 15 significant digits: 13.8 V stays 13.8, not 13.800000000000001 */
        if (json_dumpf(j, stdout, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15)) < 0)
                return -EIO;
        fputc('\n', stdout);
        return fflush(stdout) == 0 ? 0 : -errno;
}

void output_field(const char *label, const char *format, ...) {
        va_list ap;

        printf("%*s: ", LABEL_WIDTH, label);
        va_start(ap, format);
        vprintf(format, ap);
        va_end(ap);
        fputc('\n', stdout);
}

void output_continuation(const char *format, ...) {
        va_list ap;

        printf("%*s  ", LABEL_WIDTH, "");
        va_start(ap, format);
        vprintf(format, ap);
        va_end(ap);
        fputc('\n', stdout);
}

char *output_value_to_text(json_t *j) {
        if (!j || json_is_null(j))
                return strdup("-");
        if (json_is_string(j))
                return strdup(json_string_value(j));
        if (json_is_true(j))
                return strdup("yes");
        if (json_is_false(j))
                return strdup("no");
        if (json_is_array(j)) {
                char *s = NULL;
                size_t size = 0;
                FILE *f = open_memstream(&s, &size);
                size_t i;
                json_t *item;

                if (!f)
                        return NULL;
                json_array_foreach(j, i, item) {
                        _cleanup_free_ char *t = output_value_to_text(item);
                        fprintf(f, "%s%s", i > 0 ? ", " : "", t ?: "?");
                }
                if (fclose(f) != 0) {
                        free(s);
                        return NULL;
                }
                return s;
        }
        return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}


const char *problem_advice(const char *id) {
        for (size_t i = 0; i < problem_table_size; i++)
                if (streq(problem_table[i].id, id))
                        return problem_table[i].advice;
        return NULL;
}

const char *json_get_string(json_t *object, const char *key) {
        return json_string_value(json_object_get(object, key));
}

bool json_get_uint(json_t *object, const char *key, unsigned long long *ret) {
        json_t *v = json_object_get(object, key);

        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return false;
        *ret = (unsigned long long) json_integer_value(v);
        return true;
}
