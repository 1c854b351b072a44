/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * immo-ecusim end to end: the simulator runs as a child process hosting a vbus; the test
 * talks UDS to it through the project's own UdsLink and acts at the car through the control
 * socket. Durations are scaled (--time-scale) so that the whole file runs in a minute.
 * $IMMO_ECUSIM names the executable (meson sets it).
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "hex.h"
#include "passcode.h"
#include "uds-link.h"
#include "vectors.h"

#define VIN "58ADZ1B16MU000123"
#define DATA1 "134B18FBDB1"
#define KEY1 "11111111"
#define KEY2 "22222222"
#define KEY3 "33333333"

static char dir[] = "/tmp/test-ecusim-XXXXXX";
static char bus[256], ctl_path[256], master_file[256], revocation[256], state_file[256], log_file[256];
static uint8_t master[32], kvin[32];
static pid_t child = -1;
static sd_event *event;
static UdsLink *link_;
static int ctl_fd = -1;

typedef struct Answer {
        bool done;
        int error;
        uint8_t nrc;
        bool suppressed;
        unsigned pending;
        uint8_t data[4096];
        size_t size;
} Answer;

static const char *ecusim(void) {
        const char *p = getenv("IMMO_ECUSIM");
        if (!p || !*p)
                fail_msg("IMMO_ECUSIM is not set; run through 'meson test'");
        return p;
}

static int run_child(char **argv, int *ret_status, char *out, size_t n) {
        int pfd[2];
        pid_t pid;
        size_t got = 0;

        assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                dup2(pfd[1], 2);
                dup2(pfd[1], 1);
                execv(argv[0], argv);
                _exit(127);
        }
        close(pfd[1]);
        for (;;) {
                ssize_t k = read(pfd[0], out + got, n - 1 - got);
                if (k <= 0)
                        break;
                got += (size_t) k;
                if (got >= n - 1)
                        break;
        }
        out[got] = 0;
        close(pfd[0]);
        assert_int_equal(waitpid(pid, ret_status, 0), pid);
        return 0;
}

static void start_sim(const char *extra[]) {
        const char *argv[64];
        unsigned n = 0;
        int fd;

        argv[n++] = ecusim();
        argv[n++] = "--link";
        argv[n++] = bus;
        argv[n++] = "--vin";
        argv[n++] = VIN;
        argv[n++] = "--model";
        argv[n++] = "ES 250";
        argv[n++] = "--master-key-file";
        argv[n++] = master_file;
        argv[n++] = "--control";
        argv[n++] = ctl_path;
        argv[n++] = "--revocation-file";
        argv[n++] = revocation;
        argv[n++] = "--data1";
        argv[n++] = DATA1;
        for (unsigned i = 0; extra && extra[i]; i++)
                argv[n++] = extra[i];
        argv[n] = NULL;

        child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                fd = open(log_file, O_WRONLY | O_CREAT | O_APPEND, 0644);
                if (fd >= 0)
                        dup2(fd, 2);
                execv(argv[0], (char **) argv);
                _exit(127);
        }

        /* Ready when the control socket answers. */
        for (int i = 0; i < 200; i++) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                ctl_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                strcpy(sa.sun_path, ctl_path);
                if (connect(ctl_fd, (struct sockaddr *) &sa, sizeof(sa)) == 0)
                        break;
                close(ctl_fd);
                ctl_fd = -1;
                usleep(20000);
        }
        assert_true(ctl_fd >= 0);

        IsoTpConfig c;
        Transport *t;
        UdsClientConfig uc;
        char uri[300];
        isotp_config_init(&c);
        c.tx_id = 0x750;
        c.rx_id = 0x758;
        c.extended = true;
        c.tx_ext_address = c.rx_ext_address = 0x57;
        c.tx_padding = true;
        c.padding_byte = 0x55;
        snprintf(uri, sizeof(uri), "%s", bus);
        assert_int_equal(transport_open(event, uri, &c, &t), 0);
        uds_client_config_init(&uc);
        uc.p2 = 500 * USEC_PER_MSEC; /* shared CI machines: generous, still a bound */
        assert_int_equal(uds_link_new(t, &uc, &link_), 0);
        /* let the vbus client connect */
        for (int i = 0; i < 20; i++)
                sd_event_run(event, 10 * 1000);
}

static void stop_sim(void) {
        int status;

        link_ = uds_link_free(link_);
        if (ctl_fd >= 0)
                close(ctl_fd);
        ctl_fd = -1;
        if (child > 0) {
                kill(child, SIGTERM);
                assert_int_equal(waitpid(child, &status, 0), child);
                assert_true(WIFEXITED(status));
                assert_int_equal(WEXITSTATUS(status), 0);
        }
        child = -1;
}

static void on_answer(UdsClient *c, const UdsResponse *r, void *userdata) {
        Answer *a = userdata;
        a->done = true;
        a->error = r->error;
        a->nrc = r->nrc;
        a->suppressed = r->suppressed;
        a->pending = r->pending;
        a->size = r->data ? MIN(r->size, sizeof(a->data)) : 0;
        if (r->data)
                memcpy(a->data, r->data, a->size);
}

static Answer req(const uint8_t *d, size_t n) {
        Answer a = {};
        assert_int_equal(uds_link_request(link_, d, n, on_answer, &a), 0);
        for (int i = 0; !a.done && i < 2000; i++)
                sd_event_run(event, 10 * 1000);
        assert_true(a.done);
        return a;
}
#define REQ(...) req((const uint8_t[]) { __VA_ARGS__ }, sizeof((const uint8_t[]) { __VA_ARGS__ }))

