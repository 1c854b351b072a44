/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The pipe between immod and its HTTPS helper immod-fetch: one request on the helper's
 * stdin, one answer on its stdout, then the helper exits. Both ends run on the same
 * machine, so every number is a uint32_t (error an int32_t) in host byte order.
 *
 *   request:  magic FETCH_REQUEST_MAGIC, timeout_s (1..FETCH_TIMEOUT_S_MAX), flags
 *             (FETCH_FLAG_*), then the FETCH_FIELD_* strings in their order, each a
 *             length and that many bytes (no NUL; length 0: absent), then end of file
 *   answer:   magic FETCH_ANSWER_MAGIC, error (0: an HTTP answer came, else a negative
 *             errno of fetch-glue.h), status (the HTTP status, 100..599, when error is 0,
 *             else 0), body length (at most FETCH_BODY_MAX), then the body
 *
 * Secrets (the bearer token, a body with a password or a passcode, the client key's path)
 * travel only here, never in argv or the environment; each side wipes them after use.
 * Every size is checked against the limits below before anything is allocated.
 */

#include <stdint.h>

#include "util.h"

#define FETCH_REQUEST_MAGIC UINT32_C(0x51464d49) /* "IMFQ" on little-endian machines */
#define FETCH_ANSWER_MAGIC UINT32_C(0x41464d49)  /* "IMFA" */

#define FETCH_BODY_MAX (256U * 1024U)
#define FETCH_TIMEOUT_S_MAX 600U

/* http:// as well as https:// (the configuration names a loopback http:// URL) */
#define FETCH_FLAG_ALLOW_HTTP UINT32_C(1)
#define FETCH_FLAGS_ALL FETCH_FLAG_ALLOW_HTTP

typedef enum FetchField {
        FETCH_FIELD_METHOD, /* "GET" or "POST" */
        FETCH_FIELD_URL,
        FETCH_FIELD_BODY,   /* JSON; may hold a password or a passcode */
        FETCH_FIELD_BEARER, /* the token alone, without "Bearer " */
        FETCH_FIELD_HEADER, /* one more request header, "Name: value" */
        FETCH_FIELD_CA_FILE,
        FETCH_FIELD_CLIENT_CERT,
        FETCH_FIELD_CLIENT_KEY,
        _FETCH_FIELD_MAX,
} FetchField;

typedef struct FetchRequestHeader {
        uint32_t magic;
        uint32_t timeout_s;
        uint32_t flags;
} FetchRequestHeader;

typedef struct FetchAnswerHeader {
        uint32_t magic;
        int32_t error;
        uint32_t status;
        uint32_t body_size;
} FetchAnswerHeader;

const char *fetch_field_to_string(FetchField f);
/* The longest value a field may have. */
size_t fetch_field_max(FetchField f);

/*
 * Checks one field's value (size bytes at data, which need not be NUL-terminated): not
 * longer than its limit, no NUL, no line break where it would end up in a request line or
 * a header, a known method. 0 or -EINVAL; *ret_why (static text) then says what was wrong.
 */
int fetch_field_check(FetchField f, const char *data, size_t size, const char **ret_why);

/* Checks an answer's header: 0, or -EBADMSG with *ret_why saying what was wrong. */
int fetch_answer_header_check(const FetchAnswerHeader *h, const char **ret_why);
