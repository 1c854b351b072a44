/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "config.h"
#include "log.h"
#include "yaml-doc.h"

static char tmpdir[] = "/tmp/test-config-XXXXXX";
static char conf_path[256];
static char errbuf[1024];

static void write_text(const char *path, const char *text, size_t size) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, size, f), size);
        assert_int_equal(fclose(f), 0);
}

/* Writes `text` as the configuration file and loads it. */
static int load_text(const char *text, ImmodConfig *c) {
        write_text(conf_path, text, strlen(text));
        return config_load_full(conf_path, c, errbuf, sizeof(errbuf));
}

/* The message must be exactly "PATH:<rest>", where a `rest` of "LINE: ..." stands for
 * "LINE:COLUMN: ...": the cases here check the line and the words, test_yaml_doc() and
 * tests/fuzz/test-yaml-messages.c the columns. */
static void assert_error(const char *rest) {
        char want[1200], got[1200];
        size_t l = strlen(conf_path) + 1, k = l;

        snprintf(want, sizeof(want), "%s:%s", conf_path, rest);
        snprintf(got, sizeof(got), "%s", errbuf);
        while (got[k] >= '0' && got[k] <= '9')
                k++;
        if (k > l && got[k] == ':' && rest[strspn(rest, "0123456789")] == ':') {
                size_t c = k + 1;

                while (got[c] >= '0' && got[c] <= '9')
                        c++;
                if (c == k + 1 || got[c] != ':')
                        fail_msg("no column in: %s", errbuf);
                memmove(got + k, got + c, strlen(got + c) + 1);
        }
        assert_string_equal(got, want);
}

/* Loads `text`, which must fail with -EINVAL and the message "PATH:<rest>", leaving the
 * output untouched. */
static void check_invalid(const char *text, const char *rest) {
        ImmodConfig c, sentinel;

        memset(&c, 0xa5, sizeof(c));
        memcpy(&sentinel, &c, sizeof(c));
        errbuf[0] = 0;
        if (load_text(text, &c) != -EINVAL)
                fail_msg("accepted or wrong error for:\n%s\nmessage: %s", text, errbuf);
        assert_memory_equal(&c, &sentinel, sizeof(c));
        assert_error(rest);
}

static void assert_defaults_except_path(const ImmodConfig *c) {
        char buf[160];

        link_uri_format(&c->link, buf, sizeof(buf));
        assert_string_equal(buf, "vbus:/run/immod/vbus.sock");
        assert_int_equal(c->link.kind, LINK_VBUS);
        assert_string_equal(c->profiles_dir, IMMOD_PROFILES_DIR);
        assert_string_equal(c->state_dir, "/var/lib/immod");
        assert_string_equal(c->group, "immo");
        assert_int_equal(c->tester_present_ms, 2000);
        assert_int_equal(c->battery_source, BATTERY_SOURCE_ECU);
        assert_null(c->battery_hwmon_path);
        assert_null(c->server.url);
        assert_null(c->server.ca_file);
        assert_null(c->server.client_cert);
        assert_null(c->server.client_key);
        assert_null(c->server.dealer_code);
        assert_int_equal(c->server.timeout_s, 30);
}

static void test_defaults(void **state) {
        ImmodConfig c;

        assert_int_equal(config_init(&c), 0);
        assert_null(c.path);
        assert_defaults_except_path(&c);
        config_done(&c);

        /* Without an explicit path, a missing default file means the defaults. */
        if (access(IMMOD_CONFIG_FILE, F_OK) < 0 && errno == ENOENT) {
                assert_int_equal(config_load(NULL, &c), 0);
                assert_null(c.path);
                assert_defaults_except_path(&c);
                config_done(&c);
        }

        /* Empty files, comments only and an empty document all mean the defaults. */
        assert_int_equal(load_text("", &c), 0);
        assert_string_equal(c.path, conf_path);
        assert_defaults_except_path(&c);
        config_done(&c);
        assert_int_equal(load_text("# nothing here\n\n   # really\n", &c), 0);
        assert_defaults_except_path(&c);
        config_done(&c);
        assert_int_equal(load_text("---\n...\n", &c), 0);
        assert_defaults_except_path(&c);
        config_done(&c);
        assert_int_equal(load_text("server:\n", &c), 0); /* "server:" alone: not configured */
        assert_null(c.server.url);
        config_done(&c);
}

