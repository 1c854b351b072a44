/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzzes the passcode server's configuration reader (server/config.c over lib/yaml-doc.c):
 * the input is the text of its server.yaml.
 *
 * What is checked (promised by server/config.h and yaml-doc.h):
 *   - the text is accepted (0) or refused with -EINVAL and a "FILE:LINE:COLUMN: ..." message;
 *   - in an accepted configuration every dealer code and user id is valid and unique, every
 *     user's dealer is listed, and every user has a password hash.
 */
#include "config.h"
#include "fuzz-yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(server_config_freep) ServerConfig *c = NULL;
        char errbuf[1024];
        int r;

        fuzz_yaml_quiet();
        r = server_config_parse_full(FUZZ_YAML_NAME, "/etc/immo-passcode-server", (const char *) data, size,
                                     errbuf, sizeof(errbuf), &c);
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL);
                FUZZ_CHECK(!c);
                fuzz_yaml_check_message(errbuf);
                return 0;
        }

        FUZZ_CHECK(c->n_dealers <= CONFIG_MAX_DEALERS && c->n_users <= CONFIG_MAX_USERS);
        for (size_t i = 0; i < c->n_dealers; i++) {
                FUZZ_CHECK(dealer_code_valid(c->dealers[i].code));
                FUZZ_CHECK(server_config_find_dealer(c, c->dealers[i].code) == &c->dealers[i]);
        }
        for (size_t i = 0; i < c->n_users; i++) {
                const ConfigUser *u = &c->users[i];

                FUZZ_CHECK(user_id_valid(u->id));
                FUZZ_CHECK(server_config_find_dealer(c, u->dealer));
                FUZZ_CHECK(u->password_hash && u->password_hash[0]);
                for (size_t j = 0; j < i; j++)
                        FUZZ_CHECK(!streq(c->users[j].id, u->id));
        }
        return 0;
}
