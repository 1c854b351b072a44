/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <strings.h>

#include "log.h"
#include "immo-protocol.h"
#include "profile.h"
#include "yaml-doc.h"

struct ProfileSet {
        VehicleProfile **profiles;
        size_t n;
};

/* The reference protocol (vehicle-protocol.md): every value a profile may leave out. */
static void profile_set_defaults(VehicleProfile *p) {
        p->link.tx_id = 0x750;
        p->link.rx_id = 0x758;
        p->link.extended = true;
        p->link.ext_address = 0x57;
        p->link.padding = true;
        p->link.padding_byte = 0x55;
        p->link.bitrate = 500000;

        p->timing.p2_ms = 150;
        p->timing.p2_star_ms = 5000;
        p->timing.tester_present_ms = 2000;
        p->timing.s3_ms = 5000;

        p->security_attempts = 3;
        p->key_slots = 7;

        p->durations.reset_s = 960;
        p->durations.erasure_window_s = 30;
        p->durations.registration_timeout_s = 60;

        /* the stricter of the two bulletins' rules (Lexus: a 13.5 V power supply) */
        p->battery.start_min_v = 13.0;
        p->battery.warn_below_v = 12.5;

        p->dids = (ProfileDids) {
                .vin = DID_VIN,
                .software_version = DID_SOFTWARE_VERSION,
                .model = DID_MODEL,
                .key_status = DID_KEY_STATUS,
                .immobilizer_state = DID_IMMOBILIZER_STATE,
                .vehicle_status = DID_VEHICLE_STATUS,
                .security_attempts = DID_SECURITY_ATTEMPTS,
                .battery = DID_BATTERY,
                .registration_result = DID_REGISTRATION_RESULT,
        };
        p->rids = (ProfileRids) {
                .smart_code_reset = RID_SMART_CODE_RESET,
                .key_registration = RID_KEY_REGISTRATION,
                .key_erasure = RID_KEY_ERASURE,
        };

        p->seeds.immobilizer = 48;
        p->seeds.vin = 17;
        p->seeds.data1 = 6;
        p->seeds.data2 = 6;
        p->seeds.data3 = 4;
}

VehicleProfile *profile_free(VehicleProfile *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n_models; i++)
                free(p->models[i].name);
        free(p->models);
        free(p->name);
        free(p->path);
        free(p->make);
        free(p);
        return NULL;
}

/* Numbers */

/* A number in the profile: its key, bounds, how to describe it, and where it goes. */
typedef struct Field {
        const char *key;
        uint64_t min, max;
        const char *what;
        bool hex;
        size_t offset;
        size_t size;
} Field;

#define FIELD(k, lo, hi, w, h, member)                               \
        {                                                            \
                .key = k, .min = lo, .max = hi, .what = w, .hex = h, \
                .offset = offsetof(VehicleProfile, member),          \
                .size = sizeof(((VehicleProfile *) NULL)->member),   \
        }

static void field_store(VehicleProfile *p, const Field *f, uint64_t v) {
        uint8_t *dst = (uint8_t *) p + f->offset;

        switch (f->size) {
        case sizeof(uint8_t): {
                uint8_t x = (uint8_t) v;
                memcpy(dst, &x, sizeof(x));
                break;
        }
        case sizeof(uint16_t): {
                uint16_t x = (uint16_t) v;
                memcpy(dst, &x, sizeof(x));
                break;
        }
        case sizeof(uint32_t): {
                uint32_t x = (uint32_t) v;
                memcpy(dst, &x, sizeof(x));
                break;
        }
        default:
                abort(); /* a field table that does not match the struct */
        }
}

