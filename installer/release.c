/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "fileio.h"
#include "release.h"
#include "store.h"

void release_close(struct release *r)
{
	if (!r)
		return;
	manifest_free(r->manifest);
	keyring_free(r->keyring);
	free(r->path);
	free(r->chunks_dir);
	if (r->fd >= 0)
		close(r->fd);
	free(r->entries);
	ZSTD_freeDCtx(r->dctx);
	free(r->scratch);
	free(r);
}

static int open_dir(struct release *r, struct perr *err)
{
	_cleanup_(freep) uint8_t *buf = NULL;
	char path[PATH_MAX];
	size_t len;
	int k;

	snprintf(path, sizeof(path), "%s/" RELEASE_MANIFEST, r->path);
	if ((k = read_file(path, MANIFEST_MAX_SIZE, &buf, &len, err)) < 0)
		return k;
	if ((k = manifest_parse(buf, len, &r->manifest, err)) < 0)
		return perr_prefix(err, k, "%s: ", path);
	free(TAKE_PTR(buf));

	snprintf(path, sizeof(path), "%s/" RELEASE_KEYRING, r->path);
	if (access(path, F_OK) == 0) {
		if ((k = read_file(path, KEYRING_MAX_SIZE, &buf, &len, err)) < 0)
			return k;
		if ((k = keyring_parse(buf, len, &r->keyring, err)) < 0)
			return perr_prefix(err, k, "%s: ", path);
	}
	if (asprintf(&r->chunks_dir, "%s/" RELEASE_CHUNKS, r->path) < 0)
		return perr_set(err, -ENOMEM, "out of memory");
	return 0;
}

static int read_section(struct release *r, uint64_t off, size_t len, uint8_t **ret, struct perr *err)
{
	_cleanup_(freep) uint8_t *buf = malloc(len ? len : 1);
	int k;

	if (!buf)
		return perr_set(err, -ENOMEM, "out of memory");
	k = pread_full(r->fd, buf, len, (off_t)off);
	if (k < 0)
		return perr_set(err, k, "%s: read failed: %s", r->path, strerror(-k));
	*ret = TAKE_PTR(buf);
	return 0;
}

static int open_bundle(struct release *r, uint64_t size, struct perr *err)
{
	uint8_t head[BUNDLE_HEADER_SIZE];
	_cleanup_(freep) uint8_t *buf = NULL;
	int k;

	r->fd = open(r->path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0)
		return perr_set(err, -errno, "%s: %s", r->path, strerror(errno));
	if (size < BUNDLE_HEADER_SIZE)
		return perr_set(err, -EBADMSG, "%s: %" PRIu64 " bytes is too short for a bundle", r->path, size);
	if ((k = pread_full(r->fd, head, sizeof(head), 0)) < 0)
		return perr_set(err, k, "%s: read failed: %s", r->path, strerror(-k));
	if ((k = bundle_parse_header(head, sizeof(head), size, &r->info, err)) < 0)
		return perr_prefix(err, k, "%s: ", r->path);

	if ((k = read_section(r, r->info.manifest_off, r->info.manifest_len, &buf, err)) < 0)
		return k;
	if ((k = manifest_parse(buf, r->info.manifest_len, &r->manifest, err)) < 0)
		return perr_prefix(err, k, "%s: manifest: ", r->path);
	free(TAKE_PTR(buf));

	if (r->info.keyring_len) {
		if ((k = read_section(r, r->info.keyring_off, r->info.keyring_len, &buf, err)) < 0)
			return k;
		if ((k = keyring_parse(buf, r->info.keyring_len, &r->keyring, err)) < 0)
			return perr_prefix(err, k, "%s: keyring: ", r->path);
		free(TAKE_PTR(buf));
	}

	if ((k = read_section(r, r->info.index_off, (size_t)r->info.n_entries * BUNDLE_ENTRY_SIZE, &buf, err)) < 0)
		return k;
	if ((k = bundle_parse_index(&r->info, buf, (size_t)r->info.n_entries * BUNDLE_ENTRY_SIZE, &r->entries,
				    err)) < 0)
		return perr_prefix(err, k, "%s: ", r->path);
	return 0;
}

int release_open(const char *path, struct release **ret, struct perr *err)
{
	_cleanup_(release_closep) struct release *r = calloc(1, sizeof(*r));
	struct stat st;
	int k;

	if (!r)
		return perr_set(err, -ENOMEM, "out of memory");
	r->fd = -1;
	r->path = strdup(path);
	r->dctx = ZSTD_createDCtx();
	r->scratch = malloc(chunk_stored_max());
	if (!r->path || !r->dctx || !r->scratch)
		return perr_set(err, -ENOMEM, "out of memory");
	if (stat(path, &st) < 0)
		return perr_set(err, -errno, "%s: %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		k = open_dir(r, err);
	} else if (S_ISREG(st.st_mode)) {
		r->is_bundle = true;
		k = open_bundle(r, (uint64_t)st.st_size, err);
	} else {
		k = perr_set(err, -EINVAL, "%s: neither a release directory nor a bundle file", path);
	}
	if (k < 0)
		return k;
	*ret = TAKE_PTR(r);
	return 0;
}

int release_read_chunk(struct release *r, const uint8_t id[HASH_SIZE], uint32_t len, uint8_t *out,
		       struct perr *err)
{
	char hex[2 * HASH_SIZE + 1];
	int k;

	if (r->is_bundle) {
		const struct bundle_entry *e = bundle_find(r->entries, r->info.n_entries, id);

		if (!e)
			return perr_set(err, -ENOENT, "chunk %s is missing from the bundle", hex_encode(id, HASH_SIZE, hex));
		k = pread_full(r->fd, r->scratch, e->stored_len, (off_t)e->offset);
		if (k < 0)
			return perr_set(err, k, "%s: read failed: %s", r->path, strerror(-k));
		return chunk_decode(r->dctx, (enum chunk_enc)e->enc, r->scratch, e->stored_len, id, len, out, err);
	} else {
		_cleanup_(freep) uint8_t *buf = NULL;
		size_t n;

		k = store_get(r->chunks_dir, id, &buf, &n, err);
		if (k == -ENOENT)
			return perr_set(err, -ENOENT, "chunk %s is missing from the store", hex_encode(id, HASH_SIZE, hex));
		if (k < 0)
			return k;
		return chunk_decode(r->dctx, CHUNK_ENC_ZSTD, buf, n, id, len, out, err);
	}
}
