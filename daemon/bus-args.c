/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "bus-args.h"
#include "bus-error.h"
#include "journal.h"
#include "manager.h"

bool string_is_plain(const char *s, size_t max) {
        size_t n = 0;
        for (; *s; s++, n++)
                if (n >= max || *s < 0x20 || *s > 0x7e)
                        return false;
        return true;
}

/* Reads one option's variant, which must hold `type`. */
/* Reads an a{sv} argument, handing each entry's key to `reader`, which reads the variant
 * (or refuses the key with an InvalidArgs error). */

int read_dict(sd_bus_message *msg, DictEntryReader reader, void *userdata, sd_bus_error *error) {
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        return r;
                r = reader(msg, key, userdata, error);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(msg);
}

int read_option(sd_bus_message *msg, const char *key, const char *type, void *ret, sd_bus_error *error) {
        const char *contents;
        int r;

        r = sd_bus_message_peek_type(msg, NULL, &contents);
        if (r < 0)
                return r;
        if (!streq(contents, type))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option \"%s\" must be of type %s.", key,
                                         type);
        return sd_bus_message_read(msg, "v", type, ret);
}

/* Reads one string option. */
int read_string_option(sd_bus_message *msg, const char *key, const char **ret, sd_bus_error *error) {
        int r;

        if (*ret)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option \"%s\" given twice.", key);
        r = read_option(msg, key, "s", ret, error);
        if (r < 0)
                return r;
        if (!journal_text_valid(*ret, JOURNAL_TEXT_MAX))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Option \"%s\" must be at most %u bytes of text without control characters.",
                                         key, JOURNAL_TEXT_MAX);
        return 0;
}

/* The passcode service */


static int read_credential(sd_bus_message *msg, const char *key, void *userdata, sd_bus_error *error) {
        PasscodeCredentials *c = userdata;
        const char **dest;

        if (streq(key, "user"))
                dest = &c->user;
        else if (streq(key, "password"))
                dest = &c->password;
        else
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown credential; \"user\" s and \"password\" s are expected.");
        if (*dest)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Credential \"%s\" given twice.", key);
        return read_option(msg, key, "s", dest, error);
}

int manager_read_credentials(sd_bus_message *msg, PasscodeCredentials *ret, sd_bus_error *error) {
        PasscodeCredentials c = {};
        int r;

        r = read_dict(msg, read_credential, &c, error);
        if (r < 0)
                return r;

        if (!c.user || !c.password)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "The credentials need \"user\" s and \"password\" s.");
        if (!c.user[0] || !string_is_plain(c.user, CREDENTIAL_USER_MAX))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "The user name must be 1 to %u printable ASCII characters.", CREDENTIAL_USER_MAX);
        size_t n = strnlen(c.password, CREDENTIAL_PASSWORD_MAX + 1);
        if (n == 0 || n > CREDENTIAL_PASSWORD_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "The password must be 1 to %u bytes.",
                                         CREDENTIAL_PASSWORD_MAX);
        *ret = c;
        return 0;
}
