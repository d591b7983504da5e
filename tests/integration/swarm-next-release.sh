#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# One release after another, in one run of shoald (a device that runs for
# months sees version 2, then 3): on loopback, a gateway and devices that
# assemble releases in a plain target file.
#   - dev1 fetches v1; the gateway publishes v2 while every connection
#     stays up; dev1 fetches v2 over the same connections
#   - v2 reuses the chunks v1 left in the target: the gateway sends only
#     what v1 lacks
#   - until v2 is read back whole, the target still holds v1, byte for
#     byte (v2 is assembled in TARGET.partial); a kill -9 in the middle
#     resumes from the .partial without fetching a verified chunk again
#   - dev1 no longer serves v1 from a target that holds v2: dev2, joining
#     late, fetches v2 from dev1 and the gateway and bans nobody
#
# usage: swarm-next-release.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/fleet.sh"
fleet_setup

"$GEN" --seed 71 --size $((8 << 20)) --kind random -o v1.img
"$GEN" --from v1.img --seed 72 --change 0.4 --insert 3 -o v2.img
IMG2=$(stat -c %s v2.img)
"$SHOAL" release create --image v1.img --product demo --version 1 --counter 1 --key rel.key --keyring kr -o rel1 >/dev/null
"$SHOAL" release create --image v2.img --product demo --version 2 --counter 2 --key rel.key --keyring kr -o rel2 >/dev/null
read -r GP P1 P2 <<<"$(free_ports 3)"

# the gateway's upload is slow enough for a kill in the middle of v2
conf gw gateway "$GP" fleet.key '[transfer]' 'upload_rate = 256K' '[gateway]' "store_dir = $T/store" "import = $T/rel1"
start gw
# (v1 from a local copy: the gateway's bandwidth is kept for v2)
cp v1.img stick.img
conf dev1 device "$P1" fleet.key "gateway = 127.0.0.1:$GP" '[device]' "target = $T/dev1.img" "reuse = $T/stick.img"
start dev1
D1=${PIDS[-1]}
check "dev1 fetches v1" wait_for 60 grep -q "release demo 1 (counter 1): complete and verified" dev1.log
check "dev1's target holds v1" cmp dev1.img v1.img

rm stick.img
check "the gateway publishes v2 at run time" env SHOAL_CONTROL_SOCKET="$T/gw.sock" "$SHOAL" publish "$T/rel2"
check "dev1 takes v2 over the connections it has" wait_for 20 grep -q "release demo 2 (counter 2, .*accepted" dev1.log
check "... reusing what v1 left in the target" wait_for 10 grep -Eq "reuse $T/dev1.img: [1-9][0-9]* bytes of the new release" dev1.log
reused=$(sed -n 's/.*reuse .*dev1.img: \([0-9]*\) bytes of the new release.*/\1/p' dev1.log | head -1)
echo "# v2: $reused of $IMG2 bytes reused from the target"

# kill -9 once some of v2 came from the network and was recorded (the
# first record of v2 is what the target gave)
recorded() { sed -n 's/.*release 2: progress recorded: \([0-9]*\) of.*/\1/p' dev1.log; }
got_some() {
	[ "$(recorded | tail -1)" -gt "$(recorded | head -1)" ] 2>/dev/null && kill -9 "$D1"
}
check "dev1 killed -9 while v2 comes in" wait_for 30 got_some
wait "$D1" 2>/dev/null
check "... its target still holds v1, byte for byte" cmp dev1.img v1.img
check "... v2 waits in the .partial" test -s dev1.img.partial
cp dev1.log dev1-killed.log
start dev1
check "dev1 resumes v2 from the .partial" wait_for 20 grep -Eq "release 2: resuming with [1-9][0-9]* of" dev1.log
check "dev1 completes v2" wait_for 60 grep -q "release demo 2 (counter 2): complete and verified (read back" dev1.log
check "dev1's target holds v2" cmp dev1.img v2.img
check "no .partial is left" test ! -e dev1.img.partial
resumed=$(sed -n 's/.*resuming with [0-9]* of [0-9]* chunks (\([0-9]*\) bytes).*/\1/p' dev1.log | head -1)
after=$(sed -n 's/.*complete and verified.* in .*; \([0-9]*\) bytes from peers, \([0-9]*\) from the gateway.*/\1 \2/p' dev1.log)
before=$(sed -n 's/.*complete and verified.* in .*; \([0-9]*\) bytes from peers, \([0-9]*\) from the gateway.*/\1 \2/p' dev1-killed.log | tail -1)
echo "# v2 after the restart: resumed with ${resumed:-0} bytes, fetched (peers, gateway): ${after:-?}"
check "... more than the target gave was recorded before the kill" test "${resumed:-0}" -gt "${reused:-0}"
check "after the restart, at most what the .partial lacked came in" \
	test "$(echo "${after:-0 0}" | awk '{print $1 + $2}')" -le "$((IMG2 - ${resumed:-0}))"
sent=$(SHOAL_CONTROL_SOCKET="$T/gw.sock" "$SHOAL" status --json | jq '.bytes.sent')
echo "# the gateway sent $sent bytes for v2 ($IMG2 bytes)"
check "v2 cost the gateway less than v2's size" test "$sent" -lt "$IMG2"

conf dev2 device "$P2" fleet.key "gateway = 127.0.0.1:$GP" "static_peer = 127.0.0.1:$P1" '[device]' "target = $T/dev2.img"
start dev2
check "dev2, joining late, fetches v2" wait_for 60 grep -q "release demo 2 (counter 2): complete and verified" dev2.log
check "dev2's target holds v2" cmp dev2.img v2.img
v1_state() { status dev1 | jq -er '.releases[] | select(.version == "1") | .state'; }
expect_exit 0 "dev1 records v1 as replaced, not held" v1_state
output_has "... replaced" "^replaced$"
check "nobody banned anybody" sh -c "! grep -q 'banned for' dev1.log dev2.log gw.log"
done_testing
