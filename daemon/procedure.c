/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "audit.h"
#include "battery-source.h"
#include "bus-error.h"
#include "checkchar.h"
#include "ecu-gate.h"
#include "hex.h"
#include "immo-protocol.h"
#include "log.h"
#include "manager.h"
#include "procedure.h"
#include "uds-link.h"

/* The poll timer is armed for the next thing due (next_poll()), so that a procedure waiting
 * for a person wakes immod little more than tester present does. POLL_INTERVAL_USEC: the
 * reset's progress (4 changes a second at most), and a request on its way (the gate's ticks). */
#define POLL_INTERVAL_USEC (250 * USEC_PER_MSEC)
#define RESULTS_INTERVAL_USEC (1000 * USEC_PER_MSEC) /* key touches, while a person touches keys */
#define PROBE_INTERVAL_USEC (1000 * USEC_PER_MSEC)   /* a sleeping ECU, a lockout's countdown */
/* The probe goes this much before tester present would, and so takes its place (uds.h). */
#define PROBE_LEAD_USEC (100 * USEC_PER_MSEC)
#define PROBE_LATE_LOG_USEC (5 * USEC_PER_MSEC) /* a later probe is logged (debug) */

static const char *const event_names[] = {
        [EVENT_RECOGNISED] = "registered-key-recognised",
        [EVENT_REGISTERED] = "key-registered",
        [EVENT_REJECTED_ERASED] = "rejected-erased",
        [EVENT_REJECTED_NO_SLOT] = "rejected-no-slot",
        [EVENT_REJECTED_ALREADY] = "rejected-already-registered",
        [EVENT_TIMED_OUT] = "timed-out",
        [EVENT_KEPT] = "key-kept",
        [EVENT_UNKNOWN_KEY] = "unknown-key",
};

static const char *const fail_reasons[] = {
        [RESET_FAIL_NONE] = "none",
        [RESET_FAIL_VOLTAGE] = "the battery voltage fell too low",
        [RESET_FAIL_INTERNAL] = "an internal ECU error",
};

/* The engine's own state, after what the bus shows (procedure.h). */
struct Procedure {
        ProcedureView view; /* first: the bus's object pointer is both */
        Manager *manager;
        Daemon *daemon;
        const VehicleProfile *profile;
        char passcode[PASSCODE_SMART_CODE_LEN + 1]; /* normalised, until sent; wiped on every path */

        int keys_before;
        BatteryTrace *battery_trace; /* every reading while the procedure runs */
        BatteryState battery_state;  /* as last told by the battery watch */
        usec_t battery_emit_at;      /* BatteryMinimum: at most 4 PropertiesChanged a second */
        unsigned passcode_attempts;
        int reg_mode;            /* A102 mode, 0 when none started */
        unsigned reg_restarts;   /* registration mode restarted after idle timeouts, no touch since */
        unsigned reg_added_base; /* Keys.added when registration mode last started */
        EcuOpen open;
        bool reset_sent;        /* 31 01 A101 left (journalled): the reset may run */
        bool erase_sent;        /* 31 02 A103 left (journalled): keys may be deleted */
        const char *stopped_at; /* the step a restart interrupted (static step table) */
        bool rejected;          /* the seed being fetched follows a wrong passcode */

        EcuGate *gate;           /* one ECU request at a time, dropped when the procedure ends (ecu-gate.h) */
        sd_bus_message *pending; /* the method call answered when the chain ends */
        sd_bus_message *cancel;  /* Cancel(), answered once nothing is in flight and all is closed */
        Readback readback;
        unsigned a002_state; /* as read back */
        unsigned close_tries;
        int a101_status;         /* as read back; -1: unknown */
        unsigned rb_known;       /* RB_KNOWN_*: what this readback could read */
        unsigned key_reads;      /* the last key status read after a change, asked again this often */
        bool unsure;             /* a readback could not tell what the car did: read again, nothing else */
        char readback_note[256]; /* what the readback found, for the prompt and the record */
        sd_event_source *poll;
        bool asleep;
        usec_t last_probe;
};

_Static_assert(offsetof(struct Procedure, view) == 0, "a Procedure starts with its view");

enum {
        RB_KNOWN_STATE = 1U << 0, /* DID A002 */
        RB_KNOWN_RESET = 1U << 1, /* A101's results */
        RB_KNOWN_KEYS = 1U << 2,  /* DID A001 */
};

/* Between the readbacks of a procedure that could not read the car back (unsure). */
#define UNSURE_RETRY_USEC (2 * USEC_PER_SEC)

Daemon *procedure_daemon(const Procedure *p) {
        return p->daemon;
}

Manager *procedure_manager(const Procedure *p) {
        return p->manager;
}

const VehicleProfile *procedure_profile(const Procedure *p) {
        return p->profile;
}

bool procedure_can_serve(const Procedure *p) {
        return !p->cancel && p->readback == READBACK_NONE && !p->pending && !procedure_busy(p);
}

bool procedure_polling(const Procedure *p) {
        return procedure_busy(p) && !p->pending && !p->cancel;
}

/* The owner's flags of a request through the gate (ecu-gate.h). */
enum {
        REQUEST_CHANGES_CAR = ECU_GATE_OWNER_FLAGS << 0, /* its continuation records what the car did,
                                                          * even during a Cancel */
        REQUEST_RAW = ECU_GATE_OWNER_FLAGS << 1,         /* its continuation sees every outcome,
                                                          * errors included (FetchPasscode) */
        REQUEST_KEY_EVENTS = ECU_GATE_OWNER_FLAGS << 2,  /* key events, which the ECU reports once:
                                                          * counted even during a Cancel */
};

static void enter_step(Procedure *p, size_t idx);
static void readback(Procedure *p, Readback why);
static void finish(Procedure *p, JournalState state, const char *error, const char *fmt, ...) _printf_(4, 5);

const char *procedure_step_id(const Procedure *p) {
        return p->view.steps[p->view.step].id;
}

bool procedure_is_active(const Procedure *p) {
        return p->view.state == JOURNAL_STATE_RUNNING || p->view.state == JOURNAL_STATE_WAITING;
}

static const StepInfo *step_info(const Procedure *p) {
        return &p->view.steps[p->view.step];
}

bool procedure_busy(const Procedure *p) {
        return ecu_gate_busy(p->gate);
}

static void set_prompt(Procedure *p, const char *fmt, ...) _printf_(2, 3);
static void set_prompt(Procedure *p, const char *fmt, ...) {
        char buf[sizeof(p->view.prompt)];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (streq(buf, p->view.prompt))
                return;
        memcpy(p->view.prompt, buf, sizeof(buf));
        p->view.dirty |= PROP_PROMPT;
}

static void set_uint(Procedure *p, unsigned *field, unsigned v, unsigned prop) {
        if (*field == v)
                return;
        *field = v;
        p->view.dirty |= prop;
}

static void set_state(Procedure *p, JournalState s) {
        if (p->view.state == s)
                return;
        p->view.state = s;
        p->view.dirty |= PROP_STATE;
}

static void clear_seed(Procedure *p) {
        if (!p->view.have_seed)
                return;
        p->view.have_seed = false;
        p->view.dirty |= PROP_SEED;
}

static void note_battery(Procedure *p, double v) {
        if (isnan(v))
                return;
        if (isnan(p->view.battery_min) || v < p->view.battery_min) {
                p->view.battery_min = v;
                p->view.dirty |= PROP_BATTERY_MIN;
        }
}

void procedure_battery_sample(Procedure *p, double volts, usec_t now) {
        if (!procedure_is_active(p))
                return;
        if (p->battery_trace)
                (void) battery_trace_add(p->battery_trace, volts, now);
        note_battery(p, volts);
        if ((p->view.dirty & PROP_BATTERY_MIN) &&
            (p->battery_emit_at == 0 || now >= p->battery_emit_at + BATTERY_NOTIFY_INTERVAL_USEC)) {
                p->battery_emit_at = now;
                procedure_bus_emit(p);
        }
        /* else the next emit (a step, the poll) carries it */
}

void procedure_battery_state(Procedure *p, BatteryState s) {
        BatteryState before = p->battery_state;

        p->battery_state = s;
        if (s == before || !procedure_is_active(p))
                return;
        bool resetting = step_info(p)->poll == POLL_RESET;
        if (s != BATTERY_STATE_CRITICAL) {
                /* recovered: the reset's own prompt again */
                if (resetting && before == BATTERY_STATE_CRITICAL) {
                        set_prompt(p, "%s", p->view.steps[p->view.step].prompt);
                        procedure_bus_emit(p);
                }
                return;
        }
        if (resetting) {
                /* The reset is never aborted: stopping it is refused by the ECU and would leave the
                 * car half reset. The person at the car must bring the voltage up (bulletins:
                 * "attaching a battery charger may be necessary"). */
                log_warning("Procedure %" PRIu64 ": the battery is critical (%.2f V, below %.2f V) during the "
                            "reset; the ECU fails the reset below 9 V.",
                            p->view.id, battery_monitor_voltage(battery_watch_monitor(manager_battery(p->manager))),
                            p->profile->battery.warn_below_v);
                set_prompt(p, "The battery is critically low during the reset: connect a battery charger (or the "
                              "power supply, holding 13.5 V) now. The reset goes on: do not switch anything off "
                              "or disconnect; the ECU fails the reset below 9 V.");
                procedure_bus_emit(p);
        } else
                log_warning("Procedure %" PRIu64 ": the battery is critical (below %.2f V).", p->view.id,
                            p->profile->battery.warn_below_v);
}

/* Journal */

static int journal(Procedure *p, const char *sent_command) {
        JournalRecord rec = {
                .id = p->view.id,
                .kind = p->view.kind,
                .vin = p->view.vin,
                .profile = p->profile->name,
                .owner = p->view.owner,
                .technician = p->view.technician,
                .repair_order = p->view.repair_order,
                .customer_last_name = p->view.customer_last_name,
                .created = p->view.created,
                .step = procedure_step_id(p),
                .sent_command = (char *) sent_command,
                .sent_at = sent_command ? now_usec(CLOCK_REALTIME) : 0,
                .keys_before = p->keys_before,
                .battery_min = p->view.battery_min,
                .passcode_attempts = MIN(p->passcode_attempts, JOURNAL_ATTEMPTS_MAX),
                .state = p->view.state,
        };
        int r;

        r = journal_write(p->daemon->config.state_dir, &rec);
        if (r < 0)
                log_error_errno(r, "Procedure %" PRIu64 ": failed to write the journal: %m", p->view.id);
        return r;
}

/* Method replies */

static void reply_ok(Procedure *p) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = TAKE_PTR(p->pending);
        int r;

        procedure_bus_emit(p);
        if (!m)
                return;
        r = sd_bus_reply_method_return(m, NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to reply: %m");
}

static void reply_error(Procedure *p, const char *name, const char *fmt, ...) _printf_(3, 4);
static void reply_error(Procedure *p, const char *name, const char *fmt, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = TAKE_PTR(p->pending);
        va_list ap;
        int r;

        procedure_bus_emit(p);
        if (!m)
                return;
        va_start(ap, fmt);
        r = sd_bus_reply_method_errorfv(m, name, fmt, ap);
        va_end(ap);
        if (r < 0)
                log_debug_errno(r, "Failed to reply with %s: %m", name);
}

/* The ECU, through the procedure's gate (ecu-gate.h): one request at a time, dropped when the
 * procedure ends; a late answer is still read, and only an unanswered probe means sleep. */

