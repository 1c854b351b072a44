/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "control.h"
#include "ecu.h"
#include "event-util.h"
#include "log.h"
#include "uds.h"
#include "vbus.h"

static int ecu_open_transport(Ecu *ecu);
static void ecu_close_transport(Ecu *ecu);

usec_t ecu_now(const Ecu *ecu) {
        return event_now(ecu->event);
}

usec_t ecu_scaled(const Ecu *ecu, unsigned seconds) {
        return (usec_t) seconds * USEC_PER_SEC / ecu->opt.time_scale;
}

usec_t ecu_window_scaled(const Ecu *ecu, unsigned seconds) {
        return (usec_t) seconds * USEC_PER_SEC / ecu->opt.window_scale;
}

static int timer_arm(Ecu *ecu, sd_event_source **s, usec_t when, sd_event_time_handler_t handler,
                     const char *description) {
        /* 1 ms accuracy: sd-event's default slack would blur the scaled timers. */
        return event_timer_arm(ecu->event, s, when, USEC_PER_MSEC, handler, ecu, description);
}

static void timer_disarm(sd_event_source *s) {
        if (s)
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
}

/* --- events for the control socket's followers --- */

static const char *const event_names[] = {
        [EVENT_RECOGNISED] = "recognised",
        [EVENT_REGISTERED] = "registered",
        [EVENT_REJECTED_ERASED] = "rejected-erased",
        [EVENT_REJECTED_NO_SLOT] = "rejected-no-slot",
        [EVENT_REJECTED_ALREADY] = "rejected-already-registered",
        [EVENT_TIMED_OUT] = "timed-out",
        [EVENT_KEPT] = "kept",
        [EVENT_UNKNOWN_KEY] = "unknown-key",
};

static void broadcast(Ecu *ecu, json_t *j) {
        _cleanup_free_ char *s = NULL;

        if (!j)
                return;
        s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (s && ecu->control)
                control_broadcast(ecu->control, s);
}

void ecu_beep(Ecu *ecu, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                broadcast(ecu, json_pack("{s:s}", "type", "beep"));
}

void ecu_report_event(Ecu *ecu, EventQueue *q, KeyEventCode code, uint8_t slot, uint32_t key) {
        char id[9];

        if (q->n < ECU_MAX_EVENTS)
                q->events[q->n++] = (KeyEvent) { .code = code, .slot = slot, .key = key };
        else
                log_warning("Event queue full, event %u not kept for the results", code);
        snprintf(id, sizeof(id), "%08X", key);
        log_info("Key event %u (%s), slot %u, key %s", code, event_names[code], slot, id);
        broadcast(ecu, json_pack("{s:s, s:i, s:s, s:i, s:s}", "type", "event", "event", (int) code, "name",
                                 event_names[code], "slot", (int) slot, "key", id));
}

void ecu_save(Ecu *ecu) {
        int r;

        if (!ecu->opt.state_file)
                return;
        r = ecu_state_save(ecu);
        if (r < 0)
                log_error_errno(r, "Failed to save the state to %s: %m", ecu->opt.state_file);
}

/* --- answers: the out queue, and the faults that hold an answer back --- */

static void pump(Ecu *ecu) {
        int r;

        while (!ecu->sending && ecu->n_out > 0 && ecu->transport) {
                OutMessage *m = &ecu->out[ecu->out_head];

                /* The transport may report "sent" from inside transport_send() (a single
                 * frame goes out at once) and that pumps again: take the message off the
                 * queue first. Its slot is not reused before the next enqueue. */
                ecu->out_head = (ecu->out_head + 1) % ECU_OUT_QUEUE;
                ecu->n_out--;
                ecu->sending = true;
                r = transport_send(ecu->transport, m->data, m->size);
                if (r == -EBUSY) {
                        /* back to the head of the queue, for the next "sent" */
                        ecu->out_head = (ecu->out_head + ECU_OUT_QUEUE - 1) % ECU_OUT_QUEUE;
                        ecu->n_out++;
                        ecu->sending = false;
                        return;
                }
                if (r < 0) {
                        ecu->sending = false;
                        log_warning_errno(r, "Cannot send an answer: %m");
                }
        }
}

