/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The power-cut shim checked against its own model. A workload writes files
 * in known patterns (write + fsync, writes never synced, rename with and
 * without a directory fsync, truncate, a child process, stdio, SQLite in WAL
 * mode with synchronous=FULL) under the shim; the driver runs it once to
 * count its ops and then cuts the power before every op K in turn. After each
 * cut the files must be exactly what the model says is durable at that
 * point, SQLite must pass PRAGMA integrity_check and hold every transaction
 * whose COMMIT returned.
 *
 * usage: test-powercut SHIM.so        (driver; exit 0 pass, 1 fail, 77 skip)
 *        test-powercut run ROOT PROGRESS | child ROOT | check ROOT PROGRESS */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "prng.h"

#define N_TXN 12

static const char *self;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "test-powercut: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

/* out = a/b, or die: the test's paths are short */
static void join(char out[4096], const char *a, const char *b)
{
	if (snprintf(out, 4096, "%s/%s", a, b) >= 4096)
		die("path too long: %s", a);
}

static void pattern(uint8_t *buf, size_t len, uint64_t seed)
{
	prng_fill(&seed, buf, len);
}

/* ---- the workload ------------------------------------------------------- */

static int progress_fd = -1;

/* Written outside the root, so the shim passes it through. It is written
 * after a step's last op and before the next step's first op, so a cut
 * before op K leaves exactly the steps whose ops all completed. */
static void step_done(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void step_done(const char *fmt, ...)
{
	char line[64];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);

	va_end(ap);
	line[n++] = '\n';
	if (write(progress_fd, line, (size_t)n) != n)
		die("progress: %s", strerror(errno));
}

static void xfsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fsync(fd) < 0)
		die("fsync %s: %s", path, strerror(errno));
	close(fd);
}

static void put_file(const char *path, uint64_t seed, size_t len, bool sync)
{
	uint8_t buf[8192];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || len > sizeof(buf))
		die("open %s: %s", path, strerror(errno));
	pattern(buf, len, seed);
	if (write(fd, buf, len) != (ssize_t)len || (sync && fsync(fd) < 0))
		die("write %s: %s", path, strerror(errno));
	close(fd);
}

static void sql(sqlite3 *db, const char *q)
{
	char *err = NULL;

	if (sqlite3_exec(db, q, NULL, NULL, &err) != SQLITE_OK)
		die("sql %s: %s", q, err);
}

static int child(const char *root)
{
	char p[4096];

	join(p, root, "sub/e.dat");
	put_file(p, 6, 3000, true);
	join(p, root, "sub");
	xfsync_path(p);
	return 0;
}

