/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sodium.h>
#include <sys/stat.h>

#include "cli.h"
#include "fileio.h"
#include "keyring.h"

static int write_new_file(const char *path, const char *text, mode_t mode, bool force)
{
	int fd, k = 0;
	size_t n = strlen(text);

	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), mode);
	if (fd < 0) {
		if (errno == EEXIST)
			log_error("%s already exists; refusing to overwrite a key (use --force)", path);
		else
			log_error("%s: %s", path, strerror(errno));
		return -errno;
	}
	if (fchmod(fd, mode) < 0 || pwrite_full(fd, text, n, 0) < 0 || fsync(fd) < 0)
		k = -errno;
	if (close(fd) < 0 && !k)
		k = -errno;
	if (k < 0) {
		log_error("%s: %s", path, strerror(-k));
		unlink(path);
	}
	return k;
}

static void keygen_help(void)
{
	printf("Usage: shoal keygen -o NAME [--force]\n\n"
	       "Makes an Ed25519 key pair: NAME.key (secret, mode 0600) and NAME.pub.\n"
	       "A root key signs keyrings (and may sign releases directly); release\n"
	       "keys sign releases. Devices are given the .pub of their root keys.\n\n"
	       "  -o, --output NAME  path prefix of the two files\n"
	       "      --force        overwrite existing files\n"
	       "  -h, --help         this text\n");
}

int cmd_keygen(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	const char *out = NULL;
	char path[PATH_MAX], hex[2 * SECKEY_SIZE + 1], *line;
	uint8_t pk[PUBKEY_SIZE], *sk;
	bool force = false;
	int c, k;

	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) >= 0) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'F': force = true; break;
		case 'h': keygen_help(); return EXIT_OK;
		default: return usage_error("keygen", "invalid option");
		}
	}
	if (optind < argc)
		return usage_error("keygen", "unexpected argument '%s'", argv[optind]);
	if (!out)
		return usage_error("keygen", "missing -o NAME");

	sk = sodium_malloc(SECKEY_SIZE);
	line = sodium_malloc(sizeof(hex) + 32);
	if (!sk || !line) {
		log_error("out of memory");
		return EXIT_FAIL;
	}
	crypto_sign_keypair(pk, sk);

	snprintf(line, sizeof(hex) + 32, "ed25519-secret:%s\n", hex_encode(sk, SECKEY_SIZE, hex));
	sodium_memzero(hex, sizeof(hex));
	snprintf(path, sizeof(path), "%s.key", out);
	k = write_new_file(path, line, 0600, force);
	sodium_free(line);
	sodium_free(sk);
	if (k < 0)
		return EXIT_FAIL;

	snprintf(path, sizeof(path), "%s.pub", out);
	{
		char publine[2 * PUBKEY_SIZE + 16];

		snprintf(publine, sizeof(publine), "ed25519:%s\n", hex_encode(pk, PUBKEY_SIZE, hex));
		if (write_new_file(path, publine, 0644, force) < 0)
			return EXIT_FAIL;
	}
	printf("key %s: %s.key (secret), %s.pub\n", key_short_id(pk, hex), out, out);
	return EXIT_OK;
}

static void keyring_help(void)
{
	printf("Usage: shoal keyring create --root ROOT.key --add KEY.pub [--add ...]\n"
	       "                            --version N [--threshold T] [--expires TIME]\n"
	       "                            [--key-expires TIME] -o FILE\n\n"
	       "Writes a keyring that names the keys allowed to sign releases, signed by\n"
	       "one or more root keys. Devices accept a keyring signed by a root they\n"
	       "trust and never one whose version is below one they have seen: to revoke\n"
	       "a key, create a higher version without it.\n\n"
	       "  --root ROOT.key     root secret key that signs the keyring (repeatable)\n"
	       "  --add KEY.pub[:NAME] release key to list, with an optional name (repeatable)\n"
	       "  --version N         keyring version, >= 1, higher than any before\n"
	       "  --threshold T       distinct listed keys a release needs (default 1)\n"
	       "  --expires TIME      the keyring is refused after TIME\n"
	       "  --key-expires TIME  listed keys are valid until TIME\n"
	       "  -o, --output FILE   where to write it\n"
	       "  -h, --help          this text\n\n"
	       "TIME: 2027-01-31, 2027-01-31T12:00:00Z, @UNIXSECONDS or +30d/+12h/+90m/+60s\n");
}

