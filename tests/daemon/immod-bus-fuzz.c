/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A D-Bus fuzzer for immod: sends a bounded, seeded stream of generated method calls to
 * every method of org.immod.Immod1.Manager and .Procedure, on the bus at ADDRESS, and
 * checks that each gets a reply or one of the errors dbus/org.immod.Immod1.xml documents.
 *
 *   immod-bus-fuzz ADDRESS SEED CALLS
 *
 * The calls: the right signature with generated values (known option keys and unknown
 * ones, kinds, steps, VINs, huge strings and arrays, nested variants), or a wrong one
 * (wrong types, missing or extra arguments), unknown methods and objects; calls from a
 * second connection to a procedure the first started; and connections closed while a call
 * is pending. A passcode that could be right is never generated, so the ECU is never
 * locked out. At the end the running procedure is cancelled, so that a whole procedure
 * can run next. Exits 1 when a call went unanswered or got an undocumented
 * error, or when immod left the bus.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#define DEST "org.immod.Immod1"
#define OBJ "/org/immod/Immod1"
#define MANAGER "org.immod.Immod1.Manager"
#define PROCEDURE "org.immod.Immod1.Procedure"
#define CALL_TIMEOUT_USEC (30ULL * 1000000ULL)
#define MAX_DEPTH 6
/* What one call may carry in huge strings and arrays: well under the bus's message limit,
 * so that the bus delivers it and immod is what answers. */
#define MESSAGE_BUDGET (4U * 1024U * 1024U)

typedef struct Method {
        const char *iface;
        const char *name;
        const char *sig;
} Method;

static const Method methods[] = {
        { MANAGER, "Identify", "" },
        { MANAGER, "SetVehicle", "sa{sv}" },
        { MANAGER, "ReadKeyStatus", "" },
        { MANAGER, "StartProcedure", "sa{sv}" },
        { MANAGER, "ListProcedures", "" },
        { MANAGER, "GetHistory", "u" },
        { MANAGER, "RequestApproval", "a{sv}a{sv}" },
        { MANAGER, "GetApproval", "sa{sv}" },
        { PROCEDURE, "Acknowledge", "s" },
        { PROCEDURE, "SubmitPasscode", "s" },
        { PROCEDURE, "FetchPasscode", "a{sv}" },
        { PROCEDURE, "SetKeyCount", "u" },
        { PROCEDURE, "Erase", "u" },
        { PROCEDURE, "Finish", "" },
        { PROCEDURE, "Cancel", "" },
};

/* dbus/org.immod.Immod1.xml: the errors it names, and the bus's own for a bad call. */
static const char *const documented_errors[] = {
        "org.immod.Immod1.Error.ApprovalPending",
        "org.immod.Immod1.Error.ApprovalRequired",
        "org.immod.Immod1.Error.AuthenticationFailed",
        "org.immod.Immod1.Error.BatteryLow",
        "org.immod.Immod1.Error.Busy",
        "org.immod.Immod1.Error.Cancelled",
        "org.immod.Immod1.Error.CountMismatch",
        "org.immod.Immod1.Error.EcuAsleep",
        "org.immod.Immod1.Error.EcuRefused",
        "org.immod.Immod1.Error.EcuUnreachable",
        "org.immod.Immod1.Error.InvalidPasscodeFormat",
        "org.immod.Immod1.Error.InvalidVin",
        "org.immod.Immod1.Error.LinkDown",
        "org.immod.Immod1.Error.LockedOut",
        "org.immod.Immod1.Error.NoVehicle",
        "org.immod.Immod1.Error.NotAuthorized",
        "org.immod.Immod1.Error.NotCancellable",
        "org.immod.Immod1.Error.PasscodeRejected",
        "org.immod.Immod1.Error.ServerRefused",
        "org.immod.Immod1.Error.ServerUnreachable",
        "org.immod.Immod1.Error.Timeout",
        "org.immod.Immod1.Error.UnsupportedVehicle",
        "org.immod.Immod1.Error.WrongStep",
        "org.freedesktop.DBus.Error.InvalidArgs",
        "org.freedesktop.DBus.Error.UnknownMethod",
        "org.freedesktop.DBus.Error.UnknownObject",
        "org.freedesktop.DBus.Error.UnknownInterface",
        "org.freedesktop.DBus.Error.InvalidSignature",
        "org.freedesktop.DBus.Error.AccessDenied",
        "org.freedesktop.DBus.Error.NoMemory",
};

