/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Output for people (aligned "Label: value" lines) and for programs (one JSON value per
 * line, so that a list can be read a line per item). */

#include <jansson.h>
#include <stdio.h>

#include "util.h"

/* One JSON value on one line of stdout, flushed. */
int output_json_line(json_t *j);

/* "      Label: value" with the labels right-aligned, as hostnamectl prints them. */
void output_field(const char *label, const char *format, ...) _printf_(2, 3);
/* A continuation line under the last field. */
void output_continuation(const char *format, ...) _printf_(1, 2);

/* A JSON value for people: strings as they are, arrays joined with ", ", null as "-".
 * Returns a new string, NULL when out of memory. */
char *output_value_to_text(json_t *j);

/* What a Problems id asks the person at the car to do; NULL for an id unknown here. */
const char *problem_advice(const char *id);

/* Convenience accessors of JSON objects: NULL, or 0, when the key is missing or of
 * another type. */
const char *json_get_string(json_t *object, const char *key);
bool json_get_uint(json_t *object, const char *key, unsigned long long *ret);
