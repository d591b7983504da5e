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
 * Exit 0 when the daemon closed every connection, 1 otherwise. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "session.h"

static bool established;

static int send_cb(void *ud, const uint8_t *p, size_t n)
{
	int fd = *(int *)ud;

	return write(fd, p, n) == (ssize_t)n ? 0 : -EIO;
}

static int est_cb(void *ud, const uint8_t pub[32])
{
	(void)ud;
	(void)pub;
	established = true;
	return 0;
}

static int frame_cb(void *ud, const uint8_t *p, size_t n)
{
	(void)ud;
	(void)p;
	(void)n;
	return 0;
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
	if (session_new(true, key, sk, &ops, &fd, &s) < 0 || session_start(s) < 0)
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

	if (argc != 6 || sodium_init() < 0) {
		fprintf(stderr, "usage: evil-peer HOST PORT FLEET-KEY-FILE MODE COUNT\n");
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
