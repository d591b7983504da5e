/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libshoal-powercut.so: an LD_PRELOAD shim that simulates a power cut by
 * dropping every change to files under a directory that was not yet made
 * durable, then killing the process (and, if asked, its process group).
 *
 * Environment
 *   SHOAL_POWERCUT_ROOT   directory whose files are tracked; everything else
 *                         passes through untouched.
 *   SHOAL_POWERCUT_STATE  directory for the shared state (op counter, undo
 *                         logs, directory snapshots). Must be on the same
 *                         file system as ROOT (it holds hard links to
 *                         tracked inodes) and outside ROOT.
 *   SHOAL_POWERCUT_AT=K   cut right before the K-th tracked mutating op
 *                         (1-based, counted across every process that
 *                         inherits the environment).
 *   SHOAL_POWERCUT_SEED=S with SHOAL_POWERCUT_MAX=M: K = 1 + splitmix(S) % M.
 *   SHOAL_POWERCUT_COUNT_ONLY=1  count, never cut; STATE/count holds the
 *                         running total as decimal text.
 *   SHOAL_POWERCUT_KILL_GROUP=1  after the cut, SIGKILL the whole process
 *                         group too (run the workload under setsid).
 *   SHOAL_POWERCUT_LOG=1  append "N pid comm op path" to STATE/ops.log for
 *                         every counted op.
 *   SHOAL_POWERCUT_REAL_SYNC=1  also pass fsync() and friends on to the
 *                         disk. By default a tracked fsync only updates the
 *                         model (as eatmydata would): a simulated power cut
 *                         needs no real durability, and a sweep of hundreds
 *                         of runs would otherwise wait on the disk.
 *
 * What is modelled (a page cache that never wrote anything back):
 *   - File data and size. Contents and size of a regular file are durable at
 *     its last fsync()/fdatasync() (or sync()/syncfs()), or as they were when
 *     the shim first saw the file. Every change after that is undone at the
 *     cut: before a write, truncate, hole punch or O_TRUNC, the bytes it
 *     overwrites (within the durable size) go to an undo log; the cut applies
 *     the logs in reverse and truncates to the durable size. fdatasync counts
 *     as fsync (it makes the size durable too). sync_file_range() and msync()
 *     make nothing durable.
 *   - Directory entries. A directory's entries (name -> inode) are durable at
 *     its last fsync() (or sync()/syncfs()), or as they were before the first
 *     change the shim saw in it. Creating, renaming, linking, unlinking,
 *     mkdir and rmdir are undone at the cut unless the directory was fsynced
 *     after them. Each directory stands alone, as POSIX promises and no more:
 *     a rename between two directories of which only one was fsynced leaves
 *     the file under both names or under none. (ext4 would commit the rename
 *     as one journal transaction; being stricter finds code that forgets an
 *     fsync.) A file created and fsynced in a directory that was not fsynced
 *     is gone.
 *   - The outcome is the single "nothing was written back" corner of what a
 *     real disk may show; torn or reordered write-back is not modelled.
 *
 * Not modelled, and recorded in STATE/notes when seen: writes through a
 * shared writable mmap() of a tracked file (SQLite's -shm index; its
 * contents are rebuilt after a crash, so that one is harmless), renaming a
 * directory (taken as durable at once). Invisible to the shim: statically
 * linked programs, raw syscall(2), io_uring.
 *
 * stdio: glibc writes FILE buffers with internal calls that cannot be
 * interposed. A stream opened for writing on a tracked file therefore saves
 * the whole durable contents in the undo log when it is opened and after each
 * fsync of its descriptor; fflush()/fclose() count as ops.
 *
 * Every counted op takes one lock (flock on STATE/lock, plus a mutex for the
 * threads of a process), so the counter is global and an op and its undo
 * record are atomic with respect to a cut in another process. The process
 * that reaches K marks STATE/cut, SIGSTOPs every other process that did a
 * tracked op (they sign in to STATE/pids, with their start time so that a
 * reused pid is left alone), restores the files of every process (the logs
 * live in STATE), SIGKILLs the stopped ones and _exit(137)s: nobody who
 * waits for one of them sees the files before they are restored; a process that had not signed in dies at
 * its first op. Nothing in the shim runs atexit handlers.
 *
 * Built for the plain build: under ASan the sanitizer runtime must come
 * first in the library list, so the tests that preload this skip there. */

/* meson passes -D_FILE_OFFSET_BITS=64, which renames open to open64 and so
 * on in the headers; the shim defines both names itself (64-bit off_t only). */
#undef _FILE_OFFSET_BITS
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

_Static_assert(sizeof(off_t) == 8, "the shim assumes a 64-bit off_t");

#define EXPORT __attribute__((visibility("default")))
#define CUT_EXIT 137

/* ---- real functions ---------------------------------------------------- */

#define REAL(ret, name, ...) static ret (*real_##name)(__VA_ARGS__)
REAL(int, open, const char *, int, ...);
REAL(int, openat, int, const char *, int, ...);
REAL(ssize_t, write, int, const void *, size_t);
REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
REAL(ssize_t, writev, int, const struct iovec *, int);
REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
REAL(ssize_t, pwritev2, int, const struct iovec *, int, off_t, int);
REAL(int, ftruncate, int, off_t);
REAL(int, truncate, const char *, off_t);
REAL(int, fallocate, int, int, off_t, off_t);
REAL(int, posix_fallocate, int, off_t, off_t);
REAL(ssize_t, copy_file_range, int, off_t *, int, off_t *, size_t, unsigned int);
REAL(ssize_t, sendfile, int, int, off_t *, size_t);
REAL(int, fsync, int);
REAL(int, fdatasync, int);
REAL(int, syncfs, int);
REAL(void, sync, void);
REAL(int, renameat2, int, const char *, int, const char *, unsigned int);
REAL(int, link, const char *, const char *);
REAL(int, linkat, int, const char *, int, const char *, int);
REAL(int, symlink, const char *, const char *);
REAL(int, symlinkat, const char *, int, const char *);
REAL(int, unlink, const char *);
REAL(int, unlinkat, int, const char *, int);
REAL(int, remove, const char *);
REAL(int, mkdir, const char *, mode_t);
REAL(int, mkdirat, int, const char *, mode_t);
REAL(int, rmdir, const char *);
REAL(FILE *, fopen, const char *, const char *);
REAL(FILE *, fdopen, int, const char *);
REAL(FILE *, freopen, const char *, const char *, FILE *);
REAL(int, fflush, FILE *);
REAL(int, fclose, FILE *);
REAL(void *, mmap, void *, size_t, int, int, int, off_t);
REAL(int, close, int);

