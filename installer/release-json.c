/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "chunk.h"
#include "release-json.h"

static json_t *json_hex(const uint8_t *p, size_t n)
{
	char buf[2 * 64 + 1];

	return json_string(hex_encode(p, n, buf));
}

static json_t *json_time(uint64_t t)
{
	char buf[40];

	if (!t)
		return json_null();
	return json_string(time_format(t, buf, sizeof(buf)));
}

static json_t *keyring_json(const struct keyring *kr)
{
	json_t *o = json_object(), *keys = json_array(), *sigs = json_array();

	json_object_set_new(o, "version", json_integer((json_int_t)kr->version));
	json_object_set_new(o, "created", json_time(kr->created));
	json_object_set_new(o, "expires", json_time(kr->expires));
	json_object_set_new(o, "threshold", json_integer(kr->threshold));
	for (size_t i = 0; i < kr->n_keys; i++) {
		json_t *k = json_object();

		json_object_set_new(k, "key", json_hex(kr->keys[i].pub, PUBKEY_SIZE));
		json_object_set_new(k, "name", json_string(kr->keys[i].name));
		json_object_set_new(k, "not_before", json_time(kr->keys[i].not_before));
		json_object_set_new(k, "not_after", json_time(kr->keys[i].not_after));
		json_array_append_new(keys, k);
	}
	json_object_set_new(o, "keys", keys);
	for (size_t i = 0; i < kr->sigs.n; i++)
		json_array_append_new(sigs, json_hex(kr->sigs.v[i].pub, PUBKEY_SIZE));
	json_object_set_new(o, "signed_by", sigs);
	return o;
}

json_t *release_json(const struct release *r)
{
	const struct manifest *m = r->manifest;
	json_t *o = json_object(), *meta = json_object(), *chunks = json_array(), *sigs = json_array();
	json_t *chunking = json_object();

	json_object_set_new(o, "source", json_string(r->is_bundle ? "bundle" : "directory"));
	json_object_set_new(o, "product", json_string(m->product));
	json_object_set_new(o, "version", json_string(m->version));
	json_object_set_new(o, "counter", json_integer((json_int_t)m->counter));
	json_object_set_new(o, "created", json_time(m->created));
	json_object_set_new(o, "expires", json_time(m->expires));
	json_object_set_new(o, "payload_type", json_string(m->payload_type));
	json_object_set_new(o, "image_size", json_integer((json_int_t)m->image_size));
	json_object_set_new(o, "image_hash", json_hex(m->image_hash, HASH_SIZE));
	json_object_set_new(chunking, "min", json_integer(m->chunking.min));
	json_object_set_new(chunking, "avg", json_integer(m->chunking.avg));
	json_object_set_new(chunking, "max", json_integer(m->chunking.max));
	json_object_set_new(o, "chunking", chunking);
	json_object_set_new(o, "chunk_count", json_integer((json_int_t)m->n_chunks));
	json_object_set_new(o, "distinct_chunks", json_integer((json_int_t)manifest_unique_chunks(m)));
	for (size_t i = 0; i < m->n_meta; i++)
		json_object_set_new(meta, m->meta[i].key, json_string(m->meta[i].value));
	json_object_set_new(o, "metadata", meta);
	for (size_t i = 0; i < m->sigs.n; i++)
		json_array_append_new(sigs, json_hex(m->sigs.v[i].pub, PUBKEY_SIZE));
	json_object_set_new(o, "signed_by", sigs);
	json_object_set_new(o, "keyring", r->keyring ? keyring_json(r->keyring) : json_null());
	for (size_t i = 0; i < m->n_chunks; i++) {
		json_t *c = json_object();

		json_object_set_new(c, "id", json_hex(m->chunks[i].id, HASH_SIZE));
		json_object_set_new(c, "offset", json_integer((json_int_t)m->chunks[i].offset));
		json_object_set_new(c, "length", json_integer(m->chunks[i].len));
		json_array_append_new(chunks, c);
	}
	json_object_set_new(o, "chunks", chunks);
	return o;
}
