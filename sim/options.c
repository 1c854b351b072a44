/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <stdio.h>

#include "hex.h"
#include "link.h"
#include "log.h"
#include "parse-util.h"
#include "options.h"

static void help(void) {
        printf("immo-ecusim --link URI --vin VIN --model NAME --master-key-file FILE [OPTIONS]\n"
               "\n"
               "The simulated immobilizer / smart key ECU of vehicle-protocol.md: UDS on ISO-TP,\n"
               "CAN ids 0x750 (tester) / 0x758 (ECU), extended address 0x57, padding 0x55.\n"
               "\n"
               "  --link URI              vbus:PATH (hosts the local virtual bus at PATH),\n"
               "                          socketcan:IF (our ISO-TP on CAN_RAW) or\n"
               "                          socketcan-isotp:IF (the kernel's ISO-TP)\n"
               "  --vin VIN               17 characters 0-9 A-Z without I, O, Q\n"
               "  --model NAME            as in the bulletins, e.g. \"ES 350\" (1..%d chars)\n"
               "  --master-key-file FILE  64 hex digits (white space ignored)\n"
               "  --keys ID,ID,...        keys of a new car, 8 hex digits each\n"
               "  --max-slots N           key slots, 1..7 (default 7)\n"
               "  --time-scale N          divide the vehicle's durations by N (default 1)\n"
               "  --window-scale N        divide the erasure window and the registration\n"
               "                          timeout by N (default: the time scale)\n"
               "  --sleep-after SECONDS   sleep after this long without a request (default\n"
               "                          30, never scaled; S3 is never scaled either)\n"
               "  --battery VOLTS         +B at start, 0..30 (default 12.6)\n"
               "  --revocation-file FILE  revocation list shared by simulated vehicles\n"
               "  --state FILE            keep the car (keys, Data1, revoked keys, counters,\n"
               "                          a running reset) across runs; --keys and --data1\n"
               "                          only seed a new state\n"
               "  --control PATH          the control socket (below)\n"
               "  --data1 HEX11           the ECU's 44-bit identity (default: from the VIN)\n"
               "  --session-repeat=end|keep\n"
               "                          a 10 03 while already in the extended session\n"
               "                          relocks security; 'end' (default) also ends an\n"
               "                          open registration mode or erasure window, 'keep'\n"
               "                          leaves them open (10 01, S3 and sleep end them)\n"
               "  -v, --verbose           debug logging\n"
               "  -h, --help, --version\n"
               "\n"
               "Control socket: a Unix stream socket, one command per line (at most 255\n"
               "characters, at most 8 connections), one JSON object per answer line:\n"
               "{\"ok\": true, ...} or {\"ok\": false, \"error\": \"...\"}.\n"
               "  touch ID                a key (8 hex digits) touches the start switch\n"
               "  courtesy                press the door courtesy switch (wakes the ECU)\n"
               "  door open|closed        the driver door (a change wakes the ECU)\n"
               "  ignition on|off\n"
               "  speed KMH               0..400; moving refuses A102/A103\n"
               "  battery VOLTS           0..30; below 9.0 a running reset fails\n"
               "  sleep                   the ECU sleeps at once\n"
               "  state                   the whole ECU state as one JSON object\n"
               "  events                  the connection then also carries one line per\n"
               "                          beep {\"type\":\"beep\"} and per key event\n"
               "                          {\"type\":\"event\",\"event\":N,\"name\":...,\"slot\":S,\"key\":ID}\n"
               "  fault pending N [REQ]   N x 7F SID 78, 100 ms apart, before the next answer\n"
               "                          (with REQ: the answer to the next request that\n"
               "                          starts with REQ, hex such as 27 or 3101A102)\n"
               "  fault delay MS [REQ]    hold the next answer (to REQ) back MS milliseconds\n"
               "  fault nrc SID NRC       answer the next request of SID with 7F SID NRC (hex)\n"
               "  fault drop N            drop the next N frames the ECU sends\n"
               "  fault fc BS STMIN WAITS flow control for the next multi-frame request\n"
               "  fault truncate [frame|answer]\n"
               "                          cut the next answer's first frame short (frame,\n"
               "                          the default) or send it a byte short (answer)\n"
               "\n"
               "Exit status: 0 after SIGTERM/SIGINT, 1 on failure, 2 on a usage error.\n",
               ECU_MODEL_MAX);
}

