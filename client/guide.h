/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Following a procedure to its end: each step shown as the bulletins' screens, the answers
 * asked for (or taken from the options with --no-ask), the reset's progress, the key
 * touches, the erasure's countdown and the problems shown live. Everything comes from the
 * Procedure's and the Manager's properties and signals, so the guide can take over a
 * procedure started elsewhere ("attach").
 */

#include "immoctl.h"

/*
 * Follows the procedure at path until it ends or the person stops following it (Ctrl-C, a
 * closed terminal: the procedure goes on). Returns an exit status.
 */
int guide_procedure(Context *c, const char *path);
