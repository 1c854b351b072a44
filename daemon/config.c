/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <limits.h>
#include <stdio.h>

#include "config.h"
#include "log.h"
#include "yaml-doc.h"

static int set_string(char **dst, const char *src) {
        char *s = NULL;

        if (src) {
                s = strdup(src);
                if (!s)
                        return -ENOMEM;
        }
        free(*dst);
        *dst = s;
        return 0;
}

int config_init(ImmodConfig *c) {
        int r;

        *c = (ImmodConfig) {
                .tester_present_ms = CONFIG_DEFAULT_TESTER_PRESENT_MS,
                .battery_source = BATTERY_SOURCE_ECU,
                .server.timeout_s = CONFIG_DEFAULT_SERVER_TIMEOUT_S,
        };
        r = link_uri_parse(CONFIG_DEFAULT_LINK, &c->link, NULL);
        if (r < 0)
                return r;
        if (set_string(&c->profiles_dir, IMMOD_PROFILES_DIR) < 0 ||
            set_string(&c->state_dir, CONFIG_DEFAULT_STATE_DIR) < 0 ||
            set_string(&c->group, CONFIG_DEFAULT_GROUP) < 0) {
                config_done(c);
                return -ENOMEM;
        }
        return 0;
}

void config_done(ImmodConfig *c) {
        if (!c)
                return;
        free(c->path);
        free(c->profiles_dir);
        free(c->state_dir);
        free(c->group);
        free(c->battery_hwmon_path);
        free(c->server.url);
        free(c->server.ca_file);
        free(c->server.client_cert);
        free(c->server.client_key);
        free(c->server.dealer_code);
        *c = (ImmodConfig) {};
}

static void config_donep(ImmodConfig *c) {
        config_done(c);
}

const char *battery_source_to_string(BatterySource s) {
        switch (s) {
        case BATTERY_SOURCE_ECU:
                return "ecu";
        case BATTERY_SOURCE_HWMON:
                return "hwmon";
        case BATTERY_SOURCE_NONE:
                return "none";
        }
        return "unknown";
}

/* The portable user and group name syntax (POSIX, with '_' and '-', as useradd and
 * systemd accept it), short enough for every tool. */
bool config_group_name_valid(const char *name) {
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n == 0 || n > CONFIG_GROUP_NAME_MAX)
                return false;
        if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z') || name[0] == '_'))
                return false;
        for (const char *p = name + 1; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '_' || *p == '-'))
                        return false;
        return true;
}

static bool port_valid(const char *s, size_t n) {
        unsigned v = 0;

        if (n == 0 || n > 5)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (unsigned) (s[i] - '0');
        }
        return v >= 1 && v <= 65535;
}

/* Checks the authority (HOST[:PORT]) of a URL, up to the first '/', '?' or '#', and returns
 * the host as written there (an IPv6 literal with its brackets). */
static bool authority_valid(const char *s, const char **ret_host, size_t *ret_host_len) {
        size_t n = strcspn(s, "/?#"), host_len;
        const char *colon;

        if (n == 0)
                return false;
        /* credentials in a URL end up in logs; the passcode service gets them per call */
        if (memchr(s, '@', n))
                return false;

        if (s[0] == '[') {
                const char *end = memchr(s, ']', n);

                if (!end || end == s + 1)
                        return false;
                host_len = (size_t) (end - s) + 1;
                for (const char *p = s + 1; p < end; p++)
                        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
                              (*p >= 'A' && *p <= 'F') || *p == ':' || *p == '.'))
                                return false;
        } else {
                colon = memchr(s, ':', n);
                host_len = colon ? (size_t) (colon - s) : n;
                if (host_len == 0)
                        return false;
                for (size_t i = 0; i < host_len; i++)
                        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.'))
                                return false;
        }

        if (host_len < n) {
                if (s[host_len] != ':' || !port_valid(s + host_len + 1, n - host_len - 1))
                        return false;
        }

        *ret_host = s;
        *ret_host_len = host_len;
        return true;
}

bool config_server_url_valid(const char *url) {
        static const char *const loopback[] = { "127.0.0.1", "localhost", "[::1]" };
        const char *rest, *host;
        size_t host_len;
        bool https;

        if (!url || strlen(url) > 2048)
                return false;
        for (const char *p = url; *p; p++)
                if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f)
                        return false;

        if ((rest = startswith(url, "https://")))
                https = true;
        else if ((rest = startswith(url, "http://")))
                https = false;
        else
                return false;

        if (!authority_valid(rest, &host, &host_len))
                return false;
        if (https)
                return true;

        /* Plain HTTP only where nobody else can listen in: the loopback interface. */
        for (size_t i = 0; i < ELEMENTSOF(loopback); i++)
                if (host_len == strlen(loopback[i]) && strncasecmp(host, loopback[i], host_len) == 0)
                        return true;
        return false;
}

