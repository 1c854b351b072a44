/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <limits.h>

#include "fetch-frame.h"

/* clang-format off */
static const struct {
        const char *name;
        size_t max;
        bool one_line; /* ends up in the request line or a header */
} fetch_fields[_FETCH_FIELD_MAX] = {
        [FETCH_FIELD_METHOD]      = { "method",             4,              true  },
        [FETCH_FIELD_URL]         = { "URL",                4096,           true  },
        [FETCH_FIELD_BODY]        = { "body",               FETCH_BODY_MAX, false },
        [FETCH_FIELD_BEARER]      = { "bearer token",       4096,           true  },
        [FETCH_FIELD_HEADER]      = { "header",             1024,           true  },
        [FETCH_FIELD_CA_FILE]     = { "CA file",            PATH_MAX,       true  },
        [FETCH_FIELD_CLIENT_CERT] = { "client certificate", PATH_MAX,       true  },
        [FETCH_FIELD_CLIENT_KEY]  = { "client key",         PATH_MAX,       true  },
};
/* clang-format on */

const char *fetch_field_to_string(FetchField f) {
        return (unsigned) f < _FETCH_FIELD_MAX ? fetch_fields[f].name : NULL;
}

size_t fetch_field_max(FetchField f) {
        return (unsigned) f < _FETCH_FIELD_MAX ? fetch_fields[f].max : 0;
}

int fetch_field_check(FetchField f, const char *data, size_t size, const char **ret_why) {
        if ((unsigned) f >= _FETCH_FIELD_MAX) {
                *ret_why = "unknown field";
                return -EINVAL;
        }
        if (size > fetch_fields[f].max) {
                *ret_why = "longer than its limit";
                return -EINVAL;
        }
        if (memchr(data, 0, size)) {
                *ret_why = "holds a NUL byte";
                return -EINVAL;
        }
        if (fetch_fields[f].one_line && (memchr(data, '\r', size) || memchr(data, '\n', size))) {
                *ret_why = "holds a line break";
                return -EINVAL;
        }
        if (f == FETCH_FIELD_METHOD && !(size == 3 && memcmp(data, "GET", 3) == 0) &&
            !(size == 4 && memcmp(data, "POST", 4) == 0)) {
                *ret_why = "is neither GET nor POST";
                return -EINVAL;
        }
        if (f == FETCH_FIELD_URL && size == 0) {
                *ret_why = "is empty";
                return -EINVAL;
        }
        return 0;
}

int fetch_answer_header_check(const FetchAnswerHeader *h, const char **ret_why) {
        if (h->magic != FETCH_ANSWER_MAGIC)
                *ret_why = "it does not start with the answer's magic number";
        else if (h->error > 0 || h->error < -4095)
                *ret_why = "its error is not 0 or a negative errno";
        else if (h->error == 0 && (h->status < 100 || h->status > 599))
                *ret_why = "its HTTP status is not between 100 and 599";
        else if (h->error < 0 && h->status != 0)
                *ret_why = "it has an HTTP status as well as an error";
        else if (h->body_size > FETCH_BODY_MAX)
                *ret_why = "its body is larger than the limit";
        else if (h->error < 0 && h->body_size != 0)
                *ret_why = "it has a body as well as an error";
        else
                return 0;
        return -EBADMSG;
}