static void expect_nrc(Answer a, uint8_t nrc) {
        if (a.error != 0 || a.nrc != nrc)
                fail_msg("expected NRC 0x%02X, got error %d nrc 0x%02X (size %zu, first 0x%02X)", nrc, a.error, a.nrc,
                         a.size, a.size ? a.data[0] : 0);
}
#define NRC(nrc, ...) expect_nrc(REQ(__VA_ARGS__), nrc)

static Answer ok(Answer a) {
        if (a.error != 0 || a.nrc != 0)
                fail_msg("expected a positive answer, got error %d nrc 0x%02X", a.error, a.nrc);
        return a;
}
#define OK(...) ok(REQ(__VA_ARGS__))

static void pump_for(usec_t usec) {
        usec_t end = now_usec(CLOCK_MONOTONIC) + usec;
        while (now_usec(CLOCK_MONOTONIC) < end)
                sd_event_run(event, 10 * 1000);
}

/* One control command, its JSON answer. */
static json_t *ctl_fd_cmd(int fd, const char *cmd) {
        char buf[65536];
        size_t n = 0;
        json_error_t err;
        json_t *j;

        assert_int_equal(write(fd, cmd, strlen(cmd)), (ssize_t) strlen(cmd));
        assert_int_equal(write(fd, "\n", 1), 1);
        while (n < sizeof(buf) - 1) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t k;
                /* keep the UDS side alive while waiting */
                sd_event_run(event, 0);
                if (poll(&p, 1, 5000) <= 0)
                        fail_msg("no answer to control command '%s'", cmd);
                k = read(fd, buf + n, 1);
                assert_true(k == 1);
                if (buf[n] == '\n')
                        break;
                n++;
        }
        buf[n] = 0;
        j = json_loads(buf, 0, &err);
        if (!j)
                fail_msg("control answer to '%s' is not JSON: %s", cmd, buf);
        return j;
}

static json_t *ctl(const char *cmd) {
        return ctl_fd_cmd(ctl_fd, cmd);
}

static void ctl_ok(const char *cmd) {
        json_t *j = ctl(cmd);
        if (!json_is_true(json_object_get(j, "ok")))
                fail_msg("control command '%s' failed: %s", cmd, json_string_value(json_object_get(j, "error")));
        json_decref(j);
}

static void ctl_fails(const char *cmd) {
        json_t *j = ctl(cmd);
        const char *e = json_string_value(json_object_get(j, "error"));
        if (!json_is_false(json_object_get(j, "ok")) || !e || !strstr(e, "expected"))
                fail_msg("control command '%s' should fail naming the expected form", cmd);
        json_decref(j);
}

static long long state_int(const char *key) {
        json_t *j = ctl("state");
        long long v = json_integer_value(json_object_get(j, key));
        json_decref(j);
        return v;
}

static void extended(void) {
        Answer a = OK(0x10, 0x03);
        assert_int_equal(a.size, 6);
        assert_memory_equal(a.data, ((uint8_t[]) { 0x50, 0x03, 0x00, 0x32, 0x01, 0xF4 }), 6);
}

static void unlock_immobilizer(void) {
        uint8_t r[8] = { 0x27, 0x02 };
        char code[7];
        Answer a = OK(0x27, 0x01);
        assert_int_equal(a.size, 50);
        assert_int_equal(passcode_immobilizer(kvin, a.data + 2, code), 0);
        memcpy(r + 2, code, 6);
        ok(req(r, 8));
}

static void smart_code_for(const Answer *a, uint8_t ret[6]) {
        char d1[13], d2[13], d3[9], code[13];
        hex_encode(a->data + 2 + 17, 6, true, d1);
        hex_encode(a->data + 2 + 23, 6, true, d2);
        hex_encode(a->data + 2 + 29, 4, true, d3);
        assert_memory_equal(a->data + 2, VIN, 17);
        assert_string_equal(d1 + 1, DATA1);
        assert_int_equal(passcode_smart_code(kvin, VIN, d1 + 1, d2, d3, code), 0);
        assert_int_equal(hex_decode(code, ret, 6), 0);
}

static void unlock_smart_code(void) {
        uint8_t r[8] = { 0x27, 0x04 };
        Answer a = OK(0x27, 0x03);
        assert_int_equal(a.size, 2 + 17 + 6 + 6 + 4);
        smart_code_for(&a, r + 2);
        ok(req(r, 8));
}

static int setup(void **state) {
        json_t *v = vectors_load();
        FILE *f;

        assert_non_null(mkdtemp(dir));
        snprintf(bus, sizeof(bus), "vbus:%s/bus.sock", dir);
        snprintf(ctl_path, sizeof(ctl_path), "%s/ctl.sock", dir);
        snprintf(master_file, sizeof(master_file), "%s/master.key", dir);
        snprintf(revocation, sizeof(revocation), "%s/revoked", dir);
        snprintf(state_file, sizeof(state_file), "%s/state.json", dir);
        snprintf(log_file, sizeof(log_file), "%s/ecusim.log", dir);
        f = fopen(master_file, "w");
        assert_non_null(f);
        fprintf(f, "%s\n", vector_string(v, "master_key_hex"));
        fclose(f);
        assert_int_equal(hex_decode(vector_string(v, "master_key_hex"), master, 32), 0);
        assert_int_equal(passcode_vin_key(master, VIN, kvin), 0);
        json_decref(v);
        assert_int_equal(sd_event_new(&event), 0);
        signal(SIGPIPE, SIG_IGN);
        return 0;
}

static int teardown(void **state) {
        char cmd[600];
        if (getenv("ECUSIM_KEEP_LOG")) {
                snprintf(cmd, sizeof(cmd), "cat %s >&2", log_file);
                (void) !system(cmd);
        }
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void) !system(cmd);
        sd_event_unref(event);
        return 0;
}