/* Reads the keys of `fields` that `map` has; others keep their defaults. */
static int parse_fields(const YamlNode *map, const Field *fields, size_t n, VehicleProfile *p) {
        for (size_t i = 0; i < n; i++) {
                const YamlNode *v = yaml_mapping_get(map, fields[i].key);
                uint64_t u;
                int r;

                if (!v)
                        continue;
                if (fields[i].hex)
                        r = yaml_node_get_hex(v, fields[i].min, fields[i].max, fields[i].what, &u);
                else
                        r = yaml_node_get_uint(v, fields[i].min, fields[i].max, fields[i].what, &u);
                if (r < 0)
                        return r;
                field_store(p, &fields[i], u);
        }
        return 0;
}

static int check_section(const YamlNode *map, const char *what, const Field *fields, size_t n,
                         const char *const *extra) {
        const char *known[32];
        size_t k = 0;

        for (size_t i = 0; i < n && k + 1 < ELEMENTSOF(known); i++)
                known[k++] = fields[i].key;
        for (; extra && *extra && k + 1 < ELEMENTSOF(known); extra++)
                known[k++] = *extra;
        known[k] = NULL;
        return yaml_mapping_check(map, what, known);
}

static int parse_section(const YamlNode *root, const char *key, const char *what, const Field *fields,
                         size_t n, VehicleProfile *p) {
        const YamlNode *map = yaml_mapping_get(root, key);
        int r;

        if (!map)
                return 0;
        r = check_section(map, what, fields, n, NULL);
        if (r < 0)
                return r;
        return parse_fields(map, fields, n, p);
}

/* Distinct identifiers: one DID answering for two meanings is a typing error. */
static int check_distinct(const YamlNode *map, const Field *fields, size_t n, const VehicleProfile *p) {
        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++) {
                        uint16_t a, b;
                        const YamlNode *v;

                        memcpy(&a, (const uint8_t *) p + fields[i].offset, sizeof(a));
                        memcpy(&b, (const uint8_t *) p + fields[j].offset, sizeof(b));
                        if (a != b)
                                continue;
                        v = map ? yaml_mapping_get(map, fields[j].key) : NULL;
                        if (!v && map)
                                v = yaml_mapping_get(map, fields[i].key);
                        if (!v)
                                v = map;
                        return yaml_node_error(v, "0x%04X is used for both %s and %s", a, fields[i].key,
                                               fields[j].key);
                }
        return 0;
}

/* Names */

static bool profile_name_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > PROFILE_NAME_MAX || s[0] == '-')
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
                        return false;
        return true;
}

static bool text_valid(const char *s, size_t max) {
        size_t n = strlen(s), spaces = 0;

        if (n == 0 || n > max)
                return false;
        for (const char *c = s; *c; c++) {
                if ((unsigned char) *c < 0x20 || (unsigned char) *c >= 0x7f)
                        return false;
                if (*c == ' ')
                        spaces++;
        }
        return spaces < n;
}

bool profile_model_name_equal(const char *a, const char *b) {
        /* "ES300H", "ES 300h" and DID F197's "ES 350" name models alike */
        for (;;) {
                while (*a == ' ' || *a == '\t')
                        a++;
                while (*b == ' ' || *b == '\t')
                        b++;
                if (!*a || !*b)
                        return !*a && !*b;
                if ((*a >= 'A' && *a <= 'Z' ? *a + 32 : *a) != (*b >= 'A' && *b <= 'Z' ? *b + 32 : *b))
                        return false;
                a++;
                b++;
        }
}

/* Models */

static const char *parse_year(const char *s, unsigned *ret) {
        unsigned v = 0;

        for (unsigned i = 0; i < 4; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return NULL;
                v = v * 10 + (unsigned) (s[i] - '0');
        }
        *ret = v;
        return s + 4;
}

