/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* File helpers shared by the CLI, the installer and the daemon. The
 * installer writes its slots and environment files only through these. */
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include "util.h"

static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;

		(void)!close(*fd);
		errno = saved;
	}
}

/* Reads a whole regular file of at most max bytes. *ret is malloc'ed (with
 * one extra NUL byte so text can be used as a string), caller frees.
 * -EFBIG when the file is larger than max. */
int read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len, struct perr *err);

/* Writes a file atomically: a temporary in the same directory, fsync,
 * rename over path, fsync of the directory. Either the old or the new file
 * is there after a crash, never a torn one. */
int write_file_atomic(const char *path, const void *buf, size_t len, mode_t mode, struct perr *err);

/* Makes tmp (written by the caller, in the same directory) the new path:
 * fsync tmp, rename, fsync the directory. tmp is removed on failure. */
int file_replace(const char *tmp, const char *path, struct perr *err);

/* Copies from into a new file `to` (not synced: file_replace does that). */
int file_copy(const char *from, const char *to, mode_t mode, struct perr *err);

/* fdatasync: every write to an installer slot reaches the disk through
 * pwrite_full and this, so that a fault-injection layer sees them all. */
int file_datasync(int fd);

/* pread/pwrite until done; -EIO on a short read (end of file). */
int pread_full(int fd, void *buf, size_t len, off_t off);
int pwrite_full(int fd, const void *buf, size_t len, off_t off);

/* mkdir -p. */
int mkdir_p(const char *path, mode_t mode);