static void test_missing_file(void **state) {
        char path[300], want[400];
        ImmodConfig c;

        snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
        assert_int_equal(config_load_full(path, &c, errbuf, sizeof(errbuf)), -ENOENT);
        snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
        assert_string_equal(errbuf, want);
        assert_int_equal(config_load(path, &c), -ENOENT);

        /* a folder is not a configuration file */
        assert_int_equal(config_load_full(tmpdir, &c, errbuf, sizeof(errbuf)), -EBADF);
        snprintf(want, sizeof(want), "%s: not a regular file", tmpdir);
        assert_string_equal(errbuf, want);
}

static void test_every_key(void **state) {
        ImmodConfig c;

        assert_int_equal(load_text("link: socketcan-isotp:can1\n"
                                   "profiles: /opt/immod/profiles\n"
                                   "state_dir: /srv/immod\n"
                                   "group: shop-techs\n"
                                   "tester_present_ms: 1500\n"
                                   "battery:\n"
                                   "  source: hwmon:/sys/class/hwmon/hwmon3/in1_input\n"
                                   "server:\n"
                                   "  url: https://tis.example.com:8443/api\n"
                                   "  ca_file: /etc/immod/ca.pem\n"
                                   "  client_cert: /etc/immod/box.crt\n"
                                   "  client_key: /etc/immod/box.key\n"
                                   "  dealer_code: D-4711\n"
                                   "  timeout_s: 45\n",
                                   &c),
                         0);
        assert_string_equal(errbuf, "");
        assert_string_equal(c.path, conf_path);
        assert_int_equal(c.link.kind, LINK_SOCKETCAN_ISOTP);
        assert_string_equal(c.link.name, "can1");
        assert_string_equal(c.profiles_dir, "/opt/immod/profiles");
        assert_string_equal(c.state_dir, "/srv/immod");
        assert_string_equal(c.group, "shop-techs");
        assert_int_equal(c.tester_present_ms, 1500);
        assert_int_equal(c.battery_source, BATTERY_SOURCE_HWMON);
        assert_string_equal(c.battery_hwmon_path, "/sys/class/hwmon/hwmon3/in1_input");
        assert_string_equal(c.server.url, "https://tis.example.com:8443/api");
        assert_string_equal(c.server.ca_file, "/etc/immod/ca.pem");
        assert_string_equal(c.server.client_cert, "/etc/immod/box.crt");
        assert_string_equal(c.server.client_key, "/etc/immod/box.key");
        assert_string_equal(c.server.dealer_code, "D-4711");
        assert_int_equal(c.server.timeout_s, 45);
        config_done(&c);

        /* flow style, quoted strings, the other link and battery forms, bounds */
        assert_int_equal(load_text("{link: 'socketcan:vcan0', group: \"_immo\", tester_present_ms: 100,\n"
                                   " battery: {source: none}, server: {url: 'http://127.0.0.1:8080'}}\n",
                                   &c),
                         0);
        assert_int_equal(c.link.kind, LINK_SOCKETCAN);
        assert_string_equal(c.link.name, "vcan0");
        assert_string_equal(c.group, "_immo");
        assert_int_equal(c.tester_present_ms, 100);
        assert_int_equal(c.battery_source, BATTERY_SOURCE_NONE);
        assert_string_equal(c.server.url, "http://127.0.0.1:8080");
        assert_null(c.server.ca_file);
        assert_null(c.server.dealer_code);
        assert_int_equal(c.server.timeout_s, 30);
        config_done(&c);

        assert_int_equal(
                load_text("link: vbus:/tmp/x.sock\ntester_present_ms: 60000\n"
                          "battery: {source: ecu}\nserver: {url: http://localhost/, timeout_s: 600}\n",
                          &c),
                0);
        assert_int_equal(c.link.kind, LINK_VBUS);
        assert_string_equal(c.link.name, "/tmp/x.sock");
        assert_int_equal(c.tester_present_ms, 60000);
        assert_int_equal(c.battery_source, BATTERY_SOURCE_ECU);
        assert_int_equal(c.server.timeout_s, 600);
        config_done(&c);

        /* hexadecimal is a whole number too */
        assert_int_equal(load_text("tester_present_ms: 0x3E8\n", &c), 0);
        assert_int_equal(c.tester_present_ms, 1000);
        config_done(&c);
}

