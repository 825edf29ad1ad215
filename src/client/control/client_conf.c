// SPDX-License-Identifier: GPL-2.0-only
#include "control/client_conf.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"
#include "hostid.h"
#include "ini.h"
#include "metrics_http.h"
#include "parse.h"


static int set_seconds(const char *val, unsigned int min, const char *shown, unsigned int *out,
		       char *err, size_t errlen)
{
	if (parse_uint(val, min, CLI_MAX_SECONDS, out))
		return errmsg(err, errlen, "%s must be a number of seconds from %u to %d, not '%s'",
			      shown, min, CLI_MAX_SECONDS, val);
	return 0;
}

int client_conf_set(struct client_config *cfg, const char *key, const char *val,
		    const char *shown, char *err, size_t errlen)
{
	char why[256];
	unsigned int v;
	int ret;

	if (!strcmp(key, "workers")) {
		if (parse_uint(val, 1, 64, &cfg->workers))
			return errmsg(err, errlen, "%s must be a number from 1 to 64, not '%s'", shown,
				      val);
		return 0;
	}
	if (!strcmp(key, "dead_timeout")) {
		ret = set_seconds(val, 1, shown, &v, err, errlen);
		if (!ret)
			cfg->dead_timeout_ms = v * 1000;
		return ret;
	}
	if (!strcmp(key, "loss_timeout"))
		return cli_loss_timeout(val, shown, &cfg->loss_timeout_s, err, errlen);
	if (!strcmp(key, "io_timeout")) {
		ret = set_seconds(val, 0, shown, &v, err, errlen);
		if (ret)
			return ret;
		cfg->io_timeout_s = v ? (int)v : -1;
		return 0;
	}
	if (!strcmp(key, "host_id")) {
		if (host_id_check(val, why, sizeof(why)))
			return errmsg(err, errlen, "%s: %s", shown, why);
		snprintf(cfg->host_id, sizeof(cfg->host_id), "%s", val);
		return 0;
	}
	if (!strcmp(key, "key_file")) {
		if (!*val || strlen(val) >= sizeof(cfg->key_file))
			return errmsg(err, errlen, "%s must be a path of 1 to %zu bytes", shown,
				      sizeof(cfg->key_file) - 1);
		snprintf(cfg->key_file, sizeof(cfg->key_file), "%s", val);
		return 0;
	}
	if (!strcmp(key, "metrics")) {
		if (strlen(val) >= sizeof(cfg->metrics) || metrics_addr_check(val, why, sizeof(why)))
			return errmsg(err, errlen, "%s: %s", shown,
				      strlen(val) >= sizeof(cfg->metrics) ? "address too long" : why);
		snprintf(cfg->metrics, sizeof(cfg->metrics), "%s", val);
		return 0;
	}
	if (!strcmp(key, "max_io_size")) {
		uint64_t n;

		if (parse_size(val, &n) || n < IBNBD_MIN_IO_SIZE || n > IBNBD_MAX_IO_SIZE || n % 4096)
			return errmsg(err, errlen,
				      "%s must be a multiple of 4K from %uK to %uK (K and M suffixes "
				      "allowed), not '%s'", shown, IBNBD_MIN_IO_SIZE >> 10,
				      IBNBD_MAX_IO_SIZE >> 10, val);
		cfg->max_io_size = (uint32_t)n;
		return 0;
	}
	ret = busypoll_config_set(&cfg->poll, key, val, why, sizeof(why));
	if (ret < 0) /* its sentence starts with the key: say it as shown */
		return errmsg(err, errlen, "%s%s", shown, why + strlen(key));
	if (!ret) {
		cfg->poll_idle_set |= !strcmp(key, "poll_idle_us");
		return 0;
	}
	return errmsg(err, errlen,
		      "unknown key '%s' (known: workers, dead_timeout, loss_timeout, io_timeout, "
		      "host_id, key_file, metrics, max_io_size, poll, poll_idle_us)", shown);
}