static int per_test_teardown(void **state) {
        stop_sim();
        unlink(revocation);
        unlink(state_file);
        return 0;
}

/* The test's own passcode helpers against the known answers. */
static void test_vectors(void **state) {
        json_t *v = vectors_load(), *e = json_array_get(vectors_array(v, "immobilizer"), 0);
        uint8_t seed[48], k[32];
        char code[7];
        assert_int_equal(hex_decode(vector_string(e, "seed_hex"), seed, 48), 0);
        assert_int_equal(passcode_vin_key(master, vector_string(e, "vin"), k), 0);
        assert_int_equal(passcode_immobilizer(k, seed, code), 0);
        assert_string_equal(code, vector_string(e, "passcode"));
        json_decref(v);
}

static void test_sessions_dids(void **state) {
        const char *extra[] = { "--keys", KEY1 "," KEY2, "--time-scale", "200", NULL };
        Answer a;

        start_sim(extra);
        a = OK(0x10, 0x01);
        assert_memory_equal(a.data, ((uint8_t[]) { 0x50, 0x01, 0x00, 0x32, 0x01, 0xF4 }), 6);
        NRC(0x12, 0x10, 0x02);
        NRC(0x13, 0x10, 0x01, 0x00);
        NRC(0x13, 0x10);
        NRC(0x11, 0x11, 0x01);
        NRC(0x11, 0x85, 0x02);
        a = OK(0x3E, 0x00);
        assert_int_equal(a.size, 2);
        a = OK(0x3E, 0x80);
        assert_true(a.suppressed);
        NRC(0x12, 0x3E, 0x01);
        NRC(0x13, 0x3E, 0x00, 0x00);

        a = OK(0x22, 0xF1, 0x90);
        assert_int_equal(a.size, 3 + 17);
        assert_memory_equal(a.data + 3, VIN, 17);
        a = OK(0x22, 0xF1, 0x95);
        assert_true(a.size > 3);
        a = OK(0x22, 0xF1, 0x97);
        assert_int_equal(a.size, 3 + 6);
        assert_memory_equal(a.data + 3, "ES 250", 6);
        a = OK(0x22, 0xA0, 0x01);
        assert_memory_equal(a.data + 3, ((uint8_t[]) { 2, 5, 7 }), 3);
        a = OK(0x22, 0xA0, 0x02);
        assert_int_equal(a.size, 5);
        assert_int_equal(a.data[3], 0);
        a = OK(0x22, 0xA0, 0x03);
        assert_int_equal(a.size, 4);
        assert_int_equal(a.data[3], 0);
        ctl_ok("door open");
        ctl_ok("ignition on");
        a = OK(0x22, 0xA0, 0x03);
        assert_int_equal(a.data[3], 0x03);
        a = OK(0x22, 0xA0, 0x04);
        assert_memory_equal(a.data + 3, ((uint8_t[]) { 3, 3, 0, 0 }), 4);
        a = OK(0x22, 0xA0, 0x10);
        assert_int_equal(be16(a.data + 3), 12600);
        ctl_ok("battery 11.75");
        a = OK(0x22, 0xA0, 0x10);
        assert_int_equal(be16(a.data + 3), 11750);
        a = OK(0x22, 0xA0, 0x20);
        assert_int_equal(a.size, 4);
        NRC(0x31, 0x22, 0xF1, 0x91);
        NRC(0x13, 0x22, 0xF1);
        NRC(0x13, 0x22, 0xF1, 0x90, 0xF1, 0x97);

        /* security only in the extended session */
        NRC(0x7F, 0x27, 0x01);
        extended();
        unlock_immobilizer();
        {
                json_t *s = ctl("state");
                assert_true(json_is_true(json_object_get(json_object_get(s, "unlocked"), "immobilizer")));
                json_decref(s);
        }
        /* S3: 5 s without a request, back to default and locked */
        pump_for(5600 * USEC_PER_MSEC);
        {
                json_t *s = ctl("state");
                assert_string_equal(json_string_value(json_object_get(s, "session")), "default");
                assert_true(json_is_false(json_object_get(json_object_get(s, "unlocked"), "immobilizer")));
                json_decref(s);
        }
        NRC(0x7F, 0x27, 0x01);
        /* tester present keeps the session */
        extended();
        for (int i = 0; i < 4; i++) {
                pump_for(1500 * USEC_PER_MSEC);
                a = OK(0x3E, 0x80);
        }
        a = OK(0x27, 0x01);
}

