#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The release tools end to end, as a user runs them: keys, keyrings,
# release create/show/verify, bundles; and that every tampered byte, every
# untrusted or revoked signer and every bad argument is refused with the
# documented exit code and a message naming the culprit, never a crash.
#
# usage: release-cli.sh SHOAL GEN-IMAGE
set -u
SHOAL=$1
GEN=$2
. "$(dirname "$0")/../lib/tap.sh"

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
export SHOAL_NO_PROGRESS=1

# --- keys -------------------------------------------------------------------
check "keygen root" "$SHOAL" keygen -o root
check "keygen release key" "$SHOAL" keygen -o rel
check "keygen second release key" "$SHOAL" keygen -o rel2
check "secret key is mode 0600" test "$(stat -c %a rel.key)" = 600
check "public key is one line" test "$(wc -l <rel.pub)" = 1
expect_exit 1 "keygen refuses to overwrite a key" "$SHOAL" keygen -o rel
expect_exit 2 "keygen without -o is a usage error" "$SHOAL" keygen
printf 'ed25519-secret:zz\n' >bad.key
expect_exit 1 "a damaged key file is refused" "$SHOAL" keyring create --root bad.key --add rel.pub --version 1 -o x
output_has "and the message names the file" "bad.key"

# --- keyrings ---------------------------------------------------------------
check "keyring v1 lists rel" "$SHOAL" keyring create --root root.key --add rel.pub:ci --version 1 -o kr1
check "keyring v2 revokes rel, lists rel2" "$SHOAL" keyring create --root root.key --add rel2.pub --version 2 -o kr2
check "keyring with threshold 2" "$SHOAL" keyring create --root root.key --add rel.pub --add rel2.pub --threshold 2 --version 3 -o kr3
expect_exit 2 "threshold above the key count is refused" "$SHOAL" keyring create --root root.key --add rel.pub --threshold 2 --version 1 -o x
expect_exit 2 "version 0 is refused" "$SHOAL" keyring create --root root.key --add rel.pub --version 0 -o x

# --- create, show, verify ---------------------------------------------------
"$GEN" --seed 7 --size $((24 << 20)) --kind mixed -o v1.img
check "release create" "$SHOAL" release create --image v1.img --product acme-gw --version 1.0 --counter 1 \
	--key rel.key --keyring kr1 --meta build=42 -o r1
expect_exit 0 "release verify" "$SHOAL" release verify --trust root.pub r1
output_has "verify reports every chunk checked" "chunks: all [0-9]+ verified, image hash matches"
expect_exit 0 "release show" "$SHOAL" release show r1
output_has "show names product, version and counter" "acme-gw 1.0 \(counter 1\)"
expect_exit 0 "release show --json" "$SHOAL" release show --json r1
output_has "json has the chunk table" '"chunks": \['
output_has "json has the metadata" '"build": "42"'
if command -v b2sum >/dev/null; then
	want=$(b2sum -l 256 v1.img | cut -c1-64)
	"$SHOAL" release show r1 >show.txt
	check "image hash equals b2sum -l 256 of the image" grep -q "blake2b-256:$want" show.txt
fi
expect_exit 1 "create refuses to replace a manifest" "$SHOAL" release create --image v1.img --product acme-gw \
	--version 1.0 --counter 1 --key rel.key -o r1

# A second version into the same directory reuses the chunks it shares.
"$GEN" --from v1.img --seed 8 --change 0.3 --insert 20 -o v2.img
expect_exit 0 "release create v2 into a shared store" "$SHOAL" release create --image v2.img --product acme-gw \
	--version 2.0 --counter 2 --key rel.key --keyring kr1 --force -o r1
already=$(printf '%s\n' "$TAP_OUT" | sed -n 's/.*; \([0-9]*\) already present/\1/p')
distinct=$(printf '%s\n' "$TAP_OUT" | sed -n 's/.*chunks (\([0-9]*\) distinct).*/\1/p')
check "v2 reuses most chunks of v1 ($already of $distinct)" test "$((already * 100))" -gt "$((distinct * 70))"
check "v2 verifies" "$SHOAL" release verify --trust root.pub r1

# --- trust ------------------------------------------------------------------
expect_exit 3 "a release key is not a root" "$SHOAL" release verify --trust rel.pub r1
output_has "names the keyring that no root signed" "not signed by any trusted root"
expect_exit 3 "a revoked key (newer keyring without it) fails" "$SHOAL" release verify --trust root.pub --keyring kr2 r1
output_has "names the key" "signed by key [0-9a-f]{16}, which is neither a trusted root nor in the trusted keyring"
check "root-signed release without keyring" "$SHOAL" release create --image v1.img --product acme-gw \
	--version 1.0 --counter 1 --key root.key -o rroot
check "verifies with the root alone" "$SHOAL" release verify --trust root.pub rroot
expect_exit 3 "a key nobody trusts fails" "$SHOAL" release verify --trust rel2.pub rroot
check "release signed by one of two keys" "$SHOAL" release create --image v1.img --product acme-gw \
	--version 1.0 --counter 1 --key rel.key --keyring kr3 -o rthr1
expect_exit 3 "threshold 2 with one signature fails" "$SHOAL" release verify --trust root.pub rthr1
output_has "says how many were needed" "requires 2"
check "release signed by both keys" "$SHOAL" release create --image v1.img --product acme-gw \
	--version 1.0 --counter 1 --key rel.key --key rel2.key --keyring kr3 -o rthr2
check "threshold 2 with two signatures verifies" "$SHOAL" release verify --trust root.pub rthr2
check "expired release" "$SHOAL" release create --image v1.img --product acme-gw --version 0.9 --counter 1 \
	--key root.key --created @1000000000 --expires @1000086400 -o rexp