static void enqueue(Ecu *ecu, const uint8_t *data, size_t size) {
        OutMessage *m;

        if (!ecu->transport)
                return;
        if (ecu->n_out >= ECU_OUT_QUEUE) {
                log_warning("Answer queue full, an answer was dropped");
                return;
        }
        m = &ecu->out[(ecu->out_head + ecu->n_out) % ECU_OUT_QUEUE];
        memcpy(m->data, data, size);
        m->size = size;
        ecu->n_out++;
        pump(ecu);
}

static int on_answer_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Ecu *ecu = userdata;
        usec_t wait;

        if (!ecu->have_delayed)
                return 0;
        if (ecu->delayed_pending > 0) {
                ecu->delayed_pending--;
                enqueue(ecu, (const uint8_t[]) { UDS_NEGATIVE_RESPONSE, ecu->delayed_sid, UDS_NRC_RESPONSE_PENDING }, 3);
                wait = ECU_PENDING_SPACING_USEC;
        } else if (ecu->delayed_extra > 0) {
                wait = ecu->delayed_extra;
                ecu->delayed_extra = 0;
        } else {
                ecu->have_delayed = false;
                enqueue(ecu, ecu->delayed.data, ecu->delayed.size);
                return 0;
        }
        if (timer_arm(ecu, &ecu->answer_timer, ecu_now(ecu) + wait, on_answer_timer, "ecu-answer") < 0) {
                log_error("Cannot arm the answer timer, answering at once");
                ecu->have_delayed = false;
                enqueue(ecu, ecu->delayed.data, ecu->delayed.size);
        }
        return 0;
}

/* Faults `pending N` and `delay MS` hold the answer back: N responsePending 100 ms apart
 * (well inside P2*server), then the delay, then the answer. */
void ecu_answer(Ecu *ecu, const uint8_t *data, size_t size) {
        size_t n = size;

        if (size == 0 || size > ISOTP_MAX_MESSAGE)
                return;
        if (ecu->fault.truncate_answer && size > 1) {
                /* A wrong-length answer: the last byte is missing. */
                ecu->fault.truncate_answer = false;
                n = size - 1;
        }
        if (ecu->fault.truncate_frame) {
                ecu->fault.truncate_frame = false;
                ecu->fault.truncate_active = true;
        }
        if (ecu->fault.pending == 0 && ecu->fault.delay_ms == 0) {
                enqueue(ecu, data, n);
                return;
        }

        memcpy(ecu->delayed.data, data, n);
        ecu->delayed.size = n;
        ecu->delayed_sid = data[0] == UDS_NEGATIVE_RESPONSE && size >= 2 ? data[1] : (uint8_t) (data[0] - 0x40);
        ecu->delayed_pending = ecu->fault.pending;
        ecu->delayed_extra = (usec_t) ecu->fault.delay_ms * USEC_PER_MSEC;
        ecu->fault.pending = 0;
        ecu->fault.delay_ms = 0;
        ecu->have_delayed = true;
        /* The first step at once: a responsePending inside P2server, or the delay. */
        (void) on_answer_timer(NULL, 0, ecu);
}

void ecu_answer_nrc(Ecu *ecu, uint8_t sid, uint8_t nrc) {
        ecu_answer(ecu, (const uint8_t[]) { UDS_NEGATIVE_RESPONSE, sid, nrc }, 3);
}

/* Outgoing frames: `fault drop` and `fault truncate` act here. */
static int frame_filter(void *userdata, struct can_frame *f) {
        Ecu *ecu = userdata;

        if (ecu->fault.drop > 0) {
                ecu->fault.drop--;
                log_info("Fault: dropping a frame (%u more to drop)", ecu->fault.drop);
                return 1;
        }
        if (ecu->fault.truncate_active) {
                /* The frame ends before what its PCI announces: 3 bytes left. */
                ecu->fault.truncate_active = false;
                f->len = MIN(f->len, 3);
                log_info("Fault: truncating a frame to %u bytes", f->len);
        }
        return 0;
}

/* --- sessions, S3 and sleep --- */

void ecu_relock(Ecu *ecu) {
        for (Level l = 0; l < _LEVEL_MAX; l++) {
                ecu->unlocked[l] = false;
                ecu->seed_pending[l] = false;
        }
        ecu->smart_after_immobilizer = false;
}

void ecu_drop_security(Ecu *ecu) {
        ecu_relock(ecu);
        ecu_routines_session_lost(ecu);
}