static void test_security(void **state) {
        const char *extra[] = { "--keys", KEY1, "--time-scale", "200", NULL };
        uint8_t bad[8] = { 0x27, 0x02, '0', '0', '0', '0', '0', '0' };
        uint8_t sk[8] = { 0x27, 0x04 };
        Answer a, b;

        start_sim(extra);
        extended();
        NRC(0x24, 0x27, 0x02, '1', '2', '3', '4', '5', '6');
        NRC(0x12, 0x27, 0x05);
        NRC(0x13, 0x27, 0x01, 0x00);
        NRC(0x13, 0x27, 0x02, '1');
        a = OK(0x27, 0x01);
        b = OK(0x27, 0x01);
        assert_memory_not_equal(a.data + 2, b.data + 2, 48);
        /* the first seed was replaced: its passcode is wrong now (unless equal by chance) */
        {
                char code[7], code2[7];
                assert_int_equal(passcode_immobilizer(kvin, a.data + 2, code), 0);
                assert_int_equal(passcode_immobilizer(kvin, b.data + 2, code2), 0);
                memcpy(bad + 2, code, 6);
                if (strcmp(code, code2) != 0)
                        expect_nrc(req(bad, 8), 0x35);
                else
                        ok(req(bad, 8));
        }
        /* one attempt per seed */
        NRC(0x24, 0x27, 0x02, '0', '0', '0', '0', '0', '0');
        assert_int_equal(OK(0x22, 0xA0, 0x04).data[3], 2);
        /* counters survive session changes */
        OK(0x10, 0x01);
        extended();
        OK(0x27, 0x01);
        memcpy(bad + 2, "999999", 6);
        {
                Answer x = req(bad, 8);
                assert_true(x.nrc == 0x35 || x.nrc == 0);
                if (x.nrc == 0)
                        skip();
        }
        a = OK(0x22, 0xA0, 0x04);
        assert_int_equal(a.data[3], 1);
        assert_int_equal(a.data[4], 3);
        OK(0x27, 0x01);
        memcpy(bad + 2, "888888", 6);
        expect_nrc(req(bad, 8), 0x36);
        NRC(0x37, 0x27, 0x01);
        NRC(0x24, 0x27, 0x02, '0', '0', '0', '0', '0', '0');
        a = OK(0x22, 0xA0, 0x04);
        assert_int_equal(a.data[3], 0);
        assert_true(be16(a.data + 5) >= 1 && be16(a.data + 5) <= 3);
        /* the other level is independent */
        unlock_smart_code();
        /* an unlocked level still gets a fresh seed (vehicle-protocol.md §4), not ISO's zeros */
        a = OK(0x27, 0x03);
        assert_int_equal(a.size, 2 + 17 + 6 + 6 + 4);
        assert_memory_equal(a.data + 2, VIN, 17);
        /* the lockout ends (600 s / 200 = 3 s) */
        pump_for(1000 * USEC_PER_MSEC);
        OK(0x3E, 0x00);
        pump_for(1000 * USEC_PER_MSEC);
        OK(0x3E, 0x00);
        pump_for(1200 * USEC_PER_MSEC);
        a = OK(0x22, 0xA0, 0x04);
        assert_int_equal(a.data[3], 3);
        unlock_immobilizer();
        /* wrong smart code */
        OK(0x10, 0x03);
        a = OK(0x27, 0x03);
        smart_code_for(&a, sk + 2);
        sk[7] ^= 1;
        expect_nrc(req(sk, 8), 0x35);
        a = OK(0x22, 0xA0, 0x04);
        assert_int_equal(a.data[4], 2);
}

static void test_reset(void **state) {
        const char *extra[] = { "--keys", KEY1 "," KEY2, "--time-scale", "400", "--window-scale", "10", NULL };
        Answer a;

        start_sim(extra);
        NRC(0x22, 0x31, 0x01, 0xA1, 0x01);
        extended();
        NRC(0x33, 0x31, 0x01, 0xA1, 0x01);
        NRC(0x24, 0x31, 0x03, 0xA1, 0x01);
        NRC(0x13, 0x31, 0x01, 0xA1, 0x01, 0x00);
        NRC(0x31, 0x31, 0x01, 0xA1, 0x09);
        NRC(0x12, 0x31, 0x04, 0xA1, 0x01);
        NRC(0x13, 0x31, 0x01, 0xA1);
        /* smart code first, immobilizer second: wrong order */
        unlock_smart_code();
        NRC(0x33, 0x31, 0x01, 0xA1, 0x01);
        unlock_immobilizer();
        ctl_ok("door open");
        NRC(0x22, 0x31, 0x01, 0xA1, 0x01);
        /* right order, door closed */
        extended();
        unlock_immobilizer();
        unlock_smart_code();
        ctl_ok("door closed");
        NRC(0x22, 0x31, 0x01, 0xA1, 0x01);
        ctl_ok("door open");
        ctl_ok("battery 11.9");
        NRC(0x22, 0x31, 0x01, 0xA1, 0x01);
        ctl_ok("battery 12.0");
        OK(0x31, 0x01, 0xA1, 0x01);
        NRC(0x22, 0x31, 0x01, 0xA1, 0x01);
        NRC(0x22, 0x31, 0x02, 0xA1, 0x01);
        a = OK(0x31, 0x03, 0xA1, 0x01);
        assert_int_equal(a.size, 9);
        assert_int_equal(a.data[4], 1);
        assert_true(be16(a.data + 6) >= 1 && be16(a.data + 6) <= 3);
        a = OK(0x22, 0xA0, 0x02);
        assert_int_equal(a.data[3], 1);
        /* dip below 9 V: fails, erases nothing, unlocks lost */
        ctl_ok("battery 8.5");
        a = OK(0x31, 0x03, 0xA1, 0x01);
        assert_int_equal(a.data[4], 3);
        assert_int_equal(a.data[8], 1);
        assert_int_equal(OK(0x22, 0xA0, 0x01).data[3], 2);
        assert_int_equal(OK(0x22, 0xA0, 0x02).data[3], 5);
        NRC(0x33, 0x31, 0x01, 0xA1, 0x01);
        /* again, to the end: 960 s / 400 = 2.4 s */
        ctl_ok("battery 12.6");
        extended();
        unlock_immobilizer();
        unlock_smart_code();
        OK(0x31, 0x01, 0xA1, 0x01);
        for (int i = 0; i < 6; i++) {
                pump_for(500 * USEC_PER_MSEC);
                a = OK(0x31, 0x03, 0xA1, 0x01);
                if (a.data[4] != 1)
                        break;
        }
        assert_int_equal(a.data[4], 2);
        assert_int_equal(a.data[5], 100);
        assert_int_equal(be16(a.data + 6), 0);
        assert_int_equal(OK(0x22, 0xA0, 0x01).data[3], 0);
        assert_int_equal(OK(0x22, 0xA0, 0x02).data[3], 2);
        assert_int_equal(state_int("registered"), 0);
        {
                json_t *s = ctl("state");
                assert_int_equal(json_array_size(json_object_get(s, "revoked")), 2);
                assert_true(json_is_false(json_object_get(json_object_get(s, "unlocked"), "smart_code")));
                json_decref(s);
        }
        /* A102 mode 2 after the reset; an erased key is refused forever */
        unlock_smart_code();
        NRC(0x22, 0x31, 0x01, 0xA1, 0x02, 0x01);
        OK(0x31, 0x01, 0xA1, 0x02, 0x02);
        ctl_ok("touch " KEY1);
        ctl_ok("touch " KEY3);
        ctl_ok("touch " KEY3);
        a = OK(0x31, 0x03, 0xA1, 0x02);
        assert_int_equal(a.data[4], 2);
        assert_int_equal(a.data[5], 1);
        assert_int_equal(a.data[7], 3);
        assert_memory_equal(a.data + 8, ((uint8_t[]) { 3, 0, 0x11, 0x11, 0x11, 0x11 }), 6);
        assert_memory_equal(a.data + 14, ((uint8_t[]) { 2, 1, 0x33, 0x33, 0x33, 0x33 }), 6);
        assert_memory_equal(a.data + 20, ((uint8_t[]) { 5, 1, 0x33, 0x33, 0x33, 0x33 }), 6);
        a = OK(0x31, 0x03, 0xA1, 0x02);
        assert_int_equal(a.data[7], 0);
        assert_int_equal(OK(0x22, 0xA0, 0x20).data[3], 4);
        OK(0x31, 0x02, 0xA1, 0x02);
        NRC(0x24, 0x31, 0x02, 0xA1, 0x02);
        assert_int_equal(OK(0x31, 0x03, 0xA1, 0x02).data[4], 3);
}

