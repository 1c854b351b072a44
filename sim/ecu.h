/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The simulated immobilizer / smart key ECU (vehicle-protocol.md §3-§8): one ECU per
 * process. ecu.c holds its life cycle, link, timers and what a person does at the car;
 * uds-server.c answers the diagnostic services; routines.c runs A101/A102/A103;
 * keys.c holds the key slots, Data3 and the shared revocation list; state-file.c keeps
 * the car across runs; control.c is the control socket.
 */

#include <jansson.h>
#include <systemd/sd-event.h>

#include "immo-protocol.h"
#include "passcode.h"
#include "transport.h"
#include "vin.h"

#define ECU_MAX_SLOTS 7
#define ECU_MODEL_MAX 32
#define ECU_MAX_EVENTS 32     /* unreported key events kept per routine */
#define ECU_MAX_REVOKED 65536 /* ids in the revocation list we look at */
#define ECU_RX_ID 0x750
#define ECU_TX_ID 0x758
#define ECU_EXT_ADDRESS 0x57
#define ECU_PADDING 0x55
#define ECU_S3_USEC (5000 * USEC_PER_MSEC)
#define ECU_MAX_ATTEMPTS 3
#define ECU_MIN_RESET_MV 12000 /* +B needed to start A101 */
#define ECU_RESET_FAIL_MV 9000 /* below this A101 fails with reason 1 */
#define ECU_RESET_SEC 960      /* unscaled durations of the vehicle */
#define ECU_LOCKOUT_SEC 600
#define ECU_REG_IDLE_SEC 60
#define ECU_ERASE_WINDOW_SEC 30
#define ECU_PENDING_SPACING_USEC (100 * USEC_PER_MSEC)
#define ECU_OUT_QUEUE 4
/* bytes of a request that `fault pending N REQ` and `fault delay MS REQ` can name */
#define ECU_FAULT_TARGET_MAX 4U

typedef struct Control Control;
typedef struct VbusHub VbusHub;

typedef struct EcuOptions {
        const char *link;
        const char *vin;
        const char *model;
        const char *master_key_file;
        const char *revocation_file;
        const char *state_file;
        const char *control_path;
        uint32_t keys[ECU_MAX_SLOTS];
        unsigned n_keys;
        unsigned max_slots;
        unsigned time_scale;
        unsigned window_scale;
        unsigned sleep_after_sec;
        unsigned battery_mv;
        bool have_data1;
        uint64_t data1;
        bool session_repeat_keep; /* --session-repeat=keep: a repeated 10 03 keeps A102/A103 open */
} EcuOptions;

typedef enum Level {
        LEVEL_IMMOBILIZER, /* 27 01 / 27 02 */
        LEVEL_SMART_CODE,  /* 27 03 / 27 04 */
        _LEVEL_MAX,
} Level;

typedef struct KeyEvent {
        uint8_t code, slot;
        uint32_t key;
} KeyEvent;

typedef struct EventQueue {
        KeyEvent events[ECU_MAX_EVENTS];
        unsigned n;
} EventQueue;


typedef struct OutMessage {
        uint8_t data[ISOTP_MAX_MESSAGE];
        size_t size;
} OutMessage;

typedef struct Ecu {
        sd_event *event;
        EcuOptions opt;
        uint8_t kvin[PASSCODE_KEY_SIZE];
        uint64_t data1; /* 44 bits */

        /* keys.c: slots 1..max_slots; slot[0] unused so that numbers match the wire */
        uint32_t slot[ECU_MAX_SLOTS + 1];
        bool slot_used[ECU_MAX_SLOTS + 1];
        uint32_t key_generation; /* bumped on every change of the key set: part of Data3 */
        uint32_t *revoked;       /* revoked by this vehicle (the file holds every vehicle's) */
        size_t n_revoked;

        /* the car */
        bool door_open, ignition, key_in_cabin;
        unsigned speed_kmh;
        unsigned battery_mv;

        /* diagnostics */
        bool extended;
        bool asleep;
        bool unlocked[_LEVEL_MAX];
        bool smart_after_immobilizer; /* 04 was unlocked while 02 already was (A101's order) */
        bool seed_pending[_LEVEL_MAX];
        uint8_t seed[PASSCODE_SEED_SIZE];
        char seed_data2[PASSCODE_DATA2_LEN + 1];
        char seed_data3[PASSCODE_DATA3_LEN + 1];
        unsigned failed[_LEVEL_MAX];
        usec_t lockout_until[_LEVEL_MAX]; /* 0: not locked out */

        /* routines.c */
        struct {
                ResetStatus status;
                bool started;
                usec_t start, end;
                uint8_t fail_reason;
                uint8_t final_progress;
        } reset;
        struct {
                RegStatus status;
                bool started;
                uint8_t mode;
                EventQueue events;
        } reg;
        struct {
                EraseStatus status;
                bool started;
                unsigned keep;
                bool touched[ECU_MAX_SLOTS + 1];
                unsigned n_touched;
                usec_t end;
                EventQueue events;
        } erase;
        RegistrationResult last_result;
        sd_event_source *reset_timer, *reg_timer, *erase_timer;

        /* ecu.c: the link and the answers */
        VbusHub *hub;
        Transport *transport;
        bool frame_faults; /* the transport takes a frame filter (our ISO-TP) */
        sd_event_source *s3_timer, *sleep_timer, *answer_timer;
        OutMessage out[ECU_OUT_QUEUE]; /* answers waiting for the transport */
        unsigned out_head, n_out;
        bool sending;
        OutMessage delayed; /* the answer held back by a fault */
        bool have_delayed;
        unsigned delayed_pending; /* 0x78 still to send before it */
        usec_t delayed_extra;     /* `fault delay` still to wait after them */
        uint8_t delayed_sid;

        struct {
                unsigned pending;
                unsigned delay_ms;
                /* `fault pending N REQ` / `fault delay MS REQ`: held here until a request
                 * that starts with target[] comes (ecu_handle_request()), then armed above */
                uint8_t target[ECU_FAULT_TARGET_MAX];
                size_t target_size;
                unsigned target_pending, target_delay_ms;
                bool nrc_armed;
                uint8_t nrc_sid, nrc;
                unsigned drop;
                bool truncate_frame, truncate_answer, truncate_active;
                bool fc_armed;
        } fault;

        Control *control;
} Ecu;