static int parse_years(const YamlNode *v, ProfileModel *m) {
        static const char *const expect = "a model year or a range such as 2019-2021";
        const char *s, *e;
        unsigned first, last;
        int r;

        r = yaml_node_get_string(v, expect, &s);
        if (r < 0)
                return r;

        /* "2021", or "2019-2021" with or without spaces around the dash, as the bulletins write it */
        e = parse_year(s, &first);
        last = first;
        if (e && *e) {
                e += strspn(e, " ");
                e = *e == '-' ? e + 1 : NULL;
                if (e) {
                        e += strspn(e, " ");
                        e = parse_year(e, &last);
                }
        }
        if (!e || *e)
                return yaml_node_error(v, "expected %s, got \"%.40s\"", expect, s);

        if (first < PROFILE_YEAR_MIN || last > PROFILE_YEAR_MAX || first > last)
                return yaml_node_error(
                        v, "expected %s of years from %u to %u, the first not after the last, got \"%s\"",
                        expect, PROFILE_YEAR_MIN, PROFILE_YEAR_MAX, s);
        m->first_year = first;
        m->last_year = last;
        return 0;
}

static int parse_models(const YamlNode *v, VehicleProfile *p) {
        static const char *const known[] = { "name", "years", NULL };
        size_t n;
        int r;

        if (yaml_node_kind(v) != YAML_DOC_SEQUENCE || yaml_node_size(v) == 0)
                return yaml_node_error(v, "expected a list of models, each with name and years");
        n = yaml_node_size(v);
        if (n > PROFILE_MAX_MODELS)
                return yaml_node_error(v, "more than %u models", PROFILE_MAX_MODELS);

        p->models = calloc(n, sizeof(ProfileModel));
        if (!p->models)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                const YamlNode *item = yaml_node_item(v, i), *name, *years;
                ProfileModel *m = &p->models[i];
                const char *s;

                r = yaml_mapping_check(
                        item, "a model with name and years (e.g. {name: ES 350, years: 2019-2021})", known);
                if (r < 0)
                        return r;
                r = yaml_mapping_require(item, "name", &name);
                if (r < 0)
                        return r;
                r = yaml_mapping_require(item, "years", &years);
                if (r < 0)
                        return r;

                r = yaml_node_get_string(name, "a model name as the bulletin writes it", &s);
                if (r < 0)
                        return r;
                if (!text_valid(s, PROFILE_MODEL_NAME_MAX))
                        return yaml_node_error(
                                name, "expected a model name of at most %u characters, got \"%.40s\"",
                                PROFILE_MODEL_NAME_MAX, s);
                m->name = strdup(s);
                if (!m->name)
                        return -ENOMEM;
                m->line = yaml_node_line(item);
                m->column = yaml_node_column(item);
                p->n_models++;

                r = parse_years(years, m);
                if (r < 0)
                        return r;

                for (size_t j = 0; j < i; j++)
                        if (profile_model_name_equal(p->models[j].name, m->name) &&
                            m->first_year <= p->models[j].last_year &&
                            p->models[j].first_year <= m->last_year)
                                return yaml_node_error(item, "%s %u-%u overlaps line %u (%s %u-%u)", m->name,
                                                       m->first_year, m->last_year, p->models[j].line,
                                                       p->models[j].name, p->models[j].first_year,
                                                       p->models[j].last_year);
        }
        return 0;
}

/* Sections */