/* The shipped example must load, also with the settings it leaves out uncommented. */
static void test_example(void **state) {
        const char *path = getenv("IMMOD_TEST_CONF");
        _cleanup_free_ char *text = NULL, *uncommented = NULL;
        ImmodConfig c;
        FILE *f;
        size_t size = 0, k = 0;
        bool in_setting = false;

        assert_non_null(path);
        assert_int_equal(config_load_full(path, &c, errbuf, sizeof(errbuf)), 0);
        assert_string_equal(c.path, path);
        assert_int_equal(c.link.kind, LINK_VBUS);
        assert_string_equal(c.link.name, "/run/immod/vbus.sock");
        assert_string_equal(c.profiles_dir, IMMOD_PROFILES_DIR);
        assert_string_equal(c.state_dir, "/var/lib/immod");
        assert_string_equal(c.group, "immo");
        assert_int_equal(c.tester_present_ms, 2000);
        assert_int_equal(c.battery_source, BATTERY_SOURCE_ECU);
        assert_null(c.server.url);
        config_done(&c);

        f = fopen(path, "re");
        assert_non_null(f);
        text = calloc(1, 65536);
        uncommented = calloc(1, 65536);
        assert_non_null(text);
        assert_non_null(uncommented);
        size = fread(text, 1, 65535, f);
        fclose(f);
        assert_true(size > 0);

        /* "#key: value" and the "#  key: value" lines below it are settings left out */
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
                if (line[0] == '#' && line[1] >= 'a' && line[1] <= 'z')
                        in_setting = true;
                else if (!startswith(line, "#  "))
                        in_setting = false;
                k += snprintf(uncommented + k, 65536 - k, "%s\n", in_setting ? line + 1 : line);
        }
        assert_int_equal(load_text(uncommented, &c), 0);
        assert_string_equal(c.profiles_dir, "/usr/share/immod/profiles");
        assert_string_equal(c.server.url, "https://passcode.example.com");
        assert_string_equal(c.server.ca_file, "/etc/immod/passcode-ca.pem");
        assert_string_equal(c.server.client_cert, "/etc/immod/box.crt");
        assert_string_equal(c.server.client_key, "/etc/immod/box.key");
        assert_string_equal(c.server.dealer_code, "D12345");
        assert_int_equal(c.server.timeout_s, 30);
        config_done(&c);
}