void client_conf_overlay(struct client_config *cfg, const struct client_config *over)
{
	if (over->workers)
		cfg->workers = over->workers;
	if (over->dead_timeout_ms)
		cfg->dead_timeout_ms = over->dead_timeout_ms;
	if (over->loss_timeout_s)
		cfg->loss_timeout_s = over->loss_timeout_s;
	if (over->io_timeout_s)
		cfg->io_timeout_s = over->io_timeout_s;
	if (over->host_id[0])
		snprintf(cfg->host_id, sizeof(cfg->host_id), "%s", over->host_id);
	if (over->key_file[0])
		snprintf(cfg->key_file, sizeof(cfg->key_file), "%s", over->key_file);
	if (over->metrics[0])
		snprintf(cfg->metrics, sizeof(cfg->metrics), "%s", over->metrics);
	if (over->max_io_size)
		cfg->max_io_size = over->max_io_size;
	if (over->poll.on)
		cfg->poll.on = true;
	if (over->poll_idle_set) {
		cfg->poll.idle_us = over->poll.idle_us;
		cfg->poll_idle_set = true;
	}
}

const struct map_conf *client_conf_find_map(const struct client_config *cfg, const char *name)
{
	for (unsigned int i = 0; i < cfg->nmaps; i++)
		if (!strcmp(cfg->maps[i].name, name))
			return &cfg->maps[i];
	return NULL;
}

/* ---- reading ---- */

struct parse_state {
	struct client_config *cfg;
	struct map_conf *map; /* the [map NAME] under way, or NULL */
	bool has_server;
};

static int on_section(void *arg, const char *kind, const char *name, char *msg, size_t len)
{
	struct parse_state *ps = arg;
	char why[256];

	ps->map = NULL;
	if (!strcmp(kind, "client") && !*name)
		return 0;
	if (strcmp(kind, "map"))
		return errmsg(msg, len, "unknown section [%s%s%s] (known: [client], [map NAME])",
			      kind, *name ? " " : "", name);
	if (!*name)
		return errmsg(msg, len, "a map section needs the device's name: [map NAME]");
	if (cli_name_check(name, why, sizeof(why)))
		return errmsg(msg, len, "[map %s]: %s", name, why + strlen("--name "));
	if (client_conf_find_map(ps->cfg, name))
		return errmsg(msg, len, "a second [map %s]: each name is mapped once", name);
	if (ps->cfg->nmaps == CLIENT_CONF_MAX_MAPS)
		return errmsg(msg, len, "more than %d maps", CLIENT_CONF_MAX_MAPS);
	ps->map = &ps->cfg->maps[ps->cfg->nmaps++];
	memset(ps->map, 0, sizeof(*ps->map));
	snprintf(ps->map->name, sizeof(ps->map->name), "%s", name);
	ps->has_server = false;
	return 0;
}

static int map_key(struct parse_state *ps, const char *key, const char *val, char *msg,
		   size_t len)
{
	struct map_conf *m = ps->map;
	const char *why;
	bool b;

	if (!strcmp(key, "server")) {
		if (strchr(val, ','))
			return errmsg(msg, len, "server = '%s': several addresses (multipath) are not "
				      "supported yet; give one", val);
		if (endpoint_parse(val, IBNBD_DEFAULT_PORT, &m->server, &why))
			return errmsg(msg, len, "bad server address '%s': %s", val, why);
		ps->has_server = true;
		return 0;
	}
	if (!strcmp(key, "export")) {
		if (!*val || strlen(val) >= sizeof(m->export_name))
			return errmsg(msg, len, "export must be a name of 1 to %zu bytes",
				      sizeof(m->export_name) - 1);
		snprintf(m->export_name, sizeof(m->export_name), "%s", val);
		return 0;
	}
	if (!strcmp(key, "ro")) {
		if (ini_bool(val, &b))
			return errmsg(msg, len, "ro must be yes or no, not '%s'", val);
		m->read_only = b;
		return 0;
	}
	if (!strcmp(key, "loss_timeout"))
		return cli_loss_timeout(val, key, &m->loss_timeout_s, msg, len);
	return errmsg(msg, len, "unknown key '%s' in a map section (known: server, export, ro, "
		      "loss_timeout)", key);
}