static int request_flags(Procedure *p, const uint8_t *data, size_t n, ProcedureCont cont, unsigned flags) {
        assert(p);
        return ecu_gate_request(p->gate, data, n, (EcuGateFn) cont, flags);
}

static int request(Procedure *p, const uint8_t *data, size_t n, ProcedureCont cont) {
        return request_flags(p, data, n, cont, 0);
}

int procedure_send(Procedure *p, const uint8_t *data, size_t n, ProcedureCont cont) {
        return request_flags(p, data, n, cont, REQUEST_RAW);
}

void procedure_late_answer(Procedure *p, const uint8_t *data, size_t size) {
        if (p)
                ecu_gate_unexpected(p->gate, data, size);
}

/* The ECU is free again: a Cancel waiting for it goes on, then a call that waited behind a
 * poll. */
static void procedure_idle(Procedure *p);

static void decide_cancel(Procedure *p);

static void went_to_sleep(Procedure *p) {
        if (p->readback == READBACK_CANCEL && !p->reset_sent && !p->erase_sent && p->view.keys_read) {
                /* Sleep itself ends registration mode and the erasure window (never a reset). */
                snprintf(p->readback_note, sizeof(p->readback_note),
                         "the ECU fell asleep, which ends registration mode and the erasure window; the key count "
                         "is the one read last (%u).",
                         p->view.registered);
                p->a002_state = IMMOBILIZER_NORMAL;
                decide_cancel(p);
                return;
        }
        if (p->readback == READBACK_CANCEL) {
                /* What the car did cannot be told now (a reset may run, the keys were never
                 * read): the Cancel does not pretend; the procedure waits for the ECU. */
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *c = TAKE_PTR(p->cancel);
                p->readback = READBACK_NONE;
                if (c)
                        (void) sd_bus_reply_method_errorf(c, IMMOD_ERROR_ECU_ASLEEP,
                                                          "The ECU does not answer, so what it did cannot be read: "
                                                          "press the driver's door courtesy switch to wake it (do not "
                                                          "cycle the engine switch), then cancel again.");
        }
        if (!p->asleep) {
                p->asleep = true;
                manager_set_ecu_state(p->manager, ECU_STATE_ASLEEP);
                set_prompt(p, "The ECU does not answer: it is asleep. Press the driver's door courtesy switch to wake it. "
                              "Do NOT cycle the engine switch.");
        }
        reply_error(p, IMMOD_ERROR_ECU_ASLEEP,
                    "The ECU does not answer; press the driver's door courtesy switch to wake it (do not cycle the "
                    "engine switch) and try again.");
}

static void run_cont(void *owner, EcuGateFn fn, unsigned flags, const UdsResponse *resp) {
        Procedure *p = owner;
        ProcedureCont cont = (ProcedureCont) fn;
        bool changes_car = flags & REQUEST_CHANGES_CAR;

        if (flags & REQUEST_RAW) {
                if (!p->cancel && procedure_is_active(p))
                        cont(p, resp);
                return;
        }
        if (resp->error == -ECANCELED) {
                reply_error(p, IMMOD_ERROR_CANCELLED, "immod is shutting down.");
                return;
        }
        if (resp->error == -ETIMEDOUT) { /* the probe, too, went unanswered */
                went_to_sleep(p);
                return;
        }
        if (resp->error < 0 && resp->error != ECU_GATE_LOST) {
                manager_set_ecu_state(p->manager, ECU_STATE_UNREACHABLE);
                reply_error(p, IMMOD_ERROR_ECU_UNREACHABLE, "The link to the ECU failed: %s.", strerror(-resp->error));
                return;
        }
        manager_set_ecu_state(p->manager, ECU_STATE_AWAKE);
        if (p->asleep) {
                /* It woke in the default session, locked: whatever this answer says is stale.
                 * Read the car back and go on from what it shows. */
                p->asleep = false;
                reply_error(p, IMMOD_ERROR_ECU_ASLEEP,
                            "The ECU was asleep and has just woken up; immod re-entered the session. Try again.");
                readback(p, p->readback == READBACK_CANCEL ? READBACK_CANCEL : READBACK_RESUME);
                return;
        }
        /* During a Cancel only what records a change of the car goes on. */
        if (p->cancel && !changes_car && !(flags & REQUEST_KEY_EVENTS) && p->readback != READBACK_CANCEL)
                return;
        if (resp->error == ECU_GATE_LOST && changes_car) {
                /* whether the car changed is unknown: it says */
                reply_error(p, IMMOD_ERROR_TIMEOUT,
                            "The ECU did not answer in time; immod reads the vehicle back and goes on from what it "
                            "shows.");
                readback(p, READBACK_RESUME);
                return;
        }
        if (cont && procedure_is_active(p))
                cont(p, resp);
}

/* Sends, or answers the pending call with the failure. */
static void request_or_fail(Procedure *p, const uint8_t *data, size_t n, ProcedureCont cont, unsigned flags) {
        int r = request_flags(p, data, n, cont, flags);
        if (r < 0)
                reply_error(p, IMMOD_ERROR_ECU_UNREACHABLE, "Cannot send to the ECU: %s.", strerror(-r));
}

static void send_or_fail(Procedure *p, const uint8_t *data, size_t n, ProcedureCont cont) {
        request_or_fail(p, data, n, cont, 0);
}

static void read_did(Procedure *p, uint16_t did, ProcedureCont cont) {
        uint8_t req[3] = { UDS_READ_DID };
        put_be16(req + 1, did);
        send_or_fail(p, req, sizeof(req), cont);
}

static size_t routine_request(uint8_t req[static 5], uint8_t sub, uint16_t rid, int option) {
        req[0] = UDS_ROUTINE_CONTROL;
        req[1] = sub;
        put_be16(req + 2, rid);
        req[4] = (uint8_t) option;
        return option >= 0 ? 5 : 4;
}

static void routine(Procedure *p, uint8_t sub, uint16_t rid, int option, ProcedureCont cont) {
        uint8_t req[5];
        size_t n = routine_request(req, sub, rid, option);
        unsigned flags = 0;

        /* results carry key events that the ECU reports once: a late answer is awaited, and
         * registration's and erasure's are counted during a Cancel too */
        if (sub == ROUTINE_RESULTS)
                flags = ECU_GATE_WAIT_LATE |
                        (rid == p->profile->rids.key_registration || rid == p->profile->rids.key_erasure ? REQUEST_KEY_EVENTS : 0);
        request_or_fail(p, req, n, cont, flags);
}

static void routine_command_text(uint8_t sub, uint16_t rid, int option, char *buf, size_t n) {
        if (option >= 0)
                snprintf(buf, n, "31 %02X %02X %02X %02X", sub, rid >> 8, rid & 0xff, (unsigned) option);
        else
                snprintf(buf, n, "31 %02X %02X %02X", sub, rid >> 8, rid & 0xff);
}

/* A command that changes the car: journalled first, never sent without the journal; its
 * continuation runs even during a Cancel, so that what the car did is never forgotten. */
static void routine_journalled(Procedure *p, uint8_t sub, uint16_t rid, int option, ProcedureCont cont) {
        char cmd[JOURNAL_COMMAND_MAX_BYTES];
        uint8_t req[5];
        size_t n = routine_request(req, sub, rid, option);

        routine_command_text(sub, rid, option, cmd, sizeof(cmd));
        if (journal(p, cmd) < 0) {
                reply_error(p, SD_BUS_ERROR_IO_ERROR, "The journal cannot be written; nothing was sent to the car.");
                return;
        }
        /* its answer tells what the car did: a late one is awaited, as for results */
        request_or_fail(p, req, n, cont, REQUEST_CHANGES_CAR | ECU_GATE_WAIT_LATE);
}

/* Checks a positive answer of at least `min` bytes; otherwise answers the pending call
 * with EcuRefused (or Timeout for a lost answer) and returns false. */
static bool answer_ok(Procedure *p, const UdsResponse *r, size_t min, const char *what) {
        char text[160];

        if (r->error == ECU_GATE_LOST) {
                reply_error(p, IMMOD_ERROR_TIMEOUT, "%s: the ECU did not answer in time; try again.", what);
                return false;
        }
        if (r->nrc != 0) {
                uds_nrc_describe(r->sid, r->nrc, text, sizeof(text));
                log_info("Procedure %" PRIu64 ": %s: %s", p->view.id, what, text);
                reply_error(p, IMMOD_ERROR_ECU_REFUSED, "%s: %s.", what, text);
                return false;
        }
        if (!r->data || r->size < min) {
                reply_error(p, SD_BUS_ERROR_IO_ERROR, "%s: the ECU's answer is malformed.", what);
                return false;
        }
        return true;
}

/* Key status (A001) */

/* An erasure keeps the declared keys and deletes the rest: 0 until a count is declared. */
static unsigned keys_to_delete(const Procedure *p) {
        if (p->view.declared == 0 || p->view.registered < p->view.declared)
                return 0;
        return p->view.registered - p->view.declared;
}

/* The car's key status came: Keys shows it from now on, announced even where a count is 0. */
static void keys_now_read(Procedure *p) {
        if (!p->view.keys_read)
                p->view.dirty |= PROP_KEYS;
        p->view.keys_read = true;
}

static void keys_from_a001(Procedure *p, const uint8_t *d) {
        keys_now_read(p);
        set_uint(p, &p->view.registered, d[0], PROP_KEYS);
        set_uint(p, &p->view.available, d[1], PROP_KEYS);
        set_uint(p, &p->view.max, d[2], PROP_KEYS);
        if (p->view.declared > 0)
                set_uint(p, &p->view.to_delete, keys_to_delete(p), PROP_KEYS);
}

/* Seeds */

static void on_a004(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 7, "Reading the security attempts (DID A004)"))
                return;
        const uint8_t *d = r->data + 3;
        set_uint(p, &p->view.attempts_left, p->view.seed_kind == PASSCODE_IMMOBILIZER ? d[0] : d[1], PROP_ATTEMPTS);
        set_uint(p, &p->view.lockout_s, be16(d + 2), PROP_LOCKOUT);
        if (!p->view.have_seed && p->view.lockout_s > 0) {
                /* The ECU refused the seed: still locked out. The poll watches the lockout and
                 * asks for a seed once it is over. */
                set_prompt(p, "Too many wrong passcodes: the ECU is locked out for %u more seconds. immod asks "
                              "for a new seed when the lockout is over.",
                           p->view.lockout_s);
                if (p->pending && sd_bus_message_is_method_call(p->pending, NULL, "SubmitPasscode")) {
                        p->rejected = false;
                        reply_error(p, IMMOD_ERROR_LOCKED_OUT,
                                    "The ECU is locked out for %u more seconds after too many wrong passcodes; "
                                    "the passcode was not sent. A new seed is shown when the lockout is over.",
                                    p->view.lockout_s);
                        return;
                }
        }
        if (p->rejected) {
                p->rejected = false;
                reply_error(p, IMMOD_ERROR_PASSCODE_REJECTED,
                            "The ECU rejected the passcode; %u attempt(s) left before it locks out. A new seed is "
                            "shown: get the passcode for it.",
                            p->view.attempts_left);
                return;
        }
        reply_ok(p);
}

