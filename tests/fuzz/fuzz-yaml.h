/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shared by the YAML fuzz targets: the input is one file's text, and a refusal must say
 * where and what, the way yaml-doc.h promises.
 */

#include <string.h>

#include "fuzz.h"
#include "log.h"

#define FUZZ_YAML_NAME "fuzz.yaml"

/* The readers log every refusal; a fuzzer makes millions. */
static inline void fuzz_yaml_quiet(void) {
        static bool done = false;

        if (!done) {
                log_set_max_level(LOG_CRIT);
                done = true;
        }
}

/*
 * A refusal is one non-empty sentence "fuzz.yaml:LINE:COLUMN: ..." (or "fuzz.yaml: ..." for
 * what has no place, e.g. the size) without control characters, so that it reads on one line
 * of a log or a D-Bus error.
 */
static inline bool fuzz_yaml_message_ok(const char *msg) {
        size_t l = strlen(FUZZ_YAML_NAME), k;

        if (strncmp(msg, FUZZ_YAML_NAME ":", l + 1) != 0)
                return false;
        k = l + 1;
        if (msg[k] >= '1' && msg[k] <= '9') {
                k += strspn(msg + k, "0123456789");
                if (msg[k] != ':' || msg[k + 1] < '1' || msg[k + 1] > '9') /* the column */
                        return false;
                k++;
                k += strspn(msg + k, "0123456789");
                if (msg[k] != ':')
                        return false;
                k++;
        }
        if (msg[k] != ' ' || msg[k + 1] == 0)
                return false;
        for (const char *p = msg; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

static inline void fuzz_yaml_check_message(const char *msg) {
        if (!fuzz_yaml_message_ok(msg)) {
                fprintf(stderr, "message: ");
                for (const char *p = msg; *p; p++)
                        fprintf(stderr, (unsigned char) *p < 0x20 || *p == 0x7f ? "\\x%02x" : "%c",
                                (unsigned char) *p);
                fprintf(stderr, "\n");
        }
        FUZZ_CHECK(fuzz_yaml_message_ok(msg));
}