/* ---- per-process state ------------------------------------------------- */

static struct {
	bool on;		/* ROOT and STATE set and usable */
	bool count_only, kill_group, log, real_sync;
	uint64_t at;		/* 0: never cut */
	char root[PATH_MAX];
	size_t root_len;
	dev_t root_dev;
	char state[PATH_MAX];
	pid_t pid;		/* the lock fd belongs to this process */
	int lock_fd;
} pc = { .lock_fd = -1 };

static pthread_mutex_t pc_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t pc_once = PTHREAD_ONCE_INIT;
static __thread int in_shim;	/* our own I/O passes straight through */

/* descriptors of tracked stdio streams in this process (see top comment) */
static int stdio_fds[64];
static int n_stdio_fds;

static void *sym(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (!p) {
		static const char m[] = "powercut: missing libc symbol\n";
		(void)!write(2, m, sizeof(m) - 1);
		_exit(127);
	}
	return p;
}

static uint64_t splitmix(uint64_t z)
{
	z += UINT64_C(0x9e3779b97f4a7c15);
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static void init_once(void)
{
#define R(n) real_##n = sym(#n)
	R(open); R(openat); R(write); R(pwrite); R(writev); R(pwritev); R(pwritev2);
	R(ftruncate); R(truncate); R(fallocate); R(posix_fallocate); R(copy_file_range);
	R(sendfile); R(fsync); R(fdatasync); R(syncfs); R(sync); 
	R(renameat2); R(link); R(linkat); R(symlink); R(symlinkat); R(unlink); R(unlinkat);
	R(remove); R(mkdir); R(mkdirat); R(rmdir); R(fopen); R(fdopen); R(freopen);
	R(fflush); R(fclose); R(mmap); R(close);
#undef R
	const char *root = getenv("SHOAL_POWERCUT_ROOT");
	const char *state = getenv("SHOAL_POWERCUT_STATE");
	const char *e;
	struct stat st;

	if (!root || !state || !realpath(root, pc.root) || !realpath(state, pc.state) ||
	    stat(pc.root, &st) < 0)
		return;
	for (const char *const *sub = (const char *const[]){ "undo", "dir", "ino", NULL }; *sub; sub++) {
		char p[PATH_MAX];

		if (snprintf(p, sizeof(p), "%s/%s", pc.state, *sub) >= (int)sizeof(p) ||
		    (real_mkdir(p, 0755) < 0 && errno != EEXIST))
			return;
	}
	pc.root_len = strlen(pc.root);
	pc.root_dev = st.st_dev;
	pc.count_only = (e = getenv("SHOAL_POWERCUT_COUNT_ONLY")) && *e == '1';
	pc.kill_group = (e = getenv("SHOAL_POWERCUT_KILL_GROUP")) && *e == '1';
	pc.log = (e = getenv("SHOAL_POWERCUT_LOG")) && *e == '1';
	pc.real_sync = (e = getenv("SHOAL_POWERCUT_REAL_SYNC")) && *e == '1';
	if ((e = getenv("SHOAL_POWERCUT_AT")))
		pc.at = strtoull(e, NULL, 10);
	else if ((e = getenv("SHOAL_POWERCUT_SEED"))) {
		const char *m = getenv("SHOAL_POWERCUT_MAX");
		uint64_t max = m ? strtoull(m, NULL, 10) : 0;

		if (max)
			pc.at = 1 + splitmix(strtoull(e, NULL, 10)) % max;
	}
	pc.on = true;
}

static bool init(void)
{
	pthread_once(&pc_once, init_once);
	return pc.on && !in_shim;
}

/* ---- small file helpers on the real functions -------------------------- */

static _Noreturn void fail(const char *what);

/* STATE/sub[/name]; the state directory's paths are short */
static void spath(char out[PATH_MAX], const char *sub, const char *name)
{
	if (snprintf(out, PATH_MAX, "%s/%s%s%s", pc.state, sub, name ? "/" : "", name ? name : "") >= PATH_MAX) {
		errno = ENAMETOOLONG;
		fail(sub);
	}
}

static void key_of(char out[64], dev_t dev, ino_t ino)
{
	snprintf(out, 64, "%jx-%jx", (uintmax_t)dev, (uintmax_t)ino);
}

static bool write_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = off < 0 ? real_write(fd, p, len) : real_pwrite(fd, p, len, off);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return false;
		}
		p += n;
		len -= (size_t)n;
		if (off >= 0)
			off += n;
	}
	return true;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	char path[PATH_MAX], line[PATH_MAX + 256];
	va_list ap;
	int fd, n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	spath(path, "notes", NULL);
	fd = real_open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		write_all(fd, line, (size_t)n, -1);
		real_close(fd);
	}
}

static _Noreturn void fail(const char *what)
{
	char m[512];
	int n = snprintf(m, sizeof(m), "powercut: %s: %s\n", what, strerror(errno));

	(void)!real_write(2, m, (size_t)(n > 0 ? n : 0));
	note("FATAL %s: %s", what, strerror(errno));
	_exit(126);
}