static void on_seed(Procedure *p, const UdsResponse *r) {
        if (r->nrc == UDS_NRC_TIME_DELAY_NOT_EXPIRED || r->nrc == UDS_NRC_EXCEEDED_ATTEMPTS) {
                read_did(p, p->profile->dids.security_attempts, on_a004);
                /* the A004 answer sets LockoutSeconds; the caller learns it from there */
                return;
        }
        if (p->view.seed_kind == PASSCODE_IMMOBILIZER) {
                if (!answer_ok(p, r, 2 + PASSCODE_SEED_SIZE, "Requesting the immobilizer seed"))
                        return;
                memcpy(p->view.imm_seed, r->data + 2, PASSCODE_SEED_SIZE);
        } else {
                char hex[13];
                if (!answer_ok(p, r, 2 + 17 + 6 + 6 + 4, "Requesting the smart code seed"))
                        return;
                const uint8_t *d = r->data + 2;
                memcpy(p->view.sc_vin, d, 17);
                p->view.sc_vin[17] = 0;
                hex_encode(d + 17, 6, true, hex);
                memcpy(p->view.data1, hex + 1, PASSCODE_DATA1_LEN + 1); /* the top 4 bits are zero */
                hex_encode(d + 23, 6, true, p->view.data2);
                hex_encode(d + 29, 4, true, p->view.data3);
        }
        p->view.have_seed = true;
        p->view.dirty |= PROP_SEED;
        read_did(p, p->profile->dids.security_attempts, on_a004);
}

static void request_seed(Procedure *p) {
        uint8_t req[2] = { UDS_SECURITY_ACCESS, p->view.seed_kind == PASSCODE_IMMOBILIZER ? SECURITY_LEVEL_IMMOBILIZER : SECURITY_LEVEL_SMART_CODE };
        clear_seed(p);
        send_or_fail(p, req, sizeof(req), on_seed);
}

/* While the ECU is locked out at a passcode step: LockoutSeconds counts down, and a fresh
 * seed is shown as soon as the lockout is over, without another call. */
static void on_lockout_poll(Procedure *p, const UdsResponse *r) {
        /* a Cancel may have come while the answer was on its way */
        if (!procedure_is_active(p) || r->nrc != 0 || !r->data || r->size < 7 || p->view.have_seed)
                return;
        const uint8_t *d = r->data + 3;
        set_uint(p, &p->view.attempts_left, p->view.seed_kind == PASSCODE_IMMOBILIZER ? d[0] : d[1], PROP_ATTEMPTS);
        set_uint(p, &p->view.lockout_s, be16(d + 2), PROP_LOCKOUT);
        if (p->view.lockout_s == 0) {
                log_info("Procedure %" PRIu64 ": the ECU's lockout is over; asking for a new seed.", p->view.id);
                set_prompt(p, "The lockout is over. %s", p->view.steps[p->view.step].prompt);
                request_seed(p);
        }
        procedure_bus_emit(p);
}

/* Polling of routine results */

static void handle_events(Procedure *p, const uint8_t *ev, size_t n_events) {
        for (size_t i = 0; i < n_events; i++, ev += 6) {
                uint8_t e = ev[0], slot = ev[1];
                unsigned beeps = 0;

                if (e == EVENT_RECOGNISED || e == EVENT_KEPT)
                        beeps = 1;
                else if (e == EVENT_REGISTERED)
                        beeps = p->reg_mode == REGISTRATION_MODE_AFTER_RESET ? 1 : 2;
                if (e == EVENT_REGISTERED)
                        set_uint(p, &p->view.added, p->view.added + 1, PROP_KEYS);
                if (e != EVENT_TIMED_OUT)
                        p->reg_restarts = 0; /* somebody is at the car */
                if (e == EVENT_KEPT)
                        set_uint(p, &p->view.touched, p->view.touched + 1, PROP_KEYS);
                procedure_bus_emit_key_event(p, e < ELEMENTSOF(event_names) && event_names[e] ? event_names[e] : "unknown-key",
                                             slot, beeps);
                /* the registered key recognised ends the step that waits for it */
                if (e == EVENT_RECOGNISED && procedure_is_active(p) && !p->cancel && p->readback == READBACK_NONE &&
                    step_info(p)->end == STEP_END_ECU_EVENT &&
                    step_info(p)->enter == ENTER_REGISTRATION_MODE_1)
                        enter_step(p, p->view.step + 1);
        }
}

/* The key status after the car changed (the reset's end, the Erase) goes into the audit
 * record: a read that failed (busy, lost) is asked again a few times before the count read
 * last is all there is. True when the count is the car's now (or the tries are spent). */
#define KEY_READS_MAX 3U

static void read_keys_after_change(Procedure *p, ProcedureCont cont) {
        uint8_t req[3] = { UDS_READ_DID };

        put_be16(req + 1, p->profile->dids.key_status);
        request_or_fail(p, req, sizeof(req), cont, ECU_GATE_WAIT_LATE); /* a late answer is awaited */
}

static bool keys_after_change(Procedure *p, const UdsResponse *r, ProcedureCont again) {
        if (r->nrc == 0 && r->error == 0 && r->size >= 6) {
                keys_from_a001(p, r->data + 3);
                return true;
        }
        if (p->key_reads < KEY_READS_MAX) {
                p->key_reads++;
                log_warning("Procedure %" PRIu64 ": the key status (DID A001) could not be read; asking again.", p->view.id);
                read_keys_after_change(p, again);
                return false;
        }
        log_warning("Procedure %" PRIu64 ": the key status (DID A001) could not be read after %u tries; the count read "
                    "last is recorded.",
                    p->view.id, KEY_READS_MAX + 1);
        return true;
}

static void on_final_keys(Procedure *p, const UdsResponse *r) {
        if (keys_after_change(p, r, on_final_keys))
                finish(p, JOURNAL_STATE_SUCCEEDED, NULL, NULL);
}

static void on_a101_results(Procedure *p, const UdsResponse *r) {
        if (r->error != 0 || r->nrc != 0 || r->size < 9)
                return; /* polled again */
        const uint8_t *d = r->data + 4;
        unsigned status = d[0], progress = MIN(d[1], 100U), remaining = be16(d + 2), reason = d[4];

        set_uint(p, &p->view.percentage, procedure_percentage(p->view.kind, p->view.step, progress * 10), PROP_PERCENTAGE);
        set_uint(p, &p->view.remaining_s, remaining, PROP_REMAINING);
        if (status == RESET_SUCCEEDED) {
                p->open = ECU_OPEN_NOTHING;
                set_uint(p, &p->view.remaining_s, 0, PROP_REMAINING);
                read_keys_after_change(p, on_final_keys);
        } else if (status == RESET_FAILED) {
                p->open = ECU_OPEN_NOTHING;
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED,
                       "The ECU reports the reset failed: %s. Nothing was erased.",
                       reason < ELEMENTSOF(fail_reasons) ? fail_reasons[reason] : "an unknown reason");
        } else if (status == RESET_IDLE) {
                /* no reset runs or ran since the ECU started: it never did */
                p->open = ECU_OPEN_NOTHING;
                readback(p, READBACK_RESUME);
        }
        procedure_bus_emit(p);
}

static void on_a102_started(Procedure *p, const UdsResponse *r);

/* A registration left alone (its caller gone) must not hold registration mode open for
 * ever, where any key touched would be registered: a few idle timeouts in a row end it. */
#define REGISTRATION_RESTARTS_MAX 5U

static void restart_registration_mode(Procedure *p) {
        unsigned timeout_s = p->profile->durations.registration_timeout_s;

        p->open = ECU_OPEN_NOTHING;
        if (p->reg_restarts >= REGISTRATION_RESTARTS_MAX) {
                unsigned idle = (REGISTRATION_RESTARTS_MAX + 1) * timeout_s;

                log_info("Procedure %" PRIu64 ": no key touched for %u s; registration mode is not started again.",
                         p->view.id, idle);
                if (p->view.added > 0)
                        return finish(p, JOURNAL_STATE_SUCCEEDED, NULL,
                                      "No key was touched for %u seconds, so immod did not start registration mode "
                                      "again; the %u new key(s) registered stay registered.",
                                      idle, p->view.added);
                return finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_TIMEOUT,
                              "No key was touched for %u seconds, so immod did not start registration mode again; no "
                              "key was registered.",
                              idle);
        }
        p->reg_restarts++;
        log_info("Procedure %" PRIu64 ": registration mode ended by the ECU's idle timeout; restarting it.", p->view.id);
        if (p->reg_mode == REGISTRATION_MODE_ADD) {
                /* Mode 1 starts again by waiting for a registered key: back to that step, which
                 * starts the mode again. */
                enter_step(p, (size_t) procedure_step_entering(p->view.kind, ENTER_REGISTRATION_MODE_1));
                set_prompt(p, "Registration mode ended after %u seconds without a touch; immod started it again. "
                              "Touch the engine switch with the registered key first.",
                           timeout_s);
        } else {
                set_prompt(p, "Registration mode ended after %u seconds without a touch; immod started it again. %s",
                           timeout_s, step_info(p)->prompt);
                routine_journalled(p, ROUTINE_START, p->profile->rids.key_registration, p->reg_mode, on_a102_started);
        }
}

static void on_a102_results(Procedure *p, const UdsResponse *r) {
        if (r->error != 0 || r->nrc != 0 || r->size < 8)
                return;
        const uint8_t *d = r->data + 4;
        unsigned status = d[0], n = d[3];

        keys_now_read(p);
        set_uint(p, &p->view.registered, d[1], PROP_KEYS);
        set_uint(p, &p->view.available, d[2], PROP_KEYS);
        if (r->size < 8 + 6 * (size_t) n)
                n = (unsigned) ((r->size - 8) / 6);
        handle_events(p, d + 4, n);
        if (status == REG_ENDED)
                p->open = ECU_OPEN_NOTHING;
        if (p->cancel || p->readback != READBACK_NONE || !procedure_is_active(p)) {
                /* a readback reads the last events, then closes */
                procedure_bus_emit(p);
                return;
        }

        if (step_info(p)->enter == ENTER_REGISTRATION_MODE_2) { /* touch-new-keys */
                bool one_done = p->reg_mode == REGISTRATION_MODE_ADD && p->view.added > p->reg_added_base;
                bool full = p->reg_mode == REGISTRATION_MODE_AFTER_RESET && p->view.available == 0;
                /* In mode 2 only Finish or full slots end the step: an idle timeout after some
                 * keys restarts registration mode like any other (dbus-api.md). */
                if (one_done || full) {
                        if (status != REG_ENDED) /* mode 2 with full slots: the ECU may still wait */
                                p->open = ECU_OPEN_REGISTRATION;
                        enter_step(p, p->view.step + 1);
                        procedure_bus_emit(p);
                        return;
                }
        }
        /* mode 1 ends itself once its one new key is registered: that is no idle timeout */
        bool registered_its_key = p->reg_mode == REGISTRATION_MODE_ADD && p->view.added > p->reg_added_base;
        if (status == REG_ENDED && p->reg_mode > 0 && !registered_its_key)
                restart_registration_mode(p);
        procedure_bus_emit(p);
}