static bool dealer_code_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 32)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_'))
                        return false;
        return true;
}

static int get_absolute_path(const YamlNode *n, const char *what, char **dst) {
        const char *s;
        int r;

        r = yaml_node_get_string(n, what, &s);
        if (r < 0)
                return r;
        if (s[0] != '/' || strlen(s) >= PATH_MAX)
                return yaml_node_error(n, "expected %s (absolute, starting with '/'), got \"%.200s\"", what,
                                       s);
        return set_string(dst, s);
}

static int parse_battery(const YamlNode *n, ImmodConfig *c) {
        static const char *const known[] = { "source", NULL };
        static const char *const expect = "ecu, none or hwmon:/PATH (a file holding millivolts)";
        const YamlNode *v;
        const char *s, *rest;
        int r;

        r = yaml_mapping_check(n, "a mapping with the key source", known);
        if (r < 0)
                return r;

        v = yaml_mapping_get(n, "source");
        if (!v)
                return 0;
        r = yaml_node_get_string(v, expect, &s);
        if (r < 0)
                return r;

        if (streq(s, "ecu")) {
                c->battery_source = BATTERY_SOURCE_ECU;
                return set_string(&c->battery_hwmon_path, NULL);
        }
        if (streq(s, "none")) {
                c->battery_source = BATTERY_SOURCE_NONE;
                return set_string(&c->battery_hwmon_path, NULL);
        }
        rest = startswith(s, "hwmon:");
        if (!rest || rest[0] != '/' || strlen(rest) >= PATH_MAX)
                return yaml_node_error(v, "expected %s, got \"%.200s\"", expect, s);

        c->battery_source = BATTERY_SOURCE_HWMON;
        return set_string(&c->battery_hwmon_path, rest);
}

static int parse_server(const YamlNode *n, ImmodConfig *c) {
        static const char *const known[] = {
                "url", "ca_file", "client_cert", "client_key", "dealer_code", "timeout_s", NULL
        };
        const YamlNode *v, *cert, *key;
        const char *s;
        uint64_t u;
        int r;

        /* "server:" with nothing after it: no passcode service, as when the key is absent */
        if (yaml_node_is_null(n))
                return 0;

        r = yaml_mapping_check(n, "the passcode service settings (url, ca_file, ...)", known);
        if (r < 0)
                return r;

        r = yaml_mapping_require(n, "url", &v);
        if (r < 0)
                return r;
        r = yaml_node_get_string(v, "an https:// URL", &s);
        if (r < 0)
                return r;
        if (!config_server_url_valid(s))
                return yaml_node_error(
                        v,
                        "expected an https:// URL (plain http:// only for 127.0.0.1, [::1] or "
                        "localhost), got \"%.200s\"",
                        s);
        r = set_string(&c->server.url, s);
        if (r < 0)
                return r;

        if ((v = yaml_mapping_get(n, "ca_file"))) {
                r = get_absolute_path(v, "a CA certificate file", &c->server.ca_file);
                if (r < 0)
                        return r;
        }

        cert = yaml_mapping_get(n, "client_cert");
        key = yaml_mapping_get(n, "client_key");
        if (cert && !key)
                return yaml_node_error(cert, "a client certificate needs client_key too");
        if (key && !cert)
                return yaml_node_error(key, "a client key needs client_cert too");
        if (cert) {
                r = get_absolute_path(cert, "a client certificate file", &c->server.client_cert);
                if (r < 0)
                        return r;
                r = get_absolute_path(key, "a client key file", &c->server.client_key);
                if (r < 0)
                        return r;
        }

        if ((v = yaml_mapping_get(n, "dealer_code"))) {
                r = yaml_node_get_string(v, "a dealer code", &s);
                if (r < 0)
                        return r;
                if (!dealer_code_valid(s))
                        return yaml_node_error(v,
                                               "expected a dealer code of 1 to 32 letters, digits, '-' or "
                                               "'_', got \"%.200s\"",
                                               s);
                r = set_string(&c->server.dealer_code, s);
                if (r < 0)
                        return r;
        }

        if ((v = yaml_mapping_get(n, "timeout_s"))) {
                r = yaml_node_get_uint(v, 1, CONFIG_SERVER_TIMEOUT_S_MAX, "a whole number of seconds", &u);
                if (r < 0)
                        return r;
                c->server.timeout_s = (unsigned) u;
        }
        return 0;
}

