/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Small YAML documents (configuration, vehicle profiles) as a tree of mappings,
 * sequences and scalars, each node with its line number. This is the one place that
 * meets libyaml.
 *
 * Only the plain subset a configuration needs is accepted: one document, at most
 * YAML_DOC_MAX_SIZE bytes, nested at most YAML_DOC_MAX_DEPTH deep, scalar keys, no
 * duplicate keys, no anchors, aliases or tags. Anything else is refused with a message.
 *
 * Every error is a sentence of the form
 *     FILE:LINE:COLUMN: KEY.PATH: expected ..., got "..."
 * It is logged with log_error() and, when the document was loaded with an error buffer,
 * also copied there (the last error wins), so a caller can hand it on, e.g. in a D-Bus
 * error. Functions return -EINVAL for bad content, other negative errno for I/O.
 */

#include "util.h"

#define YAML_DOC_MAX_SIZE (256U * 1024U)
#define YAML_DOC_MAX_DEPTH 16U
#define YAML_DOC_MAX_ITEMS 1024U /* entries in one mapping or sequence */

typedef enum YamlNodeKind {
        YAML_DOC_SCALAR,
        YAML_DOC_MAPPING,
        YAML_DOC_SEQUENCE,
} YamlNodeKind;

typedef struct YamlDoc YamlDoc;
typedef struct YamlNode YamlNode;

/* Document */

/*
 * Reads and parses a file. `errbuf` (may be NULL) receives the error sentence; it must
 * stay valid as long as the document, since later accessor errors are written there too.
 * -ENOENT etc. when the file cannot be read, -EFBIG when too large, -EINVAL for bad YAML.
 */
int yaml_doc_load(const char *path, char *errbuf, size_t errbuf_size, YamlDoc **ret);
/* The same for text in memory; `name` stands for the file name in messages. Text above
 * YAML_DOC_MAX_SIZE is -EINVAL here. */
int yaml_doc_parse(const char *name, const char *text, size_t size, char *errbuf, size_t errbuf_size,
                   YamlDoc **ret);
YamlDoc *yaml_doc_free(YamlDoc *d);
static inline void yaml_doc_freep(YamlDoc **d) {
        yaml_doc_free(*d);
}

/* The top node. An empty file (or one with comments only) gives an empty mapping. */
const YamlNode *yaml_doc_root(const YamlDoc *d);
const char *yaml_doc_name(const YamlDoc *d);

/* Nodes */

YamlNodeKind yaml_node_kind(const YamlNode *n);
/* 1-based line of the node, or of its key when it is a mapping value. */
unsigned yaml_node_line(const YamlNode *n);
/* 1-based column of the same place. */
unsigned yaml_node_column(const YamlNode *n);
/* The key under which the node sits in its parent mapping; NULL otherwise. */
const char *yaml_node_key(const YamlNode *n);
/* Entries of a mapping or sequence; 0 for a scalar. */
size_t yaml_node_size(const YamlNode *n);
/* Entry i of a sequence, or the value of entry i of a mapping (its key: yaml_node_key()). */
const YamlNode *yaml_node_item(const YamlNode *n, size_t i);
/* The text of a scalar; NULL for a mapping or sequence. */
const char *yaml_node_scalar(const YamlNode *n);
/* A plain empty, "~" or "null" scalar: YAML's way to write nothing. */
bool yaml_node_is_null(const YamlNode *n);
/* The key path for messages, e.g. "server.url" or "models[2].years"; "" for the root. */
void yaml_node_path(const YamlNode *n, char *buf, size_t size);

/*
 * Reports a problem with a node: logs "FILE:LINE:COLUMN: PATH: <message>", copies it into the
 * document's error buffer, and returns -EINVAL.
 */
int yaml_node_error(const YamlNode *n, const char *format, ...) _printf_(2, 3);

/* Mappings */

/* -EINVAL unless `n` is a mapping whose keys are all in `known` (NULL-terminated).
 * `what` names the expected content for the message, e.g. "the server settings". */
int yaml_mapping_check(const YamlNode *n, const char *what, const char *const *known);
/* The value under `key`, or NULL when absent. */
const YamlNode *yaml_mapping_get(const YamlNode *map, const char *key);
/* The same, but a missing key is an error naming the mapping. */
int yaml_mapping_require(const YamlNode *map, const char *key, const YamlNode **ret);

/*
 * Typed values. Each refuses anything else with "expected <what>, got <the value>" and
 * leaves *ret untouched on failure. Numbers and booleans must be written plain (without
 * quotes). `what` may be NULL for the default description.
 */

/* A non-empty scalar; `what` e.g. "a folder path". */
int yaml_node_get_string(const YamlNode *n, const char *what, const char **ret);
/* A whole number, decimal or 0x hexadecimal, min <= v <= max. With `what` "a whole number
 * of milliseconds" the message reads "expected a whole number of milliseconds between
 * 100 and 60000". */
int yaml_node_get_uint(const YamlNode *n, uint64_t min, uint64_t max, const char *what, uint64_t *ret);
/* The same, with the bounds shown in hexadecimal (CAN ids, DIDs). */
int yaml_node_get_hex(const YamlNode *n, uint64_t min, uint64_t max, const char *what, uint64_t *ret);
/* A decimal number such as 12.5 (no exponent), min <= v <= max. */
int yaml_node_get_double(const YamlNode *n, double min, double max, const char *what, double *ret);
/* true or false (in any case). */
int yaml_node_get_bool(const YamlNode *n, bool *ret);
