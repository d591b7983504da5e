/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Deterministic test images.
 *
 *   gen-image --seed S --size BYTES [--kind random|mixed] -o OUT
 *   gen-image --from IN --seed S --change PERCENT [--insert N] -o OUT
 *
 * "mixed" looks more like a file system: zero runs, repeated text and
 * random data in 64 KiB blocks. --from copies IN and rewrites PERCENT of its
 * 4 KiB blocks with new bytes, then inserts N runs of 1..64 bytes at
 * random places (shifting what follows, which fixed-size chunking cannot
 * follow and content-defined chunking can). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prng.h"

static int die(const char *msg)
{
	fprintf(stderr, "gen-image: %s\n", msg);
	return 2;
}

static void fill_mixed(uint64_t *s, uint8_t *p, size_t n)
{
	static const char text[] = "#!/bin/sh\n# shoal test image: some text that repeats like config files do\n"
				   "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n";

	for (size_t off = 0; off < n; off += 65536) {
		size_t len = n - off < 65536 ? n - off : 65536;
		uint64_t pick = prng_next(s) % 4;

		if (pick == 0) {
			memset(p + off, 0, len);
		} else if (pick == 1) {
			for (size_t i = 0; i < len; i++)
				p[off + i] = (uint8_t)text[(i + (size_t)(prng_next(s) % 3 == 0)) % (sizeof(text) - 1)];
		} else {
			prng_fill(s, p + off, len);
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seed", required_argument, NULL, 's' },
		{ "size", required_argument, NULL, 'n' },
		{ "kind", required_argument, NULL, 'k' },
		{ "from", required_argument, NULL, 'f' },
		{ "change", required_argument, NULL, 'c' },
		{ "insert", required_argument, NULL, 'i' },
		{ "output", required_argument, NULL, 'o' },
		{}
	};
	const char *kind = "random", *from = NULL, *out = NULL;
	uint64_t seed = 1, size = 0, inserts = 0;
	double change = 0;
	uint8_t *buf;
	FILE *f;
	int c;

	while ((c = getopt_long(argc, argv, "o:", opts, NULL)) >= 0) {
		switch (c) {
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'n': size = strtoull(optarg, NULL, 0); break;
		case 'k': kind = optarg; break;
		case 'f': from = optarg; break;
		case 'c': change = strtod(optarg, NULL); break;
		case 'i': inserts = strtoull(optarg, NULL, 0); break;
		case 'o': out = optarg; break;
		default: return die("bad option");
		}
	}
	if (!out)
		return die("-o OUT is required");
	if (from) {
		f = fopen(from, "rb");
		if (!f || fseek(f, 0, SEEK_END) < 0)
			return die("cannot open --from");
		size = (uint64_t)ftell(f);
		rewind(f);
	}
	if (!size)
		return die("--size or --from is required");
	buf = malloc(size + inserts * 64);
	if (!buf)
		return die("out of memory");
	if (from) {
		uint64_t blocks = size / 4096, n = (uint64_t)((double)blocks * change / 100.0);

		if (fread(buf, 1, size, f) != size)
			return die("short read");
		fclose(f);
		for (uint64_t i = 0; i < n && blocks; i++)
			prng_fill(&seed, buf + (prng_next(&seed) % blocks) * 4096, 4096);
		for (uint64_t i = 0; i < inserts; i++) {
			size_t at = (size_t)(prng_next(&seed) % size), len = 1 + (size_t)(prng_next(&seed) % 64);

			memmove(buf + at + len, buf + at, size - at);
			prng_fill(&seed, buf + at, len);
			size += len;
		}
	} else if (!strcmp(kind, "mixed")) {
		fill_mixed(&seed, buf, size);
	} else if (!strcmp(kind, "random")) {
		prng_fill(&seed, buf, size);
	} else {
		return die("--kind is random or mixed");
	}
	f = fopen(out, "wb");
	if (!f || fwrite(buf, 1, size, f) != size || fclose(f) != 0)
		return die("cannot write the output");
	free(buf);
	return 0;
}
