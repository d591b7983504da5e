/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Writes the seed corpus of the manifest, keyring and bundle fuzzers:
 *
 *   gen-corpus tests/fuzz/corpus
 *
 * fills corpus/{manifest,keyring,bundle}/ with small valid files and with
 * files that break one rule each (truncated, bad magic, huge counts, ...).
 * Everything is deterministic: fixed key seeds (fuzz.h), fixed times, images
 * from a seeded PRNG, and Ed25519 signatures are deterministic too. Only
 * zstd's output may change with the zstd version, which changes a few bundle
 * seeds but not what they test. Files the fuzzer found (named by their
 * SHA-1, see README.md) are left alone.
 *
 * Valid files are made with the real API (seal, sign, format), so they are
 * exactly what the release tooling writes. Invalid ones go through
 * encode_manifest()/encode_keyring() below, a second encoder without the
 * checks, which is first shown to agree with the real one byte for byte. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <zstd.h>

#include "bundle.h"
#include "chunk.h"
#include "chunker.h"
#include "codec.h"
#include "fuzz.h"
#include "keyring.h"
#include "manifest.h"
#include "prng.h"

#define SEED_MAX (64u * 1024) /* every seed stays small: libFuzzer runs with -max_len=65536 */

static const struct chunker_params small_chunks = { .min = 64, .avg = 256, .max = 1024 };

struct key {
	uint8_t pk[PUBKEY_SIZE];
	uint8_t sk[SECKEY_SIZE];
};

static struct key k_root, k_a, k_b, k_stranger;
static const char *out_root;

struct blob {
	uint8_t *p;
	size_t n;
};

static void blob_free(struct blob *b)
{
	free(b->p);
	*b = (struct blob){ 0 };
}

_printf_(1, 2) static _Noreturn void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("gen-corpus: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(EXIT_FAILURE);
}

static void must(int k, const struct perr *err, const char *what)
{
	if (k < 0)
		die("%s: %s (%s)", what, strerror(-k), err ? err->msg : "");
}

static struct blob blob_dup(const struct blob *b)
{
	struct blob r = { .p = malloc(b->n ? b->n : 1), .n = b->n };

	if (!r.p)
		die("out of memory");
	memcpy(r.p, b->p, b->n);
	return r;
}

static struct blob blob_steal(struct wbuf *w)
{
	struct blob b;

	if (w->err)
		die("out of memory");
	b.p = wbuf_steal(w, &b.n);
	return b;
}

static void mkdir_p(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		die("mkdir %s: %s", path, strerror(errno));
}

