/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <yaml.h>

#include "fileio.h"
#include "log.h"
#include "yaml-doc.h"

struct YamlNode {
        YamlNodeKind kind;
        unsigned line;
        unsigned column;
        char *key; /* in the parent mapping */
        size_t index;
        const YamlNode *parent;
        YamlDoc *doc;

        char *value; /* scalar */
        bool plain;

        YamlNode **items; /* mapping values or sequence entries */
        size_t n_items, n_allocated;
};

struct YamlDoc {
        char *name;
        YamlNode *root;
        char *errbuf;
        size_t errbuf_size;
};

#define PATH_BUF 256
#define ERROR_BUF 1024

static YamlNode *node_free(YamlNode *n) {
        if (!n)
                return NULL;
        for (size_t i = 0; i < n->n_items; i++)
                node_free(n->items[i]); /* recursion bounded by YAML_DOC_MAX_DEPTH */
        free(n->items);
        free(n->key);
        free(n->value);
        free(n);
        return NULL;
}

static void node_freep(YamlNode **n) {
        node_free(*n);
}

static YamlNode *node_new(YamlDoc *d, YamlNodeKind kind, unsigned line, unsigned column) {
        YamlNode *n = calloc(1, sizeof(*n));

        if (!n)
                return NULL;
        n->kind = kind;
        n->line = line;
        n->column = column;
        n->doc = d;
        return n;
}

YamlDoc *yaml_doc_free(YamlDoc *d) {
        if (!d)
                return NULL;
        node_free(d->root);
        free(d->name);
        free(d);
        return NULL;
}

const YamlNode *yaml_doc_root(const YamlDoc *d) {
        return d->root;
}

const char *yaml_doc_name(const YamlDoc *d) {
        return d->name;
}

/* Messages */

static void path_append(char *buf, size_t size, const char *s) {
        size_t l = strlen(buf);

        if (l + 1 < size)
                snprintf(buf + l, size - l, "%s", s);
}

static void path_append_node(char *buf, size_t size, const YamlNode *n) {
        char index[32];

        if (!n->parent)
                return;
        path_append_node(buf, size, n->parent); /* bounded by YAML_DOC_MAX_DEPTH */
        if (n->key) {
                if (buf[0])
                        path_append(buf, size, ".");
                path_append(buf, size, n->key);
        } else {
                snprintf(index, sizeof(index), "[%zu]", n->index);
                path_append(buf, size, index);
        }
}

void yaml_node_path(const YamlNode *n, char *buf, size_t size) {
        if (size == 0)
                return;
        buf[0] = 0;
        path_append_node(buf, size, n);
}

_printf_(5, 0) static int doc_errorv(YamlDoc *d, unsigned line, unsigned column, const char *path,
                                     const char *format, va_list ap) {
        char msg[ERROR_BUF];
        int k;

        if (line > 0 && column > 0)
                k = snprintf(msg, sizeof(msg), "%s:%u:%u: ", d->name, line, column);
        else if (line > 0)
                k = snprintf(msg, sizeof(msg), "%s:%u: ", d->name, line);
        else
                k = snprintf(msg, sizeof(msg), "%s: ", d->name);
        if (path && path[0] && k >= 0 && (size_t) k < sizeof(msg))
                k += snprintf(msg + k, sizeof(msg) - k, "%s: ", path);
        if (k >= 0 && (size_t) k < sizeof(msg))
                vsnprintf(msg + k, sizeof(msg) - k, format, ap);

        log_error("%s", msg);
        if (d->errbuf && d->errbuf_size > 0)
                snprintf(d->errbuf, d->errbuf_size, "%s", msg);
        return -EINVAL;
}

_printf_(5, 6) static int doc_error(YamlDoc *d, unsigned line, unsigned column, const char *path,
                                    const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = doc_errorv(d, line, column, path, format, ap);
        va_end(ap);
        return r;
}

int yaml_node_error(const YamlNode *n, const char *format, ...) {
        char path[PATH_BUF];
        va_list ap;
        int r;

        yaml_node_path(n, path, sizeof(path));
        va_start(ap, format);
        r = doc_errorv(n->doc, n->line, n->column, path, format, ap);
        va_end(ap);
        return r;
}