/* Lexically normalises an absolute path in place ("//", ".", ".."). */
static void normalise(char *p)
{
	char out[PATH_MAX];
	size_t o = 0;
	const char *s = p;

	while (*s) {
		while (*s == '/')
			s++;
		const char *e = strchrnul(s, '/');
		size_t n = (size_t)(e - s);

		if (n == 0 || (n == 1 && s[0] == '.')) {
		} else if (n == 2 && s[0] == '.' && s[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
		} else if (o + n + 2 < sizeof(out)) {
			out[o++] = '/';
			memcpy(out + o, s, n);
			o += n;
		}
		s = e;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = 0;
	memcpy(p, out, o + 1);
}

static bool fd_path(int fd, char out[PATH_MAX])
{
	char l[64];
	ssize_t n;

	snprintf(l, sizeof(l), "/proc/self/fd/%d", fd);
	n = readlink(l, out, PATH_MAX - 1);
	if (n <= 0)
		return false;
	out[n] = 0;
	return true;
}

/* The absolute path of (dirfd, path), with its directory part resolved
 * through symlinks when it exists. */
static bool abs_path(int dirfd, const char *path, char out[PATH_MAX])
{
	char base[PATH_MAX], dir[PATH_MAX];

	if (!path)
		return false;
	if (path[0] == '/')
		base[0] = 0;
	else if (dirfd == AT_FDCWD ? !getcwd(base, sizeof(base)) : !fd_path(dirfd, base))
		return false;
	if ((size_t)snprintf(out, PATH_MAX, "%s/%s", base, path) >= PATH_MAX)
		return false;
	normalise(out);
	char *slash = strrchr(out, '/');

	if (slash && slash != out) {
		*slash = 0;
		if (realpath(out, dir) && strlen(dir) + strlen(slash + 1) + 2 < PATH_MAX) {
			char name[NAME_MAX + 1];

			if (snprintf(name, sizeof(name), "%s", slash + 1) >= (int)sizeof(name) ||
			    snprintf(out, PATH_MAX, "%s/%s", strcmp(dir, "/") ? dir : "", name) >= PATH_MAX)
				return false;
		} else {
			*slash = '/';
		}
	}
	return true;
}

static bool under_root(const char *p)
{
	return strncmp(p, pc.root, pc.root_len) == 0 && (p[pc.root_len] == '/' || p[pc.root_len] == 0);
}

static void parent_of(const char *p, char out[PATH_MAX])
{
	snprintf(out, PATH_MAX, "%s", p);
	char *s = strrchr(out, '/');

	if (s == out)
		s[1] = 0;
	else if (s)
		*s = 0;
}

static bool ino_linked(const struct stat *st)
{
	char k[64], p[PATH_MAX];

	key_of(k, st->st_dev, st->st_ino);
	spath(p, "ino", k);
	return access(p, F_OK) == 0;
}

/* Is this descriptor a regular file or directory we track? */
static bool fd_tracked(int fd, struct stat *st)
{
	char p[PATH_MAX];

	if (fstat(fd, st) < 0 || (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode)) ||
	    st->st_dev != pc.root_dev)
		return false;
	if (fd_path(fd, p) && under_root(p))
		return true;
	return S_ISREG(st->st_mode) && ino_linked(st);
}

/* ---- the lock and the counter ------------------------------------------ */

static _Noreturn void cut(const char *op, const char *path);

/* The start time of a process (field 22 of /proc/PID/stat), 0 if gone: with
 * the pid it names one process, even once the pid is reused. */
static unsigned long long start_time(pid_t pid)
{
	char p[64], buf[1024];
	unsigned long long t = 0;
	ssize_t n;
	int fd;

	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	if ((fd = real_open(p, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	real_close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *s = strrchr(buf, ')');

	/* after "comm)": state is field 3, starttime field 22 */
	for (int f = 2; s && f < 22; f++)
		s = strchr(s + 1, ' ');
	if (s)
		t = strtoull(s + 1, NULL, 10);
	return t;
}

/* Every process that does a tracked op signs in, so that the cut can stop
 * them all before it restores anything: at a power cut no process runs on
 * and sees the disk go back (or touches a mapping of a file that shrank). */
static void sign_in(void)
{
	char p[PATH_MAX], line[64];
	int fd, n;

	spath(p, "pids", NULL);
	n = snprintf(line, sizeof(line), "%d %llu\n", (int)getpid(), start_time(getpid()));
	fd = real_open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		fail(p);
	write_all(fd, line, (size_t)n, -1);
	real_close(fd);
}

static void signal_everyone(int sig)
{
	char p[PATH_MAX];
	FILE *f;
	int pid;
	unsigned long long t;

	spath(p, "pids", NULL);
	if (!(f = real_fopen(p, "r")))
		return;
	while (fscanf(f, "%d %llu", &pid, &t) == 2)
		if (pid != getpid() && t && start_time(pid) == t)
			kill(pid, sig);
	real_fclose(f);
}

static void unlock(void)
{
	flock(pc.lock_fd, LOCK_UN);
	pthread_mutex_unlock(&pc_mutex);
	in_shim--;
}

static void lock(void)
{
	char p[PATH_MAX];

	in_shim++;
	pthread_mutex_lock(&pc_mutex);
	if (pc.pid != getpid()) {
		/* a forked child shares the parent's open file description,
		 * and with it the flock: it needs one of its own */
		if (pc.lock_fd >= 0)
			real_close(pc.lock_fd);
		spath(p, "lock", NULL);
		pc.lock_fd = real_open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (pc.lock_fd < 0)
			fail(p);
		pc.pid = getpid();
		sign_in();
	}
	while (flock(pc.lock_fd, LOCK_EX) < 0)
		if (errno != EINTR)
			fail("flock");
}

static bool is_cut(void)
{
	char p[PATH_MAX];

	spath(p, "cut", NULL);
	return access(p, F_OK) == 0;
}

/* Counts one mutating op under the lock; cuts when it is the K-th. The
 * caller holds the lock and does its undo record and the real op. */
static void count(const char *op, const char *path)
{
	char p[PATH_MAX], buf[32] = { 0 };
	uint64_t n;
	int fd;

	if (is_cut())
		_exit(CUT_EXIT);	/* the power is already off */
	spath(p, "count", NULL);
	fd = real_open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		fail(p);
	n = pread(fd, buf, sizeof(buf) - 1, 0) > 0 ? strtoull(buf, NULL, 10) : 0;
	n++;
	snprintf(buf, sizeof(buf), "%020ju\n", (uintmax_t)n);
	if (!write_all(fd, buf, 21, 0))
		fail(p);
	real_close(fd);
	if (pc.log) {
		char comm[32] = "?", line[PATH_MAX + 128];
		int c = real_open("/proc/self/comm", O_RDONLY | O_CLOEXEC);

		if (c >= 0) {
			ssize_t k = read(c, comm, sizeof(comm) - 1);

			comm[k > 0 ? k - 1 : 0] = 0;
			real_close(c);
		}
		spath(p, "ops.log", NULL);
		fd = real_open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			int m = snprintf(line, sizeof(line), "%ju %d %s %s %s\n", (uintmax_t)n,
					 (int)getpid(), comm, op, path ? path : "-");
			write_all(fd, line, (size_t)(m > 0 ? m : 0), -1);
			real_close(fd);
		}
	}
	if (!pc.count_only && pc.at && n == pc.at)
		cut(op, path);
}

/* ---- undo logs for file data ------------------------------------------- */
/* STATE/undo/KEY: u64 durable size, then records {u64 off, u64 len, bytes}.
 * STATE/ino/KEY: a hard link that keeps the inode reachable. */

static bool link_ino_path(const char *path, const struct stat *st)
{
	char k[64], p[PATH_MAX];

	key_of(k, st->st_dev, st->st_ino);
	spath(p, "ino", k);
	if (real_linkat(AT_FDCWD, path, AT_FDCWD, p, AT_SYMLINK_FOLLOW) == 0 || errno == EEXIST)
		return true;
	return false;
}

static bool link_ino_fd(int fd, const struct stat *st)
{
	char l[64];

	snprintf(l, sizeof(l), "/proc/self/fd/%d", fd);
	return link_ino_path(l, st);
}

/* Opens (creating with the durable size) the undo log of a file. -1 when the
 * file cannot be tracked (an unlinked inode nobody can see again). */
static int undo_open(int fd, const struct stat *st, uint64_t *durable)
{
	char k[64], p[PATH_MAX];
	uint8_t h[8];
	int u;

	if (!ino_linked(st) && (fd < 0 || !link_ino_fd(fd, st)))
		return -1;
	key_of(k, st->st_dev, st->st_ino);
	spath(p, "undo", k);
	u = real_open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (u < 0)
		fail(p);
	if (pread(u, h, 8, 0) == 8) {
		memcpy(durable, h, 8);
	} else {
		*durable = (uint64_t)st->st_size;
		memcpy(h, durable, 8);
		if (!write_all(u, h, 8, 0))
			fail(p);
	}
	return u;
}

/* Saves the bytes of [off, off + len) that lie within the durable size,
 * before an op overwrites or drops them. */
static void undo_save(int fd, const struct stat *st, uint64_t off, uint64_t len)
{
	uint64_t durable, end;
	int u = undo_open(fd, st, &durable);
	char buf[65536], k[64], ip[PATH_MAX];

	if (u < 0)
		return;
	end = off + len < durable ? off + len : durable;
	off_t at = lseek(u, 0, SEEK_END);

	/* read through the kept link: fd may be write-only */
	key_of(k, st->st_dev, st->st_ino);
	spath(ip, "ino", k);
	fd = real_open(ip, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail(ip);

	while (off < end) {
		size_t want = end - off < sizeof(buf) ? (size_t)(end - off) : sizeof(buf);
		ssize_t n = pread(fd, buf, want, (off_t)off);
		uint64_t hdr[2] = { off, n > 0 ? (uint64_t)n : 0 };

		if (n <= 0)
			break;	/* past the end now (a truncate is logged too) */
		if (!write_all(u, hdr, sizeof(hdr), at) || !write_all(u, buf, (size_t)n, at + 16))
			fail("undo log");
		at += 16 + n;
		off += (uint64_t)n;
	}
	real_close(fd);
	real_close(u);
}

/* A file's data is durable: forget its undo log. */
static void undo_drop(const struct stat *st)
{
	char k[64], p[PATH_MAX];

	key_of(k, st->st_dev, st->st_ino);
	spath(p, "undo", k);
	real_unlink(p);
}

static bool is_stdio_fd(int fd)
{
	for (int i = 0; i < n_stdio_fds; i++)
		if (stdio_fds[i] == fd)
			return true;
	return false;
}

/* stdio writes are invisible: save everything durable up front */
static void undo_save_all(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0)
		undo_save(fd, &st, 0, UINT64_MAX / 2);
}

/* ---- directory snapshots ----------------------------------------------- */
/* STATE/dir/KEY: u32 len + path of the directory, then per entry:
 * u8 type, u64 ino, u32 len + name, u32 len + symlink target. */

static void put(int fd, off_t *at, const void *p, size_t n)
{
	if (!write_all(fd, p, n, *at))
		fail("snapshot");
	*at += (off_t)n;
}

static void put_str(int fd, off_t *at, const char *s, size_t n)
{
	uint32_t l = (uint32_t)n;

	put(fd, at, &l, 4);
	put(fd, at, s, n);
}

static void dir_snapshot(const char *dir, bool refresh)
{
	char k[64], p[PATH_MAX];
	struct stat st;
	DIR *d;
	struct dirent *e;
	int fd;
	off_t at = 0;

	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return;
	key_of(k, st.st_dev, st.st_ino);
	spath(p, "dir", k);
	if (!refresh && access(p, F_OK) == 0)
		return;
	fd = real_open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fail(p);
	put_str(fd, &at, dir, strlen(dir));
	if ((d = opendir(dir))) {
		while ((e = readdir(d))) {
			char ep[PATH_MAX], target[PATH_MAX];
			struct stat es;
			ssize_t tl = 0;
			uint8_t type;
			uint64_t ino;

			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			snprintf(ep, sizeof(ep), "%s/%s", dir, e->d_name);
			if (lstat(ep, &es) < 0)
				continue;
			type = S_ISDIR(es.st_mode) ? 'd' : S_ISLNK(es.st_mode) ? 'l' : 'f';
			if (type == 'l' && (tl = readlink(ep, target, sizeof(target))) < 0)
				tl = 0;
			ino = es.st_ino;
			put(fd, &at, &type, 1);
			put(fd, &at, &ino, 8);
			put_str(fd, &at, e->d_name, strlen(e->d_name));
			put_str(fd, &at, target, (size_t)tl);
		}
		closedir(d);
	}
	real_close(fd);
}

/* Before an entry of `path` disappears: keep its inode reachable. */
static void keep_entry(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISREG(st.st_mode))
		link_ino_path(path, &st);
}

static void prepare_parent(const char *path)
{
	char d[PATH_MAX];

	parent_of(path, d);
	if (under_root(d))
		dir_snapshot(d, false);
}

/* ---- the cut ------------------------------------------------------------ */

static void restore_data(void)
{
	char p[PATH_MAX], ip[PATH_MAX];
	DIR *d;
	struct dirent *e;

	spath(p, "undo", NULL);
	if (!(d = opendir(p)))
		return;
	while ((e = readdir(d))) {
		uint64_t durable, hdr[2];
		off_t *offs = NULL, at = 8;
		size_t n = 0, cap = 0;
		int u, f;

		if (e->d_name[0] == '.')
			continue;
		spath(p, "undo", e->d_name);
		spath(ip, "ino", e->d_name);
		if ((u = real_open(p, O_RDONLY | O_CLOEXEC)) < 0)
			fail(p);
		if ((f = real_open(ip, O_WRONLY | O_CLOEXEC)) < 0)
			fail(ip);
		if (pread(u, &durable, 8, 0) != 8)
			fail("undo header");
		while (pread(u, hdr, 16, at) == 16) {
			if (n == cap && !(offs = realloc(offs, (cap = cap * 2 + 64) * sizeof(*offs))))
				fail("realloc");
			offs[n++] = at;
			at += 16 + (off_t)hdr[1];
		}
		while (n--) {
			char buf[65536];

			if (pread(u, hdr, 16, offs[n]) != 16)
				fail("undo record");
			for (uint64_t done = 0; done < hdr[1];) {
				size_t want = hdr[1] - done < sizeof(buf) ? (size_t)(hdr[1] - done) : sizeof(buf);

				if (pread(u, buf, want, offs[n] + 16 + (off_t)done) != (ssize_t)want ||
				    !write_all(f, buf, want, (off_t)(hdr[0] + done)))
					fail("undo apply");
				done += want;
			}
		}
		free(offs);
		if (real_ftruncate(f, (off_t)durable) < 0)
			fail("undo truncate");
		real_close(f);
		real_close(u);
	}
	closedir(d);
}

struct snap {
	char *path;
	int depth;
	char *buf;
	size_t len;
};

static int snap_cmp(const void *a, const void *b)
{
	return ((const struct snap *)a)->depth - ((const struct snap *)b)->depth;
}

static void rm_rf(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0) {
		DIR *d = fdopendir(fd);
		struct dirent *e;

		while (d && (e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				rm_rf(fd, e->d_name);
		if (d)
			closedir(d);
		else
			real_close(fd);
		real_unlinkat(dirfd, name, AT_REMOVEDIR);
	} else {
		real_unlinkat(dirfd, name, 0);
	}
}

/* Walks the entries of a snapshot; returns false at the end. */
static bool snap_next(const struct snap *s, size_t *at, uint8_t *type, uint64_t *ino,
		      char name[NAME_MAX + 1], char target[PATH_MAX])
{
	uint32_t nl, tl;

	if (*at + 1 + 8 + 4 > s->len)
		return false;
	*type = (uint8_t)s->buf[*at];
	memcpy(ino, s->buf + *at + 1, 8);
	memcpy(&nl, s->buf + *at + 9, 4);
	*at += 13;
	if (nl > NAME_MAX || *at + nl + 4 > s->len)
		return false;
	memcpy(name, s->buf + *at, nl);
	name[nl] = 0;
	*at += nl;
	memcpy(&tl, s->buf + *at, 4);
	*at += 4;
	if (tl >= PATH_MAX || *at + tl > s->len)
		return false;
	memcpy(target, s->buf + *at, tl);
	target[tl] = 0;
	*at += tl;
	return true;
}

static bool snap_find(const struct snap *s, size_t start, const char *want, uint8_t *type, uint64_t *ino)
{
	char name[NAME_MAX + 1], target[PATH_MAX];
	size_t at = start;

	while (snap_next(s, &at, type, ino, name, target))
		if (!strcmp(name, want))
			return true;
	return false;
}

static void restore_dir(const struct snap *s, size_t start)
{
	char name[NAME_MAX + 1], target[PATH_MAX], ip[PATH_MAX], k[64];
	struct stat dst;
	DIR *d;
	struct dirent *e;
	int dfd = real_open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	uint8_t type;
	uint64_t ino;
	size_t at = start;

	if (dfd < 0)
		return;	/* not durable in its own parent: gone */
	fstat(dfd, &dst);
	/* drop what the snapshot does not have */
	if ((d = opendir(s->path))) {
		while ((e = readdir(d))) {
			struct stat es;

			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			if (fstatat(dfd, e->d_name, &es, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			uint8_t t = S_ISDIR(es.st_mode) ? 'd' : S_ISLNK(es.st_mode) ? 'l' : 'f';

			if (snap_find(s, start, e->d_name, &type, &ino) && type == t &&
			    (t == 'd' || ino == (uint64_t)es.st_ino))
				continue;
			rm_rf(dfd, e->d_name);
		}
		closedir(d);
	}
	/* bring back what it has */
	while (snap_next(s, &at, &type, &ino, name, target)) {
		if (faccessat(dfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
			continue;
		if (type == 'd') {
			real_mkdirat(dfd, name, 0755);
		} else if (type == 'l') {
			real_symlinkat(target, dfd, name);
		} else {
			key_of(k, dst.st_dev, (ino_t)ino);
			spath(ip, "ino", k);
			if (real_linkat(AT_FDCWD, ip, dfd, name, 0) < 0)
				note("LOST %s/%s: inode %s was not kept", s->path, name, k);
		}
	}
	real_close(dfd);
}

static void restore_dirs(void)
{
	char p[PATH_MAX];
	struct snap *v = NULL;
	size_t n = 0, cap = 0;
	DIR *d;
	struct dirent *e;

	spath(p, "dir", NULL);
	if (!(d = opendir(p)))
		return;
	while ((e = readdir(d))) {
		struct stat st;
		struct snap s = { 0 };
		uint32_t pl;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		spath(p, "dir", e->d_name);
		if ((fd = real_open(p, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0)
			fail(p);
		s.len = (size_t)st.st_size;
		if (!(s.buf = malloc(s.len + 1)) || pread(fd, s.buf, s.len, 0) != (ssize_t)s.len)
			fail("snapshot read");
		real_close(fd);
		memcpy(&pl, s.buf, 4);
		if (pl >= PATH_MAX || 4 + pl > s.len)
			fail("snapshot header");
		s.path = strndup(s.buf + 4, pl);
		for (const char *c = s.path; *c; c++)
			s.depth += *c == '/';
		if (n == cap && !(v = realloc(v, (cap = cap * 2 + 16) * sizeof(*v))))
			fail("realloc");
		v[n++] = s;
	}
	closedir(d);
	qsort(v, n, sizeof(*v), snap_cmp);
	for (size_t i = 0; i < n; i++) {
		uint32_t pl;

		memcpy(&pl, v[i].buf, 4);
		restore_dir(&v[i], 4 + pl);
		free(v[i].path);
		free(v[i].buf);
	}
	free(v);
}

static void clear_sub(const char *sub)
{
	char p[PATH_MAX];
	int fd;

	spath(p, sub, NULL);
	if ((fd = real_open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return;
	DIR *d = fdopendir(fd);
	struct dirent *e;

	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.')
			real_unlinkat(fd, e->d_name, 0);
	if (d)
		closedir(d);
}

static _Noreturn void cut(const char *op, const char *path)
{
	char p[PATH_MAX], line[PATH_MAX + 128];
	int fd, n;

	spath(p, "cut", NULL);
	fd = real_open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fail(p);
	n = snprintf(line, sizeof(line), "%ju %d %s %s\n", (uintmax_t)pc.at, (int)getpid(), op,
		     path ? path : "-");
	write_all(fd, line, (size_t)(n > 0 ? n : 0), -1);
	real_close(fd);
	/* Frozen, not killed, while the files are put back: whoever waits
	 * for one of them (a parent, `setsid -w`) must not look at the files
	 * before they are restored; a cutter that is a child would race it. */
	signal_everyone(SIGSTOP);
	restore_data();
	restore_dirs();
	clear_sub("undo");
	clear_sub("dir");
	clear_sub("ino");
	signal_everyone(SIGKILL);
	if (pc.kill_group)
		kill(0, SIGKILL);
	_exit(CUT_EXIT);
}

/* ---- sync ---------------------------------------------------------------- */

static void make_all_durable(void)
{
	char p[PATH_MAX];
	DIR *d;
	struct dirent *e;

	clear_sub("undo");
	spath(p, "dir", NULL);
	if (!(d = opendir(p)))
		return;
	while ((e = readdir(d))) {
		char sp[PATH_MAX], dir[PATH_MAX];
		uint32_t pl;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		spath(sp, "dir", e->d_name);
		if ((fd = real_open(sp, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		if (pread(fd, &pl, 4, 0) == 4 && pl < PATH_MAX && pread(fd, dir, pl, 4) == (ssize_t)pl) {
			dir[pl] = 0;
			real_close(fd);
			real_unlink(sp);
			dir_snapshot(dir, true);
		} else {
			real_close(fd);
		}
	}
	closedir(d);
	/* stdio streams keep a full copy of their durable contents */
	for (int i = 0; i < n_stdio_fds; i++)
		undo_save_all(stdio_fds[i]);
}

static void fd_durable(int fd, const struct stat *st)
{
	char p[PATH_MAX];

	if (S_ISDIR(st->st_mode)) {
		if (fd_path(fd, p))
			dir_snapshot(p, true);
		return;
	}
	undo_drop(st);
	if (is_stdio_fd(fd))
		undo_save_all(fd);
}

/* ---- interposers ----------------------------------------------------------- */

/* Counts an op on descriptor fd under the lock, named by its path. */
static void count_fd(const char *name, int fd)
{
	char p[PATH_MAX];

	count(name, fd_path(fd, p) ? p : "?");
}

/* Runs `expr` as a tracked op on descriptor fd: `save` takes the undo record
 * first (with st the file's stat), `after` runs with the result in r_. */
#define FD_OP(name, fd, save, expr, after) do {				\
	struct stat st_;						\
	if (!init() || !fd_tracked(fd, &st_))				\
		return expr;						\
	lock();								\
	count_fd(name, fd);						\
	{ struct stat *st = &st_; (void)st; save; }			\
	__typeof__(expr) r_ = expr;					\
	int e_ = errno;							\
	after;								\
	unlock();							\
	errno = e_;							\
	return r_;							\
} while (0)

static uint64_t fd_pos(int fd, const struct stat *st)
{
	if (fcntl(fd, F_GETFL) & O_APPEND)
		return (uint64_t)st->st_size;
	off_t o = lseek(fd, 0, SEEK_CUR);

	return o < 0 ? 0 : (uint64_t)o;
}

static size_t iov_len(const struct iovec *iov, int n)
{
	size_t l = 0;

	for (int i = 0; i < n; i++)
		l += iov[i].iov_len;
	return l;
}

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	FD_OP("write", fd, undo_save(fd, st, fd_pos(fd, st), len), real_write(fd, buf, len), );
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	FD_OP("pwrite", fd, undo_save(fd, st, (uint64_t)off, len), real_pwrite(fd, buf, len, off), );
}
EXPORT ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) __attribute__((alias("pwrite")));

EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	FD_OP("writev", fd, undo_save(fd, st, fd_pos(fd, st), iov_len(iov, n)), real_writev(fd, iov, n), );
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
	FD_OP("pwritev", fd, undo_save(fd, st, (uint64_t)off, iov_len(iov, n)), real_pwritev(fd, iov, n, off), );
}
EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int n, off_t off) __attribute__((alias("pwritev")));

EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
	FD_OP("pwritev2", fd, undo_save(fd, st, off < 0 ? fd_pos(fd, st) : (uint64_t)off, iov_len(iov, n)),
	      real_pwritev2(fd, iov, n, off, flags), );
}
EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int n, off_t off, int flags)
	__attribute__((alias("pwritev2")));

EXPORT int ftruncate(int fd, off_t len)
{
	FD_OP("ftruncate", fd, undo_save(fd, st, (uint64_t)len, UINT64_MAX / 2), real_ftruncate(fd, len), );
}
EXPORT int ftruncate64(int fd, off_t len) __attribute__((alias("ftruncate")));

EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
	FD_OP("fallocate", fd, if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE |
					    FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE))
		      undo_save(fd, st, (uint64_t)off, UINT64_MAX / 2),
	      real_fallocate(fd, mode, off, len), );
}
EXPORT int fallocate64(int fd, int mode, off_t off, off_t len) __attribute__((alias("fallocate")));

EXPORT int posix_fallocate(int fd, off_t off, off_t len)
{
	FD_OP("posix_fallocate", fd, , real_posix_fallocate(fd, off, len), );
}
EXPORT int posix_fallocate64(int fd, off_t off, off_t len) __attribute__((alias("posix_fallocate")));

EXPORT ssize_t copy_file_range(int in, off_t *in_off, int out, off_t *out_off, size_t len, unsigned int flags)
{
	FD_OP("copy_file_range", out, undo_save(out, st, out_off ? (uint64_t)*out_off : fd_pos(out, st), len),
	      real_copy_file_range(in, in_off, out, out_off, len, flags), );
}

EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t len)
{
	FD_OP("sendfile", out, undo_save(out, st, fd_pos(out, st), len), real_sendfile(out, in, off, len), );
}
EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t len) __attribute__((alias("sendfile")));

/* fsync: the op is counted (a cut lands before it), then made durable */
#define SYNC_OP(name, fd, expr) FD_OP(name, fd, , expr, if (r_ == 0) fd_durable(fd, &st_))

EXPORT int fsync(int fd)
{
	SYNC_OP("fsync", fd, pc.real_sync ? real_fsync(fd) : 0);
}

EXPORT int fdatasync(int fd)
{
	SYNC_OP("fdatasync", fd, pc.real_sync ? real_fdatasync(fd) : 0);
}

EXPORT int syncfs(int fd)
{
	struct stat st;

	if (!init() || fstat(fd, &st) < 0 || st.st_dev != pc.root_dev)
		return real_syncfs(fd);
	lock();
	count("syncfs", NULL);
	int r = pc.real_sync ? real_syncfs(fd) : 0, e = errno;

	if (r == 0)
		make_all_durable();
	unlock();
	errno = e;
	return r;
}

EXPORT void sync(void)
{
	if (!init()) {
		real_sync();
		return;
	}
	lock();
	count("sync", NULL);
	if (pc.real_sync)
		real_sync();
	make_all_durable();
	unlock();
}

/* ---- opening ---------------------------------------------------------------- */

/* open/openat with O_CREAT of a missing file or O_TRUNC of an existing one
 * is a tracked op: counted, its directory and old contents saved. The
 * caller holds the lock. */
static void open_prepare(const char *ap, int flags)
{
	struct stat st;
	bool exists = stat(ap, &st) == 0;
	bool creates = (flags & O_CREAT) && !exists;
	bool truncs = (flags & O_TRUNC) && exists && S_ISREG(st.st_mode) && st.st_size > 0 &&
		      (flags & O_ACCMODE) != O_RDONLY;

	if (!creates && !truncs)
		return;
	count(creates ? "create" : "open-trunc", ap);
	if (creates)
		prepare_parent(ap);
	if (truncs && link_ino_path(ap, &st))
		undo_save(-1, &st, 0, UINT64_MAX / 2);
}

static int do_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	char ap[PATH_MAX];

	if (!init() || !(flags & (O_CREAT | O_TRUNC)) || !abs_path(dirfd, path, ap) || !under_root(ap))
		return real_openat(dirfd, path, flags, mode);
	lock();
	open_prepare(ap, flags);
	int r = real_openat(dirfd, path, flags, mode), e = errno;

	unlock();
	errno = e;
	return r;
}

static mode_t va_mode(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;

	va_start(ap, flags);
	mode_t m = va_mode(flags, ap);

	va_end(ap);
	return do_openat(AT_FDCWD, path, flags, m);
}
EXPORT int open64(const char *path, int flags, ...) __attribute__((alias("open")));

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;

	va_start(ap, flags);
	mode_t m = va_mode(flags, ap);

	va_end(ap);
	return do_openat(dirfd, path, flags, m);
}
EXPORT int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