static void test_wrong_values(void **state) {
        /* tester_present_ms */
        check_invalid("tester_present_ms: fast\n", "1: tester_present_ms: expected a whole number of "
                                                   "milliseconds between 100 and 60000, got \"fast\"");
        check_invalid("link: vbus:/x\n\ntester_present_ms: 99\n",
                      "3: tester_present_ms: expected a whole number of milliseconds between 100 and 60000, "
                      "got \"99\"");
        check_invalid("tester_present_ms: 60001\n", "1: tester_present_ms: expected a whole number of "
                                                    "milliseconds between 100 and 60000, got \"60001\"");
        check_invalid("tester_present_ms: -5\n", "1: tester_present_ms: expected a whole number of "
                                                 "milliseconds between 100 and 60000, got \"-5\"");
        check_invalid("tester_present_ms: 2000.5\n", "1: tester_present_ms: expected a whole number of "
                                                     "milliseconds between 100 and 60000, got \"2000.5\"");
        check_invalid(
                "tester_present_ms: 99999999999999999999999\n",
                "1: tester_present_ms: expected a whole number of milliseconds between 100 and 60000, got "
                "\"99999999999999999999999\"");
        check_invalid("tester_present_ms: \"2000\"\n",
                      "1: tester_present_ms: expected a whole number of milliseconds between 100 and 60000, "
                      "got the "
                      "quoted text \"2000\" (write numbers without quotes)");
        check_invalid("tester_present_ms: [2000]\n", "1: tester_present_ms: expected a whole number of "
                                                     "milliseconds between 100 and 60000, got a list");
        check_invalid("tester_present_ms:\n", "1: tester_present_ms: expected a whole number of "
                                              "milliseconds between 100 and 60000, got nothing");

        /* link */
        check_invalid("link: can0\n", "1: link: a link is vbus:/PATH, socketcan:IFNAME or "
                                      "socketcan-isotp:IFNAME (e.g. socketcan:can0), "
                                      "got \"can0\"");
        check_invalid("link: socketcan:abcdefghijklmnop\n",
                      "1: link: a CAN interface name has 1 to 15 characters without spaces, '/' or ':', "
                      "e.g. can0 or "
                      "vcan0, got \"socketcan:abcdefghijklmnop\"");
        check_invalid(
                "link: vbus:relative.sock\n",
                "1: link: a vbus link needs an absolute socket path, e.g. vbus:/run/immod/vbus.sock, got "
                "\"vbus:relative.sock\"");
        check_invalid("link: {socketcan: can0}\n", "1: link: expected a link URI, got a mapping");
        check_invalid("link: ''\n", "1: link: expected a link URI, got \"\"");

        /* folders */
        check_invalid("profiles: conf/profiles\n",
                      "1: profiles: expected the vehicle profiles folder (absolute, starting with '/'), got "
                      "\"conf/profiles\"");
        check_invalid("state_dir: [/var/lib/immod]\n",
                      "1: state_dir: expected the state folder, got a list");
        check_invalid("state_dir: ~\n", "1: state_dir: expected the state folder, got nothing");
        check_invalid("state_dir: \"/var/lib/\\timmod\"\n",
                      "1: state_dir: expected the state folder, got text with control characters");

        /* group */
        check_invalid("group: 1immo\n", "1: group: expected a group name (a letter or '_', then letters, "
                                        "digits, '_' or '-', at most "
                                        "31), got \"1immo\"");
        check_invalid("group: im mo\n", "1: group: expected a group name (a letter or '_', then letters, "
                                        "digits, '_' or '-', at most "
                                        "31), got \"im mo\"");
        check_invalid("group: abcdefghijklmnopqrstuvwxyz012345\n",
                      "1: group: expected a group name (a letter or '_', then letters, digits, '_' or '-', "
                      "at most "
                      "31), got \"abcdefghijklmnopqrstuvwxyz012345\"");
        check_invalid("group: immo.techs\n", "1: group: expected a group name (a letter or '_', then "
                                             "letters, digits, '_' or '-', at most "
                                             "31), got \"immo.techs\"");

        /* battery */
        check_invalid("battery:\n  source: solar\n", "2: battery.source: expected ecu, none or hwmon:/PATH "
                                                     "(a file holding millivolts), got \"solar\"");
        check_invalid(
                "battery: {source: hwmon:relative/in1_input}\n",
                "1: battery.source: expected ecu, none or hwmon:/PATH (a file holding millivolts), got "
                "\"hwmon:relative/in1_input\"");
        check_invalid("battery: {source: 'hwmon:'}\n",
                      "1: battery.source: expected ecu, none or hwmon:/PATH (a file holding millivolts), "
                      "got \"hwmon:\"");
        check_invalid("battery: ecu\n", "1: battery: expected a mapping with the key source, got \"ecu\"");
        check_invalid("battery:\n  sauce: ecu\n", "2: battery.sauce: unknown key (known keys here: source)");

        /* server */
        check_invalid("server:\n  url: http://tis.example.com\n",
                      "2: server.url: expected an https:// URL (plain http:// only for 127.0.0.1, [::1] or "
                      "localhost), got \"http://tis.example.com\"");
        check_invalid("server: {url: 'http://127.0.0.1.example.com/'}\n",
                      "1: server.url: expected an https:// URL (plain http:// only for 127.0.0.1, [::1] or "
                      "localhost), got \"http://127.0.0.1.example.com/\"");
        check_invalid("server: {url: 'http://localhost@evil.example.com/'}\n",
                      "1: server.url: expected an https:// URL (plain http:// only for 127.0.0.1, [::1] or "
                      "localhost), got \"http://localhost@evil.example.com/\"");
        check_invalid("server: {url: 'https://user:secret@tis.example.com/'}\n",
                      "1: server.url: expected an https:// URL (plain http:// only for 127.0.0.1, [::1] or "
                      "localhost), got \"https://user:secret@tis.example.com/\"");
        check_invalid("server: {url: 'ftp://tis.example.com'}\n",
                      "1: server.url: expected an https:// URL (plain http:// only for 127.0.0.1, [::1] or "
                      "localhost), got \"ftp://tis.example.com\"");
        check_invalid("server: {url: 'https://tis.example.com:99999/'}\n",
                      "1: server.url: expected an https:// URL (plain http:// only for 127.0.0.1, [::1] or "
                      "localhost), got \"https://tis.example.com:99999/\"");
        check_invalid("server:\n  ca_file: /etc/ca.pem\n", "1: server: missing key \"url\"");
        check_invalid("server:\n  url: https://h\n  client_cert: /etc/immod/box.crt\n",
                      "3: server.client_cert: a client certificate needs client_key too");
        check_invalid("server:\n  url: https://h\n  client_key: /etc/immod/box.key\n",
                      "3: server.client_key: a client key needs client_cert too");
        check_invalid("server:\n  url: https://h\n  ca_file: ca.pem\n",
                      "3: server.ca_file: expected a CA certificate file (absolute, starting with '/'), got "
                      "\"ca.pem\"");
        check_invalid(
                "server:\n  url: https://h\n  timeout_s: 0\n",
                "3: server.timeout_s: expected a whole number of seconds between 1 and 600, got \"0\"");
        check_invalid(
                "server:\n  url: https://h\n  dealer_code: 'D 12'\n",
                "3: server.dealer_code: expected a dealer code of 1 to 32 letters, digits, '-' or '_', got "
                "\"D 12\"");
        check_invalid(
                "server:\n  url: https://h\n  password: hunter2\n",
                "3: server.password: unknown key (known keys here: url, ca_file, client_cert, client_key, "
                "dealer_code, timeout_s)");
        check_invalid(
                "server: https://h\n",
                "1: server: expected the passcode service settings (url, ca_file, ...), got \"https://h\"");
}

