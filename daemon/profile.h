/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Vehicle profiles: what immod needs to know about a vehicle family, one YAML file each
 * (vehicle-protocol.md §2): the models and model years it covers (the bulletins'
 * applicability tables), the link and addressing, the UDS timing, the DIDs and RIDs,
 * the seed layouts, the key slots, the expected durations and the battery rules. Every
 * value but name, make, models and reference_protocol has the reference protocol's
 * default.
 */

#include "isotp.h"
#include "uds.h"
#include "util.h"

#define PROFILE_MAX_FILES 64U
#define PROFILE_MAX_MODELS 64U
#define PROFILE_NAME_MAX 64U
#define PROFILE_MODEL_NAME_MAX 32U
#define PROFILE_YEAR_MIN 1990U
#define PROFILE_YEAR_MAX 2100U

typedef struct ProfileModel {
        char *name;          /* as the bulletin writes it, e.g. "ES 300h" */
        unsigned first_year; /* model years, inclusive */
        unsigned last_year;
        unsigned line; /* in the profile file, for messages */
        unsigned column;
} ProfileModel;

typedef struct ProfileDids {
        uint16_t vin;                 /* F190 */
        uint16_t software_version;    /* F195 */
        uint16_t model;               /* F197 */
        uint16_t key_status;          /* A001 */
        uint16_t immobilizer_state;   /* A002 */
        uint16_t vehicle_status;      /* A003 */
        uint16_t security_attempts;   /* A004 */
        uint16_t battery;             /* A010 */
        uint16_t registration_result; /* A020 */
} ProfileDids;

typedef struct ProfileRids {
        uint16_t smart_code_reset; /* A101 */
        uint16_t key_registration; /* A102 */
        uint16_t key_erasure;      /* A103 */
} ProfileRids;

typedef struct VehicleProfile {
        char *name;              /* e.g. "lexus-es-ux-ls-2018-2021"; unique in a set */
        char *path;              /* the file it came from */
        bool reference_protocol; /* speaks vehicle-protocol.md rather than an OEM's own */
        char *make;              /* as vin_make() names it: "Lexus", "Toyota" */
        ProfileModel *models;
        size_t n_models;

        struct {
                uint32_t tx_id;      /* tester -> ECU, 11-bit */
                uint32_t rx_id;      /* ECU -> tester */
                bool extended;       /* extended addressing */
                uint8_t ext_address; /* the ECU's sub-address, both directions */
                bool padding;
                uint8_t padding_byte;
                unsigned bitrate;
        } link;

        struct {
                unsigned p2_ms;
                unsigned p2_star_ms;
                unsigned tester_present_ms;
                unsigned s3_ms;
        } timing;

        unsigned security_attempts; /* passcode attempts before a lockout */
        unsigned key_slots;

        struct {
                unsigned reset_s;
                unsigned erasure_window_s;
                unsigned registration_timeout_s;
        } durations;

        struct {
                double start_min_v;  /* a reset is refused below this ("low") */
                double warn_below_v; /* the running minimum: below it is "critical" */
        } battery;

        ProfileDids dids;
        ProfileRids rids;

        struct {
                unsigned immobilizer; /* bytes after 67 01 */
                unsigned vin;         /* bytes after 67 03: VIN, Data1, Data2, Data3 */
                unsigned data1;
                unsigned data2;
                unsigned data3;
        } seeds;
} VehicleProfile;

typedef struct ProfileSet ProfileSet;

/* Loads one profile file. -EINVAL with a "FILE:LINE:COLUMN: KEY: ..." message (logged, and copied
 * into errbuf when not NULL). */
int profile_load(const char *path, VehicleProfile **ret, char *errbuf, size_t errbuf_size);
/* The same for text in memory (the fuzzer's door); `name` stands for the file. */
int profile_parse(const char *name, const char *text, size_t size, VehicleProfile **ret, char *errbuf,
                  size_t errbuf_size);
VehicleProfile *profile_free(VehicleProfile *p);
static inline void profile_freep(VehicleProfile **p) {
        profile_free(*p);
}

/*
 * Loads every *.yaml in a folder (at most PROFILE_MAX_FILES), in name order. Any bad file
 * fails the whole set, as do two profiles with the same name or covering the same make,
 * model and year. -ENOENT when the folder is missing or holds no profile.
 */
int profile_load_dir(const char *dir, ProfileSet **ret);
int profile_load_dir_full(const char *dir, ProfileSet **ret, char *errbuf, size_t errbuf_size);
ProfileSet *profile_set_free(ProfileSet *s);
static inline void profile_set_freep(ProfileSet **s) {
        profile_set_free(*s);
}

size_t profile_set_size(const ProfileSet *s);
const VehicleProfile *profile_set_get(const ProfileSet *s, size_t i);
/* By profile name, e.g. for a journal that recorded it. */
const VehicleProfile *profile_set_find(const ProfileSet *s, const char *name);

/*
 * The profile covering a vehicle, or NULL: make compared without regard to case, model
 * without regard to case and white space ("ES300H" is "ES 300h"), year within a model's
 * years.
 */
const VehicleProfile *profile_match(const ProfileSet *s, const char *make, const char *model, unsigned year);
bool profile_covers(const VehicleProfile *p, const char *make, const char *model, unsigned year);
bool profile_model_name_equal(const char *a, const char *b);

/* The ISO-TP settings of the profile's link, over isotp_config_init()'s defaults. */
void profile_isotp_config(const VehicleProfile *p, IsoTpConfig *ret);
/* P2 and P2* of the profile, over uds_client_config_init()'s defaults. Tester present is
 * left off: the session starts it with uds_client_set_tester_present(). */
void profile_uds_client_config(const VehicleProfile *p, UdsClientConfig *ret);
