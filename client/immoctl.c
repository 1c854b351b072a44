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
        VERB_OPT_RECORD = 1U << 4,     /* --repair-order, --customer, --technician */
        VERB_OPT_AGREE_ALL = 1U << 5,  /* --agree-erase-all */
        VERB_OPT_AGREE_KEYS = 1U << 6, /* --agree-erase-keys */
        VERB_OPT_KEYS_PRESENT = 1U << 7,
        VERB_OPT_NEW_KEYS = 1U << 8,
        VERB_OPT_PASSCODE = 1U << 9,  /* --passcode, --fetch */
        VERB_OPT_LOGIN = 1U << 10,    /* --user, --password-file */
        VERB_OPT_APPROVAL = 1U << 11, /* --approver, --attest, --dealer-code */
};

#define GUIDED_OPTIONS (VERB_OPT_RECORD | VERB_OPT_PASSCODE | VERB_OPT_LOGIN)

#define RECORD_OPTIONS_HELP                                                                    \
        "      --repair-order=RO   The repair order, for the audit record and the service\n"   \
        "      --customer=NAME     The customer's last name (the passcode service needs it)\n" \
        "      --technician=NAME   Who does the work, for the audit record\n"

#define PASSCODE_OPTIONS_HELP                                                                     \
        "      --passcode=P        Use P at the next passcode step (twice for the reset's two)\n" \
        "      --fetch             Get every passcode from the passcode service\n"                \
        "      --user=ID           The passcode service user (asked when missing)\n"              \
        "      --password-file=F   Read the service password from F (else asked, without echo;\n" \
        "                          it is never stored)\n"


typedef struct Verb {
        const char *name; /* one word, or two for "vehicle set" */
        const char *args;
        const char *summary;
        const char *help;
        unsigned min_args, max_args; /* after the name */
        unsigned options;
        int (*run)(Context *c, int argc, char **argv);
} Verb;

/* A verb per row, its help text laid out as "immoctl help VERB" prints it (clang-format 14
 * would join the option macros onto the text's lines). */
/* clang-format off */
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
        { "reset", "", "Guided Immobilizer Reset: erase every key when all keys are lost",
          "Runs the Immobilizer Reset of the bulletin step by step: the warnings (typed \"I agree\",\n"
          "\"I understand\"), the driver's door, the immobilizer passcode for the 96-digit seed, the\n"
          "smart code passcode for the VIN/Data1/Data2/Data3 table, then about 16 minutes of reset\n"
          "with a progress bar. The passcode service must hold an approved reset request for the\n"
          "VIN first (\"immoctl approval request\"). Then register keys with \"immoctl add-key\".\n"
          "Closing the terminal does not stop the reset: \"immoctl attach\" shows it again.\n\n"
          RECORD_OPTIONS_HELP PASSCODE_OPTIONS_HELP
          "      --agree-erase-all   With --no-ask: agree that every key is erased and that the\n"
          "                          reset takes about 16 minutes\n",
          0, 0, GUIDED_OPTIONS | VERB_OPT_AGREE_ALL, verb_reset },
        { "add-key", "", "Guided Smart Code Registration: register new keys",
          "Runs the Smart Code Registration of the bulletin: the smart code passcode, the slots, the\n"
          "registered key touched to the engine switch, then each new key touched (a beep per key).\n"
          "When a key was registered before, one new key per run; after a reset, several: type\n"
          "\"done\" when all are registered.\n\n"
          RECORD_OPTIONS_HELP PASSCODE_OPTIONS_HELP
          "      --new-keys=N        End registration after N new keys (needed with --no-ask\n"
          "                          after a reset)\n",
          0, 0, GUIDED_OPTIONS | VERB_OPT_NEW_KEYS, verb_add_key },
        { "erase-keys", "", "Guided Undesignated Key Permanent Erasure: keep only the keys present",
          "Runs the Undesignated Key Permanent Erasure of the bulletin: the warnings, how many\n"
          "customer keys are here, the keep/delete counts, the smart code passcode, then a\n"
          "30-second window to touch each key present to the engine switch. The keys not touched\n"
          "are deleted for ever; when the window closes first, nothing is deleted.\n\n"
          RECORD_OPTIONS_HELP PASSCODE_OPTIONS_HELP
          "      --keys-present=N    The number of customer keys present (they are kept)\n"
          "      --agree-erase-keys  With --no-ask: agree that the keys not touched are erased\n",
          0, 0, GUIDED_OPTIONS | VERB_OPT_KEYS_PRESENT | VERB_OPT_AGREE_KEYS, verb_erase_keys },
        { "attach", "[PROCEDURE]", "Take over a running procedure, from any terminal or host",
          "Shows the running procedure (or the one numbered PROCEDURE) where it is, and guides it on\n"
          "as the verb that started it would: after a closed terminal, from another terminal, or\n"
          "from another host with -H.\n\n"
          PASSCODE_OPTIONS_HELP
          "      --agree-erase-all, --agree-erase-keys, --keys-present=N, --new-keys=N\n"
          "                          The answers of the verbs above, for --no-ask\n",
          0, 1,
          VERB_OPT_PASSCODE | VERB_OPT_LOGIN | VERB_OPT_AGREE_ALL | VERB_OPT_AGREE_KEYS | VERB_OPT_KEYS_PRESENT |
                  VERB_OPT_NEW_KEYS,
          verb_attach },
        { "cancel", "[PROCEDURE]", "Cancel the running procedure, where that is safe",
          "Cancels the running procedure (or the one numbered PROCEDURE). Refused while the ECU\n"
          "reset runs: it must not be interrupted. Nothing is erased by a cancel.\n",
          0, 1, 0, verb_cancel },
        { "approval request", "VIN --repair-order=RO --customer=NAME --approver=ID --approver=ID",
          "Ask the passcode service for a reset approval, before the car is there",
          "Submits an Immobilizer Reset request for VIN to the passcode service; two managers named\n"
          "with --approver may approve it. The four attestations are asked (or --attest).\n\n"
          "      --repair-order=RO   The repair order\n"
          "      --customer=NAME     The customer's last name\n"
          "      --technician=ID     The requesting technician (default: --user)\n"
          "      --approver=ID       A manager who may approve; at least two\n"
          "      --attest=LIST       customer_authority,photo_id,registration,terms or \"all\":\n"
          "                          what you have checked (else asked one by one)\n"
          "      --dealer-code=CODE  The dealer (default: immod's configuration)\n"
          "      --user=ID, --password-file=F   The passcode service login\n",
          1, 1, VERB_OPT_RECORD | VERB_OPT_APPROVAL | VERB_OPT_LOGIN, verb_approval_request },
        { "approval status", "VIN", "Show whether a reset request for VIN is approved",
          "Asks the passcode service about the reset request for VIN: pending, approved (by whom,\n"
          "valid till when), denied, expired, or none.\n\n"
          "      --user=ID, --password-file=F   The passcode service login\n",
          1, 1, VERB_OPT_LOGIN, verb_approval_status },
        { "monitor", "", "Follow immod's properties and signals live, a line per event",
          "Prints a line for every property change and signal of immod until Ctrl-C; with --json\n"
          "one JSON object per line.\n",
          0, 0, 0, verb_monitor },
};
/* clang-format on */

