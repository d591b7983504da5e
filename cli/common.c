/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <sodium.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "fileio.h"

void log_error(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout); /* keep the order of what was said when both go to one pipe */
	fputs("shoal: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void log_info(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int usage_error(const char *verb, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "shoal %s: ", verb);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'shoal %s --help'.\n", verb);
	return EXIT_USAGE;
}

int exit_code_for(int k)
{
	switch (-k) {
	case EBADMSG:
	case EILSEQ:
	case EKEYREJECTED:
	case EKEYEXPIRED:
	case ENOKEY:
	case EPROTONOSUPPORT:
	case EPERM:
		return EXIT_INVALID;
	default:
		return EXIT_FAIL;
	}
}

int run_verbs(const char *prog, const struct verb *verbs, size_t n, int argc, char **argv)
{
	if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") || !strcmp(argv[0], "help")) {
		FILE *f = argc < 1 ? stderr : stdout;

		fprintf(f, "Usage: %s VERB [OPTIONS...]\n\nVerbs:\n", prog);
		for (size_t i = 0; i < n; i++)
			fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
		fprintf(f, "\nRun '%s VERB --help' for the options of a verb.\n", prog);
		return argc < 1 ? EXIT_USAGE : EXIT_OK;
	}
	for (size_t i = 0; i < n; i++)
		if (!strcmp(argv[0], verbs[i].name))
			return verbs[i].run(argc, argv);
	fprintf(stderr, "%s: unknown verb '%s'\nTry '%s --help'.\n", prog, argv[0], prog);
	return EXIT_USAGE;
}

uint64_t now_or_source_date(void)
{
	const char *e = getenv("SOURCE_DATE_EPOCH");
	char *end;

	if (e && *e) {
		unsigned long long v = strtoull(e, &end, 10);

		if (!*end)
			return v;
	}
	return (uint64_t)time(NULL);
}

int time_parse(const char *s, uint64_t now, uint64_t *ret, struct perr *err)
{
	struct tm tm = { 0 };
	unsigned long long v;
	char *end;

	if (s[0] == '@' || s[0] == '+') {
		errno = 0;
		if (!isdigit((unsigned char)s[1]))
			goto bad;
		v = strtoull(s + 1, &end, 10);
		if (errno)
			goto bad;
		if (s[0] == '@') {
			if (*end)
				goto bad;
			*ret = v;
			return 0;
		}
		uint64_t unit, secs;

		switch (*end) {
		case 'd': unit = 86400; break;
		case 'h': unit = 3600; break;
		case 'm': unit = 60; break;
		case 's': unit = 1; break;
		default: goto bad;
		}
		if (end[1] || !mul_u64(v, unit, &secs) || !add_u64(now, secs, ret))
			goto bad;
		return 0;
	}
	end = strptime(s, "%Y-%m-%d", &tm);
	if (!end)
		goto bad;
	if (*end) {
		end = strptime(end, "T%H:%M:%S", &tm);
		if (!end || (*end && strcmp(end, "Z") != 0))
			goto bad;
	}
	{
		time_t t = timegm(&tm);

		if (t < 0)
			goto bad;
		*ret = (uint64_t)t;
	}
	return 0;
bad:
	return perr_set(err, -EINVAL,
			"'%s' is not a time: use 2027-01-31, 2027-01-31T12:00:00Z, @UNIXSECONDS or +30d/+12h/+90m/+60s",
			s);
}

const char *size_format(uint64_t n, char *buf, size_t size)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	size_t u = 0;

	while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, size, "%" PRIu64 " B", n);
	else
		snprintf(buf, size, "%.1f %s", v, units[u]);
	return buf;
}

int size_parse(const char *s, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case '\0': break;
	case 'K': case 'k': v <<= 10; end++; break;
	case 'M': case 'm': v <<= 20; end++; break;
	case 'G': case 'g': v <<= 30; end++; break;
	default: return -EINVAL;
	}
	if (*end)
		return -EINVAL;
	*ret = v;
	return 0;
}

double mono_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress_draw(struct progress *p, bool final)
{
	char a[32], b[32];
	double el = mono_seconds() - p->started;
	double frac = p->total ? (double)p->done / (double)p->total : 1.0;
	int width = 30, fill = (int)(frac * width + 0.5);
	double rate = el > 0 ? (double)p->done / el : 0;

	fprintf(stderr, "\r%-10s [", p->what);
	for (int i = 0; i < width; i++)
		fputc(i < fill ? '#' : '.', stderr);
	fprintf(stderr, "] %3d%% %s of %s, %s/s ", (int)(frac * 100), size_format(p->done, a, sizeof(a)),
		size_format(p->total, b, sizeof(b)), size_format((uint64_t)rate, (char[32]){ 0 }, 32));
	if (final)
		fputc('\n', stderr);
	fflush(stderr);
}

void progress_start(struct progress *p, const char *what, uint64_t total)
{
	*p = (struct progress){ .what = what, .total = total, .started = mono_seconds(),
				.tty = isatty(STDERR_FILENO) && !getenv("SHOAL_NO_PROGRESS") };
}

void progress_update(struct progress *p, uint64_t done)
{
	double t;

	p->done = done;
	if (!p->tty)
		return;
	t = mono_seconds();
	if (t - p->last_draw < 0.1)
		return;
	p->last_draw = t;
	progress_draw(p, false);
}

void progress_end(struct progress *p)
{
	if (p->tty)
		progress_draw(p, true);
}
