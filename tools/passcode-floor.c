/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The floor of the passcode service benchmark (tools/passcode-bench.py): the
 * smart-code passcode alone (K_vin and the HMAC, as the server computes it for each
 * request) in a loop on one thread, for about a second. Prints passcodes per second. */
#include <stdio.h>
#include <time.h>

#include "passcode.h"

static double now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

int main(void) {
        static const uint8_t master[32] = { 1, 2, 3, 4, 5, 6, 7, 8 };
        uint8_t kvin[32];
        char out[13];
        unsigned long n = 0;
        double t0 = now(), t;

        do {
                for (int i = 0; i < 1000; i++, n++)
                        if (passcode_vin_key(master, "58ADZ1B19LU012345", kvin) < 0 ||
                            passcode_smart_code(kvin, "58ADZ1B19LU012345", "134B18FBDB1", "0123456789AB", "01234567",
                                                out) < 0)
                                return 1;
                t = now() - t0;
        } while (t < 1.0);
        printf("%.0f\n", (double) n / t);
        return 0;
}