/* A value as people should see it in a message: quoted, escaped, shortened. */
static void quote_text(const char *s, char *buf, size_t size) {
        size_t k = 0, i;

        if (size < 8) {
                if (size > 0)
                        buf[0] = 0;
                return;
        }
        buf[k++] = '"';
        for (i = 0; s[i] && k + 6 < size; i++) {
                unsigned char c = s[i];

                if (i >= 60) {
                        memcpy(buf + k, "...", 3);
                        k += 3;
                        break;
                }
                if (c == '"' || c == '\\') {
                        buf[k++] = '\\';
                        buf[k++] = c;
                } else if (c < 0x20 || c == 0x7f)
                        k += snprintf(buf + k, size - k, "\\x%02x", c);
                else
                        buf[k++] = c;
        }
        buf[k++] = '"';
        buf[k] = 0;
}

static void describe(const YamlNode *n, char *buf, size_t size) {
        char q[96];

        switch (n->kind) {
        case YAML_DOC_MAPPING:
                snprintf(buf, size, "a mapping");
                return;
        case YAML_DOC_SEQUENCE:
                snprintf(buf, size, "a list");
                return;
        case YAML_DOC_SCALAR:
                break;
        }
        if (yaml_node_is_null(n)) {
                snprintf(buf, size, "nothing");
                return;
        }
        quote_text(n->value, q, sizeof(q));
        snprintf(buf, size, "%s", q);
}

static int expected(const YamlNode *n, const char *what) {
        char got[128];

        describe(n, got, sizeof(got));
        return yaml_node_error(n, "expected %s, got %s", what, got);
}

/* Numbers and booleans are plain scalars; say so when quotes are what is wrong. */
static int expected_number(const YamlNode *n, const char *what) {
        char q[96];

        if (n->kind != YAML_DOC_SCALAR || n->plain)
                return expected(n, what);
        quote_text(n->value, q, sizeof(q));
        return yaml_node_error(n, "expected %s, got the quoted text %s (write numbers without quotes)", what,
                               q);
}

/* Parsing */

typedef struct Builder {
        YamlDoc *doc;
        const char *text;
        size_t size;
        YamlNode *stack[YAML_DOC_MAX_DEPTH];
        size_t depth;
        char *pending_key;
        unsigned pending_key_line;
        unsigned pending_key_column;
        unsigned documents;
} Builder;

static YamlNode *builder_top(Builder *b) {
        return b->depth > 0 ? b->stack[b->depth - 1] : NULL;
}

static void builder_key_path(Builder *b, const char *key, char *buf, size_t size) {
        YamlNode *top = builder_top(b);

        buf[0] = 0;
        if (top)
                yaml_node_path(top, buf, size);
        if (key) {
                if (buf[0])
                        path_append(buf, size, ".");
                path_append(buf, size, key);
        }
}

static int builder_error_at(Builder *b, unsigned line, unsigned column, const char *key, const char *format,
                            ...) _printf_(5, 6);
static int builder_error_at(Builder *b, unsigned line, unsigned column, const char *key, const char *format,
                            ...) {
        char path[PATH_BUF];
        va_list ap;
        int r;

        /* a value in a mapping belongs to its pending key */
        builder_key_path(b, key ?: b->pending_key, path, sizeof(path));
        va_start(ap, format);
        r = doc_errorv(b->doc, line, column, path, format, ap);
        va_end(ap);
        return r;
}

/* Only plain data: the features that make one text mean something elsewhere are refused. */
static int check_properties(Builder *b, unsigned line, unsigned column, const yaml_char_t *anchor,
                            const yaml_char_t *tag) {
        char q[96];

        /* an anchor's name is letters, digits, '-' and '_' (libyaml checks) */
        if (anchor)
                return builder_error_at(b, line, column, NULL,
                                        "anchors (&%s) are not supported; write the value out",
                                        (const char *) anchor);
        if (tag) {
                /* libyaml decodes %XX in a tag: it may hold any byte */
                quote_text((const char *) tag, q, sizeof(q));
                return builder_error_at(b, line, column, NULL, "tags (%s) are not supported", q);
        }
        return 0;
}

