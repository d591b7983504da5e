/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shoal release create | show | verify */
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <sys/stat.h>

#include "chunk.h"
#include "cli.h"
#include "fileio.h"
#include "release-json.h"
#include "reuse.h"
#include "store.h"
#include "trust.h"

/* ---- create: a reading thread that chunks and hashes the image, and
 * workers that hash, compress and store chunks. The reader never waits on
 * compression unless the bounded queue is full, so memory stays flat. ---- */

#define READ_SIZE (4u << 20)
#define ID_BLOCK 65536u

struct job {
	uint8_t *data;
	uint32_t len;
	size_t index;
};

struct seen_set {
	uint8_t (*ids)[HASH_SIZE];
	bool *used;
	size_t cap, n;
};

struct pipeline {
	pthread_mutex_t lock;
	pthread_cond_t can_pop, can_push;
	struct job *queue;
	size_t qcap, qhead, qlen;
	bool closing;

	const char *store;
	int level;
	uint8_t (*id_blocks[MANIFEST_MAX_CHUNKS / ID_BLOCK])[HASH_SIZE];
	struct seen_set seen;

	/* results, under lock */
	uint64_t new_chunks, new_plain, new_stored, distinct;
	int error;
	struct perr err;
};

static bool seen_insert(struct seen_set *s, const uint8_t id[HASH_SIZE])
{
	size_t mask, i;

	if (2 * (s->n + 1) > s->cap) {
		struct seen_set bigger = { .cap = s->cap ? s->cap * 2 : 4096 };

		bigger.ids = calloc(bigger.cap, HASH_SIZE);
		bigger.used = calloc(bigger.cap, sizeof(bool));
		if (!bigger.ids || !bigger.used) {
			free(bigger.ids);
			free(bigger.used);
			return true; /* treat as new: only costs a second write attempt */
		}
		for (size_t j = 0; j < s->cap; j++)
			if (s->used[j])
				seen_insert(&bigger, s->ids[j]);
		free(s->ids);
		free(s->used);
		*s = bigger;
	}
	mask = s->cap - 1;
	for (i = rd_le64(id) & mask; s->used[i]; i = (i + 1) & mask)
		if (memcmp(s->ids[i], id, HASH_SIZE) == 0)
			return false;
	memcpy(s->ids[i], id, HASH_SIZE);
	s->used[i] = true;
	s->n++;
	return true;
}

static void pipeline_fail(struct pipeline *p, int k, const struct perr *err)
{
	pthread_mutex_lock(&p->lock);
	if (!p->error) {
		p->error = k;
		p->err = *err;
	}
	pthread_cond_broadcast(&p->can_push);
	pthread_mutex_unlock(&p->lock);
}

static void *worker(void *arg)
{
	struct pipeline *p = arg;
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	size_t cap = ZSTD_compressBound(CHUNKER_MAX_LIMIT);
	uint8_t *out = malloc(cap);
	struct perr err = { 0 };

	if (!cctx || !out) {
		pipeline_fail(p, -ENOMEM, &(struct perr){ "out of memory" });
		goto done;
	}
	for (;;) {
		struct job j;
		uint8_t *id;
		bool fresh;
		size_t clen;
		int k;

		pthread_mutex_lock(&p->lock);
		while (p->qlen == 0 && !p->closing)
			pthread_cond_wait(&p->can_pop, &p->lock);
		if (p->qlen == 0) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		j = p->queue[p->qhead];
		p->qhead = (p->qhead + 1) % p->qcap;
		p->qlen--;
		pthread_cond_signal(&p->can_push);
		pthread_mutex_unlock(&p->lock);

		id = p->id_blocks[j.index / ID_BLOCK][j.index % ID_BLOCK];
		chunk_id(j.data, j.len, id);

		pthread_mutex_lock(&p->lock);
		fresh = seen_insert(&p->seen, id);
		if (fresh)
			p->distinct++;
		k = p->error;
		pthread_mutex_unlock(&p->lock);

		if (fresh && !k && !store_has(p->store, id)) {
			k = chunk_compress(cctx, p->level, j.data, j.len, out, cap, &clen);
			if (k < 0)
				pipeline_fail(p, k, &(struct perr){ "zstd compression failed" });
			else if ((k = store_put(p->store, id, out, clen, &err)) < 0)
				pipeline_fail(p, k, &err);
			else {
				pthread_mutex_lock(&p->lock);
				p->new_chunks++;
				p->new_plain += j.len;
				p->new_stored += clen;
				pthread_mutex_unlock(&p->lock);
			}
		}
		free(j.data);
	}
done:
	ZSTD_freeCCtx(cctx);
	free(out);
	return NULL;
}

