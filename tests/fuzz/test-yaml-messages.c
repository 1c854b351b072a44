/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a person reads when immod's configuration or a vehicle profile is refused: a sample
 * of bad files, each refusal printed and checked for FILE:LINE:COLUMN and what was expected.
 * (The server's configuration: test-yaml-messages-server.c.)
 */
#include "config.h"
#include "profile.h"
#include "yaml-messages.h"

static const BadYaml config_cases[] = {
        { "tester_present_ms: fast\n", "1:1", "expected a whole number of milliseconds between 100 and 60000" },
        { "battery:\n  source: solar\n", "2:3", "expected" },
        { "server:\n  url: http://example.com\n  timeout_s: 5\n", "2:3", "expected" },
        { "group: immo\ngroup: wheel\n", "2:1", "duplicate key, first given on line 1" },
        { "link: vbus:/x\nlinks: vbus:/y\n", "2:1", "known keys here: link, profiles" },
        { "link: [vbus:/x\n", "2:1", "invalid YAML" },
        { "state_dir:\n\t/var\n", "2:1", "YAML is indented with spaces" },
        { "a: &x 1\n", "1:4", "write the value out" },
        { "\"bad\tkey\": 1\n", "1:1", "expected a key without control characters" },
        { "profiles: relative/dir\n", "1:1", "expected" },
};

static const BadYaml profile_cases[] = {
        { "name: p\nreference_protocol: true\nmake: Lexus\nmodels: [{name: X, years: 1900}]\n", "4:20",
          "expected" },
        { "name: p\nreference_protocol: true\nmake: Lexus\nmodels:\n  - name: X\n    years: 2020\n"
          "key_slots: 0\n",
          "7:1", "expected a whole number of key slots between 1 and 32" },
        { "name: p\nreference_protocol: true\nmake: Lexus\nmodels: [{name: X, years: 2020}]\n"
          "link:\n  tx_id: \"0x7E0\"\n",
          "6:3", "write numbers without quotes" },
        { "name: p\nreference_protocol: true\nmake: Lexus\n", "1:1", "missing key \"models\"" },
        { "name: p\nreference_protocol: true\nmake: Lexus\nmodels: [{name: X, years: 2020}]\n"
          "battery: {start_min_v: 30}\n",
          "5:11", "expected" },
};

int main(void) {
        unsigned failed = 0;

        log_set_max_level(LOG_CRIT);

        printf("immod.conf:\n");
        for (size_t i = 0; i < ELEMENTSOF(config_cases); i++) {
                const BadYaml *b = &config_cases[i];
                char msg[1024] = "";
                ImmodConfig c;
                int r;

                r = config_parse(FUZZ_YAML_NAME, b->text, strlen(b->text), &c, msg, sizeof(msg));
                if (r >= 0)
                        config_done(&c);
                if (!yaml_message_check(b, r, msg))
                        failed++;
        }

        printf("vehicle profiles:\n");
        for (size_t i = 0; i < ELEMENTSOF(profile_cases); i++) {
                const BadYaml *b = &profile_cases[i];
                _cleanup_(profile_freep) VehicleProfile *p = NULL;
                char msg[1024] = "";
                int r;

                r = profile_parse(FUZZ_YAML_NAME, b->text, strlen(b->text), &p, msg, sizeof(msg));
                if (!yaml_message_check(b, r, msg))
                        failed++;
        }

        printf("%u of %zu messages fall short\n", failed, ELEMENTSOF(config_cases) + ELEMENTSOF(profile_cases));
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