static void test_registration(void **state) {
        const char *extra[] = { "--keys", KEY1, "--max-slots", "2", "--time-scale", "100", "--window-scale", "20",
                                NULL };
        json_t *j;
        int ev;
        Answer a;

        start_sim(extra);
        /* a follower of events on a second connection */
        {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                ev = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                strcpy(sa.sun_path, ctl_path);
                assert_int_equal(connect(ev, (struct sockaddr *) &sa, sizeof(sa)), 0);
                j = ctl_fd_cmd(ev, "events");
                assert_true(json_is_true(json_object_get(j, "ok")));
                json_decref(j);
        }
        extended();
        NRC(0x33, 0x31, 0x01, 0xA1, 0x02, 0x01);
        unlock_smart_code();
        NRC(0x31, 0x31, 0x01, 0xA1, 0x02, 0x03);
        NRC(0x13, 0x31, 0x01, 0xA1, 0x02);
        NRC(0x22, 0x31, 0x01, 0xA1, 0x02, 0x02);
        NRC(0x24, 0x31, 0x03, 0xA1, 0x02);
        ctl_ok("speed 5");
        NRC(0x22, 0x31, 0x01, 0xA1, 0x02, 0x01);
        assert_int_equal(OK(0x22, 0xA0, 0x20).data[3], 7);
        ctl_ok("speed 0");
        OK(0x31, 0x01, 0xA1, 0x02, 0x01);
        assert_int_equal(OK(0x22, 0xA0, 0x02).data[3], 3);
        ctl_ok("touch " KEY2); /* not registered: unknown key */
        ctl_ok("touch " KEY1);
        ctl_ok("touch " KEY2);
        a = OK(0x31, 0x03, 0xA1, 0x02);
        assert_int_equal(a.data[4], 3);
        assert_int_equal(a.data[5], 2);
        assert_int_equal(a.data[6], 0);
        assert_int_equal(a.data[7], 3);
        assert_memory_equal(a.data + 8, ((uint8_t[]) { 8, 0, 0x22, 0x22, 0x22, 0x22 }), 6);
        assert_memory_equal(a.data + 14, ((uint8_t[]) { 1, 1, 0x11, 0x11, 0x11, 0x11 }), 6);
        assert_memory_equal(a.data + 20, ((uint8_t[]) { 2, 2, 0x22, 0x22, 0x22, 0x22 }), 6);
        assert_int_equal(OK(0x22, 0xA0, 0x20).data[3], 1);
        /* the follower saw: event 8, event 1 + 1 beep, event 2 + 2 beeps */
        {
                char buf[4096];
                ssize_t n = 0, k;
                unsigned beeps = 0, events = 0;
                struct pollfd p = { .fd = ev, .events = POLLIN };
                while (poll(&p, 1, 300) > 0 && (k = read(ev, buf + n, sizeof(buf) - 1 - (size_t) n)) > 0)
                        n += k;
                buf[n] = 0;
                for (char *s = buf; (s = strstr(s, "\"beep\"")); s++)
                        beeps++;
                for (char *s = buf; (s = strstr(s, "\"event\",")); s++)
                        events++;
                assert_int_equal(beeps, 3);
                assert_int_equal(events, 3);
        }
        close(ev);
        /* slots full: mode 1 rejects the new key with event 4 */
        OK(0x31, 0x01, 0xA1, 0x02, 0x01);
        ctl_ok("touch " KEY1);
        ctl_ok("touch " KEY3);
        a = OK(0x31, 0x03, 0xA1, 0x02);
        assert_int_equal(a.data[4], 2);
        assert_int_equal(a.data[7], 2);
        assert_memory_equal(a.data + 14, ((uint8_t[]) { 4, 0, 0x33, 0x33, 0x33, 0x33 }), 6);
        assert_int_equal(OK(0x22, 0xA0, 0x20).data[3], 2);
        /* idle timeout: 60 s / 20 = 3 s */
        pump_for(1500 * USEC_PER_MSEC);
        OK(0x3E, 0x80);
        pump_for(2000 * USEC_PER_MSEC);
        a = OK(0x31, 0x03, 0xA1, 0x02);
        assert_int_equal(a.data[4], 3);
        assert_int_equal(a.data[7], 1);
        assert_int_equal(a.data[8], 6);
        assert_int_equal(OK(0x22, 0xA0, 0x20).data[3], 6);
        /* a session drop ends registration */
        OK(0x31, 0x01, 0xA1, 0x02, 0x01);
        OK(0x10, 0x03);
        assert_int_equal(OK(0x31, 0x03, 0xA1, 0x02).data[4], 3);

        /* A103: keep 1 of 2 */
        unlock_smart_code();
        NRC(0x31, 0x31, 0x01, 0xA1, 0x03, 0x00);
        NRC(0x31, 0x31, 0x01, 0xA1, 0x03, 0x03);
        NRC(0x24, 0x31, 0x02, 0xA1, 0x03, 0x01);
        OK(0x31, 0x01, 0xA1, 0x03, 0x01);
        assert_int_equal(OK(0x22, 0xA0, 0x02).data[3], 4);
        NRC(0x22, 0x31, 0x02, 0xA1, 0x03, 0x01); /* nothing touched yet: fewer than keep */
        ctl_ok("touch " KEY2);
        NRC(0x22, 0x31, 0x02, 0xA1, 0x03, 0x00); /* must delete 2 - 1 = 1 */
        NRC(0x22, 0x31, 0x02, 0xA1, 0x03, 0x02);
        a = OK(0x31, 0x03, 0xA1, 0x03);
        assert_int_equal(a.data[4], 1);
        assert_int_equal(a.data[5], 1);
        assert_int_equal(a.data[6], 1);
        assert_true(be16(a.data + 7) > 0 && be16(a.data + 7) <= 1500);
        assert_int_equal(a.data[9], 1);
        assert_memory_equal(a.data + 10, ((uint8_t[]) { 7, 2, 0x22, 0x22, 0x22, 0x22 }), 6);
        OK(0x31, 0x02, 0xA1, 0x03, 0x01);
        assert_int_equal(OK(0x31, 0x03, 0xA1, 0x03).data[4], 2);
        assert_int_equal(state_int("registered"), 1);
        /* key 1 is revoked now: refused on registration */
        OK(0x31, 0x01, 0xA1, 0x02, 0x01);
        ctl_ok("touch " KEY2);
        ctl_ok("touch " KEY1);
        a = OK(0x31, 0x03, 0xA1, 0x02);
        assert_memory_equal(a.data + 14, ((uint8_t[]) { 3, 0, 0x11, 0x11, 0x11, 0x11 }), 6);
        OK(0x31, 0x02, 0xA1, 0x02);
        /* erasure window expiry (30 s / 20 = 1.5 s) */
        ctl_ok("touch " KEY3);
        OK(0x31, 0x01, 0xA1, 0x02, 0x01);
        ctl_ok("touch " KEY2);
        ctl_ok("touch " KEY3);
        assert_int_equal(state_int("registered"), 2);
        OK(0x31, 0x01, 0xA1, 0x03, 0x01);
        ctl_ok("touch " KEY2);
        pump_for(1800 * USEC_PER_MSEC);
        assert_int_equal(OK(0x31, 0x03, 0xA1, 0x03).data[4], 3);
        NRC(0x22, 0x31, 0x02, 0xA1, 0x03, 0x01);
        assert_int_equal(state_int("registered"), 2);
}