static const char *const words[] = {
        /* kinds, steps, option keys, values */
        "immobilizer-reset", "key-registration", "key-erasure", "self-destruct", "confirm-erase-all",
        "open-driver-door", "immobilizer-passcode", "confirm-duration", "smart-code-passcode",
        "confirm-instructions", "check-slots", "place-keys", "pre-start-check", "function-check",
        "confirm-warning", "confirm-counts", "confirm-agree", "touch-keys", "resetting", "done",
        "model", "year", "force", "technician", "repair_order", "customer_last_name", "dealer_code",
        "user", "password", "approvers", "attestations", "vin", "kind", "request_no", "seed",
        "ES 350", "RX 350", "58ADZ1B16MU000123", "58ADZ1B16MU000124", "JTNB11HK0K3000001",
        "12ab", "", " ", "tech1", "D100", "RO-42", "Smith", "unknown_key", "\xc3\xa9t\xc3\xa9"
};

static uint64_t rng_state;
static unsigned calls_total, replies, documented, failures;
static char procedure_path[256]; /* the procedure this fuzzer started, or "" */
static size_t budget;            /* bytes left for huge items in the message being built */

/* Whether a huge item of `size` bytes still fits the message; takes it from the budget. */
static bool take_budget(size_t size) {
        if (size > budget)
                return false;
        budget -= size;
        return true;
}

static uint32_t rnd(void) {
        /* xorshift64*: the same stream for the same seed */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return (uint32_t) ((rng_state * 2685821657736338717ULL) >> 32);
}

static unsigned pick(unsigned n) {
        return rnd() % n;
}

static bool chance(unsigned percent) {
        return pick(100) < percent;
}

/* A string: a known word, printable junk, or (rarely) a huge one. Never a passcode that
 * could be right: six digits or twelve hex digits get a 'z' added. */
static char *gen_string(void) {
        size_t n;
        char *s;

        if (chance(50))
                return strdup(words[pick(sizeof(words) / sizeof(words[0]))]);
        n = chance(5) ? 64 * 1024 + pick(1024 * 1024) : pick(300);
        if (n >= 300 && !take_budget(n))
                n = pick(300);
        s = malloc(n + 2);
        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i++)
                s[i] = (char) (0x20 + pick(0x5f));
        s[n] = 0;
        if (n == 6 || n == 12 || n <= 16)
                strcat(s, "z");
        return s;
}

static const char basic_types[] = "ybnqiuxtdsog";

/* A random complete type, at most MAX_DEPTH deep. */
static void gen_type(char *buf, size_t size, unsigned depth) {
        size_t l = strlen(buf);
        unsigned k = depth >= MAX_DEPTH ? 0 : pick(10);

        if (l + 8 >= size)
                k = 0;
        switch (k) {
        case 6:
                strcat(buf, "a");
                gen_type(buf, size, depth + 1);
                break;
        case 7:
                strcat(buf, "a{s");
                gen_type(buf, size, depth + 1);
                strcat(buf, "}");
                break;
        case 8:
                strcat(buf, "(");
                gen_type(buf, size, depth + 1);
                gen_type(buf, size, depth + 1);
                strcat(buf, ")");
                break;
        case 9:
                strcat(buf, "v");
                break;
        default:
                buf[l] = basic_types[pick(sizeof(basic_types) - 1)];
                buf[l + 1] = 0;
        }
}

/* The end of the complete type starting at t. */
static const char *type_end(const char *t) {
        if (*t == 'a')
                return type_end(t + 1);
        if (*t == '(' || *t == '{') {
                char close = *t == '(' ? ')' : '}';
                t++;
                while (*t != close)
                        t = type_end(t);
                return t + 1;
        }
        return t + 1;
}

static int append_value(sd_bus_message *m, const char *t, unsigned depth);

static bool streq_dict_sv(const char *elem) {
        return strncmp(elem, "{sv}", 4) == 0;
}

