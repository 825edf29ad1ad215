/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The INI dialect of ibnbd's configuration files (server.conf and
 * client.conf), read line by line:
 *
 *   # a comment (';' also starts a line comment)
 *   key = value          # a '#' after a blank ends the value
 *   flag                 (a bare key: the value is "")
 *   [kind NAME]          (a section header; [kind] alone has no name)
 *
 * What the keys and sections mean is the caller's: it gets each header and
 * each key through callbacks, which return 0 or a negative errno with a
 * sentence in msg. Errors come back as "PATH:LINE: sentence". Pure code
 * (unit-tested through both files' tests).
 */
#ifndef IBNBD_INI_H
#define IBNBD_INI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct ini_ops {
	/* A header: kind is the first word, name the rest ("" if none). */
	int (*section)(void *arg, const char *kind, const char *name, char *msg, size_t msglen);
	/* A key = value line; key and value are trimmed; val may be changed. */
	int (*key)(void *arg, const char *key, char *val, char *msg, size_t msglen);
	/* The section under way ends (at a header or at the end of the file);
	 * an error is reported at that section's header line. May be NULL. */
	int (*section_end)(void *arg, char *msg, size_t msglen);
};

int ini_parse(FILE *f, const char *path, const struct ini_ops *ops, void *arg, char *err,
	      size_t errlen);
/* ini_parse() of the file at path; -errno with "PATH: reason" if it cannot
 * be opened. */
int ini_load(const char *path, const struct ini_ops *ops, void *arg, char *err,
	     size_t errlen);

/* Whether line (one line of such a file) is a section header; if so, its
 * kind and name (see ini_ops.section), truncated to the buffers. */
bool ini_line_section(const char *line, char *kind, size_t kindlen, char *name,
		      size_t namelen);

/* yes/true/1 or a bare key, no/false/0. 0 or -EINVAL. */
int ini_bool(const char *v, bool *out);

#endif
