/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * immo-bench: our ISO-TP (on CAN_RAW) against the kernel's CAN_ISOTP, on demand.
 *
 * A sender and a receiver exchange N messages of each size, one message in flight at a
 * time, under normal and extended addressing and two flow control settings. Each run
 * prints messages/s, bytes/s, the latency of one message (median and p95, from
 * transport_send() to the receiver's callback), the CPU time and the peak RSS; with the
 * four pairings of ours and the kernel's, each case also gets the ratio ours / kernel.
 * Nothing is asserted on time: on shared machines timings are for reading, not pass/fail.
 *
 * Fair by construction: both senders leave the same gap between consecutive frames, set
 * explicitly (0 on top of STmin; the kernel's CAN_ISOTP_FRAME_TXTIME_ZERO), and one row
 * per size has the kernel at its own default gap (50 us), ours set to the same.
 *
 * Every run is a child process of its own, so that its CPU time and peak RSS are its own
 * and a run that fails cannot disturb the next. CPU per message is that process's own
 * (getrusage, exact to the scheduler's clock): both ends of a pairing live in it. The
 * kernel's ISO-TP does part of its work in softirq and timer context, which no process is
 * charged for, so its figure is a lower bound; the machine's time not idle (/proc/stat's
 * idle, which a tickless kernel measures exactly, unlike the busy columns sampled at ticks
 * that under TCG miss much) is shown beside it.
 * Each pairing runs --repeat times, taking turns; the ratios ours / kernel are taken per
 * round and shown as median [min..max].
 */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "link.h"
#include "log.h"
#include "parse-util.h"
#include "transport.h"
#include "vbus.h"

#define SENDER_ID 0x750
#define RECEIVER_ID 0x758
#define EXT_ADDRESS 0x57
#define PADDING_BYTE 0x55
#define WARMUP_MESSAGES 3
#define MESSAGE_TIMEOUT (5 * USEC_PER_SEC)
#define MAX_SIZES 8
#define MAX_COUNT 100000U
#define MAX_SECONDS 60U
#define MAX_REPEATS 9U
/* /proc/stat counts in clock ticks (10 ms): shorter runs get no machine-wide figure */
#define MIN_BUSY_SPAN (200 * USEC_PER_MSEC)
#define URI_MAX 128

typedef struct FlowSetting {
        uint8_t bs, st_min;
        const char *name;
} FlowSetting;

static const FlowSetting flows[] = {
        { 0, 0, "BS0 STmin0" },
        /* a flow control every 8 frames, and a pause between frames the sender must time */
        { 8, 0xf1, "BS8 STmin100us" },
};

typedef enum Addressing {
        ADDRESSING_NORMAL = 1 << 0,
        ADDRESSING_EXTENDED = 1 << 1,
        ADDRESSING_BOTH = ADDRESSING_NORMAL | ADDRESSING_EXTENDED,
} Addressing;

/* The gap a sender leaves between consecutive frames on top of the receiver's STmin. */
typedef enum Gap {
        GAP_ZERO,           /* 0 on both sides, set explicitly */
        GAP_KERNEL_DEFAULT, /* the kernel's socket left at its default; ours set to the same */
} Gap;

/* The kernel's default frame_txtime (CAN_ISOTP_DEFAULT_FRAME_TXTIME) */
#define KERNEL_DEFAULT_GAP_USEC 50

typedef struct Case {
        size_t size;
        bool extended;
        const FlowSetting *flow;
        Gap gap;
} Case;

/* The order of the four standard pairings; the ratios below index them. */
enum {
        OURS_OURS,
        OURS_KERNEL,
        KERNEL_OURS,
        KERNEL_KERNEL,
        N_STANDARD_PAIRINGS,
};

typedef struct Pairing {
        char name[32];
        char sender[URI_MAX], receiver[URI_MAX];
} Pairing;

typedef struct RunResult {
        int error;   /* 0, or the negative errno that ended the run */
        bool opened; /* both ends were opened: an error after that is the run's own */
        unsigned count;
        usec_t wall; /* from the first send to the last reception */
        usec_t p50, p95;
        usec_t cpu;                /* this process's user + system time over the same span */
        usec_t system_busy;        /* all CPUs' time not idle over the same span; USEC_INFINITY: unknown */
        long max_rss_kib;          /* the run's peak resident set */
        unsigned busy_retries;     /* sends refused with -EBUSY and tried again */
        double rate_min, rate_max; /* messages/s of the slowest and fastest repeat */
} RunResult;

/* A ratio ours / kernel over the rounds of one case. */
typedef struct Spread {
        unsigned n; /* rounds where both sides had a figure */
        double median, min, max;
} Spread;

/* The per-round ratios of a case: o->o over k->k in messages/s and in CPU per message. */
typedef struct CaseSpread {
        Spread rate, cpu, machine;
} CaseSpread;

static unsigned arg_count = 50;
static unsigned arg_seconds = 1;
static unsigned arg_repeats = 5;
static size_t arg_sizes[MAX_SIZES] = { 8, 64, 4095 };
static size_t arg_n_sizes = 3;
static Addressing arg_addressing = ADDRESSING_BOTH;
static bool arg_flows[ELEMENTSOF(flows)] = { true, true };
static bool arg_default_gap = true;
static const char *arg_interface;
static const char *arg_sender;
static const char *arg_receiver;

/* --- one run, inside its child process --- */

typedef struct Bench {
        sd_event *event;
        VbusHub *hub;
        Transport *sender, *receiver;
        uint8_t message[ISOTP_MAX_MESSAGE];
        size_t size;
        bool received;
        usec_t received_at;
        int error;
        unsigned busy_retries;
} Bench;

static void bench_done(Bench *b) {
        transport_free(b->sender);
        transport_free(b->receiver);
        vbus_hub_free(b->hub);
        sd_event_unref(b->event);
}

static void on_received(Transport *t, const uint8_t *data, size_t size, void *userdata) {
        Bench *b = userdata;

        b->received_at = now_usec(CLOCK_MONOTONIC);
        b->received = true;
        /* Every byte is checked: a fast wrong message is no result. The sequence number in
         * front also catches a late or repeated one. */
        if (size != b->size || memcmp(data, b->message, size) != 0) {
                log_error("%s: received %zu bytes that differ from the %zu sent", transport_describe(t), size,
                          b->size);
                b->error = -EBADMSG;
        }
}

static void on_sent(Transport *t, int error, void *userdata) {
        Bench *b = userdata;

        if (error == 0 || b->error < 0)
                return;
        b->error = error < 0 ? error : -error;
        log_error_errno(b->error, "%s: sending failed: %m", transport_describe(t));
}

static void on_receive_failed(Transport *t, int error, const char *cause, void *userdata) {
        Bench *b = userdata;

        if (b->error < 0)
                return;
        b->error = error < 0 ? error : -EIO;
        log_error("%s: a message was lost: %s", transport_describe(t), cause);
}

static bool uri_is_kernel(const char *uri) {
        return startswith(uri, "socketcan-isotp:");
}

static void config_for(IsoTpConfig *c, bool sender, bool kernel, const Case *k) {
        isotp_config_init(c);
        c->tx_id = sender ? SENDER_ID : RECEIVER_ID;
        c->rx_id = sender ? RECEIVER_ID : SENDER_ID;
        c->extended = k->extended;
        c->tx_ext_address = c->rx_ext_address = EXT_ADDRESS;
        /* padded frames, as vehicles send them */
        c->tx_padding = true;
        c->padding_byte = PADDING_BYTE;
        /* only the receiver's values go on the wire (in its flow control) */
        c->block_size = k->flow->bs;
        c->st_min = k->flow->st_min;
        /* the kernel's socket leaves its default when unset; ours then gets the same */
        if (k->gap == GAP_ZERO)
                c->frame_gap = 0;
        else if (!kernel)
                c->frame_gap = KERNEL_DEFAULT_GAP_USEC;
}

static int open_receiver(Bench *b, const char *uri, const Case *k) {
        IsoTpConfig c;
        LinkUri u;
        int r;

        config_for(&c, false, uri_is_kernel(uri), k);
        r = link_uri_parse(uri, &u, NULL);
        if (r < 0)
                return r;
        if (u.kind != LINK_VBUS)
                return transport_open(b->event, uri, &c, &b->receiver);

        /* A virtual bus needs a hub: the receiver hosts it, as immo-ecusim does. */
        r = vbus_hub_new(b->event, u.name, &b->hub);
        if (r < 0)
                return log_error_errno(r, "cannot host the virtual bus at %s: %m", u.name);
        return transport_open_on_frames(vbus_hub_local_link(b->hub), &c, &b->receiver);
}

static int open_ends(Bench *b, const Pairing *p, const Case *k) {
        IsoTpConfig c;
        int r;

        r = open_receiver(b, p->receiver, k);
        if (r < 0)
                return r;
        config_for(&c, true, uri_is_kernel(p->sender), k);
        r = transport_open(b->event, p->sender, &c, &b->sender);
        if (r < 0)
                return r;

        transport_set_handlers(b->receiver,
                               &(TransportHandlers) { .received = on_received, .receive_failed = on_receive_failed },
                               b);
        transport_set_handlers(b->sender,
                               &(TransportHandlers) { .sent = on_sent, .receive_failed = on_receive_failed }, b);

        /* A CAN link is up at once; a vbus peer connects in the loop. */
        for (unsigned i = 0; i < 40 && transport_get_link_state(b->sender) != LINK_STATE_UP; i++) {
                r = sd_event_run(b->event, 50 * USEC_PER_MSEC);
                if (r < 0)
                        return r;
        }
        if (transport_get_link_state(b->sender) != LINK_STATE_UP)
                return log_error_errno(ENETDOWN, "%s is not up", p->sender);
        return 0;
}

static void fill_message(Bench *b, size_t size) {
        b->size = size;
        for (size_t i = 0; i < size; i++)
                b->message[i] = (uint8_t) (i * 7 + size);
}

/* Sends one message and runs the loop until the receiver has it; the latency is the time
 * from handing it to the sender to the receiver's callback. */
static int send_one(Bench *b, unsigned seq, usec_t *ret_latency) {
        usec_t start, deadline;
        int r;

        b->message[0] = seq & 0xff;
        if (b->size > 1)
                b->message[1] = (seq >> 8) & 0xff;
        b->received = false;

        start = now_usec(CLOCK_MONOTONIC);
        deadline = start + MESSAGE_TIMEOUT;
        for (;;) {
                r = transport_send(b->sender, b->message, b->size);
                if (r != -EBUSY)
                        break;
                /* The kernel's socket may still finish the previous message (the echo of its
                 * last frame) after the receiver got it; try again shortly. */
                b->busy_retries++;
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        break;
                r = sd_event_run(b->event, 20);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return log_error_errno(r, "%s refused a %zu-byte message: %m", transport_describe(b->sender),
                                       b->size);

        while (!b->received && b->error == 0) {
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        return log_error_errno(ETIMEDOUT, "message %u of %zu bytes did not arrive within %u s",
                                               seq, b->size, (unsigned) (MESSAGE_TIMEOUT / USEC_PER_SEC));
                r = sd_event_run(b->event, 100 * USEC_PER_MSEC);
                if (r < 0)
                        return r;
        }
        if (b->error < 0)
                return b->error;
        *ret_latency = b->received_at - start;
        return 0;
}

static int compare_usec(const void *a, const void *b) {
        usec_t x = *(const usec_t *) a, y = *(const usec_t *) b;
        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static usec_t percentile(const usec_t *sorted, size_t n, unsigned pct) {
        size_t rank = (n * pct + 99) / 100;
        return sorted[rank > 0 ? rank - 1 : 0];
}

static usec_t timeval_usec(const struct timeval *tv) {
        return (usec_t) tv->tv_sec * USEC_PER_SEC + (usec_t) tv->tv_usec;
}

static usec_t rusage_cpu(const struct rusage *ru) {
        return timeval_usec(&ru->ru_utime) + timeval_usec(&ru->ru_stime);
}

/* Idle time of all CPUs (idle, iowait) from /proc/stat. Unlike the busy columns, which
 * are sampled at clock ticks, a tickless kernel measures idle time exactly on entering and
 * leaving idle; shown in ticks of 10 ms, so a run needs MIN_BUSY_SPAN to mean anything. */
static usec_t system_idle_usec(void) {
        unsigned long long user, nice, system, idle, iowait;
        long hz = sysconf(_SC_CLK_TCK);
        FILE *f;
        int n;

        f = fopen("/proc/stat", "re");
        if (!f)
                return USEC_INFINITY;
        n = fscanf(f, "cpu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle, &iowait);
        fclose(f);
        if (n != 5 || hz <= 0)
                return USEC_INFINITY;
        return (idle + iowait) * USEC_PER_SEC / (unsigned long long) hz;
}

/* Room for one more latency; the array doubles as a run goes on past --count. */
static int latency_reserve(usec_t **latency, size_t *allocated, size_t n) {
        usec_t *grown;
        size_t size;

        if (n < *allocated)
                return 0;
        size = MAX(*allocated * 2, (size_t) arg_count);
        grown = realloc(*latency, size * sizeof(usec_t));
        if (!grown)
                return log_oom();
        *latency = grown;
        *allocated = size;
        return 0;
}

static int run_pairing(const Pairing *p, const Case *k, RunResult *res) {
        _cleanup_(bench_done) Bench b = {};
        _cleanup_free_ usec_t *latency = NULL;
        struct rusage before, after;
        usec_t start, end, idle_before, idle_after, unused;
        long n_cpus = sysconf(_SC_NPROCESSORS_ONLN);
        size_t n = 0, allocated = 0;
        int r;

        r = sd_event_new(&b.event);
        if (r < 0)
                return log_error_errno(r, "cannot create the event loop: %m");
        r = open_ends(&b, p, k);
        if (r < 0)
                return r;
        res->opened = true;
        fill_message(&b, k->size);

        /* The first messages pay for page faults and cold caches; they are not counted. */
        for (unsigned i = 0; i < WARMUP_MESSAGES; i++) {
                r = send_one(&b, i, &unused);
                if (r < 0)
                        return r;
        }

        /* At least --count messages, and on until --seconds have passed: the machine's busy
         * time comes in clock ticks and needs a long enough run to mean anything. */
        b.busy_retries = 0;
        idle_before = system_idle_usec();
        (void) getrusage(RUSAGE_SELF, &before);
        start = now_usec(CLOCK_MONOTONIC);
        end = start + arg_seconds * USEC_PER_SEC;
        while (n < MAX_COUNT && (n < arg_count || now_usec(CLOCK_MONOTONIC) < end)) {
                r = latency_reserve(&latency, &allocated, n);
                if (r < 0)
                        return r;
                r = send_one(&b, WARMUP_MESSAGES + n, &latency[n]);
                if (r < 0)
                        return r;
                n++;
        }
        res->wall = now_usec(CLOCK_MONOTONIC) - start;
        (void) getrusage(RUSAGE_SELF, &after);
        idle_after = system_idle_usec();

        qsort(latency, n, sizeof(usec_t), compare_usec);
        res->count = n;
        res->p50 = percentile(latency, n, 50);
        res->p95 = percentile(latency, n, 95);
        res->cpu = rusage_cpu(&after) - rusage_cpu(&before);
        res->system_busy = USEC_INFINITY;
        if (idle_before != USEC_INFINITY && idle_after != USEC_INFINITY && res->wall >= MIN_BUSY_SPAN &&
            n_cpus > 0) {
                usec_t idle = idle_after - idle_before, all = res->wall * (usec_t) n_cpus;
                res->system_busy = all > idle ? all - idle : 0;
        }
        res->busy_retries = b.busy_retries;
        return 0;
}

/* Runs one pairing on one case in a child process and collects its result over a pipe. */
static int run_isolated(const Pairing *p, const Case *k, RunResult *ret) {
        _cleanup_close_ int rfd = -1;
        RunResult res = {};
        struct rusage ru;
        int fds[2], status;
        ssize_t n;
        pid_t pid;

        if (pipe2(fds, O_CLOEXEC) < 0)
                return log_error_errno(errno, "cannot create a pipe: %m");
        /* nothing buffered may be printed twice */
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0) {
                close(fds[0]);
                close(fds[1]);
                return log_error_errno(errno, "cannot fork: %m");
        }
        if (pid == 0) {
                close(fds[0]);
                res.error = run_pairing(p, k, &res);
                if (res.error > 0)
                        res.error = 0;
                if (write(fds[1], &res, sizeof(res)) != (ssize_t) sizeof(res))
                        _exit(EXIT_FAILURE);
                _exit(res.error < 0 ? EXIT_FAILURE : EXIT_SUCCESS);
        }

        close(fds[1]);
        rfd = fds[0];
        do
                n = read(rfd, &res, sizeof(res));
        while (n < 0 && errno == EINTR);
        while (wait4(pid, &status, 0, &ru) < 0)
                if (errno != EINTR)
                        return log_error_errno(errno, "cannot wait for the run: %m");
        if (n != (ssize_t) sizeof(res)) {
                if (WIFSIGNALED(status))
                        log_error("the run was killed by signal %d", WTERMSIG(status));
                else
                        log_error("the run ended without a result");
                res = (RunResult) { .error = -EPROTO, .opened = true };
        }
        /* Taken at the child's exit, where the kernel's RSS counters are exact; the pages
         * inherited from this process count only where the run touched them. */
        res.max_rss_kib = ru.ru_maxrss;
        *ret = res;
        return 0;
}

/* --- figures --- */

static double messages_per_s(const RunResult *r) {
        return r->wall > 0 ? r->count * (double) USEC_PER_SEC / r->wall : 0;
}

static double cpu_per_message(const RunResult *r) {
        return r->count > 0 ? (double) r->cpu / r->count : 0;
}

/* 0 when unknown (a run too short for /proc/stat) */
static double machine_per_message(const RunResult *r) {
        return r->count > 0 && r->system_busy != USEC_INFINITY ? (double) r->system_busy / r->count : 0;
}

static int compare_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

/* Median, min and max of n values (sorted in place); n = 0 leaves the spread empty. */
static Spread spread_of(double *v, unsigned n) {
        if (n == 0)
                return (Spread) {};
        qsort(v, n, sizeof(double), compare_double);
        return (Spread) {
                .n = n,
                .median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2,
                .min = v[0],
                .max = v[n - 1],
        };
}

/* Ours over the kernel's, round by round: both ran within the same round, so a burst of
 * load on the machine hits both alike. */
static void case_spread(const RunResult *oo, const RunResult *kk, CaseSpread *ret) {
        double rate[MAX_REPEATS], cpu[MAX_REPEATS], machine[MAX_REPEATS];
        unsigned n_rate = 0, n_cpu = 0, n_machine = 0;

        for (unsigned t = 0; t < arg_repeats; t++) {
                if (oo[t].error < 0 || kk[t].error < 0)
                        continue;
                if (messages_per_s(&oo[t]) > 0 && messages_per_s(&kk[t]) > 0)
                        rate[n_rate++] = messages_per_s(&oo[t]) / messages_per_s(&kk[t]);
                if (cpu_per_message(&oo[t]) > 0 && cpu_per_message(&kk[t]) > 0)
                        cpu[n_cpu++] = cpu_per_message(&oo[t]) / cpu_per_message(&kk[t]);
                if (machine_per_message(&oo[t]) > 0 && machine_per_message(&kk[t]) > 0)
                        machine[n_machine++] = machine_per_message(&oo[t]) / machine_per_message(&kk[t]);
        }
        ret->rate = spread_of(rate, n_rate);
        ret->cpu = spread_of(cpu, n_cpu);
        ret->machine = spread_of(machine, n_machine);
}

static int compare_rate(const void *a, const void *b) {
        double x = messages_per_s(a), y = messages_per_s(b);
        return x < y ? -1 : x > y;
}

/* The pairings of one case, each --repeat times, taking turns so that a burst of load on
 * a shared machine hits all of them alike; each pairing keeps its median run by messages/s.
 * A run that lost a message fails the pairing: that is a fault, not a slow result. */
static int measure_case(const Pairing *pairings, size_t n_pairings, const Case *k, RunResult *ret,
                        CaseSpread *ret_spread) {
        RunResult tries[N_STANDARD_PAIRINGS][MAX_REPEATS] = {};
        int r;

        for (unsigned t = 0; t < arg_repeats; t++)
                for (size_t j = 0; j < n_pairings; j++) {
                        r = run_isolated(&pairings[j], k, &tries[j][t]);
                        if (r < 0)
                                return r;
                        /* no point in going on without the links (no SocketCAN, no vcan0) */
                        if (!tries[j][t].opened)
                                return log_error_errno(tries[j][t].error, "cannot open %s -> %s: %m",
                                                       pairings[j].sender, pairings[j].receiver);
                }

        *ret_spread = (CaseSpread) {};
        if (n_pairings == N_STANDARD_PAIRINGS)
                case_spread(tries[OURS_OURS], tries[KERNEL_KERNEL], ret_spread);

        for (size_t j = 0; j < n_pairings; j++) {
                RunResult *runs = tries[j];

                ret[j] = runs[0];
                for (unsigned t = 0; t < arg_repeats; t++)
                        if (runs[t].error < 0) {
                                ret[j] = runs[t];
                                break;
                        }
                if (ret[j].error < 0)
                        continue;
                qsort(runs, arg_repeats, sizeof(RunResult), compare_rate);
                ret[j] = runs[arg_repeats / 2];
                ret[j].rate_min = messages_per_s(&runs[0]);
                ret[j].rate_max = messages_per_s(&runs[arg_repeats - 1]);
        }
        return 0;
}

static void case_describe(const Case *k, char *buf, size_t n) {
        snprintf(buf, n, "%4zu B %-8s %-14s %s", k->size, k->extended ? "ext 0x57" : "normal", k->flow->name,
                 k->gap == GAP_ZERO ? "gap 0" : "gap kernel default (50us)");
}

static void print_run(const Pairing *p, const Case *k, const RunResult *r) {
        char what[80], busy[48];

        case_describe(k, what, sizeof(what));
        if (r->error < 0) {
                printf("%-14s %s  FAILED: %s\n", p->name, what, strerror(-r->error));
                return;
        }
        if (r->system_busy != USEC_INFINITY && r->wall > 0)
                snprintf(busy, sizeof(busy), "%7.1f us (%3.0f%% busy)", machine_per_message(r),
                         100.0 * r->system_busy / r->wall);
        else
                snprintf(busy, sizeof(busy), "- (run too short)");
        printf("%-14s %s  n=%-6u %8.1f msg/s %7.1f kB/s  p50 %6.0f us  p95 %6.0f us  cpu/msg: process %7.1f us, "
               "machine %s  rss %ld KiB",
               p->name, what, r->count, messages_per_s(r), messages_per_s(r) * k->size / 1000.0, (double) r->p50,
               (double) r->p95, cpu_per_message(r), busy, r->max_rss_kib);
        if (arg_repeats > 1)
                printf("  [msg/s %.1f..%.1f over %u]", r->rate_min, r->rate_max, arg_repeats);
        if (r->busy_retries > 0)
                printf("  (%u sends retried)", r->busy_retries);
        printf("\n");
}

static double ok_value(const RunResult *r, double v) {
        return r->error < 0 ? 0 : v;
}

/* "-" where one side has no figure; a ratio of the two medians otherwise. */
static void format_ratio(char *buf, size_t n, double ours, double kernel) {
        if (ours <= 0 || kernel <= 0)
                snprintf(buf, n, "-");
        else
                snprintf(buf, n, "%.2f", ours / kernel);
}

static void format_spread(char *buf, size_t n, const Spread *s) {
        if (s->n == 0)
                snprintf(buf, n, "-");
        else
                snprintf(buf, n, "%.2f [%.2f..%.2f]", s->median, s->min, s->max);
}

static void format_rate(char *buf, size_t n, const RunResult *r) {
        if (r->error < 0)
                snprintf(buf, n, "FAIL");
        else
                snprintf(buf, n, "%.0f", messages_per_s(r));
}

static void format_usec(char *buf, size_t n, const RunResult *r, double usec) {
        if (r->error < 0 || usec <= 0)
                snprintf(buf, n, "-");
        else if (usec >= 10000)
                snprintf(buf, n, "%.1fms", usec / 1000);
        else
                snprintf(buf, n, "%.0fus", usec);
}

static void print_case_ratios(const RunResult *runs, const CaseSpread *q) {
        char rate[48], cpu[48], machine[48];

        format_spread(rate, sizeof(rate), &q->rate);
        format_spread(cpu, sizeof(cpu), &q->cpu);
        format_spread(machine, sizeof(machine), &q->machine);
        printf("  ours/kernel (o->o over k->k, per round: median [min..max]): msg/s %s, cpu/msg: process %s, "
               "machine %s\n",
               rate, cpu, machine);
}

/* A Markdown table, to be pasted as it is. */
static void print_ratio_table(const Case *cases, size_t n_cases, const RunResult (*runs)[N_STANDARD_PAIRINGS],
                              const CaseSpread *spreads) {
        printf("\nSummary. Pairings sender->receiver: o = ours on CAN_RAW, k = the kernel's CAN_ISOTP. msg/s and\n"
               "cpu/msg (the process's own CPU time per message) are medians over %u rounds; ours/kernel is\n"
               "o->o over k->k per round, median [min..max]: msg/s above 1 = ours faster, cpu/msg below 1 =\n"
               "ours cheaper. machine = all CPUs' time not idle per message (/proc/stat idle, which a\n"
               "tickless kernel measures exactly): it also holds the kernel's ISO-TP work in softirq and\n"
               "timer context, which no process is charged for; read it on an otherwise idle machine.\n"
               "snd = o->k over k->k (our sender), rcv = k->o over k->k (our receiver).\n\n",
               arg_repeats);
        printf("| case | msg/s o->o | msg/s k->k | ours/kernel msg/s | snd | rcv | cpu/msg o->o | cpu/msg k->k | "
               "ours/kernel cpu/msg | ours/kernel machine/msg | p50 o->o | p50 k->k |\n");
        printf("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for (size_t i = 0; i < n_cases; i++) {
                const RunResult *r = runs[i], *oo = &r[OURS_OURS], *ok = &r[OURS_KERNEL], *ko = &r[KERNEL_OURS],
                                *kk = &r[KERNEL_KERNEL];
                char what[80], rate[2][16], snd[16], rcv[16], p50[2][16], cpu[2][16], q_rate[48], q_cpu[48],
                        q_machine[48];

                case_describe(&cases[i], what, sizeof(what));
                format_rate(rate[0], sizeof(rate[0]), oo);
                format_rate(rate[1], sizeof(rate[1]), kk);
                format_ratio(snd, sizeof(snd), ok_value(ok, messages_per_s(ok)), ok_value(kk, messages_per_s(kk)));
                format_ratio(rcv, sizeof(rcv), ok_value(ko, messages_per_s(ko)), ok_value(kk, messages_per_s(kk)));
                format_usec(p50[0], sizeof(p50[0]), oo, oo->p50);
                format_usec(p50[1], sizeof(p50[1]), kk, kk->p50);
                format_usec(cpu[0], sizeof(cpu[0]), oo, cpu_per_message(oo));
                format_usec(cpu[1], sizeof(cpu[1]), kk, cpu_per_message(kk));
                format_spread(q_rate, sizeof(q_rate), &spreads[i].rate);
                format_spread(q_cpu, sizeof(q_cpu), &spreads[i].cpu);
                format_spread(q_machine, sizeof(q_machine), &spreads[i].machine);
                printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", what, rate[0], rate[1], q_rate,
                       snd, rcv, cpu[0], cpu[1], q_cpu, q_machine, p50[0], p50[1]);
        }
}

static void print_single_table(const Pairing *p, const Case *cases, size_t n_cases,
                               const RunResult (*runs)[N_STANDARD_PAIRINGS]) {
        printf("\n%s: %s -> %s\n", p->name, p->sender, p->receiver);
        for (size_t i = 0; i < n_cases; i++)
                print_run(p, &cases[i], &runs[i][0]);
}

/* --- command line --- */

static int parse_sizes(const char *s) {
        char *copy = strdupa(s), *tok;

        arg_n_sizes = 0;
        while ((tok = strsep(&copy, ","))) {
                unsigned long v;

                if (arg_n_sizes >= MAX_SIZES || parse_uint_range(tok, 1, ISOTP_MAX_MESSAGE, &v) < 0)
                        return log_error_errno(EINVAL, "--sizes takes up to %d sizes of 1..%u bytes, e.g. 8,4095",
                                               MAX_SIZES, ISOTP_MAX_MESSAGE);
                arg_sizes[arg_n_sizes++] = v;
        }
        return 0;
}

static int check_uri(const char *option, const char *uri) {
        const char *reason;
        LinkUri u;

        if (link_uri_parse(uri, &u, &reason) < 0)
                return log_error_errno(EINVAL, "%s: %s", option, reason);
        if (strlen(uri) >= URI_MAX)
                return log_error_errno(EINVAL, "%s: the link URI is too long", option);
        return 0;
}

static void help(void) {
        printf("immo-bench [OPTIONS]\n\n"
               "Compares our ISO-TP (CAN_RAW) with the kernel's (CAN_ISOTP): a sender and a receiver\n"
               "exchange messages one at a time and each run prints messages/s, bytes/s, latency\n"
               "(median, p95), CPU time and peak RSS. Cases: each size, normal and extended (0x57)\n"
               "addressing, receivers advertising BS 0 STmin 0 and BS 8 STmin 100 us.\n\n"
               "  --interface IF      the four pairings ours/kernel -> ours/kernel on IF, with the\n"
               "                      ratio ours / kernel per case (default: vcan0)\n"
               "  --sender URI        one pairing only: the sender's link ...\n"
               "  --receiver URI      ... and the receiver's (vbus:PATH: the receiver hosts the hub)\n"
               "  --count N           timed messages per run at least, 1..%u (default: 50)\n"
               "  --seconds S         and on until S seconds have passed, 0..%u (default: 1)\n"
               "  --repeat R          rounds per case, the median kept, 1..%u (default: 5)\n"
               "  --sizes N,N,...     up to %d message sizes of 1..%u bytes (default: 8,64,4095)\n"
               "  --addressing WHICH  normal, extended or both (default: both)\n"
               "  --flow WHICH        bs0 (BS 0 STmin 0), bs8 (BS 8 STmin 100 us) or both (default)\n"
               "  --no-default-gap    without the rows at the kernel's default gap\n"
               "  -v, --verbose       debug logging\n"
               "  -h, --help          this text\n\n"
               "Links: socketcan:IF (our ISO-TP on CAN_RAW), socketcan-isotp:IF (the kernel's),\n"
               "vbus:/PATH (our ISO-TP on the local virtual bus).\n"
               "Exit status: 0 when every run completed, 1 when one failed, 2 for bad usage.\n"
               "Gap: both senders leave 0 between consecutive frames on top of STmin (the kernel's\n"
               "CAN_ISOTP_FRAME_TXTIME_ZERO); rows marked \"gap kernel default\" leave the kernel's\n"
               "socket at its default (50 us) and give ours the same.\n"
               "CPU per message: the run's own process (getrusage); the kernel's ISO-TP work in softirq\n"
               "and timer context is charged to no process, so the machine's time not idle per\n"
               "message (/proc/stat) is shown too. Ratios: per round, median [min..max].\n"
               "No figure is checked against a limit: this is a benchmark, not a test.\n",
               MAX_COUNT, MAX_SECONDS, MAX_REPEATS, MAX_SIZES, ISOTP_MAX_MESSAGE);
}

static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_INTERFACE = 0x100,
                ARG_SENDER,
                ARG_RECEIVER,
                ARG_COUNT,
                ARG_SECONDS,
                ARG_REPEAT,
                ARG_SIZES,
                ARG_ADDRESSING,
                ARG_FLOW,
                ARG_NO_DEFAULT_GAP,
        };
        static const struct option options[] = {
                { "interface", required_argument, NULL, ARG_INTERFACE },
                { "sender", required_argument, NULL, ARG_SENDER },
                { "receiver", required_argument, NULL, ARG_RECEIVER },
                { "count", required_argument, NULL, ARG_COUNT },
                { "seconds", required_argument, NULL, ARG_SECONDS },
                { "repeat", required_argument, NULL, ARG_REPEAT },
                { "sizes", required_argument, NULL, ARG_SIZES },
                { "addressing", required_argument, NULL, ARG_ADDRESSING },
                { "flow", required_argument, NULL, ARG_FLOW },
                { "no-default-gap", no_argument, NULL, ARG_NO_DEFAULT_GAP },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "vh", options, NULL)) >= 0)
                switch (c) {
                case ARG_INTERFACE:
                        if (!*optarg || strlen(optarg) >= IFNAMSIZ || strchr(optarg, '/'))
                                return log_error_errno(EINVAL, "--interface takes a network interface name");
                        arg_interface = optarg;
                        break;
                case ARG_SENDER:
                        if (check_uri("--sender", optarg) < 0)
                                return -EINVAL;
                        arg_sender = optarg;
                        break;
                case ARG_RECEIVER:
                        if (check_uri("--receiver", optarg) < 0)
                                return -EINVAL;
                        arg_receiver = optarg;
                        break;
                case ARG_COUNT:
                        if (parse_unsigned_range(optarg, 1, MAX_COUNT, &arg_count) < 0)
                                return log_error_errno(EINVAL, "--count takes 1..%u, got '%s'", MAX_COUNT, optarg);
                        break;
                case ARG_SECONDS:
                        if (parse_unsigned_range(optarg, 0, MAX_SECONDS, &arg_seconds) < 0)
                                return log_error_errno(EINVAL, "--seconds takes 0..%u, got '%s'", MAX_SECONDS,
                                                       optarg);
                        break;
                case ARG_REPEAT:
                        if (parse_unsigned_range(optarg, 1, MAX_REPEATS, &arg_repeats) < 0)
                                return log_error_errno(EINVAL, "--repeat takes 1..%u, got '%s'", MAX_REPEATS,
                                                       optarg);
                        break;
                case ARG_SIZES:
                        if (parse_sizes(optarg) < 0)
                                return -EINVAL;
                        break;
                case ARG_ADDRESSING:
                        if (streq(optarg, "normal"))
                                arg_addressing = ADDRESSING_NORMAL;
                        else if (streq(optarg, "extended"))
                                arg_addressing = ADDRESSING_EXTENDED;
                        else if (streq(optarg, "both"))
                                arg_addressing = ADDRESSING_BOTH;
                        else
                                return log_error_errno(EINVAL, "--addressing takes normal, extended or both");
                        break;
                case ARG_FLOW:
                        if (streq(optarg, "bs0"))
                                arg_flows[1] = !(arg_flows[0] = true);
                        else if (streq(optarg, "bs8"))
                                arg_flows[0] = !(arg_flows[1] = true);
                        else if (streq(optarg, "both"))
                                arg_flows[0] = arg_flows[1] = true;
                        else
                                return log_error_errno(EINVAL, "--flow takes bs0, bs8 or both");
                        break;
                case ARG_NO_DEFAULT_GAP:
                        arg_default_gap = false;
                        break;
                case 'v':
                        log_set_max_level(LOG_DEBUG);
                        break;
                case 'h':
                        help();
                        exit(EXIT_SUCCESS);
                default:
                        return -EINVAL;
                }
        if (optind < argc)
                return log_error_errno(EINVAL, "unexpected argument '%s'; see --help", argv[optind]);
        if (!arg_sender != !arg_receiver)
                return log_error_errno(EINVAL, "--sender and --receiver go together");
        if (arg_sender && arg_interface)
                return log_error_errno(EINVAL, "--interface runs its own pairings; not with --sender/--receiver");
        return 0;
}

