/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hooks.h"

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int visible(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return d->d_name[0] != '.' && n && d->d_name[n - 1] != '~';
}

int hooks_run(const char *dir, const char *const *env, uint64_t timeout_ms, bool stop_on_failure, const int *cancel,
	      hooks_report_fn report, void *ud, struct perr *err)
{
	struct dirent **list = NULL;
	int n, k = 0, ran = 0;
	bool failed = false;

	n = scandir(dir, &list, visible, name_cmp);
	if (n < 0)
		return errno == ENOENT ? 0 : perr_set(err, -errno, "%s: %s", dir, strerror(errno));
	for (int i = 0; i < n; i++) {
		char path[PATH_MAX];
		struct spawn_result r;
		struct stat st;
		const char *argv[2] = { path, NULL };

		if (k < 0 || (failed && stop_on_failure))
			goto next;
		if (snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name) >= (int)sizeof(path) ||
		    stat(path, &st) < 0 || !S_ISREG(st.st_mode) || access(path, X_OK) < 0)
			goto next; /* not an executable: documentation, a disabled hook */
		if ((k = spawn_run(argv, env, timeout_ms, cancel, &r, err)) < 0) {
			perr_prefix(err, k, "%s: ", path);
			goto next;
		}
		ran++;
		if (report)
			report(ud, list[i]->d_name, &r);
		if ((r.status != 0 || r.timed_out) && !failed) {
			char out[160];

			failed = true;
			snprintf(out, sizeof(out), "%.*s", (int)sizeof(out) - 1, r.output);
			out[strcspn(out, "\n")] = '\0';
			if (r.timed_out)
				perr_set(err, -ECANCELED, "%s ran out of its %" PRIu64 " ms%s%s", path, timeout_ms,
					 *out ? ": " : "", out);
			else
				perr_set(err, -ECANCELED, "%s exited with status %d%s%s", path, r.status, *out ? ": " : "",
					 out);
		}
next:
		free(list[i]);
	}
	free(list);
	if (k < 0)
		return k;
	return failed ? -ECANCELED : ran;
}
