#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Delta updates without precomputed deltas, on the root filesystems of the
# release benchmark (bench/lib/rootfs.sh: ext4 images of real /usr files,
# v2 with ~5 % of the files changed): a device that runs version 1 fetches
# version 2 from the gateway and asks the network only for the chunks
# version 1 lacks, every byte of them once; the rest it copies from its
# running image. The image it ends with is byte-identical to version 2.
#
# usage: delta-rootfs.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/fleet.sh"
for t in mkfs.ext4 debugfs tar; do
	if ! command -v "$t" >/dev/null; then
		echo "1..0 # SKIP $t is not installed (scripts/setup-deps installs e2fsprogs)"
		exit 0
	fi
done
fleet_setup
W=$T
. "$HERE/../../bench/lib/rootfs.sh"

build_rootfs_v1 "$W/tree1" "$W/pool"
build_rootfs_v2 "$W/tree1" "$W/tree2" "$W/pool"
make_ext4 "$W/tree1" v1.img $((100 << 20))
make_ext4 "$W/tree2" v2.img $((100 << 20))
echo "# v2 changes: $(cut -f1 "$W/v2.changes" | sort | uniq -c | tr -s ' \n' ' ')"
"$SHOAL" release create --image v1.img --product demo --version 1.0 --counter 1 --key rel.key --keyring kr -o rel1 >/dev/null
"$SHOAL" release create --image v2.img --product demo --version 2.0 --counter 2 --key rel.key --keyring kr -o rel2 >/dev/null
"$SHOAL" release show --json rel1 >rel1.json
"$SHOAL" release show --json rel2 >rel2.json
# plain bytes of the chunks (each id once) that v2 has and v1 lacks
read -r LACKS LACKS_N TOTAL_N DISTINCT <<<"$(python3 - rel1.json rel2.json <<'PY'
import json, sys
v1 = {c["id"] for c in json.load(open(sys.argv[1]))["chunks"]}
v2 = {}
for c in json.load(open(sys.argv[2]))["chunks"]:
    v2[c["id"]] = c["length"]
lacks = {i: n for i, n in v2.items() if i not in v1}
print(sum(lacks.values()), len(lacks), len(v2), sum(v2.values()))
PY
)"
echo "# v2: $TOTAL_N distinct chunks, $LACKS_N of them ($LACKS bytes) not in v1"

read -r GP DP <<<"$(free_ports 2)"
conf gw gateway "$GP" fleet.key '[gateway]' "store_dir = $T/store" "import = $T/rel2"
conf dev device "$DP" fleet.key "gateway = 127.0.0.1:$GP" '[device]' "target = $T/dev.img" "reuse = $T/v1.img"
start gw
start dev
check "the device on v1 completes v2" wait_for 120 is_complete dev
check "its image is byte-identical to v2" cmp -s v2.img dev.img
counter() {
	status dev | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"][sys.argv[1]])' "$1"
}
NET=$(($(counter gateway) + $(counter peers)))
LOCAL=$(counter local)
echo "# fetched from the network: $NET bytes; copied from the running image: $LOCAL bytes"
check "it fetched from the network exactly the chunks v1 lacks ($NET = $LACKS bytes)" test "$NET" = "$LACKS"
check "and copied every chunk v1 holds from its running image ($LOCAL >= $((DISTINCT - LACKS)) bytes)" \
	test "$LOCAL" -ge $((DISTINCT - LACKS))
done_testing
