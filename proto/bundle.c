/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "bundle.h"
#include "codec.h"

int bundle_layout(struct bundle_info *info, uint32_t manifest_len, uint32_t keyring_len, uint32_t n_entries,
		  uint64_t data_len, struct perr *err)
{
	struct bundle_info i = {
		.manifest_off = BUNDLE_HEADER_SIZE,
		.manifest_len = manifest_len,
		.keyring_len = keyring_len,
		.n_entries = n_entries,
		.data_len = data_len,
	};

	if (manifest_len == 0 || manifest_len > MANIFEST_MAX_SIZE)
		return perr_set(err, -EBADMSG, "manifest length %u is outside 1..%u", manifest_len, MANIFEST_MAX_SIZE);
	if (keyring_len > KEYRING_MAX_SIZE)
		return perr_set(err, -EBADMSG, "keyring length %u exceeds %zu", keyring_len, (size_t)KEYRING_MAX_SIZE);
	if (n_entries == 0 || n_entries > MANIFEST_MAX_CHUNKS)
		return perr_set(err, -EBADMSG, "index count %u is outside 1..%u", n_entries, MANIFEST_MAX_CHUNKS);
	i.keyring_off = i.manifest_off + manifest_len;
	i.index_off = i.keyring_off + keyring_len;
	i.data_off = i.index_off + (uint64_t)n_entries * BUNDLE_ENTRY_SIZE;
	if (!add_u64(i.data_off, data_len, &(uint64_t){ 0 }))
		return perr_set(err, -EBADMSG, "data length %" PRIu64 " overflows", data_len);
	*info = i;
	return 0;
}

int bundle_parse_header(const uint8_t *buf, size_t len, uint64_t file_size, struct bundle_info *ret,
			struct perr *err)
{
	struct bundle_info info;
	uint64_t end;
	int k;

	if (len < BUNDLE_HEADER_SIZE || file_size < BUNDLE_HEADER_SIZE)
		return perr_set(err, -EBADMSG, "bundle is shorter than its %u-byte header", BUNDLE_HEADER_SIZE);
	if (memcmp(buf, BUNDLE_MAGIC, 8) != 0)
		return perr_set(err, -EBADMSG, "not a shoal bundle (bad magic)");
	if (rd_le32(buf + 8) != BUNDLE_FORMAT)
		return perr_set(err, -EPROTONOSUPPORT, "bundle format %u is not supported (this build reads %u)",
				rd_le32(buf + 8), BUNDLE_FORMAT);
	if (rd_le32(buf + 12) != 0)
		return perr_set(err, -EBADMSG, "bundle header flags 0x%x are unknown", rd_le32(buf + 12));
	if (rd_le32(buf + 28) != 0)
		return perr_set(err, -EBADMSG, "bundle header reserved field is not zero");
	for (size_t i = 40; i < BUNDLE_HEADER_SIZE; i++)
		if (buf[i])
			return perr_set(err, -EBADMSG, "bundle header reserved byte %zu is not zero", i);
	k = bundle_layout(&info, rd_le32(buf + 16), rd_le32(buf + 20), rd_le32(buf + 24), rd_le64(buf + 32), err);
	if (k < 0)
		return perr_prefix(err, k, "bundle header: ");
	end = info.data_off + info.data_len;
	if (end != file_size)
		return perr_set(err, -EBADMSG, "bundle sections end at byte %" PRIu64 " but the file has %" PRIu64
				" bytes (truncated or padded)", end, file_size);
	*ret = info;
	return 0;
}

int bundle_parse_index(const struct bundle_info *info, const uint8_t *buf, size_t len,
		       struct bundle_entry **ret, struct perr *err)
{
	_cleanup_(freep) struct bundle_entry *v = NULL;
	uint64_t off = info->data_off, sum = 0;
	char hex[2 * HASH_SIZE + 1];

	if ((uint64_t)len != (uint64_t)info->n_entries * BUNDLE_ENTRY_SIZE)
		return perr_set(err, -EBADMSG, "bundle index is %zu bytes, %u entries need %llu", len,
				info->n_entries, (unsigned long long)info->n_entries * BUNDLE_ENTRY_SIZE);
	v = calloc(info->n_entries ? info->n_entries : 1, sizeof(*v));
	if (!v)
		return perr_set(err, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < info->n_entries; i++) {
		const uint8_t *p = buf + (size_t)i * BUNDLE_ENTRY_SIZE;
		struct bundle_entry *e = &v[i];

		memcpy(e->id, p, HASH_SIZE);
		e->stored_len = rd_le32(p + 32);
		e->enc = p[36];
		e->offset = off;
		hex_encode(e->id, HASH_SIZE, hex);
		if (p[37] || p[38] || p[39])
			return perr_set(err, -EBADMSG, "bundle index entry %u (%s): reserved bytes not zero", i, hex);
		if (i > 0 && memcmp(v[i - 1].id, e->id, HASH_SIZE) >= 0)
			return perr_set(err, -EBADMSG, "bundle index entry %u (%s) is duplicated or out of order", i, hex);
		if (e->enc != CHUNK_ENC_PLAIN && e->enc != CHUNK_ENC_ZSTD)
			return perr_set(err, -EBADMSG, "bundle index entry %u (%s): unknown encoding %u", i, hex, e->enc);
		if (e->stored_len == 0 || e->stored_len > chunk_stored_max())
			return perr_set(err, -EBADMSG, "bundle index entry %u (%s): stored length %u is out of bounds",
					i, hex, e->stored_len);
		sum += e->stored_len; /* at most 2^20 * 2^25: no overflow */
		off += e->stored_len;
	}
	if (sum != info->data_len)
		return perr_set(err, -EBADMSG, "bundle index adds up to %" PRIu64 " data bytes, the header says %" PRIu64,
				sum, info->data_len);
	*ret = TAKE_PTR(v);
	return 0;
}

const struct bundle_entry *bundle_find(const struct bundle_entry *v, size_t n, const uint8_t id[HASH_SIZE])
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(v[mid].id, id, HASH_SIZE);

		if (c == 0)
			return &v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

void bundle_format_header(const struct bundle_info *info, uint8_t out[BUNDLE_HEADER_SIZE])
{
	memset(out, 0, BUNDLE_HEADER_SIZE);
	memcpy(out, BUNDLE_MAGIC, 8);
	wr_le32(out + 8, BUNDLE_FORMAT);
	wr_le32(out + 16, info->manifest_len);
	wr_le32(out + 20, info->keyring_len);
	wr_le32(out + 24, info->n_entries);
	wr_le64(out + 32, info->data_len);
}

void bundle_format_entry(const struct bundle_entry *e, uint8_t out[BUNDLE_ENTRY_SIZE])
{
	memset(out, 0, BUNDLE_ENTRY_SIZE);
	memcpy(out, e->id, HASH_SIZE);
	wr_le32(out + 32, e->stored_len);
	out[36] = e->enc;
}
