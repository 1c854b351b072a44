/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "link.h"

static void test_valid(void **state) {
        char buf[160];
        LinkUri u;

        assert_int_equal(link_uri_parse("vbus:/run/immod/vbus.sock", &u, NULL), 0);
        assert_int_equal(u.kind, LINK_VBUS);
        assert_string_equal(u.name, "/run/immod/vbus.sock");
        link_uri_format(&u, buf, sizeof(buf));
        assert_string_equal(buf, "vbus:/run/immod/vbus.sock");

        assert_int_equal(link_uri_parse("socketcan:can0", &u, NULL), 0);
        assert_int_equal(u.kind, LINK_SOCKETCAN);
        assert_string_equal(u.name, "can0");

        assert_int_equal(link_uri_parse("socketcan-isotp:vcan0", &u, NULL), 0);
        assert_int_equal(u.kind, LINK_SOCKETCAN_ISOTP);
        assert_string_equal(u.name, "vcan0");
        link_uri_format(&u, buf, sizeof(buf));
        assert_string_equal(buf, "socketcan-isotp:vcan0");

        /* 15 characters is the longest interface name */
        assert_int_equal(link_uri_parse("socketcan:abcdefghijklmno", &u, NULL), 0);
}

static void test_invalid(void **state) {
        static const char *const bad[] = {
                "", "can0", "socketcan:", "socketcan-isotp:", "socketcan:abcdefghijklmnop", "socketcan:a b",
                "socketcan:a/b", "socketcan:..", "vbus:", "vbus:relative.sock", "tcp:1.2.3.4", "SOCKETCAN:can0",
                "socketcan:can0:1"
        };
        char long_path[200];
        const char *reason;
        LinkUri u = { .kind = LINK_VBUS, .name = "untouched" };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                reason = NULL;
                assert_int_equal(link_uri_parse(bad[i], &u, &reason), -EINVAL);
                assert_non_null(reason);
                assert_string_equal(u.name, "untouched"); /* ret untouched on failure */
        }
        assert_int_equal(link_uri_parse(NULL, &u, &reason), -EINVAL);

        memset(long_path, 'a', sizeof(long_path));
        memcpy(long_path, "vbus:/", 6);
        long_path[sizeof(long_path) - 1] = 0;
        assert_int_equal(link_uri_parse(long_path, &u, &reason), -EINVAL);
        assert_non_null(strstr(reason, "too long"));

        assert_int_equal(link_uri_parse("serial:/dev/ttyUSB0", &u, &reason), -EINVAL);
        assert_non_null(strstr(reason, "socketcan:IFNAME"));
}

static void test_state_names(void **state) {
        assert_string_equal(link_state_to_string(LINK_STATE_UNKNOWN), "unknown");
        assert_string_equal(link_state_to_string(LINK_STATE_DOWN), "down");
        assert_string_equal(link_state_to_string(LINK_STATE_UP), "up");
        assert_string_equal(link_state_to_string(LINK_STATE_ERROR_WARNING), "error-warning");
        assert_string_equal(link_state_to_string(LINK_STATE_ERROR_PASSIVE), "error-passive");
        assert_string_equal(link_state_to_string(LINK_STATE_BUS_OFF), "bus-off");
        assert_string_equal(link_state_to_string(_LINK_STATE_MAX), "unknown");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid),
                cmocka_unit_test(test_invalid),
                cmocka_unit_test(test_state_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
