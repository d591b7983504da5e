/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunk.h"
#include "fleet.h"
#include "helpers.h"

void make_key(uint8_t seed, struct test_key *ret)
{
	uint8_t s[crypto_sign_SEEDBYTES];

	memset(s, seed, sizeof(s));
	assert_int_equal(crypto_sign_seed_keypair(ret->pk, ret->sk, s), 0);
}

uint8_t *prng_image(uint64_t seed, size_t n)
{
	uint8_t *p = malloc(n ? n : 1);

	assert_non_null(p);
	prng_fill(&seed, p, n);
	return p;
}

/* Piece sizes spread over six orders of magnitude: a uniform draw from
 * 1..1 MiB would almost never hit the small pieces that cross cut points
 * and phase boundaries. */
static size_t next_piece(uint64_t *s)
{
	uint64_t v = prng_next(s);
	unsigned bits = (unsigned)(v % 21);

	return 1 + (size_t)((v >> 8) & ((UINT64_C(1) << bits) - 1));
}

size_t chunk_lengths(const uint8_t *img, size_t n, const struct chunker_params *p, uint64_t *piece_seed,
		     uint32_t **ret_lens)
{
	struct chunker c;
	uint32_t *lens = NULL;
	size_t n_lens = 0, cap = 0, at = 0;
	uint64_t cur = 0;

	assert_int_equal(chunker_init(&c, p, NULL), 0);
	while (at < n) {
		size_t piece = piece_seed ? next_piece(piece_seed) : n;
		const uint8_t *b;

		if (piece > n - at)
			piece = n - at;
		b = img + at;
		at += piece;
		while (piece > 0) {
			size_t k = chunker_scan(&c, b, piece);

			if (k == CHUNKER_NO_CUT) {
				cur += piece;
				break;
			}
			assert_true(k >= 1 && k <= piece);
			cur += k;
			b += k;
			piece -= k;
			if (n_lens == cap) {
				cap = cap ? 2 * cap : 64;
				lens = realloc(lens, cap * sizeof(*lens));
				assert_non_null(lens);
			}
			lens[n_lens++] = (uint32_t)cur;
			cur = 0;
		}
	}
	if (cur) {
		if (n_lens == cap) {
			lens = realloc(lens, (cap + 1) * sizeof(*lens));
			assert_non_null(lens);
		}
		lens[n_lens++] = (uint32_t)cur;
	}
	*ret_lens = lens;
	return n_lens;
}

uint8_t *chunk_ids(const uint8_t *img, const uint32_t *lens, size_t n_chunks)
{
	uint8_t *ids = malloc(n_chunks ? n_chunks * HASH_SIZE : 1);
	size_t off = 0;

	assert_non_null(ids);
	for (size_t i = 0; i < n_chunks; i++) {
		chunk_id(img + off, lens[i], ids + i * HASH_SIZE);
		off += lens[i];
	}
	return ids;
}

struct manifest *make_manifest(const uint8_t *img, size_t n, const struct mf_opts *o)
{
	static const struct mf_opts none;
	struct chunker_params p = { CHUNKER_MIN_DEFAULT, CHUNKER_AVG_DEFAULT, CHUNKER_MAX_DEFAULT };
	struct manifest *m = manifest_new();
	_cleanup_(freep) uint32_t *lens = NULL;
	_cleanup_(freep) uint8_t *ids = NULL;
	struct perr err = { "" };
	size_t n_chunks;