static int parse_keys(const char *s, EcuOptions *o) {
        char buf[ECU_MAX_SLOTS * 9 + 1], *save = NULL, *tok;

        if (strlen(s) >= sizeof(buf))
                return -E2BIG;
        strcpy(buf, s);
        o->n_keys = 0;
        if (!*s || s[strlen(s) - 1] == ',' || *s == ',' || strstr(s, ",,"))
                return -EINVAL;
        for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                uint32_t id;

                if (o->n_keys >= ECU_MAX_SLOTS || parse_key_id(tok, &id) < 0)
                        return -EINVAL;
                for (unsigned i = 0; i < o->n_keys; i++)
                        if (o->keys[i] == id)
                                return -EEXIST;
                o->keys[o->n_keys++] = id;
        }
        return 0;
}

#define usage_error(...)                                        \
        ({                                                      \
                fprintf(stderr, "immo-ecusim: " __VA_ARGS__);   \
                fputs("\nTry 'immo-ecusim --help'.\n", stderr); \
                -EINVAL;                                        \
        })

int parse_argv(int argc, char *argv[], EcuOptions *o, bool *ret_verbose) {
        enum {
                ARG_LINK = 0x100,
                ARG_VIN,
                ARG_MODEL,
                ARG_MASTER,
                ARG_KEYS,
                ARG_MAX_SLOTS,
                ARG_TIME_SCALE,
                ARG_WINDOW_SCALE,
                ARG_SLEEP_AFTER,
                ARG_BATTERY,
                ARG_REVOCATION,
                ARG_STATE,
                ARG_CONTROL,
                ARG_DATA1,
                ARG_SESSION_REPEAT,
                ARG_VERSION,
        };
        static const struct option options[] = {
                { "link", required_argument, NULL, ARG_LINK },
                { "vin", required_argument, NULL, ARG_VIN },
                { "model", required_argument, NULL, ARG_MODEL },
                { "master-key-file", required_argument, NULL, ARG_MASTER },
                { "keys", required_argument, NULL, ARG_KEYS },
                { "max-slots", required_argument, NULL, ARG_MAX_SLOTS },
                { "time-scale", required_argument, NULL, ARG_TIME_SCALE },
                { "window-scale", required_argument, NULL, ARG_WINDOW_SCALE },
                { "sleep-after", required_argument, NULL, ARG_SLEEP_AFTER },
                { "battery", required_argument, NULL, ARG_BATTERY },
                { "revocation-file", required_argument, NULL, ARG_REVOCATION },
                { "state", required_argument, NULL, ARG_STATE },
                { "control", required_argument, NULL, ARG_CONTROL },
                { "data1", required_argument, NULL, ARG_DATA1 },
                { "session-repeat", required_argument, NULL, ARG_SESSION_REPEAT },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        bool window_set = false;
        const char *reason;
        LinkUri uri;
        int c;

        *o = (EcuOptions) {
                .max_slots = ECU_MAX_SLOTS,
                .time_scale = 1,
                .window_scale = 1,
                .sleep_after_sec = 30,
                .battery_mv = 12600,
        };
        *ret_verbose = false;
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":vh", options, NULL)) >= 0) {
                switch (c) {
                case ARG_LINK:
                        if (link_uri_parse(optarg, &uri, &reason) < 0)
                                return usage_error("--link: %s", reason);
                        o->link = optarg;
                        break;
                case ARG_VIN:
                        if (vin_check_syntax(optarg, &reason) < 0)
                                return usage_error("--vin: %s", reason);
                        o->vin = optarg;
                        break;
                case ARG_MODEL: {
                        size_t l = strlen(optarg);
                        bool printable = true;
                        for (size_t i = 0; i < l; i++)
                                printable = printable && optarg[i] >= 0x20 && optarg[i] < 0x7f;
                        if (l == 0 || l > ECU_MODEL_MAX || !printable || optarg[0] == ' ')
                                return usage_error("--model expects 1..%d printable ASCII characters, e.g. \"ES 350\"",
                                                   ECU_MODEL_MAX);
                        o->model = optarg;
                        break;
                }
                case ARG_MASTER:
                        if (!*optarg)
                                return usage_error("--master-key-file expects a file of 64 hex digits");
                        o->master_key_file = optarg;
                        break;
                case ARG_KEYS:
                        if (parse_keys(optarg, o) < 0)
                                return usage_error("--keys expects 1..7 distinct key ids of 8 hex digits, separated "
                                                   "by commas, e.g. 1A2B3C4D,0000BEEF");
                        break;
                case ARG_MAX_SLOTS:
                        if (parse_unsigned_range(optarg, 1, ECU_MAX_SLOTS, &o->max_slots) < 0)
                                return usage_error("--max-slots expects a whole number 1..7");
                        break;
                case ARG_TIME_SCALE:
                        if (parse_unsigned_range(optarg, 1, 1000000, &o->time_scale) < 0)
                                return usage_error("--time-scale expects a whole number 1..1000000");
                        break;
                case ARG_WINDOW_SCALE:
                        if (parse_unsigned_range(optarg, 1, 1000000, &o->window_scale) < 0)
                                return usage_error("--window-scale expects a whole number 1..1000000");
                        window_set = true;
                        break;
                case ARG_SLEEP_AFTER:
                        if (parse_unsigned_range(optarg, 1, 86400, &o->sleep_after_sec) < 0)
                                return usage_error("--sleep-after expects whole seconds 1..86400");
                        break;
                case ARG_BATTERY:
                        if (parse_volts_mv(optarg, 30.0, &o->battery_mv) < 0)
                                return usage_error("--battery expects volts 0..30, e.g. 12.6");
                        break;
                case ARG_REVOCATION:
                        if (!*optarg)
                                return usage_error("--revocation-file expects a file name");
                        o->revocation_file = optarg;
                        break;
                case ARG_STATE:
                        if (!*optarg)
                                return usage_error("--state expects a file name");
                        o->state_file = optarg;
                        break;
                case ARG_CONTROL:
                        if (!*optarg || strlen(optarg) >= sizeof(((struct sockaddr_un *) 0)->sun_path))
                                return usage_error("--control expects a socket path of 1..107 bytes");
                        o->control_path = optarg;
                        break;
                case ARG_DATA1: {
                        char buf[13];
                        uint8_t b[6];
                        if (strlen(optarg) != PASSCODE_DATA1_LEN)
                                return usage_error("--data1 expects exactly 11 hex digits");
                        snprintf(buf, sizeof(buf), "0%s", optarg);
                        if (hex_decode(buf, b, sizeof(b)) < 0)
                                return usage_error("--data1 expects exactly 11 hex digits");
                        o->data1 = 0;
                        for (unsigned i = 0; i < 6; i++)
                                o->data1 = o->data1 << 8 | b[i];
                        o->have_data1 = true;
                        break;
                }
                case ARG_SESSION_REPEAT:
                        if (streq(optarg, "end"))
                                o->session_repeat_keep = false;
                        else if (streq(optarg, "keep"))
                                o->session_repeat_keep = true;
                        else
                                return usage_error("--session-repeat expects 'end' or 'keep'");
                        break;
                case 'v':
                        *ret_verbose = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("immo-ecusim %s\n", IMMOD_VERSION);
                        return 0;
                case ':':
                        return usage_error("option '%s' needs an argument", argv[optind - 1]);
                default:
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind < argc)
                return usage_error("unexpected argument '%s'", argv[optind]);
        if (!o->link || !o->vin || !o->model || !o->master_key_file)
                return usage_error("--link, --vin, --model and --master-key-file are required");
        if (o->n_keys > o->max_slots)
                return usage_error("--keys lists %u keys but --max-slots is %u", o->n_keys, o->max_slots);
        if (!window_set)
                o->window_scale = o->time_scale;
        return 1;
}
