/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The "local fuzzer": runs LLVMFuzzerTestOneInput once on every file named
 * on the command line, or found in a directory named there (and in its
 * subdirectories, one level down), and reports each as a TAP test. This is
 * how the corpus runs on every `meson test`, under any compiler and
 * without libFuzzer. A broken invariant aborts the process, which meson
 * counts as a failure; the "# file" line before it names the input. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

struct run {
	unsigned n;
	unsigned failed;
};

static void not_ok(struct run *run, const char *path, const char *why)
{
	run->n++;
	run->failed++;
	printf("not ok %u - %s # %s\n", run->n, path, why);
	fflush(stdout);
}

static int read_file(const char *path, uint8_t **ret, size_t *ret_len)
{
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n;

		if (cap - len < 4096) {
			uint8_t *p;

			cap = cap ? cap * 2 : 65536;
			p = realloc(buf, cap);
			if (!p) {
				free(buf);
				close(fd);
				return -ENOMEM;
			}
			buf = p;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int k = -errno;

			free(buf);
			close(fd);
			return k;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	/* The input gets exactly its length, so that AddressSanitizer catches a
	 * read one past its end as libFuzzer would. */
	if (len == 0) {
		free(buf);
		buf = NULL;
	} else {
		uint8_t *p = realloc(buf, len);

		if (p)
			buf = p;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

static void run_file(struct run *run, const char *path)
{
	_cleanup_(freep) uint8_t *buf = NULL;
	size_t len;
	int k;

	k = read_file(path, &buf, &len);
	if (k < 0) {
		not_ok(run, path, strerror(-k));
		return;
	}
	printf("# %s (%zu bytes)\n", path, len);
	fflush(stdout);
	/* libFuzzer passes a non-NULL pointer even for an empty input. */
	k = LLVMFuzzerTestOneInput(buf ? buf : (const uint8_t *)"", len);
	run->n++;
	/* 0 and -1 (keep out of the corpus) are the values libFuzzer allows. */
	if (k != 0 && k != -1) {
		run->failed++;
		printf("not ok %u - %s # returned %d\n", run->n, path, k);
	} else {
		printf("ok %u - %s\n", run->n, path);
	}
	fflush(stdout);
}

static void run_path(struct run *run, const char *path, int depth)
{
	struct dirent **names = NULL;
	struct stat st;
	int n;

	if (stat(path, &st) < 0) {
		not_ok(run, path, strerror(errno));
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		run_file(run, path);
		return;
	}
	if (depth > 1)
		return;
	/* Sorted, so that a run is the same everywhere and "ok 17" names the
	 * same file on every machine. */
	n = scandir(path, &names, NULL, alphasort);
	if (n < 0) {
		not_ok(run, path, strerror(errno));
		return;
	}
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;

		if (name[0] != '.') {
			size_t plen = strlen(path) + 1 + strlen(name) + 1;
			_cleanup_(freep) char *sub = malloc(plen);

			if (!sub) {
				not_ok(run, path, "out of memory");
			} else {
				snprintf(sub, plen, "%s/%s", path, name);
				run_path(run, sub, depth + 1);
			}
		}
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	struct run run = { 0 };

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n"
				"Runs the fuzz target once on every file (directories are read two levels deep)\n"
				"and reports the results as TAP.\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++)
		run_path(&run, argv[i], 0);
	/* An empty corpus most likely means a wrong path: fail rather than pass
	 * by testing nothing. */
	if (run.n == 0)
		not_ok(&run, "corpus", "no input found");
	printf("1..%u\n", run.n);
	return run.failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
