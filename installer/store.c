/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "fileio.h"
#include "store.h"

int store_chunk_path(const char *dir, const uint8_t id[HASH_SIZE], char *buf, size_t size)
{
	char hex[2 * HASH_SIZE + 1];
	int n;

	hex_encode(id, HASH_SIZE, hex);
	n = snprintf(buf, size, "%s/%.2s/%s" STORE_SUFFIX, dir, hex, hex);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

bool store_has(const char *dir, const uint8_t id[HASH_SIZE])
{
	char path[PATH_MAX];

	return store_chunk_path(dir, id, path, sizeof(path)) == 0 && access(path, F_OK) == 0;
}

int store_put(const char *dir, const uint8_t id[HASH_SIZE], const uint8_t *stored, size_t len,
	      struct perr *err)
{
	char path[PATH_MAX], tmp[PATH_MAX + 32], *slash;
	int fd, k;

	if (store_chunk_path(dir, id, path, sizeof(path)) < 0)
		return perr_set(err, -ENAMETOOLONG, "%s: path too long", dir);
	if (access(path, F_OK) == 0)
		return 0;
	slash = strrchr(path, '/');
	*slash = '\0';
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return perr_set(err, -errno, "%s: %s", path, strerror(errno));
	*slash = '/';
	/* a thread id is unique across processes: writers never share a temporary */
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)gettid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return perr_set(err, -errno, "%s: %s", tmp, strerror(errno));
	k = pwrite_full(fd, stored, len, 0);
	if (close(fd) < 0 && k == 0)
		k = -errno;
	if (k == 0 && rename(tmp, path) < 0)
		k = -errno;
	if (k < 0) {
		unlink(tmp);
		return perr_set(err, k, "%s: %s", path, strerror(-k));
	}
	return 0;
}

int store_sync(const char *dir, struct perr *err)
{
	_cleanup_(closep) int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return perr_set(err, -errno, "%s: %s", dir, strerror(errno));
	if (syncfs(fd) < 0)
		return perr_set(err, -errno, "%s: sync failed: %s", dir, strerror(errno));
	return 0;
}

int store_get(const char *dir, const uint8_t id[HASH_SIZE], uint8_t **ret, size_t *ret_len, struct perr *err)
{
	char path[PATH_MAX];

	if (store_chunk_path(dir, id, path, sizeof(path)) < 0)
		return perr_set(err, -ENAMETOOLONG, "%s: path too long", dir);
	return read_file(path, chunk_stored_max(), ret, ret_len, err);
}
