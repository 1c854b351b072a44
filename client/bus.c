/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "bus.h"
#include "log.h"
#include "messages.h"

int bus_parse_transport(const char *s, BusTransport *ret_transport, const char **ret_address) {
        if (streq(s, "system")) {
                *ret_transport = BUS_TRANSPORT_SYSTEM;
                *ret_address = NULL;
        } else if (streq(s, "session") || streq(s, "user")) {
                *ret_transport = BUS_TRANSPORT_SESSION;
                *ret_address = NULL;
        } else if (strchr(s, ':') && strchr(s, '=')) {
                /* A D-Bus address always names a transport and a key: "unix:path=..." */
                *ret_transport = BUS_TRANSPORT_ADDRESS;
                *ret_address = s;
        } else
                return -EINVAL;
        return 0;
}

int bus_connect(BusTransport transport, const char *arg, sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        switch (transport) {
        case BUS_TRANSPORT_SYSTEM:
                r = sd_bus_open_system(&bus);
                if (r < 0)
                        return log_error_errno(r, "Failed to connect to the system bus: %m");
                break;
        case BUS_TRANSPORT_SESSION:
                r = sd_bus_open_user(&bus);
                if (r < 0)
                        return log_error_errno(r, "Failed to connect to the session bus: %m");
                break;
        case BUS_TRANSPORT_REMOTE:
                r = sd_bus_open_system_remote(&bus, arg);
                if (r < 0)
                        return log_error_errno(r, "Failed to connect to the system bus of %s over SSH: %m", arg);
                break;
        case BUS_TRANSPORT_ADDRESS:
                r = sd_bus_new(&bus);
                if (r < 0)
                        return log_error_errno(r, "Failed to allocate a bus connection: %m");
                r = sd_bus_set_address(bus, arg);
                if (r < 0)
                        return log_error_errno(r, "Invalid bus address \"%s\": %m", arg);
                r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
                if (r < 0)
                        return log_error_errno(r, "Failed to connect to the bus at %s: %m", arg);
                break;
        default:
                return -EINVAL;
        }

        *ret = TAKE_PTR(bus);
        return 0;
}


static const ErrorInfo *error_info(const sd_bus_error *error) {
        if (!error || !sd_bus_error_is_set(error))
                return NULL;
        for (size_t i = 0; i < error_table_size; i++)
                if (sd_bus_error_has_name(error, error_table[i].name))
                        return error_table + i;
        return NULL;
}

int bus_error_exit_status(const sd_bus_error *error, int r) {
        const ErrorInfo *info = error_info(error);

        if (info)
                return info->status;
        if (error && sd_bus_error_is_set(error) && startswith(error->name, IMMOD_ERROR_PREFIX))
                return IMMOCTL_EXIT_REFUSED; /* a refusal added to the API after this immoctl */
        if (r == -EACCES || r == -EPERM)
                return IMMOCTL_EXIT_REFUSED;
        return IMMOCTL_EXIT_FAILURE;
}

int bus_log_error(const sd_bus_error *error, int r, const char *action) {
        const ErrorInfo *info = error_info(error);
        const char *message = error && sd_bus_error_is_set(error) ? error->message : NULL;

        /* immod's message often starts with what the table says: say it once */
        if (info && message && *message && strncasecmp(message, info->what, strlen(info->what)) != 0)
                log_error("Cannot %s: %s: %s", action, info->what, message);
        else if (message && *message)
                log_error("Cannot %s: %s", action, message);
        else if (info)
                log_error("Cannot %s: %s.", action, info->what);
        else if (error && sd_bus_error_is_set(error))
                log_error("Cannot %s: %s.", action, error->name);
        else
                log_error_errno(r, "Cannot %s: %m", action);

        if (info && info->hint)
                log_error("%s", info->hint);

        return bus_error_exit_status(error, r);
}

int bus_call_manager(sd_bus *bus, const char *method, const char *action, sd_bus_message **ret_reply,
                     const char *types, ...) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        va_list ap;
        int r;

        va_start(ap, types);
        r = sd_bus_call_methodv(bus, IMMOD_BUS_NAME, IMMOD_MANAGER_PATH, IMMOD_MANAGER_INTERFACE, method, &error,
                                ret_reply, types, ap);
        va_end(ap);
        if (r < 0)
                return bus_log_error(&error, r, action);
        return 0;
}

static int json_set_new(json_t *object, const char *key, json_t *value) {
        if (!value || json_object_set_new(object, key, value) < 0)
                return -ENOMEM;
        return 0;
}