static int parse_link(const YamlNode *root, VehicleProfile *p) {
        static const Field fields[] = {
                FIELD("tx_id", 0, 0x7FF, "an 11-bit CAN id", true, link.tx_id),
                FIELD("rx_id", 0, 0x7FF, "an 11-bit CAN id", true, link.rx_id),
                FIELD("ext_address", 0, 0xFF, "an address byte", true, link.ext_address),
                FIELD("bitrate", 10000, 1000000, "a whole number of bits per second", false, link.bitrate),
        };
        static const char *const extra[] = { "addressing", "padding", NULL };
        const YamlNode *map = yaml_mapping_get(root, "link"), *v;
        const char *s;
        uint64_t u;
        int r;

        if (!map)
                return 0;
        r = check_section(map, "the link settings (tx_id, rx_id, addressing, ...)", fields,
                          ELEMENTSOF(fields), extra);
        if (r < 0)
                return r;
        r = parse_fields(map, fields, ELEMENTSOF(fields), p);
        if (r < 0)
                return r;

        if ((v = yaml_mapping_get(map, "addressing"))) {
                r = yaml_node_get_string(v, "extended or normal", &s);
                if (r < 0)
                        return r;
                if (streq(s, "extended"))
                        p->link.extended = true;
                else if (streq(s, "normal"))
                        p->link.extended = false;
                else
                        return yaml_node_error(v, "expected extended or normal, got \"%.40s\"", s);
        }
        if (!p->link.extended && (v = yaml_mapping_get(map, "ext_address")))
                return yaml_node_error(v, "an extended address needs addressing: extended");

        if ((v = yaml_mapping_get(map, "padding"))) {
                if (yaml_node_kind(v) == YAML_DOC_SCALAR && streq(yaml_node_scalar(v), "none"))
                        p->link.padding = false;
                else {
                        r = yaml_node_get_hex(v, 0, 0xFF, "a padding byte (or none)", &u);
                        if (r < 0)
                                return r;
                        p->link.padding = true;
                        p->link.padding_byte = (uint8_t) u;
                }
        }

        if (p->link.tx_id == p->link.rx_id)
                return yaml_node_error(map, "tx_id and rx_id must differ (both are 0x%03X)", p->link.tx_id);
        return 0;
}

static int parse_timing(const YamlNode *root, VehicleProfile *p) {
        static const Field fields[] = {
                FIELD("p2_ms", 10, 10000, "a whole number of milliseconds", false, timing.p2_ms),
                FIELD("p2_star_ms", 100, 60000, "a whole number of milliseconds", false, timing.p2_star_ms),
                FIELD("tester_present_ms", 100, 60000, "a whole number of milliseconds", false,
                      timing.tester_present_ms),
                FIELD("s3_ms", 1000, 60000, "a whole number of milliseconds", false, timing.s3_ms),
        };
        const YamlNode *map = yaml_mapping_get(root, "timing"), *v;
        int r;

        r = parse_section(root, "timing", "the UDS timing (p2_ms, p2_star_ms, ...)", fields,
                          ELEMENTSOF(fields), p);
        if (r < 0)
                return r;

        if (p->timing.p2_star_ms < p->timing.p2_ms) {
                v = yaml_mapping_get(map, "p2_star_ms") ?: yaml_mapping_get(map, "p2_ms");
                return yaml_node_error(v, "p2_star_ms (%u) must not be shorter than p2_ms (%u)",
                                       p->timing.p2_star_ms, p->timing.p2_ms);
        }
        /* a tester present interval at or above S3 lets the ECU drop the session and re-lock */
        if (p->timing.tester_present_ms >= p->timing.s3_ms) {
                v = yaml_mapping_get(map, "tester_present_ms") ?: yaml_mapping_get(map, "s3_ms");
                return yaml_node_error(v, "tester_present_ms (%u) must be shorter than s3_ms (%u)",
                                       p->timing.tester_present_ms, p->timing.s3_ms);
        }
        return 0;
}

static int parse_battery(const YamlNode *root, VehicleProfile *p) {
        static const char *const known[] = { "start_min_v", "warn_below_v", NULL };
        const YamlNode *map = yaml_mapping_get(root, "battery"), *v;
        int r;

        if (!map)
                return 0;
        r = yaml_mapping_check(map, "the battery rules (start_min_v, warn_below_v)", known);
        if (r < 0)
                return r;
        if ((v = yaml_mapping_get(map, "start_min_v"))) {
                r = yaml_node_get_double(v, 9.0, 16.0, "a voltage", &p->battery.start_min_v);
                if (r < 0)
                        return r;
        }
        if ((v = yaml_mapping_get(map, "warn_below_v"))) {
                r = yaml_node_get_double(v, 9.0, 16.0, "a voltage", &p->battery.warn_below_v);
                if (r < 0)
                        return r;
        }
        if (p->battery.warn_below_v > p->battery.start_min_v)
                return yaml_node_error(v ?: map,
                                       "warn_below_v (%.2f V) must not be above start_min_v (%.2f V)",
                                       p->battery.warn_below_v, p->battery.start_min_v);
        return 0;
}

