/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The monthly vehicle security transaction report of a dealer (JSON and CSV) and the
 * NICB export, both made from the transaction log; the server and the admin command
 * share them.
 */

#include <jansson.h>

#include "config.h"
#include "db.h"

/* "YYYY-MM" into the month's first second and the next month's first second, UTC. */
int month_parse(const char *s, int64_t *ret_from, int64_t *ret_to);
/* ISO 8601 UTC, e.g. 2026-11-21T22:00:00Z. */
void format_time(int64_t t, char buf[32]);

/* dealer NULL: every dealer (the NICB export). Exactly one of ret_json and ret_csv. */
int report_build(Db *db, const ServerConfig *c, const char *dealer, const char *month, json_t **ret_json,
                 char **ret_csv);