static void write_seed(const char *kind, const char *name, const uint8_t *p, size_t n)
{
	char path[4096];
	FILE *f;

	if (n > SEED_MAX)
		die("%s/%s is %zu bytes, seeds must stay below %u", kind, name, n, SEED_MAX);
	snprintf(path, sizeof(path), "%s/%s/%s", out_root, kind, name);
	f = fopen(path, "wbe");
	if (!f)
		die("%s: %s", path, strerror(errno));
	if ((n && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
		die("%s: write failed", path);
	printf("%-8s %-36s %6zu bytes\n", kind, name, n);
}

static void write_blob(const char *kind, const char *name, const struct blob *b)
{
	write_seed(kind, name, b->p, b->n);
}

/* Writes b with `at` patched to the n bytes given. */
static void write_patched(const char *kind, const char *name, const struct blob *b, size_t at, const void *bytes,
			  size_t n)
{
	struct blob c = blob_dup(b);

	if (at + n > c.n)
		die("%s/%s: patch beyond the end", kind, name);
	memcpy(c.p + at, bytes, n);
	write_blob(kind, name, &c);
	blob_free(&c);
}

static void write_le32_at(const char *kind, const char *name, const struct blob *b, size_t at, uint32_t v)
{
	uint8_t le[4];

	wr_le32(le, v);
	write_patched(kind, name, b, at, le, sizeof(le));
}

static void write_truncated(const char *kind, const char *name, const struct blob *b, size_t n)
{
	if (n > b->n)
		die("%s/%s: cannot truncate to more than the whole", kind, name);
	write_seed(kind, name, b->p, n);
}

static void write_appended(const char *kind, const char *name, const struct blob *b, uint8_t extra)
{
	struct blob c = { .p = malloc(b->n + 1), .n = b->n + 1 };

	if (!c.p)
		die("out of memory");
	memcpy(c.p, b->p, b->n);
	c.p[b->n] = extra;
	write_blob(kind, name, &c);
	blob_free(&c);
}

/* --- images and chunking ------------------------------------------------ */

enum piece { RANDOM, ZEROS };

struct image {
	uint8_t *p;
	size_t n;
};

/* An image made of pieces: random runs that compress badly (stored plain)
 * and zero runs that compress to nothing and chunk into repeated ids. */
static struct image make_image(uint64_t seed, const enum piece *kinds, const size_t *sizes, size_t n_pieces)
{
	struct image img = { 0 };
	size_t at = 0;

	for (size_t i = 0; i < n_pieces; i++)
		img.n += sizes[i];
	img.p = calloc(1, img.n ? img.n : 1);
	if (!img.p)
		die("out of memory");
	for (size_t i = 0; i < n_pieces; i++) {
		switch (kinds[i]) {
		case RANDOM:
			prng_fill(&seed, img.p + at, sizes[i]);
			break;
		case ZEROS:
			break;
		}
		at += sizes[i];
	}
	return img;
}

static struct manifest *manifest_for(const struct image *img, const struct chunker_params *p, uint64_t counter,
				     uint64_t created, uint64_t expires, bool with_meta)
{
	struct manifest *m = manifest_new();
	struct chunker c;
	struct perr err = { { 0 } };
	size_t start = 0;

	if (!m)
		die("out of memory");
	m->chunking = *p;
	m->counter = counter;
	m->created = created;
	m->expires = expires;
	m->image_size = img->n;
	crypto_generichash(m->image_hash, HASH_SIZE, img->p, img->n, NULL, 0);
	must(manifest_set_strings(m, "shoal-demo_board+rev.2:eu", "2024.06.1 \xe2\x80\x94 r\xc3\xa9sum\xc3\xa9",
				  PAYLOAD_AB_IMAGE, &err), &err, "manifest strings");
	if (with_meta) {
		must(manifest_add_meta(m, "build-id", "7f3c2a", &err), &err, "meta");
		must(manifest_add_meta(m, "Notes", "\xc3\x9c" "bung macht den Meister", &err), &err, "meta");
		must(manifest_add_meta(m, "empty", "", &err), &err, "meta");
	}
	must(chunker_init(&c, p, &err), &err, "chunker");
	while (start < img->n) {
		size_t k = chunker_scan(&c, img->p + start, img->n - start);
		uint8_t id[HASH_SIZE];

		if (k == CHUNKER_NO_CUT)
			k = img->n - start;
		chunk_id(img->p + start, k, id);
		must(manifest_add_chunk(m, id, (uint32_t)k, &err), &err, "add chunk");
		start += k;
	}
	return m;
}

static struct blob manifest_bytes(struct manifest *m, const struct key *const *signers, size_t n_signers)
{
	struct perr err = { { 0 } };
	struct blob b;

	must(manifest_seal(m, &err), &err, "manifest seal");
	for (size_t i = 0; i < n_signers; i++)
		must(manifest_sign(m, signers[i]->sk, &err), &err, "manifest sign");
	must(manifest_format(m, &b.p, &b.n, &err), &err, "manifest format");
	return b;
}

/* --- the unchecked encoders ---------------------------------------------- */

static void put_sigs(struct wbuf *w, const char *domain, size_t signed_from, const struct key *const *signers,
		     size_t n_signers)
{
	struct sigset s = { 0 };
	struct perr err = { { 0 } };

	if (w->err)
		die("out of memory");
	for (size_t i = 0; i < n_signers; i++)
		must(sigset_sign(&s, domain, w->p + signed_from, w->len - signed_from, signers[i]->sk, &err), &err,
		     "sign");
	sigset_format(&s, w);
	sigset_clear(&s);
}

/* Header, body and signatures of m, whatever m holds: the same layout as
 * manifest_seal() + manifest_format(), none of its checks. */
static struct blob encode_manifest(const struct manifest *m, const struct key *const *signers, size_t n_signers)
{
	struct wbuf w = { 0 };
	size_t at;

	wbuf_put(&w, MANIFEST_MAGIC, 8);
	wbuf_u32(&w, MANIFEST_FORMAT);
	at = wbuf_reserve(&w, 4);
	wbuf_str(&w, m->product);
	wbuf_str(&w, m->version);
	wbuf_u64(&w, m->counter);
	wbuf_u64(&w, m->created);
	wbuf_u64(&w, m->expires);
	wbuf_str(&w, m->payload_type);
	wbuf_u64(&w, m->image_size);
	wbuf_put(&w, m->image_hash, HASH_SIZE);
	wbuf_u32(&w, m->chunking.min);
	wbuf_u32(&w, m->chunking.avg);
	wbuf_u32(&w, m->chunking.max);
	wbuf_u16(&w, (uint16_t)m->n_meta);
	for (size_t i = 0; i < m->n_meta; i++) {
		wbuf_str(&w, m->meta[i].key);
		wbuf_str(&w, m->meta[i].value);
	}
	wbuf_u32(&w, (uint32_t)m->n_chunks);
	for (size_t i = 0; i < m->n_chunks; i++) {
		wbuf_put(&w, m->chunks[i].id, HASH_SIZE);
		wbuf_u32(&w, m->chunks[i].len);
	}
	if (w.err)
		die("out of memory");
	wr_le32(w.p + at, (uint32_t)(w.len - MANIFEST_HEADER_SIZE));
	put_sigs(&w, MANIFEST_SIG_DOMAIN, 0, signers, n_signers);
	return blob_steal(&w);
}

static struct blob encode_keyring(const struct keyring *kr, const struct key *const *signers, size_t n_signers)
{
	struct wbuf w = { 0 };
	size_t at;

	wbuf_put(&w, KEYRING_MAGIC, 8);
	wbuf_u32(&w, KEYRING_FORMAT);
	at = wbuf_reserve(&w, 4);
	wbuf_u64(&w, kr->version);
	wbuf_u64(&w, kr->created);
	wbuf_u64(&w, kr->expires);
	wbuf_u8(&w, kr->threshold);
	wbuf_u16(&w, (uint16_t)kr->n_keys);
	for (size_t i = 0; i < kr->n_keys; i++) {
		wbuf_put(&w, kr->keys[i].pub, PUBKEY_SIZE);
		wbuf_u64(&w, kr->keys[i].not_before);
		wbuf_u64(&w, kr->keys[i].not_after);
		wbuf_str(&w, kr->keys[i].name);
	}
	if (w.err)
		die("out of memory");
	wr_le32(w.p + at, (uint32_t)(w.len - KEYRING_HEADER_SIZE));
	put_sigs(&w, KEYRING_SIG_DOMAIN, 0, signers, n_signers);
	return blob_steal(&w);
}

static void same_bytes(const struct blob *a, const struct blob *b, const char *what)
{
	if (a->n != b->n || memcmp(a->p, b->p, a->n) != 0)
		die("%s: the unchecked encoder disagrees with the real one", what);
}

/* Offset of the field after the strings: the release counter. */
static size_t manifest_counter_off(const struct manifest *m)
{
	return MANIFEST_HEADER_SIZE + 2 + strlen(m->product) + 2 + strlen(m->version);
}

static size_t manifest_meta_count_off(const struct manifest *m)
{
	return manifest_counter_off(m) + 3 * 8 + 2 + strlen(m->payload_type) + 8 + HASH_SIZE + 3 * 4;
}

/* After a length was changed on purpose: break only the rule meant. */
static void fix_image_size(struct manifest *m)
{
	m->image_size = 0;
	for (size_t i = 0; i < m->n_chunks; i++)
		m->image_size += m->chunks[i].len;
}

static void set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = strdup(s);
	if (!*dst)
		die("out of memory");
}

/* --- manifests ---------------------------------------------------------- */

static const enum piece img_kinds[] = { RANDOM, ZEROS, RANDOM, ZEROS, RANDOM };
static const size_t img_sizes[] = { 1536, 2048, 512, 2048, 700 };

static void gen_manifests(void)
{
	const struct key *root[] = { &k_root }, *release[] = { &k_a, &k_b }, *mixed[] = { &k_stranger, &k_root };
	const uint64_t created = FUZZ_NOW - 86400;
	struct image img = make_image(1, img_kinds, img_sizes, ELEMENTSOF(img_kinds));
	struct manifest *m;
	struct blob valid, b;
	uint8_t byte;

	/* valid ones */
	m = manifest_for(&img, &small_chunks, 42, created, 0, true);
	valid = manifest_bytes(m, root, 1);
	write_blob("manifest", "valid-root-signed", &valid);
	printf("         (%zu chunks, %zu distinct)\n", m->n_chunks, manifest_unique_chunks(m));
	b = encode_manifest(m, root, 1);
	same_bytes(&b, &valid, "manifest");
	blob_free(&b);

	b = manifest_bytes(m, release, 2);
	write_blob("manifest", "valid-release-signed", &b);
	blob_free(&b);
	b = manifest_bytes(m, mixed, 2);
	write_blob("manifest", "valid-root-and-stranger-signed", &b);
	blob_free(&b);
	b = manifest_bytes(m, NULL, 0);
	write_blob("manifest", "valid-unsigned", &b);
	blob_free(&b);
	manifest_free(m);

	m = manifest_for(&img, &small_chunks, 7, created - 86400, FUZZ_NOW - 3600, false);
	b = manifest_bytes(m, root, 1);
	write_blob("manifest", "valid-expired", &b);
	blob_free(&b);
	manifest_free(m);

	m = manifest_for(&img, &small_chunks, 8, created, FUZZ_NOW + 86400 * 365, false);
	b = manifest_bytes(m, root, 1);
	write_blob("manifest", "valid-expires-later", &b);
	blob_free(&b);
	manifest_free(m);

	{
		const enum piece k1[] = { RANDOM };
		const size_t s1[] = { 10 };
		struct image tiny = make_image(2, k1, s1, 1);

		/* one chunk shorter than the minimum: allowed, it is the last */
		m = manifest_for(&tiny, &small_chunks, 1, created, 0, false);
		set_str(&m->payload_type, "swupdate.v1-delta_x");
		b = manifest_bytes(m, root, 1);
		write_blob("manifest", "valid-tiny-image", &b);
		blob_free(&b);
		manifest_free(m);
		free(tiny.p);
	}

	{
		/* the limits: 64 metadata entries, maximal string lengths, the
		 * largest chunk parameters */
		const struct chunker_params big = { .min = 64, .avg = 1u << 21, .max = CHUNKER_MAX_LIMIT };
		struct perr err = { { 0 } };
		char key[MANIFEST_META_KEY_MAX + 1], prod[MANIFEST_PRODUCT_MAX + 1], ver[MANIFEST_VERSION_MAX + 1],
			pay[MANIFEST_PAYLOAD_MAX + 1];

		m = manifest_for(&img, &big, UINT64_MAX, created, 0, false);
		memset(prod, 'P', MANIFEST_PRODUCT_MAX);
		prod[MANIFEST_PRODUCT_MAX] = 0;
		memset(ver, 'v', MANIFEST_VERSION_MAX);
		ver[MANIFEST_VERSION_MAX] = 0;
		memset(pay, 'p', MANIFEST_PAYLOAD_MAX);
		pay[MANIFEST_PAYLOAD_MAX] = 0;
		must(manifest_set_strings(m, prod, ver, pay, &err), &err, "strings");
		for (unsigned i = 0; i < MANIFEST_MAX_META; i++) {
			snprintf(key, sizeof(key), "k%02u", i);
			must(manifest_add_meta(m, key, i == 0 ? "\xf4\x8f\xbf\xbf" : "v", &err), &err, "meta");
		}
		b = manifest_bytes(m, root, 1);
		write_blob("manifest", "valid-limits", &b);
		blob_free(&b);
		manifest_free(m);
	}

	/* broken bytes of a valid file */
	write_seed("manifest", "empty", NULL, 0);
	write_patched("manifest", "bad-magic", &valid, 0, "SHOAL-KR", 8);
	write_le32_at("manifest", "bad-format", &valid, 8, 2);
	write_le32_at("manifest", "body-length-huge", &valid, 12, UINT32_MAX);
	write_le32_at("manifest", "body-length-short", &valid, 12, (uint32_t)(valid.n - MANIFEST_HEADER_SIZE - 200));
	write_truncated("manifest", "truncated-header", &valid, 11);
	write_truncated("manifest", "truncated-body", &valid, valid.n / 2);
	write_truncated("manifest", "truncated-signature", &valid, valid.n - 10);
	write_truncated("manifest", "truncated-no-sigset", &valid, valid.n - 1 - PUBKEY_SIZE - SIG_SIZE);
	write_appended("manifest", "trailing-byte", &valid, 0);
	byte = 0xff;
	write_patched("manifest", "signature-count-huge", &valid, valid.n - 1 - PUBKEY_SIZE - SIG_SIZE, &byte, 1);
	byte = SIGSET_MAX + 1;
	write_patched("manifest", "signature-count-17", &valid, valid.n - 1 - PUBKEY_SIZE - SIG_SIZE, &byte, 1);
	byte = valid.p[valid.n - 1] ^ 1;
	write_patched("manifest", "bad-signature", &valid, valid.n - 1, &byte, 1);
	m = manifest_for(&img, &small_chunks, 42, created, 0, true);
	byte = 43;
	write_patched("manifest", "tampered-counter", &valid, manifest_counter_off(m), &byte, 1);
	{
		uint8_t le[2];

		wr_le16(le, 0xffff);
		write_patched("manifest", "meta-count-huge", &valid, manifest_meta_count_off(m), le, 2);
		wr_le16(le, MANIFEST_MAX_META + 1);
		write_patched("manifest", "meta-count-over-limit", &valid, manifest_meta_count_off(m), le, 2);
	}
	{
		size_t n_off = valid.n - 1 - PUBKEY_SIZE - SIG_SIZE - m->n_chunks * (HASH_SIZE + 4) - 4;

		write_le32_at("manifest", "chunk-count-huge", &valid, n_off, UINT32_MAX);
		write_le32_at("manifest", "chunk-count-over-limit", &valid, n_off, MANIFEST_MAX_CHUNKS + 1);
		write_le32_at("manifest", "chunk-count-minus-one", &valid, n_off, (uint32_t)m->n_chunks - 1);
	}

	/* valid layout, one rule broken: the unchecked encoder */
#define BROKEN(name, ...)                                                              \
	do {                                                                           \
		struct manifest *x = manifest_for(&img, &small_chunks, 42, created, 0, true); \
		__VA_ARGS__;                                                           \
		b = encode_manifest(x, root, 1);                               \
		write_blob("manifest", name, &b);                              \
		blob_free(&b);                                                 \
		manifest_free(x);                                              \
	} while (0)

	BROKEN("meta-unsorted", { struct manifest_meta t = x->meta[0]; x->meta[0] = x->meta[1]; x->meta[1] = t; });
	BROKEN("meta-duplicate", set_str(&x->meta[1].key, x->meta[0].key));
	BROKEN("meta-key-empty", set_str(&x->meta[0].key, ""));
	BROKEN("meta-value-newline", set_str(&x->meta[0].value, "line\nbreak"));
	BROKEN("meta-value-overlong-utf8", set_str(&x->meta[0].value, "\xc0\xaf"));
	BROKEN("meta-value-surrogate", set_str(&x->meta[0].value, "\xed\xa0\x80"));
	BROKEN("meta-value-c1-control", set_str(&x->meta[0].value, "\xc2\x85"));
	BROKEN("meta-value-truncated-utf8", set_str(&x->meta[0].value, "ab\xe2\x82"));
	BROKEN("product-space", set_str(&x->product, "shoal demo"));
	BROKEN("product-empty", set_str(&x->product, ""));
	BROKEN("product-too-long", set_str(&x->product,
					   "PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP"));
	BROKEN("version-control-char", set_str(&x->version, "1.0\x1b[31m"));
	BROKEN("version-del", set_str(&x->version, "1.0\x7f"));
	BROKEN("payload-uppercase", set_str(&x->payload_type, "AB-image"));
	BROKEN("image-size-mismatch", x->image_size++);
	BROKEN("image-size-zero", { x->image_size = 0; x->n_chunks = 0; });
	BROKEN("no-chunks", x->n_chunks = 0);
	BROKEN("chunk-length-zero", { x->chunks[0].len = 0; });
	BROKEN("chunk-short-not-last", x->chunks[0].len = 10, fix_image_size(x));
	BROKEN("chunk-over-max", x->chunks[0].len = x->chunking.max + 1, fix_image_size(x));
	BROKEN("chunker-min-too-small", x->chunking.min = 63);
	BROKEN("chunker-avg-not-power-of-two", x->chunking.avg = 384);
	BROKEN("chunker-max-over-limit", x->chunking.max = CHUNKER_MAX_LIMIT + 1);
	BROKEN("chunker-min-over-avg", x->chunking.min = 512);
	BROKEN("expiry-before-creation", x->expires = x->created);
#undef BROKEN

	{
		/* signatures out of order: encode with one signer, append a
		 * second signature whose key sorts before the first */
		struct sigset s = { 0 };
		struct perr err = { { 0 } };
		struct wbuf w = { 0 };
		size_t signed_len = valid.n - 1 - PUBKEY_SIZE - SIG_SIZE;
		const struct key *lo = memcmp(k_a.pk, k_b.pk, PUBKEY_SIZE) < 0 ? &k_a : &k_b;
		const struct key *hi = lo == &k_a ? &k_b : &k_a;

		wbuf_put(&w, valid.p, signed_len);
		wbuf_u8(&w, 2);
		must(sigset_sign(&s, MANIFEST_SIG_DOMAIN, valid.p, signed_len, hi->sk, &err), &err, "sign");
		wbuf_put(&w, &s.v[0], sizeof(s.v[0]));
		sigset_clear(&s);
		must(sigset_sign(&s, MANIFEST_SIG_DOMAIN, valid.p, signed_len, lo->sk, &err), &err, "sign");
		wbuf_put(&w, &s.v[0], sizeof(s.v[0]));
		sigset_clear(&s);
		b = blob_steal(&w);
		write_blob("manifest", "signatures-unsorted", &b);
		blob_free(&b);
		/* the same key twice */
		w = (struct wbuf){ 0 };
		wbuf_put(&w, valid.p, valid.n);
		wbuf_put(&w, valid.p + signed_len + 1, PUBKEY_SIZE + SIG_SIZE);
		b = blob_steal(&w);
		b.p[signed_len] = 2;
		write_blob("manifest", "signatures-duplicate", &b);
		blob_free(&b);
	}

	manifest_free(m);
	blob_free(&valid);
	free(img.p);
}

/* --- keyrings ------------------------------------------------------------ */

static struct keyring *keyring_for(uint64_t version, uint8_t threshold, uint64_t expires, bool b_expired)
{
	struct keyring *kr = keyring_new();
	struct perr err = { { 0 } };

	if (!kr)
		die("out of memory");
	kr->version = version;
	kr->created = FUZZ_NOW - 86400 * 30;
	kr->expires = expires;
	kr->threshold = threshold;
	must(keyring_add_key(kr, k_a.pk, 0, 0, "release A (build farm)", &err), &err, "add key");
	must(keyring_add_key(kr, k_b.pk, FUZZ_NOW - 86400 * 30,
			     b_expired ? FUZZ_NOW - 3600 : FUZZ_NOW + 86400 * 365, "r\xc3\xa9lease B", &err),
	     &err, "add key");
	return kr;
}

/* Empties the key list the way keyring_free() expects it. */
static void drop_keys(struct keyring *kr)
{
	for (size_t i = 0; i < kr->n_keys; i++)
		free(kr->keys[i].name);
	kr->n_keys = 0;
}

static struct blob keyring_bytes(struct keyring *kr, const struct key *const *signers, size_t n_signers)
{
	struct perr err = { { 0 } };
	struct blob b;

	must(keyring_seal(kr, &err), &err, "keyring seal");
	for (size_t i = 0; i < n_signers; i++)
		must(keyring_sign(kr, signers[i]->sk, &err), &err, "keyring sign");
	must(keyring_format(kr, &b.p, &b.n, &err), &err, "keyring format");
	return b;
}

static void gen_keyrings(void)
{
	const struct key *root[] = { &k_root }, *stranger[] = { &k_stranger }, *mixed[] = { &k_root, &k_stranger };
	const size_t key_off = KEYRING_HEADER_SIZE + 3 * 8 + 1 + 2;
	struct keyring *kr;
	struct blob valid, b;
	uint8_t byte;

	kr = keyring_for(3, 2, 0, false);
	valid = keyring_bytes(kr, root, 1);
	write_blob("keyring", "valid-root-signed", &valid);
	b = encode_keyring(kr, root, 1);
	same_bytes(&b, &valid, "keyring");
	blob_free(&b);
	b = keyring_bytes(kr, stranger, 1);
	write_blob("keyring", "valid-stranger-signed", &b);
	blob_free(&b);
	b = keyring_bytes(kr, mixed, 2);
	write_blob("keyring", "valid-root-and-stranger-signed", &b);
	blob_free(&b);
	b = keyring_bytes(kr, NULL, 0);
	write_blob("keyring", "valid-unsigned", &b);
	blob_free(&b);
	keyring_free(kr);

	kr = keyring_for(4, 1, FUZZ_NOW - 60, true);
	b = keyring_bytes(kr, root, 1);
	write_blob("keyring", "valid-expired", &b);
	blob_free(&b);
	keyring_free(kr);

	{
		/* the limits: 256 keys, a name of 64 bytes, threshold 255 */
		struct perr err = { { 0 } };
		char name[KEYRING_NAME_MAX + 1];

		kr = keyring_new();
		if (!kr)
			die("out of memory");
		kr->version = UINT64_MAX;
		kr->created = FUZZ_NOW;
		kr->threshold = 255;
		memset(name, 'n', KEYRING_NAME_MAX);
		name[KEYRING_NAME_MAX] = 0;
		for (unsigned i = 0; i < KEYRING_MAX_KEYS; i++) {
			uint8_t pk[PUBKEY_SIZE] = { 0 };

			pk[0] = (uint8_t)i;
			must(keyring_add_key(kr, pk, i, i == 0 ? 0 : UINT64_MAX, i == 0 ? name : "", &err), &err,
			     "add key");
		}
		b = keyring_bytes(kr, root, 1);
		write_blob("keyring", "valid-limits", &b);
		blob_free(&b);
		keyring_free(kr);
	}

	write_seed("keyring", "empty", NULL, 0);
	write_patched("keyring", "bad-magic", &valid, 0, "SHOAL-MF", 8);
	write_le32_at("keyring", "bad-format", &valid, 8, 0);
	write_le32_at("keyring", "body-length-huge", &valid, 12, UINT32_MAX);
	write_le32_at("keyring", "body-length-short", &valid, 12, (uint32_t)(valid.n - KEYRING_HEADER_SIZE - 120));
	write_truncated("keyring", "truncated-header", &valid, 15);
	write_truncated("keyring", "truncated-body", &valid, key_off + 40);
	write_truncated("keyring", "truncated-signature", &valid, valid.n - 1);
	write_appended("keyring", "trailing-byte", &valid, 0xff);
	byte = 0xff;
	write_patched("keyring", "signature-count-huge", &valid, valid.n - 1 - PUBKEY_SIZE - SIG_SIZE, &byte, 1);
	byte = valid.p[valid.n - 40] ^ 0x80;
	write_patched("keyring", "bad-signature", &valid, valid.n - 40, &byte, 1);
	byte = 4;
	write_patched("keyring", "tampered-version", &valid, KEYRING_HEADER_SIZE, &byte, 1);
	{
		uint8_t le[2];

		wr_le16(le, 0xffff);
		write_patched("keyring", "key-count-huge", &valid, key_off - 2, le, 2);
		wr_le16(le, KEYRING_MAX_KEYS + 1);
		write_patched("keyring", "key-count-over-limit", &valid, key_off - 2, le, 2);
		wr_le16(le, 1);
		write_patched("keyring", "key-count-short", &valid, key_off - 2, le, 2);
	}

#define BROKEN(name, ...)                                       \
	do {                                                    \
		struct keyring *x = keyring_for(3, 2, 0, false); \
		__VA_ARGS__;                                    \
		b = encode_keyring(x, root, 1);                 \
		write_blob("keyring", name, &b);                \
		blob_free(&b);                                  \
		keyring_free(x);                                \
	} while (0)

	BROKEN("version-zero", x->version = 0);
	BROKEN("threshold-zero", x->threshold = 0);
	BROKEN("threshold-over-keys", x->threshold = 3);
	BROKEN("expiry-before-creation", x->expires = x->created - 1);
	BROKEN("no-keys", drop_keys(x));
	BROKEN("keys-unsorted", { struct keyring_key t = x->keys[0]; x->keys[0] = x->keys[1]; x->keys[1] = t; });
	BROKEN("keys-duplicate", memcpy(x->keys[1].pub, x->keys[0].pub, PUBKEY_SIZE));
	BROKEN("key-validity-inverted", { x->keys[1].not_after = x->keys[1].not_before; });
	BROKEN("key-name-control-char", set_str(&x->keys[0].name, "tab\there"));
	BROKEN("key-name-bad-utf8", set_str(&x->keys[0].name, "\xff\xfe"));
	BROKEN("key-name-too-long", set_str(&x->keys[0].name,
					    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"));
#undef BROKEN

	blob_free(&valid);
}

/* --- bundles ------------------------------------------------------------- */

enum store_mode {
	STORE_BEST,         /* zstd when it is smaller, as the tooling does */
	STORE_PLAIN,        /* everything plain */
	STORE_ZSTD_NO_SIZE, /* zstd frames that do not announce their size */
};

struct stored {
	uint8_t id[HASH_SIZE];
	uint8_t enc;
	struct blob data;
};

static int stored_cmp(const void *a, const void *b)
{
	return memcmp(((const struct stored *)a)->id, ((const struct stored *)b)->id, HASH_SIZE);
}

static size_t store_chunks(const struct image *img, const struct manifest *m, enum store_mode mode,
			   struct stored **ret)
{
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	struct stored *v = calloc(m->n_chunks, sizeof(*v));
	size_t n = 0;

	if (!cctx || !v)
		die("out of memory");
	for (size_t i = 0; i < m->n_chunks; i++) {
		const struct manifest_chunk *c = &m->chunks[i];
		const uint8_t *p = img->p + c->offset;
		size_t cap = ZSTD_compressBound(c->len), zlen = 0;
		uint8_t *z = malloc(cap);
		bool seen = false;

		for (size_t j = 0; j < n; j++)
			seen |= memcmp(v[j].id, c->id, HASH_SIZE) == 0;
		if (seen) {
			free(z);
			continue;
		}
		if (!z)
			die("out of memory");
		switch (mode) {
		case STORE_BEST:
		case STORE_PLAIN:
			must(chunk_compress(cctx, 3, p, c->len, z, cap, &zlen), NULL, "compress");
			break;
		case STORE_ZSTD_NO_SIZE:
			if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)))
				die("zstd parameter");
			zlen = ZSTD_compress2(cctx, z, cap, p, c->len);
			if (ZSTD_isError(zlen))
				die("zstd: %s", ZSTD_getErrorName(zlen));
			break;
		}
		memcpy(v[n].id, c->id, HASH_SIZE);
		if (mode == STORE_PLAIN || (mode == STORE_BEST && zlen >= c->len)) {
			v[n].enc = CHUNK_ENC_PLAIN;
			memcpy(z, p, c->len);
			v[n].data = (struct blob){ z, c->len };
		} else {
			v[n].enc = CHUNK_ENC_ZSTD;
			v[n].data = (struct blob){ z, zlen };
		}
		n++;
	}
	ZSTD_freeCCtx(cctx);
	qsort(v, n, sizeof(*v), stored_cmp);
	*ret = v;
	return n;
}