static void on_a103_results(Procedure *p, const UdsResponse *r) {
        if (r->error != 0 || r->nrc != 0 || r->size < 10)
                return;
        const uint8_t *d = r->data + 4;
        unsigned status = d[0], n = d[5];

        set_uint(p, &p->view.to_delete, d[2], PROP_KEYS);
        set_uint(p, &p->view.remaining_s, (be16(d + 3) + 999) / 1000, PROP_REMAINING);
        if (status == ERASE_OPEN && !p->cancel) {
                /* the ECU's own clock (scaled in the simulator) decides when the window ends */
                usec_t end = now_usec(CLOCK_REALTIME) + (usec_t) be16(d + 3) * USEC_PER_MSEC;
                if (end > p->view.deadline + 500 * USEC_PER_MSEC || end + 500 * USEC_PER_MSEC < p->view.deadline) {
                        p->view.deadline = end;
                        p->view.dirty |= PROP_DEADLINE;
                }
        }
        if (r->size < 10 + 6 * (size_t) n)
                n = (unsigned) ((r->size - 10) / 6);
        handle_events(p, d + 6, n);
        set_uint(p, &p->view.touched, d[1], PROP_KEYS);
        if (status != ERASE_OPEN)
                p->open = ECU_OPEN_NOTHING;
        if (p->cancel || p->readback != READBACK_NONE || !procedure_is_active(p)) {
                procedure_bus_emit(p);
                return;
        }
        if (status == ERASE_EXPIRED)
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_TIMEOUT,
                       "The erasure window closed before Erase; nothing was deleted.");
        else if (status == ERASE_FAILED)
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED,
                       "The ECU reports the erasure failed; nothing was deleted.");
        procedure_bus_emit(p);
}

/* What the step polls, as far as the ECU has it open. */
static bool polls_results(Procedure *p) {
        const StepInfo *st = step_info(p);

        return st->poll == POLL_RESET || (st->poll == POLL_REGISTRATION && p->open == ECU_OPEN_REGISTRATION) ||
               (st->poll == POLL_ERASURE && p->open == ECU_OPEN_ERASURE);
}

static bool polls_lockout(Procedure *p) {
        return step_info(p)->end == STEP_END_PASSCODE && !p->view.have_seed && p->view.lockout_s > 0;
}

/* 3E 00 now and then tells whether the ECU still answers (3E 80 has no answer). Sent a little
 * before tester present is due, it keeps the session itself: one keep-alive on the bus. */
static usec_t probe_period(Procedure *p) {
        unsigned ms = p->daemon->config.tester_present_ms ?: p->profile->timing.tester_present_ms;
        usec_t tp = (usec_t) ms * USEC_PER_MSEC;

        if (p->asleep)
                return PROBE_INTERVAL_USEC;
        return tp > 2 * PROBE_LEAD_USEC ? tp - PROBE_LEAD_USEC : tp / 2;
}

/* When the poll timer is next needed, from `now`. */
static usec_t next_poll(Procedure *p, usec_t now) {
        if (procedure_busy(p) || p->pending || !procedure_is_active(p))
                return now + POLL_INTERVAL_USEC; /* the gate's late answers; a chain that goes on */
        if (p->unsure && !p->asleep)
                return MAX(now + USEC_PER_MSEC, p->last_probe + UNSURE_RETRY_USEC);
        if (step_info(p)->poll == POLL_RESET)
                return now + POLL_INTERVAL_USEC;
        if (polls_results(p))
                return now + RESULTS_INTERVAL_USEC;
        if (polls_lockout(p))
                return now + PROBE_INTERVAL_USEC;
        return MAX(now + USEC_PER_MSEC, p->last_probe + probe_period(p));
}

/* Something to poll starts now (a step entered, a routine opened): within POLL_INTERVAL. */
static void poll_soon(Procedure *p) {
        uint64_t next, now = now_usec(CLOCK_MONOTONIC);

        if (sd_event_source_get_time(p->poll, &next) >= 0 && next > now + POLL_INTERVAL_USEC)
                (void) sd_event_source_set_time(p->poll, now + POLL_INTERVAL_USEC);
}

static int on_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        Procedure *p = userdata;

        ecu_gate_tick(p->gate); /* a late answer that never came */
        if (!procedure_is_active(p) || procedure_busy(p) || p->pending)
                goto rearm;
        if ((p->cancel || p->readback != READBACK_NONE) && !p->asleep)
                goto rearm; /* only a sleeping ECU is asked, so that they can go on */
        if (p->unsure && !p->asleep) {
                if (usec >= p->last_probe + UNSURE_RETRY_USEC) {
                        p->last_probe = usec;
                        readback(p, READBACK_RESUME);
                }
                goto rearm;
        }

        if (step_info(p)->poll == POLL_RESET)
                routine(p, ROUTINE_RESULTS, p->profile->rids.smart_code_reset, -1, on_a101_results);
        else if (polls_results(p) && step_info(p)->poll == POLL_REGISTRATION)
                routine(p, ROUTINE_RESULTS, p->profile->rids.key_registration, -1, on_a102_results);
        else if (polls_results(p))
                routine(p, ROUTINE_RESULTS, p->profile->rids.key_erasure, -1, on_a103_results);
        else if (polls_lockout(p)) {
                if (usec >= p->last_probe + PROBE_INTERVAL_USEC) {
                        p->last_probe = usec;
                        read_did(p, p->profile->dids.security_attempts, on_lockout_poll);
                }
        } else if (usec >= p->last_probe + probe_period(p)) {
                static const uint8_t probe[2] = { UDS_TESTER_PRESENT, 0x00 };

                usec_t now = now_usec(CLOCK_MONOTONIC), late = now > usec ? now - usec : 0;

                /* bench-immod tells the loop's own lateness from what the bus shows */
                if (late > PROBE_LATE_LOG_USEC)
                        log_debug("Keep-alive probe %.1f ms late.", (double) late / USEC_PER_MSEC);
                p->last_probe = usec;
                (void) request(p, probe, sizeof(probe), NULL);
        }
rearm:
        (void) sd_event_source_set_time(s, next_poll(p, usec));
        return 0;
}

/* Step actions on entering */

static void on_a102_started(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 4, "Starting registration mode"))
                return;
        p->open = ECU_OPEN_REGISTRATION;
        p->reg_added_base = p->view.added;
        poll_soon(p);
        reply_ok(p);
}

static void on_a103_started(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 4, "Opening the erasure window")) {
                if (!p->cancel)
                        finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED,
                               "The ECU refused to open the erasure window; nothing was deleted.");
                return;
        }
        p->open = ECU_OPEN_ERASURE;
        poll_soon(p);
        p->view.deadline = now_usec(CLOCK_REALTIME) + (usec_t) p->profile->durations.erasure_window_s * USEC_PER_SEC;
        p->view.dirty |= PROP_DEADLINE;
        reply_ok(p);
}

static void on_a001_slots(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 6, "Reading the key status (DID A001)"))
                return;
        keys_from_a001(p, r->data + 3);
        set_prompt(p, "%u keys are registered and %u of %u slots are free. %s", p->view.registered, p->view.available, p->view.max,
                   p->view.available == 0 ? "No slot is free: no key can be added." : "Confirm to continue.");
        reply_ok(p);
}

static void request_seed(Procedure *p);

static void do_enter(Procedure *p, StepEnter what) {
        switch (what) {
        case ENTER_IMMOBILIZER_SEED:
                p->view.seed_kind = PASSCODE_IMMOBILIZER;
                return request_seed(p);
        case ENTER_SMART_CODE_SEED:
                p->view.seed_kind = PASSCODE_SMART_CODE;
                return request_seed(p);
        case ENTER_READ_SLOTS:
                return read_did(p, p->profile->dids.key_status, on_a001_slots);
        case ENTER_REGISTRATION_MODE_1:
                p->reg_mode = REGISTRATION_MODE_ADD;
                return routine_journalled(p, ROUTINE_START, p->profile->rids.key_registration, REGISTRATION_MODE_ADD, on_a102_started);
        case ENTER_REGISTRATION_MODE_2:
                if (p->reg_mode == REGISTRATION_MODE_ADD && p->view.added > p->reg_added_base && p->open != ECU_OPEN_REGISTRATION)
                        return enter_step(p, p->view.step + 1); /* its key was touched early: registered */
                if (p->reg_mode == REGISTRATION_MODE_ADD)
                        break; /* mode 1 is open since the registered key was recognised */
                p->reg_mode = REGISTRATION_MODE_AFTER_RESET;
                return routine_journalled(p, ROUTINE_START, p->profile->rids.key_registration, REGISTRATION_MODE_AFTER_RESET, on_a102_started);
        case ENTER_ERASURE_WINDOW:
                return routine_journalled(p, ROUTINE_START, p->profile->rids.key_erasure, (int) p->view.declared, on_a103_started);
        case ENTER_FINAL_KEYS:
                return read_keys_after_change(p, on_final_keys);
        case ENTER_NOTHING:
                break;
        }
        reply_ok(p);
}

static void enter_step(Procedure *p, size_t idx) {
        const StepInfo *s;

        /* a step for a registered key is skipped when none is registered (mode 2) */
        if (idx < p->view.n_steps && p->view.steps[idx].needs_key && p->view.registered == 0)
                idx++;
        assert(idx < p->view.n_steps);
        s = &p->view.steps[idx];

        p->view.step = idx;
        p->view.dirty |= PROP_STEP;
        poll_soon(p);
        clear_seed(p);
        if (p->view.deadline) {
                p->view.deadline = 0;
                p->view.dirty |= PROP_DEADLINE;
        }
        set_uint(p, &p->view.remaining_s, 0, PROP_REMAINING);
        set_uint(p, &p->view.percentage, procedure_percentage(p->view.kind, idx, 0), PROP_PERCENTAGE);
        set_state(p, s->waiting ? JOURNAL_STATE_WAITING : JOURNAL_STATE_RUNNING);
        set_prompt(p, "%s", s->prompt);
        (void) journal(p, NULL);
        procedure_bus_emit(p);
        procedure_bus_emit_step(p);
        do_enter(p, s->enter);
}

/* The end */

/* The battery trace for the audit record: its 1 s buckets merged into at most
 * AUDIT_TRACE_MAX points. NULL when there is none (or no memory: the record goes without). */
static AuditTracePoint *trace_points(Procedure *p, size_t *ret_n) {
        size_t n = p->battery_trace ? battery_trace_n_buckets(p->battery_trace) : 0, per, k = 0;
        AuditTracePoint *t;
        BatteryTraceBucket b;

        *ret_n = 0;
        if (n == 0)
                return NULL;
        per = (n + AUDIT_TRACE_MAX - 1) / AUDIT_TRACE_MAX;
        t = calloc((n + per - 1) / per, sizeof(*t));
        if (!t)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (battery_trace_get(p->battery_trace, i, &b) < 0 || b.n == 0)
                        continue;
                if (k == 0 || i % per == 0) {
                        usec_t since = b.start > p->battery_trace->begun_at ? b.start - p->battery_trace->begun_at : 0;
                        t[k++] = (AuditTracePoint) {
                                .offset_s = (uint32_t) MIN(since / USEC_PER_SEC, UINT32_MAX),
                                .min_v = b.min,
                                .max_v = b.max,
                        };
                } else {
                        t[k - 1].min_v = MIN(t[k - 1].min_v, b.min);
                        t[k - 1].max_v = MAX(t[k - 1].max_v, b.max);
                }
        }
        *ret_n = k;
        return t;
}