int cmd_keyring(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "add", required_argument, NULL, 'a' },
		{ "version", required_argument, NULL, 'V' },
		{ "threshold", required_argument, NULL, 't' },
		{ "expires", required_argument, NULL, 'e' },
		{ "key-expires", required_argument, NULL, 'k' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	_cleanup_(keyring_freep) struct keyring *kr = keyring_new();
	_cleanup_(freep) uint8_t *bytes = NULL;
	const char *roots[SIGSET_MAX], *adds[KEYRING_MAX_KEYS], *out = NULL;
	size_t n_roots = 0, n_adds = 0, len;
	uint64_t now = now_or_source_date(), kexp = 0;
	unsigned long long v;
	struct perr err = { 0 };
	char *end;
	int c, k;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		keyring_help();
		return EXIT_OK;
	}
	if (argc < 2 || strcmp(argv[1], "create") != 0)
		return usage_error("keyring", "the only subcommand is 'create'");
	argc--;
	argv++;
	if (!kr) {
		log_error("out of memory");
		return EXIT_FAIL;
	}
	kr->version = 0;
	kr->created = now;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) >= 0) {
		switch (c) {
		case 'r':
			if (n_roots >= ELEMENTSOF(roots))
				return usage_error("keyring", "at most %zu --root", ELEMENTSOF(roots));
			roots[n_roots++] = optarg;
			break;
		case 'a':
			if (n_adds >= ELEMENTSOF(adds))
				return usage_error("keyring", "at most %zu --add", ELEMENTSOF(adds));
			adds[n_adds++] = optarg;
			break;
		case 'V':
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || v == 0 || optarg[0] == '-')
				return usage_error("keyring", "--version must be a whole number >= 1, not '%s'", optarg);
			kr->version = v;
			break;
		case 't':
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || v == 0 || v > 255 || optarg[0] == '-')
				return usage_error("keyring", "--threshold must be 1..255, not '%s'", optarg);
			kr->threshold = (uint8_t)v;
			break;
		case 'e':
			if (time_parse(optarg, now, &kr->expires, &err) < 0)
				return usage_error("keyring", "--expires: %s", err.msg);
			break;
		case 'k':
			if (time_parse(optarg, now, &kexp, &err) < 0)
				return usage_error("keyring", "--key-expires: %s", err.msg);
			break;
		case 'o': out = optarg; break;
		case 'h': keyring_help(); return EXIT_OK;
		default: return usage_error("keyring", "invalid option");
		}
	}
	if (optind < argc)
		return usage_error("keyring", "unexpected argument '%s'", argv[optind]);
	if (!out || !n_roots || !n_adds || !kr->version)
		return usage_error("keyring", "--root, --add, --version and -o are required");

	for (size_t i = 0; i < n_adds; i++) {
		char path[PATH_MAX], *colon;
		const char *name = "";
		uint8_t pub[PUBKEY_SIZE];

		snprintf(path, sizeof(path), "%s", adds[i]);
		colon = strrchr(path, ':');
		if (colon && !strchr(colon, '/')) {
			*colon = '\0';
			name = colon + 1;
		}
		if ((k = key_read_public(path, pub, &err)) < 0) {
			log_error("%s", err.msg);
			return EXIT_FAIL;
		}
		if ((k = keyring_add_key(kr, pub, 0, kexp, name, &err)) < 0) {
			log_error("--add %s: %s", adds[i], err.msg);
			return EXIT_USAGE;
		}
	}
	if ((k = keyring_seal(kr, &err)) < 0) {
		log_error("%s", err.msg);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < n_roots; i++) {
		uint8_t *sk;

		if ((k = key_read_secret(roots[i], 0, &sk, &err)) < 0) {
			log_error("%s", err.msg);
			return EXIT_FAIL;
		}
		k = keyring_sign(kr, sk, &err);
		sodium_free(sk);
		if (k < 0) {
			log_error("%s", err.msg);
			return EXIT_FAIL;
		}
	}
	if ((k = keyring_format(kr, &bytes, &len, &err)) < 0 ||
	    (k = write_file_atomic(out, bytes, len, 0644, &err)) < 0) {
		log_error("%s", err.msg);
		return EXIT_FAIL;
	}
	printf("keyring v%" PRIu64 ": %zu key(s), threshold %u, signed by %zu root key(s): %s\n", kr->version,
	       kr->n_keys, kr->threshold, kr->sigs.n, out);
	return EXIT_OK;
}