static void stored_free(struct stored *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		blob_free(&v[i].data);
	free(v);
}

/* header | manifest | keyring | index | data, entries in the order given */
static struct blob bundle_bytes(const struct blob *mf, const struct blob *kr, const struct stored *v, size_t n,
				struct bundle_info *ret_info)
{
	struct bundle_info info;
	struct perr err = { { 0 } };
	struct wbuf w = { 0 };
	uint8_t hdr[BUNDLE_HEADER_SIZE], ent[BUNDLE_ENTRY_SIZE];
	uint64_t data_len = 0, off;

	for (size_t i = 0; i < n; i++)
		data_len += v[i].data.n;
	must(bundle_layout(&info, (uint32_t)mf->n, kr ? (uint32_t)kr->n : 0, (uint32_t)n, data_len, &err), &err,
	     "bundle layout");
	bundle_format_header(&info, hdr);
	wbuf_put(&w, hdr, sizeof(hdr));
	wbuf_put(&w, mf->p, mf->n);
	if (kr)
		wbuf_put(&w, kr->p, kr->n);
	off = info.data_off;
	for (size_t i = 0; i < n; i++) {
		struct bundle_entry e = { .stored_len = (uint32_t)v[i].data.n, .enc = v[i].enc, .offset = off };

		memcpy(e.id, v[i].id, HASH_SIZE);
		bundle_format_entry(&e, ent);
		wbuf_put(&w, ent, sizeof(ent));
		off += v[i].data.n;
	}
	for (size_t i = 0; i < n; i++)
		wbuf_put(&w, v[i].data.p, v[i].data.n);
	if (ret_info)
		*ret_info = info;
	return blob_steal(&w);
}