/* A chunk is the bytes carried over from earlier reads (a, na) followed by
 * those of the current read (b, nb). */
static int pipeline_push(struct pipeline *p, const uint8_t *a, size_t na, const uint8_t *b, size_t nb, size_t index)
{
	struct job j = { .data = malloc(na + nb), .len = (uint32_t)(na + nb), .index = index };
	int k;

	if (!j.data)
		return -ENOMEM;
	if (na)
		memcpy(j.data, a, na);
	if (nb) /* the last chunk is all carry: b is NULL */
		memcpy(j.data + na, b, nb);
	if (!p->id_blocks[index / ID_BLOCK]) {
		p->id_blocks[index / ID_BLOCK] = calloc(ID_BLOCK, HASH_SIZE);
		if (!p->id_blocks[index / ID_BLOCK]) {
			free(j.data);
			return -ENOMEM;
		}
	}
	pthread_mutex_lock(&p->lock);
	while (p->qlen == p->qcap && !p->error)
		pthread_cond_wait(&p->can_push, &p->lock);
	k = p->error;
	if (!k) {
		p->queue[(p->qhead + p->qlen) % p->qcap] = j;
		p->qlen++;
		pthread_cond_signal(&p->can_pop);
	}
	pthread_mutex_unlock(&p->lock);
	if (k)
		free(j.data);
	return k;
}

/* The whole-image hash is serial and costs as much as the chunk ids, so it
 * runs on a thread of its own: the reader hands it each buffer it read,
 * in order, and gets the buffer back when it is hashed. */
#define N_READ_BUFS 4

struct image_hasher {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	uint8_t *bufs[N_READ_BUFS];
	size_t len[N_READ_BUFS];
	size_t next_hash, next_fill, filled; /* ring: filled buffers wait to be hashed */
	bool closing;
	crypto_generichash_state hs;
};

