/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A fleet member gone bad, for the tests: it completes a real handshake
 * (it holds the fleet secret), then breaks the framing in one of several
 * ways and checks that the daemon hangs up on it.
 *
 *   evil-peer HOST PORT FLEET-KEY-FILE MODE COUNT
 *
 * MODE: oversize (a length prefix of 4 GiB), garbage (a frame that does
 * not decrypt), truncated (a frame cut short, then silence until the
 * daemon gives up or we close), stranger (the wrong fleet secret).
 * Exit 0 when the daemon closed every connection, 1 otherwise.
 *
 *   evil-peer HOST PORT FLEET-KEY-FILE offer 1 PRODUCT MANIFEST|- [KEYRING|- [COUNTER]]
 *
 * offer: a member that lies with well-formed frames. It says HELLO for
 * PRODUCT, announces the manifest file as a release (with COUNTER, or the
 * counter the file claims), serves the manifest when asked and the keyring
 * file whatever version is asked for, and counts the chunk requests. It
 * stays until the daemon has been quiet for 2 s after the last part it
 * asked for (at most 20 s). Exit 0 when the daemon took what was offered
 * (the whole manifest; the keyring) and asked for no chunk, 1 otherwise. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "manifest.h"
#include "session.h"
#include "wire.h"

static bool established;

/* offer mode */
static struct {
	const char *product;
	uint8_t *manifest, *keyring;
	size_t manifest_len, keyring_len;
	uint64_t counter;
	uint32_t chunks;
	uint8_t id[32];
	struct session *s;
	size_t manifest_sent; /* highest end offset served */
	unsigned keyrings_sent, requests;
} offer;

static int send_cb(void *ud, const uint8_t *p, size_t n)
{
	int fd = *(int *)ud;

	return write(fd, p, n) == (ssize_t)n ? 0 : -EIO;
}


static int send_msg(const struct msg *m)
{
	struct wbuf w = { 0 };
	int k = wire_encode(m, &w);

	if (k == 0)
		k = session_send(offer.s, w.p, w.len, m->type == MSG_GOODBYE);
	wbuf_free(&w);
	return k;
}

static int offer_established(void)
{
	struct msg m = { .type = MSG_HELLO };

	m.hello.version = WIRE_VERSION;
	m.hello.role = HELLO_ROLE_DEVICE;
	m.hello.product = offer.product;
	m.hello.product_len = strlen(offer.product);
	m.hello.name = "liar";
	m.hello.name_len = 4;
	if (send_msg(&m) < 0)
		return -EIO;
	m = (struct msg){ .type = MSG_RELEASES };
	if (offer.manifest) {
		m.releases.n = 1;
		memcpy(m.releases.v[0].id, offer.id, 32);
		m.releases.v[0].counter = offer.counter;
		m.releases.v[0].held = m.releases.v[0].total = offer.chunks;
	}
	return send_msg(&m);
}

static int frame_cb(void *ud, const uint8_t *p, size_t n)
{
	struct perr err = { "" };
	struct msg m, out = { 0 };

	(void)ud;
	if (!offer.s || wire_decode(p, n, &m, &err) < 0)
		return 0;
	if (m.type == MSG_GET_MANIFEST && offer.manifest && !memcmp(m.get_manifest.id, offer.id, 32) &&
	    m.get_manifest.offset < offer.manifest_len) {
		out.type = MSG_MANIFEST_PART;
		memcpy(out.manifest_part.id, offer.id, 32);
		out.manifest_part.total = (uint32_t)offer.manifest_len;
		out.manifest_part.offset = m.get_manifest.offset;
		out.manifest_part.bytes = offer.manifest + m.get_manifest.offset;
		out.manifest_part.len = offer.manifest_len - m.get_manifest.offset;
		if (out.manifest_part.len > WIRE_MANIFEST_PART_MAX)
			out.manifest_part.len = WIRE_MANIFEST_PART_MAX;
		if (m.get_manifest.offset + out.manifest_part.len > offer.manifest_sent)
			offer.manifest_sent = m.get_manifest.offset + out.manifest_part.len;
	} else if (m.type == MSG_GET_KEYRING && offer.keyring) {
		out.type = MSG_KEYRING; /* whatever version was asked for */
		out.keyring.bytes = offer.keyring;
		out.keyring.len = offer.keyring_len;
		offer.keyrings_sent++;
	} else if (m.type == MSG_REQUEST) {
		offer.requests += m.request.n;
	} else if (m.type == MSG_PING) {
		out.type = MSG_PONG;
		out.pong.nonce = m.ping.nonce;
	}
	if (out.type && send_msg(&out) < 0)
		return -EIO;
	return 0;
}

static int est_cb(void *ud, const uint8_t pub[32])
{
	(void)ud;
	(void)pub;
	established = true;
	return offer.s ? offer_established() : 0;
}

static uint8_t *slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n)) && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	if (buf)
		*ret_len = (size_t)n;
	fclose(f);
	return buf;
}

static int offer_setup(int argc, char **argv)
{
	struct manifest *m = NULL;
	struct perr err = { "" };

	if (argc < 8 || argc > 10)
		return -1;
	offer.product = argv[6];
	if (strcmp(argv[7], "-") != 0) {
		if (!(offer.manifest = slurp(argv[7], &offer.manifest_len)))
			return -1;
		crypto_generichash(offer.id, 32, offer.manifest, offer.manifest_len, NULL, 0);
		/* a damaged signature still parses: only the checker refuses it */
		if (manifest_parse(offer.manifest, offer.manifest_len, &m, &err) < 0) {
			fprintf(stderr, "evil-peer: %s: %s\n", argv[7], err.msg);
			return -1;
		}
		offer.counter = m->counter;
		offer.chunks = (uint32_t)m->n_chunks;
		manifest_free(m);
	}
	if (argc > 8 && strcmp(argv[8], "-") != 0 && !(offer.keyring = slurp(argv[8], &offer.keyring_len)))
		return -1;
	if (argc > 9)
		offer.counter = strtoull(argv[9], NULL, 10);
	return 0;
}