/* a{sv} entries: known keys or not, values of the usual or any type, nested variants */
static int append_dict_sv(sd_bus_message *m, unsigned depth) {
        unsigned n = chance(3) && depth <= 2 && take_budget(2000 * 64) ? 2000 : pick(6);
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        for (unsigned i = 0; r >= 0 && i < n; i++) {
                char *key = gen_string();

                if (!key)
                        return -ENOMEM;
                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append_basic(m, 's', key);
                free(key);
                if (r >= 0)
                        r = append_value(m, "v", depth + 1);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
        }
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

static int append_value(sd_bus_message *m, const char *t, unsigned depth) {
        char sig[64];
        int r;

        switch (*t) {
        case 'y': {
                uint8_t v = (uint8_t) rnd();
                return sd_bus_message_append_basic(m, 'y', &v);
        }
        case 'b': {
                int v = (int) pick(2);
                return sd_bus_message_append_basic(m, 'b', &v);
        }
        case 'n':
        case 'q': {
                uint16_t v = (uint16_t) rnd();
                return sd_bus_message_append_basic(m, *t, &v);
        }
        case 'i':
        case 'u': {
                /* small, edge and random numbers */
                static const uint32_t edges[] = { 0, 1, 2, 3, 7, 8, 0x7fffffff, 0x80000000, 0xffffffff };
                uint32_t v = chance(50) ? edges[pick(9)] : rnd();
                return sd_bus_message_append_basic(m, *t, &v);
        }
        case 'x':
        case 't': {
                uint64_t v = (uint64_t) rnd() << 32 | rnd();
                return sd_bus_message_append_basic(m, *t, &v);
        }
        case 'd': {
                static const double values[] = { 0.0, -1.0, 12.6, 1e308, -1e-308 };
                double v = values[pick(5)];
                return sd_bus_message_append_basic(m, 'd', &v);
        }
        case 's': {
                char *s = gen_string();

                if (!s)
                        return -ENOMEM;
                r = sd_bus_message_append_basic(m, 's', s);
                free(s);
                return r;
        }
        case 'o':
                return sd_bus_message_append_basic(m, 'o', chance(50) ? OBJ "/procedure/999" : "/");
        case 'g':
                return sd_bus_message_append_basic(m, 'g', "a{sv}");
        case 'v':
                sig[0] = 0;
                if (depth >= MAX_DEPTH)
                        strcpy(sig, "s");
                else if (chance(20))
                        strcpy(sig, "v"); /* a variant in a variant */
                else
                        gen_type(sig, sizeof(sig), depth);
                r = sd_bus_message_open_container(m, 'v', sig);
                if (r < 0)
                        return r;
                r = append_value(m, sig, depth + 1);
                if (r < 0)
                        return r;
                return sd_bus_message_close_container(m);
        case 'a': {
                const char *elem = t + 1, *end = type_end(elem);
                char esig[64];
                unsigned n;

                if (streq_dict_sv(elem))
                        return append_dict_sv(m, depth);
                if ((size_t) (end - elem) >= sizeof(esig))
                        return -EINVAL;
                memcpy(esig, elem, end - elem);
                esig[end - elem] = 0;
                if (*elem == 'y' && chance(20)) {
                        /* a huge byte array in one go */
                        size_t size = 1024 * 1024 + pick(1024 * 1024);
                        uint8_t *buf;

                        if (!take_budget(size))
                                size = pick(64);
                        buf = calloc(1, size + 1);

                        if (!buf)
                                return -ENOMEM;
                        r = sd_bus_message_append_array(m, 'y', buf, size);
                        free(buf);
                        return r;
                }
                n = chance(3) && depth <= 2 && strchr(basic_types, *elem) && take_budget(20000 * 16) ? 20000
                                                                                                     : pick(5);
                if (depth >= MAX_DEPTH)
                        n = 0;
                if (*elem == '{') {
                        r = sd_bus_message_open_container(m, 'a', esig);
                        for (unsigned i = 0; r >= 0 && i < n; i++) {
                                char inner[64];

                                snprintf(inner, sizeof(inner), "%.*s", (int) (end - elem - 2), elem + 1);
                                r = sd_bus_message_open_container(m, 'e', inner);
                                if (r >= 0)
                                        r = append_value(m, elem + 1, depth + 1);
                                if (r >= 0)
                                        r = append_value(m, type_end(elem + 1), depth + 1);
                                if (r >= 0)
                                        r = sd_bus_message_close_container(m);
                        }
                } else {
                        r = sd_bus_message_open_container(m, 'a', esig);
                        for (unsigned i = 0; r >= 0 && i < n; i++)
                                r = append_value(m, elem, depth + 1);
                }
                if (r < 0)
                        return r;
                return sd_bus_message_close_container(m);
        }
        case '(': {
                const char *end = type_end(t);
                char inner[64];

                if ((size_t) (end - t - 2) >= sizeof(inner))
                        return -EINVAL;
                snprintf(inner, sizeof(inner), "%.*s", (int) (end - t - 2), t + 1);
                r = sd_bus_message_open_container(m, 'r', inner);
                for (const char *p = t + 1; r >= 0 && *p != ')'; p = type_end(p))
                        r = append_value(m, p, depth + 1);
                if (r < 0)
                        return r;
                return sd_bus_message_close_container(m);
        }
        default:
                return -EINVAL;
        }
}

/* The arguments: mostly the method's own signature, else a random one (wrong types,
 * missing or extra arguments). */
static int append_args(sd_bus_message *m, const Method *method) {
        char sig[64] = "";
        int r;

        budget = MESSAGE_BUDGET;
        if (chance(70))
                snprintf(sig, sizeof(sig), "%s", method->sig);
        else
                for (unsigned i = pick(4); i > 0; i--)
                        gen_type(sig, sizeof(sig), 1);
        for (const char *t = sig; *t; t = type_end(t)) {
                r = append_value(m, t, 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

#define N_DOCUMENTED (sizeof(documented_errors) / sizeof(documented_errors[0]))
static unsigned error_counts[N_DOCUMENTED];

static bool error_documented(const char *name) {
        for (size_t i = 0; i < N_DOCUMENTED; i++)
                if (strcmp(name, documented_errors[i]) == 0) {
                        error_counts[i]++;
                        return true;
                }
        return false;
}

/* Sends one call and checks its answer; remembers a procedure it started. */
static void call_and_check(sd_bus *bus, const char *path, const Method *method, const char *name) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, DEST, path, method->iface, name);
        if (r < 0) {
                fprintf(stderr, "cannot make a call of %s: %s\n", name, strerror(-r));
                failures++;
                return;
        }
        r = append_args(m, method);
        if (r < 0) {
                /* what sd-bus refuses to send (e.g. a message above its limits) is not immod's */
                sd_bus_message_unref(m);
                return;
        }
        calls_total++;
        r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, &reply);
        if (r >= 0) {
                replies++;
                if (strcmp(name, "StartProcedure") == 0 && !procedure_path[0]) {
                        const char *o;

                        if (sd_bus_message_read(reply, "o", &o) >= 0)
                                snprintf(procedure_path, sizeof(procedure_path), "%s", o);
                }
        } else if (error.name && error_documented(error.name))
                documented++;
        else {
                failures++;
                fprintf(stderr, "FAIL: %s.%s on %s (signature '%s'): %s: %s\n", method->iface, name, path,
                        sd_bus_message_get_signature(m, true) ?: "", error.name ?: strerror(-r),
                        error.message ?: "");
        }
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        sd_bus_message_unref(m);
}

static int connect_bus(const char *address, sd_bus **ret) {
        sd_bus *bus = NULL;
        int r;

        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0) {
                sd_bus_unref(bus);
                return r;
        }
        *ret = bus;
        return 0;
}