static void *hasher_main(void *arg)
{
	struct image_hasher *h = arg;

	pthread_mutex_lock(&h->lock);
	for (;;) {
		size_t i, n;

		while (!h->filled && !h->closing)
			pthread_cond_wait(&h->changed, &h->lock);
		if (!h->filled)
			break;
		i = h->next_hash;
		n = h->len[i];
		pthread_mutex_unlock(&h->lock);
		crypto_generichash_update(&h->hs, h->bufs[i], n);
		pthread_mutex_lock(&h->lock);
		h->next_hash = (i + 1) % N_READ_BUFS;
		h->filled--;
		pthread_cond_broadcast(&h->changed);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* The next buffer to read into, once the hasher is done with it. */
static uint8_t *hasher_get(struct image_hasher *h)
{
	uint8_t *b;

	pthread_mutex_lock(&h->lock);
	while (h->filled == N_READ_BUFS)
		pthread_cond_wait(&h->changed, &h->lock);
	b = h->bufs[h->next_fill];
	pthread_mutex_unlock(&h->lock);
	return b;
}

static void hasher_put(struct image_hasher *h, size_t n)
{
	pthread_mutex_lock(&h->lock);
	h->len[h->next_fill] = n;
	h->next_fill = (h->next_fill + 1) % N_READ_BUFS;
	h->filled++;
	pthread_cond_broadcast(&h->changed);
	pthread_mutex_unlock(&h->lock);
}

/* Reads and chunks the image, feeding the workers (chunk ids, compression)
 * and the hasher (the whole-image hash). */
static int chunk_image(int fd, struct pipeline *p, struct manifest *m, uint64_t total, struct perr *err)
{
	const uint32_t max = m->chunking.max;
	_cleanup_(freep) uint8_t *carry = malloc(max);
	struct image_hasher h = { .next_hash = 0 };
	struct chunker ch;
	struct progress prog;
	size_t n_carry = 0;
	uint64_t done = 0;
	bool started = false;
	int k = 0;

	if (!carry)
		return perr_set(err, -ENOMEM, "out of memory");
	if ((k = chunker_init(&ch, &m->chunking, err)) < 0)
		return k;
	for (size_t i = 0; i < N_READ_BUFS; i++)
		if (!(h.bufs[i] = malloc(READ_SIZE))) {
			k = perr_set(err, -ENOMEM, "out of memory");
			goto out;
		}
	pthread_mutex_init(&h.lock, NULL);
	pthread_cond_init(&h.changed, NULL);
	crypto_generichash_init(&h.hs, NULL, 0, HASH_SIZE);
	if (pthread_create(&h.thread, NULL, hasher_main, &h) != 0) {
		k = perr_set(err, -EAGAIN, "cannot start the hashing thread");
		goto out;
	}
	started = true;
	progress_start(&prog, "chunking", total);

	for (;;) {
		uint8_t *buf = hasher_get(&h);
		size_t fill = 0, pos = 0, start = 0;
		ssize_t n;
		static const uint8_t zero_id[HASH_SIZE];

		/* fill the whole buffer (a pipe or a device may return less) */
		while (fill < READ_SIZE) {
			n = read(fd, buf + fill, READ_SIZE - fill);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				k = perr_set(err, -errno, "reading the image: %s", strerror(errno));
				goto out;
			}
			if (n == 0)
				break;
			fill += (size_t)n;
		}
		if (fill == 0)
			break;
		hasher_put(&h, fill);
		while (pos < fill) {
			size_t cut = chunker_scan(&ch, buf + pos, fill - pos);
			size_t len;

			if (cut == CHUNKER_NO_CUT)
				break;
			pos += cut;
			len = n_carry + (pos - start);
			if ((k = manifest_add_chunk(m, zero_id, (uint32_t)len, err)) < 0)
				goto out;
			if ((k = pipeline_push(p, carry, n_carry, buf + start, pos - start, m->n_chunks - 1)) < 0) {
				if (k == -ENOMEM)
					perr_set(err, k, "out of memory");
				goto out;
			}
			n_carry = 0;
			start = pos;
		}
		/* the unfinished chunk (shorter than max) carries over */
		memcpy(carry + n_carry, buf + start, fill - start);
		n_carry += fill - start;
		done += fill;
		progress_update(&prog, done);
		if (fill < READ_SIZE)
			break;
	}
	if (n_carry) {
		static const uint8_t zero_id[HASH_SIZE];

		if ((k = manifest_add_chunk(m, zero_id, (uint32_t)n_carry, err)) < 0)
			goto out;
		if ((k = pipeline_push(p, carry, n_carry, NULL, 0, m->n_chunks - 1)) < 0) {
			if (k == -ENOMEM)
				perr_set(err, k, "out of memory");
			goto out;
		}
	}
	progress_end(&prog);
	m->image_size = done;
out:
	if (started) {
		pthread_mutex_lock(&h.lock);
		h.closing = true;
		pthread_cond_broadcast(&h.changed);
		pthread_mutex_unlock(&h.lock);
		pthread_join(h.thread, NULL);
		if (k == 0)
			crypto_generichash_final(&h.hs, m->image_hash, HASH_SIZE);
	}
	for (size_t i = 0; i < N_READ_BUFS; i++)
		free(h.bufs[i]);
	return k;
}

static void free_keys(uint8_t **sks, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sodium_free(sks[i]);
}

static void create_help(void)
{
	printf("Usage: shoal release create --image IMG --product P --version STR --counter N\n"
	       "                            --key KEY [--keyring FILE] [--expires TIME]\n"
	       "                            [--payload-type TYPE] [--meta KEY=VALUE ...]\n"
	       "                            [--chunking MIN,AVG,MAX] [--zstd-level L] [--jobs N]\n"
	       "                            [--force] -o DIR\n\n"
	       "Chunks IMG with FastCDC, stores every new chunk zstd-compressed under\n"
	       "DIR/chunks/ab/<id>.zst (chunks already in the store are reused: put\n"
	       "several releases in one DIR to share them), and writes the signed\n"
	       "manifest DIR/manifest.shoal (and DIR/keyring.shoal with --keyring).\n"
	       "Any static HTTP server can serve DIR as it is.\n\n"
	       "  --image IMG          the image file or block device\n"
	       "  --product P          compatibility string devices must match\n"
	       "  --version STR        human version, e.g. 2.1.0\n"
	       "  --counter N          monotonic release counter; devices refuse lower ones\n"
	       "  --key KEY            secret key that signs (a release key or a root key;\n"
	       "                       repeat for a keyring with a threshold)\n"
	       "  --keyring FILE       keyring naming KEY, shipped with the release\n"
	       "  --expires TIME       devices refuse the release after TIME\n"
	       "  --payload-type TYPE  'ab-image' (default) or an update module's type\n"
	       "  --meta KEY=VALUE     metadata carried in the manifest (repeatable)\n"
	       "  --chunking MIN,AVG,MAX  chunk sizes (default 16K,64K,256K; AVG a power of 2)\n"
	       "  --zstd-level L       compression level for the store (default 3)\n"
	       "  --jobs N             compression threads (default: number of CPUs)\n"
	       "  --created TIME       creation time (default now, or SOURCE_DATE_EPOCH)\n"
	       "  --force              replace an existing DIR/manifest.shoal\n"
	       "  -o, --output DIR     release directory (created if needed)\n"
	       "  -h, --help           this text\n");
}

static int parse_chunking(const char *s, struct chunker_params *p)
{
	char buf[64], *a, *b, *save = NULL;
	uint64_t v[3];

	if (snprintf(buf, sizeof(buf), "%s", s) >= (int)sizeof(buf))
		return -EINVAL;
	a = strtok_r(buf, ",", &save);
	for (int i = 0; i < 3; i++) {
		if (!a || size_parse(a, &v[i]) < 0 || v[i] > UINT32_MAX)
			return -EINVAL;
		a = strtok_r(NULL, ",", &save);
	}
	b = a;
	if (b)
		return -EINVAL;
	*p = (struct chunker_params){ (uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2] };
	return chunker_params_check(p, NULL);
}

static int release_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "image", required_argument, NULL, 'i' },
		{ "product", required_argument, NULL, 'p' },
		{ "version", required_argument, NULL, 'V' },
		{ "counter", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "keyring", required_argument, NULL, 'K' },
		{ "expires", required_argument, NULL, 'e' },
		{ "created", required_argument, NULL, 'C' },
		{ "payload-type", required_argument, NULL, 't' },
		{ "meta", required_argument, NULL, 'm' },
		{ "chunking", required_argument, NULL, 'z' },
		{ "zstd-level", required_argument, NULL, 'l' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "force", no_argument, NULL, 'F' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	_cleanup_(manifest_freep) struct manifest *m = manifest_new();
	_cleanup_(keyring_freep) struct keyring *kr = NULL;
	_cleanup_(freep) uint8_t *kr_bytes = NULL, *m_bytes = NULL;
	_cleanup_(closep) int fd = -1;
	const char *image = NULL, *product = NULL, *version = NULL, *keyring = NULL, *out = NULL;
	const char *keys[SIGSET_MAX];
	size_t n_keys = 0;
	const char *payload = PAYLOAD_AB_IMAGE;
	char path[PATH_MAX], sz[32], hex[17];
	uint64_t now = now_or_source_date(), total = 0;
	bool have_counter = false, force = false;
	size_t kr_len = 0, m_len, jobs = (size_t)sysconf(_SC_NPROCESSORS_ONLN);
	unsigned long long v;
	struct perr err = { 0 };
	struct pipeline p = { .level = 3 };
	pthread_t threads[64];
	size_t n_threads = 0;
	uint8_t *sks[SIGSET_MAX] = { NULL };
	double t0;
	char *end;
	int c, k;

	if (!m) {
		log_error("out of memory");
		return EXIT_FAIL;
	}
	m->created = now;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) >= 0) {
		switch (c) {
		case 'i': image = optarg; break;
		case 'p': product = optarg; break;
		case 'V': version = optarg; break;
		case 'c':
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || !*optarg || optarg[0] == '-')
				return usage_error("release create", "--counter must be a whole number, not '%s'", optarg);
			m->counter = v;
			have_counter = true;
			break;
		case 'k':
			if (n_keys >= ELEMENTSOF(keys))
				return usage_error("release create", "at most %zu --key", ELEMENTSOF(keys));
			keys[n_keys++] = optarg;
			break;
		case 'K': keyring = optarg; break;
		case 'e':
			if (time_parse(optarg, now, &m->expires, &err) < 0)
				return usage_error("release create", "--expires: %s", err.msg);
			break;
		case 'C':
			if (time_parse(optarg, now, &m->created, &err) < 0)
				return usage_error("release create", "--created: %s", err.msg);
			break;
		case 't': payload = optarg; break;
		case 'm': {
			char *eq = strchr(optarg, '=');

			if (!eq)
				return usage_error("release create", "--meta wants KEY=VALUE, not '%s'", optarg);
			*eq = '\0';
			if (manifest_add_meta(m, optarg, eq + 1, &err) < 0)
				return usage_error("release create", "--meta %s: %s", optarg, err.msg);
			break;
		}
		case 'z':
			if (parse_chunking(optarg, &m->chunking) < 0) {
				chunker_params_check(&m->chunking, &err);
				return usage_error("release create",
						   "--chunking wants MIN,AVG,MAX with 64 <= MIN <= AVG <= MAX <= 4M "
						   "and AVG a power of two, not '%s'", optarg);
			}
			break;
		case 'l':
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || v < 1 || v > (unsigned long long)ZSTD_maxCLevel())
				return usage_error("release create", "--zstd-level must be 1..%d", ZSTD_maxCLevel());
			p.level = (int)v;
			break;
		case 'j':
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || v < 1 || v > ELEMENTSOF(threads))
				return usage_error("release create", "--jobs must be 1..%zu", ELEMENTSOF(threads));
			jobs = (size_t)v;
			break;
		case 'F': force = true; break;
		case 'o': out = optarg; break;
		case 'h': create_help(); return EXIT_OK;
		default: return usage_error("release create", "invalid option");
		}
	}
	if (optind < argc)
		return usage_error("release create", "unexpected argument '%s'", argv[optind]);
	if (!image || !product || !version || !have_counter || !n_keys || !out)
		return usage_error("release create", "--image, --product, --version, --counter, --key and -o are required");
	if (manifest_set_strings(m, product, version, payload, &err) < 0)
		return usage_error("release create", "%s", err.msg);
	if (m->expires && m->expires <= m->created)
		return usage_error("release create", "--expires lies before the creation time");
	if (jobs < 1)
		jobs = 1;
	if (jobs > ELEMENTSOF(threads))
		jobs = ELEMENTSOF(threads);

	for (size_t i = 0; i < n_keys; i++)
		if ((k = key_read_secret(keys[i], 0, &sks[i], &err)) < 0) {
			free_keys(sks, n_keys);
			log_error("%s", err.msg);
			return EXIT_FAIL;
		}
	if (keyring) {
		uint8_t pk[PUBKEY_SIZE];

		if ((k = read_file(keyring, KEYRING_MAX_SIZE, &kr_bytes, &kr_len, &err)) < 0 ||
		    (k = keyring_parse(kr_bytes, kr_len, &kr, &err)) < 0) {
			free_keys(sks, n_keys);
			log_error("%s: %s", keyring, err.msg);
			return exit_code_for(k);
		}
		for (size_t i = 0; i < n_keys; i++) {
			crypto_sign_ed25519_sk_to_pk(pk, sks[i]);
			if (!keyring_find(kr, pk))
				log_info("note: key %s is not listed in keyring v%" PRIu64 "; devices accept this release "
					 "only if it is one of their root keys", key_short_id(pk, hex), kr->version);
		}
	}

	snprintf(path, sizeof(path), "%s/" RELEASE_MANIFEST, out);
	if (!force && access(path, F_OK) == 0) {
		free_keys(sks, n_keys);
		log_error("%s exists; use --force to replace it (chunks already in the store are kept)", path);
		return EXIT_FAIL;
	}
	fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fd_size(fd, &total) < 0) {
		free_keys(sks, n_keys);
		log_error("%s: %s", image, fd < 0 ? strerror(errno) : "not a regular file or block device");
		return EXIT_FAIL;
	}
	snprintf(path, sizeof(path), "%s/" RELEASE_CHUNKS, out);
	if ((k = mkdir_p(path, 0755)) < 0) {
		free_keys(sks, n_keys);
		log_error("%s: %s", path, strerror(-k));
		return EXIT_FAIL;
	}
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

	p.store = path;
	p.qcap = 4 * jobs + 4;
	p.queue = calloc(p.qcap, sizeof(*p.queue));
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.can_pop, NULL);
	pthread_cond_init(&p.can_push, NULL);
	t0 = mono_seconds();
	for (; p.queue && n_threads < jobs; n_threads++)
		if (pthread_create(&threads[n_threads], NULL, worker, &p) != 0)
			break;
	if (n_threads == 0)
		k = perr_set(&err, -ENOMEM, "cannot start worker threads");
	else
		k = chunk_image(fd, &p, m, total, &err);
	if (k < 0)
		pipeline_fail(&p, k, &err);
	pthread_mutex_lock(&p.lock);
	p.closing = true;
	pthread_cond_broadcast(&p.can_pop);
	pthread_mutex_unlock(&p.lock);
	for (size_t i = 0; i < n_threads; i++)
		pthread_join(threads[i], NULL);

	if (!p.error) {
		for (size_t i = 0; i < m->n_chunks; i++)
			memcpy(m->chunks[i].id, p.id_blocks[i / ID_BLOCK][i % ID_BLOCK], HASH_SIZE);
		k = manifest_seal(m, &err);
		for (size_t i = 0; k == 0 && i < n_keys; i++)
			k = manifest_sign(m, sks[i], &err);
		if (k == 0)
			k = manifest_format(m, &m_bytes, &m_len, &err);
		if (k < 0)
			p.error = k, p.err = err;
	}
	free_keys(sks, n_keys);
	for (size_t i = 0; i < ELEMENTSOF(p.id_blocks); i++)
		free(p.id_blocks[i]);
	free(p.seen.ids);
	free(p.seen.used);
	free(p.queue);
	if (p.error) {
		log_error("%s", p.err.msg);
		return EXIT_FAIL;
	}

	/* Chunks reach the disk before the manifest that names them. */
	if ((k = store_sync(path, &err)) < 0) {
		log_error("%s", err.msg);
		return EXIT_FAIL;
	}
	if (kr_bytes) {
		snprintf(path, sizeof(path), "%s/" RELEASE_KEYRING, out);
		if ((k = write_file_atomic(path, kr_bytes, kr_len, 0644, &err)) < 0) {
			log_error("%s", err.msg);
			return EXIT_FAIL;
		}
	}
	snprintf(path, sizeof(path), "%s/" RELEASE_MANIFEST, out);
	if ((k = write_file_atomic(path, m_bytes, m_len, 0644, &err)) < 0) {
		log_error("%s", err.msg);
		return EXIT_FAIL;
	}

	{
		double el = mono_seconds() - t0;
		char a[32], b[32];

		printf("release %s %s (counter %" PRIu64 "): %s in %zu chunks (%" PRIu64 " distinct)\n", m->product,
		       m->version, m->counter, size_format(m->image_size, sz, sizeof(sz)), m->n_chunks, p.distinct);
		printf("store: %" PRIu64 " new chunks, %s stored as %s; %" PRIu64 " already present\n", p.new_chunks,
		       size_format(p.new_plain, a, sizeof(a)), size_format(p.new_stored, b, sizeof(b)),
		       p.distinct - p.new_chunks);
		printf("wrote %s in %.2f s (%.0f MB/s)\n", path, el, el > 0 ? (double)m->image_size / el / 1e6 : 0.0);
	}
	return EXIT_OK;
}