int ecu_new(sd_event *e, const EcuOptions *opt, Ecu **ret);
Ecu *ecu_free(Ecu *ecu);
static inline void ecu_freep(Ecu **e) {
        ecu_free(*e);
}
/* Opens the link and starts the timers. */
int ecu_start(Ecu *ecu);

/* Durations of the vehicle, scaled as §7 says. */
usec_t ecu_scaled(const Ecu *ecu, unsigned seconds);
usec_t ecu_window_scaled(const Ecu *ecu, unsigned seconds);
usec_t ecu_now(const Ecu *ecu);

/* What a person does at the car (control.c). Negative errno with a reason for people. */
int ecu_touch(Ecu *ecu, uint32_t key, const char **ret_reason);
void ecu_courtesy(Ecu *ecu);
void ecu_set_door(Ecu *ecu, bool open);
void ecu_set_ignition(Ecu *ecu, bool on);
void ecu_set_speed(Ecu *ecu, unsigned kmh);
void ecu_set_battery(Ecu *ecu, unsigned mv);
void ecu_sleep(Ecu *ecu);
json_t *ecu_state_json(Ecu *ecu);

/* Every session change, S3 expiry and sleep: relock, drop seeds, end registration/erasure. */
void ecu_drop_security(Ecu *ecu);
/* Relock and drop seeds only: a repeated 10 03 under --session-repeat=keep. */
void ecu_relock(Ecu *ecu);
/* The answer to the request being handled; faults apply here. */
void ecu_answer(Ecu *ecu, const uint8_t *data, size_t size);
void ecu_answer_nrc(Ecu *ecu, uint8_t sid, uint8_t nrc);
/* A beep and a key event, for the control socket's followers. */
void ecu_beep(Ecu *ecu, unsigned n);
void ecu_report_event(Ecu *ecu, EventQueue *q, KeyEventCode code, uint8_t slot, uint32_t key);
/* Writes the state file, if any; logs failures (the ECU runs on). */
void ecu_save(Ecu *ecu);

/* uds-server.c */
void ecu_handle_request(Ecu *ecu, const uint8_t *req, size_t n);
bool ecu_level_locked_out(Ecu *ecu, Level l, usec_t *ret_remaining);
uint8_t ecu_attempts_left(Ecu *ecu, Level l);

/* routines.c */
void ecu_routine_control(Ecu *ecu, const uint8_t *req, size_t n);
int ecu_routines_init(Ecu *ecu);
void ecu_routines_done(Ecu *ecu);
/* The key touched the start switch: routes it to the routine that waits for one. */
void ecu_routines_touch(Ecu *ecu, uint32_t key);
/* Session drop or sleep: registration and erasure end (a running reset goes on). */
void ecu_routines_session_lost(Ecu *ecu);
void ecu_routines_battery_changed(Ecu *ecu);
/* Resumes a reset that was running when the state was saved. */
int ecu_reset_resume(Ecu *ecu, usec_t remaining);
uint8_t ecu_reset_progress(Ecu *ecu);
usec_t ecu_reset_remaining(Ecu *ecu);
uint8_t ecu_immobilizer_state(Ecu *ecu);
json_t *ecu_routines_json(Ecu *ecu);

/* keys.c */
unsigned ecu_n_registered(const Ecu *ecu);
int ecu_find_key(const Ecu *ecu, uint32_t key); /* slot, or 0 */
int ecu_add_key(Ecu *ecu, uint32_t key);        /* slot, or -ENOSPC */
/* Erases a slot and revokes its key everywhere (the shared file). */
int ecu_erase_slot(Ecu *ecu, unsigned slot);
bool ecu_key_revoked(Ecu *ecu, uint32_t key);
int ecu_remember_revoked(Ecu *ecu, uint32_t key);
uint32_t ecu_data3(const Ecu *ecu);
void ecu_data1_hex(const Ecu *ecu, char ret[PASSCODE_DATA1_LEN + 1]);
uint64_t ecu_default_data1(const char *vin);
int parse_key_id(const char *s, uint32_t *ret);

/* state-file.c */
int ecu_state_load(Ecu *ecu, bool *ret_found);
int ecu_state_save(Ecu *ecu);
