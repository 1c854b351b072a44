/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * immo-linktest: the link self-test. A tester and a minimal ECU responder talk over two
 * links (the local virtual bus by default, or real SocketCAN: our ISO-TP on CAN_RAW on one
 * side and the kernel's CAN_ISOTP on the other). It exchanges ISO-TP messages of several
 * sizes in both directions under several flow control settings, then runs UDS requests
 * with responsePending runs, negative answers and tester present, and checks every byte.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "frame-link.h"
#include "log.h"
#include "parse-util.h"
#include "transport.h"
#include "uds-link.h"
#include "vbus.h"

#define TESTER_ID 0x750
#define ECU_ID 0x758
#define STEP_TIMEOUT (30 * USEC_PER_SEC)

static const char *arg_tester_link;
static const char *arg_ecu_link;
static bool arg_extended = true;
static uint8_t arg_ext_address = 0x57;
static unsigned arg_pending = 20;
static size_t arg_sizes[16] = { 1, 7, 8, 62, 4095 };
static size_t arg_n_sizes = 5;

typedef struct FlowVariant {
        uint8_t bs, st_min, waits;
} FlowVariant;

static const FlowVariant variants[] = {
        { 0, 0, 0 },
        { 1, 0, 0 },
        { 3, 2, 0 },
        { 8, 0xf5, 0 }, /* 500 µs */
        { 64, 0, 2 },   /* the receiver sends two FC.WAIT before each CTS (our ISO-TP only) */
};

typedef struct Ecu {
        Transport *transport;
        unsigned echoes, tester_present, pending_left;
        uint8_t pending_request[8];
        sd_event_source *pending_timer;
} Ecu;

typedef struct Tester {
        bool got, sent_done;
        int sent_error;
        uint8_t buf[ISOTP_MAX_MESSAGE];
        size_t size;
} Tester;

static sd_event *event;
static Ecu ecu;
static Tester tester;
static unsigned failures;
static unsigned sniffed_frames, sniffed_tester_frames, sniffed_bad_address;

#define CHECK(cond, ...)                                 \
        do {                                             \
                if (!(cond)) {                           \
                        failures++;                      \
                        log_error("FAIL: " __VA_ARGS__); \
                }                                        \
        } while (0)

static int run_until(bool *done, usec_t timeout) {
        usec_t end = now_usec(CLOCK_MONOTONIC) + timeout;
        int r;

        while (!*done) {
                if (now_usec(CLOCK_MONOTONIC) >= end)
                        return -ETIMEDOUT;
                r = sd_event_run(event, 100 * USEC_PER_MSEC);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void run_for(usec_t duration) {
        bool never = false;
        (void) run_until(&never, duration);
}

static void fill_pattern(uint8_t *p, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t) (i * 7 + seed + (i >> 8));
}

/* --- the ECU responder --- */

static void ecu_reply(const uint8_t *data, size_t size) {
        int r = transport_send(ecu.transport, data, size);
        if (r < 0)
                log_error_errno(r, "ECU: cannot answer: %m");
}

static int ecu_on_pending(sd_event_source *s, uint64_t usec, void *userdata) {
        static const uint8_t pending[] = { 0x7f, 0x27, 0x78 };

        if (ecu.pending_left > 0) {
                ecu.pending_left--;
                ecu_reply(pending, sizeof(pending));
                /* each responsePending well inside P2* */
                (void) sd_event_source_set_time_relative(s, 300 * USEC_PER_MSEC);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }

        uint8_t seed[2 + 48] = { 0x67, 0x01 };
        fill_pattern(seed + 2, 48, 0x5a);
        ecu_reply(seed, sizeof(seed));
        return 0;
}

/* Echo for raw ISO-TP messages (first byte 0xEE), a handful of UDS services otherwise. */
static void ecu_on_received(Transport *t, const uint8_t *d, size_t n, void *userdata) {
        static const uint8_t session[] = { 0x50, 0x03, 0x00, 0x32, 0x01, 0xf4 };
        uint8_t out[ISOTP_MAX_MESSAGE];

        if (d[0] == 0xee) {
                for (size_t i = 0; i < n; i++)
                        out[i] = d[i] ^ 0xff;
                out[0] = 0xee;
                ecu.echoes++;
                ecu_reply(out, n);
                return;
        }
        if (n == 2 && d[0] == 0x3e && d[1] == 0x80) {
                ecu.tester_present++;
                return;
        }
        if (n == 2 && d[0] == 0x10 && d[1] == 0x03) {
                ecu_reply(session, sizeof(session));
                return;
        }
        if (n == 3 && d[0] == 0x22 && d[1] == 0xf1 && d[2] == 0x90) {
                memcpy(out, "\x62\xf1\x90"
                            "58ADZ1B16MU000123",
                       3 + 17);
                ecu_reply(out, 3 + 17);
                return;
        }
        if (n == 2 && d[0] == 0x27 && d[1] == 0x01) {
                ecu.pending_left = arg_pending;
                (void) sd_event_source_set_time_relative(ecu.pending_timer, 10 * USEC_PER_MSEC);
                (void) sd_event_source_set_enabled(ecu.pending_timer, SD_EVENT_ONESHOT);
                return;
        }
        if (n == 8 && d[0] == 0x27 && d[1] == 0x02) {
                const uint8_t invalid_key[] = { 0x7f, 0x27, 0x35 };
                ecu_reply(invalid_key, sizeof(invalid_key));
                return;
        }
        out[0] = 0x7f;
        out[1] = d[0];
        out[2] = 0x11; /* serviceNotSupported */
        ecu_reply(out, 3);
}

/* --- the tester's raw ISO-TP side --- */

static void tester_on_received(Transport *t, const uint8_t *d, size_t n, void *userdata) {
        memcpy(tester.buf, d, n);
        tester.size = n;
        tester.got = true;
}

static void tester_on_sent(Transport *t, int error, void *userdata) {
        tester.sent_error = error;
        tester.sent_done = true;
}

static void any_receive_failed(Transport *t, int error, const char *cause, void *userdata) {
        failures++;
        log_error("FAIL: %s lost a message: %s", transport_describe(t), cause);
}

static void sniffer_on_frame(FrameLink *l, const struct can_frame *f, void *userdata) {
        sniffed_frames++;
        if (f->can_id == TESTER_ID) {
                sniffed_tester_frames++;
                if (arg_extended && (f->len < 1 || f->data[0] != arg_ext_address))
                        sniffed_bad_address++;
        }
}

static void config_for(IsoTpConfig *c, bool is_ecu, const FlowVariant *v) {
        isotp_config_init(c);
        c->tx_id = is_ecu ? ECU_ID : TESTER_ID;
        c->rx_id = is_ecu ? TESTER_ID : ECU_ID;
        c->extended = arg_extended;
        c->tx_ext_address = c->rx_ext_address = arg_ext_address;
        c->tx_padding = true;
        c->padding_byte = 0x55;
        c->block_size = v->bs;
        c->st_min = v->st_min;
        c->wait_frames = v->waits;
}

/* The ECU end: on a vbus link the ECU hosts the hub, as the simulator does. */
static int open_ecu(VbusHub **hub, const FlowVariant *v) {
        IsoTpConfig c;
        LinkUri u;
        int r;

        config_for(&c, true, v);
        r = link_uri_parse(arg_ecu_link, &u, NULL);
        if (r < 0)
                return r;
        if (u.kind == LINK_VBUS) {
                if (!*hub) {
                        r = vbus_hub_new(event, u.name, hub);
                        if (r < 0)
                                return r;
                }
                r = transport_open_on_frames(vbus_hub_local_link(*hub), &c, &ecu.transport);
        } else
                r = transport_open(event, arg_ecu_link, &c, &ecu.transport);
        if (r < 0)
                return r;
        if (v->waits > 0 && transport_set_flow_control(ecu.transport, v->bs, v->st_min, v->waits) < 0)
                log_info("  (this ECU link cannot send FC.WAIT frames; testing without)");
        transport_set_handlers(ecu.transport,
                               &(TransportHandlers) { .received = ecu_on_received, .receive_failed = any_receive_failed },
                               NULL);
        return 0;
}

static int open_tester(Transport **ret, const FlowVariant *v) {
        IsoTpConfig c;
        int r;

        config_for(&c, false, v);
        r = transport_open(event, arg_tester_link, &c, ret);
        if (r < 0)
                return r;
        if (v->waits > 0)
                (void) transport_set_flow_control(*ret, v->bs, v->st_min, v->waits);
        /* A vbus peer connects at once; give any link a moment to come up. */
        for (unsigned i = 0; i < 20 && transport_get_link_state(*ret) != LINK_STATE_UP; i++)
                run_for(50 * USEC_PER_MSEC);
        return 0;
}

static void exchange_messages(const FlowVariant *v) {
        _cleanup_(transport_freep) Transport *t = NULL;
        uint8_t msg[ISOTP_MAX_MESSAGE];
        int r;

        r = open_tester(&t, v);
        if (r < 0) {
                CHECK(false, "cannot open the tester link %s", arg_tester_link);
                return;
        }
        transport_set_handlers(t,
                               &(TransportHandlers) {
                                       .received = tester_on_received,
                                       .sent = tester_on_sent,
                                       .receive_failed = any_receive_failed,
                               },
                               NULL);

        for (size_t i = 0; i < arg_n_sizes; i++) {
                size_t size = arg_sizes[i];
                usec_t start = now_usec(CLOCK_MONOTONIC);
                bool ok = true;

                fill_pattern(msg, size, (unsigned) size);
                msg[0] = 0xee;
                tester = (Tester) {};
                r = transport_send(t, msg, size);
                CHECK(r >= 0, "send of %zu bytes refused: %s", size, strerror(-r));
                if (r < 0)
                        continue;
                r = run_until(&tester.got, STEP_TIMEOUT);
                CHECK(r >= 0, "no echo of the %zu-byte message (BS %u, STmin 0x%02X)", size, v->bs, v->st_min);
                if (r < 0)
                        continue;
                CHECK(tester.sent_done && tester.sent_error == 0, "sending %zu bytes reported %s", size,
                      strerror(-tester.sent_error));
                CHECK(tester.size == size, "echo of %zu bytes came back with %zu", size, tester.size);
                for (size_t k = 1; k < size && tester.size == size; k++)
                        if ((tester.buf[k] ^ msg[k]) != 0xff) {
                                CHECK(false, "echo of %zu bytes differs at byte %zu", size, k);
                                ok = false;
                                break;
                        }
                if (ok)
                        log_info("  %4zu bytes there and back: %.1f ms", size,
                                 (now_usec(CLOCK_MONOTONIC) - start) / 1000.0);
        }
}

/* --- UDS --- */

typedef struct Answer {
        bool done;
        UdsResponse r;
        uint8_t data[ISOTP_MAX_MESSAGE];
} Answer;

static void on_answer(UdsClient *c, const UdsResponse *resp, void *userdata) {
        Answer *a = userdata;

        a->r = *resp;
        if (resp->data) {
                memcpy(a->data, resp->data, resp->size);
                a->r.data = a->data;
        }
        a->done = true;
}

static int uds_call(UdsLink *l, const uint8_t *req, size_t n, Answer *a) {
        int r;

        *a = (Answer) {};
        r = uds_link_request(l, req, n, on_answer, a);
        if (r < 0)
                return r;
        return run_until(&a->done, 120 * USEC_PER_SEC);
}

static void exchange_uds(void) {
        static const FlowVariant plain = {};
        _cleanup_(uds_link_freep) UdsLink *l = NULL;
        UdsClientConfig uc;
        Transport *t;
        Answer a;
        char text[160];
        int r;

        r = open_tester(&t, &plain);
        if (r < 0) {
                CHECK(false, "cannot open the tester link");
                return;
        }
        uds_client_config_init(&uc);
        uc.tester_present = 2 * USEC_PER_SEC;
        r = uds_link_new(t, &uc, &l);
        if (r < 0) {
                transport_free(t);
                CHECK(false, "cannot start the UDS client: %s", strerror(-r));
                return;
        }

        r = uds_call(l, (const uint8_t[]) { 0x10, 0x03 }, 2, &a);
        CHECK(r >= 0 && a.r.error == 0 && a.r.nrc == 0 && a.r.size == 6 && a.data[0] == 0x50,
              "extended session not entered");
        log_info("  10 03 -> extended session, P2 %u ms, P2* %u ms", a.r.size == 6 ? be16(a.data + 2) : 0,
                 a.r.size == 6 ? be16(a.data + 4) * 10 : 0);

        r = uds_call(l, (const uint8_t[]) { 0x22, 0xf1, 0x90 }, 3, &a);
        CHECK(r >= 0 && a.r.error == 0 && a.r.size == 20 && memcmp(a.data + 3, "58ADZ1B16MU000123", 17) == 0,
              "VIN not read");
        log_info("  22 F190 -> VIN %.17s", a.r.size == 20 ? (const char *) a.data + 3 : "?");

        unsigned tp_before = ecu.tester_present;
        r = uds_call(l, (const uint8_t[]) { 0x27, 0x01 }, 2, &a);
        CHECK(r >= 0 && a.r.error == 0 && a.r.nrc == 0 && a.r.size == 50 && a.r.pending == arg_pending,
              "seed after %u responsePending not received (error %d, pending %u)", arg_pending, a.r.error,
              a.r.pending);
        log_info("  27 01 -> seed after %u x responsePending; tester present went on meanwhile: %u sent",
                 a.r.pending, ecu.tester_present - tp_before);
        CHECK(arg_pending < 10 || ecu.tester_present - tp_before >= 2,
              "tester present stopped while an answer was pending");

        r = uds_call(l, (const uint8_t[]) { 0x27, 0x02, '1', '2', '3', '4', '5', '6' }, 8, &a);
        uds_nrc_describe(0x27, a.r.nrc, text, sizeof(text));
        CHECK(r >= 0 && a.r.error == 0 && a.r.nrc == 0x35, "a wrong key was not answered with invalidKey");
        log_info("  27 02 wrong key -> %s", text);

        r = uds_call(l, (const uint8_t[]) { 0x19, 0x02, 0xff }, 3, &a);
        CHECK(r >= 0 && a.r.error == 0 && a.r.nrc == 0x11, "an unknown service was not refused");
        log_info("  19 02 FF -> %s", uds_nrc_to_string(a.r.nrc));
}

static int parse_sizes(const char *s) {
        char *copy = strdupa(s), *tok, *save = NULL;

        arg_n_sizes = 0;
        for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                unsigned long v;
                if (parse_uint_range(tok, 1, ISOTP_MAX_MESSAGE, &v) < 0 || arg_n_sizes >= ELEMENTSOF(arg_sizes))
                        return log_error_errno(EINVAL, "--sizes takes up to 16 sizes of 1..4095 bytes, e.g. 1,8,4095");
                arg_sizes[arg_n_sizes++] = v;
        }
        return arg_n_sizes > 0 ? 0 : -EINVAL;
}

static void help(void) {
        printf("immo-linktest [OPTIONS]\n\n"
               "Self-test of the vehicle link: a tester and a small ECU responder exchange ISO-TP\n"
               "messages and UDS requests and check every byte.\n\n"
               "  --tester-link URI     the tester's link (default: vbus:<temporary socket>)\n"
               "  --ecu-link URI        the responder's link; vbus: hosts the hub (default: same as tester)\n"
               "  --normal-addressing   no extended address byte (default: extended, 0x57)\n"
               "  --sizes N,N,...       message sizes (default: 1,7,8,62,4095)\n"
               "  --pending N           responsePending answers before the seed (default: 20)\n"
               "  -v, --verbose         debug logging\n"
               "  -h, --help            this text\n\n"
               "Links: vbus:/PATH (the local virtual bus), socketcan:IF (our ISO-TP on CAN_RAW),\n"
               "socketcan-isotp:IF (the kernel's ISO-TP).\n"
               "Exit status: 0 when every check passed, 1 when one failed, 2 for bad usage.\n");
}

static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_TESTER = 0x100,
                ARG_ECU,
                ARG_NORMAL,
                ARG_SIZES,
                ARG_PENDING,
        };
        static const struct option options[] = {
                { "tester-link", required_argument, NULL, ARG_TESTER },
                { "ecu-link", required_argument, NULL, ARG_ECU },
                { "normal-addressing", no_argument, NULL, ARG_NORMAL },
                { "sizes", required_argument, NULL, ARG_SIZES },
                { "pending", required_argument, NULL, ARG_PENDING },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *reason;
        LinkUri u;
        int c;

        while ((c = getopt_long(argc, argv, "vh", options, NULL)) >= 0)
                switch (c) {
                case ARG_TESTER:
                        arg_tester_link = optarg;
                        break;
                case ARG_ECU:
                        arg_ecu_link = optarg;
                        break;
                case ARG_NORMAL:
                        arg_extended = false;
                        break;
                case ARG_SIZES:
                        if (parse_sizes(optarg) < 0)
                                return -EINVAL;
                        break;
                case ARG_PENDING:
                        if (parse_unsigned_range(optarg, 0, 1000, &arg_pending) < 0)
                                return log_error_errno(EINVAL, "--pending takes 0..1000, got '%s'", optarg);
                        break;
                case 'v':
                        log_set_max_level(LOG_DEBUG);
                        break;
                case 'h':
                        help();
                        exit(0);
                default:
                        return -EINVAL;
                }
        if (optind < argc)
                return log_error_errno(EINVAL, "unexpected argument '%s'; see --help", argv[optind]);

        if (arg_tester_link && link_uri_parse(arg_tester_link, &u, &reason) < 0)
                return log_error_errno(EINVAL, "--tester-link: %s", reason);
        if (arg_ecu_link && link_uri_parse(arg_ecu_link, &u, &reason) < 0)
                return log_error_errno(EINVAL, "--ecu-link: %s", reason);
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_(vbus_hub_freep) VbusHub *hub = NULL;
        _cleanup_(frame_link_freep) FrameLink *sniffer = NULL;
        char default_link[128];
        LinkUri u;
        int r;

        log_set_ident("immo-linktest");
        if (parse_argv(argc, argv) < 0)
                return 2;
        if (!arg_tester_link) {
                snprintf(default_link, sizeof(default_link), "vbus:%s/immo-linktest-%d.sock",
                         getenv("XDG_RUNTIME_DIR") ?: "/tmp", (int) getpid());
                arg_tester_link = default_link;
        }
        if (!arg_ecu_link)
                arg_ecu_link = arg_tester_link;

        r = sd_event_default(&event);
        if (r < 0)
                return log_error_errno(r, "cannot create the event loop: %m"), 1;
        r = sd_event_add_time(event, &ecu.pending_timer, CLOCK_MONOTONIC, USEC_INFINITY, 0, ecu_on_pending, NULL);
        if (r < 0)
                return 1;
        (void) sd_event_source_set_enabled(ecu.pending_timer, SD_EVENT_OFF);

        log_info("tester on %s, ECU responder on %s, %s addressing", arg_tester_link, arg_ecu_link,
                 arg_extended ? "extended (0x57)" : "normal");

        for (size_t i = 0; i < ELEMENTSOF(variants); i++) {
                const FlowVariant *v = &variants[i];

                log_info("ISO-TP both ways, receivers advertise BS %u STmin 0x%02X%s:", v->bs, v->st_min,
                         v->waits ? ", FC.WAIT x2 before each CTS" : "");
                r = open_ecu(&hub, v);
                if (r < 0)
                        return log_error_errno(r, "cannot open the ECU link %s: %m", arg_ecu_link), 1;
                if (i == 0 && hub && link_uri_parse(arg_tester_link, &u, NULL) >= 0 && u.kind == LINK_VBUS &&
                    frame_link_open(event, &u, &sniffer) >= 0) {
                        /* a third peer on the bus sees every frame, as candump would */
                        frame_link_accept_all(sniffer);
                        frame_link_set_handlers(sniffer, &(FrameLinkHandlers) { .frame = sniffer_on_frame }, NULL);
                }
                exchange_messages(v);
                ecu.transport = transport_free(ecu.transport);
        }

        log_info("UDS over %s:", arg_tester_link);
        r = open_ecu(&hub, &variants[0]);
        if (r < 0)
                return 1;
        exchange_uds();
        ecu.transport = transport_free(ecu.transport);

        if (sniffer) {
                run_for(100 * USEC_PER_MSEC);
                log_info("sniffer on the virtual bus saw %u frames, %u from the tester", sniffed_frames,
                         sniffed_tester_frames);
                CHECK(sniffed_tester_frames > 0, "the sniffer saw no frame from the tester");
                CHECK(sniffed_bad_address == 0, "%u tester frames without the extended address byte",
                      sniffed_bad_address);
        }

        sd_event_source_disable_unref(ecu.pending_timer);
        sd_event_unref(event);
        if (failures > 0) {
                log_error("%u check(s) failed", failures);
                return 1;
        }
        log_info("link self-test passed: %u echoes", ecu.echoes);
        return 0;
}
