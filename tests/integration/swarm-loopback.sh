#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A gateway and four devices on loopback, joined by static peers (the mDNS
# version of this runs in network namespaces): every device ends with a
# byte-identical, verified image, two of them reusing what their old image
# held; a fleet member that serves corrupt chunks is banned and the device
# still ends right; a host without the fleet secret gets nothing.
#
# usage: swarm-loopback.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/fleet.sh"
fleet_setup
"$GEN" --seed 21 --size $((40 << 20)) --kind mixed -o v1.img
"$GEN" --from v1.img --seed 22 --change 3 --insert 8 -o v2.img
"$SHOAL" release create --image v2.img --product demo --version 2.0 --counter 2 --key rel.key --keyring kr -o rel2 >/dev/null

read -r GP P1 P2 P3 P4 P5 P6 P7 <<<"$(free_ports 8)"
DEVPORTS=($P1 $P2 $P3 $P4)

conf gw gateway "$GP" fleet.key '[gateway]' "store_dir = $T/store" "import = $T/rel2"
check "shoald --check accepts the gateway configuration" "$SHOALD" --check -c gw.conf
if ldd "$SHOALD" | grep -q libsystemd; then
	# a stand-in for systemd's notify socket: the gateway says READY=1
	python3 - "$T/notify.sock" "$T/notify.txt" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); s.settimeout(30)
with open(sys.argv[2], "w") as out:
    try:
        out.write(s.recv(4096).decode()); out.flush()
    except socket.timeout:
        pass
PY
	PIDS+=($!)
	wait_for 10 test -S "$T/notify.sock"
	start gw NOTIFY_SOCKET="$T/notify.sock"
	check "the gateway tells systemd it is ready (Type=notify)" wait_for 10 grep -q "READY=1" "$T/notify.txt"
else
	start gw
fi
check "gateway seeds the release" grep -q "seeding demo 2.0" gw.log

for i in 1 2 3 4; do
	lines=("gateway = 127.0.0.1:$GP")
	for j in 1 2 3 4; do
		[ "$j" = "$i" ] || lines+=("static_peer = 127.0.0.1:${DEVPORTS[$((j - 1))]}")
	done
	lines+=('[device]' "target = $T/dev$i.img")
	[ "$i" -le 2 ] && lines+=("reuse = $T/v1.img")
	conf "dev$i" device "${DEVPORTS[$((i - 1))]}" fleet.key "${lines[@]}"
done
for i in 1 2 3 4; do
	start "dev$i"
	[ "$i" = 1 ] && DEV1PID=${PIDS[-1]}
done

for i in 1 2 3 4; do
	check "dev$i completes" wait_for 120 is_complete "dev$i"
	check "dev$i holds a byte-identical image" cmp -s "dev$i.img" v2.img
done
check "dev1 reused chunks of its old image" grep -Eq "reuse .*: [1-9][0-9]* bytes of the new release were already here" dev1.log
check "the devices shared among themselves" sh -c "cat dev*.log | grep -q 'connected'"
expect_exit 0 "shoal status shows the release" env SHOAL_CONTROL_SOCKET="$T/dev3.sock" "$SHOAL" status
output_has "as complete" "demo 2.0 \(counter 2\), complete"
expect_exit 0 "shoal peers lists the gateway" env SHOAL_CONTROL_SOCKET="$T/dev3.sock" "$SHOAL" peers --json
output_has "by role" '"role": "gateway"'