/* Serves what the daemon asks for until it has been quiet for 2 s after
 * asking (or closes); at most 20 s. */
static bool offer_serve(int fd, struct session *s)
{
	uint8_t buf[65536];
	int quiet = 0;

	for (int i = 0; i < 200; i++) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pf, 1, 100) <= 0) {
			bool took = (!offer.manifest || offer.manifest_sent == offer.manifest_len) &&
				    (!offer.keyring || offer.keyrings_sent);

			if (took && ++quiet >= 20)
				break;
			continue;
		}
		quiet = 0;
		n = read(fd, buf, sizeof(buf));
		if (n <= 0 || session_feed(s, buf, (size_t)n) < 0)
			break;
	}
	offer.s = NULL;
	printf("offer: manifest served %zu of %zu bytes, keyring sent %u times, %u chunk ids requested\n",
	       offer.manifest_sent, offer.manifest_len, offer.keyrings_sent, offer.requests);
	return (!offer.manifest || offer.manifest_sent == offer.manifest_len) && (!offer.keyring || offer.keyrings_sent) &&
	       offer.requests == 0;
}

/* Reads until the peer closes (true) or 10 s pass (false). */
static bool wait_closed(int fd, struct session *s)
{
	uint8_t buf[65536];

	for (int i = 0; i < 100; i++) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pf, 1, 100) <= 0)
			continue;
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			return true;
		if (s)
			session_feed(s, buf, (size_t)n);
	}
	return false;
}

static int one(const char *host, int port, const uint8_t key[32], const char *mode)
{
	static const struct session_ops ops = { send_cb, est_cb, frame_cb };
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	uint8_t pk[32], sk[64], junk[200];
	struct session *s = NULL;
	int fd, ok = 0;

	crypto_sign_keypair(pk, sk);
	inet_pton(AF_INET, host, &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		return -1;
	}
	established = false;
	if (session_new(true, key, sk, &ops, &fd, &s) < 0)
		return -1;
	if (!strcmp(mode, "offer"))
		offer.s = s; /* HELLO and RELEASES go out as soon as it is established */
	if (session_start(s) < 0)
		return -1;
	if (strcmp(mode, "stranger") != 0) {
		uint8_t buf[4096];

		for (int i = 0; i < 100 && !established; i++) {
			struct pollfd pf = { .fd = fd, .events = POLLIN };
			ssize_t n;

			if (poll(&pf, 1, 100) <= 0)
				continue;
			n = read(fd, buf, sizeof(buf));
			if (n <= 0 || session_feed(s, buf, (size_t)n) < 0)
				break;
		}
		if (!established) {
			fprintf(stderr, "evil-peer: no handshake\n");
			return -1;
		}
	}
	randombytes_buf(junk, sizeof(junk));
	if (!strcmp(mode, "oversize")) {
		static const uint8_t len[4] = { 0xff, 0xff, 0xff, 0xff };

		ok = write(fd, len, 4) == 4;
	} else if (!strcmp(mode, "garbage")) {
		uint8_t len[4] = { 100, 0, 0, 0 };

		ok = write(fd, len, 4) == 4 && write(fd, junk, 100) == 100;
	} else if (!strcmp(mode, "truncated")) {
		uint8_t len[4] = { 0, 4, 0, 0 }; /* 1024 bytes announced, 10 sent */

		ok = write(fd, len, 4) == 4 && write(fd, junk, 10) == 10;
		if (ok)
			shutdown(fd, SHUT_WR); /* the daemon sees the frame end early */
	} else if (!strcmp(mode, "offer")) {
		ok = offer_serve(fd, s);
		session_free(s);
		close(fd);
		return ok ? 0 : 1;
	} else {
		ok = 1; /* stranger: its M1 carries the wrong MAC */
	}
	ok = ok && wait_closed(fd, established ? s : NULL);
	session_free(s);
	close(fd);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	uint8_t key[32];
	char hex[80] = "";
	FILE *f;
	int bad = 0, n;

	if (argc < 6 || sodium_init() < 0 || (strcmp(argv[4], "offer") ? argc != 6 : offer_setup(argc, argv) < 0)) {
		fprintf(stderr, "usage: evil-peer HOST PORT FLEET-KEY-FILE MODE COUNT\n"
				"       evil-peer HOST PORT FLEET-KEY-FILE offer 1 PRODUCT MANIFEST|- [KEYRING|- [COUNTER]]\n");
		return 2;
	}
	f = fopen(argv[3], "r");
	if (!f || !fgets(hex, sizeof(hex), f) || sodium_hex2bin(key, 32, hex, 64, NULL, NULL, NULL) < 0) {
		fprintf(stderr, "evil-peer: cannot read %s\n", argv[3]);
		return 2;
	}
	fclose(f);
	n = atoi(argv[5]);
	for (int i = 0; i < n && i < 10000; i++) {
		int r = one(argv[1], atoi(argv[2]), key, argv[4]);

		if (r < 0)
			return 2;
		bad += r;
	}
	printf("%s: %d of %d connections closed by the daemon\n", argv[4], n - bad, n);
	return bad ? 1 : 0;
}
