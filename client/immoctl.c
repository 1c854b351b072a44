/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* immoctl: the command-line front end of immod, which it drives only through D-Bus. */
#include <getopt.h>
#include <stdio.h>

#include "bus.h"
#include "immoctl.h"
#include "log.h"
#include "parse-util.h"

/* Options that only some verbs take. */
enum {
        VERB_OPT_MODEL = 1U << 0,
        VERB_OPT_YEAR = 1U << 1,
        VERB_OPT_FORCE = 1U << 2,
        VERB_OPT_LIMIT = 1U << 3,
};

typedef struct Verb {
        const char *name; /* one word, or two for "vehicle set" */
        const char *args;
        const char *summary;
        const char *help;
        unsigned min_args, max_args; /* after the name */
        unsigned options;
        int (*run)(Context *c, int argc, char **argv);
} Verb;

static const Verb verbs[] = {
        { "status", "", "Show the link, the ECU, the battery, the vehicle, problems and the procedure",
          "Shows the CAN link and its state, whether the ECU answers, the battery voltage and state,\n"
          "the vehicle, what stops a procedure now (as what to do about it) and the procedure that\n"
          "runs. Reads properties only: any local user may run it.\n",
          0, 0, 0, verb_status },
        { "identify", "", "Read the VIN from the ECU and show the matched vehicle profile",
          "Reads the VIN and the model from the ECU and shows the vehicle profile immod matched:\n"
          "VIN, make, model, model year, profile. When no profile matches, the VIN read is still\n"
          "shown; \"immoctl vehicle set\" is then the way out.\n",
          0, 0, 0, verb_identify },
        { "vehicle set", "VIN --model MODEL --year YEAR [--force]",
          "Set the vehicle by hand, when the ignition cannot be turned on",
          "Sets the vehicle without reading the ECU. The VIN is checked here first: 17 characters\n"
          "of A-Z and 0-9 without I, O and Q, with a right check digit (position 9).\n\n"
          "      --model MODEL   The model as the profiles name it, e.g. \"ES 350\"\n"
          "      --year YEAR     The model year, e.g. 2020\n"
          "      --force         Accept a VIN whose check digit is wrong\n",
          1, 1, VERB_OPT_MODEL | VERB_OPT_YEAR | VERB_OPT_FORCE, verb_vehicle_set },
        { "vehicle show", "", "Show the vehicle immod works on",
          "Shows the vehicle immod knows (from \"identify\" or \"vehicle set\"), without asking the ECU.\n",
          0, 0, 0, verb_vehicle_show },
        { "keys", "", "Show the registered, available and maximum key slots",
          "Reads the key slots from the ECU: registered keys, free slots and the maximum.\n"
          "Read-only: it changes nothing in the car and needs no passcode.\n",
          0, 0, 0, verb_keys },
        { "history", "[-n N]", "Show the audit records of the procedures that ended",
          "Shows the audit records, newest first, one line each: when, what, VIN, result, key\n"
          "counts before and after, who.\n\n"
          "  -n, --lines=N       Show at most N records (default: all)\n",
          0, 0, VERB_OPT_LIMIT, verb_history },
        { "monitor", "", "Follow immod's properties and signals live, a line per event",
          "Prints a line for every property change and signal of immod until Ctrl-C; with --json\n"
          "one JSON object per line.\n",
          0, 0, 0, verb_monitor },
};

static const char exit_status_help[] =
        "Exit status:\n"
        "  0  success\n"
        "  1  failure (immod not running, an unexpected error)\n"
        "  2  usage error: unknown verb, bad option, bad VIN, malformed passcode\n"
        "  3  refused by the car, immod or the passcode service: NotAuthorized, Busy,\n"
        "     NoVehicle, UnsupportedVehicle, EcuRefused, PasscodeRejected, LockedOut,\n"
        "     BatteryLow, WrongStep, CountMismatch, NotCancellable, ApprovalRequired,\n"
        "     ApprovalPending, AuthenticationFailed, ServerRefused\n"
        "  4  not reachable: EcuAsleep, EcuUnreachable, LinkDown, Timeout, ServerUnreachable\n";

static const char global_options_help[] =
        "  -h --help              Show this help (\"immoctl VERB --help\" for one verb)\n"
        "     --version           Show the version\n"
        "  -H --host=[USER@]HOST  Operate on immod of a remote host, over SSH\n"
        "     --bus=BUS           system (the default), session, or a D-Bus ADDRESS\n"
        "     --json              Print JSON, one object per line\n"
        "     --no-ask            Never ask; give every answer as an option\n"
        "     --no-pager          Do not pipe output into a pager\n";

