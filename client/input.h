/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the person at the keyboard types: whole lines, taken without blocking so that the
 * procedure can be followed meanwhile, and a password read without echo. */

#include <stdbool.h>
#include <stddef.h>

#define INPUT_LINE_MAX 1024 /* longer lines are refused, not cut */

typedef struct Input {
        int fd;
        char buf[INPUT_LINE_MAX + 1];
        size_t len;
        bool eof;
        bool overlong; /* dropping the rest of a line that did not fit */
} Input;

#define INPUT_INIT \
        { .fd = 0 }

/*
 * Moves one complete line (without its newline, trailing white space removed) into ret:
 * 1 when there was one, 0 when none is complete yet, -E2BIG for a line longer than
 * INPUT_LINE_MAX (dropped), -EPIPE at the end of input.
 */
int input_take_line(Input *in, char *ret, size_t size);

/* Reads what the fd has (call it when poll() says POLLIN). */
int input_fill(Input *in);

/* Turns echo off (or back on) when fd is a terminal; returns whether it changed anything. */
bool input_set_echo(int fd, bool on);

/* Whether line equals the confirmation wanted, ignoring case and surrounding blanks. */
bool input_is_confirmation(const char *line, const char *wanted);

/* Wipes and frees a secret. */
void erase_and_free(char *secret);