static void test_urls(void **state) {
        static const char *const good[] = {
                "https://tis.example.com",
                "https://tis.example.com/",
                "https://10.1.2.3:8443/api/v1",
                "https://[2001:db8::1]:443/x",
                "http://127.0.0.1",
                "http://127.0.0.1:8080/",
                "http://localhost:1",
                "http://LOCALHOST/x",
                "http://[::1]:8443",
                "https://h?x=1",
        };
        static const char *const bad[] = {
                "",
                "https://",
                "https:///x",
                "http://example.com",
                "http://127.0.0.2",
                "http://localhost.example.com",
                "http://[::2]",
                "https://u@h",
                "https://h:0",
                "https://h:65536",
                "https://h:",
                "https://h x",
                "HTTPS://h",
                "https://h\n",
                "https://[::1",
                "file:///etc/passwd",
                "https://h_h",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                if (!config_server_url_valid(good[i]))
                        fail_msg("refused %s", good[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (config_server_url_valid(bad[i]))
                        fail_msg("accepted %s", bad[i]);
        assert_false(config_server_url_valid(NULL));
}

static void test_group_names(void **state) {
        assert_true(config_group_name_valid("immo"));
        assert_true(config_group_name_valid("_immo"));
        assert_true(config_group_name_valid("Immo-Techs_2"));
        assert_true(config_group_name_valid("abcdefghijklmnopqrstuvwxyz01234")); /* 31 */
        assert_false(config_group_name_valid("abcdefghijklmnopqrstuvwxyz012345"));
        assert_false(config_group_name_valid(""));
        assert_false(config_group_name_valid(NULL));
        assert_false(config_group_name_valid("-immo"));
        assert_false(config_group_name_valid("0immo"));
        assert_false(config_group_name_valid("im:mo"));
        assert_false(config_group_name_valid("imm\xc3\xb6"));
}

static void test_keys(void **state) {
        check_invalid("tester_presnt_ms: 2000\n",
                      "1: tester_presnt_ms: unknown key (known keys here: link, profiles, state_dir, group, "
                      "tester_present_ms, battery, server)");
        check_invalid("group: immo\nlink: vbus:/a\ngroup: techs\n",
                      "3: group: duplicate key, first given on line 1");
        check_invalid("server:\n  url: https://a\n  url: https://b\n",
                      "3: server.url: duplicate key, first given on line 2");
        check_invalid("{group: a, group: b}\n", "1: group: duplicate key, first given on line 1");
        check_invalid("- link\n- group\n",
                      "1: expected a mapping of settings (link: ..., profiles: ...), got a list");
        check_invalid(
                "just some text\n",
                "1: expected a mapping of settings (link: ..., profiles: ...), got \"just some text\"");
        check_invalid("? [a, b]\n: c\n", "1: a key must be a plain word, not a mapping or list");
        check_invalid("'': x\n", "1: empty key");
}

static void test_malformed(void **state) {
        _cleanup_free_ char *huge = NULL, *deep = NULL;
        ImmodConfig c;
        size_t k = 0;

        check_invalid("link: vbus:/x\n\tgroup: immo\n",
                      "2: invalid YAML: a tab character; YAML is indented with spaces");
        check_invalid("battery:\n\tsource: ecu\n",
                      "2: invalid YAML: a tab character; YAML is indented with spaces");
        check_invalid("group: \"immo\nlink: vbus:/x\n", "3: invalid YAML: found unexpected end of stream "
                                                        "(while scanning a quoted scalar on line 1)");
        check_invalid("group: 'immo\n",
                      "2: invalid YAML: found unexpected end of stream (while scanning a quoted "
                      "scalar on line 1)");
        check_invalid("server: {url: https://h\n",
                      "2: invalid YAML: did not find expected ',' or '}' (while parsing "
                      "a flow mapping on line 1)");
        check_invalid("group: &g immo\n", "1: group: anchors (&g) are not supported; write the value out");
        check_invalid("battery: &b\n  source: ecu\n",
                      "1: battery: anchors (&b) are not supported; write the value out");
        check_invalid("group: *g\n", "1: group: aliases (*g) are not supported; write the value out");
        check_invalid("group: !!str immo\n", "1: group: tags (\"tag:yaml.org,2002:str\") are not supported");
        check_invalid("battery: !custom {source: ecu}\n", "1: battery: tags (\"!custom\") are not supported");
        /* libyaml decodes %16 in a tag to a control byte: shown escaped */
        check_invalid("group: !a%16b immo\n", "1: group: tags (\"!a\\x16b\") are not supported");
        check_invalid("group: a\n---\ngroup: b\n",
                      "2: only one YAML document is allowed (a second \"---\")");
        check_invalid("group: \"im\\0mo\"\n", "1: group: a value contains a NUL character");
        check_invalid("group: imm\xff\n", "1: invalid YAML: invalid leading UTF-8 octet");
        check_invalid("group: immo\n  link: x\n",
                      "2: invalid YAML: mapping values are not allowed in this context");

        /* deep nesting: flow and block */
        deep = calloc(1, 4096);
        assert_non_null(deep);
        k = (size_t) snprintf(deep, 4096, "server: ");
        for (unsigned i = 0; i < 40; i++)
                deep[k++] = '[';
        for (unsigned i = 0; i < 40; i++)
                deep[k++] = ']';
        deep[k++] = '\n';
        check_invalid(
                deep,
                "1: server[0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nested more than 16 levels deep");

        k = 0;
        for (unsigned i = 0; i < 20; i++) {
                for (unsigned j = 0; j < i; j++)
                        deep[k++] = ' ';
                k += (size_t) snprintf(deep + k, 4096 - k, "k%u:\n", i);
        }
        check_invalid(deep, "17: k0.k1.k2.k3.k4.k5.k6.k7.k8.k9.k10.k11.k12.k13.k14.k15: nested more than 16 "
                            "levels deep");

        /* a file above the size limit is refused before it is parsed */
        huge = malloc(YAML_DOC_MAX_SIZE + 2);
        assert_non_null(huge);
        memset(huge, '#', YAML_DOC_MAX_SIZE + 1);
        for (size_t i = 80; i < YAML_DOC_MAX_SIZE; i += 80)
                huge[i] = '\n';
        huge[YAML_DOC_MAX_SIZE + 1] = 0;
        write_text(conf_path, huge, YAML_DOC_MAX_SIZE + 1);
        assert_int_equal(config_load_full(conf_path, &c, errbuf, sizeof(errbuf)), -EFBIG);
        assert_error(" larger than 256 KiB");

        /* exactly at the limit is fine */
        huge[YAML_DOC_MAX_SIZE - 1] = '\n';
        write_text(conf_path, huge, YAML_DOC_MAX_SIZE);
        assert_int_equal(config_load_full(conf_path, &c, errbuf, sizeof(errbuf)), 0);
        assert_defaults_except_path(&c);
        config_done(&c);

        /* the same limits hold for text in memory */
        {
                YamlDoc *d = NULL;

                assert_int_equal(
                        yaml_doc_parse("mem", huge, YAML_DOC_MAX_SIZE + 1, errbuf, sizeof(errbuf), &d),
                        -EINVAL);
                assert_string_equal(errbuf, "mem: larger than 256 KiB");
                assert_null(d);
        }
}

/* The tree and its accessors, as the loaders use them. */
static void test_yaml_doc(void **state) {
        static const char text[] = "a: 1\n"
                                   "b:\n"
                                   "  - x\n"
                                   "  - {c: 'q', d: ~}\n"
                                   "e: tRUe\n"
                                   "f: 12.5\n";
        static const char *const known[] = { "a", "b", "e", "f", NULL };
        _cleanup_(yaml_doc_freep) YamlDoc *d = NULL;
        const YamlNode *root, *b, *m, *v;
        char path[64];
        uint64_t u = 7;
        double x = 0;
        bool t = false;
        const char *s;

        assert_int_equal(yaml_doc_parse("t.yaml", text, strlen(text), errbuf, sizeof(errbuf), &d), 0);
        assert_string_equal(yaml_doc_name(d), "t.yaml");
        root = yaml_doc_root(d);
        assert_int_equal(yaml_node_kind(root), YAML_DOC_MAPPING);
        assert_int_equal(yaml_node_size(root), 4);
        assert_int_equal(yaml_mapping_check(root, NULL, known), 0);

        v = yaml_mapping_get(root, "a");
        assert_non_null(v);
        assert_int_equal(yaml_node_line(v), 1);
        assert_string_equal(yaml_node_key(v), "a");
        assert_int_equal(yaml_node_get_uint(v, 0, 10, NULL, &u), 0);
        assert_int_equal(u, 1);
        assert_int_equal(yaml_node_get_uint(v, 2, 10, NULL, &u), -EINVAL);
        assert_int_equal(u, 1);
        assert_string_equal(errbuf, "t.yaml:1:1: a: expected a whole number between 2 and 10, got \"1\"");
        assert_int_equal(yaml_node_get_hex(v, 0x10, 0x7FF, "a CAN id", &u), -EINVAL);
        assert_string_equal(errbuf, "t.yaml:1:1: a: expected a CAN id between 0x10 and 0x7FF, got \"1\"");

        b = yaml_mapping_get(root, "b");
        assert_int_equal(yaml_node_kind(b), YAML_DOC_SEQUENCE);
        assert_int_equal(yaml_node_line(b), 2);
        assert_int_equal(yaml_node_size(b), 2);
        assert_string_equal(yaml_node_scalar(yaml_node_item(b, 0)), "x");
        assert_int_equal(yaml_node_line(yaml_node_item(b, 0)), 3);
        assert_null(yaml_node_key(yaml_node_item(b, 0)));
        assert_null(yaml_node_item(b, 2));
        m = yaml_node_item(b, 1);
        assert_int_equal(yaml_node_line(m), 4);
        assert_null(yaml_node_scalar(m));
        v = yaml_mapping_get(m, "c");
        yaml_node_path(v, path, sizeof(path));
        assert_string_equal(path, "b[1].c");
        assert_int_equal(yaml_node_get_string(v, NULL, &s), 0);
        assert_string_equal(s, "q");
        assert_false(yaml_node_is_null(v));
        v = yaml_mapping_get(m, "d");
        assert_true(yaml_node_is_null(v));
        assert_int_equal(yaml_node_get_bool(v, &t), -EINVAL);
        assert_string_equal(errbuf, "t.yaml:4:14: b[1].d: expected true or false, got nothing");
        assert_null(yaml_mapping_get(m, "zz"));
        assert_int_equal(yaml_mapping_require(m, "zz", &v), -EINVAL);
        assert_string_equal(errbuf, "t.yaml:4:5: b[1]: missing key \"zz\"");
        assert_int_equal(yaml_mapping_check(m, NULL, known), -EINVAL);
        assert_string_equal(errbuf, "t.yaml:4:6: b[1].c: unknown key (known keys here: a, b, e, f)");

        assert_int_equal(yaml_node_get_bool(yaml_mapping_get(root, "e"), &t), 0);
        assert_true(t);
        assert_int_equal(yaml_node_get_double(yaml_mapping_get(root, "f"), 9, 16, "a voltage", &x), 0);
        assert_true(x == 12.5);
        assert_int_equal(yaml_node_get_double(yaml_mapping_get(root, "f"), 13, 16, "a voltage", &x),
                         -EINVAL);
        assert_string_equal(errbuf, "t.yaml:6:1: f: expected a voltage between 13 and 16, got \"12.5\"");
        assert_true(x == 12.5);
        assert_int_equal(yaml_node_get_double(b, 0, 1, NULL, &x), -EINVAL);
        assert_string_equal(errbuf, "t.yaml:2:1: b: expected a number between 0 and 1, got a list");

        yaml_node_path(root, path, sizeof(path));
        assert_string_equal(path, "");
        assert_int_equal(yaml_node_error(root, "at the %s", "top"), -EINVAL);
        assert_string_equal(errbuf, "t.yaml:1:1: at the top");
}

static int setup(void **state) {
        log_set_max_level(LOG_CRIT); /* the expected errors need not fill the test log */
        if (!mkdtemp(tmpdir))
                return -1;
        snprintf(conf_path, sizeof(conf_path), "%s/immod.conf", tmpdir);
        return 0;
}

static int teardown(void **state) {
        unlink(conf_path);
        rmdir(tmpdir);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_missing_file),
                cmocka_unit_test(test_every_key),
                cmocka_unit_test(test_example),
                cmocka_unit_test(test_wrong_values),
                cmocka_unit_test(test_urls),
                cmocka_unit_test(test_group_names),
                cmocka_unit_test(test_keys),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_yaml_doc),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