static int builder_attach(Builder *b, YamlNode *n) {
        YamlNode *top = builder_top(b);

        if (!top) {
                if (b->doc->root)
                        return builder_error_at(b, n->line, n->column, NULL,
                                                "only one top-level value is allowed");
                b->doc->root = n;
                return 0;
        }

        if (top->n_items >= YAML_DOC_MAX_ITEMS)
                return builder_error_at(b, n->line, n->column, NULL, "more than %u entries",
                                        YAML_DOC_MAX_ITEMS);
        if (top->n_items == top->n_allocated) {
                size_t k = MAX(top->n_allocated * 2, (size_t) 8);
                YamlNode **items = reallocarray(top->items, k, sizeof(YamlNode *));

                if (!items)
                        return -ENOMEM;
                top->items = items;
                top->n_allocated = k;
        }

        n->parent = top;
        n->index = top->n_items;
        if (top->kind == YAML_DOC_MAPPING) {
                /* a value is shown where its key is */
                n->key = TAKE_PTR(b->pending_key);
                n->line = b->pending_key_line;
                n->column = b->pending_key_column;
        }
        top->items[top->n_items++] = n;
        return 0;
}

static int builder_key(Builder *b, const yaml_event_t *ev, unsigned line, unsigned column) {
        YamlNode *top = builder_top(b);
        const char *key = (const char *) ev->data.scalar.value;
        size_t length = ev->data.scalar.length;

        if (length == 0)
                return builder_error_at(b, line, column, NULL, "empty key");
        if (memchr(key, 0, length))
                return builder_error_at(b, line, column, NULL, "a key contains a NUL character");
        /* keys are echoed in every message about their values: keep those one clean line */
        for (size_t i = 0; i < length; i++)
                if ((unsigned char) key[i] < 0x20 || key[i] == 0x7f)
                        return builder_error_at(b, line, column, NULL,
                                                "expected a key without control characters (such as a tab)");

        for (size_t i = 0; i < top->n_items; i++)
                if (streq(top->items[i]->key, key))
                        return builder_error_at(b, line, column, key,
                                                "duplicate key, first given on line %u",
                                                top->items[i]->line);

        b->pending_key = strndup(key, length);
        if (!b->pending_key)
                return -ENOMEM;
        b->pending_key_line = line;
        b->pending_key_column = column;
        return 0;
}

static int builder_scalar(Builder *b, const yaml_event_t *ev, unsigned line, unsigned column) {
        _cleanup_(node_freep) YamlNode *n = NULL;
        YamlNode *top = builder_top(b);
        int r;

        r = check_properties(b, line, column, ev->data.scalar.anchor, ev->data.scalar.tag);
        if (r < 0)
                return r;

        if (top && top->kind == YAML_DOC_MAPPING && !b->pending_key)
                return builder_key(b, ev, line, column);

        if (memchr(ev->data.scalar.value, 0, ev->data.scalar.length))
                return builder_error_at(b, line, column, NULL, "a value contains a NUL character");

        n = node_new(b->doc, YAML_DOC_SCALAR, line, column);
        if (!n)
                return -ENOMEM;
        n->value = strndup((const char *) ev->data.scalar.value, ev->data.scalar.length);
        if (!n->value)
                return -ENOMEM;
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;

        r = builder_attach(b, n);
        if (r < 0)
                return r;
        TAKE_PTR(n);
        return 0;
}

static int builder_open(Builder *b, YamlNodeKind kind, const yaml_char_t *anchor, const yaml_char_t *tag,
                        unsigned line, unsigned column) {
        _cleanup_(node_freep) YamlNode *n = NULL;
        YamlNode *top = builder_top(b);
        int r;

        r = check_properties(b, line, column, anchor, tag);
        if (r < 0)
                return r;
        if (top && top->kind == YAML_DOC_MAPPING && !b->pending_key)
                return builder_error_at(b, line, column, NULL,
                                        "a key must be a plain word, not a mapping or list");
        if (b->depth >= YAML_DOC_MAX_DEPTH)
                return builder_error_at(b, line, column, NULL, "nested more than %u levels deep",
                                        YAML_DOC_MAX_DEPTH);

        n = node_new(b->doc, kind, line, column);
        if (!n)
                return -ENOMEM;
        r = builder_attach(b, n);
        if (r < 0)
                return r;
        b->stack[b->depth++] = TAKE_PTR(n);
        return 0;
}