static int parse_root(const YamlNode *root, ImmodConfig *c) {
        static const char *const known[] = {
                "link", "profiles", "state_dir", "group", "tester_present_ms", "battery", "server", NULL
        };
        const YamlNode *v;
        const char *s, *reason;
        uint64_t u;
        int r;

        r = yaml_mapping_check(root, "a mapping of settings (link: ..., profiles: ...)", known);
        if (r < 0)
                return r;

        if ((v = yaml_mapping_get(root, "link"))) {
                r = yaml_node_get_string(v, "a link URI", &s);
                if (r < 0)
                        return r;
                r = link_uri_parse(s, &c->link, &reason);
                if (r < 0)
                        return yaml_node_error(v, "%s, got \"%.200s\"", reason, s);
        }

        if ((v = yaml_mapping_get(root, "profiles"))) {
                r = get_absolute_path(v, "the vehicle profiles folder", &c->profiles_dir);
                if (r < 0)
                        return r;
        }

        if ((v = yaml_mapping_get(root, "state_dir"))) {
                r = get_absolute_path(v, "the state folder", &c->state_dir);
                if (r < 0)
                        return r;
        }

        if ((v = yaml_mapping_get(root, "group"))) {
                r = yaml_node_get_string(v, "a group name", &s);
                if (r < 0)
                        return r;
                if (!config_group_name_valid(s))
                        return yaml_node_error(
                                v,
                                "expected a group name (a letter or '_', then letters, digits, '_' "
                                "or '-', at most %u), got \"%.200s\"",
                                CONFIG_GROUP_NAME_MAX, s);
                r = set_string(&c->group, s);
                if (r < 0)
                        return r;
        }

        if ((v = yaml_mapping_get(root, "tester_present_ms"))) {
                r = yaml_node_get_uint(v, CONFIG_TESTER_PRESENT_MS_MIN, CONFIG_TESTER_PRESENT_MS_MAX,
                                       "a whole number of milliseconds", &u);
                if (r < 0)
                        return r;
                c->tester_present_ms = (unsigned) u;
        }

        if ((v = yaml_mapping_get(root, "battery"))) {
                r = parse_battery(v, c);
                if (r < 0)
                        return r;
        }

        if ((v = yaml_mapping_get(root, "server"))) {
                r = parse_server(v, c);
                if (r < 0)
                        return r;
        }
        return 0;
}

int config_load_full(const char *path, ImmodConfig *ret, char *errbuf, size_t errbuf_size) {
        _cleanup_(config_donep) ImmodConfig c = {};
        _cleanup_(yaml_doc_freep) YamlDoc *doc = NULL;
        const char *p = path ?: IMMOD_CONFIG_FILE;
        int r;

        if (!ret)
                return -EINVAL;
        if (errbuf && errbuf_size > 0)
                errbuf[0] = 0;

        r = config_init(&c);
        if (r < 0)
                return r;

        if (!path && access(p, F_OK) < 0 && errno == ENOENT) {
                log_debug("%s does not exist, using the defaults.", p);
                *ret = c;
                c = (ImmodConfig) {};
                return 0;
        }

        r = yaml_doc_load(p, errbuf, errbuf_size, &doc);
        if (r < 0)
                return r;
        r = parse_root(yaml_doc_root(doc), &c);
        if (r < 0)
                return r;
        r = set_string(&c.path, p);
        if (r < 0)
                return r;

        *ret = c;
        c = (ImmodConfig) {};
        return 0;
}

int config_parse(const char *name, const char *text, size_t size, ImmodConfig *ret, char *errbuf,
                 size_t errbuf_size) {
        _cleanup_(config_donep) ImmodConfig c = {};
        _cleanup_(yaml_doc_freep) YamlDoc *doc = NULL;
        int r;

        if (!name || !text || !ret)
                return -EINVAL;
        r = config_init(&c);
        if (r < 0)
                return r;
        r = yaml_doc_parse(name, text, size, errbuf, errbuf_size, &doc);
        if (r < 0)
                return r;
        r = parse_root(yaml_doc_root(doc), &c);
        if (r < 0)
                return r;

        *ret = c;
        c = (ImmodConfig) {};
        return 0;
}

int config_load(const char *path, ImmodConfig *ret) {
        return config_load_full(path, ret, NULL, 0);
}