expect_exit 3 "an expired release fails" "$SHOAL" release verify --trust root.pub rexp
output_has "says it expired" "expired"

# --- tampering --------------------------------------------------------------
"$GEN" --seed 9 --size $((2 << 20)) --kind mixed -o small.img
check "small release" "$SHOAL" release create --image small.img --product acme-gw --version 1.0 --counter 1 \
	--key rel.key --keyring kr1 --chunking 1K,4K,16K -o rs
check "small bundle" "$SHOAL" bundle create rs -o rs.bundle
check "bundle verifies" "$SHOAL" release verify --trust root.pub rs.bundle

flip() { # file offset: xor the byte with 0x55
	local b
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "$(printf '\\%03o' $((b ^ 0x55)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# Flips at seeded positions across each file; each copy must fail with exit
# 3 (never 0, never a signal) and say FAILED with a reason.
flip_all() { # label file-to-copy-into how-to-verify... ; positions from $POS
	local label=$1 target=$2; shift 2
	local bad=0 n=0 size pos rc
	size=$(stat -c %s "$target")
	cp "$target" "$T/orig"
	for pos in $POS; do
		[ "$pos" -lt "$size" ] || continue
		n=$((n + 1))
		flip "$target" "$pos"
		rc=0
		"$@" >"$T/out" 2>&1 || rc=$?
		if [ "$rc" != 3 ] || ! grep -q "FAILED" "$T/out"; then
			echo "byte $pos of $label: exit $rc: $(tail -1 "$T/out")" >>"$T/flipfail"
			bad=$((bad + 1))
		fi
		cp "$T/orig" "$target"
	done
	echo "$label: $n flips" >>"$T/flipcount"
	[ "$bad" -eq 0 ]
}

msize=$(stat -c %s rs/manifest.shoal)
POS="$(seq 0 1 40) $(awk -v n="$msize" 'BEGIN { srand(11); for (i = 0; i < 150; i++) print int(rand() * n) }') \
$(seq $((msize - 100)) 7 $((msize - 1)))"
check "every manifest byte flip fails verify (exit 3)" flip_all manifest rs/manifest.shoal \
	"$SHOAL" release verify --trust root.pub rs
check "every keyring byte flip fails verify (exit 3)" flip_all keyring rs/keyring.shoal \
	"$SHOAL" release verify --trust root.pub rs

chunk=$(ls rs/chunks/*/*.zst | sort | head -1)
csize=$(stat -c %s "$chunk")
POS=$(awk -v n="$csize" 'BEGIN { srand(12); for (i = 0; i < 40; i++) print 12 + int(rand() * (n - 12)) }')
check "chunk payload byte flips fail verify (exit 3)" flip_all chunk "$chunk" \
	"$SHOAL" release verify --trust root.pub rs
flip "$chunk" $((csize / 2))
expect_exit 3 "a corrupt chunk file" "$SHOAL" release verify --trust root.pub rs
output_has "is named by id and offset" "chunk #[0-9]+ at offset [0-9]+: chunk [0-9a-f]{64}: (content does not match its id|zstd data is corrupt)"
cp "$T/orig" "$chunk"
mv "$chunk" "$T/gone"
expect_exit 3 "a missing chunk file" "$SHOAL" release verify --trust root.pub rs
output_has "is named" "is missing from the store"
mv "$T/gone" "$chunk"

bsize=$(stat -c %s rs.bundle)
POS="$(seq 0 1 70) $(awk -v n="$bsize" 'BEGIN { srand(13); for (i = 0; i < 150; i++) print 64 + int(rand() * (n - 64)) }')"
check "every bundle byte flip fails verify (exit 3)" flip_all bundle rs.bundle \
	"$SHOAL" release verify --trust root.pub rs.bundle
head -c $((bsize - 1)) rs.bundle >trunc.bundle
expect_exit 3 "a truncated bundle" "$SHOAL" release verify --trust root.pub trunc.bundle
output_has "says it is truncated" "truncated"
cat "$T/flipcount" | sed 's/^/# /'
[ -f "$T/flipfail" ] && sed 's/^/# /' "$T/flipfail"

# --- bad command lines --------------------------------------------------------
expect_exit 2 "unknown verb" "$SHOAL" frobnicate
expect_exit 2 "release create without --image" "$SHOAL" release create --product p --version 1 --counter 1 --key rel.key -o x
expect_exit 2 "bad --chunking" "$SHOAL" release create --image v1.img --product p --version 1 --counter 1 --key rel.key --chunking 1K,3K,9K -o x
expect_exit 2 "bad --counter" "$SHOAL" release create --image v1.img --product p --version 1 --counter -4 --key rel.key -o x
expect_exit 2 "bad product string" "$SHOAL" release create --image v1.img --product "a b" --version 1 --counter 1 --key rel.key -o x
output_has "names the rule" "product must be"
expect_exit 2 "bad --expires" "$SHOAL" release create --image v1.img --product p --version 1 --counter 1 --key rel.key --expires tomorrow -o x
expect_exit 1 "missing image" "$SHOAL" release create --image nope.img --product p --version 1 --counter 1 --key rel.key -o x
expect_exit 2 "verify without --trust" "$SHOAL" release verify rs
expect_exit 1 "verify of a path that does not exist" "$SHOAL" release verify --trust root.pub nowhere
expect_exit 0 "every verb has --help" sh -c "'$SHOAL' keygen --help && '$SHOAL' keyring --help && '$SHOAL' release create --help && '$SHOAL' release show --help && '$SHOAL' release verify --help && '$SHOAL' bundle --help"

done_testing