static void finish(Procedure *p, JournalState state, const char *error, const char *fmt, ...) {
        char msg[512] = "";
        va_list ap;
        int r;

        if (!procedure_is_active(p))
                return;
        if (p->battery_trace)
                battery_trace_end(p->battery_trace, now_usec(CLOCK_MONOTONIC));
        if (fmt) {
                va_start(ap, fmt);
                vsnprintf(msg, sizeof(msg), fmt, ap);
                va_end(ap);
        }
        if (state == JOURNAL_STATE_SUCCEEDED) {
                p->view.step = p->view.n_steps - 1;
                p->view.dirty |= PROP_STEP;
                set_uint(p, &p->view.percentage, 100, PROP_PERCENTAGE);
                if (msg[0])
                        set_prompt(p, "%s", msg);
                else
                        set_prompt(p, "%s", step_info(p)->prompt);
        } else {
                free(p->view.error);
                free(p->view.error_message);
                p->view.error = strdup(error ?: IMMOD_ERROR_CANCELLED);
                p->view.error_message = strdup(msg);
                p->view.dirty |= PROP_ERROR;
                set_prompt(p, "%s", msg);
        }
        explicit_bzero(p->passcode, sizeof(p->passcode));
        clear_seed(p);
        set_uint(p, &p->view.remaining_s, 0, PROP_REMAINING);
        if (p->view.deadline) {
                p->view.deadline = 0;
                p->view.dirty |= PROP_DEADLINE;
        }
        set_state(p, state);
        /* nothing of an ended procedure acts any more: its requests are dropped */
        ecu_gate_drop(p->gate);
        p->poll = sd_event_source_disable_unref(p->poll);
        uds_link_set_tester_present(p->daemon->link, 0);
        log_info("Procedure %" PRIu64 " (%s) %s%s%s", p->view.id, procedure_kind_to_string(p->view.kind),
                 journal_state_to_string(state), msg[0] ? ": " : ".", msg);

        AuditRecord a = {
                .id = p->view.id,
                .uid = p->view.owner,
                .technician = p->view.technician,
                .time = now_usec(CLOCK_REALTIME),
                .created = p->view.created,
                .kind = p->view.kind,
                .vin = p->view.vin,
                .profile = (char *) p->profile->name,
                .repair_order = p->view.repair_order,
                .result = state == JOURNAL_STATE_SUCCEEDED   ? AUDIT_SUCCEEDED
                          : state == JOURNAL_STATE_CANCELLED ? AUDIT_CANCELLED
                                                             : AUDIT_FAILED,
                .error = state == JOURNAL_STATE_SUCCEEDED ? NULL : p->view.error,
                .keys_before = p->keys_before,
                .keys_after = p->view.max > 0 || p->view.registered > 0 ? (int) p->view.registered : -1,
                .battery_min = p->view.battery_min,
                .passcode_attempts = p->passcode_attempts,
        };
        a.trace = trace_points(p, &a.n_trace);
        r = audit_append(p->daemon->config.state_dir, &a);
        free(a.trace);
        if (r < 0)
                log_error_errno(r, "Procedure %" PRIu64 ": failed to append the audit record: %m", p->view.id);
        else {
                r = journal_remove(p->daemon->config.state_dir, p->view.id);
                if (r < 0)
                        log_warning_errno(r, "Procedure %" PRIu64 ": failed to remove the journal: %m", p->view.id);
        }

        if (p->pending) {
                if (state == JOURNAL_STATE_SUCCEEDED && !p->cancel)
                        reply_ok(p);
                else
                        reply_error(p, p->view.error ?: IMMOD_ERROR_CANCELLED, "%s",
                                    msg[0] ? msg : "The procedure has ended.");
        }
        if (p->cancel) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *c = TAKE_PTR(p->cancel);
                if (state == JOURNAL_STATE_CANCELLED || p->readback == READBACK_CANCEL)
                        r = sd_bus_reply_method_return(c, NULL);
                else
                        r = sd_bus_reply_method_errorf(c, IMMOD_ERROR_NOT_CANCELLABLE,
                                                       "The procedure ended before it could be cancelled (%s): %s",
                                                       journal_state_to_string(state),
                                                       msg[0] ? msg : step_info(p)->prompt);
                if (r < 0)
                        log_debug_errno(r, "Failed to answer Cancel(): %m");
        }
        p->readback = READBACK_NONE;
        procedure_bus_emit(p);
        if (state == JOURNAL_STATE_SUCCEEDED)
                procedure_bus_emit_step(p);
        procedure_bus_emit_finished(p);
        manager_procedure_ended(p->manager, p);
}

/* Reading the car back: DID A002 (what is open), the open routine's last results (its key
 * events), the end of what is open (10 01: a drop to the default session ends registration
 * mode and the erasure window in every reading of the protocol, never a running reset; a
 * repeated 10 03 may not), A002 again to see it closed, then for a resume the extended
 * session and A101's results, and DID A001 (the keys). Then decide() goes on from what the
 * car shows. */

#define CLOSE_TRIES_MAX 3U

/* The extended session is held with tester present (the configuration's period, else the
 * profile's) until the procedure ends or leaves it. */
static void hold_session(Procedure *p) {
        unsigned ms = p->daemon->config.tester_present_ms ?: p->profile->timing.tester_present_ms;
        uds_link_set_tester_present(p->daemon->link, (usec_t) ms * USEC_PER_MSEC);
}

static void rb_keys(Procedure *p);
static void rb_decide(Procedure *p);

static void rb_on_keys(Procedure *p, const UdsResponse *r) {
        if (r->error == 0 && r->nrc == 0 && r->size >= 6) {
                keys_from_a001(p, r->data + 3);
                p->rb_known |= RB_KNOWN_KEYS;
        } else
                log_warning("Procedure %" PRIu64 ": the key status (DID A001) could not be read back.", p->view.id);
        rb_decide(p);
}

static void rb_keys(Procedure *p) {
        read_did(p, p->profile->dids.key_status, rb_on_keys);
}

static void rb_on_a101(Procedure *p, const UdsResponse *r) {
        p->a101_status = r->error == 0 && r->nrc == 0 && r->size >= 9 ? r->data[4] : -1;
        if (p->a101_status >= 0)
                p->rb_known |= RB_KNOWN_RESET;
        else
                log_warning("Procedure %" PRIu64 ": the reset's results (A101) could not be read back.", p->view.id);
        rb_keys(p);
}

static void rb_on_session(Procedure *p, const UdsResponse *r) {
        if (r->error == 0 && r->nrc == 0)
                hold_session(p);
        if (p->view.kind == PROCEDURE_IMMOBILIZER_RESET)
                routine(p, ROUTINE_RESULTS, p->profile->rids.smart_code_reset, -1, rb_on_a101);
        else
                rb_keys(p);
}

static void rb_after_closed(Procedure *p) {
        static const uint8_t extended[2] = { UDS_SESSION_CONTROL, 0x03 };

        if (p->readback == READBACK_CANCEL && !p->reset_sent)
                return rb_keys(p);
        send_or_fail(p, extended, sizeof(extended), rb_on_session);
}

static void rb_close(Procedure *p);

static void rb_on_verify(Procedure *p, const UdsResponse *r) {
        unsigned s = r->error == 0 && r->nrc == 0 && r->size >= 4 ? r->data[3] : 0xff;

        if (r->error == 0 && (s == IMMOBILIZER_REGISTRATION || s == IMMOBILIZER_ERASURE) && p->close_tries < CLOSE_TRIES_MAX)
                return rb_close(p);
        if (s == IMMOBILIZER_REGISTRATION || s == IMMOBILIZER_ERASURE) {
                snprintf(p->readback_note, sizeof(p->readback_note),
                         "The ECU still reports %s after %u attempts to end it.",
                         s == IMMOBILIZER_REGISTRATION ? "registration mode open" : "the erasure window open", p->close_tries);
                log_error("Procedure %" PRIu64 ": %s", p->view.id, p->readback_note);
        } else {
                p->open = ECU_OPEN_NOTHING;
                p->a002_state = s == 0xff ? p->a002_state : s;
        }
        rb_after_closed(p);
}

static void rb_on_default_session(Procedure *p, const UdsResponse *r) {
        /* answered or not, A002 tells whether it closed */
        uds_link_set_tester_present(p->daemon->link, 0);
        read_did(p, p->profile->dids.immobilizer_state, rb_on_verify);
}

static void rb_close(Procedure *p) {
        static const uint8_t default_session[2] = { UDS_SESSION_CONTROL, 0x01 };

        p->close_tries++;
        log_info("Procedure %" PRIu64 ": ending %s in the ECU.", p->view.id,
                 p->a002_state == IMMOBILIZER_REGISTRATION ? "registration mode" : "the erasure window");
        send_or_fail(p, default_session, sizeof(default_session), rb_on_default_session);
}

static void rb_on_results(Procedure *p, const UdsResponse *r) {
        /* the events since the last poll: a key touched meanwhile counts */
        if (p->a002_state == IMMOBILIZER_REGISTRATION)
                on_a102_results(p, r);
        else
                on_a103_results(p, r);
        if (!procedure_is_active(p))
                return;
        rb_close(p);
}

static void rb_on_state(Procedure *p, const UdsResponse *r) {
        bool known = r->error == 0 && r->nrc == 0 && r->size >= 4;

        p->a002_state = known ? r->data[3] : 0xff;
        if (known)
                p->rb_known |= RB_KNOWN_STATE;
        else
                log_warning("Procedure %" PRIu64 ": the immobilizer state (DID A002) could not be read back.", p->view.id);
        if (p->a002_state == IMMOBILIZER_REGISTRATION)
                routine(p, ROUTINE_RESULTS, p->profile->rids.key_registration, -1, rb_on_results);
        else if (p->a002_state == IMMOBILIZER_ERASURE)
                routine(p, ROUTINE_RESULTS, p->profile->rids.key_erasure, -1, rb_on_results);
        else {
                if (known)
                        p->open = p->a002_state == IMMOBILIZER_RESET_RUNNING ? ECU_OPEN_RESET : ECU_OPEN_NOTHING;
                rb_after_closed(p);
        }
}

static void readback(Procedure *p, Readback why) {
        assert(why != READBACK_NONE);
        if (!procedure_is_active(p))
                return;
        p->readback = why;
        p->close_tries = 0;
        p->a101_status = -1;
        p->rb_known = 0;
        p->unsure = false;
        p->readback_note[0] = 0;
        clear_seed(p);
        set_state(p, JOURNAL_STATE_RUNNING);
        procedure_bus_emit(p);
        log_info("Procedure %" PRIu64 ": reading the vehicle back (%s).", p->view.id,
                 why == READBACK_CANCEL ? "cancel" : "resume");
        read_did(p, p->profile->dids.immobilizer_state, rb_on_state);
}

/* A registration's added keys, as the car's count shows them: a key registered while immod
 * was down or while a Cancel waited (its event unseen) counts. */
static void keys_added_from_car(Procedure *p) {
        int before = p->keys_before;

        if (p->view.kind == PROCEDURE_KEY_REGISTRATION && before >= 0)
                set_uint(p, &p->view.added, p->view.registered > (unsigned) before ? p->view.registered - (unsigned) before : 0,
                         PROP_KEYS);
}

/* Cancel: what the car shows is the result. A procedure that changed the car is never
 * "cancelled". */
