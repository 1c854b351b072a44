/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The passcode service login (user and password), asked once per run, held in memory only
 * and passed to immod's calls as the credentials dictionary. */

#include <systemd/sd-bus.h>

#include "immoctl.h"

/*
 * Makes sure c->user and c->password are known: from --user and --password-file, or asked
 * (the password without echo). Returns 0, an exit status > 0 (with the reason logged), or
 * -ECANCELED when the person stopped.
 */
int credentials_get(Context *c);

/* Forgets the password, e.g. after the service refused it, so that it is asked again. */
void credentials_forget(Context *c);

/* Appends the credentials dictionary (a{sv}: user, password) to m. */
int credentials_append(Context *c, sd_bus_message *m);