static void help_main(void) {
        printf("immoctl [OPTIONS...] VERB [ARGS...]\n\n"
               "Drive immod, the immobilizer service: identify the vehicle, read the key slots,\n"
               "follow what happens.\n\nVerbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                char left[64];
                snprintf(left, sizeof(left), "%s%s%s", verbs[i].name, *verbs[i].args ? " " : "", verbs[i].args);
                if (strlen(left) > 22)
                        printf("  %s\n  %-22s %s\n", left, "", verbs[i].summary);
                else
                        printf("  %-22s %s\n", left, verbs[i].summary);
        }
        printf("\nOptions:\n%s\n%s\nSee the immoctl(1) man page for details.\n", global_options_help,
               exit_status_help);
}

static void help_verb(const Verb *v) {
        printf("immoctl [OPTIONS...] %s%s%s\n\n%s.\n\n%s\nOptions:\n%s\n%s", v->name, *v->args ? " " : "",
               v->args, v->summary, v->help, global_options_help, exit_status_help);
}

/* The verb named at argv[0] (and argv[1] for two words); *ret_words says how many. */
static const Verb *find_verb(int argc, char **argv, unsigned *ret_words) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                const char *space = strchr(verbs[i].name, ' ');
                if (!space) {
                        if (streq(verbs[i].name, argv[0])) {
                                *ret_words = 1;
                                return verbs + i;
                        }
                        continue;
                }
                size_t n = (size_t) (space - verbs[i].name);
                if (strlen(argv[0]) == n && strncmp(verbs[i].name, argv[0], n) == 0 && argc > 1 &&
                    streq(space + 1, argv[1])) {
                        *ret_words = 2;
                        return verbs + i;
                }
        }
        return NULL;
}

/* The verbs whose first word is argv0 ("vehicle"), for help and for a missing sub-verb. */
static bool verb_group_exists(const char *word) {
        size_t n = strlen(word);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strncmp(verbs[i].name, word, n) == 0 && verbs[i].name[n] == ' ')
                        return true;
        return false;
}

static void help_group(const char *word) {
        size_t n = strlen(word);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strncmp(verbs[i].name, word, n) == 0 && verbs[i].name[n] == ' ') {
                        help_verb(verbs + i);
                        printf("\n");
                }
}

static const char *option_name(unsigned opt) {
        switch (opt) {
        case VERB_OPT_MODEL:
                return "--model";
        case VERB_OPT_YEAR:
                return "--year";
        case VERB_OPT_FORCE:
                return "--force";
        case VERB_OPT_LIMIT:
                return "-n/--lines";
        default:
                return "?";
        }
}

static int parse_argv(int argc, char *argv[], Context *c, bool *ret_help, unsigned *ret_used) {
        enum {
                ARG_VERSION = 0x100,
                ARG_BUS,
                ARG_JSON,
                ARG_NO_ASK,
                ARG_NO_PAGER,
                ARG_MODEL,
                ARG_YEAR,
                ARG_FORCE,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "host", required_argument, NULL, 'H' },
                { "bus", required_argument, NULL, ARG_BUS },
                { "json", no_argument, NULL, ARG_JSON },
                { "no-ask", no_argument, NULL, ARG_NO_ASK },
                { "no-pager", no_argument, NULL, ARG_NO_PAGER },
                { "model", required_argument, NULL, ARG_MODEL },
                { "year", required_argument, NULL, ARG_YEAR },
                { "force", no_argument, NULL, ARG_FORCE },
                { "lines", required_argument, NULL, 'n' },
                {}
        };
        bool have_bus = false, have_host = false;
        unsigned used = 0;
        int opt, r;

        /* Options may come before or after the verb ("immoctl keys --json"): getopt_long
         * moves the words to the end; a VIN never starts with a dash. */
        opterr = 0; /* our own messages */
        while ((opt = getopt_long(argc, argv, "hH:n:", options, NULL)) >= 0) {
                switch (opt) {
                case 'h':
                        *ret_help = true;
                        break;
                case ARG_VERSION:
                        printf("immoctl %s\n", IMMOD_VERSION);
                        return 0;
                case 'H':
                        c->transport = BUS_TRANSPORT_REMOTE;
                        c->bus_arg = optarg;
                        have_host = true;
                        break;
                case ARG_BUS:
                        r = bus_parse_transport(optarg, &c->transport, &c->bus_arg);
                        if (r < 0) {
                                log_error("--bus takes system, session or a D-Bus address such as "
                                          "unix:path=/run/dbus/system_bus_socket, not \"%s\".",
                                          optarg);
                                return -EINVAL;
                        }
                        have_bus = true;
                        break;
                case ARG_JSON:
                        c->json = true;
                        break;
                case ARG_NO_ASK:
                        c->no_ask = true;
                        break;
                case ARG_NO_PAGER:
                        c->no_pager = true;
                        break;
                case ARG_MODEL:
                        if (!*optarg) {
                                log_error("--model needs a model name, such as \"ES 350\".");
                                return -EINVAL;
                        }
                        c->model = optarg;
                        used |= VERB_OPT_MODEL;
                        break;
                case ARG_YEAR:
                        if (parse_unsigned_range(optarg, 1980, 2100, &c->year) < 0) {
                                log_error("--year takes a model year from 1980 to 2100, not \"%s\".", optarg);
                                return -EINVAL;
                        }
                        used |= VERB_OPT_YEAR;
                        break;
                case ARG_FORCE:
                        c->force = true;
                        used |= VERB_OPT_FORCE;
                        break;
                case 'n':
                        if (parse_unsigned_range(optarg, 0, UINT32_MAX, &c->limit) < 0) {
                                log_error("-n takes a number of records (0 for all), not \"%s\".", optarg);
                                return -EINVAL;
                        }
                        used |= VERB_OPT_LIMIT;
                        break;
                case '?':
                        if (optopt && optopt < 0x100)
                                log_error("Unknown option -%c. \"immoctl --help\" lists the options.", optopt);
                        else
                                log_error("Unknown option %s. \"immoctl --help\" lists the options.",
                                          argv[optind - 1]);
                        return -EINVAL;
                case ':':
                        log_error("Option %s needs an argument.", argv[optind - 1]);
                        return -EINVAL;
                default:
                        return -EINVAL;
                }
        }

        if (have_host && have_bus) {
                log_error("-H and --bus cannot be combined: -H always means the remote system bus.");
                return -EINVAL;
        }
        *ret_used = used;
        return 1;
}