static void test_sleep_faults(void **state) {
        const char *extra[] = { "--keys", KEY1, "--sleep-after", "2", NULL };
        Answer a;
        json_t *j;

        start_sim(extra);
        OK(0x3E, 0x00);
        pump_for(2500 * USEC_PER_MSEC);
        j = ctl("state");
        assert_true(json_is_true(json_object_get(j, "asleep")));
        json_decref(j);
        a = REQ(0x3E, 0x00);
        assert_int_equal(a.error, -ETIMEDOUT);
        ctl_ok("ignition on"); /* not a wake event */
        a = REQ(0x3E, 0x00);
        assert_int_equal(a.error, -ETIMEDOUT);
        ctl_ok("courtesy");
        OK(0x3E, 0x00);
        ctl_ok("sleep");
        a = REQ(0x3E, 0x00);
        assert_int_equal(a.error, -ETIMEDOUT);
        ctl_ok("door open");
        OK(0x22, 0xF1, 0x90);

        /* faults */
        ctl_ok("fault pending 3");
        a = OK(0x22, 0xF1, 0x90);
        assert_int_equal(a.pending, 3);
        /* aimed at one request: the others, of the same service too, are answered at once */
        ctl_ok("fault pending 3 22F190");
        a = OK(0x3E, 0x00);
        assert_int_equal(a.pending, 0);
        a = OK(0x22, 0xA0, 0x01);
        assert_int_equal(a.pending, 0);
        a = OK(0x22, 0xF1, 0x90);
        assert_int_equal(a.pending, 3);
        a = OK(0x22, 0xF1, 0x90);
        assert_int_equal(a.pending, 0);
        /* aimed at a request that gets no answer (3E 80): dropped, not carried to the next */
        ctl_ok("fault pending 3 3E80");
        a = REQ(0x3E, 0x80);
        assert_int_equal(a.error, 0); /* suppressPosRspMsgIndication: no answer expected */
        a = OK(0x22, 0xF1, 0x90);
        assert_int_equal(a.pending, 0);
        ctl_ok("fault delay 800 3E");
        OK(0x22, 0xF1, 0x90);
        a = REQ(0x3E, 0x00);
        assert_int_equal(a.error, -ETIMEDOUT);
        pump_for(600 * USEC_PER_MSEC);
        OK(0x3E, 0x00);
        ctl_ok("fault nrc 22 31");
        OK(0x3E, 0x00);
        NRC(0x31, 0x22, 0xF1, 0x90);
        OK(0x22, 0xF1, 0x90);
        ctl_ok("fault delay 800");
        a = REQ(0x22, 0xF1, 0x90);
        assert_int_equal(a.error, -ETIMEDOUT);
        pump_for(600 * USEC_PER_MSEC);
        OK(0x22, 0xF1, 0x90);
        ctl_ok("fault drop 1");
        a = REQ(0x3E, 0x00);
        assert_int_equal(a.error, -ETIMEDOUT);
        OK(0x3E, 0x00);
        ctl_ok("fault truncate");
        a = REQ(0x3E, 0x00);
        assert_int_equal(a.error, -ETIMEDOUT);
        OK(0x3E, 0x00);
        ctl_ok("fault truncate answer");
        a = REQ(0x22, 0xF1, 0x90);
        assert_int_equal(a.error, 0);
        assert_int_equal(a.size, 19);
        ctl_ok("fault fc 2 5 1");
        {
                /* a long request: answered with 0x13, received through BS 2 / STmin 5 / 1 WAIT */
                uint8_t big[40] = { 0x22, 0xF1, 0x90 };
                expect_nrc(req(big, sizeof(big)), 0x13);
        }
        OK(0x22, 0xF1, 0x90);

        /* bad control commands */
        ctl_fails("fly");
        ctl_fails("touch 123");
        ctl_fails("touch 1234567G");
        ctl_fails("door ajar");
        ctl_fails("ignition maybe");
        ctl_fails("speed -1");
        ctl_fails("speed fast");
        ctl_fails("battery 31");
        ctl_fails("battery x");
        ctl_fails("fault");
        ctl_fails("fault pending");
        ctl_fails("fault pending 0");
        ctl_fails("fault pending 3 2");
        ctl_fails("fault pending 3 2G");
        ctl_fails("fault pending 3 0102030405");
        ctl_fails("fault pending 3 22 A0");
        ctl_fails("fault delay 100 x");
        ctl_fails("fault nrc 22");
        ctl_fails("fault nrc 2G 31");
        ctl_fails("fault fc 1 2");
        ctl_fails("fault fc 1 200 0");
        ctl_fails("fault truncate half");
        ctl_fails("");
        {
                char lng[400];
                memset(lng, 'x', sizeof(lng) - 1);
                lng[sizeof(lng) - 1] = 0;
                ctl_fails(lng);
        }
        ctl_ok("state");
}