	if (!o)
		o = &none;
	if (o->chunking.avg)
		p = o->chunking;
	assert_non_null(m);
	assert_err(manifest_set_strings(m, o->product ? o->product : "shoal-test", o->version ? o->version : "1.0",
					o->payload ? o->payload : PAYLOAD_AB_IMAGE, &err), 0, &err, NULL);
	m->counter = o->counter ? o->counter : 1;
	m->created = o->created ? o->created : T0;
	m->expires = o->expires;
	m->chunking = p;
	for (const char *const *kv = o->meta; kv && *kv; kv += 2)
		assert_err(manifest_add_meta(m, kv[0], kv[1], &err), 0, &err, NULL);
	m->image_size = n;
	crypto_generichash(m->image_hash, HASH_SIZE, img, n, NULL, 0);
	n_chunks = chunk_lengths(img, n, &p, NULL, &lens);
	ids = chunk_ids(img, lens, n_chunks);
	for (size_t i = 0; i < n_chunks; i++)
		assert_err(manifest_add_chunk(m, ids + i * HASH_SIZE, lens[i], &err), 0, &err, NULL);
	assert_err(manifest_seal(m, &err), 0, &err, NULL);
	return m;
}

uint8_t *sign_and_format(struct manifest *m, const struct test_key *keys, size_t n_keys, size_t *ret_len)
{
	struct perr err = { "" };
	uint8_t *buf = NULL;

	for (size_t i = 0; i < n_keys; i++)
		assert_err(manifest_sign(m, keys[i].sk, &err), 0, &err, NULL);
	assert_err(manifest_format(m, &buf, ret_len, &err), 0, &err, NULL);
	assert_non_null(buf);
	return buf;
}

struct keyring *make_keyring(uint64_t version, uint64_t expires, uint8_t threshold, const struct test_key *keys,
			     size_t n_keys, const struct test_key *signers, size_t n_signers)
{
	struct keyring *kr = keyring_new();
	struct perr err = { "" };

	assert_non_null(kr);
	kr->version = version;
	kr->created = T0;
	kr->expires = expires;
	kr->threshold = threshold;
	for (size_t i = 0; i < n_keys; i++)
		assert_err(keyring_add_key(kr, keys[i].pk, 0, 0, NULL, &err), 0, &err, NULL);
	assert_err(keyring_seal(kr, &err), 0, &err, NULL);
	for (size_t i = 0; i < n_signers; i++)
		assert_err(keyring_sign(kr, signers[i].sk, &err), 0, &err, NULL);
	return kr;
}

struct trust_roots roots_of(const struct test_key *keys, size_t n, uint8_t (*storage)[PUBKEY_SIZE])
{
	for (size_t i = 0; i < n; i++)
		memcpy(storage[i], keys[i].pk, PUBKEY_SIZE);
	return (struct trust_roots){ .keys = (const uint8_t(*)[PUBKEY_SIZE])storage, .n = n };
}

static void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

int read_file(const char *path, uint8_t **ret, size_t *ret_len)
{
	_cleanup_(closep) int fd = -1;
	_cleanup_(freep) uint8_t *p = NULL;
	struct stat st;
	size_t got = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	p = malloc((size_t)st.st_size + 1);
	if (!p)
		return -ENOMEM;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, p + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO; /* shrank while we read it */
		got += (size_t)r;
	}
	p[got] = 0; /* text vectors are read as strings */
	*ret = TAKE_PTR(p);
	*ret_len = got;
	return 0;
}

int write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "we");

	if (!f)
		return -errno;
	if (fwrite(p, 1, n, f) != n) {
		fclose(f);
		return -EIO;
	}
	return fclose(f) == 0 ? 0 : -errno;
}

void assert_err_at(int got, int want, const struct perr *err, const char *needle, const char *file, int line)
{
	if (got != want || (needle && !strstr(err->msg, needle)))
		print_error("returned %d \"%s\", expected %d with \"%s\"\n", got, err ? err->msg : "",
			    want, needle ? needle : "");
	_assert_int_equal((LargestIntegralType)got, (LargestIntegralType)want, file, line);
	if (needle)
		_assert_true(strstr(err->msg, needle) != NULL, "message names the reason", file, line);
}

void assert_failed_at(int got, const struct perr *err, const char *file, int line)
{
	if (got >= 0 || !err->msg[0])
		print_error("returned %d \"%s\", expected a negative errno and a message\n", got, err->msg);
	_assert_true(got < 0, "negative errno", file, line);
	_assert_true(err->msg[0] != '\0', "message is set", file, line);
}

