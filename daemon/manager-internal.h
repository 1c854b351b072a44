/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The Manager object's insides, shared by the files it is cut into: manager.c (the object,
 * its properties, the procedures), manager-vehicle.c (Identify, SetVehicle, ReadKeyStatus),
 * manager-approval.c (RequestApproval, GetApproval), manager-auth.c (who may call),
 * bus-args.c (reading and checking D-Bus arguments).
 */

#include "battery-source.h"
#include "manager.h"
#include "procedure.h"
#include "profile.h"
#include "vin.h"

/* Bound on strings from callers (VIN, option values), before any closer check. */
#define STRING_ARG_MAX 64U

typedef enum Problem {
        PROBLEM_LINK_DOWN = 1U << 0,
        PROBLEM_ECU_ASLEEP = 1U << 1,
        PROBLEM_ECU_UNREACHABLE = 1U << 2,
        PROBLEM_NO_VEHICLE = 1U << 3,
        PROBLEM_UNSUPPORTED_VEHICLE = 1U << 4,
        PROBLEM_PROCEDURE_RUNNING = 1U << 5,
        PROBLEM_SERVER_UNREACHABLE = 1U << 6,
        PROBLEM_BATTERY_LOW = 1U << 7,
        PROBLEM_BATTERY_CRITICAL = 1U << 8,
} Problem;


typedef struct Vehicle {
        bool known;
        char vin[VIN_LEN + 1];
        bool vin_check_ok;
        const char *make; /* vin_make()'s static string; NULL when the WMI is unknown */
        char model[PROFILE_MODEL_NAME_MAX + 1];
        unsigned year;                 /* 0 when unknown */
        const VehicleProfile *profile; /* NULL: no profile covers it */
        const char *source;            /* "ecu" or "manual" */
} Vehicle;

/* A caller's uid, and whether it may call methods (manager-auth.c). */
#define AUTH_CACHE_MAX 32
#define AUTH_VERDICT_USEC (10 * USEC_PER_SEC)
typedef struct AuthCache {
        char sender[32]; /* the unique bus name; "" when unused */
        uid_t uid;
        bool in_group;
        usec_t verdict_at; /* CLOCK_MONOTONIC; USEC_INFINITY: none yet */
} AuthCache;

struct Manager {
        Daemon *daemon;
        sd_bus_slot *slot;
        const VehicleProfile *reference; /* addressing and DIDs before a vehicle is known */

        LinkState link_state;
        EcuState ecu_state;
        Vehicle vehicle;
        unsigned problems;

        Procedure **procedures; /* oldest first */
        size_t n_procedures;
        Procedure *active;
        uint64_t next_id;
        sd_bus_slot *procedure_slot, *enumerator_slot;
        BatteryWatch *battery;
        sd_event_source *wake_timer;  /* armed while EcuState is asleep */
        struct WakeProbe *wake_probe; /* the 3E 00 on its way, NULL when none */
        gid_t group_gid;              /* the configured group's, once looked up */
        bool group_resolved;
        struct HistoryRead *history_reads; /* GetHistory calls being answered */
        AuthCache auth_cache[AUTH_CACHE_MAX];
        unsigned auth_cache_next; /* the entry replaced next */
};

/* Outlives the Manager when immod stops with a probe on its way. */
typedef struct WakeProbe {
        Manager *manager;
} WakeProbe;

/* One method call waiting for the ECU; answered from the UDS callback. */
typedef struct EcuCall {
        Manager *manager;
        sd_bus_message *message;
        uint16_t did;
        char vin[VIN_LEN + 1];
} EcuCall;

/* manager.c */
void manager_emit(Manager *m, const char *a, const char *b);
void manager_update_link_state(Manager *m);
bool link_is_down(LinkState s);

/* manager-vehicle.c */
void manager_set_vehicle(Manager *m, const Vehicle *v);
/* The Vehicle property's dictionary (also Identify's answer). */
int append_vehicle(sd_bus_message *reply, const Vehicle *v);
int method_identify(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_read_key_status(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_set_vehicle(sd_bus_message *msg, void *userdata, sd_bus_error *error);

/* manager-history.c */
typedef struct HistoryRead HistoryRead;
int method_get_history(sd_bus_message *msg, void *userdata, sd_bus_error *error);
void manager_history_reads_free(Manager *m);

/* manager-approval.c */
int method_request_approval(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_get_approval(sd_bus_message *msg, void *userdata, sd_bus_error *error);
