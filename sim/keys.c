/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>

#include "passcode.h"
#include "ecu.h"
#include "hex.h"
#include "fileio.h"
#include "log.h"

#define REVOCATION_LINE_MAX 64

int parse_key_id(const char *s, uint32_t *ret) {
        uint8_t b[4];

        if (!s || strlen(s) != 8 || hex_decode(s, b, sizeof(b)) < 0)
                return -EINVAL;
        *ret = be32(b);
        return 0;
}

unsigned ecu_n_registered(const Ecu *ecu) {
        unsigned n = 0;

        for (unsigned s = 1; s <= ecu->opt.max_slots; s++)
                n += ecu->slot_used[s];
        return n;
}

int ecu_find_key(const Ecu *ecu, uint32_t key) {
        for (unsigned s = 1; s <= ecu->opt.max_slots; s++)
                if (ecu->slot_used[s] && ecu->slot[s] == key)
                        return (int) s;
        return 0;
}

int ecu_add_key(Ecu *ecu, uint32_t key) {
        for (unsigned s = 1; s <= ecu->opt.max_slots; s++)
                if (!ecu->slot_used[s]) {
                        ecu->slot_used[s] = true;
                        ecu->slot[s] = key;
                        ecu->key_generation++;
                        return (int) s;
                }
        return -ENOSPC;
}

/* The shared list: one key id (8 hex digits) per line. Other simulated vehicles append to
 * it at any time, so it is read afresh under a shared lock on every question. */
static int revocation_file_contains(const char *path, uint32_t key, bool *ret) {
        _cleanup_close_ int fd = -1;
        char line[REVOCATION_LINE_MAX];
        size_t n_lines = 0;
        FILE *f;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT) {
                        *ret = false;
                        return 0;
                }
                return -errno;
        }
        if (flock(fd, LOCK_SH) < 0)
                return -errno;
        f = fdopen(TAKE_FD(fd), "r");
        if (!f)
                return -errno;
        *ret = false;
        while (fgets(line, sizeof(line), f) && n_lines++ < ECU_MAX_REVOKED) {
                uint32_t id;

                line[strcspn(line, " \t\r\n")] = 0;
                if (parse_key_id(line, &id) < 0)
                        continue; /* a foreign or damaged line must not hide the others */
                if (id == key) {
                        *ret = true;
                        break;
                }
        }
        fclose(f); /* releases the lock */
        return 0;
}

static int revocation_file_append(const char *path, uint32_t key) {
        char line[16];

        snprintf(line, sizeof(line), "%08X\n", key);
        return append_line_synced(path, line, 0644);
}

bool ecu_key_revoked(Ecu *ecu, uint32_t key) {
        bool found = false;
        int r;

        for (size_t i = 0; i < ecu->n_revoked; i++)
                if (ecu->revoked[i] == key)
                        return true;
        if (!ecu->opt.revocation_file)
                return false;
        r = revocation_file_contains(ecu->opt.revocation_file, key, &found);
        if (r < 0)
                log_warning_errno(r, "Cannot read the revocation list %s: %m", ecu->opt.revocation_file);
        return found;
}

int ecu_remember_revoked(Ecu *ecu, uint32_t key) {
        uint32_t *n;

        for (size_t i = 0; i < ecu->n_revoked; i++)
                if (ecu->revoked[i] == key)
                        return 0;
        if (ecu->n_revoked >= ECU_MAX_REVOKED)
                return -E2BIG;
        n = reallocarray(ecu->revoked, ecu->n_revoked + 1, sizeof(uint32_t));
        if (!n)
                return -ENOMEM;
        ecu->revoked = n;
        ecu->revoked[ecu->n_revoked++] = key;
        return 0;
}

int ecu_erase_slot(Ecu *ecu, unsigned slot) {
        uint32_t key;
        int r;

        if (slot < 1 || slot > ecu->opt.max_slots || !ecu->slot_used[slot])
                return -ENOENT;
        key = ecu->slot[slot];
        ecu->slot_used[slot] = false;
        ecu->slot[slot] = 0;
        ecu->key_generation++;

        r = ecu_remember_revoked(ecu, key);
        if (r < 0)
                log_warning_errno(r, "Cannot remember revoked key %08X: %m", key);
        if (ecu->opt.revocation_file) {
                r = revocation_file_append(ecu->opt.revocation_file, key);
                if (r < 0)
                        log_error_errno(r, "Cannot append key %08X to the revocation list %s: %m", key,
                                        ecu->opt.revocation_file);
        }
        log_info("Key %08X erased from slot %u and revoked", key, slot);
        return 0;
}

/* Data3: the key set's 32-bit state. The generation counter makes it change on every
 * change, even back to a key set seen before, so an old smart-code seed never fits again. */
uint32_t ecu_data3(const Ecu *ecu) {
        uint8_t buf[64], h[32];
        size_t n = 0;

        memcpy(buf, "immo-ecusim/data3:", 18);
        n = 18;
        put_be32(buf + n, ecu->key_generation);
        n += 4;
        for (unsigned s = 1; s <= ECU_MAX_SLOTS; s++) {
                put_be32(buf + n, ecu->slot_used[s] ? ecu->slot[s] : 0);
                n += 4;
        }
        if (sha256(buf, n, h) < 0)
                return ecu->key_generation; /* still changes with the key set */
        return be32(h);
}

void ecu_data1_hex(const Ecu *ecu, char ret[PASSCODE_DATA1_LEN + 1]) {
        snprintf(ret, PASSCODE_DATA1_LEN + 1, "%011llX", (unsigned long long) (ecu->data1 & 0xFFFFFFFFFFFULL));
}

/* Constant per ECU (§5): the first 44 bits of SHA-256 of the VIN, unless --data1 or the
 * state file says otherwise. */
uint64_t ecu_default_data1(const char *vin) {
        uint8_t h[32];
        uint64_t v = 0;

        if (sha256(vin, strlen(vin), h) < 0)
                return 0x123456789ABULL;
        for (unsigned i = 0; i < 6; i++)
                v = v << 8 | h[i];
        return v >> 4;
}