/* A connection that sends a call and goes away before the answer. */
static void disconnect_pending(const char *address) {
        sd_bus *bus = NULL;
        sd_bus_message *m = NULL;
        const Method *method = &methods[pick(sizeof(methods) / sizeof(methods[0]))];
        const char *path = strcmp(method->iface, PROCEDURE) == 0 && procedure_path[0] ? procedure_path : OBJ;

        if (connect_bus(address, &bus) < 0) {
                failures++;
                fprintf(stderr, "FAIL: cannot connect to %s\n", address);
                return;
        }
        if (sd_bus_message_new_method_call(bus, &m, DEST, path, method->iface, method->name) >= 0 &&
            append_args(m, method) >= 0)
                (void) sd_bus_send(bus, m, NULL);
        sd_bus_message_unref(m);
        (void) sd_bus_flush(bus);
        sd_bus_close(bus);
        sd_bus_unref(bus);
}

/* A procedure started the right way, so that the Procedure methods meet a live one. */
static void start_procedure(sd_bus *bus) {
        static const char *const kinds[] = { "immobilizer-reset", "key-registration", "key-erasure" };
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *o;
        int r;

        calls_total++;
        r = sd_bus_call_method(bus, DEST, OBJ, MANAGER, "StartProcedure", &error, &reply, "sa{sv}",
                               kinds[pick(3)], 2, "technician", "s", "T. Fuzz", "repair_order", "s", "RO-16");
        if (r >= 0) {
                replies++;
                if (sd_bus_message_read(reply, "o", &o) >= 0)
                        snprintf(procedure_path, sizeof(procedure_path), "%s", o);
        } else if (error.name && error_documented(error.name))
                documented++;
        else {
                failures++;
                fprintf(stderr, "FAIL: StartProcedure: %s\n", error.name ?: strerror(-r));
        }
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
}