static size_t make_pairings(Pairing *p) {
        static const struct {
                const char *name, *sender, *receiver;
        } standard[N_STANDARD_PAIRINGS] = {
                [OURS_OURS] = { "ours->ours", "socketcan", "socketcan" },
                [OURS_KERNEL] = { "ours->kernel", "socketcan", "socketcan-isotp" },
                [KERNEL_OURS] = { "kernel->ours", "socketcan-isotp", "socketcan" },
                [KERNEL_KERNEL] = { "kernel->kernel", "socketcan-isotp", "socketcan-isotp" },
        };
        const char *ifname = arg_interface ?: "vcan0";

        if (arg_sender) {
                snprintf(p[0].name, sizeof(p[0].name), "custom");
                snprintf(p[0].sender, sizeof(p[0].sender), "%s", arg_sender);
                snprintf(p[0].receiver, sizeof(p[0].receiver), "%s", arg_receiver);
                return 1;
        }
        for (size_t i = 0; i < N_STANDARD_PAIRINGS; i++) {
                snprintf(p[i].name, sizeof(p[i].name), "%s", standard[i].name);
                snprintf(p[i].sender, sizeof(p[i].sender), "%s:%s", standard[i].sender, ifname);
                snprintf(p[i].receiver, sizeof(p[i].receiver), "%s:%s", standard[i].receiver, ifname);
        }
        return N_STANDARD_PAIRINGS;
}