EXPORT int creat(const char *path, mode_t mode)
{
	return do_openat(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, mode);
}
EXPORT int creat64(const char *path, mode_t mode) __attribute__((alias("creat")));

/* _FORTIFY_SOURCE versions */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);
EXPORT int __open_2(const char *path, int flags)
{
	return do_openat(AT_FDCWD, path, flags, 0);
}
EXPORT int __open64_2(const char *path, int flags) __attribute__((alias("__open_2")));

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	return do_openat(dirfd, path, flags, 0);
}
EXPORT int __openat64_2(int dirfd, const char *path, int flags) __attribute__((alias("__openat_2")));

/* ---- stdio ----------------------------------------------------------------- */

static bool mode_writes(const char *mode)
{
	return mode && (strchr(mode, 'w') || strchr(mode, 'a') || strchr(mode, '+'));
}

static int mode_flags(const char *mode)
{
	int f = strchr(mode, '+') ? O_RDWR : mode[0] == 'r' ? O_RDONLY : O_WRONLY;

	if (mode[0] == 'w')
		f |= O_CREAT | O_TRUNC;
	if (mode[0] == 'a')
		f |= O_CREAT | O_APPEND;
	return f;
}

static FILE *stdio_track(FILE *f)
{
	struct stat st;
	int fd;

	if (!f || (fd = fileno(f)) < 0 || !fd_tracked(fd, &st))
		return f;
	lock();
	if (!is_stdio_fd(fd) && n_stdio_fds < (int)(sizeof(stdio_fds) / sizeof(stdio_fds[0])))
		stdio_fds[n_stdio_fds++] = fd;
	undo_save_all(fd);
	unlock();
	return f;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	char ap[PATH_MAX];

	if (!init() || !mode_writes(mode) || !abs_path(AT_FDCWD, path, ap) || !under_root(ap))
		return real_fopen(path, mode);
	lock();
	open_prepare(ap, mode_flags(mode));
	FILE *f = real_fopen(path, mode);
	int e = errno;

	unlock();
	errno = e;
	return stdio_track(f);
}
EXPORT FILE *fopen64(const char *path, const char *mode) __attribute__((alias("fopen")));

