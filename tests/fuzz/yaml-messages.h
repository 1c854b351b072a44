/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shared by test-yaml-messages*.c: a bad file and what its refusal must say. Each message
 * is printed, for a person to read in the test log, and must name the file, the line and
 * the column ("fuzz.yaml:LINE:COLUMN: ") and say what was expected.
 */

#include "fuzz-yaml.h"

typedef struct BadYaml {
        const char *text;
        const char *position;    /* "LINE:COLUMN" */
        const char *expectation; /* words the message must hold */
} BadYaml;

/* Checks one refusal; false (with the reason printed) when it falls short. */
static inline bool yaml_message_check(const BadYaml *b, int r, const char *msg) {
        char prefix[64];

        /* the file on one line, its line breaks as "\n" */
        printf("  ");
        for (const char *p = b->text; *p; p++)
                printf(*p == '\n' ? "\\n" : (*p == '\t' ? "\\t" : "%c"), *p);
        printf("\n    -> %s\n", msg);
        snprintf(prefix, sizeof(prefix), FUZZ_YAML_NAME ":%s: ", b->position);
        if (r != -EINVAL) {
                printf("    FAILED: accepted or not -EINVAL (%d)\n", r);
                return false;
        }
        if (!fuzz_yaml_message_ok(msg) || strncmp(msg, prefix, strlen(prefix)) != 0) {
                printf("    FAILED: does not start with \"%s\"\n", prefix);
                return false;
        }
        if (!strstr(msg, b->expectation)) {
                printf("    FAILED: does not say \"%s\"\n", b->expectation);
                return false;
        }
        return true;
}