static int parse_seeds(const YamlNode *root, VehicleProfile *p) {
        static const Field fields[] = {
                FIELD("immobilizer", 4, 255, "a whole number of bytes", false, seeds.immobilizer),
        };
        static const Field smart_fields[] = {
                FIELD("vin", 17, 17, "17 (a VIN has 17 characters), a whole number of bytes", false,
                      seeds.vin),
                FIELD("data1", 1, 16, "a whole number of bytes", false, seeds.data1),
                FIELD("data2", 1, 16, "a whole number of bytes", false, seeds.data2),
                FIELD("data3", 1, 16, "a whole number of bytes", false, seeds.data3),
        };
        static const char *const extra[] = { "smart_code", NULL };
        const YamlNode *map = yaml_mapping_get(root, "seeds"), *smart;
        int r;

        if (!map)
                return 0;
        r = check_section(map, "the seed layouts (immobilizer, smart_code)", fields, ELEMENTSOF(fields),
                          extra);
        if (r < 0)
                return r;
        r = parse_fields(map, fields, ELEMENTSOF(fields), p);
        if (r < 0)
                return r;
        smart = yaml_mapping_get(map, "smart_code");
        if (!smart)
                return 0;
        r = check_section(smart, "the smart-code seed fields (vin, data1, data2, data3)", smart_fields,
                          ELEMENTSOF(smart_fields), NULL);
        if (r < 0)
                return r;
        return parse_fields(smart, smart_fields, ELEMENTSOF(smart_fields), p);
}

static int parse_identifiers(const YamlNode *root, VehicleProfile *p) {
        static const Field dids[] = {
                FIELD("vin", 1, 0xFFFF, "a data identifier", true, dids.vin),
                FIELD("software_version", 1, 0xFFFF, "a data identifier", true, dids.software_version),
                FIELD("model", 1, 0xFFFF, "a data identifier", true, dids.model),
                FIELD("key_status", 1, 0xFFFF, "a data identifier", true, dids.key_status),
                FIELD("immobilizer_state", 1, 0xFFFF, "a data identifier", true, dids.immobilizer_state),
                FIELD("vehicle_status", 1, 0xFFFF, "a data identifier", true, dids.vehicle_status),
                FIELD("security_attempts", 1, 0xFFFF, "a data identifier", true, dids.security_attempts),
                FIELD("battery", 1, 0xFFFF, "a data identifier", true, dids.battery),
                FIELD("registration_result", 1, 0xFFFF, "a data identifier", true, dids.registration_result),
        };
        static const Field rids[] = {
                FIELD("smart_code_reset", 1, 0xFFFF, "a routine identifier", true, rids.smart_code_reset),
                FIELD("key_registration", 1, 0xFFFF, "a routine identifier", true, rids.key_registration),
                FIELD("key_erasure", 1, 0xFFFF, "a routine identifier", true, rids.key_erasure),
        };
        int r;

        r = parse_section(root, "dids", "the data identifiers (vin, model, ...)", dids, ELEMENTSOF(dids), p);
        if (r < 0)
                return r;
        r = check_distinct(yaml_mapping_get(root, "dids") ?: root, dids, ELEMENTSOF(dids), p);
        if (r < 0)
                return r;
        r = parse_section(root, "rids", "the routine identifiers (smart_code_reset, ...)", rids,
                          ELEMENTSOF(rids), p);
        if (r < 0)
                return r;
        return check_distinct(yaml_mapping_get(root, "rids") ?: root, rids, ELEMENTSOF(rids), p);
}