static void test_command_line(void **state) {
        char out[4096];
        int status;
        struct {
                const char *args[12];
                const char *needle;
        } cases[] = {
                { { "--vin", VIN, "--model", "X", "--master-key-file", "/nonexistent" }, "required" },
                { { "--link", "tcp:1", "--vin", VIN, "--model", "X", "--master-key-file", "/x" }, "--link" },
                { { "--link", "vbus:/tmp/x", "--vin", "58ADZ1B16MU00012O", "--model", "X", "--master-key-file", "/x" },
                  "--vin" },
                { { "--link", "vbus:/tmp/x", "--vin", VIN, "--model", "", "--master-key-file", "/x" }, "--model" },
                { { "--link", "vbus:/tmp/x", "--vin", VIN, "--model", "X", "--master-key-file", "/x", "--keys",
                    "123" },
                  "--keys" },
                { { "--link", "vbus:/tmp/x", "--vin", VIN, "--model", "X", "--master-key-file", "/x", "--max-slots",
                    "8" },
                  "--max-slots" },
                { { "--link", "vbus:/tmp/x", "--vin", VIN, "--model", "X", "--master-key-file", "/x", "--time-scale",
                    "0" },
                  "--time-scale" },
                { { "--link", "vbus:/tmp/x", "--vin", VIN, "--model", "X", "--master-key-file", "/x", "--battery",
                    "40" },
                  "--battery" },
                { { "--link", "vbus:/tmp/x", "--vin", VIN, "--model", "X", "--master-key-file", "/x", "--data1",
                    "12" },
                  "--data1" },
                { { "--link", "vbus:/tmp/x", "--vin", VIN, "--model", "X", "--master-key-file", "/x",
                    "--session-repeat", "maybe" },
                  "--session-repeat" },
                { { "--bogus" }, "unknown option" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *argv[16] = { (char *) ecusim() };
                for (unsigned k = 0; cases[i].args[k]; k++)
                        argv[k + 1] = (char *) cases[i].args[k];
                run_child(argv, &status, out, sizeof(out));
                assert_true(WIFEXITED(status));
                if (WEXITSTATUS(status) != 2 || !strstr(out, cases[i].needle))
                        fail_msg("case %zu: exit %d, output: %s", i, WEXITSTATUS(status), out);
        }
        {
                char *argv[] = { (char *) ecusim(), (char *) "--help", NULL };
                run_child(argv, &status, out, sizeof(out));
                assert_int_equal(WEXITSTATUS(status), 0);
                assert_non_null(strstr(out, "fault truncate"));
                assert_non_null(strstr(out, "--session-repeat"));
        }
}

static void test_state_file(void **state) {
        const char *extra[] = { "--keys", KEY1 "," KEY2, "--state", state_file, "--time-scale", "100", NULL };
        const char *extra2[] = { "--keys", KEY3, "--state", state_file, "--time-scale", "100", NULL };
        uint8_t bad[8] = { 0x27, 0x02, '0', '0', '0', '0', '0', '0' };
        Answer a;

        start_sim(extra);
        extended();
        unlock_smart_code();
        OK(0x31, 0x01, 0xA1, 0x02, 0x01);
        ctl_ok("touch " KEY1);
        ctl_ok("touch " KEY3);
        assert_int_equal(state_int("registered"), 3);
        OK(0x27, 0x01);
        a = req(bad, 8);
        assert_true(a.nrc == 0x35 || a.nrc == 0);
        stop_sim();

        start_sim(extra2);
        assert_int_equal(state_int("registered"), 3);
        a = OK(0x22, 0xA0, 0x04);
        if (a.data[3] != 3)
                assert_int_equal(a.data[3], 2);
        {
                json_t *s = ctl("state");
                assert_string_equal(json_string_value(json_object_get(s, "data1")), DATA1);
                json_decref(s);
        }
}

static bool state_unlocked_smart_code(void) {
        json_t *j = ctl("state");
        bool v = json_is_true(json_object_get(json_object_get(j, "unlocked"), "smart_code"));
        json_decref(j);
        return v;
}

/* Both readings of a 10 03 sent while already in the extended session (vehicle-protocol.md
 * §4): it relocks security either way; with --session-repeat=end (the default) it also ends
 * an open registration mode and erasure window, with keep it leaves them open. 10 01 ends
 * them in both readings. */
static void session_repeat_case(bool keep) {
        const char *extra_end[] = { "--keys", KEY1 "," KEY2, "--time-scale", "100", "--window-scale", "2", NULL };
        const char *extra_keep[] = { "--keys", KEY1 "," KEY2, "--time-scale", "100", "--window-scale", "2",
                                     "--session-repeat", "keep", NULL };
        Answer a;

        start_sim(keep ? extra_keep : extra_end);
        extended();
        OK(0x10, 0x03); /* in the extended session already, nothing open: fine either way */
        unlock_smart_code();

        /* registration mode 1 */
        OK(0x31, 0x01, 0xA1, 0x02, 0x01);
        assert_int_equal(OK(0x22, 0xA0, 0x02).data[3], 3);
        extended();
        assert_false(state_unlocked_smart_code());
        NRC(0x33, 0x31, 0x02, 0xA1, 0x02); /* relocked: the stop needs 04 again */
        a = OK(0x31, 0x03, 0xA1, 0x02);
        assert_int_equal(a.data[4], keep ? 1 : 3);
        assert_int_equal(OK(0x22, 0xA0, 0x02).data[3], keep ? 3 : 0);
        if (keep) {
                /* still registering: the registered key, then a new one */
                ctl_ok("touch " KEY1);
                ctl_ok("touch " KEY3);
                assert_int_equal(state_int("registered"), 3);
                assert_int_equal(OK(0x22, 0xA0, 0x02).data[3], 0); /* mode 1 ended after one key */
                unlock_smart_code();
                OK(0x31, 0x01, 0xA1, 0x02, 0x01);
                OK(0x10, 0x01); /* a drop to the default session ends it in both readings */
                assert_int_equal(OK(0x22, 0xA0, 0x02).data[3], 0);
                extended();
        } else {
                ctl_ok("touch " KEY1);
                ctl_ok("touch " KEY3);
                assert_int_equal(state_int("registered"), 2);
        }

        /* erasure window */
        unlock_smart_code();
        OK(0x31, 0x01, 0xA1, 0x03, 0x01);
        assert_int_equal(OK(0x22, 0xA0, 0x02).data[3], 4);
        extended();
        assert_false(state_unlocked_smart_code());
        a = OK(0x31, 0x03, 0xA1, 0x03);
        assert_int_equal(a.data[4], keep ? 1 : 4);
        assert_int_equal(OK(0x22, 0xA0, 0x02).data[3], keep ? 4 : 0);
        if (keep) {
                ctl_ok("touch " KEY2);
                NRC(0x33, 0x31, 0x02, 0xA1, 0x03, 0x02); /* relocked */
                unlock_smart_code();
                OK(0x31, 0x02, 0xA1, 0x03, 0x02); /* keep KEY2, delete the other two */
                assert_int_equal(state_int("registered"), 1);
                unlock_smart_code();
                OK(0x31, 0x01, 0xA1, 0x03, 0x01);
                OK(0x10, 0x01);
                assert_int_equal(OK(0x22, 0xA0, 0x02).data[3], 0);
                extended();
                assert_int_equal(OK(0x31, 0x03, 0xA1, 0x03).data[4], 4);
        } else {
                unlock_smart_code();
                NRC(0x22, 0x31, 0x02, 0xA1, 0x03, 0x01); /* the window is gone: nothing deleted */
                assert_int_equal(state_int("registered"), 2);
        }
        stop_sim();
        unlink(revocation);
}

static void test_session_repeat(void **state) {
        session_repeat_case(false);
        session_repeat_case(true);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vectors),
                cmocka_unit_test(test_command_line),
                cmocka_unit_test_teardown(test_sessions_dids, per_test_teardown),
                cmocka_unit_test_teardown(test_security, per_test_teardown),
                cmocka_unit_test_teardown(test_reset, per_test_teardown),
                cmocka_unit_test_teardown(test_registration, per_test_teardown),
                cmocka_unit_test_teardown(test_sleep_faults, per_test_teardown),
                cmocka_unit_test_teardown(test_state_file, per_test_teardown),
                cmocka_unit_test_teardown(test_session_repeat, per_test_teardown),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
