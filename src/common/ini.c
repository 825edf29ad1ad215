// SPDX-License-Identifier: GPL-2.0-only
#include "ini.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "errmsg.h"

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* A '#' after a blank starts a comment, so values can be annotated
 * ("workers = 4   # ..."); a '#' inside a word, as in the path
 * /srv/disk#2, does not. */
static void strip_comment(char *s)
{
	for (char *p = s + 1; *p; p++) {
		if (*p == '#' && isspace((unsigned char)p[-1])) {
			*p = '\0';
			return;
		}
	}
}

int ini_bool(const char *v, bool *out)
{
	if (!*v || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0")) {
		*out = false;
		return 0;
	}
	return -EINVAL;
}

/* Splits "[kind name]" (trimmed, comment stripped) in place; false if s
 * is not a well-formed header. */
static bool split_header(char *s, char **kind, char **name)
{
	char *close = strchr(s, ']');

	if (!close || *trim(close + 1))
		return false;
	*close = '\0';
	*kind = trim(s + 1);
	*name = *kind + strcspn(*kind, " \t");
	if (**name) {
		*(*name)++ = '\0';
		*name = trim(*name);
	}
	return **kind != '\0';
}

static int header(const struct ini_ops *ops, void *arg, char *s, char *msg, size_t msglen)
{
	char *kind, *name;

	if (!split_header(s, &kind, &name))
		return errmsg(msg, msglen, "a section header must look like [KIND] or [KIND NAME]");
	return ops->section(arg, kind, name, msg, msglen);
}

bool ini_line_section(const char *line, char *kind, size_t kindlen, char *name,
		      size_t namelen)
{
	char buf[8192], *s, *k, *n;

	snprintf(buf, sizeof(buf), "%s", line);
	s = trim(buf);
	if (*s != '[')
		return false;
	strip_comment(s);
	if (!split_header(trim(s), &k, &n))
		return false;
	snprintf(kind, kindlen, "%s", k);
	snprintf(name, namelen, "%s", n);
	return true;
}

int ini_parse(FILE *f, const char *path, const struct ini_ops *ops, void *arg, char *err,
	      size_t errlen)
{
	char line[8192], msg[512];
	unsigned int lineno = 0, sect_line = 0;
	bool in_section = false;
	int ret = 0;

	while (fgets(line, sizeof(line), f)) {
		char *s, *eq, *val;

		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			ret = errmsg(msg, sizeof(msg), "line too long");
			break;
		}
		s = trim(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		strip_comment(s);
		s = trim(s);
		if (*s == '[') {
			if (in_section && ops->section_end) {
				ret = ops->section_end(arg, msg, sizeof(msg));
				if (ret) {
					lineno = sect_line;
					break;
				}
			}
			in_section = true;
			sect_line = lineno;
			ret = header(ops, arg, s, msg, sizeof(msg));
			if (ret)
				break;
			continue;
		}
		eq = strchr(s, '=');
		if (eq) {
			*eq = '\0';
			val = trim(eq + 1);
		} else {
			val = s + strlen(s);
		}
		ret = ops->key(arg, trim(s), val, msg, sizeof(msg));
		if (ret)
			break;
	}
	if (!ret && ferror(f)) {
		errmsg(err, errlen, "%s: read error", path);
		return -EIO;
	}
	if (!ret && in_section && ops->section_end) {
		ret = ops->section_end(arg, msg, sizeof(msg));
		lineno = sect_line;
	}
	if (ret)
		return errmsg(err, errlen, "%s:%u: %s", path, lineno, msg), ret;
	return 0;
}

int ini_load(const char *path, const struct ini_ops *ops, void *arg, char *err,
	     size_t errlen)
{
	FILE *f = fopen(path, "re");
	int ret;

	if (!f) {
		ret = -errno;
		errmsg(err, errlen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	ret = ini_parse(f, path, ops, arg, err, errlen);
	fclose(f);
	return ret;
}