static int on_key(void *arg, const char *key, char *val, char *msg, size_t len)
{
	struct parse_state *ps = arg;

	if (ps->map)
		return map_key(ps, key, val, msg, len);
	return client_conf_set(ps->cfg, key, val, key, msg, len);
}

static int on_section_end(void *arg, char *msg, size_t len)
{
	struct parse_state *ps = arg;

	if (!ps->map)
		return 0;
	if (!ps->has_server)
		return errmsg(msg, len, "map '%s' has no 'server =' line", ps->map->name);
	if (!ps->map->export_name[0])
		return errmsg(msg, len, "map '%s' has no 'export =' line", ps->map->name);
	return 0;
}

static const struct ini_ops client_ini = {
	.section = on_section,
	.key = on_key,
	.section_end = on_section_end,
};

int client_conf_parse(struct client_config *cfg, FILE *f, const char *path, char *err,
		      size_t errlen)
{
	struct parse_state ps = { .cfg = cfg };

	return ini_parse(f, path, &client_ini, &ps, err, errlen);
}

int client_conf_load(struct client_config *cfg, const char *path, char *err, size_t errlen)
{
	struct parse_state ps = { .cfg = cfg };

	return ini_load(path, &client_ini, &ps, err, errlen);
}

/* ---- editing ---- */

int client_conf_format_map(const struct map_conf *m, char *buf, size_t len)
{
	bool v6 = strchr(m->server.host, ':') != NULL;
	char loss[32] = "";
	int n;

	if (m->loss_timeout_s)
		snprintf(loss, sizeof(loss), "loss_timeout = %d\n",
			 m->loss_timeout_s < 0 ? 0 : m->loss_timeout_s);
	n = snprintf(buf, len, "[map %s]\nserver = %s%s%s:%u\nexport = %s\n%s%s", m->name,
		     v6 ? "[" : "", m->server.host, v6 ? "]" : "", m->server.port,
		     m->export_name, m->read_only ? "ro\n" : "", loss);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : n;
}