static int run(const char *root, const char *progress)
{
	char a[4096], b[4096], c[4096], ct[4096], sub[4096], p[4096];
	int fd;

	setpgid(0, 0);	/* the cut takes our process group down with us */
	progress_fd = open(progress, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (progress_fd < 0)
		die("%s: %s", progress, strerror(errno));
	join(a, root, "a.dat");
	join(b, root, "b.dat");
	join(c, root, "c.dat");
	join(ct, root, "c.tmp");
	join(sub, root, "sub");

	put_file(a, 1, 8192, true);		/* 1: a durable (file + dir) */
	xfsync_path(root);
	step_done("step 1");
	char xs[50];

	memset(xs, 'X', sizeof(xs));
	fd = open(a, O_WRONLY | O_CLOEXEC);	/* 2: an overwrite never synced */
	if (fd < 0 || pwrite(fd, xs, sizeof(xs), 50) != (ssize_t)sizeof(xs))
		die("pwrite: %s", strerror(errno));
	step_done("step 2");
	put_file(b, 2, 5000, true);		/* 3: synced file, dir not synced */
	step_done("step 3");
	put_file(ct, 3, 7000, true);		/* 4: rename, dir not synced */
	if (rename(ct, c) < 0)
		die("rename: %s", strerror(errno));
	step_done("step 4");
	xfsync_path(root);			/* 5: now b and c are durable */
	step_done("step 5");
	if (ftruncate(fd, 1000) < 0)		/* 6: truncate, not synced */
		die("ftruncate: %s", strerror(errno));
	step_done("step 6");
	if (fdatasync(fd) < 0)			/* 7: step 2 and 6 become durable */
		die("fdatasync: %s", strerror(errno));
	close(fd);
	step_done("step 7");
	put_file(ct, 4, 6000, true);		/* 8: atomic replace of c */
	if (rename(ct, c) < 0)
		die("rename: %s", strerror(errno));
	xfsync_path(root);
	step_done("step 8");
	if (unlink(b) < 0)			/* 9: unlink, dir not synced */
		die("unlink: %s", strerror(errno));
	step_done("step 9");
	if (mkdir(sub, 0755) < 0)		/* 10: a new dir, synced inside only */
		die("mkdir: %s", strerror(errno));
	join(p, sub, "d.dat");
	put_file(p, 5, 4000, true);
	xfsync_path(sub);
	step_done("step 10");
	xfsync_path(root);			/* 11: sub, d durable; b gone for good */
	step_done("step 11");
	pid_t pid = fork();			/* 12: a child process writes e */

	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		execl(self, self, "child", root, (char *)NULL);
		_exit(127);
	}
	int status;

	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		die("child failed (status %d)", status);
	step_done("step 12");
	join(p, sub, "f.txt");
	FILE *f = fopen(p, "w");		/* 13: stdio, synced */

	if (!f)
		die("fopen: %s", strerror(errno));
	for (int i = 0; i < 300; i++)
		fprintf(f, "line %d\n", i);
	if (fflush(f) || fsync(fileno(f)) || fclose(f))
		die("stdio: %s", strerror(errno));
	xfsync_path(sub);
	step_done("step 13");
	if (!(f = fopen(p, "a")))		/* 14: stdio appends never synced */
		die("fopen: %s", strerror(errno));
	for (int i = 0; i < 3000; i++)
		fprintf(f, "more %d\n", i);
	if (fclose(f))
		die("fclose: %s", strerror(errno));
	step_done("step 14");

	sqlite3 *db;				/* 15: SQLite transactions */

	join(p, root, "state.db");
	if (sqlite3_open(p, &db) != SQLITE_OK)
		die("sqlite open %s", p);
	sql(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
		"CREATE TABLE IF NOT EXISTS t (i INTEGER PRIMARY KEY, v BLOB);"
		"CREATE TABLE IF NOT EXISTS total (n INTEGER); INSERT INTO total VALUES (0);");
	step_done("step 15");
	for (int i = 1; i <= N_TXN; i++) {
		char q[256];

		snprintf(q, sizeof(q), "BEGIN; INSERT INTO t VALUES (%d, randomblob(%d));"
			 "UPDATE total SET n = n + %d; COMMIT;", i, 500 * i, i);
		sql(db, q);
		step_done("txn %d", i);
	}
	sql(db, "PRAGMA wal_checkpoint(TRUNCATE)");
	step_done("step 16");
	sqlite3_close(db);
	step_done("step 17");
	return 0;
}

/* ---- the check ------------------------------------------------------------ */

static int failures;

static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("  ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	failures++;
}

/* The file must be absent (len < 0) or hold exactly want[0..len). */
static void expect_file(const char *root, const char *name, const uint8_t *want, long len)
{
	char p[4096];
	static uint8_t got[1 << 16];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", root, name);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (len < 0) {
		if (fd >= 0)
			bad("%s exists, the model says it is gone", name);
		if (fd >= 0)
			close(fd);
		return;
	}
	if (fd < 0) {
		bad("%s missing: %s", name, strerror(errno));
		return;
	}
	ssize_t n = read(fd, got, sizeof(got));

	close(fd);
	if (n != len || memcmp(got, want, (size_t)len))
		bad("%s: %zd bytes that differ from the durable %ld", name, n, len);
}

static void expect_seeded(const char *root, const char *name, uint64_t seed, long len, bool present)
{
	uint8_t buf[8192];

	pattern(buf, sizeof(buf), seed);
	expect_file(root, name, buf, present ? len : -1);
}

static void expect_only(const char *root, const char *const *allowed)
{
	DIR *d = opendir(root);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		bool ok = e->d_name[0] == '.';

		for (const char *const *a = allowed; *a && !ok; a++)
			ok = !strcmp(*a, e->d_name);
		if (!ok)
			bad("%s/%s exists, the model has no such durable entry", root, e->d_name);
	}
	closedir(d);
}