static int read_basic(sd_bus_message *m, char type, json_t **ret) {
        union {
                uint8_t u8;
                int i;
                int16_t i16;
                uint16_t u16;
                int32_t i32;
                uint32_t u32;
                int64_t i64;
                uint64_t u64;
                double d;
                const char *s;
        } v;
        json_t *j;
        int r;

        r = sd_bus_message_read_basic(m, type, &v);
        if (r < 0)
                return r;

        switch (type) {
        case SD_BUS_TYPE_BYTE:
                j = json_integer(v.u8);
                break;
        case SD_BUS_TYPE_BOOLEAN:
                j = json_boolean(v.i);
                break;
        case SD_BUS_TYPE_INT16:
                j = json_integer(v.i16);
                break;
        case SD_BUS_TYPE_UINT16:
                j = json_integer(v.u16);
                break;
        case SD_BUS_TYPE_INT32:
                j = json_integer(v.i32);
                break;
        case SD_BUS_TYPE_UINT32:
                j = json_integer(v.u32);
                break;
        case SD_BUS_TYPE_INT64:
                j = json_integer(v.i64);
                break;
        case SD_BUS_TYPE_UINT64:
                j = json_integer(v.u64 > INT64_MAX ? INT64_MAX : (json_int_t) v.u64);
                break;
        case SD_BUS_TYPE_DOUBLE:
                j = isfinite(v.d) ? json_real(v.d) : json_null();
                break;
        case SD_BUS_TYPE_UNIX_FD:
                j = json_integer(v.i);
                break;
        default: /* strings, object paths, signatures; sd-bus checked them for UTF-8 */
                j = json_string(v.s);
                break;
        }
        if (!j)
                return -ENOMEM;
        *ret = j;
        return 0;
}

/* The key of a dictionary entry as a string: integer keys are written in decimal. */
static int read_dict_key(sd_bus_message *m, char type, char **ret) {
        _cleanup_(json_decrefp) json_t *k = NULL;
        int r;

        r = read_basic(m, type, &k);
        if (r < 0)
                return r;
        if (json_is_string(k))
                *ret = strdup(json_string_value(k));
        else
                *ret = json_dumps(k, JSON_ENCODE_ANY);
        return *ret ? 0 : -ENOMEM;
}

/* The values up to the end of the container m is in, as a JSON array (arrays, structs). */
static int read_json_items(sd_bus_message *m, json_t **ret) {
        _cleanup_(json_decrefp) json_t *j = json_array();
        int r;

        if (!j)
                return -ENOMEM;
        while ((r = sd_bus_message_at_end(m, false)) == 0) {
                json_t *item;

                r = bus_message_read_json(m, &item);
                if (r < 0)
                        return r;
                if (json_array_append_new(j, item) < 0)
                        return -ENOMEM;
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(j);
        return 0;
}

int bus_message_read_json(sd_bus_message *m, json_t **ret) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENXIO; /* nothing left */

        switch (type) {
        case SD_BUS_TYPE_VARIANT:
                r = sd_bus_message_enter_container(m, type, contents);
                if (r < 0)
                        return r;
                r = bus_message_read_json(m, &j);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
                break;

        case SD_BUS_TYPE_ARRAY:
                r = sd_bus_message_enter_container(m, type, contents);
                if (r < 0)
                        return r;
                if (contents[0] == SD_BUS_TYPE_DICT_ENTRY_BEGIN) {
                        _cleanup_free_ char *entry = strndup(contents + 1, strlen(contents) - 2);
                        if (!entry)
                                return -ENOMEM;
                        j = json_object();
                        if (!j)
                                return -ENOMEM;
                        while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, entry)) > 0) {
                                _cleanup_free_ char *key = NULL;
                                json_t *value;

                                r = read_dict_key(m, entry[0], &key);
                                if (r < 0)
                                        return r;
                                r = bus_message_read_json(m, &value);
                                if (r < 0)
                                        return r;
                                r = json_set_new(j, key, value);
                                if (r < 0)
                                        return r;
                                r = sd_bus_message_exit_container(m);
                                if (r < 0)
                                        return r;
                        }
                        if (r < 0)
                                return r;
                } else {
                        r = read_json_items(m, &j);
                        if (r < 0)
                                return r;
                }
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
                break;

        case SD_BUS_TYPE_STRUCT:
                r = sd_bus_message_enter_container(m, type, contents);
                if (r < 0)
                        return r;
                r = read_json_items(m, &j);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
                break;

        default:
                r = read_basic(m, type, &j);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(j);
        return 0;
}

int bus_get_all_properties(sd_bus *bus, const char *path, const char *interface, sd_bus_error *error,
                           json_t **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        json_t *j;
        int r;

        r = sd_bus_call_method(bus, IMMOD_BUS_NAME, path, "org.freedesktop.DBus.Properties", "GetAll", error,
                               &reply, "s", interface);
        if (r < 0)
                return r;
        r = bus_message_read_json(reply, &j);
        if (r < 0)
                return r;
        *ret = j;
        return 0;
}