/* The whole file, NUL-terminated; an absent file is empty. */
static int read_all(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	*out = NULL;
	*outlen = 0;
	if (!f) {
		if (errno == ENOENT)
			return 0;
		errmsg(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	for (;;) {
		size_t got;

		if (cap - n < 4096) {
			char *nb = realloc(buf, cap + 65536);

			if (!nb) {
				free(buf);
				fclose(f);
				return -ENOMEM;
			}
			buf = nb;
			cap += 65536;
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		free(buf);
		fclose(f);
		errmsg(err, errlen, "%s: read error", path);
		return -EIO;
	}
	fclose(f);
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	return 0;
}

/* Checks that text parses, then puts it in place of path: a file beside
 * it (same directory, so the rename is atomic), fsync, rename, fsync of
 * the directory. An existing file's mode is kept; a new one is 0644. */
static int replace_file(const char *path, const char *text, size_t len, char *err,
			size_t errlen)
{
	struct client_config *check = calloc(1, sizeof(*check));
	char tmp[4200], dir[4200], why[512];
	mode_t mode = 0644;
	struct stat st;
	FILE *mf;
	int fd, ret, dfd;

	if (!check)
		return -ENOMEM;
	mf = fmemopen((void *)text, len ? len : 1, "r");
	ret = mf ? client_conf_parse(check, mf, path, why, sizeof(why)) : -ENOMEM;
	if (mf)
		fclose(mf);
	free(check);
	if (ret)
		return errmsg(err, errlen, "the edited file would not be valid, left unchanged: %s",
			      why);
	if (!stat(path, &st))
		mode = st.st_mode & 07777;
	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		ret = -errno;
		errmsg(err, errlen, "cannot write beside %s: %s", path, strerror(-ret));
		return ret;
	}
	if (fchmod(fd, mode) < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
		ret = errno ? -errno : -EIO;
		close(fd);
		unlink(tmp);
		errmsg(err, errlen, "cannot write %s: %s", tmp, strerror(-ret));
		return ret;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		ret = -errno;
		unlink(tmp);
		errmsg(err, errlen, "cannot replace %s: %s", path, strerror(-ret));
		return ret;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

int client_conf_add_map(const char *path, const struct map_conf *m, char *err, size_t errlen)
{
	static const char head[] = "# ibnbd-client configuration: see ibnbd-client.conf(5)\n";
	char sect[1024], *old, *text;
	size_t oldlen, len;
	int ret, n;

	n = client_conf_format_map(m, sect, sizeof(sect));
	if (n < 0)
		return errmsg(err, errlen, "map '%s': too long to write", m->name);
	ret = read_all(path, &old, &oldlen, err, errlen);
	if (ret)
		return ret;
	text = malloc(oldlen + sizeof(head) + (size_t)n + 2);
	if (!text) {
		free(old);
		return -ENOMEM;
	}
	len = 0;
	if (!old) {
		memcpy(text, head, sizeof(head) - 1);
		len = sizeof(head) - 1;
	} else {
		memcpy(text, old, oldlen);
		len = oldlen;
		if (len && text[len - 1] != '\n')
			text[len++] = '\n';
	}
	text[len++] = '\n';
	memcpy(text + len, sect, (size_t)n);
	len += (size_t)n;
	ret = replace_file(path, text, len, err, errlen);
	free(old);
	free(text);
	return ret;
}

/* text[0..len) without the comment lines at its end. */
static size_t drop_comments_above(const char *text, size_t len)
{
	while (len) {
		size_t start = len - 1, p;

		while (start && text[start - 1] != '\n')
			start--;
		p = start;
		while (p < len && (text[p] == ' ' || text[p] == '\t'))
			p++;
		if (p == len || (text[p] != '#' && text[p] != ';'))
			break;
		len = start;
	}
	return len;
}

int client_conf_remove_map(const char *path, const char *name, char *err, size_t errlen)
{
	char *old, *text, *line, *next, *pending = NULL, kind[64], sname[256];
	size_t oldlen, len = 0;
	bool dropping = false, found = false;
	int ret;

	ret = read_all(path, &old, &oldlen, err, errlen);
	if (ret)
		return ret;
	if (!old)
		return errmsg(err, errlen, "%s does not exist: no map '%s' in it", path, name), -ENOENT;
	text = malloc(oldlen + 1);
	if (!text) {
		free(old);
		return -ENOMEM;
	}
	/* Blank and comment lines at the end of a dropped section belong to
	 * what follows: kept if another section follows. */
	for (line = old; *line; line = next) {
		char one[8192];
		size_t n;
		bool header;

		next = line + strcspn(line, "\n");
		if (*next)
			next++;
		n = (size_t)(next - line);
		snprintf(one, sizeof(one), "%.*s", (int)(n < sizeof(one) ? n : sizeof(one) - 1), line);
		header = ini_line_section(one, kind, sizeof(kind), sname, sizeof(sname));
		if (header) {
			bool drop = !strcmp(kind, "map") && !strcmp(sname, name);

			if (dropping && !drop && pending) {
				memcpy(text + len, pending, (size_t)(line - pending));
				len += (size_t)(line - pending);
			}
			pending = NULL;
			dropping = drop;
			found |= drop;
			/* With it go the comment lines right above it, and the
			 * blank line client_conf_add_map() put before it. */
			if (drop) {
				len = drop_comments_above(text, len);
				if (len >= 2 && text[len - 1] == '\n' && text[len - 2] == '\n')
					len--;
			}
		} else if (dropping) {
			const char *t = one + strspn(one, " \t\r\n");

			if (!*t || *t == '#' || *t == ';') {
				if (!pending)
					pending = line;
			} else {
				pending = NULL;
			}
		}
		if (!dropping) {
			memcpy(text + len, line, n);
			len += n;
		}
	}
	ret = found ? replace_file(path, text, len, err, errlen)
		    : (errmsg(err, errlen, "%s has no [map %s]", path, name), -ENOENT);
	free(old);
	free(text);
	return ret;
}