static void write_bundle(const char *name, const struct blob *mf, const struct blob *kr, const struct stored *v,
			 size_t n)
{
	struct blob b = bundle_bytes(mf, kr, v, n, NULL);

	write_blob("bundle", name, &b);
	blob_free(&b);
}

static size_t first_with(const struct stored *v, size_t n, uint8_t enc)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].enc == enc)
			return i;
	die("no chunk stored with encoding %u", enc);
}

static void gen_bundles(void)
{
	const struct key *root[] = { &k_root }, *release[] = { &k_a, &k_b }, *only_a[] = { &k_a },
			 *stranger[] = { &k_stranger }, *cosigned[] = { &k_a, &k_b, &k_stranger },
			 *root_and_a[] = { &k_root, &k_a };
	const uint64_t created = FUZZ_NOW - 86400;
	struct image img = make_image(3, img_kinds, img_sizes, ELEMENTSOF(img_kinds));
	struct manifest *m = manifest_for(&img, &small_chunks, 100, created, 0, true);
	struct blob mf_release = manifest_bytes(m, release, 2), mf_root = manifest_bytes(m, root, 1),
		    mf_a = manifest_bytes(m, only_a, 1);
	struct keyring *kr = keyring_for(3, 2, 0, false);
	struct blob kr_root = keyring_bytes(kr, root, 1), kr_stranger = keyring_bytes(kr, stranger, 1), valid;
	struct bundle_info info;
	struct stored *v;
	size_t n, iz, ip;

	n = store_chunks(&img, m, STORE_BEST, &v);
	iz = first_with(v, n, CHUNK_ENC_ZSTD);
	ip = first_with(v, n, CHUNK_ENC_PLAIN);
	valid = bundle_bytes(&mf_release, &kr_root, v, n, &info);
	write_blob("bundle", "valid-keyring-threshold-2", &valid);
	printf("         (%zu chunks, %zu stored)\n", m->n_chunks, n);
	write_bundle("valid-no-keyring", &mf_root, NULL, v, n);
	write_bundle("valid-threshold-not-met", &mf_a, &kr_root, v, n);
	write_bundle("valid-keyring-untrusted", &mf_release, &kr_stranger, v, n);
	{
		/* signers the keyring does not list, and a root beside a release key */
		struct blob mb = manifest_bytes(m, cosigned, 3);

		write_bundle("valid-stranger-cosigned", &mb, &kr_root, v, n);
		blob_free(&mb);
		mb = manifest_bytes(m, root_and_a, 2);
		write_bundle("valid-root-and-release-signed", &mb, &kr_root, v, n);
		blob_free(&mb);
	}
	{
		struct keyring *kx = keyring_for(5, 2, 0, true);
		struct blob kb = keyring_bytes(kx, root, 1);

		write_bundle("valid-release-key-expired", &mf_release, &kb, v, n);
		blob_free(&kb);
		keyring_free(kx);
	}
	{
		/* the manifest claims a creation time before key B was valid */
		struct manifest *early = manifest_for(&img, &small_chunks, 100, FUZZ_NOW - 86400 * 60, 0, true);
		struct blob eb = manifest_bytes(early, release, 2);

		write_bundle("valid-created-before-key", &eb, &kr_root, v, n);
		blob_free(&eb);
		manifest_free(early);
	}
	{
		struct stored *pv;
		size_t pn = store_chunks(&img, m, STORE_PLAIN, &pv);

		write_bundle("valid-all-plain", &mf_root, NULL, pv, pn);
		stored_free(pv, pn);
		pn = store_chunks(&img, m, STORE_ZSTD_NO_SIZE, &pv);
		write_bundle("valid-zstd-without-size", &mf_root, NULL, pv, pn);
		stored_free(pv, pn);
	}

	/* header */
	write_seed("bundle", "empty", NULL, 0);
	write_truncated("bundle", "header-only", &valid, BUNDLE_HEADER_SIZE);
	write_truncated("bundle", "truncated-header", &valid, BUNDLE_HEADER_SIZE - 1);
	write_truncated("bundle", "truncated-data", &valid, valid.n - 1);
	write_appended("bundle", "padded", &valid, 0);
	write_patched("bundle", "bad-magic", &valid, 0, "SHOAL-bd", 8);
	write_le32_at("bundle", "bad-format", &valid, 8, 2);
	write_le32_at("bundle", "header-flags", &valid, 12, 1);
	write_le32_at("bundle", "header-reserved-28", &valid, 28, 0x80000000u);
	write_le32_at("bundle", "header-reserved-60", &valid, 60, 1);
	write_le32_at("bundle", "manifest-length-zero", &valid, 16, 0);
	write_le32_at("bundle", "manifest-length-huge", &valid, 16, UINT32_MAX);
	write_le32_at("bundle", "keyring-length-huge", &valid, 20, UINT32_MAX);
	write_le32_at("bundle", "entry-count-zero", &valid, 24, 0);
	write_le32_at("bundle", "entry-count-huge", &valid, 24, UINT32_MAX);
	write_le32_at("bundle", "entry-count-over-limit", &valid, 24, MANIFEST_MAX_CHUNKS + 1);
	{
		uint8_t le[8];

		wr_le64(le, UINT64_MAX - 100);
		write_patched("bundle", "data-length-overflow", &valid, 32, le, 8);
		wr_le64(le, info.data_len + BUNDLE_ENTRY_SIZE);
		write_patched("bundle", "data-length-long", &valid, 32, le, 8);
	}
	/* sections moved against each other: lengths still add up to the file */
	{
		uint8_t le[8];

		wr_le32(le, info.manifest_len + BUNDLE_ENTRY_SIZE);
		wr_le32(le + 4, info.keyring_len);
		{
			struct blob c = blob_dup(&valid);

			memcpy(c.p + 16, le, 8);
			wr_le32(c.p + 24, info.n_entries - 1);
			write_blob("bundle", "sections-shifted", &c);
			blob_free(&c);
		}
	}

	/* index */
	{
		size_t e0 = info.index_off, ez = info.index_off + iz * BUNDLE_ENTRY_SIZE,
		       ep = info.index_off + ip * BUNDLE_ENTRY_SIZE;
		uint8_t byte;
		struct blob c;

		c = blob_dup(&valid);
		{
			uint8_t t[BUNDLE_ENTRY_SIZE];

			memcpy(t, c.p + e0, BUNDLE_ENTRY_SIZE);
			memmove(c.p + e0, c.p + e0 + BUNDLE_ENTRY_SIZE, BUNDLE_ENTRY_SIZE);
			memcpy(c.p + e0 + BUNDLE_ENTRY_SIZE, t, BUNDLE_ENTRY_SIZE);
		}
		write_blob("bundle", "index-unsorted", &c);
		blob_free(&c);
		write_patched("bundle", "index-duplicate", &valid, e0 + BUNDLE_ENTRY_SIZE, valid.p + e0, HASH_SIZE);
		byte = 2;
		write_patched("bundle", "index-unknown-encoding", &valid, e0 + 36, &byte, 1);
		byte = 1;
		write_patched("bundle", "index-reserved", &valid, e0 + 39, &byte, 1);
		write_le32_at("bundle", "index-stored-length-zero", &valid, e0 + 32, 0);
		write_le32_at("bundle", "index-stored-length-huge", &valid, e0 + 32, UINT32_MAX);
		write_le32_at("bundle", "index-sum-mismatch", &valid, e0 + 32, rd_le32(valid.p + e0 + 32) + 1);
		/* a zstd chunk declared plain, a plain one declared zstd */
		byte = CHUNK_ENC_PLAIN;
		write_patched("bundle", "chunk-zstd-as-plain", &valid, ez + 36, &byte, 1);
		byte = CHUNK_ENC_ZSTD;
		write_patched("bundle", "chunk-plain-as-zstd", &valid, ep + 36, &byte, 1);
		/* the chunk bytes */
		{
			uint64_t at = info.data_off;

			for (size_t i = 0; i < ip; i++)
				at += v[i].data.n;
			byte = valid.p[at + 5] ^ 1;
			write_patched("bundle", "chunk-plain-corrupt", &valid, (size_t)at + 5, &byte, 1);
			at = info.data_off;
			for (size_t i = 0; i < iz; i++)
				at += v[i].data.n;
			byte = valid.p[at + v[iz].data.n - 1] ^ 0x55;
			write_patched("bundle", "chunk-zstd-corrupt", &valid, (size_t)at + v[iz].data.n - 1, &byte,
				      1);
			byte = valid.p[at] ^ 1;
			write_patched("bundle", "chunk-zstd-bad-magic", &valid, (size_t)at, &byte, 1);
		}
	}

	/* chunks that are well-formed entries but the wrong frames */
	{
		struct blob saved = v[iz].data;
		ZSTD_CCtx *cctx = ZSTD_createCCtx();
		const struct manifest_chunk *c = NULL;
		uint8_t *plain, *z;
		size_t cap, zlen;

		for (size_t i = 0; i < m->n_chunks && !c; i++)
			if (memcmp(m->chunks[i].id, v[iz].id, HASH_SIZE) == 0)
				c = &m->chunks[i];
		if (!c || !cctx)
			die("no zstd chunk");
		plain = calloc(1, c->len + 1);
		cap = ZSTD_compressBound(c->len + 1) + 16;
		z = malloc(cap);
		if (!plain || !z)
			die("out of memory");
		memcpy(plain, img.p + c->offset, c->len);

		/* announces one byte more than the chunk */
		must(chunk_compress(cctx, 3, plain, c->len + 1, z, cap, &zlen), NULL, "compress");
		v[iz].data = (struct blob){ z, zlen };
		write_bundle("chunk-zstd-size-too-big", &mf_root, NULL, v, n);
		/* no size announced, one byte too many inside */
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
		zlen = ZSTD_compress2(cctx, z, cap, plain, c->len + 1);
		v[iz].data = (struct blob){ z, zlen };
		write_bundle("chunk-zstd-no-size-too-long", &mf_root, NULL, v, n);
		/* one byte too few */
		zlen = ZSTD_compress2(cctx, z, cap, plain, c->len - 1);
		v[iz].data = (struct blob){ z, zlen };
		write_bundle("chunk-zstd-no-size-too-short", &mf_root, NULL, v, n);
		/* the right frame followed by an empty second frame */
		must(chunk_compress(cctx, 3, plain, c->len, z, cap, &zlen), NULL, "compress");
		{
			size_t z2 = ZSTD_compress2(cctx, z + zlen, cap - zlen, plain, 0);

			if (ZSTD_isError(z2))
				die("zstd");
			v[iz].data = (struct blob){ z, zlen + z2 };
			write_bundle("chunk-zstd-two-frames", &mf_root, NULL, v, n);
		}
		/* a skippable frame only */
		wr_le32(z, 0x184D2A50u);
		wr_le32(z + 4, 8);
		memset(z + 8, 0, 8);
		v[iz].data = (struct blob){ z, 16 };
		write_bundle("chunk-zstd-skippable", &mf_root, NULL, v, n);
		/* a frame of the right size whose content is another chunk's */
		memset(plain, 0xa5, c->len);
		must(chunk_compress(cctx, 3, plain, c->len, z, cap, &zlen), NULL, "compress");
		v[iz].data = (struct blob){ z, zlen };
		write_bundle("chunk-zstd-wrong-content", &mf_root, NULL, v, n);

		v[iz].data = saved;
		free(z);
		free(plain);
		ZSTD_freeCCtx(cctx);
	}

	/* a chunk the manifest needs is missing from the index */
	write_bundle("chunk-missing", &mf_root, NULL, v + 1, n - 1);
	/* sections that do not parse */
	{
		struct blob bad = blob_dup(&mf_root);

		bad.p[0] ^= 1;
		write_bundle("manifest-bad-magic", &bad, NULL, v, n);
		blob_free(&bad);
		bad = blob_dup(&kr_root);
		bad.p[bad.n - 1] ^= 1;
		write_bundle("keyring-bad-signature", &mf_release, &bad, v, n);
		blob_free(&bad);
		bad = blob_dup(&kr_root);
		bad.n--;
		write_bundle("keyring-truncated", &mf_release, &bad, v, n);
		blob_free(&bad);
	}

	stored_free(v, n);
	blob_free(&valid);
	blob_free(&kr_root);
	blob_free(&kr_stranger);
	keyring_free(kr);
	blob_free(&mf_release);
	blob_free(&mf_root);
	blob_free(&mf_a);
	manifest_free(m);
	free(img.p);
}

int main(int argc, char **argv)
{
	char path[4096];

	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS-DIR\n"
				"Writes the seed corpus into CORPUS-DIR/{manifest,keyring,bundle}/.\n", argv[0]);
		return 2;
	}
	if (sodium_init() < 0)
		die("sodium_init failed");
	fuzz_keypair(FUZZ_ROOT_SEED, k_root.pk, k_root.sk);
	fuzz_keypair(FUZZ_RELEASE_A_SEED, k_a.pk, k_a.sk);
	fuzz_keypair(FUZZ_RELEASE_B_SEED, k_b.pk, k_b.sk);
	fuzz_keypair(FUZZ_STRANGER_SEED, k_stranger.pk, k_stranger.sk);

	out_root = argv[1];
	mkdir_p(out_root);
	snprintf(path, sizeof(path), "%s/manifest", out_root);
	mkdir_p(path);
	snprintf(path, sizeof(path), "%s/keyring", out_root);
	mkdir_p(path);
	snprintf(path, sizeof(path), "%s/bundle", out_root);
	mkdir_p(path);

	gen_manifests();
	gen_keyrings();
	gen_bundles();
	return 0;
}