# A fleet member that lies: it holds the release but corrupts every chunk
# it serves. A new device that can reach only the liar and the gateway
# bans the liar at its first bad chunk and still ends right.
conf liar gateway "$P5" fleet.key '[gateway]' "store_dir = $T/store2" "import = $T/rel2"
start liar SHOAL_FAULT=corrupt-chunks
conf dev5 device "$P6" fleet.key "static_peer = 127.0.0.1:$P5" "gateway = 127.0.0.1:$GP" '[device]' "target = $T/dev5.img"
start dev5
check "dev5 completes despite the liar" wait_for 120 is_complete dev5
check "dev5 holds a byte-identical image" cmp -s dev5.img v2.img
if grep -q "banned for" dev5.log; then
	check "dev5 banned the liar and named the chunk" grep -Eq "banned for [0-9]+ s: chunk [0-9a-f]{64}" dev5.log
	check "shoal peers lists the liar as banned: its address, until when, the chunk" sh -c \
		"SHOAL_CONTROL_SOCKET='$T/dev5.sock' '$SHOAL' peers | grep -Eq '^  [0-9a-f]{16} 127\.0\.0\.1:$P5 until [0-9-]+ [0-9:]+Z: chunk [0-9a-f]{64}'"
	check "status --json: banned has the liar, active, with a reason and a time" python3 -c '
import json, sys
b = json.load(sys.stdin)["banned"]
sys.exit(not (len(b) == 1 and b[0]["address"].endswith(":" + sys.argv[1]) and b[0]["active"]
              and b[0]["until"] > b[0]["since"] > 0 and "chunk" in b[0]["reason"]))' "$P5" < <(status dev5)
else
	# the gateway may have served everything before the liar got a request
	check "dev5 never accepted a bad chunk (no ban needed)" true
fi

# A host with another fleet secret: no session, no manifest, no chunk.
conf stranger device "$P7" other-fleet.key "gateway = 127.0.0.1:$GP" '[device]' "target = $T/stranger.img"
start stranger
check "the gateway refuses the stranger" wait_for 20 grep -q "not a member of this fleet" gw.log
check "the stranger holds no release" sh -c "! status stranger | grep -q '\"product\": \"demo\", \"version\"'"
check "the stranger received nothing" sh -c "! test -s '$T/stranger.img'"

# kill -9 in the middle of a download, then a restart: the device goes on
# where it was and fetches no verified chunk again. The gateway's upload is
# limited so that there is a middle to kill in.
read -r GP2 P8 <<<"$(free_ports 2)"
conf slowgw gateway "$GP2" fleet.key '[transfer]' 'upload_rate = 6M' '[gateway]' "store_dir = $T/store3" "import = $T/rel2"
start slowgw
conf dev6 device "$P8" fleet.key "gateway = 127.0.0.1:$GP2" '[device]' "target = $T/dev6.img"
start dev6
held() { status dev6 | sed -n 's/.*"chunks_held": \([0-9]*\).*/\1/p'; }
total=$(sed -n 's/.*seeding demo 2.0 (counter 2, \([0-9]*\) chunks.*/\1/p' slowgw.log)
third() { h=$(held); [ -n "$h" ] && [ "$h" -ge $((total / 3)) ]; }
check "dev6 gets a third of the chunks" wait_for 60 third
kill -9 "${PIDS[-1]}"
wait "${PIDS[-1]}" 2>/dev/null
cp dev6.log dev6-first.log
start dev6
check "dev6 completes after kill -9 and restart" wait_for 120 is_complete dev6
check "dev6 holds a byte-identical image" cmp -s dev6.img v2.img
resumed=$(sed -n 's/.*resuming with [0-9]* of [0-9]* chunks (\([0-9]*\) bytes).*/\1/p' dev6.log)
after=$(sed -n 's/.*complete and verified.* in .*; \([0-9]*\) bytes from peers, \([0-9]*\) from the gateway.*/\1 \2/p' dev6.log)
size=$(stat -c %s v2.img)
fetched=$(( $(echo "$after" | awk '{print $1 + $2}') ))
echo "# dev6: $resumed bytes verified before the kill; $fetched fetched after the restart; image $size"
check "dev6 resumed with verified chunks" test "${resumed:-0}" -gt 0
check "dev6 fetched at most the missing part after the restart" test "$fetched" -le "$((size - ${resumed:-0}))"

# Clean shutdown on SIGTERM, state kept.
kill -TERM "$DEV1PID"
check "dev1 stops cleanly on SIGTERM" wait_for 10 grep -q "stopped" dev1.log

echo "# gateway: $(grep -c 'connected' gw.log) connections"
done_testing
