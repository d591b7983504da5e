/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shoal bundle create: one file for a USB stick. */
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>

#include "cli.h"
#include "fileio.h"
#include "release.h"
#include "store.h"

static void bundle_help(void)
{
	printf("Usage: shoal bundle create DIR -o FILE\n\n"
	       "Packs the release in DIR (manifest, keyring and every distinct chunk)\n"
	       "into one file for a USB stick or an offline site. Each chunk is read\n"
	       "from the store and checked against its id first, so a damaged store\n"
	       "never makes a bundle. Chunks stay zstd-compressed where that saves\n"
	       "space. 'shoal release show' and 'shoal release verify' take the file.\n\n"
	       "  DIR                a release directory ('shoal release create' makes it)\n"
	       "  -o, --output FILE  the bundle to write (replaced atomically)\n"
	       "  -h, --help         this text\n");
}

static int id_cmp(const void *a, const void *b)
{
	return memcmp(a, b, HASH_SIZE);
}

/* Distinct chunk ids, sorted: the bundle's index order. */
static int sorted_ids(const struct manifest *m, uint8_t (**ret)[HASH_SIZE], size_t *ret_n)
{
	uint8_t (*ids)[HASH_SIZE] = malloc(m->n_chunks * HASH_SIZE);
	size_t n = 0;

	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < m->n_chunks; i++)
		memcpy(ids[i], m->chunks[i].id, HASH_SIZE);
	qsort(ids, m->n_chunks, HASH_SIZE, id_cmp);
	for (size_t i = 0; i < m->n_chunks; i++)
		if (n == 0 || memcmp(ids[n - 1], ids[i], HASH_SIZE) != 0)
			memcpy(ids[n++], ids[i], HASH_SIZE);
	*ret = ids;
	*ret_n = n;
	return 0;
}

static int write_bundle(struct release *r, int fd, struct perr *err)
{
	const struct manifest *m = r->manifest;
	_cleanup_(freep) uint8_t (*ids)[HASH_SIZE] = NULL;
	_cleanup_(freep) uint8_t *m_bytes = NULL, *kr_bytes = NULL, *plain = NULL, *index = NULL;
	_cleanup_(freep) uint32_t *lens = NULL;
	uint8_t head[BUNDLE_HEADER_SIZE];
	size_t n_ids, m_len, kr_len = 0;
	struct bundle_info info;
	struct progress prog;
	uint64_t off, data_len = 0, done = 0;
	ZSTD_DCtx *dctx;
	int k;

	if ((k = manifest_format(m, &m_bytes, &m_len, err)) < 0)
		return k;
	if (r->keyring && (k = keyring_format(r->keyring, &kr_bytes, &kr_len, err)) < 0)
		return k;
	if (sorted_ids(m, &ids, &n_ids) < 0)
		return perr_set(err, -ENOMEM, "out of memory");
	/* lengths by id, found once through a sorted copy rather than per id */
	lens = calloc(n_ids, sizeof(*lens));
	plain = malloc(m->chunking.max);
	index = calloc(n_ids, BUNDLE_ENTRY_SIZE);
	if (!lens || !plain || !index)
		return perr_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_chunks; i++) {
		uint8_t (*hit)[HASH_SIZE] = bsearch(m->chunks[i].id, ids, n_ids, HASH_SIZE, id_cmp);

		lens[hit - ids] = m->chunks[i].len;
	}

	if ((k = bundle_layout(&info, (uint32_t)m_len, (uint32_t)kr_len, (uint32_t)n_ids, 0, err)) < 0)
		return k;
	off = info.data_off;
	dctx = ZSTD_createDCtx();
	if (!dctx)
		return perr_set(err, -ENOMEM, "out of memory");
	progress_start(&prog, "bundling", m->image_size);
	for (size_t i = 0; i < n_ids; i++) {
		_cleanup_(freep) uint8_t *stored = NULL;
		struct bundle_entry e = { .enc = CHUNK_ENC_ZSTD };
		size_t slen;

		memcpy(e.id, ids[i], HASH_SIZE);
		k = store_get(r->chunks_dir, e.id, &stored, &slen, err);
		if (k == 0)
			k = chunk_decode(dctx, CHUNK_ENC_ZSTD, stored, slen, e.id, lens[i], plain, err);
		if (k < 0)
			break;
		if (slen >= lens[i]) {
			/* zstd did not help: carry the plain bytes */
			e.enc = CHUNK_ENC_PLAIN;
			e.stored_len = lens[i];
			k = pwrite_full(fd, plain, lens[i], (off_t)off);
		} else {
			e.stored_len = (uint32_t)slen;
			k = pwrite_full(fd, stored, slen, (off_t)off);
		}
		if (k < 0) {
			perr_set(err, k, "writing the bundle: %s", strerror(-k));
			break;
		}
		bundle_format_entry(&e, index + i * BUNDLE_ENTRY_SIZE);
		off += e.stored_len;
		data_len += e.stored_len;
		done += lens[i];
		progress_update(&prog, done);
	}
	ZSTD_freeDCtx(dctx);
	progress_end(&prog);
	if (k < 0)
		return k;

	info.data_len = data_len;
	bundle_format_header(&info, head);
	if ((k = pwrite_full(fd, head, sizeof(head), 0)) < 0 ||
	    (k = pwrite_full(fd, m_bytes, m_len, (off_t)info.manifest_off)) < 0 ||
	    (kr_len && (k = pwrite_full(fd, kr_bytes, kr_len, (off_t)info.keyring_off)) < 0) ||
	    (k = pwrite_full(fd, index, n_ids * BUNDLE_ENTRY_SIZE, (off_t)info.index_off)) < 0)
		return perr_set(err, k, "writing the bundle: %s", strerror(-k));
	if (fsync(fd) < 0)
		return perr_set(err, -errno, "writing the bundle: %s", strerror(errno));
	printf("bundle: %s %s, %zu distinct chunks, %" PRIu64 " bytes\n", m->product, m->version, n_ids,
	       info.data_off + data_len);
	return 0;
}

int cmd_bundle(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	_cleanup_(release_closep) struct release *r = NULL;
	const char *out = NULL;
	char tmp[PATH_MAX];
	struct perr err = { 0 };
	int c, k, fd;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		bundle_help();
		return EXIT_OK;
	}
	if (argc < 2 || strcmp(argv[1], "create") != 0)
		return usage_error("bundle", "the only subcommand is 'create'");
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) >= 0) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'h': bundle_help(); return EXIT_OK;
		default: return usage_error("bundle create", "invalid option");
		}
	}
	if (optind + 1 != argc || !out)
		return usage_error("bundle create", "expects a release directory and -o FILE");
	if ((k = release_open(argv[optind], &r, &err)) < 0) {
		log_error("%s", err.msg);
		return exit_code_for(k);
	}
	if (r->is_bundle)
		return usage_error("bundle create", "%s is already a bundle", argv[optind]);

	/* written beside the target and renamed: a half-written bundle never
	 * carries the final name */
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", out, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_error("%s: %s", tmp, strerror(errno));
		return EXIT_FAIL;
	}
	k = write_bundle(r, fd, &err);
	close(fd);
	if (k == 0 && rename(tmp, out) < 0)
		k = perr_set(&err, -errno, "%s: %s", out, strerror(errno));
	if (k < 0) {
		unlink(tmp);
		log_error("%s", err.msg);
		return exit_code_for(k);
	}
	return EXIT_OK;
}