static int parse_profile(const YamlNode *root, VehicleProfile *p) {
        static const char *const known[] = {
                "name", "reference_protocol", "make", "models", "link", "timing", "security", "key_slots",
                "durations", "battery", "dids", "rids", "seeds", NULL
        };
        static const Field security[] = {
                FIELD("attempts", 1, 10, "a whole number of attempts", false, security_attempts),
        };
        static const Field slots[] = {
                FIELD("key_slots", 1, 32, "a whole number of key slots", false, key_slots),
        };
        static const Field durations[] = {
                FIELD("reset_s", 1, 7200, "a whole number of seconds", false, durations.reset_s),
                FIELD("erasure_window_s", 1, 600, "a whole number of seconds", false,
                      durations.erasure_window_s),
                FIELD("registration_timeout_s", 1, 600, "a whole number of seconds", false,
                      durations.registration_timeout_s),
        };
        const YamlNode *v;
        const char *s;
        int r;

        r = yaml_mapping_check(root, "a vehicle profile (name, make, models, ...)", known);
        if (r < 0)
                return r;

        r = yaml_mapping_require(root, "name", &v);
        if (r < 0)
                return r;
        r = yaml_node_get_string(v, "a profile name", &s);
        if (r < 0)
                return r;
        if (!profile_name_valid(s))
                return yaml_node_error(
                        v,
                        "expected a profile name of lowercase letters, digits and '-' (at most %u), "
                        "got \"%.80s\"",
                        PROFILE_NAME_MAX, s);
        p->name = strdup(s);
        if (!p->name)
                return -ENOMEM;

        r = yaml_mapping_require(root, "reference_protocol", &v);
        if (r < 0)
                return r;
        r = yaml_node_get_bool(v, &p->reference_protocol);
        if (r < 0)
                return r;

        r = yaml_mapping_require(root, "make", &v);
        if (r < 0)
                return r;
        r = yaml_node_get_string(v, "a make such as Lexus or Toyota", &s);
        if (r < 0)
                return r;
        if (!text_valid(s, 32))
                return yaml_node_error(v, "expected a make of at most 32 characters, got \"%.40s\"", s);
        p->make = strdup(s);
        if (!p->make)
                return -ENOMEM;

        r = yaml_mapping_require(root, "models", &v);
        if (r < 0)
                return r;
        r = parse_models(v, p);
        if (r < 0)
                return r;

        r = parse_link(root, p);
        if (r < 0)
                return r;
        r = parse_timing(root, p);
        if (r < 0)
                return r;
        r = parse_section(root, "security", "the security access settings (attempts)", security,
                          ELEMENTSOF(security), p);
        if (r < 0)
                return r;
        r = parse_fields(root, slots, ELEMENTSOF(slots), p);
        if (r < 0)
                return r;
        r = parse_section(root, "durations",
                          "the durations (reset_s, erasure_window_s, registration_timeout_s)", durations,
                          ELEMENTSOF(durations), p);
        if (r < 0)
                return r;
        r = parse_battery(root, p);
        if (r < 0)
                return r;
        r = parse_identifiers(root, p);
        if (r < 0)
                return r;
        return parse_seeds(root, p);
}

static int profile_from_doc(const YamlDoc *doc, const char *path, VehicleProfile **ret) {
        _cleanup_(profile_freep) VehicleProfile *p = NULL;
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        profile_set_defaults(p);
        p->path = strdup(path);
        if (!p->path)
                return -ENOMEM;

        r = parse_profile(yaml_doc_root(doc), p);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(p);
        return 0;
}

int profile_load(const char *path, VehicleProfile **ret, char *errbuf, size_t errbuf_size) {
        _cleanup_(yaml_doc_freep) YamlDoc *doc = NULL;
        int r;

        if (!path || !ret)
                return -EINVAL;

        r = yaml_doc_load(path, errbuf, errbuf_size, &doc);
        if (r < 0)
                return r;
        return profile_from_doc(doc, path, ret);
}