/* ---- show ---- */

static void show_text(const struct release *r)
{
	const struct manifest *m = r->manifest;
	char a[40], b[40], c[40], hex[2 * HASH_SIZE + 1];

	printf("Release:   %s %s (counter %" PRIu64 ")\n", m->product, m->version, m->counter);
	printf("Source:    %s %s\n", r->is_bundle ? "bundle" : "directory", r->path);
	printf("Payload:   %s, %s (%" PRIu64 " bytes)\n", m->payload_type, size_format(m->image_size, a, sizeof(a)),
	       m->image_size);
	printf("Chunks:    %zu (%zu distinct), chunking %s/%s/%s\n", m->n_chunks, manifest_unique_chunks(m),
	       size_format(m->chunking.min, a, sizeof(a)), size_format(m->chunking.avg, b, sizeof(b)),
	       size_format(m->chunking.max, c, sizeof(c)));
	printf("Image:     blake2b-256:%s\n", hex_encode(m->image_hash, HASH_SIZE, hex));
	printf("Created:   %s\n", time_format(m->created, a, sizeof(a)));
	printf("Expires:   %s\n", time_format(m->expires, a, sizeof(a)));
	for (size_t i = 0; i < m->sigs.n; i++) {
		const struct keyring_key *k = r->keyring ? keyring_find(r->keyring, m->sigs.v[i].pub) : NULL;

		printf("%s key %s%s%s%s\n", i ? "           " : "Signed by:", key_short_id(m->sigs.v[i].pub, a),
		       k ? " (in keyring: '" : "", k ? k->name : "", k ? "')" : "");
	}
	if (r->keyring) {
		const struct keyring *kr = r->keyring;

		printf("Keyring:   v%" PRIu64 ", %zu key(s), threshold %u, expires %s\n", kr->version, kr->n_keys,
		       kr->threshold, time_format(kr->expires, a, sizeof(a)));
		for (size_t i = 0; i < kr->sigs.n; i++)
			printf("           signed by root key %s\n", key_short_id(kr->sigs.v[i].pub, a));
	} else {
		printf("Keyring:   none (signed directly by a root key, or the device's keyring applies)\n");
	}
	for (size_t i = 0; i < m->n_meta; i++)
		printf("%s %s=%s\n", i ? "          " : "Metadata: ", m->meta[i].key, m->meta[i].value);
}

