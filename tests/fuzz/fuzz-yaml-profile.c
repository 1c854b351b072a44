/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzzes the vehicle profile reader (daemon/profile.c over lib/yaml-doc.c): the input is
 * the text of one profile file.
 *
 * What is checked (promised by profile.h and yaml-doc.h):
 *   - the text is accepted (0) or refused with -EINVAL and a "FILE:LINE:COLUMN: ..." message;
 *   - an accepted profile has a name, a make, 1..PROFILE_MAX_MODELS models each with a name
 *     and years within PROFILE_YEAR_MIN..MAX in order, covers each of its own models, and
 *     has key slots and 11-bit CAN ids that differ.
 */
#include "fuzz-yaml.h"
#include "profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(profile_freep) VehicleProfile *p = NULL;
        char errbuf[1024];
        int r;

        fuzz_yaml_quiet();
        r = profile_parse(FUZZ_YAML_NAME, (const char *) data, size, &p, errbuf, sizeof(errbuf));
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL);
                FUZZ_CHECK(!p);
                fuzz_yaml_check_message(errbuf);
                return 0;
        }

        FUZZ_CHECK(p->name && p->name[0] && strlen(p->name) <= PROFILE_NAME_MAX);
        FUZZ_CHECK(p->make && p->make[0]);
        FUZZ_CHECK(p->n_models >= 1 && p->n_models <= PROFILE_MAX_MODELS);
        for (size_t i = 0; i < p->n_models; i++) {
                const ProfileModel *m = &p->models[i];

                FUZZ_CHECK(m->name && m->name[0] && strlen(m->name) <= PROFILE_MODEL_NAME_MAX);
                FUZZ_CHECK(m->first_year >= PROFILE_YEAR_MIN && m->first_year <= m->last_year &&
                           m->last_year <= PROFILE_YEAR_MAX);
                FUZZ_CHECK(profile_covers(p, p->make, m->name, m->first_year));
                FUZZ_CHECK(profile_covers(p, p->make, m->name, m->last_year));
        }
        FUZZ_CHECK(p->key_slots >= 1);
        FUZZ_CHECK(p->link.tx_id <= 0x7ff && p->link.rx_id <= 0x7ff && p->link.tx_id != p->link.rx_id);
        return 0;
}