static size_t make_cases(Case *cases) {
        size_t n = 0;

        for (size_t f = 0; f < ELEMENTSOF(flows); f++)
                for (int ext = 0; ext <= 1; ext++) {
                        if (!arg_flows[f])
                                continue;
                        if (!(arg_addressing & (ext ? ADDRESSING_EXTENDED : ADDRESSING_NORMAL)))
                                continue;
                        for (size_t s = 0; s < arg_n_sizes; s++)
                                cases[n++] = (Case) { .size = arg_sizes[s], .extended = ext, .flow = &flows[f] };
                }
        /* and the kernel's default gap, with the first flow setting and addressing */
        for (size_t s = 0; arg_default_gap && s < arg_n_sizes; s++)
                cases[n++] = (Case) {
                        .size = arg_sizes[s],
                        .extended = !(arg_addressing & ADDRESSING_NORMAL),
                        .flow = &flows[0],
                        .gap = GAP_KERNEL_DEFAULT,
                };
        return n;
}

int main(int argc, char *argv[]) {
        Case cases[(ELEMENTSOF(flows) * 2 + 1) * MAX_SIZES];
        RunResult runs[ELEMENTSOF(cases)][N_STANDARD_PAIRINGS] = {};
        CaseSpread spreads[ELEMENTSOF(cases)] = {};
        Pairing pairings[N_STANDARD_PAIRINGS] = {};
        size_t n_cases, n_pairings;
        unsigned failed = 0;

        log_set_ident("immo-bench");
        if (parse_argv(argc, argv) < 0)
                return 2;
        n_pairings = make_pairings(pairings);
        n_cases = make_cases(cases);

        printf("immo-bench: per run at least %u timed messages and %u s, after %u untimed; one message in flight;\n"
               "the median of %u rounds; ids 0x%X -> 0x%X, frames padded with 0x%02X\n",
               arg_count, arg_seconds, WARMUP_MESSAGES, arg_repeats, SENDER_ID, RECEIVER_ID, PADDING_BYTE);
        for (size_t j = 0; j < n_pairings; j++)
                printf("  %-14s %s -> %s\n", pairings[j].name, pairings[j].sender, pairings[j].receiver);
        printf("\n");

        for (size_t i = 0; i < n_cases; i++) {
                if (measure_case(pairings, n_pairings, &cases[i], runs[i], &spreads[i]) < 0)
                        return 1;
                for (size_t j = 0; j < n_pairings; j++) {
                        if (runs[i][j].error < 0)
                                failed++;
                        print_run(&pairings[j], &cases[i], &runs[i][j]);
                }
                if (n_pairings == N_STANDARD_PAIRINGS)
                        print_case_ratios(runs[i], &spreads[i]);
                fflush(stdout);
        }

        if (n_pairings == N_STANDARD_PAIRINGS)
                print_ratio_table(cases, n_cases, runs, spreads);
        else
                print_single_table(&pairings[0], cases, n_cases, runs);

        if (failed > 0) {
                log_error("%u run(s) failed", failed);
                return 1;
        }
        return 0;
}