EXPORT FILE *fdopen(int fd, const char *mode)
{
	FILE *f = real_fdopen(fd, mode);

	return init() && mode_writes(mode) ? stdio_track(f) : f;
}

EXPORT FILE *freopen(const char *path, const char *mode, FILE *old)
{
	FILE *f = real_freopen(path, mode, old);

	return init() && mode_writes(mode) ? stdio_track(f) : f;
}
EXPORT FILE *freopen64(const char *path, const char *mode, FILE *old) __attribute__((alias("freopen")));

static void stdio_forget(int fd)
{
	for (int i = 0; i < n_stdio_fds; i++)
		if (stdio_fds[i] == fd)
			stdio_fds[i] = stdio_fds[--n_stdio_fds];
}

EXPORT int fflush(FILE *f)
{
	int fd;

	if (!init() || !f || (fd = fileno(f)) < 0 || !is_stdio_fd(fd))
		return real_fflush(f);
	lock();
	count("fflush", NULL);
	int r = real_fflush(f), e = errno;

	unlock();
	errno = e;
	return r;
}

EXPORT int fclose(FILE *f)
{
	int fd;

	if (!init() || !f || (fd = fileno(f)) < 0 || !is_stdio_fd(fd))
		return real_fclose(f);
	lock();
	count("fclose", NULL);
	stdio_forget(fd);
	int r = real_fclose(f), e = errno;

	unlock();
	errno = e;
	return r;
}