static void decide_cancel(Procedure *p) {
        int before = p->keys_before;

        if (p->a002_state == IMMOBILIZER_RESET_RUNNING) {
                /* the reset started after all: it must not be interrupted */
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *c = TAKE_PTR(p->cancel);
                p->readback = READBACK_NONE;
                p->open = ECU_OPEN_RESET;
                p->reset_sent = true;
                enter_step(p, (size_t) procedure_step_index(p->view.kind, "resetting"));
                if (c)
                        (void) sd_bus_reply_method_errorf(c, IMMOD_ERROR_NOT_CANCELLABLE,
                                                          "The ECU had already started the reset when Cancel came; "
                                                          "it must not be interrupted: wait for it to end.");
                return;
        }
        if (p->readback_note[0] && p->a002_state != IMMOBILIZER_NORMAL)
                return finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED,
                              "Cancelled, but %s Check the vehicle (immoctl status).", p->readback_note);
        keys_added_from_car(p);
        if (before >= 0 && (int) p->view.registered > before)
                return finish(p, JOURNAL_STATE_SUCCEEDED, NULL,
                              "Cancelled after %d new key(s) were registered: they stay registered (%u keys now).",
                              (int) p->view.registered - before, p->view.registered);
        if (before >= 0 && (int) p->view.registered < before)
                return finish(p, JOURNAL_STATE_SUCCEEDED, NULL,
                              "Cancelled after %d key(s) were erased: they are gone for good (%u keys now).",
                              before - (int) p->view.registered, p->view.registered);
        finish(p, JOURNAL_STATE_CANCELLED, IMMOD_ERROR_CANCELLED,
               "The procedure was cancelled; nothing was changed on the vehicle (%u keys registered)%s%s", p->view.registered,
               p->readback_note[0] ? ": " : ".", p->readback_note);
}

/* Keys after a readback that goes on: the car's key status (A001, just read) and nothing of
 * an erasure window, which the readback ended (its touches were read before it closed, and
 * the next window counts anew). The declared count is not journalled: after a restart it is
 * asked again, so nothing is to be deleted until it is. */
static void keys_after_readback(Procedure *p, bool restarted) {
        if (p->view.kind != PROCEDURE_KEY_ERASURE)
                return;
        if (restarted)
                set_uint(p, &p->view.declared, 0, PROP_KEYS);
        set_uint(p, &p->view.touched, 0, PROP_KEYS);
        set_uint(p, &p->view.to_delete, keys_to_delete(p), PROP_KEYS);
}

/* Resume: after a restart, a wake-up, or a lost answer to a command that changes the car. */
static void decide_resume(Procedure *p) {
        const char *at = p->stopped_at ?: procedure_step_id(p);
        size_t to = procedure_resume_index(p->view.kind, p->view.step);
        int before = p->keys_before;

        p->readback = READBACK_NONE;
        if (p->view.kind == PROCEDURE_IMMOBILIZER_RESET && p->reset_sent) {
                if (p->a002_state == IMMOBILIZER_RESET_RUNNING || p->a101_status == RESET_RUNNING) {
                        p->open = ECU_OPEN_RESET;
                        enter_step(p, (size_t) procedure_step_index(p->view.kind, "resetting"));
                        log_info("Procedure %" PRIu64 ": the reset runs in the ECU; following it to its end.", p->view.id);
                        return;
                }
                if (p->a101_status == RESET_SUCCEEDED || p->a002_state == IMMOBILIZER_RESET_DONE)
                        return finish(p, JOURNAL_STATE_SUCCEEDED, NULL,
                                      "The immobilizer was reset while immod was away: %u keys are registered now.",
                                      p->view.registered);
                if (p->a101_status == RESET_FAILED || p->a002_state == IMMOBILIZER_RESET_FAILED)
                        return finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED,
                                      "The ECU reports the reset failed; nothing was erased (%u keys registered).",
                                      p->view.registered);
                /* it never started: the passcodes were spent, nothing was erased */
                p->reset_sent = false;
        }
        if (p->view.kind == PROCEDURE_KEY_ERASURE && p->erase_sent && before >= 0 && (int) p->view.registered < before)
                return finish(p, JOURNAL_STATE_SUCCEEDED, NULL,
                              "The Erase reached the vehicle before immod stopped: %d key(s) were erased (%u keys "
                              "now).",
                              before - (int) p->view.registered, p->view.registered);
        p->erase_sent = false;
        if (p->view.steps[p->view.step].end == STEP_END_NONE)
                return finish(p, JOURNAL_STATE_SUCCEEDED, NULL, NULL);

        bool restarted = p->stopped_at;
        p->stopped_at = NULL;
        if (!restarted && to != p->view.step && p->view.steps[to].end != STEP_END_PASSCODE) {
                /* A wake-up or a lost answer: what immod holds in memory (the declared counts)
                 * is still good; only the passcode and what was open in the ECU are lost. */
                to = p->view.step;
                for (size_t i = 0; i <= p->view.step; i++)
                        if (p->view.steps[i].end == STEP_END_PASSCODE)
                                to = i;
        }
        keys_added_from_car(p);
        keys_after_readback(p, restarted);
        enter_step(p, to);
        if (!restarted && to == p->view.step && p->view.steps[to].end != STEP_END_PASSCODE)
                set_prompt(p, "The ECU is awake again. %s", step_info(p)->prompt);
        else if (!restarted && p->view.kind == PROCEDURE_IMMOBILIZER_RESET)
                set_prompt(p, "The ECU fell asleep (or lost its session) and forgot the immobilizer passcode: both "
                              "passcodes must be entered in one session. Get the immobilizer passcode for the new seed "
                              "shown.");
        else if (!restarted)
                set_prompt(p, "The ECU fell asleep (or lost its session) and the seed shown before is no longer "
                              "valid%s: get the passcode for the new seed shown.",
                           p->view.added > 0 ? "; the keys registered so far stay registered" : "");
        else if (p->view.kind == PROCEDURE_KEY_REGISTRATION)
                set_prompt(p, "immod restarted during step %s: the ECU forgot the passcode%s. Keys registered so far "
                              "stay registered (%u now, %u added). Get the smart code passcode for the new seed shown "
                              "and enter it; or Cancel, which keeps them.",
                           at, p->open == ECU_OPEN_NOTHING && p->a002_state == IMMOBILIZER_REGISTRATION ? " and registration mode was ended" : "",
                           p->view.registered, p->view.added);
        else if (p->view.kind == PROCEDURE_IMMOBILIZER_RESET && step_info(p)->enter == ENTER_IMMOBILIZER_SEED)
                set_prompt(p, "immod restarted during step %s: the reset did not start and nothing was erased. Both "
                              "passcodes must be entered in one session: get the immobilizer passcode for the new "
                              "seed shown.",
                           at);
        else if (p->view.kind == PROCEDURE_KEY_ERASURE && step_info(p)->end == STEP_END_KEY_COUNT)
                set_prompt(p, "immod restarted during step %s; nothing was deleted. Enter the number of customer keys "
                              "that are present again.",
                           at);
        else if (step_info(p)->end == STEP_END_PASSCODE)
                set_prompt(p, "immod restarted during step %s; the seed shown before is no longer valid. %s", at,
                           step_info(p)->prompt);
        else
                set_prompt(p, "immod restarted during step %s. %s", at, step_info(p)->prompt);
        procedure_bus_emit(p);
}

/* What a readback must have read before anything is decided from it: whether something is
 * open (a Cancel replies only once it is closed), the keys (a resume goes on from them), and
 * the outcome of a command that changes the car and whose answer never came. */
static bool readback_knows_enough(Procedure *p) {
        unsigned s = p->a002_state;
        bool reset_definite = (p->rb_known & RB_KNOWN_RESET) ||
                              ((p->rb_known & RB_KNOWN_STATE) && (s == IMMOBILIZER_RESET_RUNNING ||
                                                                  s == IMMOBILIZER_RESET_DONE || s == IMMOBILIZER_RESET_FAILED));

        if (p->reset_sent && !reset_definite)
                return false;
        if (!(p->rb_known & RB_KNOWN_KEYS)) /* an Erase's outcome among them */
                return false;
        return p->readback != READBACK_CANCEL || (p->rb_known & RB_KNOWN_STATE);
}

/* The car did not tell what it did (busy, answers lost): nothing is decided and nothing goes
 * on; the sent command stays in the journal, and the poll reads the car back again. */
static void readback_unsure(Procedure *p) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *c = TAKE_PTR(p->cancel);
        const char *about = "";

        if (p->reset_sent)
                about = " about the reset";
        else if (p->erase_sent)
                about = " about the Erase";
        p->readback = READBACK_NONE;
        p->unsure = true;
        p->last_probe = now_usec(CLOCK_MONOTONIC);
        log_warning("Procedure %" PRIu64 ": the vehicle could not be read back; trying again in %u s.", p->view.id,
                    (unsigned) (UNSURE_RETRY_USEC / USEC_PER_SEC));
        set_prompt(p, "The ECU answers but did not tell what it did%s; immod reads it back again every %u seconds and "
                      "goes on once it knows. Leave the car as it is.",
                   about, (unsigned) (UNSURE_RETRY_USEC / USEC_PER_SEC));
        if (c)
                (void) sd_bus_reply_method_errorf(c, IMMOD_ERROR_TIMEOUT,
                                                  "The ECU did not tell what it has open or did, so nothing is cancelled "
                                                  "yet; immod reads it back again every %u seconds: cancel again in a "
                                                  "moment.",
                                                  (unsigned) (UNSURE_RETRY_USEC / USEC_PER_SEC));
        reply_error(p, IMMOD_ERROR_TIMEOUT,
                    "The ECU did not tell what it did; immod reads the vehicle back again and goes on from what it "
                    "shows.");
        procedure_bus_emit(p);
        poll_soon(p);
}

static void rb_decide(Procedure *p) {
        if (!readback_knows_enough(p))
                readback_unsure(p);
        else if (p->readback == READBACK_CANCEL)
                decide_cancel(p);
        else
                decide_resume(p);
}

/* Creation */

static int gate_send(void *link, const uint8_t *data, size_t n, UdsCallback cb, void *userdata) {
        return uds_link_request(link, data, n, cb, userdata);
}

static void gate_idle(void *owner) {
        procedure_idle(owner);
}

static usec_t gate_clock(void) {
        return now_usec(CLOCK_MONOTONIC);
}

static int procedure_alloc(Manager *m, uint64_t id, ProcedureKind kind, const char *vin, const VehicleProfile *profile,
                           uint32_t owner, const char *technician, const char *repair_order, Procedure **ret) {
        Procedure *p;
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->manager = m;
        p->daemon = manager_daemon(m);
        p->view.id = id;
        snprintf(p->view.path, sizeof(p->view.path), PROCEDURE_PATH_PREFIX "/%" PRIu64, id);
        p->view.kind = kind;
        p->view.steps = procedure_steps(kind, &p->view.n_steps);
        snprintf(p->view.vin, sizeof(p->view.vin), "%s", vin);
        p->profile = profile;
        p->view.owner = owner;
        p->view.created = now_usec(CLOCK_REALTIME);
        p->view.technician = strdup(technician ?: "");
        p->view.repair_order = strdup(repair_order ?: "");
        p->keys_before = -1;
        p->a101_status = -1;
        p->view.battery_min = NAN;
        p->view.state = JOURNAL_STATE_RUNNING;
        p->battery_trace = malloc(sizeof(BatteryTrace));
        if (p->battery_trace)
                battery_trace_begin(p->battery_trace, now_usec(CLOCK_MONOTONIC));
        p->battery_state = battery_monitor_state(battery_watch_monitor(manager_battery(m)));
        if (!p->view.technician || !p->view.repair_order || !p->battery_trace) {
                procedure_free(p);
                return -ENOMEM;
        }

        r = ecu_gate_new(&(EcuGateOps) { .send = gate_send, .dispatch = run_cont, .idle = gate_idle, .clock = gate_clock },
                         p->daemon->link, p, &p->gate);
        if (r < 0) {
                procedure_free(p);
                return r;
        }
        /* 1 ms: the probe must go before tester present would, which sd-event's default slack
         * of 250 ms does not ensure */
        r = sd_event_add_time_relative(p->daemon->event, &p->poll, CLOCK_MONOTONIC, POLL_INTERVAL_USEC, USEC_PER_MSEC,
                                       on_poll, p);
        if (r < 0) {
                procedure_free(p);
                return r;
        }
        (void) sd_event_source_set_enabled(p->poll, SD_EVENT_ON);
        (void) sd_event_source_set_description(p->poll, "procedure-poll");
        *ret = p;
        return 0;
}

