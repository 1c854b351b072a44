/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "ecu.h"

/* 1: run, 0: --help or --version was answered, -EINVAL: a usage error (already told). */
int parse_argv(int argc, char *argv[], EcuOptions *ret, bool *ret_verbose);
