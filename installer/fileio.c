/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"

int read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len, struct perr *err)
{
	_cleanup_(closep) int fd = -1;
	_cleanup_(freep) uint8_t *buf = NULL;
	struct stat st;
	int k;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return perr_set(err, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		return perr_set(err, -errno, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return perr_set(err, -EINVAL, "%s: not a regular file", path);
	if ((uint64_t)st.st_size > max)
		return perr_set(err, -EFBIG, "%s: %lld bytes, more than the %zu allowed", path,
				(long long)st.st_size, max);
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return perr_set(err, -ENOMEM, "out of memory");
	k = pread_full(fd, buf, (size_t)st.st_size, 0);
	if (k < 0)
		return perr_set(err, k, "%s: read failed: %s", path, strerror(-k));
	buf[st.st_size] = 0;
	*ret_len = (size_t)st.st_size;
	*ret = TAKE_PTR(buf);
	return 0;
}

int pread_full(int fd, void *buf, size_t len, off_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

int pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static int fsync_parent(const char *path)
{
	char tmp[PATH_MAX];
	_cleanup_(closep) int fd = -1;

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return fsync(fd) < 0 ? -errno : 0;
}

int file_replace(const char *tmp, const char *path, struct perr *err)
{
	_cleanup_(closep) int fd = open(tmp, O_RDONLY | O_CLOEXEC);
	int k = 0;

	if (fd < 0)
		k = -errno;
	else if (fsync(fd) < 0)
		k = -errno;
	if (k == 0 && rename(tmp, path) < 0)
		k = -errno;
	if (k < 0) {
		unlink(tmp);
		return perr_set(err, k, "%s: replacing it failed: %s", path, strerror(-k));
	}
	k = fsync_parent(path);
	if (k < 0)
		return perr_set(err, k, "%s: fsync of directory failed: %s", path, strerror(-k));
	return 0;
}

int write_file_atomic(const char *path, const void *buf, size_t len, mode_t mode, struct perr *err)
{
	char tmp[PATH_MAX];
	int fd, k;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return perr_set(err, -ENAMETOOLONG, "%s: path too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return perr_set(err, -errno, "%s: %s", tmp, strerror(errno));
	k = pwrite_full(fd, buf, len, 0);
	if (k == 0 && fchmod(fd, mode) < 0)
		k = -errno;
	if (close(fd) < 0 && k == 0)
		k = -errno;
	if (k < 0) {
		unlink(tmp);
		return perr_set(err, k, "%s: write failed: %s", path, strerror(-k));
	}
	return file_replace(tmp, path, err);
}

int file_copy(const char *from, const char *to, mode_t mode, struct perr *err)
{
	_cleanup_(closep) int in = open(from, O_RDONLY | O_CLOEXEC);
	_cleanup_(closep) int out = -1;
	uint8_t buf[16384];
	off_t off = 0;
	int k;

	if (in < 0)
		return perr_set(err, -errno, "%s: %s", from, strerror(errno));
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (out < 0)
		return perr_set(err, -errno, "%s: %s", to, strerror(errno));
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return perr_set(err, -errno, "%s: %s", from, strerror(errno));
		if (n == 0)
			return 0;
		if ((k = pwrite_full(out, buf, (size_t)n, off)) < 0)
			return perr_set(err, k, "%s: %s", to, strerror(-k));
		off += n;
	}
}

int file_datasync(int fd)
{
	return fdatasync(fd) < 0 ? -errno : 0;
}

int mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t n;

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	n = strlen(tmp);
	for (size_t i = 1; i <= n; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -errno;
		tmp[i] = i < n ? '/' : '\0';
	}
	return 0;
}
