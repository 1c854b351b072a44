/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The control socket (--control PATH): what a person does at the car. A Unix stream socket;
 * one command per line, one JSON object per answer line. `events` turns a connection into
 * a stream of beeps and key events. See immo-ecusim --help for the commands.
 */

#include "ecu.h"

#define CONTROL_LINE_MAX 256
#define CONTROL_MAX_CLIENTS 8
#define CONTROL_OUT_MAX (64 * 1024) /* unread answers kept for a client before it is dropped */

int control_new(Ecu *ecu, const char *path, Control **ret);
Control *control_free(Control *c);
/* One line (without newline) to every connection that follows events. */
void control_broadcast(Control *c, const char *line);
