/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Reading the D-Bus arguments that callers send: dictionaries of options, each value of the
 * expected type and bounded, with errors (InvalidArgs) that say what is expected. */

#include <systemd/sd-bus.h>

#include "util.h"

#define CREDENTIAL_USER_MAX 64U /* user names, manager ids, the technician */
#define CREDENTIAL_PASSWORD_MAX 256U
#define APPROVERS_MAX 16U
#define DEALER_CODE_MAX 32U

/* Printable ASCII of at most max characters: safe to quote in an error message. */
bool string_is_plain(const char *s, size_t max);

/* Reads an a{sv} argument, handing each entry's key to `reader`, which reads the variant. */
typedef int (*DictEntryReader)(sd_bus_message *msg, const char *key, void *userdata, sd_bus_error *error);
int read_dict(sd_bus_message *msg, DictEntryReader reader, void *userdata, sd_bus_error *error);
/* Reads one option's variant, which must hold `type`. */
int read_option(sd_bus_message *msg, const char *key, const char *type, void *ret, sd_bus_error *error);
/* Reads one string option: given once, text of at most JOURNAL_TEXT_MAX bytes. */
int read_string_option(sd_bus_message *msg, const char *key, const char **ret, sd_bus_error *error);