static void position_at_offset(const char *text, size_t size, size_t offset, unsigned *ret_line,
                               unsigned *ret_column) {
        unsigned line = 1, column = 1;

        for (size_t i = 0; i < MIN(offset, size); i++)
                if (text[i] == '\n') {
                        line++;
                        column = 1;
                } else
                        column++;
        *ret_line = line;
        *ret_column = column;
}

static int builder_parser_error(Builder *b, const yaml_parser_t *p) {
        unsigned line, column, context_line;
        const char *problem = p->problem ?: "unknown error";

        switch (p->error) {
        case YAML_MEMORY_ERROR:
                return log_error_errno(-ENOMEM, "%s: out of memory while parsing YAML", b->doc->name);
        case YAML_READER_ERROR:
                position_at_offset(b->text, b->size, p->problem_offset, &line, &column);
                return doc_error(b->doc, line, column, NULL, "invalid YAML: %s", problem);
        default:
                break;
        }

        line = (unsigned) p->problem_mark.line + 1;
        column = (unsigned) p->problem_mark.column + 1;
        if (p->problem_mark.index < b->size && b->text[p->problem_mark.index] == '\t')
                return doc_error(b->doc, line, column, NULL,
                                 "invalid YAML: a tab character; YAML is indented with spaces");

        context_line = (unsigned) p->context_mark.line + 1;
        if (p->context && context_line != line)
                return doc_error(b->doc, line, column, NULL, "invalid YAML: %s (%s on line %u)", problem,
                                 p->context, context_line);
        if (p->context)
                return doc_error(b->doc, line, column, NULL, "invalid YAML: %s (%s)", problem, p->context);
        return doc_error(b->doc, line, column, NULL, "invalid YAML: %s", problem);
}

static void parser_deletep(yaml_parser_t *p) {
        yaml_parser_delete(p);
}

static int builder_run(Builder *b) {
        _cleanup_(parser_deletep) yaml_parser_t parser = {};
        bool done = false;
        int r = 0;

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) b->text, b->size);

        while (!done && r >= 0) {
                yaml_event_t ev;
                unsigned line, column;

                if (!yaml_parser_parse(&parser, &ev))
                        return builder_parser_error(b, &parser);
                line = (unsigned) ev.start_mark.line + 1;
                column = (unsigned) ev.start_mark.column + 1;

                switch (ev.type) {
                case YAML_STREAM_END_EVENT:
                        done = true;
                        break;
                case YAML_DOCUMENT_START_EVENT:
                        if (++b->documents > 1)
                                r = doc_error(b->doc, line, column, NULL,
                                              "only one YAML document is allowed (a second \"---\")");
                        break;
                case YAML_ALIAS_EVENT:
                        r = builder_error_at(b, line, column, NULL,
                                             "aliases (*%s) are not supported; write the value out",
                                             (const char *) ev.data.alias.anchor);
                        break;
                case YAML_SCALAR_EVENT:
                        r = builder_scalar(b, &ev, line, column);
                        break;
                case YAML_SEQUENCE_START_EVENT:
                        r = builder_open(b, YAML_DOC_SEQUENCE, ev.data.sequence_start.anchor,
                                         ev.data.sequence_start.tag, line, column);
                        break;
                case YAML_MAPPING_START_EVENT:
                        r = builder_open(b, YAML_DOC_MAPPING, ev.data.mapping_start.anchor,
                                         ev.data.mapping_start.tag, line, column);
                        break;
                case YAML_SEQUENCE_END_EVENT:
                case YAML_MAPPING_END_EVENT:
                        if (b->depth > 0)
                                b->depth--;
                        break;
                default:
                        break;
                }
                yaml_event_delete(&ev);
        }
        return r;
}