#define S(lit) { lit, sizeof(lit) - 1 }

void fixture_report(struct msg_report *ret)
{
	static const struct report_tag tags[] = { { S("customer"), S("acme") }, { S("line"), S("3") } };
	static const struct report_health health[] = {
		{ S("state-db"), 1, S("") },
		{ S("10-app"), 0, S("app: port 80 closed\n\tretried 3 times\n") },
	};
	static const struct report_inv inv[] = { { S("kernel"), S("6.1.0-18-amd64") }, { S("serial"), S("SN 0042") } };
	struct msg_report m = {
		.version = 1, .seq = 3, .uptime_s = 3600, .free_bytes = UINT64_C(1) << 33, .rx_gateway = 1000, .rx_peers = 5000,
		.product = S("acme-gw"), .name = S("line 3, station 7"),
		.n_tags = ELEMENTSOF(tags), .booted_slot = 1, .installed_counter = 41,
		.installed_version = S("1.4.0"), .state = REPORT_FAILED, .phase = S("rollback"),
		.target_counter = 42, .progress_done = 10, .progress_total = 20,
		.last_error = S("health check 10-app failed"),
		.n_health = ELEMENTSOF(health), .n_inv = ELEMENTSOF(inv),
	};

	memcpy(m.tags, tags, sizeof(tags));
	memcpy(m.health, health, sizeof(health));
	memcpy(m.inv, inv, sizeof(inv));
	for (size_t i = 0; i < HASH_SIZE; i++) {
		m.installed[i] = (uint8_t)(0x10 + i);
		m.target[i] = (uint8_t)(0x80 + i);
	}
	*ret = m;
}

static bool rs_eq(const struct report_str *a, const struct report_str *b)
{
	return a->len == b->len && (a->len == 0 || !memcmp(a->s, b->s, a->len));
}

bool report_equal(const struct msg_report *a, const struct msg_report *b)
{
	if (a->version != b->version || a->seq != b->seq || a->uptime_s != b->uptime_s ||
	    a->free_bytes != b->free_bytes || a->rx_gateway != b->rx_gateway || a->rx_peers != b->rx_peers || !rs_eq(&a->product, &b->product) || !rs_eq(&a->name, &b->name) ||
	    a->n_tags != b->n_tags || a->booted_slot != b->booted_slot ||
	    memcmp(a->installed, b->installed, HASH_SIZE) || a->installed_counter != b->installed_counter ||
	    !rs_eq(&a->installed_version, &b->installed_version) || a->state != b->state ||
	    !rs_eq(&a->phase, &b->phase) || memcmp(a->target, b->target, HASH_SIZE) ||
	    a->target_counter != b->target_counter || a->progress_done != b->progress_done ||
	    a->progress_total != b->progress_total || !rs_eq(&a->last_error, &b->last_error) ||
	    a->n_health != b->n_health || a->n_inv != b->n_inv || a->ext_len != b->ext_len ||
	    (a->ext_len && memcmp(a->ext, b->ext, a->ext_len)))
		return false;
	for (size_t i = 0; i < a->n_tags; i++)
		if (!rs_eq(&a->tags[i].key, &b->tags[i].key) || !rs_eq(&a->tags[i].value, &b->tags[i].value))
			return false;
	for (size_t i = 0; i < a->n_health; i++)
		if (!rs_eq(&a->health[i].name, &b->health[i].name) || a->health[i].ok != b->health[i].ok ||
		    !rs_eq(&a->health[i].output, &b->health[i].output))
			return false;
	for (size_t i = 0; i < a->n_inv; i++)
		if (!rs_eq(&a->inv[i].key, &b->inv[i].key) || !rs_eq(&a->inv[i].value, &b->inv[i].value))
			return false;
	return true;
}