static void on_start_keys(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 6, "Reading the key status (DID A001)")) {
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED,
                       "The ECU did not give its key status; nothing was changed.");
                return;
        }
        keys_from_a001(p, r->data + 3);
        p->keys_before = (int) p->view.registered;
        /* answers StartProcedure with the path */
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = TAKE_PTR(p->pending);
        enter_step(p, 0);
        if (m)
                (void) sd_bus_reply_method_return(m, "o", p->view.path);
}

static void on_start_session(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 2, "Entering the extended session")) {
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED,
                       "The ECU refused the extended session; nothing was changed.");
                return;
        }
        hold_session(p);
        read_did(p, p->profile->dids.key_status, on_start_keys);
}

int procedure_start(Manager *m, uint64_t id, ProcedureKind kind, const char *vin, const VehicleProfile *profile,
                    uint32_t owner, const char *technician, const char *repair_order, sd_bus_message *msg,
                    Procedure **ret) {
        static const uint8_t extended[2] = { UDS_SESSION_CONTROL, 0x03 };
        Procedure *p;
        int r;

        r = procedure_alloc(m, id, kind, vin, profile, owner, technician, repair_order, &p);
        if (r < 0)
                return r;
        p->pending = sd_bus_message_ref(msg);
        r = request(p, extended, sizeof(extended), on_start_session);
        if (r < 0) {
                p->pending = sd_bus_message_unref(p->pending);
                procedure_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

/*
 * A procedure that was running when immod stopped goes on from what the car shows, never
 * from what immod had planned (readback()): a reset that runs is followed to its end, one
 * that ended is recorded as the ECU says, one that never started goes back to its first
 * passcode; a registration or an erasure has what it left open in the ECU ended (the keys
 * touched meanwhile counted) and goes back to its step that is safe to repeat (the step
 * tables' resume_at); an Erase that reached the car is recorded as done. Same procedure
 * object, one audit record in the end.
 */
int procedure_resume(Manager *m, const JournalRecord *j, const VehicleProfile *profile, Procedure **ret) {
        Procedure *p;
        char erase[JOURNAL_COMMAND_MAX_BYTES], reset[JOURNAL_COMMAND_MAX_BYTES];
        int r;

        r = procedure_alloc(m, j->id, j->kind, j->vin, profile, j->owner, j->technician, j->repair_order, &p);
        if (r < 0)
                return r;
        p->view.created = j->created;
        p->keys_before = j->keys_before;
        p->view.battery_min = j->battery_min;
        p->passcode_attempts = j->passcode_attempts;
        if (j->customer_last_name && j->customer_last_name[0] &&
            !(p->view.customer_last_name = strdup(j->customer_last_name))) {
                procedure_free(p);
                return -ENOMEM;
        }
        r = procedure_step_index(j->kind, j->step);
        p->view.step = r >= 0 ? (size_t) r : 0;
        p->view.state = JOURNAL_STATE_RUNNING;
        p->stopped_at = p->view.steps[p->view.step].id;

        routine_command_text(ROUTINE_START, profile->rids.smart_code_reset, -1, reset, sizeof(reset));
        routine_command_text(ROUTINE_STOP, profile->rids.key_erasure, -1, erase, sizeof(erase));
        p->reset_sent = j->kind == PROCEDURE_IMMOBILIZER_RESET &&
                        (p->view.steps[p->view.step].poll == POLL_RESET || (j->sent_command && startswith(j->sent_command, reset)));
        p->erase_sent = j->kind == PROCEDURE_KEY_ERASURE && j->sent_command && startswith(j->sent_command, erase);
        set_prompt(p, "immod restarted; reading the vehicle back before going on.");
        log_info("Procedure %" PRIu64 ": immod stopped during step %s%s%s; reading the vehicle back.", p->view.id, j->step,
                 j->sent_command ? " after sending " : "", j->sent_command ?: "");
        *ret = p;
        return 0;
}

void procedure_resume_begin(Procedure *p) {
        readback(p, READBACK_RESUME);
}

Procedure *procedure_free(Procedure *p) {
        if (!p)
                return NULL;
        procedure_fetch_abort(p);
        if (p->view.deferred) {
                (void) sd_bus_reply_method_errorf(p->view.deferred, IMMOD_ERROR_CANCELLED, "immod is shutting down.");
                p->view.deferred = sd_bus_message_unref(p->view.deferred);
        }
        if (p->cancel) {
                (void) sd_bus_reply_method_errorf(p->cancel, IMMOD_ERROR_CANCELLED, "immod is shutting down.");
                p->cancel = sd_bus_message_unref(p->cancel);
        }
        p->gate = ecu_gate_free(p->gate);
        explicit_bzero(p->passcode, sizeof(p->passcode));
        p->poll = sd_event_source_disable_unref(p->poll);
        p->pending = sd_bus_message_unref(p->pending);
        free(p->view.customer_last_name);
        free(p->view.technician);
        free(p->view.repair_order);
        free(p->view.error);
        free(p->view.error_message);
        free(p->battery_trace);
        free(p);
        return NULL;
}

/* Methods */

static int check_idle(Procedure *p, sd_bus_error *error) {
        if (p->cancel || p->readback == READBACK_CANCEL)
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY, "The procedure is being cancelled.");
        if (p->readback != READBACK_NONE)
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY,
                                         "immod is reading the vehicle back before going on; try again in a moment.");
        if (procedure_busy(p) || p->pending)
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY, "The procedure is talking to the ECU; try again.");
        /* until the car tells what a command that changes it did, nothing may be sent again */
        if ((p->reset_sent || p->erase_sent) && step_info(p)->poll != POLL_RESET)
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY,
                                         "%s was sent and the ECU has not told yet what it did; immod reads the vehicle "
                                         "back as soon as the ECU answers and goes on from what it shows.",
                                         p->reset_sent ? "The reset's start" : "The Erase");
        if (p->unsure)
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY,
                                         "immod could not read the vehicle back yet; it tries again every %u seconds.",
                                         (unsigned) (UNSURE_RETRY_USEC / USEC_PER_SEC));
        return 0;
}

static int wrong_step(Procedure *p, const char *method, sd_bus_error *error) {
        if (!procedure_is_active(p))
                return sd_bus_error_setf(error, IMMOD_ERROR_WRONG_STEP, "The procedure has ended (%s).",
                                         journal_state_to_string(p->view.state));
        return sd_bus_error_setf(error, IMMOD_ERROR_WRONG_STEP, "%s() does not end the current step %s.", method,
                                 procedure_step_id(p));
}

static void on_door(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 4, "Reading the vehicle status (DID A003)"))
                return;
        if (!(r->data[3] & VEHICLE_STATUS_DOOR_OPEN)) {
                reply_error(p, IMMOD_ERROR_ECU_REFUSED,
                            "The driver's door is closed (DID A003): open it and leave it open, then confirm again.");
                return;
        }
        enter_step(p, p->view.step + 1);
}

int procedure_acknowledge(Procedure *p, sd_bus_message *msg, const char *step, sd_bus_error *error) {
        int r;

        assert(p);
        assert(msg);
        if (!procedure_is_active(p) || step_info(p)->end != STEP_END_ACKNOWLEDGE || !streq(step, procedure_step_id(p)))
                return sd_bus_error_setf(error, IMMOD_ERROR_WRONG_STEP, "The current step is %s, not %s.",
                                         procedure_is_active(p) ? procedure_step_id(p) : journal_state_to_string(p->view.state),
                                         step);
        r = check_idle(p, error);
        if (r < 0)
                return r;

        switch (step_info(p)->check) {
        case CHECK_FREE_SLOT:
                if (p->view.available == 0)
                        return sd_bus_error_setf(error, IMMOD_ERROR_ECU_REFUSED,
                                                 "No key slot is free (%u of %u used): no key can be added.",
                                                 p->view.registered, p->view.max);
                break;
        case CHECK_DOOR_OPEN:
                p->pending = sd_bus_message_ref(msg);
                read_did(p, p->profile->dids.vehicle_status, on_door);
                return 1;
        case CHECK_NOTHING:
                break;
        }
        p->pending = sd_bus_message_ref(msg);
        enter_step(p, p->view.step + 1);
        return 1;
}

static void on_reset_started(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 4, "Starting the smart code reset")) {
                /* NRC: the reset did not start and erased nothing; the passcodes are spent. */
                p->reset_sent = false;
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED,
                       "The ECU refused to start the reset; nothing was erased.");
                return;
        }
        p->open = ECU_OPEN_RESET;
        enter_step(p, p->view.step + 1);
}

static void start_reset(Procedure *p) {
        p->reset_sent = true;
        routine_journalled(p, ROUTINE_START, p->profile->rids.smart_code_reset, -1, on_reset_started);
}

static void on_passcode_refused_attempts(Procedure *p, const UdsResponse *r) {
        if (r->error == 0 && r->nrc == 0 && r->size >= 7) {
                const uint8_t *d = r->data + 3;
                set_uint(p, &p->view.attempts_left, p->view.seed_kind == PASSCODE_IMMOBILIZER ? d[0] : d[1], PROP_ATTEMPTS);
                set_uint(p, &p->view.lockout_s, be16(d + 2), PROP_LOCKOUT);
        }
        if (p->view.lockout_s > 0) {
                clear_seed(p);
                reply_error(p, IMMOD_ERROR_LOCKED_OUT,
                            "Too many wrong passcodes: the ECU is locked for %u seconds. Wait, then submit again for a "
                            "new seed.",
                            p->view.lockout_s);
                return;
        }
        /* a fresh seed, then the error: the caller sees the new Seed at once */
        p->rejected = true;
        request_seed(p);
}

static void on_passcode(Procedure *p, const UdsResponse *r) {
        if (r->nrc == UDS_NRC_INVALID_KEY || r->nrc == UDS_NRC_EXCEEDED_ATTEMPTS ||
            r->nrc == UDS_NRC_REQUEST_SEQUENCE_ERROR || r->nrc == UDS_NRC_TIME_DELAY_NOT_EXPIRED) {
                read_did(p, p->profile->dids.security_attempts, on_passcode_refused_attempts);
                return;
        }
        if (r->error == ECU_GATE_LOST) {
                /* unlocked or not, the seed is spent: a fresh one, and the caller tries again */
                p->rejected = false;
                reply_error(p, IMMOD_ERROR_TIMEOUT,
                            "The ECU did not answer the passcode in time; the seed is spent. A new seed is shown: get "
                            "the passcode for it.");
                request_seed(p);
                return;
        }
        if (!answer_ok(p, r, 2, "Sending the passcode"))
                return;
        set_uint(p, &p->view.lockout_s, 0, PROP_LOCKOUT);
        clear_seed(p);
        if (step_info(p)->passcode == PASSCODE_START_RESET)
                start_reset(p);
        else
                enter_step(p, p->view.step + 1);
}

