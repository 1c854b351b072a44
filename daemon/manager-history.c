/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * GetHistory: the audit records, newest first, read on the event loop a slice at a time at
 * idle priority, so that tester present and the procedures never wait for a long history.
 * The records are read from the logs' ends (audit.h), so a short history costs little.
 */
#include <errno.h>
#include <stdlib.h>

#include "audit.h"
#include "bus-error.h"
#include "daemon.h"
#include "log.h"
#include "manager-internal.h"

#define HISTORY_SLICE_USEC (2 * USEC_PER_MSEC) /* of the loop's time per turn, at most */
#define HISTORY_READS_MAX 8U                   /* GetHistory calls being answered at once */

struct HistoryRead {
        Manager *manager;
        sd_bus_message *reply; /* filled as the records are read */
        AuditReader *reader;
        unsigned left, sent;
        sd_event_source *slice;
        usec_t started, busy, longest; /* for the log: wall time, and the loop's time taken */
        unsigned slices;
        HistoryRead *next;
};

static int append_audit_record(sd_bus_message *reply, const AuditRecord *a) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}",
                                  "id", "t", a->id,
                                  "uid", "u", a->uid,
                                  "technician", "s", a->technician ?: "",
                                  "time", "t", (uint64_t) a->time,
                                  "created", "t", (uint64_t) a->created,
                                  "kind", "s", procedure_kind_to_string(a->kind),
                                  "vin", "s", a->vin ?: "",
                                  "profile", "s", a->profile ?: "",
                                  "repair_order", "s", a->repair_order ?: "",
                                  "result", "s", audit_result_to_string(a->result),
                                  "error", "s", a->error ?: "",
                                  "keys_before", "i", (int32_t) a->keys_before,
                                  "keys_after", "i", (int32_t) a->keys_after,
                                  "battery_min", "d", a->battery_min,
                                  "passcode_attempts", "u", (uint32_t) a->passcode_attempts);
        /* the voltage over the procedure: (seconds from its start, lowest, highest) */
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", "battery_trace");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', "a(udd)");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(udd)");
        for (size_t i = 0; r >= 0 && i < a->n_trace; i++)
                r = sd_bus_message_append(reply, "(udd)", a->trace[i].offset_s, a->trace[i].min_v, a->trace[i].max_v);
        for (unsigned i = 0; r >= 0 && i < 3; i++)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static HistoryRead *history_read_free(HistoryRead *h) {
        if (!h)
                return NULL;
        for (HistoryRead **i = &h->manager->history_reads; *i; i = &(*i)->next)
                if (*i == h) {
                        *i = h->next;
                        break;
                }
        sd_event_source_disable_unref(h->slice);
        sd_bus_message_unref(h->reply);
        audit_reader_free(h->reader);
        return mfree(h);
}

void manager_history_reads_free(Manager *m) {
        while (m->history_reads)
                history_read_free(m->history_reads);
}

/* 1 when the reply is complete, 0 when the slice's time is up, <0 on error. */
static int history_read_slice(HistoryRead *h) {
        usec_t until = now_usec(CLOCK_MONOTONIC) + HISTORY_SLICE_USEC;

        for (unsigned n = 0; h->left > 0; n++) {
                AuditRecord rec;
                int r;

                if (n % 16 == 15 && now_usec(CLOCK_MONOTONIC) >= until)
                        return 0;
                r = audit_reader_next(h->reader, &rec);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = append_audit_record(h->reply, &rec);
                audit_record_done(&rec);
                if (r < 0)
                        return r;
                h->left--;
                h->sent++;
        }
        return 1;
}

static int on_history_slice(sd_event_source *s, void *userdata) {
        HistoryRead *h = userdata;
        usec_t t0 = now_usec(CLOCK_MONOTONIC), took;
        int r;

        r = history_read_slice(h);
        took = now_usec(CLOCK_MONOTONIC) - t0;
        h->busy += took;
        h->longest = MAX(h->longest, took);
        h->slices++;
        if (r == 0)
                return 0; /* the next turn of the loop goes on */
        if (r > 0)
                r = sd_bus_message_close_container(h->reply);
        if (r >= 0)
                r = sd_bus_send(NULL, h->reply, NULL);
        if (r < 0)
                log_warning_errno(r, "Cannot answer GetHistory: %m");
        else
                log_debug("GetHistory: %u records in %.1f ms, %u slices taking %.1f ms of the loop, the longest %.1f ms.",
                          h->sent, (double) (now_usec(CLOCK_MONOTONIC) - h->started) / USEC_PER_MSEC, h->slices,
                          (double) h->busy / USEC_PER_MSEC, (double) h->longest / USEC_PER_MSEC);
        history_read_free(h);
        return 0;
}

int method_get_history(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        HistoryRead *h;
        unsigned n = 0;
        uint32_t limit;
        int r;

        r = sd_bus_message_read(msg, "u", &limit);
        if (r < 0)
                return r;
        r = manager_authorize(m, msg, NULL, error);
        if (r < 0)
                return r;
        for (HistoryRead *i = m->history_reads; i; i = i->next)
                n++;
        if (n >= HISTORY_READS_MAX)
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY,
                                         "%u history reads are being answered; try again in a moment.", n);

        h = calloc(1, sizeof(HistoryRead));
        if (!h)
                return -ENOMEM;
        h->manager = m;
        h->started = now_usec(CLOCK_MONOTONIC);
        h->left = limit == 0 || limit > AUDIT_HISTORY_MAX ? AUDIT_HISTORY_MAX : limit;
        h->next = m->history_reads;
        m->history_reads = h;

        r = audit_reader_new(m->daemon->config.state_dir, &h->reader);
        if (r < 0) {
                history_read_free(h);
                return sd_bus_error_setf(error, SD_BUS_ERROR_IO_ERROR, "Cannot read the audit log: %s.", strerror(-r));
        }
        r = sd_bus_message_new_method_return(msg, &h->reply);
        if (r >= 0)
                r = sd_bus_message_open_container(h->reply, 'a', "a{sv}");
        if (r >= 0)
                r = sd_event_add_defer(m->daemon->event, &h->slice, on_history_slice, h);
        if (r >= 0)
                r = sd_event_source_set_priority(h->slice, SD_EVENT_PRIORITY_IDLE);
        if (r >= 0)
                r = sd_event_source_set_enabled(h->slice, SD_EVENT_ON); /* every turn until done */
        if (r < 0) {
                history_read_free(h);
                return r;
        }
        (void) sd_event_source_set_description(h->slice, "get-history");
        return 1; /* answered from the slices */
}