static const char exit_status_help[] =
        "Exit status:\n"
        "  0  success\n"
        "  1  failure (immod not running, an unexpected error)\n"
        "  2  usage error: unknown verb, bad option, bad VIN, malformed passcode\n"
        "  3  refused by the car, immod or the passcode service: NotAuthorized, Busy,\n"
        "     NoVehicle, UnsupportedVehicle, EcuRefused, PasscodeRejected, LockedOut,\n"
        "     BatteryLow, WrongStep, CountMismatch, NotCancellable, ApprovalRequired,\n"
        "     ApprovalPending, AuthenticationFailed, ServerRefused\n"
        "  4  not reachable: EcuAsleep, EcuUnreachable, LinkDown, Timeout, ServerUnreachable;\n"
        "     the connection to immod lost while following a procedure (it goes on)\n";

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
               "Drive immod, the immobilizer service: identify the vehicle, read the key slots, run\n"
               "the bulletins' procedures step by step, follow what happens.\n\n"
               "All keys lost: \"immoctl approval request VIN ...\", a manager approves, then\n"
               "\"immoctl reset\" and \"immoctl add-key\" for the new keys.\n\nVerbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                /* Name and arguments in full: a long one gets a line of its own. */
                int width = printf("  %s%s%s", verbs[i].name, *verbs[i].args ? " " : "", verbs[i].args) - 2;
                if (width > 22)
                        printf("\n  %-22s %s\n", "", verbs[i].summary);
                else
                        printf("%*s %s\n", 22 - width, "", verbs[i].summary);
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
        case VERB_OPT_RECORD:
                return "--repair-order/--customer/--technician";
        case VERB_OPT_AGREE_ALL:
                return "--agree-erase-all";
        case VERB_OPT_AGREE_KEYS:
                return "--agree-erase-keys";
        case VERB_OPT_KEYS_PRESENT:
                return "--keys-present";
        case VERB_OPT_NEW_KEYS:
                return "--new-keys";
        case VERB_OPT_PASSCODE:
                return "--passcode/--fetch";
        case VERB_OPT_LOGIN:
                return "--user/--password-file";
        case VERB_OPT_APPROVAL:
                return "--approver/--attest/--dealer-code";
        default:
                return "?";
        }
}

#define TEXT_OPTION_MAX 128