static void send_passcode(Procedure *p) {
        uint8_t req[2 + PASSCODE_SMART_CODE_LEN / 2] = { UDS_SECURITY_ACCESS };
        size_t n;

        if (p->view.seed_kind == PASSCODE_IMMOBILIZER) {
                req[1] = SECURITY_LEVEL_IMMOBILIZER + 1;
                memcpy(req + 2, p->passcode, PASSCODE_IMMOBILIZER_LEN);
                n = 2 + PASSCODE_IMMOBILIZER_LEN;
        } else {
                req[1] = SECURITY_LEVEL_SMART_CODE + 1;
                (void) hex_decode(p->passcode, req + 2, PASSCODE_SMART_CODE_LEN / 2);
                n = 2 + PASSCODE_SMART_CODE_LEN / 2;
        }
        explicit_bzero(p->passcode, sizeof(p->passcode));
        p->passcode_attempts++;
        send_or_fail(p, req, n, on_passcode);
        explicit_bzero(req, sizeof(req));
}

/* A reset needs a known voltage at or above the profile's minimum, whatever battery.source
 * says: the ECU's own +B (DID A010) is read first; the configured source's last reading
 * stands in only when the ECU gives none. */
static void on_reset_battery(Procedure *p, const UdsResponse *r) {
        BatteryWatch *w = manager_battery(p->manager);
        double volts = NAN, min_v = p->profile->battery.start_min_v;
        const char *source = "the ECU's +B (DID A010)";

        if (r->error == 0 && r->nrc == 0)
                (void) battery_parse_answer(p->profile->dids.battery, r->data, r->size, &volts);
        if (isnan(volts) && battery_watch_enabled(w)) {
                volts = battery_monitor_voltage(battery_watch_monitor(w));
                source = "the configured battery source";
        } else if (!isnan(volts)) {
                if (p->daemon->config.battery_source == BATTERY_SOURCE_ECU)
                        battery_watch_feed(w, volts); /* the watch adds it to the trace */
                else
                        note_battery(p, volts);
        }
        if (isnan(volts)) {
                explicit_bzero(p->passcode, sizeof(p->passcode));
                reply_error(p, IMMOD_ERROR_BATTERY_LOW,
                            "No battery voltage can be read: the ECU does not report its +B (DID A010) and no other "
                            "source is configured. A reset needs a known voltage of at least %.1f V: connect a power "
                            "supply holding 13.5 V and try again; the passcode was not sent.",
                            min_v);
                return;
        }
        if (volts < min_v) {
                explicit_bzero(p->passcode, sizeof(p->passcode));
                reply_error(p, IMMOD_ERROR_BATTERY_LOW,
                            "The battery is at %.2f V (%s), below the %.1f V this vehicle needs for a reset: connect "
                            "a battery charger or a power supply holding 13.5 V, then try again; the passcode was "
                            "not sent.",
                            volts, source, min_v);
                return;
        }
        log_info("Procedure %" PRIu64 ": battery %.2f V (%s) allows the reset (minimum %.1f V).", p->view.id, volts, source,
                 min_v);
        send_passcode(p);
}

int procedure_submit_passcode(Procedure *p, sd_bus_message *msg, const char *passcode, sd_bus_error *error) {
        const char *reason = NULL;
        int r;

        assert(p);
        assert(msg);
        if (!procedure_is_active(p) || step_info(p)->end != STEP_END_PASSCODE)
                return wrong_step(p, "SubmitPasscode", error);
        r = check_idle(p, error);
        if (r < 0)
                return r;

        if (!p->view.have_seed) {
                /* after a lockout or a lost session: a new seed first */
                p->pending = sd_bus_message_ref(msg);
                request_seed(p);
                return 1;
        }
        r = passcode_normalize(p->view.seed_kind, passcode, p->passcode, sizeof(p->passcode), &reason);
        if (r < 0) {
                explicit_bzero(p->passcode, sizeof(p->passcode));
                return sd_bus_error_setf(error, IMMOD_ERROR_INVALID_PASSCODE_FORMAT, "%s",
                                         reason ?: "The passcode is malformed.");
        }

        p->pending = sd_bus_message_ref(msg);
        if (step_info(p)->passcode == PASSCODE_START_RESET)
                read_did(p, p->profile->dids.battery, on_reset_battery);
        else
                send_passcode(p);
        return 1;
}

int procedure_set_key_count(Procedure *p, sd_bus_message *msg, uint32_t present, sd_bus_error *error) {
        int r;

        assert(p);
        assert(msg);
        if (!procedure_is_active(p) || step_info(p)->end != STEP_END_KEY_COUNT)
                return wrong_step(p, "SetKeyCount", error);
        r = check_idle(p, error);
        if (r < 0)
                return r;
        if (present == 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "At least one key must be present; with no key left, run an immobilizer reset.");
        if (present > p->view.registered)
                return sd_bus_error_setf(error, IMMOD_ERROR_COUNT_MISMATCH,
                                         "%u keys declared present, but only %u are registered.", present, p->view.registered);
        p->view.declared = present;
        p->view.to_delete = p->view.registered - present;
        p->view.dirty |= PROP_KEYS;
        p->pending = sd_bus_message_ref(msg);
        enter_step(p, p->view.step + 1);
        set_prompt(p, "Keep %u key(s) and permanently delete %u key(s). Confirm the counts.", p->view.declared, p->view.to_delete);
        procedure_bus_emit(p);
        return 1;
}

static void on_erased_keys(Procedure *p, const UdsResponse *r) {
        if (keys_after_change(p, r, on_erased_keys))
                enter_step(p, p->view.step + 1);
}

static void on_erase(Procedure *p, const UdsResponse *r) {
        if (r->error == 0 && r->nrc == UDS_NRC_CONDITIONS_NOT_CORRECT && now_usec(CLOCK_REALTIME) >= p->view.deadline) {
                p->erase_sent = false;
                p->open = ECU_OPEN_NOTHING;
                reply_error(p, IMMOD_ERROR_TIMEOUT, "The erasure window closed; nothing was deleted.");
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_TIMEOUT, "The erasure window closed before Erase; nothing was deleted.");
                return;
        }
        if (!answer_ok(p, r, 4, "Erasing the keys")) {
                p->erase_sent = false; /* refused: nothing was deleted */
                return;
        }
        p->open = ECU_OPEN_NOTHING;
        p->view.deadline = 0;
        p->view.dirty |= PROP_DEADLINE;
        reply_ok(p); /* the keys are erased: the call says so, even if a Cancel came meanwhile */
        read_keys_after_change(p, on_erased_keys);
}

int procedure_erase(Procedure *p, sd_bus_message *msg, uint32_t expected, sd_bus_error *error) {
        int r;

        assert(p);
        assert(msg);
        if (!procedure_is_active(p) || step_info(p)->end != STEP_END_ERASE)
                return wrong_step(p, "Erase", error);
        r = check_idle(p, error);
        if (r < 0)
                return r;
        if (p->view.deadline > 0 && now_usec(CLOCK_REALTIME) >= p->view.deadline)
                return sd_bus_error_setf(error, IMMOD_ERROR_TIMEOUT,
                                         "The erasure window has closed; nothing was deleted. The procedure ends as "
                                         "soon as the ECU confirms it.");
        if (p->view.touched != p->view.declared || p->view.registered < p->view.touched || expected != p->view.registered - p->view.touched)
                return sd_bus_error_setf(error, IMMOD_ERROR_COUNT_MISMATCH,
                                         "%u of %u declared keys were touched and %u would be deleted, not %u; nothing "
                                         "was deleted.",
                                         p->view.touched, p->view.declared, p->view.registered - MIN(p->view.touched, p->view.registered), expected);
        p->pending = sd_bus_message_ref(msg);
        p->erase_sent = true;
        routine_journalled(p, ROUTINE_STOP, p->profile->rids.key_erasure, (int) expected, on_erase);
        return 1;
}

static void on_registration_stopped(Procedure *p, const UdsResponse *r) {
        /* NRC 0x22 here: registration mode had already ended */
        p->open = ECU_OPEN_NOTHING;
        if (r->error == ECU_GATE_LOST) {
                reply_error(p, IMMOD_ERROR_TIMEOUT,
                            "The ECU did not answer in time; immod reads the vehicle back and goes on from what it "
                            "shows.");
                readback(p, READBACK_RESUME);
                return;
        }
        enter_step(p, p->view.step + 1);
}

int procedure_finish_registration(Procedure *p, sd_bus_message *msg, sd_bus_error *error) {
        int r;

        assert(p);
        assert(msg);
        if (!procedure_is_active(p) || step_info(p)->enter != ENTER_REGISTRATION_MODE_2 || p->reg_mode != 2)
                return wrong_step(p, "Finish", error);
        r = check_idle(p, error);
        if (r < 0)
                return r;
        p->pending = sd_bus_message_ref(msg);
        routine_journalled(p, ROUTINE_STOP, p->profile->rids.key_registration, -1, on_registration_stopped);
        return 1;
}

/* Cancel goes on once nothing of the procedure is in flight: the answers that came meanwhile
 * were acted on only where they record a change of the car. */
static void cancel_proceed(Procedure *p) {
        if (!procedure_is_active(p) || p->readback == READBACK_CANCEL)
                return;
        if (step_info(p)->poll == POLL_RESET) {
                /* the answer in flight started the reset */
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *c = TAKE_PTR(p->cancel);
                (void) sd_bus_reply_method_errorf(c, IMMOD_ERROR_NOT_CANCELLABLE,
                                                  "The ECU had already started the reset when Cancel came; it must "
                                                  "not be interrupted: wait for it to end.");
                return;
        }
        procedure_fetch_abort(p);
        reply_error(p, IMMOD_ERROR_CANCELLED, "The procedure was cancelled.");
        readback(p, READBACK_CANCEL);
}

static void procedure_idle(Procedure *p) {
        if (p->cancel && procedure_is_active(p) && p->readback != READBACK_CANCEL)
                cancel_proceed(p);
        if (!procedure_busy(p))
                procedure_bus_run_deferred(p);
}

int procedure_cancel(Procedure *p, sd_bus_message *msg, sd_bus_error *error) {
        assert(p);
        assert(msg);
        if (!procedure_is_active(p))
                return wrong_step(p, "Cancel", error);
        if (step_info(p)->poll == POLL_RESET)
                return sd_bus_error_setf(error, IMMOD_ERROR_NOT_CANCELLABLE,
                                         "The ECU reset is running and must not be interrupted; wait for it to end.");
        if (p->cancel || p->readback == READBACK_CANCEL)
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY, "The procedure is being cancelled already.");
        p->cancel = sd_bus_message_ref(msg);
        log_info("Procedure %" PRIu64 ": cancel requested at step %s%s.", p->view.id, procedure_step_id(p),
                 procedure_busy(p) ? ", waiting for the ECU's answer in flight" : "");
        if (!procedure_busy(p))
                cancel_proceed(p);
        /* else: the answer in flight comes first (procedure_idle()) */
        return 1;
}