static int on_s3(sd_event_source *s, uint64_t usec, void *userdata) {
        Ecu *ecu = userdata;

        log_info("S3 expired: back to the default session, security locked");
        ecu->extended = false;
        ecu_drop_security(ecu);
        return 0;
}

static void go_to_sleep(Ecu *ecu, const char *why) {
        if (ecu->asleep)
                return;
        log_info("Going to sleep: %s", why);
        ecu->asleep = true;
        ecu->extended = false;
        ecu->key_in_cabin = false;
        ecu_drop_security(ecu);
        timer_disarm(ecu->s3_timer);
        timer_disarm(ecu->sleep_timer);
        timer_disarm(ecu->answer_timer);
        ecu->have_delayed = false;
        /* A sleeping ECU's CAN controller is off: not even flow control goes out. */
        ecu_close_transport(ecu);
}

static int on_sleep_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Ecu *ecu = userdata;

        go_to_sleep(ecu, "no diagnostic frame on the bus");
        return 0;
}

static void restart_sleep_timer(Ecu *ecu) {
        int r = timer_arm(ecu, &ecu->sleep_timer, ecu_now(ecu) + (usec_t) ecu->opt.sleep_after_sec * USEC_PER_SEC,
                          on_sleep_timer, "ecu-sleep");
        if (r < 0)
                log_error_errno(r, "Cannot arm the sleep timer: %m");
}

static void wake_up(Ecu *ecu, const char *why) {
        int r;

        if (!ecu->asleep)
                return;
        log_info("Waking up: %s", why);
        r = ecu_open_transport(ecu);
        if (r < 0) {
                log_error_errno(r, "Cannot reopen the link on wake-up: %m");
                return;
        }
        ecu->asleep = false;
        ecu->extended = false;
        restart_sleep_timer(ecu);
}

static void activity(Ecu *ecu) {
        int r;

        restart_sleep_timer(ecu);
        if (ecu->extended) {
                r = timer_arm(ecu, &ecu->s3_timer, ecu_now(ecu) + ECU_S3_USEC, on_s3, "ecu-s3");
                if (r < 0)
                        log_error_errno(r, "Cannot arm the S3 timer: %m");
        } else
                timer_disarm(ecu->s3_timer);
}

/* --- the transport --- */

static void on_received(Transport *t, const uint8_t *data, size_t size, void *userdata) {
        Ecu *ecu = userdata;
        bool busy = ecu->have_delayed;

        /* `fault fc` applies to one multi-frame request; a single frame carries at most 6
         * bytes with extended addressing. */
        if (ecu->fault.fc_armed && size > 6) {
                ecu->fault.fc_armed = false;
                (void) transport_set_flow_control(t, 0, 0, 0);
        }
        if (size == 0)
                return;

        /* While an answer is held back, only tester present without answer may come in:
         * anything else is told the ECU is busy, as ISO 14229-1 says. */
        if (busy && !(size == 2 && data[0] == UDS_TESTER_PRESENT && data[1] == UDS_SPRMIB)) {
                activity(ecu);
                enqueue(ecu, (const uint8_t[]) { UDS_NEGATIVE_RESPONSE, data[0], UDS_NRC_BUSY_REPEAT_REQUEST }, 3);
                return;
        }
        ecu_handle_request(ecu, data, size);
        activity(ecu);
}

static void on_sent(Transport *t, int error, void *userdata) {
        Ecu *ecu = userdata;

        if (error < 0)
                log_info_errno(error, "An answer was not delivered: %m");
        ecu->sending = false;
        pump(ecu);
}

static void on_receive_failed(Transport *t, int error, const char *cause, void *userdata) {
        Ecu *ecu = userdata;

        log_info("A request was lost: %s", cause);
        restart_sleep_timer(ecu);
}

