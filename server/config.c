/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <libgen.h>
#include <stdio.h>

#include "config.h"
#include "log.h"
#include "password.h"
#include "yaml-doc.h"

static const char *const approving_titles[] = {
        "Dealer Principal",
        "General Manager",
        "Service Manager",
        "Service Director",
        "Service/Parts Director",
        "Parts Manager",
        "Parts Director",
        "Customer Relations Manager",
        "Customer Satisfaction Manager",
        "Shop Foreman",
        "Diagnostic Specialist",
        "Team Leader",
};

bool title_is_approving(const char *title) {
        for (size_t i = 0; i < ELEMENTSOF(approving_titles); i++)
                if (strcasecmp(title, approving_titles[i]) == 0)
                        return true;
        return false;
}

static bool token_valid(const char *s, size_t max) {
        size_t n = strlen(s);

        if (n == 0 || n > max)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '.' || *p == '_' || *p == '-' || *p == '@'))
                        return false;
        return true;
}

bool user_id_valid(const char *id) {
        return token_valid(id, CONFIG_ID_MAX);
}

bool dealer_code_valid(const char *code) {
        return token_valid(code, CONFIG_DEALER_MAX);
}

bool text_valid(const char *s, size_t max) {
        size_t n = strlen(s);

        if (n == 0 || n > max)
                return false;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

const char *user_role_to_string(UserRole r) {
        return r == USER_MANAGER ? "manager" : "technician";
}

int user_role_from_string(const char *s, UserRole *ret) {
        if (streq(s, "technician"))
                *ret = USER_TECHNICIAN;
        else if (streq(s, "manager"))
                *ret = USER_MANAGER;
        else
                return -EINVAL;
        return 0;
}

ServerConfig *server_config_free(ServerConfig *c) {
        if (!c)
                return NULL;
        free(c->listen_address);
        free(c->tls_certificate);
        free(c->tls_key);
        free(c->database);
        free(c->master_key_file);
        free(c->web_root);
        for (size_t i = 0; i < c->n_dealers; i++) {
                free(c->dealers[i].code);
                free(c->dealers[i].name);
        }
        free(c->dealers);
        for (size_t i = 0; i < c->n_users; i++) {
                free(c->users[i].id);
                free(c->users[i].name);
                free(c->users[i].dealer);
                free(c->users[i].title);
                free(c->users[i].password_hash);
        }
        free(c->users);
        free(c);
        return NULL;
}

const ConfigDealer *server_config_find_dealer(const ServerConfig *c, const char *code) {
        for (size_t i = 0; i < c->n_dealers; i++)
                if (streq(c->dealers[i].code, code))
                        return &c->dealers[i];
        return NULL;
}

static int dup_string(const YamlNode *n, const char *what, char **ret) {
        const char *s;
        int r;

        r = yaml_node_get_string(n, what, &s);
        if (r < 0)
                return r;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int get_text(const YamlNode *map, const char *key, size_t max, char **ret) {
        const YamlNode *n;
        const char *s;
        char what[96];
        int r;

        r = yaml_mapping_require(map, key, &n);
        if (r < 0)
                return r;
        snprintf(what, sizeof what, "text of at most %zu bytes without control characters", max);
        r = yaml_node_get_string(n, what, &s);
        if (r < 0)
                return r;
        if (!text_valid(s, max))
                return yaml_node_error(n, "expected %s, got \"%s\"", what, s);
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

/* A path; a relative one is taken from the configuration file's folder. */
static int get_path(const YamlNode *map, const char *key, const char *dir, char **ret) {
        const YamlNode *n;
        const char *s;
        int r;

        r = yaml_mapping_require(map, key, &n);
        if (r < 0)
                return r;
        r = yaml_node_get_string(n, "a file path", &s);
        if (r < 0)
                return r;
        if (s[0] == '/' || !dir)
                *ret = strdup(s);
        else if (asprintf(ret, "%s/%s", dir, s) < 0)
                *ret = NULL;
        return *ret ? 0 : -ENOMEM;
}

static int parse_listen(const YamlNode *n, ServerConfig *c) {
        static const char *const known[] = { "address", "port", NULL };
        const YamlNode *v;
        uint64_t port;
        int r;

        r = yaml_mapping_check(n, "the listening address and port", known);
        if (r < 0)
                return r;
        v = yaml_mapping_get(n, "address");
        if (v) {
                free(c->listen_address);
                c->listen_address = NULL;
                r = dup_string(v, "an IPv4 or IPv6 address", &c->listen_address);
                if (r < 0)
                        return r;
        }
        r = yaml_mapping_require(n, "port", &v);
        if (r < 0)
                return r;
        r = yaml_node_get_uint(v, 1, 65535, "a TCP port", &port);
        if (r < 0)
                return r;
        c->port = (unsigned) port;
        return 0;
}

static int parse_tls(const YamlNode *n, const char *dir, ServerConfig *c) {
        static const char *const known[] = { "certificate", "key", NULL };
        int r;

        r = yaml_mapping_check(n, "the TLS certificate and key files", known);
        if (r < 0)
                return r;
        r = get_path(n, "certificate", dir, &c->tls_certificate);
        if (r < 0)
                return r;
        return get_path(n, "key", dir, &c->tls_key);
}

static int parse_dealers(const YamlNode *n, ServerConfig *c) {
        static const char *const known[] = { "code", "name", NULL };
        size_t k = yaml_node_size(n);
        int r;

        if (yaml_node_kind(n) != YAML_DOC_SEQUENCE || k == 0)
                return yaml_node_error(n, "expected a list of dealers, each with code and name");
        if (k > CONFIG_MAX_DEALERS)
                return yaml_node_error(n, "expected at most %d dealers", CONFIG_MAX_DEALERS);
        c->dealers = calloc(k, sizeof *c->dealers);
        if (!c->dealers)
                return -ENOMEM;
        for (size_t i = 0; i < k; i++) {
                const YamlNode *d = yaml_node_item(n, i), *v;
                ConfigDealer *cd = &c->dealers[i];

                r = yaml_mapping_check(d, "a dealer with code and name", known);
                if (r < 0)
                        return r;
                c->n_dealers = i + 1;
                r = yaml_mapping_require(d, "code", &v);
                if (r < 0)
                        return r;
                r = dup_string(v, "a dealer code", &cd->code);
                if (r < 0)
                        return r;
                if (!dealer_code_valid(cd->code))
                        return yaml_node_error(v, "expected a dealer code of 1 to %d letters, digits, '.', '_', '-' or '@', got \"%s\"",
                                               CONFIG_DEALER_MAX, cd->code);
                for (size_t j = 0; j < i; j++)
                        if (streq(c->dealers[j].code, cd->code))
                                return yaml_node_error(v, "dealer \"%s\" is listed twice", cd->code);
                r = get_text(d, "name", CONFIG_NAME_MAX, &cd->name);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_user(const YamlNode *u, ServerConfig *c, ConfigUser *cu) {
        static const char *const known[] = { "id", "name", "dealer", "role", "title", "password", "password_hash", NULL };
        const YamlNode *v, *pw, *pwh;
        const char *s;
        int r;

        r = yaml_mapping_check(u, "a user with id, name, dealer, role, title and password or password_hash", known);
        if (r < 0)
                return r;
        r = yaml_mapping_require(u, "id", &v);
        if (r < 0)
                return r;
        r = dup_string(v, "a user id", &cu->id);
        if (r < 0)
                return r;
        if (!user_id_valid(cu->id))
                return yaml_node_error(v, "expected a user id of 1 to %d letters, digits, '.', '_', '-' or '@', got \"%s\"",
                                       CONFIG_ID_MAX, cu->id);
        r = get_text(u, "name", CONFIG_NAME_MAX, &cu->name);
        if (r < 0)
                return r;
        r = yaml_mapping_require(u, "dealer", &v);
        if (r < 0)
                return r;
        r = dup_string(v, "a dealer code", &cu->dealer);
        if (r < 0)
                return r;
        if (!server_config_find_dealer(c, cu->dealer))
                return yaml_node_error(v, "expected the code of a dealer listed under dealers, got \"%s\"", cu->dealer);
        r = yaml_mapping_require(u, "role", &v);
        if (r < 0)
                return r;
        r = yaml_node_get_string(v, "technician or manager", &s);
        if (r < 0)
                return r;
        if (user_role_from_string(s, &cu->role) < 0)
                return yaml_node_error(v, "expected technician or manager, got \"%s\"", s);
        r = get_text(u, "title", CONFIG_TITLE_MAX, &cu->title);
        if (r < 0)
                return r;

        pw = yaml_mapping_get(u, "password");
        pwh = yaml_mapping_get(u, "password_hash");
        if (!!pw == !!pwh)
                return yaml_node_error(u, "expected exactly one of password and password_hash");
        if (pwh) {
                r = dup_string(pwh, "a password hash", &cu->password_hash);
                if (r < 0)
                        return r;
                if (!password_hash_valid(cu->password_hash))
                        return yaml_node_error(pwh, "expected a hash from \"immo-passcode-admin hash-password\" "
                                                    "(pbkdf2-sha256$ITERATIONS$SALT$HASH)");
        } else {
                char h[PASSWORD_HASH_MAX];

                r = yaml_node_get_string(pw, "a password", &s);
                if (r < 0)
                        return r;
                if (strlen(s) > PASSWORD_MAX)
                        return yaml_node_error(pw, "expected a password of at most %d bytes", PASSWORD_MAX);
                r = password_hash(s, h);
                if (r < 0)
                        return log_error_errno(r, "Failed to hash a password: %m");
                cu->password_hash = strdup(h);
                if (!cu->password_hash)
                        return -ENOMEM;
        }
        return 0;
}

static int parse_users(const YamlNode *n, ServerConfig *c) {
        size_t k = yaml_node_size(n);
        int r;

        if (yaml_node_kind(n) != YAML_DOC_SEQUENCE)
                return yaml_node_error(n, "expected a list of users");
        if (k > CONFIG_MAX_USERS)
                return yaml_node_error(n, "expected at most %d users", CONFIG_MAX_USERS);
        c->users = calloc(MAX(k, 1U), sizeof *c->users);
        if (!c->users)
                return -ENOMEM;
        for (size_t i = 0; i < k; i++) {
                const YamlNode *u = yaml_node_item(n, i);

                c->n_users = i + 1;
                r = parse_user(u, c, &c->users[i]);
                if (r < 0)
                        return r;
                for (size_t j = 0; j < i; j++)
                        if (streq(c->users[j].id, c->users[i].id))
                                return yaml_node_error(u, "user \"%s\" is listed twice", c->users[i].id);
        }
        return 0;
}

static int config_from_doc(const YamlDoc *d, const char *dir, ServerConfig **ret) {
        static const char *const known[] = { "listen", "tls", "database", "master_key_file",
                                             "approval_validity_hours", "session_hours", "workers", "dealers", "users",
                                             "web_root", NULL };
        _cleanup_(server_config_freep) ServerConfig *c = NULL;
        const YamlNode *root = yaml_doc_root(d), *n;
        const char *s;
        uint64_t v;
        int r;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->approval_validity_hours = 72;
        c->session_hours = 8;
        c->workers = 4;
        c->listen_address = strdup("127.0.0.1");
        if (!c->listen_address)
                return -ENOMEM;

        r = yaml_mapping_check(root, "the passcode server settings", known);
        if (r < 0)
                return r;
        r = yaml_mapping_require(root, "listen", &n);
        if (r < 0)
                return r;
        r = parse_listen(n, c);
        if (r < 0)
                return r;
        r = yaml_mapping_require(root, "tls", &n);
        if (r < 0)
                return r;
        r = parse_tls(n, dir, c);
        if (r < 0)
                return r;
        n = yaml_mapping_get(root, "database");
        if (n && yaml_node_get_string(n, "a file path or a postgresql:// URI", &s) >= 0 &&
            (startswith(s, "postgresql://") || startswith(s, "postgres://"))) {
                c->database = strdup(s);
                if (!c->database)
                        return -ENOMEM;
        } else {
                r = get_path(root, "database", dir, &c->database);
                if (r < 0)
                        return r;
        }
        r = get_path(root, "master_key_file", dir, &c->master_key_file);
        if (r < 0)
                return r;
        if (yaml_mapping_get(root, "web_root"))
                r = get_path(root, "web_root", dir, &c->web_root);
        else
                r = (c->web_root = strdup(PASSCODE_WEB_ROOT)) ? 0 : -ENOMEM;
        if (r < 0)
                return r;
        n = yaml_mapping_get(root, "approval_validity_hours");
        if (n) {
                r = yaml_node_get_uint(n, 1, 24 * 365, "a whole number of hours", &v);
                if (r < 0)
                        return r;
                c->approval_validity_hours = (unsigned) v;
        }
        n = yaml_mapping_get(root, "workers");
        if (n) {
                r = yaml_node_get_uint(n, 1, 64, "a number of threads", &v);
                if (r < 0)
                        return r;
                c->workers = (unsigned) v;
        }
        n = yaml_mapping_get(root, "session_hours");
        if (n) {
                r = yaml_node_get_uint(n, 1, 24 * 7, "a whole number of hours", &v);
                if (r < 0)
                        return r;
                c->session_hours = (unsigned) v;
        }
        r = yaml_mapping_require(root, "dealers", &n);
        if (r < 0)
                return r;
        r = parse_dealers(n, c);
        if (r < 0)
                return r;
        n = yaml_mapping_get(root, "users");
        if (n) {
                r = parse_users(n, c);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

int server_config_parse(const char *name, const char *dir, const char *text, size_t size, ServerConfig **ret) {
        return server_config_parse_full(name, dir, text, size, NULL, 0, ret);
}

int server_config_parse_full(const char *name, const char *dir, const char *text, size_t size, char *errbuf,
                             size_t errbuf_size, ServerConfig **ret) {
        _cleanup_(yaml_doc_freep) YamlDoc *d = NULL;
        int r;

        r = yaml_doc_parse(name, text, size, errbuf, errbuf_size, &d);
        if (r < 0)
                return r;
        return config_from_doc(d, dir, ret);
}

int server_config_load(const char *path, ServerConfig **ret) {
        _cleanup_(yaml_doc_freep) YamlDoc *d = NULL;
        _cleanup_free_ char *copy = NULL;
        int r;

        r = yaml_doc_load(path, NULL, 0, &d);
        if (r == -EINVAL)
                return r;
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", path);
        copy = strdup(path);
        if (!copy)
                return log_oom();
        return config_from_doc(d, dirname(copy), ret);
}
