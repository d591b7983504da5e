/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <linux/fs.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "chunk.h"
#include "chunker.h"
#include "fileio.h"
#include "reuse.h"

#define SCAN_BUF (1u << 20)

int fd_size(int fd, uint64_t *ret)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, ret) < 0 ? -errno : 0;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	*ret = (uint64_t)st.st_size;
	return 0;
}

static int offer(const struct reuse_ops *ops, const uint8_t *buf, size_t len, struct perr *err)
{
	uint8_t id[HASH_SIZE];

	if (len > UINT32_MAX)
		return 0;
	chunk_id(buf, len, id);
	if (!ops->wanted(ops->ud, id, (uint32_t)len))
		return 0;
	return ops->offer(ops->ud, id, buf, (uint32_t)len, err);
}

int reuse_known(int fd, uint64_t size, const struct manifest *old, const struct reuse_ops *ops, struct perr *err)
{
	_cleanup_(freep) uint8_t *buf = malloc(old->chunking.max ? old->chunking.max : 1);
	int k;

	if (!buf)
		return perr_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < old->n_chunks; i++) {
		const struct manifest_chunk *c = &old->chunks[i];
		uint8_t id[HASH_SIZE];

		if (c->offset + c->len > size || c->len > old->chunking.max || !ops->wanted(ops->ud, c->id, c->len))
			continue;
		if ((k = pread_full(fd, buf, c->len, (off_t)c->offset)) < 0)
			return perr_set(err, k, "reading chunk at offset %" PRIu64 " failed: %s", c->offset, strerror(-k));
		chunk_id(buf, c->len, id);
		if (memcmp(id, c->id, HASH_SIZE) != 0)
			continue; /* not what the record says: the network has it */
		if ((k = ops->offer(ops->ud, id, buf, c->len, err)) < 0)
			return k;
	}
	return 0;
}

int reuse_scan(int fd, uint64_t size, const struct chunker_params *p, const struct reuse_ops *ops, struct perr *err)
{
	size_t cap = SCAN_BUF + p->max, fill = 0;
	_cleanup_(freep) uint8_t *buf = malloc(cap);
	struct chunker ch;
	uint64_t off = 0;
	int k;

	if (!buf)
		return perr_set(err, -ENOMEM, "out of memory");
	if ((k = chunker_init(&ch, p, err)) < 0)
		return k;
	while (off < size) {
		size_t n = cap - fill, pos = fill, start = 0;

		if (n > size - off)
			n = (size_t)(size - off);
		if ((k = pread_full(fd, buf + fill, n, (off_t)off)) < 0)
			return perr_set(err, k, "reading at offset %" PRIu64 " failed: %s", off, strerror(-k));
		off += n;
		fill += n;
		while (pos < fill) {
			size_t cut = chunker_scan(&ch, buf + pos, fill - pos);

			if (cut == CHUNKER_NO_CUT)
				break;
			pos += cut;
			if ((k = offer(ops, buf + start, pos - start, err)) < 0)
				return k;
			start = pos;
		}
		memmove(buf, buf + start, fill - start);
		fill -= start;
	}
	return fill ? offer(ops, buf, fill, err) : 0;
}

int image_hash_fd(int fd, uint64_t size, uint8_t out[HASH_SIZE], void (*progress)(void *ud, uint64_t done, uint64_t total),
		  void *ud, struct perr *err)
{
	_cleanup_(freep) uint8_t *buf = malloc(SCAN_BUF);
	crypto_generichash_state hs;

	if (!buf)
		return perr_set(err, -ENOMEM, "out of memory");
	crypto_generichash_init(&hs, NULL, 0, HASH_SIZE);
	for (uint64_t off = 0; off < size;) {
		size_t n = size - off > SCAN_BUF ? SCAN_BUF : (size_t)(size - off);
		int k = pread_full(fd, buf, n, (off_t)off);

		if (k < 0)
			return perr_set(err, k, "reading back at offset %" PRIu64 " failed: %s", off, strerror(-k));
		crypto_generichash_update(&hs, buf, n);
		off += n;
		if (progress)
			progress(ud, off, size);
	}
	crypto_generichash_final(&hs, out, HASH_SIZE);
	return 0;
}