int yaml_doc_parse(const char *name, const char *text, size_t size, char *errbuf, size_t errbuf_size,
                   YamlDoc **ret) {
        _cleanup_(yaml_doc_freep) YamlDoc *d = NULL;
        Builder b = {};
        int r;

        if (!name || !text || !ret)
                return -EINVAL;

        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->name = strdup(name);
        if (!d->name)
                return -ENOMEM;
        d->errbuf = errbuf;
        d->errbuf_size = errbuf_size;
        if (errbuf && errbuf_size > 0)
                errbuf[0] = 0;

        if (size > YAML_DOC_MAX_SIZE)
                return doc_error(d, 0, 0, NULL, "larger than %u KiB", YAML_DOC_MAX_SIZE / 1024);

        b = (Builder) { .doc = d, .text = text, .size = size };
        r = builder_run(&b);
        free(b.pending_key);
        if (r < 0)
                return r;

        /* Nothing at all, or an explicit null, is an empty mapping: a file of comments only
         * means "all defaults". */
        if (!d->root || yaml_node_is_null(d->root)) {
                node_free(d->root);
                d->root = node_new(d, YAML_DOC_MAPPING, 1, 1);
                if (!d->root)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(d);
        return 0;
}

int yaml_doc_load(const char *path, char *errbuf, size_t errbuf_size, YamlDoc **ret) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        if (!path || !ret)
                return -EINVAL;

        r = read_file_bounded(path, YAML_DOC_MAX_SIZE, &text, &size);
        if (r < 0) {
                char msg[ERROR_BUF];

                if (r == -EFBIG)
                        snprintf(msg, sizeof(msg), "%s: larger than %u KiB", path, YAML_DOC_MAX_SIZE / 1024);
                else if (r == -EBADF)
                        snprintf(msg, sizeof(msg), "%s: not a regular file", path);
                else
                        snprintf(msg, sizeof(msg), "%s: cannot read: %s", path, strerror(-r));
                log_error("%s", msg);
                if (errbuf && errbuf_size > 0)
                        snprintf(errbuf, errbuf_size, "%s", msg);
                return r;
        }

        return yaml_doc_parse(path, text, size, errbuf, errbuf_size, ret);
}

/* Nodes */

YamlNodeKind yaml_node_kind(const YamlNode *n) {
        return n->kind;
}

unsigned yaml_node_line(const YamlNode *n) {
        return n->line;
}

unsigned yaml_node_column(const YamlNode *n) {
        return n->column;
}

const char *yaml_node_key(const YamlNode *n) {
        return n->key;
}

size_t yaml_node_size(const YamlNode *n) {
        return n->n_items;
}

const YamlNode *yaml_node_item(const YamlNode *n, size_t i) {
        return i < n->n_items ? n->items[i] : NULL;
}

const char *yaml_node_scalar(const YamlNode *n) {
        return n->kind == YAML_DOC_SCALAR ? n->value : NULL;
}

bool yaml_node_is_null(const YamlNode *n) {
        return n->kind == YAML_DOC_SCALAR && n->plain &&
               (n->value[0] == 0 || streq(n->value, "~") || streq(n->value, "null") ||
                streq(n->value, "Null") || streq(n->value, "NULL"));
}

/* Mappings */

int yaml_mapping_check(const YamlNode *n, const char *what, const char *const *known) {
        char list[512];

        if (n->kind != YAML_DOC_MAPPING)
                return expected(n, what ?: "a mapping");

        for (size_t i = 0; i < n->n_items; i++) {
                const YamlNode *item = n->items[i];
                bool found = false;

                for (const char *const *k = known; *k; k++)
                        if (streq(*k, item->key)) {
                                found = true;
                                break;
                        }
                if (found)
                        continue;

                list[0] = 0;
                for (const char *const *k = known; *k; k++) {
                        if (k != known)
                                path_append(list, sizeof(list), ", ");
                        path_append(list, sizeof(list), *k);
                }
                return yaml_node_error(item, "unknown key (known keys here: %s)", list);
        }
        return 0;
}

const YamlNode *yaml_mapping_get(const YamlNode *map, const char *key) {
        if (map->kind != YAML_DOC_MAPPING)
                return NULL;
        for (size_t i = 0; i < map->n_items; i++)
                if (streq(map->items[i]->key, key))
                        return map->items[i];
        return NULL;
}