static void show_help(void)
{
	printf("Usage: shoal release show [--json] DIR|BUNDLE\n\n"
	       "Shows what a release holds: product, version, counter, size, chunks,\n"
	       "signers, keyring, expiry. Signatures are not checked here: use\n"
	       "'shoal release verify'.\n\n"
	       "  --json      print every field as JSON, the chunk table too\n"
	       "  -h, --help  this text\n");
}

static int release_show(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	_cleanup_(release_closep) struct release *r = NULL;
	struct perr err = { 0 };
	bool json = false;
	int c, k;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
		switch (c) {
		case 'j': json = true; break;
		case 'h': show_help(); return EXIT_OK;
		default: return usage_error("release show", "invalid option");
		}
	}
	if (optind + 1 != argc)
		return usage_error("release show", "expects one release directory or bundle");
	if ((k = release_open(argv[optind], &r, &err)) < 0) {
		log_error("%s", err.msg);
		return exit_code_for(k);
	}
	if (json) {
		json_t *o = release_json(r);

		json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
		json_decref(o);
	} else {
		show_text(r);
	}
	return EXIT_OK;
}

/* ---- verify ---- */

static void verify_help(void)
{
	printf("Usage: shoal release verify --trust ROOT.pub [--trust ...] [--keyring FILE]\n"
	       "                            [--signatures-only] DIR|BUNDLE\n\n"
	       "Checks a release as a device would: the keyring against the trusted root\n"
	       "keys, the manifest signatures against the roots and the keyring, the\n"
	       "expiry, then every chunk against its id and the whole image against its\n"
	       "hash. Exits 0 only when all of it holds; otherwise exit 3 and a message\n"
	       "naming the signature, chunk or field that failed.\n\n"
	       "  --trust ROOT.pub    a trusted root public key (repeatable, at least one)\n"
	       "  --keyring FILE      a keyring the device already holds; the newest valid\n"
	       "                      keyring (this or the release's) decides\n"
	       "  --signatures-only   skip reading the chunks\n"
	       "  -h, --help          this text\n");
}

