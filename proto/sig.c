/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <sodium.h>

#include "sig.h"

char *key_short_id(const uint8_t pub[PUBKEY_SIZE], char out[17])
{
	return hex_encode(pub, 8, out);
}

void sigset_clear(struct sigset *s)
{
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* Ed25519 (not Ed25519ph) over domain || NUL || msg: a streaming update is
 * not needed, manifests are bounded in size. */
static int build_message(const char *domain, const uint8_t *msg, size_t len, uint8_t **ret, size_t *ret_len)
{
	size_t dn = strlen(domain) + 1;
	uint8_t *p = malloc(dn + len);

	if (!p)
		return -ENOMEM;
	memcpy(p, domain, dn);
	if (len)
		memcpy(p + dn, msg, len);
	*ret = p;
	*ret_len = dn + len;
	return 0;
}

int sigset_sign(struct sigset *s, const char *domain, const uint8_t *msg, size_t len,
		const uint8_t sk[SECKEY_SIZE], struct perr *err)
{
	_cleanup_(freep) uint8_t *full = NULL;
	struct signature sig, *p;
	size_t flen, at;

	if (build_message(domain, msg, len, &full, &flen) < 0)
		return perr_set(err, -ENOMEM, "out of memory");
	crypto_sign_ed25519_sk_to_pk(sig.pub, sk);
	if (crypto_sign_ed25519_detached(sig.sig, NULL, full, flen, sk) != 0)
		return perr_set(err, -EINVAL, "signing failed");

	for (at = 0; at < s->n; at++) {
		int c = memcmp(sig.pub, s->v[at].pub, PUBKEY_SIZE);

		if (c == 0) {
			s->v[at] = sig;
			return 0;
		}
		if (c < 0)
			break;
	}
	if (s->n >= SIGSET_MAX)
		return perr_set(err, -E2BIG, "more than %u signatures", SIGSET_MAX);
	p = realloc(s->v, (s->n + 1) * sizeof(*p));
	if (!p)
		return perr_set(err, -ENOMEM, "out of memory");
	memmove(p + at + 1, p + at, (s->n - at) * sizeof(*p));
	p[at] = sig;
	s->v = p;
	s->n++;
	return 0;
}

bool signature_check(const struct signature *sig, const char *domain, const uint8_t *msg, size_t len)
{
	_cleanup_(freep) uint8_t *full = NULL;
	size_t flen;

	if (build_message(domain, msg, len, &full, &flen) < 0)
		return false;
	return crypto_sign_ed25519_verify_detached(sig->sig, full, flen, sig->pub) == 0;
}

int sigset_parse(struct rd *r, struct sigset *ret)
{
	struct sigset s = { 0 };
	uint8_t n;
	int k;

	if ((k = rd_u8(r, &n, "signature count")) < 0)
		return k;
	if (n > SIGSET_MAX)
		return perr_set(r->err, -EBADMSG, "signature count %u exceeds %u", n, SIGSET_MAX);
	if ((size_t)n * (PUBKEY_SIZE + SIG_SIZE) != rd_left(r))
		return perr_set(r->err, -EBADMSG, "%u signatures need %u bytes, %zu are left", n,
				n * (PUBKEY_SIZE + SIG_SIZE), rd_left(r));
	s.v = calloc(n ? n : 1, sizeof(*s.v));
	if (!s.v)
		return perr_set(r->err, -ENOMEM, "out of memory");
	for (; s.n < n; s.n++) {
		struct signature *e = &s.v[s.n];
		const uint8_t *pub, *sig;
		char id[17];

		if ((k = rd_bytes(r, PUBKEY_SIZE, &pub, "signer key")) < 0 ||
		    (k = rd_bytes(r, SIG_SIZE, &sig, "signature")) < 0) {
			sigset_clear(&s);
			return k;
		}
		memcpy(e->pub, pub, PUBKEY_SIZE);
		memcpy(e->sig, sig, SIG_SIZE);
		if (s.n > 0 && memcmp(s.v[s.n - 1].pub, e->pub, PUBKEY_SIZE) >= 0) {
			sigset_clear(&s);
			return perr_set(r->err, -EBADMSG, "signature by key %s is duplicated or out of order",
					key_short_id(pub, id));
		}
	}
	*ret = s;
	return 0;
}

int sigset_format(const struct sigset *s, struct wbuf *w)
{
	wbuf_u8(w, (uint8_t)s->n);
	for (size_t i = 0; i < s->n; i++) {
		wbuf_put(w, s->v[i].pub, PUBKEY_SIZE);
		wbuf_put(w, s->v[i].sig, SIG_SIZE);
	}
	return w->err;
}