EXPORT int close(int fd)
{
	if (init() && n_stdio_fds && is_stdio_fd(fd))
		stdio_forget(fd);
	return real_close ? real_close(fd) : (int)syscall(SYS_close, fd);
}

EXPORT int vdprintf(int fd, const char *fmt, va_list ap)
{
	char *s = NULL;
	int n = vasprintf(&s, fmt, ap);

	if (n < 0)
		return n;
	ssize_t w = write(fd, s, (size_t)n);

	free(s);
	return w < 0 ? -1 : (int)w;
}

EXPORT int dprintf(int fd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vdprintf(fd, fmt, ap);

	va_end(ap);
	return n;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct stat st;
	char p[PATH_MAX];

	if (!real_mmap)
		pthread_once(&pc_once, init_once);
	if (pc.on && !in_shim && fd >= 0 && (prot & PROT_WRITE) && (flags & MAP_SHARED) &&
	    fd_tracked(fd, &st) && fd_path(fd, p)) {
		size_t l = strlen(p);

		if (l < 4 || strcmp(p + l - 4, "-shm"))
			note("UNMODELLED shared writable mmap of %s", p);
	}
	return real_mmap(addr, len, prot, flags, fd, off);
}
EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) __attribute__((alias("mmap")));

/* ---- names ------------------------------------------------------------------- */