static int ecu_open_transport(Ecu *ecu) {
        IsoTpConfig c;
        int r;

        if (ecu->transport)
                return 0;
        isotp_config_init(&c);
        c.rx_id = ECU_RX_ID;
        c.tx_id = ECU_TX_ID;
        c.extended = true;
        c.rx_ext_address = ECU_EXT_ADDRESS;
        c.tx_ext_address = ECU_EXT_ADDRESS;
        c.tx_padding = true;
        c.padding_byte = ECU_PADDING;
        c.block_size = 0;
        c.st_min = 0;

        if (ecu->hub)
                r = transport_open_on_frames(vbus_hub_local_link(ecu->hub), &c, &ecu->transport);
        else
                r = transport_open(ecu->event, ecu->opt.link, &c, &ecu->transport);
        if (r < 0)
                return r;
        transport_set_handlers(ecu->transport,
                               &(TransportHandlers) {
                                       .received = on_received,
                                       .sent = on_sent,
                                       .receive_failed = on_receive_failed,
                               },
                               ecu);
        r = transport_set_frame_filter(ecu->transport, frame_filter, ecu);
        if (r < 0 && r != -EOPNOTSUPP)
                return r;
        ecu->frame_faults = r >= 0;
        ecu->sending = false;
        return 0;
}

static void ecu_close_transport(Ecu *ecu) {
        ecu->transport = transport_free(ecu->transport);
        ecu->n_out = 0;
        ecu->out_head = 0;
        ecu->sending = false;
}

int ecu_start(Ecu *ecu) {
        LinkUri uri;
        int r;

        r = link_uri_parse(ecu->opt.link, &uri, NULL);
        if (r < 0)
                return r;
        if (uri.kind == LINK_VBUS) {
                r = vbus_hub_new(ecu->event, uri.name, &ecu->hub);
                if (r < 0)
                        return r;
        }
        r = ecu_open_transport(ecu);
        if (r < 0)
                return r;
        if (ecu->opt.control_path) {
                r = control_new(ecu, ecu->opt.control_path, &ecu->control);
                if (r < 0)
                        return r;
        }
        restart_sleep_timer(ecu);
        log_info("ECU %s (%s) on %s, %u of %u key slots used", ecu->opt.vin, ecu->opt.model, ecu->opt.link,
                 ecu_n_registered(ecu), ecu->opt.max_slots);
        return 0;
}

/* --- what a person does at the car --- */

int ecu_touch(Ecu *ecu, uint32_t key, const char **ret_reason) {
        log_info("Key %08X touched the start switch", key);
        if (ecu_find_key(ecu, key) > 0)
                ecu->key_in_cabin = true;
        if (ecu->asleep) {
                /* The start switch's antenna is off while the ECU sleeps. */
                ecu_beep(ecu, 0);
                return 0;
        }
        ecu_routines_touch(ecu, key);
        return 0;
}

void ecu_courtesy(Ecu *ecu) {
        wake_up(ecu, "door courtesy switch");
}

void ecu_set_door(Ecu *ecu, bool open) {
        bool changed = ecu->door_open != open;

        ecu->door_open = open;
        if (changed)
                wake_up(ecu, open ? "driver door opened" : "driver door closed");
}

void ecu_set_ignition(Ecu *ecu, bool on) {
        /* Not a wake event (§3: the bulletins forbid cycling the engine switch). */
        ecu->ignition = on;
}

void ecu_set_speed(Ecu *ecu, unsigned kmh) {
        ecu->speed_kmh = kmh;
}

void ecu_set_battery(Ecu *ecu, unsigned mv) {
        ecu->battery_mv = mv;
        ecu_routines_battery_changed(ecu);
}

void ecu_sleep(Ecu *ecu) {
        go_to_sleep(ecu, "asked to through the control socket");
}