static void check_db(const char *root, int committed, bool created)
{
	char p[4096];
	sqlite3 *db;
	sqlite3_stmt *s;
	struct stat st;

	join(p, root, "state.db");
	if (stat(p, &st) < 0) {
		if (created)
			bad("state.db missing after its schema committed");
		return;
	}
	if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		bad("state.db does not open: %s", sqlite3_errmsg(db));
		sqlite3_close(db);
		return;
	}
	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(s, 0), "ok"))
		bad("integrity_check: %s", sqlite3_errmsg(db));
	sqlite3_finalize(s);
	if (!created) {
		sqlite3_close(db);
		return;
	}
	int rows = -1, maxi = 0, sum = -1, total = -2;

	if (sqlite3_prepare_v2(db, "SELECT count(*), coalesce(max(i), 0), coalesce(sum(i), 0), "
			       "(SELECT n FROM total) FROM t", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW) {
		rows = sqlite3_column_int(s, 0);
		maxi = sqlite3_column_int(s, 1);
		sum = sqlite3_column_int(s, 2);
		total = sqlite3_column_int(s, 3);
	} else {
		bad("query: %s", sqlite3_errmsg(db));
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	/* every committed one; the one in flight may or may not have made it */
	if (rows != maxi || sum != total || rows < committed || rows > committed + 1)
		bad("db: rows %d max %d sum %d total %d, committed %d", rows, maxi, sum, total, committed);
}

static int check(const char *root, const char *progress)
{
	FILE *f = fopen(progress, "r");
	char line[64];
	int s = 0, txn = 0, v;
	uint8_t a[8192];

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "step %d", &v) == 1)
			s = v;
		else if (sscanf(line, "txn %d", &v) == 1)
			txn = v;
	}
	if (f)
		fclose(f);
	pattern(a, sizeof(a), 1);
	if (s >= 7)
		memset(a + 50, 'X', 50);
	expect_file(root, "a.dat", a, s >= 7 ? 1000 : s >= 1 ? 8192 : -1);
	expect_seeded(root, "b.dat", 2, 5000, s >= 5 && s < 11);
	expect_seeded(root, "c.dat", s >= 8 ? 4 : 3, s >= 8 ? 6000 : 7000, s >= 5);
	expect_seeded(root, "sub/d.dat", 5, 4000, s >= 11);
	expect_seeded(root, "sub/e.dat", 6, 3000, s >= 12);
	if (s >= 13) {
		size_t o = 0;

		static char text2[65536];

		for (int i = 0; i < 300; i++)
			o += (size_t)snprintf(text2 + o, sizeof(text2) - o, "line %d\n", i);
		for (int i = 0; s >= 17 && i < 3000; i++)	/* the run was not cut */
			o += (size_t)snprintf(text2 + o, sizeof(text2) - o, "more %d\n", i);
		expect_file(root, "sub/f.txt", (const uint8_t *)text2, (long)o);
	} else {
		expect_file(root, "sub/f.txt", NULL, -1);
	}
	expect_only(root, (const char *const[]){ "a.dat", "b.dat", "c.dat", "sub", "state.db",
						  "state.db-wal", "state.db-shm", "state.db-journal", NULL });
	char p[4096];
	struct stat st;

	join(p, root, "sub");
	if (s >= 11)
		expect_only(p, (const char *const[]){ "d.dat", "e.dat", "f.txt", NULL });
	else if (stat(p, &st) == 0)
		bad("sub exists, but its parent was never synced after mkdir");
	check_db(root, txn, s >= 15);
	return failures ? 1 : 0;
}

/* ---- the driver ------------------------------------------------------------ */

static void rm_rf(const char *path)
{
	fflush(stdout);
	pid_t pid = fork();

	if (pid == 0) {
		execlp("rm", "rm", "-rf", path, (char *)NULL);
		_exit(127);
	}
	waitpid(pid, NULL, 0);
}