/* Picks the keyring that decides: the highest version among those that
 * verify. A keyring that fails verification is an error, not skipped: it
 * means something was tampered with. */
static int pick_keyring(const struct trust_roots *roots, struct keyring *shipped, struct keyring *held,
			uint64_t now, struct keyring **ret, struct perr *err)
{
	int k;

	if (held && (k = trust_check_keyring(roots, held, now, err)) < 0)
		return perr_prefix(err, k, "--keyring: ");
	if (shipped && (k = trust_check_keyring(roots, shipped, now, err)) < 0)
		return perr_prefix(err, k, "release keyring: ");
	if (held && shipped && held->version > shipped->version)
		log_info("note: the release ships keyring v%" PRIu64 ", the newer v%" PRIu64 " given with --keyring applies",
			 shipped->version, held->version);
	*ret = held && (!shipped || held->version > shipped->version) ? held : shipped;
	return 0;
}

static int verify_chunks(struct release *r, struct perr *err)
{
	const struct manifest *m = r->manifest;
	_cleanup_(freep) uint8_t *buf = malloc(m->chunking.max);
	crypto_generichash_state hs;
	uint8_t got[HASH_SIZE];
	struct progress prog;
	size_t bad = 0, missing = 0;
	char hex[2 * HASH_SIZE + 1];

	if (!buf)
		return perr_set(err, -ENOMEM, "out of memory");
	crypto_generichash_init(&hs, NULL, 0, HASH_SIZE);
	progress_start(&prog, "verifying", m->image_size);
	for (size_t i = 0; i < m->n_chunks; i++) {
		const struct manifest_chunk *c = &m->chunks[i];
		struct perr e = { 0 };
		int k = release_read_chunk(r, c->id, c->len, buf, &e);

		if (k < 0) {
			if (bad + missing < 20)
				log_error("FAILED: chunk #%zu at offset %" PRIu64 ": %s", i, c->offset, e.msg);
			if (k == -ENOENT)
				missing++;
			else
				bad++;
			if (k != -ENOENT && k != -EILSEQ && k != -EBADMSG)
				return perr_set(err, k, "%s", e.msg);
			memset(buf, 0, c->len);
		}
		crypto_generichash_update(&hs, buf, c->len);
		progress_update(&prog, c->offset + c->len);
	}
	progress_end(&prog);
	if (bad || missing)
		return perr_set(err, -EILSEQ, "%zu chunk(s) corrupt, %zu missing", bad, missing);
	crypto_generichash_final(&hs, got, HASH_SIZE);
	if (sodium_memcmp(got, m->image_hash, HASH_SIZE) != 0)
		return perr_set(err, -EILSEQ, "image hash mismatch: manifest says %s",
				hex_encode(m->image_hash, HASH_SIZE, hex));
	return 0;
}