static bool immod_on_bus(sd_bus *bus) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char *v = NULL;
        int r;

        r = sd_bus_get_property_string(bus, DEST, OBJ, MANAGER, "Version", &error, &v);
        sd_bus_error_free(&error);
        free(v);
        return r >= 0;
}

int main(int argc, char *argv[]) {
        sd_bus *bus = NULL, *second = NULL;
        unsigned calls, disconnects = 0, from_second = 0;
        int r;

        if (argc != 4) {
                fprintf(stderr, "Usage: %s ADDRESS SEED CALLS\n", argv[0]);
                return 2;
        }
        rng_state = strtoull(argv[2], NULL, 10) * 0x9e3779b97f4a7c15ULL + 1;
        calls = (unsigned) strtoul(argv[3], NULL, 10);

        r = connect_bus(argv[1], &bus);
        if (r >= 0)
                r = connect_bus(argv[1], &second);
        if (r < 0) {
                fprintf(stderr, "cannot connect to %s: %s\n", argv[1], strerror(-r));
                return 1;
        }

        for (unsigned i = 0; i < calls; i++) {
                const Method *method = &methods[pick(sizeof(methods) / sizeof(methods[0]))];
                const char *name = method->name, *path = OBJ;
                sd_bus *b = bus;

                if (strcmp(method->iface, PROCEDURE) == 0)
                        path = procedure_path[0] && chance(90) ? procedure_path : OBJ "/procedure/1";
                if (chance(3))
                        name = "NoSuchMethod";
                if (chance(2))
                        path = "/org/immod/Immod1/nothing/here";
                if (procedure_path[0] && chance(15)) {
                        /* another caller, in the middle of this one's procedure */
                        b = second;
                        from_second++;
                }
                if (!procedure_path[0] && chance(10)) {
                        start_procedure(bus);
                        continue;
                }
                if (chance(3)) {
                        disconnect_pending(argv[1]);
                        disconnects++;
                        continue;
                }
                call_and_check(b, path, method, name);
                /* now and then a procedure is ended, so that another can start */
                if (procedure_path[0] && chance(5)) {
                        const Method cancel = { PROCEDURE, "Cancel", "" };
                        char *saved = strdup(procedure_path);

                        call_and_check(bus, procedure_path, &cancel, "Cancel");
                        if (saved && strcmp(saved, procedure_path) == 0)
                                procedure_path[0] = 0;
                        free(saved);
                }
        }

        /* leave no procedure behind: this one's, or one a caller that went away started */
        for (unsigned tries = 0; tries < 100; tries++) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                sd_bus_message *reply = NULL;
                const char *active = NULL;

                r = sd_bus_get_property(bus, DEST, OBJ, MANAGER, "ActiveProcedure", &error, &reply, "o");
                sd_bus_error_free(&error);
                if (r >= 0)
                        r = sd_bus_message_read(reply, "o", &active);
                if (r < 0 || strcmp(active, "/") == 0) {
                        sd_bus_message_unref(reply);
                        break;
                }
                if (tries % 10 == 0) {
                        r = sd_bus_call_method(bus, DEST, active, PROCEDURE, "Cancel", &error, NULL, "");
                        printf("Cancel %s: %s %s\n", active, r >= 0 ? "done" : (error.name ?: strerror(-r)),
                               error.message ?: "");
                        sd_bus_error_free(&error);
                }
                sd_bus_message_unref(reply);
                usleep(100 * 1000);
        }

        if (!immod_on_bus(bus)) {
                fprintf(stderr, "FAIL: immod is no longer on the bus\n");
                failures++;
        }
        printf("immod-bus-fuzz: %u calls: %u replies, %u documented errors, %u failures; "
               "%u from a second connection, %u connections closed with a call pending\n",
               calls_total, replies, documented, failures, from_second, disconnects);
        for (size_t i = 0; i < N_DOCUMENTED; i++)
                if (error_counts[i] > 0)
                        printf("  %5u %s\n", error_counts[i], documented_errors[i]);
        sd_bus_unref(second);
        sd_bus_unref(bus);
        return failures ? 1 : 0;
}