int profile_parse(const char *name, const char *text, size_t size, VehicleProfile **ret, char *errbuf,
                  size_t errbuf_size) {
        _cleanup_(yaml_doc_freep) YamlDoc *doc = NULL;
        int r;

        if (!name || !text || !ret)
                return -EINVAL;

        r = yaml_doc_parse(name, text, size, errbuf, errbuf_size, &doc);
        if (r < 0)
                return r;
        return profile_from_doc(doc, name, ret);
}

/* Sets */

_printf_(3, 4) static int set_error(char *errbuf, size_t errbuf_size, const char *format, ...) {
        char msg[1024];
        va_list ap;

        va_start(ap, format);
        vsnprintf(msg, sizeof(msg), format, ap);
        va_end(ap);
        log_error("%s", msg);
        if (errbuf && errbuf_size > 0)
                snprintf(errbuf, errbuf_size, "%s", msg);
        return -EINVAL;
}

ProfileSet *profile_set_free(ProfileSet *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n; i++)
                profile_free(s->profiles[i]);
        free(s->profiles);
        free(s);
        return NULL;
}

static int cmp_names(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void free_names(char **names, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(names[i]);
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

/* The *.yaml names in a folder, sorted; at most PROFILE_MAX_FILES. */
static int list_profiles(const char *dir, char **names, size_t *ret_n, char *errbuf, size_t errbuf_size) {
        _cleanup_(closedirp) DIR *d = NULL;
        size_t n = 0;
        struct dirent *de;

        d = opendir(dir);
        if (!d) {
                int r = -errno;

                set_error(errbuf, errbuf_size, "%s: cannot open the vehicle profiles folder: %s", dir,
                          strerror(-r));
                return r;
        }

        while ((errno = 0, de = readdir(d))) {
                size_t l = strlen(de->d_name);

                if (de->d_name[0] == '.' || l <= 5 || !streq(de->d_name + l - 5, ".yaml"))
                        continue;
                if (n >= PROFILE_MAX_FILES) {
                        free_names(names, n);
                        return set_error(errbuf, errbuf_size, "%s: more than %u vehicle profiles", dir,
                                         PROFILE_MAX_FILES);
                }
                names[n] = strdup(de->d_name);
                if (!names[n]) {
                        free_names(names, n);
                        return -ENOMEM;
                }
                n++;
        }
        if (errno != 0) {
                int r = -errno;

                free_names(names, n);
                set_error(errbuf, errbuf_size, "%s: cannot read the folder: %s", dir, strerror(-r));
                return r;
        }

        qsort(names, n, sizeof(char *), cmp_names);
        *ret_n = n;
        return 0;
}

/* Two profiles must never claim one vehicle: which one applied would depend on file names. */
static int check_set(const ProfileSet *s, char *errbuf, size_t errbuf_size) {
        for (size_t i = 0; i < s->n; i++)
                for (size_t j = i + 1; j < s->n; j++) {
                        const VehicleProfile *a = s->profiles[i], *b = s->profiles[j];

                        if (streq(a->name, b->name))
                                return set_error(errbuf, errbuf_size,
                                                 "%s: name: \"%s\" is also the name of %s", b->path, b->name,
                                                 a->path);
                        if (strcasecmp(a->make, b->make) != 0)
                                continue;

                        for (size_t k = 0; k < b->n_models; k++)
                                for (size_t l = 0; l < a->n_models; l++) {
                                        const ProfileModel *mb = &b->models[k], *ma = &a->models[l];

                                        if (profile_model_name_equal(ma->name, mb->name) &&
                                            mb->first_year <= ma->last_year &&
                                            ma->first_year <= mb->last_year)
                                                return set_error(
                                                        errbuf, errbuf_size,
                                                        "%s:%u:%u: models[%zu]: %s %s %u-%u is also covered "
                                                        "by %s:%u:%u",
                                                        b->path, mb->line, mb->column, k, b->make, mb->name,
                                                        mb->first_year, mb->last_year, a->path, ma->line,
                                                        ma->column);
                                }
                }
        return 0;
}

int profile_load_dir_full(const char *dir, ProfileSet **ret, char *errbuf, size_t errbuf_size) {
        _cleanup_(profile_set_freep) ProfileSet *s = NULL;
        char *names[PROFILE_MAX_FILES];
        size_t n = 0;
        int r;

        if (!dir || !ret)
                return -EINVAL;
        if (errbuf && errbuf_size > 0)
                errbuf[0] = 0;

        r = list_profiles(dir, names, &n, errbuf, errbuf_size);
        if (r < 0)
                return r;
        if (n == 0) {
                set_error(errbuf, errbuf_size, "%s: no vehicle profiles (*.yaml) in this folder", dir);
                return -ENOENT;
        }

        s = calloc(1, sizeof(*s));
        if (s)
                s->profiles = calloc(n, sizeof(VehicleProfile *));
        if (!s || !s->profiles) {
                free_names(names, n);
                return -ENOMEM;
        }

        for (size_t i = 0; i < n && r >= 0; i++) {
                _cleanup_free_ char *path = NULL;

                if (asprintf(&path, "%s/%s", dir, names[i]) < 0) {
                        r = -ENOMEM;
                        break;
                }
                r = profile_load(path, &s->profiles[s->n], errbuf, errbuf_size);
                if (r >= 0)
                        s->n++;
        }
        free_names(names, n);
        if (r < 0)
                return r;

        r = check_set(s, errbuf, errbuf_size);
        if (r < 0)
                return r;

        for (size_t i = 0; i < s->n; i++)
                log_debug("Vehicle profile %s (%s, %zu models) from %s", s->profiles[i]->name,
                          s->profiles[i]->make, s->profiles[i]->n_models, s->profiles[i]->path);

        *ret = TAKE_PTR(s);
        return 0;
}

int profile_load_dir(const char *dir, ProfileSet **ret) {
        return profile_load_dir_full(dir, ret, NULL, 0);
}

size_t profile_set_size(const ProfileSet *s) {
        return s ? s->n : 0;
}

const VehicleProfile *profile_set_get(const ProfileSet *s, size_t i) {
        return s && i < s->n ? s->profiles[i] : NULL;
}

const VehicleProfile *profile_set_find(const ProfileSet *s, const char *name) {
        if (!s || !name)
                return NULL;
        for (size_t i = 0; i < s->n; i++)
                if (streq(s->profiles[i]->name, name))
                        return s->profiles[i];
        return NULL;
}

bool profile_covers(const VehicleProfile *p, const char *make, const char *model, unsigned year) {
        if (!p || !make || !model || strcasecmp(p->make, make) != 0)
                return false;
        for (size_t i = 0; i < p->n_models; i++)
                if (year >= p->models[i].first_year && year <= p->models[i].last_year &&
                    profile_model_name_equal(p->models[i].name, model))
                        return true;
        return false;
}

const VehicleProfile *profile_match(const ProfileSet *s, const char *make, const char *model,
                                    unsigned year) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n; i++)
                if (profile_covers(s->profiles[i], make, model, year))
                        return s->profiles[i];
        return NULL;
}

/* Helpers for the link */

void profile_isotp_config(const VehicleProfile *p, IsoTpConfig *ret) {
        isotp_config_init(ret);
        ret->tx_id = p->link.tx_id;
        ret->rx_id = p->link.rx_id;
        ret->extended = p->link.extended;
        ret->tx_ext_address = p->link.ext_address;
        ret->rx_ext_address = p->link.ext_address;
        ret->tx_padding = p->link.padding;
        if (p->link.padding)
                ret->padding_byte = p->link.padding_byte;
}

void profile_uds_client_config(const VehicleProfile *p, UdsClientConfig *ret) {
        uds_client_config_init(ret);
        ret->p2 = p->timing.p2_ms * USEC_PER_MSEC;
        ret->p2_star = p->timing.p2_star_ms * USEC_PER_MSEC;
        ret->tester_present = 0;
}
