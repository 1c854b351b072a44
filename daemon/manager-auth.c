/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <grp.h>
#include <pwd.h>

#include "bus-error.h"
#include "log.h"
#include "manager-internal.h"

/* The configured group's gid: looked up once, and again on each call while the group does
 * not exist (it may be made after immod started). 0 when it does not exist. */
/* NSS lookups (getgrnam_r(), getpwuid_r()) with a buffer that grows while they answer
 * ERANGE; *buf is the caller's to free. */
typedef int (*NssLookup)(const void *key, void *result, char *buf, size_t size, void **found);

static int nss_lookup(NssLookup lookup, const void *key, void *result, char **buf, void **found) {
        size_t size = 4096;
        int r;

        for (;;) {
                free(*buf);
                *buf = malloc(size);
                if (!*buf)
                        return -ENOMEM;
                r = lookup(key, result, *buf, size, found);
                if (r != ERANGE)
                        return -r;
                if (size >= 1024 * 1024)
                        return -ERANGE;
                size *= 2;
        }
}

static int group_by_name(const void *key, void *result, char *buf, size_t size, void **found) {
        return getgrnam_r(key, result, buf, size, (struct group **) found);
}

static int user_by_uid(const void *key, void *result, char *buf, size_t size, void **found) {
        return getpwuid_r(*(const uid_t *) key, result, buf, size, (struct passwd **) found);
}

/* The configured group's gid: looked up once, and again on each call while the group does
 * not exist (it may be made after immod started). 0 when it does not exist. */
static int manager_group_gid(Manager *m, const char *group, gid_t *ret) {
        _cleanup_free_ char *buf = NULL;
        struct group grbuf, *gr = NULL;
        int r;

        if (m->group_resolved) {
                *ret = m->group_gid;
                return 1;
        }
        r = nss_lookup(group_by_name, group, &grbuf, &buf, (void **) &gr);
        if (r < 0)
                return r;
        if (!gr)
                return 0;
        m->group_gid = *ret = gr->gr_gid;
        m->group_resolved = true;
        return 1;
}

static int uid_in_group(Manager *m, uid_t uid, const char *group) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_free_ gid_t *groups = NULL;
        struct passwd pwbuf, *pw = NULL;
        gid_t gid = 0;
        int r, n;

        if (uid == 0)
                return 1;
        r = manager_group_gid(m, group, &gid);
        if (r <= 0)
                return r; /* no such group: only root */
        r = nss_lookup(user_by_uid, &uid, &pwbuf, &buf, (void **) &pw);
        if (r < 0)
                return r;
        if (!pw)
                return 0;
        if (pw->pw_gid == gid)
                return 1;

        n = 64;
        for (;;) {
                int want = n;
                free(groups);
                groups = calloc((size_t) want, sizeof(gid_t));
                if (!groups)
                        return -ENOMEM;
                if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) >= 0)
                        break;
                if (n <= want) {
                        if (want >= 65536)
                                return -E2BIG;
                        n = want * 2;
                }
        }
        for (int i = 0; i < n; i++)
                if (groups[i] == gid)
                        return 1;
        return 0;
}

/* The uid behind a unique bus name never changes and the name is never used again, so it
 * is asked of the bus once per caller (a synchronous round trip) and kept; the group's
 * verdict is kept for AUTH_VERDICT_USEC, so that a change of membership counts soon. */
static AuthCache *auth_cache_find(Manager *m, const char *sender) {
        for (size_t i = 0; i < ELEMENTSOF(m->auth_cache); i++)
                if (streq(m->auth_cache[i].sender, sender))
                        return &m->auth_cache[i];
        return NULL;
}

static int sender_uid(Manager *m, sd_bus_message *msg, AuthCache **ret_entry, uid_t *ret) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const char *sender = sd_bus_message_get_sender(msg);
        AuthCache *e = sender ? auth_cache_find(m, sender) : NULL;
        uid_t uid;
        int r;

        if (e) {
                *ret_entry = e;
                *ret = e->uid;
                return 0;
        }
        r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID, &creds);
        if (r >= 0)
                r = sd_bus_creds_get_euid(creds, &uid);
        if (r < 0)
                return r;
        *ret_entry = NULL;
        if (sender && strlen(sender) < sizeof(e->sender)) {
                e = &m->auth_cache[m->auth_cache_next++ % ELEMENTSOF(m->auth_cache)];
                *e = (AuthCache) { .uid = uid, .verdict_at = USEC_INFINITY };
                strcpy(e->sender, sender);
                *ret_entry = e;
        }
        *ret = uid;
        return 0;
}

/* Methods are for root and the configured group, judged on the sender's credentials as
 * the bus recorded them, never augmented from /proc (which a caller could race). */
int manager_authorize(Manager *m, sd_bus_message *msg, uid_t *ret_uid, sd_bus_error *error) {
        const char *group = m->daemon->config.group ?: CONFIG_DEFAULT_GROUP;
        const char *method = sd_bus_message_get_member(msg);
        usec_t now = now_usec(CLOCK_MONOTONIC);
        AuthCache *e;
        uid_t uid;
        int r;

        r = sender_uid(m, msg, &e, &uid);
        if (r < 0) {
                log_warning_errno(r, "Refused %s() from %s: cannot read the caller's credentials: %m", method,
                                  sd_bus_message_get_sender(msg) ?: "?");
                return sd_bus_error_setf(error, IMMOD_ERROR_NOT_AUTHORIZED,
                                         "The caller's credentials cannot be read.");
        }
        if (e && e->verdict_at != USEC_INFINITY && now < e->verdict_at + AUTH_VERDICT_USEC)
                r = e->in_group;
        else {
                r = uid_in_group(m, uid, group);
                if (e && r >= 0) {
                        e->in_group = r > 0;
                        e->verdict_at = now;
                }
        }
        if (r > 0) {
                if (ret_uid)
                        *ret_uid = uid;
                return 0;
        }
        if (r < 0)
                log_warning_errno(r, "Refused %s() from uid %u: cannot read the user database: %m", method,
                                  (unsigned) uid);
        else
                log_notice("Refused %s() from uid %u: neither root nor in group %s.", method, (unsigned) uid, group);
        return sd_bus_error_setf(error, IMMOD_ERROR_NOT_AUTHORIZED,
                                 "%s() needs root or membership of the group \"%s\".", method, group);
}