/* Runs the workload in a fresh root; returns its wait status. */
static int spawn_run(const char *base, const char *shim, long at)
{
	char root[4096], st[4096], prog[4096], k[32];
	int status;

	join(root, base, "root");
	join(st, base, "state");
	join(prog, base, "progress");
	rm_rf(root);
	rm_rf(st);
	unlink(prog);
	if (mkdir(root, 0755) < 0 || mkdir(st, 0755) < 0)
		die("mkdir: %s", strerror(errno));
	fflush(stdout);
	pid_t pid = fork();

	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		setenv("LD_PRELOAD", shim, 1);
		setenv("SHOAL_POWERCUT_ROOT", root, 1);
		setenv("SHOAL_POWERCUT_STATE", st, 1);
		setenv("SHOAL_POWERCUT_KILL_GROUP", "1", 1);
		if (at > 0) {
			snprintf(k, sizeof(k), "%ld", at);
			setenv("SHOAL_POWERCUT_AT", k, 1);
		} else {
			setenv("SHOAL_POWERCUT_COUNT_ONLY", "1", 1);
		}
		execl(self, self, "run", root, prog, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid: %s", strerror(errno));
	/* The cut may have been made by a child of the run (it took the
	 * whole group down, the run first): wait until the group is gone, so
	 * that the cutter has finished restoring the files before they are
	 * looked at. Bounded: 10 s. */
	for (int i = 0; i < 1000 && kill(-pid, 0) == 0; i++)
		usleep(10000);
	return status;
}

static long read_num(const char *path)
{
	FILE *f = fopen(path, "r");
	long n = -1;

	if (!f || fscanf(f, "%ld", &n) != 1)
		n = -1;
	if (f)
		fclose(f);
	return n;
}

static bool has_notes(const char *base)
{
	char p[4096], line[4096];
	FILE *f;
	bool any = false;

	join(p, base, "state/notes");
	if (!(f = fopen(p, "r")))
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "LOST") || strstr(line, "FATAL")) {
			printf("  shim: %s", line);
			any = true;
		}
	}
	fclose(f);
	return any;
}

static int drive(const char *shim)
{
	char base[] = "/tmp/test-powercut.XXXXXX", p[4096], root[4096], prog[4096];
	int status, bad_runs = 0;

	if (access(shim, R_OK) < 0)
		die("%s: %s", shim, strerror(errno));
	if (!mkdtemp(base))
		die("mkdtemp: %s", strerror(errno));
	join(root, base, "root");
	join(prog, base, "progress");

	status = spawn_run(base, shim, 0);
	join(p, base, "state/count");
	long total = read_num(p);

	if (!WIFEXITED(status) || WEXITSTATUS(status) || total < 20) {
		printf("counting run failed (status %d, %ld ops)\n", status, total);
		rm_rf(base);
		return 1;
	}
	failures = 0;
	if (check(root, prog)) {
		printf("the uncut run does not end in the expected state\n");
		bad_runs++;
	}
	for (long k = 1; k <= total; k++) {
		status = spawn_run(base, shim, k);
		join(p, base, "state/cut");
		bool died = (WIFEXITED(status) && WEXITSTATUS(status) == 137) ||
			    (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

		failures = 0;
		printf("cut at op %ld/%ld:\n", k, total);
		if (!died || access(p, F_OK) < 0)
			bad("the workload was not cut (status %d)", status);
		if (has_notes(base))
			failures++;
		check(root, prog);
		if (failures)
			bad_runs++;
	}
	printf("%ld cut points, %d runs off the model\n", total, bad_runs);
	rm_rf(base);
	return bad_runs ? 1 : 0;
}

static bool built_with_asan(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[4096];
	bool asan = false;

	while (f && fgets(line, sizeof(line), f))
		asan |= strstr(line, "libasan") != NULL;
	if (f)
		fclose(f);
	return asan;
}

int main(int argc, char **argv)
{
	self = "/proc/self/exe";
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		exe[n] = 0;
		self = exe;
	}
	if (argc == 4 && !strcmp(argv[1], "run"))
		return run(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "child"))
		return child(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "check"))
		return check(argv[2], argv[3]);
	if (argc != 2)
		die("usage: test-powercut SHIM.so");
	if (built_with_asan()) {
		printf("SKIP: the shim is preloaded, and ASan must be the first library loaded\n");
		return 77;
	}
	return drive(argv[1]);
}
