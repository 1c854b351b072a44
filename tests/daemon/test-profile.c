/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <sys/stat.h>

#include "log.h"
#include "profile.h"

static char tmpdir[] = "/tmp/test-profile-XXXXXX";
static char errbuf[1024];

/* The smallest valid profile: everything else takes the reference protocol's defaults. */
#define MINIMAL                      \
        "name: test-minimal\n"       \
        "reference_protocol: true\n" \
        "make: Lexus\n"              \
        "models:\n"                  \
        "  - {name: RX 350, years: 2020}\n"

static const char *profiles_dir(void) {
        const char *d = getenv("IMMOD_TEST_PROFILES");

        assert_non_null(d);
        return d;
}

static void write_file(const char *dir, const char *name, const char *text) {
        char path[512];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static void make_dir(char *buf, size_t size, const char *name) {
        snprintf(buf, size, "%s/%s", tmpdir, name);
        assert_int_equal(mkdir(buf, 0755), 0);
}

static void clean_dir(const char *dir) {
        char cmd[600];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
}

static void assert_reference_protocol(const VehicleProfile *p) {
        assert_true(p->reference_protocol);
        assert_int_equal(p->link.tx_id, 0x750);
        assert_int_equal(p->link.rx_id, 0x758);
        assert_true(p->link.extended);
        assert_int_equal(p->link.ext_address, 0x57);
        assert_true(p->link.padding);
        assert_int_equal(p->link.padding_byte, 0x55);
        assert_int_equal(p->link.bitrate, 500000);
        assert_int_equal(p->timing.p2_ms, 150);
        assert_int_equal(p->timing.p2_star_ms, 5000);
        assert_int_equal(p->timing.tester_present_ms, 2000);
        assert_int_equal(p->timing.s3_ms, 5000);
        assert_int_equal(p->security_attempts, 3);
        assert_int_equal(p->key_slots, 7);
        assert_int_equal(p->durations.reset_s, 960);
        assert_int_equal(p->durations.erasure_window_s, 30);
        assert_int_equal(p->durations.registration_timeout_s, 60);
        assert_int_equal(p->dids.vin, 0xF190);
        assert_int_equal(p->dids.software_version, 0xF195);
        assert_int_equal(p->dids.model, 0xF197);
        assert_int_equal(p->dids.key_status, 0xA001);
        assert_int_equal(p->dids.immobilizer_state, 0xA002);
        assert_int_equal(p->dids.vehicle_status, 0xA003);
        assert_int_equal(p->dids.security_attempts, 0xA004);
        assert_int_equal(p->dids.battery, 0xA010);
        assert_int_equal(p->dids.registration_result, 0xA020);
        assert_int_equal(p->rids.smart_code_reset, 0xA101);
        assert_int_equal(p->rids.key_registration, 0xA102);
        assert_int_equal(p->rids.key_erasure, 0xA103);
        assert_int_equal(p->seeds.immobilizer, 48);
        assert_int_equal(p->seeds.vin, 17);
        assert_int_equal(p->seeds.data1, 6);
        assert_int_equal(p->seeds.data2, 6);
        assert_int_equal(p->seeds.data3, 4);
}

static void assert_model(const VehicleProfile *p, size_t i, const char *name, unsigned first,
                         unsigned last) {
        assert_true(i < p->n_models);
        assert_string_equal(p->models[i].name, name);
        assert_int_equal(p->models[i].first_year, first);
        assert_int_equal(p->models[i].last_year, last);
}

static void test_shipped(void **state) {
        _cleanup_(profile_set_freep) ProfileSet *s = NULL;
        const VehicleProfile *lexus, *toyota;
        char path[512];

        assert_int_equal(profile_load_dir_full(profiles_dir(), &s, errbuf, sizeof(errbuf)), 0);
        assert_string_equal(errbuf, "");
        assert_int_equal(profile_set_size(s), 2);
        assert_null(profile_set_get(s, 2));

        lexus = profile_set_get(s, 0);
        assert_string_equal(lexus->name, "lexus-es-ux-ls-2018-2021");
        snprintf(path, sizeof(path), "%s/lexus-es-ux-ls-2018-2021.yaml", profiles_dir());
        assert_string_equal(lexus->path, path);
        assert_string_equal(lexus->make, "Lexus");
        assert_reference_protocol(lexus);
        assert_true(lexus->battery.start_min_v == 13.0);
        assert_true(lexus->battery.warn_below_v == 12.5);
        assert_int_equal(lexus->n_models, 7);
        assert_model(lexus, 0, "ES 250", 2021, 2021);
        assert_model(lexus, 1, "ES 300h", 2019, 2021);
        assert_model(lexus, 2, "ES 350", 2019, 2021);
        assert_model(lexus, 3, "UX 200", 2019, 2021);
        assert_model(lexus, 4, "UX 250h", 2019, 2021);
        assert_model(lexus, 5, "LS 500", 2018, 2021);
        assert_model(lexus, 6, "LS 500h", 2018, 2021);

        toyota = profile_set_get(s, 1);
        assert_string_equal(toyota->name, "toyota-avalon-2019");
        assert_string_equal(toyota->make, "Toyota");
        assert_reference_protocol(toyota);
        assert_true(toyota->battery.start_min_v == 12.0);
        assert_true(toyota->battery.warn_below_v == 11.5);
        assert_int_equal(toyota->n_models, 2);
        assert_model(toyota, 0, "Avalon", 2019, 2019);
        assert_model(toyota, 1, "Avalon HV", 2019, 2019);

        assert_ptr_equal(profile_set_find(s, "toyota-avalon-2019"), toyota);
        assert_ptr_equal(profile_set_find(s, "lexus-es-ux-ls-2018-2021"), lexus);
        assert_null(profile_set_find(s, "lexus"));
        assert_null(profile_set_find(s, NULL));

        /* the variant without an error buffer */
        s = profile_set_free(s);
        assert_int_equal(profile_load_dir(profiles_dir(), &s), 0);
        assert_int_equal(profile_set_size(s), 2);
}

/* Every row of both bulletins' applicability tables, each year, in the spellings the
 * bulletins and DID F197 use. */
static void test_applicability(void **state) {
        static const struct {
                const char *make;
                const char *model;
                unsigned first, last;
                const char *profile;
        } rows[] = {
                { "Lexus", "ES 250", 2021, 2021, "lexus-es-ux-ls-2018-2021" },
                { "Lexus", "ES300H", 2019, 2021, "lexus-es-ux-ls-2018-2021" },
                { "Lexus", "ES 300h", 2019, 2021, "lexus-es-ux-ls-2018-2021" },
                { "Lexus", "ES350", 2019, 2021, "lexus-es-ux-ls-2018-2021" },
                { "Lexus", "ES 350", 2019, 2021, "lexus-es-ux-ls-2018-2021" },
                { "Lexus", "UX200", 2019, 2021, "lexus-es-ux-ls-2018-2021" },
                { "Lexus", "UX 200", 2019, 2021, "lexus-es-ux-ls-2018-2021" },
                { "Lexus", "UX250H", 2019, 2021, "lexus-es-ux-ls-2018-2021" },
                { "Lexus", "UX 250h", 2019, 2021, "lexus-es-ux-ls-2018-2021" },
                { "Lexus", "LS500", 2018, 2021, "lexus-es-ux-ls-2018-2021" },
                { "Lexus", "LS 500", 2018, 2021, "lexus-es-ux-ls-2018-2021" },
                { "Lexus", "LS500H", 2018, 2021, "lexus-es-ux-ls-2018-2021" },
                { "Lexus", "LS 500h", 2018, 2021, "lexus-es-ux-ls-2018-2021" },
                { "Toyota", "Avalon", 2019, 2019, "toyota-avalon-2019" },
                { "Toyota", "Avalon HV", 2019, 2019, "toyota-avalon-2019" },
                { "Toyota", "AVALON HV", 2019, 2019, "toyota-avalon-2019" },
        };
        static const struct {
                const char *make;
                const char *model;
                unsigned year;
        } outside[] = {
                { "Lexus", "ES 250", 2020 },
                { "Lexus", "ES 250", 2022 },
                { "Lexus", "ES 300h", 2018 },
                { "Lexus", "ES 300h", 2022 },
                { "Lexus", "ES 350", 2018 },
                { "Lexus", "UX 200", 2018 },
                { "Lexus", "UX 250h", 2022 },
                { "Lexus", "LS 500", 2017 },
                { "Lexus", "LS 500h", 2022 },
                { "Toyota", "Avalon", 2018 },
                { "Toyota", "Avalon", 2020 },
                { "Toyota", "Avalon HV", 2020 },
                { "Toyota", "Avalon Hybrid", 2019 },
                { "Toyota", "Camry", 2019 },
                { "Lexus", "RX 350", 2020 },
                { "Lexus", "UX 250", 2020 },
                { "Lexus", "ES", 2020 },
                { "Lexus", "", 2020 },
                { "Toyota", "ES 350", 2020 },
                { "Lexus", "Avalon", 2019 },
                { "Scion", "ES 350", 2020 },
                { "Lexus", "ES 350", 0 },
        };
        _cleanup_(profile_set_freep) ProfileSet *s = NULL;
        const VehicleProfile *p;
        unsigned matches = 0;

        assert_int_equal(profile_load_dir(profiles_dir(), &s), 0);

        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                for (unsigned y = rows[i].first; y <= rows[i].last; y++) {
                        p = profile_match(s, rows[i].make, rows[i].model, y);
                        if (!p)
                                fail_msg("%s %s %u is not supported", rows[i].make, rows[i].model, y);
                        assert_string_equal(p->name, rows[i].profile);
                        assert_true(profile_covers(p, rows[i].make, rows[i].model, y));
                        matches++;
                }
        assert_int_equal(matches, 1 + 8 * 3 + 4 * 4 + 3);

        for (size_t i = 0; i < ELEMENTSOF(outside); i++)
                if (profile_match(s, outside[i].make, outside[i].model, outside[i].year))
                        fail_msg("%s \"%s\" %u matched", outside[i].make, outside[i].model, outside[i].year);

        /* the make as vin_make() or a person writes it */
        p = profile_match(s, "LEXUS", "es 350", 2020);
        assert_non_null(p);
        assert_string_equal(p->name, "lexus-es-ux-ls-2018-2021");
        assert_null(profile_match(s, NULL, "ES 350", 2020));
        assert_null(profile_match(s, "Lexus", NULL, 2020));
        assert_null(profile_match(NULL, "Lexus", "ES 350", 2020));
}

static void test_model_names(void **state) {
        assert_true(profile_model_name_equal("ES300H", "ES 300h"));
        assert_true(profile_model_name_equal("ES 300h", "es300h"));
        assert_true(profile_model_name_equal("ES 350", "ES350   "));
        assert_true(profile_model_name_equal("  UX 250h", "UX250H"));
        assert_true(profile_model_name_equal("Avalon HV", "AVALONHV"));
        assert_true(profile_model_name_equal("LS\t500", "LS 500"));
        assert_false(profile_model_name_equal("UX 250h", "UX 250"));
        assert_false(profile_model_name_equal("LS 500", "LS 500h"));
        assert_false(profile_model_name_equal("ES 350", "ES-350"));
        assert_false(profile_model_name_equal("Avalon", "Avalon HV"));
        assert_false(profile_model_name_equal("ES 350", ""));
}

static void test_helpers(void **state) {
        _cleanup_(profile_set_freep) ProfileSet *s = NULL;
        const VehicleProfile *p;
        UdsClientConfig u;
        IsoTpConfig c;

        assert_int_equal(profile_load_dir(profiles_dir(), &s), 0);
        p = profile_match(s, "Toyota", "Avalon", 2019);
        assert_non_null(p);

        profile_isotp_config(p, &c);
        assert_int_equal(c.tx_id, 0x750);
        assert_int_equal(c.rx_id, 0x758);
        assert_true(c.extended);
        assert_int_equal(c.tx_ext_address, 0x57);
        assert_int_equal(c.rx_ext_address, 0x57);
        assert_true(c.tx_padding);
        assert_int_equal(c.padding_byte, 0x55);
        assert_int_equal(c.block_size, 0);
        assert_int_equal(c.st_min, 0);
        assert_int_equal(c.wait_frames, 0);
        assert_int_equal(c.max_wait, 10);
        assert_int_equal(c.n_as, 1000 * USEC_PER_MSEC);
        assert_int_equal(c.n_bs, 1000 * USEC_PER_MSEC);
        assert_int_equal(c.n_cr, 1000 * USEC_PER_MSEC);
        assert_int_equal(isotp_config_validate(&c, NULL), 0);

        profile_uds_client_config(p, &u);
        assert_int_equal(u.p2, 150 * USEC_PER_MSEC);
        assert_int_equal(u.p2_star, 5000 * USEC_PER_MSEC);
        assert_int_equal(u.max_pending, 1000);
        assert_int_equal(u.max_queue, 16);
        assert_int_equal(u.tester_present, 0);
}

static void test_minimal_and_custom(void **state) {
        _cleanup_(profile_freep) VehicleProfile *p = NULL;
        char dir[512], path[600];

        make_dir(dir, sizeof(dir), "custom");
        snprintf(path, sizeof(path), "%s/p.yaml", dir);

        write_file(dir, "p.yaml", MINIMAL);
        assert_int_equal(profile_load(path, &p, errbuf, sizeof(errbuf)), 0);
        assert_string_equal(p->name, "test-minimal");
        assert_string_equal(p->path, path);
        assert_string_equal(p->make, "Lexus");
        assert_int_equal(p->n_models, 1);
        assert_model(p, 0, "RX 350", 2020, 2020);
        assert_reference_protocol(p);
        assert_true(p->battery.start_min_v == 13.0);
        assert_true(p->battery.warn_below_v == 12.5);
        p = profile_free(p);

        /* every value changed */
        write_file(dir, "p.yaml",
                   "name: other-ecu\n"
                   "reference_protocol: false\n"
                   "make: Toyota\n"
                   "models:\n"
                   "  - name: Camry\n"
                   "    years: 2018 - 2020\n"
                   "  - {name: Camry, years: 2021-2022}\n"
                   "link: {tx_id: 0x7E0, rx_id: 2024, addressing: normal, padding: none, bitrate: 250000}\n"
                   "timing: {p2_ms: 50, p2_star_ms: 2000, tester_present_ms: 1000, s3_ms: 4000}\n"
                   "security: {attempts: 5}\n"
                   "key_slots: 8\n"
                   "durations: {reset_s: 600, erasure_window_s: 20, registration_timeout_s: 45}\n"
                   "battery: {start_min_v: 12.25, warn_below_v: 12.25}\n"
                   "dids: {vin: 0xf190, software_version: 0xF180, model: 0xF18C, key_status: 0xB001,\n"
                   "       immobilizer_state: 0xB002, vehicle_status: 0xB003, security_attempts: 0xB004,\n"
                   "       battery: 0xB010, registration_result: 0xB020}\n"
                   "rids: {smart_code_reset: 0x0201, key_registration: 0x0202, key_erasure: 0x0203}\n"
                   "seeds: {immobilizer: 16, smart_code: {vin: 17, data1: 5, data2: 8, data3: 2}}\n");
        assert_int_equal(profile_load(path, &p, errbuf, sizeof(errbuf)), 0);
        assert_string_equal(p->name, "other-ecu");
        assert_false(p->reference_protocol);
        assert_string_equal(p->make, "Toyota");
        assert_int_equal(p->n_models, 2);
        assert_model(p, 0, "Camry", 2018, 2020);
        assert_model(p, 1, "Camry", 2021, 2022);
        assert_int_equal(p->models[0].line, 5);
        assert_int_equal(p->models[1].line, 7);
        assert_int_equal(p->link.tx_id, 0x7E0);
        assert_int_equal(p->link.rx_id, 0x7E8);
        assert_false(p->link.extended);
        assert_false(p->link.padding);
        assert_int_equal(p->link.bitrate, 250000);
        assert_int_equal(p->timing.p2_ms, 50);
        assert_int_equal(p->timing.p2_star_ms, 2000);
        assert_int_equal(p->timing.tester_present_ms, 1000);
        assert_int_equal(p->timing.s3_ms, 4000);
        assert_int_equal(p->security_attempts, 5);
        assert_int_equal(p->key_slots, 8);
        assert_int_equal(p->durations.reset_s, 600);
        assert_int_equal(p->durations.erasure_window_s, 20);
        assert_int_equal(p->durations.registration_timeout_s, 45);
        assert_true(p->battery.start_min_v == 12.25);
        assert_true(p->battery.warn_below_v == 12.25);
        assert_int_equal(p->dids.vin, 0xF190);
        assert_int_equal(p->dids.software_version, 0xF180);
        assert_int_equal(p->dids.model, 0xF18C);
        assert_int_equal(p->dids.key_status, 0xB001);
        assert_int_equal(p->dids.immobilizer_state, 0xB002);
        assert_int_equal(p->dids.vehicle_status, 0xB003);
        assert_int_equal(p->dids.security_attempts, 0xB004);
        assert_int_equal(p->dids.battery, 0xB010);
        assert_int_equal(p->dids.registration_result, 0xB020);
        assert_int_equal(p->rids.smart_code_reset, 0x0201);
        assert_int_equal(p->rids.key_registration, 0x0202);
        assert_int_equal(p->rids.key_erasure, 0x0203);
        assert_int_equal(p->seeds.immobilizer, 16);
        assert_int_equal(p->seeds.vin, 17);
        assert_int_equal(p->seeds.data1, 5);
        assert_int_equal(p->seeds.data2, 8);
        assert_int_equal(p->seeds.data3, 2);
        assert_true(profile_covers(p, "toyota", "CAMRY", 2022));
        assert_false(profile_covers(p, "toyota", "CAMRY", 2023));

        {
                IsoTpConfig c;

                profile_isotp_config(p, &c);
                assert_int_equal(c.tx_id, 0x7E0);
                assert_int_equal(c.rx_id, 0x7E8);
                assert_false(c.extended);
                assert_false(c.tx_padding);
                assert_int_equal(isotp_config_validate(&c, NULL), 0);
        }
        clean_dir(dir);
}

/* `msg` without the column of its "FILE:LINE:COLUMN: " start (`prefix_len` is FILE's length + 1),
 * which must be there when `rest` starts with a line number: the cases here check the line and
 * the words, tests/fuzz/test-yaml-messages.c the columns. */
static void drop_column(const char *msg, size_t prefix_len, const char *rest, char *buf, size_t size) {
        size_t k = prefix_len;

        snprintf(buf, size, "%s", msg);
        if (strlen(buf) < prefix_len)
                return;
        while (buf[k] >= '0' && buf[k] <= '9')
                k++;
        if (k > prefix_len && buf[k] == ':' && rest[strspn(rest, "0123456789")] == ':') {
                size_t c = k + 1;

                while (buf[c] >= '0' && buf[c] <= '9')
                        c++;
                if (c == k + 1 || buf[c] != ':')
                        fail_msg("no column in: %s", msg);
                memmove(buf + k, buf + c, strlen(buf + c) + 1);
        }
}

/* A profile MINIMAL + `extra` (or `text` alone) must fail with "FILE:<rest>". */
static void check_invalid_text(const char *text, const char *rest) {
        VehicleProfile *p = (VehicleProfile *) 0x1;
        char dir[512], path[600], want[1400], got[1400];

        snprintf(dir, sizeof(dir), "%s/invalid", tmpdir);
        (void) mkdir(dir, 0755);
        snprintf(path, sizeof(path), "%s/bad.yaml", dir);
        write_file(dir, "bad.yaml", text);

        errbuf[0] = 0;
        if (profile_load(path, &p, errbuf, sizeof(errbuf)) != -EINVAL)
                fail_msg("accepted or wrong error for:\n%s\nmessage: %s", text, errbuf);
        assert_ptr_equal(p, (VehicleProfile *) 0x1);
        snprintf(want, sizeof(want), "%s:%s", path, rest);
        drop_column(errbuf, strlen(path) + 1, rest, got, sizeof(got));
        assert_string_equal(got, want);
}

static void check_invalid(const char *extra, const char *rest) {
        char text[2048];

        snprintf(text, sizeof(text), "%s%s", MINIMAL, extra);
        check_invalid_text(text, rest);
}

static void test_invalid(void **state) {
        /* required keys and names (MINIMAL is 5 lines; extra keys start at line 6) */
        check_invalid_text("reference_protocol: true\nmake: Lexus\nmodels: [{name: A, years: 2020}]\n",
                           "1: missing key \"name\"");
        check_invalid_text("name: x\nmake: Lexus\nmodels: [{name: A, years: 2020}]\n",
                           "1: missing key \"reference_protocol\"");
        check_invalid_text("name: x\nreference_protocol: true\nmodels: [{name: A, years: 2020}]\n",
                           "1: missing key \"make\"");
        check_invalid_text("name: x\nreference_protocol: true\nmake: Lexus\n", "1: missing key \"models\"");
        check_invalid_text(
                "name: Lexus ES\nreference_protocol: true\nmake: Lexus\nmodels: [{name: A, years: 2020}]\n",
                "1: name: expected a profile name of lowercase letters, digits and '-' (at most 64), got "
                "\"Lexus ES\"");
        check_invalid_text(
                "name: x\nreference_protocol: yes\nmake: Lexus\nmodels: [{name: A, years: 2020}]\n",
                "2: reference_protocol: expected true or false, got \"yes\"");
        check_invalid_text(
                "name: x\nreference_protocol: true\nmake: [Lexus]\nmodels: [{name: A, years: 2020}]\n",
                "3: make: expected a make such as Lexus or Toyota, got a list");
        check_invalid("colour: red\n", "6: colour: unknown key (known keys here: name, reference_protocol, "
                                       "make, models, link, timing, "
                                       "security, key_slots, durations, battery, dids, rids, seeds)");
        check_invalid("make: Toyota\n", "6: make: duplicate key, first given on line 3");

        /* models */
        check_invalid_text("name: x\nreference_protocol: true\nmake: Lexus\nmodels: []\n",
                           "4: models: expected a list of models, each with name and years");
        check_invalid_text(
                "name: x\nreference_protocol: true\nmake: Lexus\nmodels: {name: A, years: 2020}\n",
                "4: models: expected a list of models, each with name and years");
        check_invalid_text("name: x\nreference_protocol: true\nmake: Lexus\nmodels:\n  - ES 350\n",
                           "5: models[0]: expected a model with name and years (e.g. {name: ES 350, years: "
                           "2019-2021}), got \"ES 350\"");
        check_invalid_text("name: x\nreference_protocol: true\nmake: Lexus\nmodels:\n  - name: ES 350\n",
                           "5: models[0]: missing key \"years\"");
        check_invalid_text(
                "name: x\nreference_protocol: true\nmake: Lexus\nmodels:\n  - {name: ES 350, year: 2020}\n",
                "5: models[0].year: unknown key (known keys here: name, years)");
        check_invalid_text(
                "name: x\nreference_protocol: true\nmake: Lexus\nmodels:\n  - {name: ES 350, years: "
                "2021-2019}\n",
                "5: models[0].years: expected a model year or a range such as 2019-2021 of years from 1990 "
                "to 2100, the first not after the last, got \"2021-2019\"");
        check_invalid_text(
                "name: x\nreference_protocol: true\nmake: Lexus\nmodels:\n  - {name: ES 350, years: 1989}\n",
                "5: models[0].years: expected a model year or a range such as 2019-2021 of years from 1990 "
                "to 2100, the first not after the last, got \"1989\"");
        check_invalid_text(
                "name: x\nreference_protocol: true\nmake: Lexus\nmodels:\n  - {name: ES 350, years: "
                "19-21}\n",
                "5: models[0].years: expected a model year or a range such as 2019-2021, got \"19-21\"");
        check_invalid_text(
                "name: x\nreference_protocol: true\nmake: Lexus\nmodels:\n  - {name: ES 350, years: "
                "2019-2021x}\n",
                "5: models[0].years: expected a model year or a range such as 2019-2021, got "
                "\"2019-2021x\"");
        check_invalid_text(
                "name: x\nreference_protocol: true\nmake: Lexus\nmodels:\n  - {name: '  ', years: 2020}\n",
                "5: models[0].name: expected a model name of at most 32 characters, got \"  \"");
        check_invalid_text("name: x\nreference_protocol: true\nmake: Lexus\nmodels:\n"
                           "  - {name: ES 350, years: 2019-2021}\n"
                           "  - {name: es350, years: 2021}\n",
                           "6: models[1]: es350 2021-2021 overlaps line 5 (ES 350 2019-2021)");

        /* link */
        check_invalid("link: {tx_id: 0x800}\n",
                      "6: link.tx_id: expected an 11-bit CAN id between 0x0 and 0x7FF, got \"0x800\"");
        check_invalid("link:\n  rx_id: 0x750\n", "6: link: tx_id and rx_id must differ (both are 0x750)");
        check_invalid("link: {rx_id: -1}\n",
                      "6: link.rx_id: expected an 11-bit CAN id between 0x0 and 0x7FF, got \"-1\"");
        check_invalid("link: {addressing: mixed}\n",
                      "6: link.addressing: expected extended or normal, got \"mixed\"");
        check_invalid("link: {addressing: normal, ext_address: 0x57}\n",
                      "6: link.ext_address: an extended address needs addressing: extended");
        check_invalid("link: {ext_address: 0x100}\n",
                      "6: link.ext_address: expected an address byte between 0x0 and 0xFF, got \"0x100\"");
        check_invalid(
                "link: {padding: 0x1FF}\n",
                "6: link.padding: expected a padding byte (or none) between 0x0 and 0xFF, got \"0x1FF\"");
        check_invalid(
                "link: {bitrate: 5000}\n",
                "6: link.bitrate: expected a whole number of bits per second between 10000 and 1000000, got "
                "\"5000\"");
        check_invalid("link: {speed: 500000}\n", "6: link.speed: unknown key (known keys here: tx_id, "
                                                 "rx_id, ext_address, bitrate, addressing, "
                                                 "padding)");
        check_invalid("link: vbus\n",
                      "6: link: expected the link settings (tx_id, rx_id, addressing, ...), got \"vbus\"");

        /* timing */
        check_invalid(
                "timing: {p2_ms: 5}\n",
                "6: timing.p2_ms: expected a whole number of milliseconds between 10 and 10000, got \"5\"");
        check_invalid("timing: {p2_ms: 1000, p2_star_ms: 500}\n",
                      "6: timing.p2_star_ms: p2_star_ms (500) must not be shorter than p2_ms (1000)");
        check_invalid(
                "timing: {tester_present_ms: 5000}\n",
                "6: timing.tester_present_ms: tester_present_ms (5000) must be shorter than s3_ms (5000)");
        check_invalid("timing: {s3_ms: 2000}\n",
                      "6: timing.s3_ms: tester_present_ms (2000) must be shorter than s3_ms (2000)");
        check_invalid("timing: {s3_ms: fast}\n", "6: timing.s3_ms: expected a whole number of milliseconds "
                                                 "between 1000 and 60000, got \"fast\"");

        /* security, slots, durations */
        check_invalid(
                "security: {attempts: 0}\n",
                "6: security.attempts: expected a whole number of attempts between 1 and 10, got \"0\"");
        check_invalid("key_slots: 33\n",
                      "6: key_slots: expected a whole number of key slots between 1 and 32, got \"33\"");
        check_invalid(
                "key_slots: '7'\n",
                "6: key_slots: expected a whole number of key slots between 1 and 32, got the quoted text "
                "\"7\" (write numbers without quotes)");
        check_invalid(
                "durations: {reset_s: 0}\n",
                "6: durations.reset_s: expected a whole number of seconds between 1 and 7200, got \"0\"");
        check_invalid(
                "durations: {erasure_window_s: 601}\n",
                "6: durations.erasure_window_s: expected a whole number of seconds between 1 and 600, got "
                "\"601\"");
        check_invalid(
                "durations: {registration_timeout_s: 1m}\n",
                "6: durations.registration_timeout_s: expected a whole number of seconds between 1 and 600, "
                "got \"1m\"");

        /* battery */
        check_invalid("battery: {start_min_v: 20}\n",
                      "6: battery.start_min_v: expected a voltage between 9 and 16, got \"20\"");
        check_invalid("battery:\n  start_min_v: 12,5\n",
                      "7: battery.start_min_v: expected a voltage between 9 and 16, got \"12,5\"");
        check_invalid("battery: {start_min_v: 1.2e1}\n",
                      "6: battery.start_min_v: expected a voltage between 9 and 16, got \"1.2e1\"");
        check_invalid(
                "battery: {start_min_v: \"13.0\"}\n",
                "6: battery.start_min_v: expected a voltage between 9 and 16, got the quoted text \"13.0\" "
                "(write numbers without quotes)");
        check_invalid(
                "battery: {start_min_v: 12.0, warn_below_v: 12.5}\n",
                "6: battery.warn_below_v: warn_below_v (12.50 V) must not be above start_min_v (12.00 V)");
        check_invalid("battery: {minimum: 12}\n",
                      "6: battery.minimum: unknown key (known keys here: start_min_v, warn_below_v)");

        /* identifiers */
        check_invalid("dids: {vin: 0x10000}\n",
                      "6: dids.vin: expected a data identifier between 0x1 and 0xFFFF, got \"0x10000\"");
        check_invalid("dids: {model: 0xF190}\n", "6: dids.model: 0xF190 is used for both vin and model");
        check_invalid("dids:\n  software_version: 0xA010\n",
                      "7: dids.software_version: 0xA010 is used for both software_version and battery");
        check_invalid(
                "dids: {odometer: 0xF1A0}\n",
                "6: dids.odometer: unknown key (known keys here: vin, software_version, model, key_status, "
                "immobilizer_state, vehicle_status, security_attempts, battery, registration_result)");
        check_invalid(
                "rids: {key_erasure: 0}\n",
                "6: rids.key_erasure: expected a routine identifier between 0x1 and 0xFFFF, got \"0\"");
        check_invalid("rids: {key_erasure: 0xA102}\n",
                      "6: rids.key_erasure: 0xA102 is used for both key_registration and key_erasure");

        /* seeds */
        check_invalid("seeds: {immobilizer: 3}\n",
                      "6: seeds.immobilizer: expected a whole number of bytes between 4 and 255, got \"3\"");
        check_invalid(
                "seeds: {smart_code: {vin: 16}}\n",
                "6: seeds.smart_code.vin: expected 17 (a VIN has 17 characters), a whole number of bytes "
                "between 17 and 17, got \"16\"");
        check_invalid(
                "seeds:\n  smart_code:\n    data1: 17\n",
                "8: seeds.smart_code.data1: expected a whole number of bytes between 1 and 16, got \"17\"");
        check_invalid("seeds: {smart_code: {data4: 2}}\n",
                      "6: seeds.smart_code.data4: unknown key (known keys here: vin, data1, data2, data3)");

        /* malformed YAML */
        check_invalid("link:\n\ttx_id: 0x750\n",
                      "7: invalid YAML: a tab character; YAML is indented with spaces");
        check_invalid("make: &m Lexus\n", "6: make: duplicate key, first given on line 3");
        check_invalid("link: &l {tx_id: 0x750}\n",
                      "6: link: anchors (&l) are not supported; write the value out");
}

static void test_dirs(void **state) {
        _cleanup_(profile_set_freep) ProfileSet *s = NULL;
        char dir[512], path[600], want[1400], name[32];

        /* missing and empty folders */
        snprintf(dir, sizeof(dir), "%s/none", tmpdir);
        assert_int_equal(profile_load_dir_full(dir, &s, errbuf, sizeof(errbuf)), -ENOENT);
        snprintf(want, sizeof(want),
                 "%s: cannot open the vehicle profiles folder: No such file or directory", dir);
        assert_string_equal(errbuf, want);
        assert_null(s);

        make_dir(dir, sizeof(dir), "empty");
        write_file(dir, "README", "not a profile\n");
        write_file(dir, ".hidden.yaml", "not: [a profile\n");
        write_file(dir, "x.yaml.orig", "not: [a profile\n");
        assert_int_equal(profile_load_dir_full(dir, &s, errbuf, sizeof(errbuf)), -ENOENT);
        snprintf(want, sizeof(want), "%s: no vehicle profiles (*.yaml) in this folder", dir);
        assert_string_equal(errbuf, want);
        assert_null(s);

        /* other files are ignored */
        write_file(dir, "b.yaml", MINIMAL);
        assert_int_equal(profile_load_dir_full(dir, &s, errbuf, sizeof(errbuf)), 0);
        assert_int_equal(profile_set_size(s), 1);
        s = profile_set_free(s);

        /* one bad file fails the set, naming the file */
        write_file(dir, "a.yaml",
                   "name: a\nreference_protocol: true\nmake: Lexus\nmodels: [{name: X, years: 2020}]\n"
                   "key_slots: 0\n");
        assert_int_equal(profile_load_dir_full(dir, &s, errbuf, sizeof(errbuf)), -EINVAL);
        snprintf(want, sizeof(want),
                 "%s/a.yaml:5:1: key_slots: expected a whole number of key slots between 1 and 32, got \"0\"",
                 dir);
        assert_string_equal(errbuf, want);
        assert_null(s);

        /* two profiles with one name */
        write_file(dir, "a.yaml", "name: test-minimal\nreference_protocol: true\nmake: Lexus\n"
                                  "models: [{name: X, years: 2020}]\n");
        assert_int_equal(profile_load_dir_full(dir, &s, errbuf, sizeof(errbuf)), -EINVAL);
        snprintf(want, sizeof(want), "%s/b.yaml: name: \"test-minimal\" is also the name of %s/a.yaml", dir,
                 dir);
        assert_string_equal(errbuf, want);

        /* two profiles claiming one vehicle */
        write_file(dir, "a.yaml",
                   "name: a\nreference_protocol: true\nmake: LEXUS\n"
                   "models:\n  - {name: X, years: 2020}\n  - {name: RX350, years: 2019-2020}\n");
        assert_int_equal(profile_load_dir_full(dir, &s, errbuf, sizeof(errbuf)), -EINVAL);
        snprintf(want, sizeof(want),
                 "%s/b.yaml:5:5: models[0]: Lexus RX 350 2020-2020 is also covered by %s/a.yaml:6:5", dir,
                 dir);
        assert_string_equal(errbuf, want);

        /* the same model of another make, or other years, is fine */
        write_file(dir, "a.yaml", "name: a\nreference_protocol: true\nmake: Toyota\n"
                                  "models:\n  - {name: RX 350, years: 2020}\n");
        write_file(dir, "c.yaml", "name: c\nreference_protocol: true\nmake: Lexus\n"
                                  "models:\n  - {name: RX 350, years: 2021}\n");
        assert_int_equal(profile_load_dir_full(dir, &s, errbuf, sizeof(errbuf)), 0);
        assert_int_equal(profile_set_size(s), 3);
        assert_string_equal(profile_match(s, "Toyota", "RX 350", 2020)->name, "a");
        assert_string_equal(profile_match(s, "Lexus", "RX 350", 2020)->name, "test-minimal");
        assert_string_equal(profile_match(s, "Lexus", "RX 350", 2021)->name, "c");
        s = profile_set_free(s);
        clean_dir(dir);

        /* at most PROFILE_MAX_FILES */
        make_dir(dir, sizeof(dir), "many");
        for (unsigned i = 0; i <= PROFILE_MAX_FILES; i++) {
                char text[256];

                snprintf(name, sizeof(name), "p%02u.yaml", i);
                snprintf(text, sizeof(text),
                         "name: p%02u\nreference_protocol: true\nmake: Lexus\nmodels: [{name: M%u, years: "
                         "2020}]\n",
                         i, i);
                write_file(dir, name, text);
        }
        assert_int_equal(profile_load_dir_full(dir, &s, errbuf, sizeof(errbuf)), -EINVAL);
        snprintf(want, sizeof(want), "%s: more than 64 vehicle profiles", dir);
        assert_string_equal(errbuf, want);
        snprintf(path, sizeof(path), "%s/p00.yaml", dir);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(profile_load_dir_full(dir, &s, errbuf, sizeof(errbuf)), 0);
        assert_int_equal(profile_set_size(s), 64);
        assert_string_equal(profile_set_get(s, 0)->name, "p01");
        assert_string_equal(profile_set_get(s, 63)->name, "p64");
        clean_dir(dir);
}

static int setup(void **state) {
        log_set_max_level(LOG_CRIT);
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_shipped),
                cmocka_unit_test(test_applicability),
                cmocka_unit_test(test_model_names),
                cmocka_unit_test(test_helpers),
                cmocka_unit_test(test_minimal_and_custom),
                cmocka_unit_test(test_invalid),
                cmocka_unit_test(test_dirs),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
