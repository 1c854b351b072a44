/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzzes immod's configuration reader (daemon/config.c over lib/yaml-doc.c): the input is
 * the text of /etc/immod/immod.conf.
 *
 * What is checked (promised by config.h and yaml-doc.h):
 *   - the text is accepted (0) or refused with -EINVAL and a "FILE:LINE:COLUMN: ..." message;
 *   - what is accepted is within the documented bounds: a link, a valid group name, the
 *     tester present period and the server timeout in range, a valid server URL when one is
 *     set, a client key exactly when a client certificate, an hwmon path exactly for
 *     battery source hwmon.
 */
#include "config.h"
#include "fuzz-yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char errbuf[1024];
        ImmodConfig c;
        int r;

        fuzz_yaml_quiet();
        /* an exactly sized buffer, so ASan sees a read past the end */
        r = config_parse(FUZZ_YAML_NAME, (const char *) data, size, &c, errbuf, sizeof(errbuf));
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL);
                fuzz_yaml_check_message(errbuf);
                return 0;
        }

        FUZZ_CHECK(c.path == NULL);
        FUZZ_CHECK(c.profiles_dir && c.profiles_dir[0] == '/');
        FUZZ_CHECK(c.state_dir && c.state_dir[0] == '/');
        FUZZ_CHECK(config_group_name_valid(c.group));
        FUZZ_CHECK(c.tester_present_ms >= CONFIG_TESTER_PRESENT_MS_MIN &&
                   c.tester_present_ms <= CONFIG_TESTER_PRESENT_MS_MAX);
        FUZZ_CHECK((c.battery_source == BATTERY_SOURCE_HWMON) == !!c.battery_hwmon_path);
        FUZZ_CHECK(battery_source_to_string(c.battery_source));
        if (c.server.url)
                FUZZ_CHECK(config_server_url_valid(c.server.url));
        FUZZ_CHECK(!!c.server.client_cert == !!c.server.client_key);
        FUZZ_CHECK(c.server.timeout_s <= CONFIG_SERVER_TIMEOUT_S_MAX);
        config_done(&c);
        return 0;
}