/* Path ops on (dirfd, path): NAME_OP takes the absolute path, counts, runs
 * `prep` on it and then the real call. */
#define NAME_OP(name, dirfd, path, prep, expr) do {			\
	char ap_[PATH_MAX];						\
	if (!init() || !abs_path(dirfd, path, ap_) || !under_root(ap_))	\
		return expr;						\
	lock();								\
	count(name, ap_);						\
	{ const char *ap = ap_; prep; }					\
	int r_ = expr, e_ = errno;					\
	unlock();							\
	errno = e_;							\
	return r_;							\
} while (0)

static void prep_remove(const char *ap)
{
	prepare_parent(ap);
	keep_entry(ap);
}

EXPORT int unlink(const char *path)
{
	NAME_OP("unlink", AT_FDCWD, path, prep_remove(ap), real_unlink(path));
}

EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
	NAME_OP("unlink", dirfd, path, prep_remove(ap), real_unlinkat(dirfd, path, flags));
}

EXPORT int rmdir(const char *path)
{
	NAME_OP("rmdir", AT_FDCWD, path, prepare_parent(ap), real_rmdir(path));
}

EXPORT int remove(const char *path)
{
	NAME_OP("remove", AT_FDCWD, path, prep_remove(ap), real_remove(path));
}

EXPORT int mkdir(const char *path, mode_t mode)
{
	NAME_OP("mkdir", AT_FDCWD, path, prepare_parent(ap), real_mkdir(path, mode));
}

