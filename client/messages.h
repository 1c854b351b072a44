/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The sentences for immod's errors and problems, shared with the web page: generated from
 * data/messages.json into messages-table.c. */

#include <stddef.h>

typedef struct ErrorInfo {
        const char *name;
        int status;       /* IMMOCTL_EXIT_* */
        const char *what; /* a phrase for people */
        const char *hint; /* what to do, a sentence; NULL when immod's message says it all */
} ErrorInfo;

typedef struct ProblemInfo {
        const char *id; /* a word of the Manager's Problems */
        const char *advice;
} ProblemInfo;

extern const ErrorInfo error_table[];
extern const size_t error_table_size;
extern const ProblemInfo problem_table[];
extern const size_t problem_table_size;
