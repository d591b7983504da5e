#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# What a device refuses when a peer offers it, each with a log line that
# names the reason, no chunk asked for, no byte received and no trace in
# its state: a manifest whose signature was damaged (same key), a release
# whose signed counter is below the one the device holds (announced with a
# higher one, and offered honestly by a gateway), another product's
# release, an expired one, one that expires before the device's persisted
# time floor (its clock set back), and a keyring older than the stored one.
# The liar is a fleet member (it holds the fleet secret) speaking
# well-formed frames: tests/lib/evil-peer.c in "offer" mode.
#
# usage: refusals.sh SHOAL SHOALD GEN-IMAGE EVIL-PEER
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
EVIL=$4
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/fleet.sh"
fleet_setup

# The device holds release 3 (keyring v2) before anyone lies to it.
"$SHOAL" keyring create --root root.key --add rel.pub --version 2 -o kr2 >/dev/null
"$GEN" --seed 51 --size $((2 << 20)) --kind mixed -o v3.img
mk() { # DIR COUNTER [OPTIONS...]: a release of v3.img signed by rel.key
	local dir=$1 counter=$2; shift 2
	"$SHOAL" release create --image v3.img --product demo --version "$counter.0" --counter "$counter" \
		--key rel.key --keyring kr2 -o "$dir" "$@" >/dev/null
}
mk rel3 3
read -r GP DP GP2 <<<"$(free_ports 3)"
conf gw gateway "$GP" fleet.key '[gateway]' "store_dir = $T/store" "import = $T/rel3"
start gw
conf dev device "$DP" fleet.key "gateway = 127.0.0.1:$GP" '[device]' "target = $T/dev.img"
start dev
check "the device fetches release 3 first" wait_for 60 is_complete dev
check "and holds it byte for byte" cmp -s dev.img v3.img
check "and keyring v2" grep -q "keyring v2 accepted" dev.log
kill "${PIDS[0]}" # the gateway: from now on only liars talk to the device

received() { # bytes the device has received from peers and gateways
	status dev | python3 -c 'import json, sys; b = json.load(sys.stdin)["bytes"]; print(b["peers"] + b["gateway"])'
}
releases() { SHOAL_CONTROL_SOCKET="$T/dev.sock" "$SHOAL" releases --json; }
BASE=$(received)
echo "# the device received $BASE bytes for release 3"

# offer NAME PATTERN MANIFEST|- [KEYRING|- [COUNTER]]: a liar offers it;
# the device says PATTERN, asks for no chunk, receives no byte, records nothing.
offer() {
	local name=$1 pattern=$2; shift 2
	check "$name: the liar's offer is looked at, and no chunk is asked for" \
		"$EVIL" 127.0.0.1 "$DP" fleet.key offer 1 demo "$@"
	check "$name: refused with a log line that says why" grep -Eq "$pattern" dev.log
	check "$name: no byte received" test "$(received)" = "$BASE"
	check "$name: the target is untouched" cmp -s dev.img v3.img
}
not_recorded() { # VERSION
	check "release $1 is not in the device's state" sh -c "! SHOAL_CONTROL_SOCKET='$T/dev.sock' '$SHOAL' releases --json | grep -q '\"version\": \"$1\"'"
}

# 1. A damaged signature: the last byte of the manifest is the last byte
# of its (only) Ed25519 signature.
mk rel4 4
python3 - rel4/manifest.shoal bad4.shoal <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[-1] ^= 0x01; b[-40] ^= 0x80
open(sys.argv[2], "wb").write(b)
PY
offer "bad signature" "refused: manifest signature by key [0-9a-f]{16} does not verify" bad4.shoal
not_recorded 4.0

# 2. A lower counter (2 < 3), announced as 99: the signed counter decides.
mk rel2 2
offer "lower counter, announced higher" \
	"refused: release counter 2 is not above 3, the newest this device holds or installed \(rollback refused\)" \
	rel2/manifest.shoal - 99
not_recorded 2.0

# 3. Another product's release, signed by a trusted key, from a peer that
# says HELLO for our product.
"$SHOAL" release create --image v3.img --product other-board --version 5.0 --counter 5 --key rel.key \
	--keyring kr2 -o other5 >/dev/null
offer "another product" "refused: release is for product 'other-board', this device is 'demo'" other5/manifest.shoal
not_recorded 5.0

# 4. Expired (a day in 2001).
mk old6 6 --created @1000000000 --expires @1000086400
offer "expired" "refused: manifest expired at 1000086400 \(now [0-9]+\)" old6/manifest.shoal
not_recorded 6.0

# 5. A keyring below the stored version: v1 (valid, signed by the root)
# after v2.
offer "older keyring" "keyring v1 refused: below the stored keyring version 2 \(rollback refused\)" - kr
check "older keyring: the device keeps v2" sh -c "! grep -q 'keyring v1 accepted' dev.log"

# 6. An honest gateway that seeds release 2: the device does not even ask
# for its manifest, and says why once.
conf gw2 gateway "$GP2" fleet.key "static_peer = 127.0.0.1:$DP" '[gateway]' "store_dir = $T/store2" "import = $T/rel2"
start gw2
check "older release from a gateway: not taken, and the log says why" \
	wait_for 30 grep -Eq "offers 1 release\(s\) up to counter 2, not above 3 that this device holds or installed: not taken" dev.log
check "older release from a gateway: not accepted" sh -c "! grep -q 'release demo 2.0 .*accepted' dev.log"
check "older release from a gateway: no byte received" test "$(received)" = "$BASE"
not_recorded 2.0
kill "${PIDS[-1]}"

# 7. The time floor. Accepting release 3 raised it to the device's clock
# then; a device whose clock is later set back measures expiry against the
# floor. Set the floor ten days ahead (as if the clock had read that when
# it accepted a release), then offer a release that expires tomorrow.
NOW=$(date +%s)
sql() { python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); r = c.execute(sys.argv[2]).fetchone(); c.commit(); r and print(r[0])' "$T/dev/shoal.db" "$1"; }
time_floor() { sql "SELECT value FROM floors WHERE name = 'time'"; }
check "accepting a release raised the persisted time floor" test "$(time_floor)" -ge $((NOW - 600))
kill "${PIDS[1]}"
wait "${PIDS[1]}" 2>/dev/null
sql "UPDATE floors SET value = $((NOW + 10 * 86400)) WHERE name = 'time'"
check "the floor is now ten days ahead of the clock" test "$(time_floor)" = $((NOW + 10 * 86400))
start dev
mk soon7 7 --expires "@$((NOW + 86400))"
offer "expires before the time floor" "refused: manifest expired at $((NOW + 86400)) \(now $((NOW + 10 * 86400))\)" soon7/manifest.shoal
not_recorded 7.0
done_testing