static bool text_is_printable(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        return true;
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
                ARG_REPAIR_ORDER,
                ARG_CUSTOMER,
                ARG_TECHNICIAN,
                ARG_AGREE_ERASE_ALL,
                ARG_AGREE_ERASE_KEYS,
                ARG_KEYS_PRESENT,
                ARG_NEW_KEYS,
                ARG_PASSCODE,
                ARG_FETCH,
                ARG_USER,
                ARG_PASSWORD_FILE,
                ARG_APPROVER,
                ARG_ATTEST,
                ARG_DEALER_CODE,
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
                { "repair-order", required_argument, NULL, ARG_REPAIR_ORDER },
                { "customer", required_argument, NULL, ARG_CUSTOMER },
                { "technician", required_argument, NULL, ARG_TECHNICIAN },
                { "agree-erase-all", no_argument, NULL, ARG_AGREE_ERASE_ALL },
                { "agree-erase-keys", no_argument, NULL, ARG_AGREE_ERASE_KEYS },
                { "keys-present", required_argument, NULL, ARG_KEYS_PRESENT },
                { "new-keys", required_argument, NULL, ARG_NEW_KEYS },
                { "passcode", required_argument, NULL, ARG_PASSCODE },
                { "fetch", no_argument, NULL, ARG_FETCH },
                { "user", required_argument, NULL, ARG_USER },
                { "password-file", required_argument, NULL, ARG_PASSWORD_FILE },
                { "approver", required_argument, NULL, ARG_APPROVER },
                { "attest", required_argument, NULL, ARG_ATTEST },
                { "dealer-code", required_argument, NULL, ARG_DEALER_CODE },
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
                case ARG_REPAIR_ORDER:
                case ARG_CUSTOMER:
                case ARG_TECHNICIAN:
                case ARG_DEALER_CODE: {
                        const char *name = opt == ARG_REPAIR_ORDER ? "--repair-order"
                                           : opt == ARG_CUSTOMER   ? "--customer"
                                           : opt == ARG_TECHNICIAN ? "--technician"
                                                                   : "--dealer-code";
                        if (!*optarg || strlen(optarg) > TEXT_OPTION_MAX || !text_is_printable(optarg)) {
                                log_error("%s takes 1 to %d printable characters.", name, TEXT_OPTION_MAX);
                                return -EINVAL;
                        }
                        *(opt == ARG_REPAIR_ORDER ? &c->repair_order
                          : opt == ARG_CUSTOMER   ? &c->customer
                          : opt == ARG_TECHNICIAN ? &c->technician
                                                  : &c->dealer_code) = optarg;
                        used |= opt == ARG_DEALER_CODE ? VERB_OPT_APPROVAL : VERB_OPT_RECORD;
                        break;
                }
                case ARG_AGREE_ERASE_ALL:
                        c->agree_erase_all = true;
                        used |= VERB_OPT_AGREE_ALL;
                        break;
                case ARG_AGREE_ERASE_KEYS:
                        c->agree_erase_keys = true;
                        used |= VERB_OPT_AGREE_KEYS;
                        break;
                case ARG_KEYS_PRESENT:
                case ARG_NEW_KEYS:
                        if (parse_unsigned_range(optarg, 1, 255, opt == ARG_KEYS_PRESENT ? &c->keys_present : &c->new_keys) <
                            0) {
                                log_error("%s takes a number of keys from 1 to 255, not \"%s\".",
                                          opt == ARG_KEYS_PRESENT ? "--keys-present" : "--new-keys", optarg);
                                return -EINVAL;
                        }
                        if (opt == ARG_KEYS_PRESENT) {
                                c->have_keys_present = true;
                                used |= VERB_OPT_KEYS_PRESENT;
                        } else {
                                c->have_new_keys = true;
                                used |= VERB_OPT_NEW_KEYS;
                        }
                        break;
                case ARG_PASSCODE:
                        if (c->n_passcodes >= ELEMENTSOF(c->passcodes)) {
                                log_error("--passcode can be given at most twice (the reset has two passcode steps).");
                                return -EINVAL;
                        }
                        c->passcodes[c->n_passcodes++] = optarg;
                        used |= VERB_OPT_PASSCODE;
                        break;
                case ARG_FETCH:
                        c->fetch = true;
                        used |= VERB_OPT_PASSCODE;
                        break;
                case ARG_USER:
                        if (!*optarg || strlen(optarg) > TEXT_OPTION_MAX || !text_is_printable(optarg)) {
                                log_error("--user takes a passcode service user id of 1 to %d printable characters.",
                                          TEXT_OPTION_MAX);
                                return -EINVAL;
                        }
                        c->user = optarg;
                        used |= VERB_OPT_LOGIN;
                        break;
                case ARG_PASSWORD_FILE:
                        c->password_file = optarg;
                        used |= VERB_OPT_LOGIN;
                        break;
                case ARG_APPROVER:
                        if (c->n_approvers >= ELEMENTSOF(c->approvers)) {
                                log_error("--approver can be given at most %zu times.", ELEMENTSOF(c->approvers));
                                return -EINVAL;
                        }
                        if (!*optarg || strlen(optarg) > TEXT_OPTION_MAX || !text_is_printable(optarg)) {
                                log_error("--approver takes a manager's user id.");
                                return -EINVAL;
                        }
                        c->approvers[c->n_approvers++] = optarg;
                        used |= VERB_OPT_APPROVAL;
                        break;
                case ARG_ATTEST:
                        c->attestations = optarg;
                        used |= VERB_OPT_APPROVAL;
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
        Context c = { .transport = BUS_TRANSPORT_SYSTEM, .input = INPUT_INIT };
        int r;

        r = run(argc, argv, &c);
        sd_bus_flush_close_unref(c.bus);
        erase_and_free(c.password);
        free(c.user_buf);
        return r;
}
