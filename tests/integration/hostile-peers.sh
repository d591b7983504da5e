#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# What a daemon does with peers that break the rules: a length prefix of
# 4 GiB, frames that do not decrypt, frames cut short, strangers without
# the fleet secret (hundreds of each) all end in a closed connection, the
# daemon's memory stays flat and it keeps serving. A release signed by a
# key the device does not trust, or made for another product, is refused
# with a log line that says why, and nothing of it is fetched.
#
# usage: hostile-peers.sh SHOAL SHOALD GEN-IMAGE EVIL-PEER
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
EVIL=$4
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/fleet.sh"
fleet_setup

"$GEN" --seed 41 --size $((8 << 20)) --kind mixed -o v2.img
"$SHOAL" release create --image v2.img --product demo --version 2.0 --counter 2 --key rel.key --keyring kr -o rel2 >/dev/null
PORTS=($(free_ports 4))
conf gw gateway "${PORTS[0]}" fleet.key '[gateway]' "store_dir = $T/store" "import = $T/rel2"
start gw
gwpid=${PIDS[-1]}
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# warm up (first connections allocate what stays), then measure
"$EVIL" 127.0.0.1 "${PORTS[0]}" fleet.key garbage 20 >/dev/null
before=$(rss "$gwpid")
check "a 4 GiB length prefix closes the connection (x200)" "$EVIL" 127.0.0.1 "${PORTS[0]}" fleet.key oversize 200
check "a frame that does not decrypt closes it (x200)" "$EVIL" 127.0.0.1 "${PORTS[0]}" fleet.key garbage 200
check "a truncated frame closes it (x200)" "$EVIL" 127.0.0.1 "${PORTS[0]}" fleet.key truncated 200
check "a stranger without the fleet secret is closed on (x200)" "$EVIL" 127.0.0.1 "${PORTS[0]}" other-fleet.key stranger 200
after=$(rss "$gwpid")
echo "# gateway RSS: $before KiB before 800 hostile connections, $after KiB after"
if built_with_asan "$SHOALD"; then
	skip "the gateway's memory stayed flat" "ASan's quarantine holds freed memory"
else
	check "the gateway's memory stayed flat (grew by < 2 MiB)" test "$((after - before))" -lt 2048
fi
check "the gateway still answers" sh -c "SHOAL_CONTROL_SOCKET='$T/gw.sock' '$SHOAL' status >/dev/null"
check "and says why it closed" grep -Eq "frame|length|decrypt|not a member" gw.log

# A gateway of another fleet owner: same fleet secret (a stolen one), but
# its releases are signed by a root the devices do not trust.
"$SHOAL" keygen -o evilroot >/dev/null
"$SHOAL" release create --image v2.img --product demo --version 9.0 --counter 9 --key evilroot.key -o evil9 >/dev/null
conf rogue gateway "${PORTS[1]}" fleet.key '[fleet]' "trust = $T/evilroot.pub" '[gateway]' "store_dir = $T/store2" "import = $T/evil9"
start rogue
conf dev1 device "${PORTS[2]}" fleet.key "gateway = 127.0.0.1:${PORTS[1]}" '[device]' "target = $T/dev1.img"
start dev1
check "the device refuses the untrusted release and says why" \
	wait_for 30 grep -Eq "refused: manifest is signed by key [0-9a-f]{16}, which is neither a trusted root" dev1.log
check "nothing of it was fetched" sh -c "! test -s '$T/dev1.img'"
check "and it is not recorded as held" sh -c "! SHOAL_CONTROL_SOCKET='$T/dev1.sock' '$SHOAL' releases | grep -q '9.0'"

# A release for another product, from a trusted signer, offered by a
# gateway that claims our product.
"$SHOAL" release create --image v2.img --product other-board --version 3.0 --counter 3 --key rel.key --keyring kr -o other3 >/dev/null
conf wrongprod gateway "${PORTS[3]}" fleet.key '[gateway]' "store_dir = $T/store3" "import = $T/other3"
start wrongprod
conf dev2 device "$(free_ports 1)" fleet.key "gateway = 127.0.0.1:${PORTS[3]}" '[device]' "target = $T/dev2.img"
start dev2
check "the device refuses another product's release and says why" \
	wait_for 30 grep -q "release is for product 'other-board', this device is 'demo'" dev2.log
check "nothing of it was fetched" sh -c "! test -s '$T/dev2.img'"
done_testing