int yaml_mapping_require(const YamlNode *map, const char *key, const YamlNode **ret) {
        const YamlNode *v = yaml_mapping_get(map, key);

        if (!v)
                return yaml_node_error(map, "missing key \"%s\"", key);
        *ret = v;
        return 0;
}

/* Typed values */

int yaml_node_get_string(const YamlNode *n, const char *what, const char **ret) {
        if (n->kind != YAML_DOC_SCALAR || yaml_node_is_null(n) || n->value[0] == 0)
                return expected(n, what ?: "a text");
        for (const char *p = n->value; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return yaml_node_error(n, "expected %s, got text with control characters",
                                               what ?: "a text");
        *ret = n->value;
        return 0;
}

static int parse_uint(const char *s, uint64_t *ret) {
        unsigned base = 10;
        uint64_t v = 0;

        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
                base = 16;
                s += 2;
        }
        if (!*s)
                return -EINVAL;
        for (; *s; s++) {
                unsigned d;

                if (*s >= '0' && *s <= '9')
                        d = *s - '0';
                else if (base == 16 && *s >= 'a' && *s <= 'f')
                        d = *s - 'a' + 10;
                else if (base == 16 && *s >= 'A' && *s <= 'F')
                        d = *s - 'A' + 10;
                else
                        return -EINVAL;
                if (v > (UINT64_MAX - d) / base)
                        return -ERANGE;
                v = v * base + d;
        }
        *ret = v;
        return 0;
}

static int get_uint(const YamlNode *n, uint64_t min, uint64_t max, const char *what, bool hex,
                    uint64_t *ret) {
        char expect[192];
        uint64_t v;

        if (hex)
                snprintf(expect, sizeof(expect), "%s between 0x%" PRIX64 " and 0x%" PRIX64,
                         what ?: "a number", min, max);
        else
                snprintf(expect, sizeof(expect), "%s between %" PRIu64 " and %" PRIu64,
                         what ?: "a whole number", min, max);

        if (n->kind != YAML_DOC_SCALAR || !n->plain || parse_uint(n->value, &v) < 0 || v < min || v > max) {
                return expected_number(n, expect);
        }
        *ret = v;
        return 0;
}

int yaml_node_get_uint(const YamlNode *n, uint64_t min, uint64_t max, const char *what, uint64_t *ret) {
        return get_uint(n, min, max, what, false, ret);
}

int yaml_node_get_hex(const YamlNode *n, uint64_t min, uint64_t max, const char *what, uint64_t *ret) {
        return get_uint(n, min, max, what, true, ret);
}

/* Decimal notation only, parsed by hand so that the locale never changes what "12.5" means. */
static int parse_decimal(const char *s, double *ret) {
        uint64_t mantissa = 0, scale = 1;
        unsigned digits = 0;
        bool negative = false, fraction = false;

        if (*s == '+' || *s == '-')
                negative = *s++ == '-';
        for (; *s; s++) {
                if (*s == '.') {
                        if (fraction)
                                return -EINVAL;
                        fraction = true;
                        continue;
                }
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                if (++digits > 15)
                        return -ERANGE;
                mantissa = mantissa * 10 + (uint64_t) (*s - '0');
                if (fraction)
                        scale *= 10;
        }
        if (digits == 0)
                return -EINVAL;
        *ret = (negative ? -1.0 : 1.0) * (double) mantissa / (double) scale;
        return 0;
}

int yaml_node_get_double(const YamlNode *n, double min, double max, const char *what, double *ret) {
        char expect[192];
        double v;

        snprintf(expect, sizeof(expect), "%s between %g and %g", what ?: "a number", min, max);
        if (n->kind != YAML_DOC_SCALAR || !n->plain || parse_decimal(n->value, &v) < 0 || v < min ||
            v > max) {
                return expected_number(n, expect);
        }
        *ret = v;
        return 0;
}

int yaml_node_get_bool(const YamlNode *n, bool *ret) {
        if (n->kind == YAML_DOC_SCALAR && n->plain) {
                if (strcasecmp(n->value, "true") == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(n->value, "false") == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return expected(n, "true or false");
}
