/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Numbers as operators write them, on command lines and in configuration
 * files: decimal, or hexadecimal after 0x; no sign, no blanks, no octal
 * ("010" is ten). Pure functions (unit-tested).
 */
#ifndef IBNBD_PARSE_H
#define IBNBD_PARSE_H

#include <stdint.h>

/* 0, -EINVAL (not such a number, or text after it) or -ERANGE (outside
 * min..max). *out is written only on success. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
int parse_uint(const char *s, unsigned int min, unsigned int max, unsigned int *out);
/* A size in bytes with an optional binary suffix: 512, 4K, 256M, 1G, 2T
 * (also KiB, MiB ... and KB, MB ...: powers of 1024). */
int parse_size(const char *s, uint64_t *out);

#endif