json_t *ecu_state_json(Ecu *ecu) {
        char data1[PASSCODE_DATA1_LEN + 1], id[9], d3[9];
        json_t *keys, *revoked, *routines, *j;
        usec_t rem[_LEVEL_MAX] = {};
        bool locked[_LEVEL_MAX];

        ecu_data1_hex(ecu, data1);
        snprintf(d3, sizeof(d3), "%08X", ecu_data3(ecu));
        keys = json_array();
        for (unsigned s = 1; s <= ecu->opt.max_slots; s++)
                if (ecu->slot_used[s]) {
                        snprintf(id, sizeof(id), "%08X", ecu->slot[s]);
                        json_array_append_new(keys, json_pack("{s:i, s:s}", "slot", (int) s, "key", id));
                }
        revoked = json_array();
        for (size_t i = 0; i < ecu->n_revoked; i++) {
                snprintf(id, sizeof(id), "%08X", ecu->revoked[i]);
                json_array_append_new(revoked, json_string(id));
        }
        for (Level l = 0; l < _LEVEL_MAX; l++)
                locked[l] = ecu_level_locked_out(ecu, l, &rem[l]);

        j = json_pack("{s:b, s:s, s:s, s:s, s:s, s:o, s:i, s:i, s:o, s:s, s:{s:b, s:b}, s:{s:i, s:i},"
                      " s:{s:b, s:b}, s:I, s:i, s:f, s:s, s:b, s:i, s:b, s:i}",
                      "ok", 1,
                      "vin", ecu->opt.vin,
                      "model", ecu->opt.model,
                      "data1", data1,
                      "data3", d3,
                      "keys", keys,
                      "registered", (int) ecu_n_registered(ecu),
                      "max_slots", (int) ecu->opt.max_slots,
                      "revoked", revoked,
                      "session", ecu->extended ? "extended" : "default",
                      "unlocked", "immobilizer", ecu->unlocked[LEVEL_IMMOBILIZER], "smart_code",
                      ecu->unlocked[LEVEL_SMART_CODE],
                      "attempts_left", "immobilizer", (int) ecu_attempts_left(ecu, LEVEL_IMMOBILIZER), "smart_code",
                      (int) ecu_attempts_left(ecu, LEVEL_SMART_CODE),
                      "locked_out", "immobilizer", locked[LEVEL_IMMOBILIZER], "smart_code",
                      locked[LEVEL_SMART_CODE],
                      "lockout_remaining_ms", (json_int_t) (MAX(rem[0], rem[1]) / USEC_PER_MSEC),
                      "immobilizer_state", (int) ecu_immobilizer_state(ecu),
                      "battery", ecu->battery_mv / 1000.0,
                      "door", ecu->door_open ? "open" : "closed",
                      "ignition", ecu->ignition,
                      "speed", (int) ecu->speed_kmh,
                      "asleep", ecu->asleep,
                      "last_registration_result", (int) ecu->last_result);
        if (!j)
                return NULL;
        json_object_set_new(j, "battery_mv", json_integer(ecu->battery_mv));
        routines = ecu_routines_json(ecu);
        if (routines)
                json_object_update(j, routines);
        json_decref(routines);
        return j;
}

/* --- life cycle --- */

int ecu_new(sd_event *e, const EcuOptions *opt, Ecu **ret) {
        _cleanup_(ecu_freep) Ecu *ecu = NULL;
        uint8_t master[PASSCODE_KEY_SIZE];
        bool found = false;
        int r;

        ecu = calloc(1, sizeof(*ecu));
        if (!ecu)
                return -ENOMEM;
        ecu->event = sd_event_ref(e);
        ecu->opt = *opt;
        ecu->battery_mv = opt->battery_mv;

        r = passcode_read_master_key(opt->master_key_file, master);
        if (r < 0)
                return r;
        r = passcode_vin_key(master, opt->vin, ecu->kvin);
        explicit_bzero(master, sizeof(master));
        if (r < 0)
                return log_error_errno(r, "Cannot derive the vehicle key: %m");

        r = ecu_routines_init(ecu);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the routines: %m");

        if (opt->state_file) {
                r = ecu_state_load(ecu, &found);
                if (r < 0)
                        return r;
        }
        if (!found) {
                /* A new car: --keys and --data1 seed it. */
                ecu->data1 = opt->have_data1 ? opt->data1 : ecu_default_data1(opt->vin);
                for (unsigned i = 0; i < opt->n_keys; i++)
                        if (ecu_add_key(ecu, opt->keys[i]) < 0)
                                return log_error_errno(-ENOSPC, "More --keys than --max-slots");
                ecu->key_generation = 0;
                ecu_save(ecu);
        }
        *ret = TAKE_PTR(ecu);
        return 0;
}

Ecu *ecu_free(Ecu *ecu) {
        if (!ecu)
                return NULL;
        ecu->control = control_free(ecu->control);
        ecu_routines_done(ecu);
        sd_event_source_disable_unref(ecu->s3_timer);
        sd_event_source_disable_unref(ecu->sleep_timer);
        sd_event_source_disable_unref(ecu->answer_timer);
        transport_free(ecu->transport);
        vbus_hub_free(ecu->hub);
        explicit_bzero(ecu->kvin, sizeof(ecu->kvin));
        free(ecu->revoked);
        sd_event_unref(ecu->event);
        free(ecu);
        return NULL;
}
