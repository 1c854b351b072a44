/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The reference passcode server's YAML configuration: where to listen, the TLS files,
 * the database, the master key, and the dealers and users it knows.
 */

#include "util.h"

#define CONFIG_ID_MAX 64     /* user ids */
#define CONFIG_DEALER_MAX 32 /* dealer codes */
#define CONFIG_NAME_MAX 128  /* names of people and dealers */
#define CONFIG_TITLE_MAX 64
#define CONFIG_MAX_DEALERS 256
#define CONFIG_MAX_USERS 1024

typedef enum UserRole {
        USER_TECHNICIAN,
        USER_MANAGER,
} UserRole;

typedef struct ConfigDealer {
        char *code;
        char *name;
} ConfigDealer;

typedef struct ConfigUser {
        char *id;
        char *name;
        char *dealer;
        UserRole role;
        char *title;
        char *password_hash; /* always hashed, see password.h */
} ConfigUser;

typedef struct ServerConfig {
        char *listen_address;
        unsigned port;
        char *tls_certificate; /* paths, relative ones taken from the config file's folder */
        char *tls_key;
        char *database; /* a file path (SQLite) or a postgresql:// URI */
        char *master_key_file;
        char *web_root; /* the folder of the service's web pages (web-pages.h) */
        unsigned approval_validity_hours;
        unsigned session_hours;
        unsigned workers; /* HTTP worker threads, each with its own database connection */
        ConfigDealer *dealers;
        size_t n_dealers;
        ConfigUser *users;
        size_t n_users;
} ServerConfig;

int server_config_load(const char *path, ServerConfig **ret);
/* The same for text in memory; relative paths are taken from `dir`. */
int server_config_parse(const char *name, const char *dir, const char *text, size_t size, ServerConfig **ret);
/* The same, with the "FILE:LINE:COLUMN: KEY: ..." message of bad content also copied into errbuf. */
int server_config_parse_full(const char *name, const char *dir, const char *text, size_t size, char *errbuf,
                             size_t errbuf_size, ServerConfig **ret);
ServerConfig *server_config_free(ServerConfig *c);
static inline void server_config_freep(ServerConfig **c) {
        server_config_free(*c);
}

const ConfigDealer *server_config_find_dealer(const ServerConfig *c, const char *code);

/* Rules the configuration and the admin command share. */
bool title_is_approving(const char *title);
bool user_id_valid(const char *id);
bool dealer_code_valid(const char *code);
/* Printable UTF-8 text without control characters, 1..max bytes. */
bool text_valid(const char *s, size_t max);
const char *user_role_to_string(UserRole r);
int user_role_from_string(const char *s, UserRole *ret);