static int release_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "trust", required_argument, NULL, 't' },
		{ "keyring", required_argument, NULL, 'k' },
		{ "signatures-only", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	_cleanup_(release_closep) struct release *r = NULL;
	_cleanup_(keyring_freep) struct keyring *held = NULL;
	_cleanup_(freep) uint8_t *kr_bytes = NULL;
	uint8_t roots[SIGSET_MAX][PUBKEY_SIZE];
	struct trust_roots tr = { .keys = (const uint8_t(*)[PUBKEY_SIZE])roots };
	const char *held_path = NULL;
	struct trust_result res;
	struct keyring *kr = NULL;
	struct perr err = { 0 };
	bool sigs_only = false;
	uint64_t now = (uint64_t)time(NULL);
	size_t kr_len;
	char a[17];
	int c, k;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
		switch (c) {
		case 't':
			if (tr.n >= ELEMENTSOF(roots))
				return usage_error("release verify", "at most %zu --trust keys", ELEMENTSOF(roots));
			if (key_read_public(optarg, roots[tr.n], &err) < 0) {
				log_error("%s", err.msg);
				return EXIT_FAIL;
			}
			tr.n++;
			break;
		case 'k': held_path = optarg; break;
		case 's': sigs_only = true; break;
		case 'h': verify_help(); return EXIT_OK;
		default: return usage_error("release verify", "invalid option");
		}
	}
	if (optind + 1 != argc)
		return usage_error("release verify", "expects one release directory or bundle");
	if (tr.n == 0)
		return usage_error("release verify", "at least one --trust ROOT.pub is required");
	if (held_path && ((k = read_file(held_path, KEYRING_MAX_SIZE, &kr_bytes, &kr_len, &err)) < 0 ||
			  (k = keyring_parse(kr_bytes, kr_len, &held, &err)) < 0)) {
		log_error("%s: %s", held_path, err.msg);
		return exit_code_for(k);
	}
	if ((k = release_open(argv[optind], &r, &err)) < 0) {
		log_error("FAILED: %s", err.msg);
		return exit_code_for(k);
	}
	if ((k = pick_keyring(&tr, r->keyring, held, now, &kr, &err)) < 0 ||
	    (k = trust_check_manifest(&tr, kr, r->manifest, now, &res, &err)) < 0) {
		log_error("FAILED: %s", err.msg);
		return exit_code_for(k);
	}
	if (kr)
		printf("keyring v%" PRIu64 ": signed by a trusted root, %zu key(s), threshold %u\n", kr->version,
		       kr->n_keys, kr->threshold);
	printf("manifest: %s %s (counter %" PRIu64 "), signed by %zu root key(s) and %zu release key(s)", r->manifest->product,
	       r->manifest->version, r->manifest->counter, res.root_signers, res.release_signers);
	if (res.other_signers)
		printf(", %zu unknown signer(s) ignored", res.other_signers);
	printf("\n");
	if (!sigs_only) {
		if ((k = verify_chunks(r, &err)) < 0) {
			log_error("FAILED: %s", err.msg);
			return exit_code_for(k);
		}
		printf("chunks: all %zu verified, image hash matches\n", r->manifest->n_chunks);
	}
	printf("OK: %s is a valid release (first signer %s)\n", argv[optind], key_short_id(r->manifest->sigs.v[0].pub, a));
	return EXIT_OK;
}

int cmd_release(int argc, char **argv)
{
	static const struct verb verbs[] = {
		{ "create", release_create, "chunk, compress and sign an image into a release directory" },
		{ "show", release_show, "show a release directory or bundle" },
		{ "verify", release_verify, "check signatures, trust, every chunk and the image hash" },
	};

	return run_verbs("shoal release", verbs, ELEMENTSOF(verbs), argc - 1, argv + 1);
}
