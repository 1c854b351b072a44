/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * immod's configuration file (YAML), e.g. /etc/immod/immod.conf:
 *
 *   link: vbus:PATH | socketcan:IF | socketcan-isotp:IF
 *   profiles: FOLDER
 *   state_dir: FOLDER
 *   group: immo
 *   tester_present_ms: 2000
 *   battery: {source: ecu | hwmon:PATH | none}
 *   server: {url: URL, ca_file: FILE, client_cert: FILE, client_key: FILE,
 *            dealer_code: CODE, timeout_s: N}          # optional
 *
 * Every key is optional; unknown and duplicate keys are errors.
 */

#include "link.h"
#include "util.h"

/* meson passes the installed paths; these are the Debian ones. */
#ifndef IMMOD_CONFIG_FILE
#define IMMOD_CONFIG_FILE "/etc/immod/immod.conf"
#endif
#ifndef IMMOD_PROFILES_DIR
#define IMMOD_PROFILES_DIR "/usr/share/immod/profiles"
#endif

#define CONFIG_DEFAULT_LINK "vbus:/run/immod/vbus.sock"
#define CONFIG_DEFAULT_STATE_DIR "/var/lib/immod"
#define CONFIG_DEFAULT_GROUP "immo"
#define CONFIG_DEFAULT_TESTER_PRESENT_MS 2000U
#define CONFIG_TESTER_PRESENT_MS_MIN 100U
#define CONFIG_TESTER_PRESENT_MS_MAX 60000U
#define CONFIG_DEFAULT_SERVER_TIMEOUT_S 30U
#define CONFIG_SERVER_TIMEOUT_S_MAX 600U
#define CONFIG_GROUP_NAME_MAX 31U

typedef enum BatterySource {
        BATTERY_SOURCE_ECU,   /* DID A010 */
        BATTERY_SOURCE_HWMON, /* a file holding millivolts, e.g. /sys/class/hwmon/hwmon0/in1_input */
        BATTERY_SOURCE_NONE,
} BatterySource;

typedef struct ServerConfig {
        char *url;         /* NULL: no passcode service configured */
        char *ca_file;     /* NULL: the system's CA store */
        char *client_cert; /* NULL: no client certificate (then client_key is NULL too) */
        char *client_key;
        char *dealer_code; /* default for RequestApproval; NULL when not set */
        unsigned timeout_s;
} ServerConfig;

typedef struct ImmodConfig {
        char *path; /* the file that was read; NULL when only defaults apply */
        LinkUri link;
        char *profiles_dir;
        char *state_dir;
        char *group;
        unsigned tester_present_ms;
        BatterySource battery_source;
        char *battery_hwmon_path; /* for BATTERY_SOURCE_HWMON, else NULL */
        ServerConfig server;
} ImmodConfig;

/* Fills in the defaults. -ENOMEM only. */
int config_init(ImmodConfig *c);
/* Frees what a loaded or initialised configuration holds; the struct itself is the caller's. */
void config_done(ImmodConfig *c);

/*
 * Reads a configuration file over the defaults. With path NULL, IMMOD_CONFIG_FILE is read
 * if it exists, else the defaults apply; a path given explicitly must exist.
 * -EINVAL for bad content, with a "FILE:LINE:COLUMN: KEY: ..." message logged and, with the _full
 * variant, copied into errbuf. *ret is written only on success; free it with config_done().
 */
int config_load(const char *path, ImmodConfig *ret);
int config_load_full(const char *path, ImmodConfig *ret, char *errbuf, size_t errbuf_size);
/* The same for text in memory (the fuzzer's door); `name` stands for the file in messages, and
 * ret->path stays NULL. */
int config_parse(const char *name, const char *text, size_t size, ImmodConfig *ret, char *errbuf,
                 size_t errbuf_size);

/* Syntax checks, also for other callers (e.g. a D-Bus method that takes a group name). */
bool config_group_name_valid(const char *name);
/* https://HOST..., or http:// only for 127.0.0.1, [::1] or localhost. */
bool config_server_url_valid(const char *url);

const char *battery_source_to_string(BatterySource s);