int context_get_bus(Context *c, sd_bus **ret) {
        int r;

        if (!c->bus) {
                r = bus_connect(c->transport, c->bus_arg, &c->bus);
                if (r < 0)
                        return r;
        }
        *ret = c->bus;
        return 0;
}

static int run(int argc, char *argv[], Context *c) {
        bool help = false;
        unsigned used = 0, nwords = 0;
        const Verb *v;
        int r;

        r = parse_argv(argc, argv, c, &help, &used);
        if (r < 0)
                return IMMOCTL_EXIT_USAGE;
        if (r == 0)
                return 0; /* --version */

        /* GNU getopt_long moved the options first: the words follow, in their order. */
        char **words = argv + optind;
        int n = argc - optind;

        if (n == 0) {
                if (help) {
                        help_main();
                        return 0;
                }
                log_error("No verb given. \"immoctl --help\" lists them; \"immoctl status\" is a good start.");
                return IMMOCTL_EXIT_USAGE;
        }

        v = find_verb(n, words, &nwords);
        if (!v) {
                if (verb_group_exists(words[0])) {
                        if (help) {
                                help_group(words[0]);
                                return 0;
                        }
                        log_error("\"%s\" needs a sub-verb%s%s. \"immoctl %s --help\" lists them.", words[0],
                                  n > 1 ? ", not " : "", n > 1 ? words[1] : "", words[0]);
                        return IMMOCTL_EXIT_USAGE;
                }
                log_error("Unknown verb \"%s\". \"immoctl --help\" lists the verbs.", words[0]);
                return IMMOCTL_EXIT_USAGE;
        }
        if (help) {
                help_verb(v);
                return 0;
        }

        unsigned nargs = (unsigned) n - nwords;
        if (nargs < v->min_args || nargs > v->max_args) {
                if (nargs > v->max_args)
                        log_error("Too many arguments for \"%s\": \"%s\" is not expected.", v->name,
                                  words[nwords + v->max_args]);
                else
                        log_error("\"%s\" needs %s. \"immoctl %s --help\" says more.", v->name, v->args, v->name);
                return IMMOCTL_EXIT_USAGE;
        }
        unsigned extra = used & ~v->options;
        if (extra) {
                log_error("Option %s does not apply to \"%s\".", option_name(extra & -extra), v->name);
                return IMMOCTL_EXIT_USAGE;
        }

        r = v->run(c, n, words);
        return r < 0 ? IMMOCTL_EXIT_FAILURE : r;
}

int main(int argc, char *argv[]) {
        Context c = { .transport = BUS_TRANSPORT_SYSTEM };
        int r;

        r = run(argc, argv, &c);
        sd_bus_flush_close_unref(c.bus);
        return r;
}