EXPORT int mkdirat(int dirfd, const char *path, mode_t mode)
{
	NAME_OP("mkdir", dirfd, path, prepare_parent(ap), real_mkdirat(dirfd, path, mode));
}

EXPORT int symlink(const char *target, const char *path)
{
	NAME_OP("symlink", AT_FDCWD, path, prepare_parent(ap), real_symlink(target, path));
}

EXPORT int symlinkat(const char *target, int dirfd, const char *path)
{
	NAME_OP("symlink", dirfd, path, prepare_parent(ap), real_symlinkat(target, dirfd, path));
}

EXPORT int linkat(int odir, const char *old, int ndir, const char *path, int flags)
{
	NAME_OP("link", ndir, path, prepare_parent(ap), real_linkat(odir, old, ndir, path, flags));
}

EXPORT int link(const char *old, const char *path)
{
	NAME_OP("link", AT_FDCWD, path, prepare_parent(ap), real_link(old, path));
}

static int do_rename(int odir, const char *old, int ndir, const char *path, unsigned int flags)
{
	char src[PATH_MAX], dst[PATH_MAX];
	struct stat st;

	if (!init() || !abs_path(odir, old, src) || !abs_path(ndir, path, dst) ||
	    (!under_root(src) && !under_root(dst)))
		return real_renameat2(odir, old, ndir, path, flags);
	lock();
	count("rename", dst);
	if (under_root(dst)) {
		prepare_parent(dst);
		keep_entry(dst);
	}
	if (under_root(src)) {
		prepare_parent(src);
		keep_entry(src);
	}
	if (lstat(src, &st) == 0 && S_ISDIR(st.st_mode))
		note("UNMODELLED rename of directory %s (taken as durable at once)", src);
	int r = real_renameat2(odir, old, ndir, path, flags), e = errno;

	unlock();
	errno = e;
	return r;
}

EXPORT int renameat2(int odir, const char *old, int ndir, const char *path, unsigned int flags)
{
	return do_rename(odir, old, ndir, path, flags);
}

EXPORT int renameat(int odir, const char *old, int ndir, const char *path)
{
	return do_rename(odir, old, ndir, path, 0);
}

EXPORT int rename(const char *old, const char *path)
{
	return do_rename(AT_FDCWD, old, AT_FDCWD, path, 0);
}

EXPORT int truncate(const char *path, off_t len)
{
	char ap[PATH_MAX];

	if (!init() || !abs_path(AT_FDCWD, path, ap) || !under_root(ap))
		return real_truncate(path, len);
	int fd = real_open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return real_truncate(path, len);
	int r = ftruncate(fd, len), e = errno;

	real_close(fd);
	errno = e;
	return r;
}
EXPORT int truncate64(const char *path, off_t len) __attribute__((alias("truncate")));
