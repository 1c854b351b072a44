/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a person reads when the passcode server's configuration is refused: a sample of bad
 * files, each refusal printed and checked for FILE:LINE:COLUMN and what was expected.
 */
#include "config.h"
#include "yaml-messages.h"

/* Five lines every case starts with */
#define BASE                                                                                \
        "listen: {address: 127.0.0.1, port: 8443}\ntls: {certificate: c.pem, key: c.key}\n" \
        "database: db.sqlite\nmaster_key_file: master.key\n"
#define DEALERS "dealers:\n  - code: D1\n    name: Dealer One\n"

static const BadYaml server_cases[] = {
        { "listen: {port: 99999}\n", "1:10", "expected a TCP port between 1 and 65535" },
        { BASE "workers: many\n", "5:1", "expected" },
        { BASE DEALERS "users:\n  - id: u1\n    name: U\n    dealer: D9\n    role: technician\n"
                       "    title: Technician\n    password: x\n",
          "11:5", "expected the code of a dealer listed under dealers" },
        { BASE DEALERS "users:\n  - id: u1\n    name: U\n    dealer: D1\n    role: boss\n"
                       "    title: Technician\n    password: x\n",
          "12:5", "expected technician or manager" },
        { BASE DEALERS "  - code: D1\n    name: Again\n", "8:5", "listed twice" },
        { BASE "approval_validity_hours: \"24\"\n", "5:1", "write numbers without quotes" },
};

int main(void) {
        unsigned failed = 0;

        log_set_max_level(LOG_CRIT);

        printf("immo-passcode-server's server.yaml:\n");
        for (size_t i = 0; i < ELEMENTSOF(server_cases); i++) {
                const BadYaml *b = &server_cases[i];
                _cleanup_(server_config_freep) ServerConfig *c = NULL;
                char msg[1024] = "";
                int r;

                r = server_config_parse_full(FUZZ_YAML_NAME, "/etc/immo-passcode-server", b->text,
                                             strlen(b->text), msg, sizeof(msg), &c);
                if (!yaml_message_check(b, r, msg))
                        failed++;
        }

        printf("%u of %zu messages fall short\n", failed, ELEMENTSOF(server_cases));
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
