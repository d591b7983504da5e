#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A gateway and three tagged devices on loopback: the devices report
# (tags, inventory script output, state), `shoal devices` and the HTTP API
# list them, the API refuses requests without the token and malformed
# ones with a reason, a campaign over one group commands its canary only,
# pauses when the canary reports a rollback (failure threshold 1), survives
# a gateway restart paused, commands the rest after resume, and a device
# that stops shows offline.
#
# usage: fleet-api.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/fleet.sh"
command -v curl >/dev/null || { echo "1..0 # SKIP curl is missing"; exit 0; }
fleet_setup
"$GEN" --seed 61 --size $((2 << 20)) --kind mixed -o v2.img
"$SHOAL" release create --image v2.img --product demo --version 2.0 --counter 2 --key rel.key --keyring kr -o rel2 >/dev/null
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >token
read -r GP HP P1 P2 P3 <<<"$(free_ports 5)"
TOKEN=$(cat token)
API=http://127.0.0.1:$HP

conf gw gateway "$GP" fleet.key '[gateway]' "store_dir = $T/store" "import = $T/rel2" \
	"http_listen = 127.0.0.1:$HP" "http_token_file = $T/token" "offline_after = 4s"
check "shoald --check accepts the gateway with http_listen" "$SHOALD" --check -c gw.conf
start gw
mkdir inv.d
printf '#!/bin/sh\necho serial=SN-0042\necho "kernel=$(uname -r)"\necho "not a pair"\n' >inv.d/10-hw
chmod +x inv.d/10-hw
declare -A PID_OF_DEV
TAGS=("group=a line=1" "group=a line=2" "group=b line=1")
for i in 1 2 3; do
	p=$(eval echo "\$P$i")
	conf "dev$i" device "$p" fleet.key "[daemon]" "tags = ${TAGS[$((i - 1))]}" "report_interval = 2s" "[discovery]" \
		"gateway = 127.0.0.1:$GP" '[device]' "target = $T/dev$i.img" "inventory_dir = $T/inv.d"
	start "dev$i"
	PID_OF_DEV[dev$i]=${PIDS[-1]}
done
DEV3PID=${PIDS[-1]}
check_eq() { # NAME GOT WANT
	check "$1" bash -c "[ '$2' = '$3' ] || { echo 'got $2, want $3:'; cat '$T/body'; false; }"
}
export T SHOAL
devices() { SHOAL_CONTROL_SOCKET="$T/gw.sock" "$SHOAL" devices "$@"; }
export -f devices
count_devices() { [ "$(devices --json | grep -c '"name": "dev')" = "$1" ]; }
check "the three devices report to the gateway" wait_for 20 count_devices 3
check "reports carry the tags" bash -c "devices --json | grep -q '\"group\": \"b\"'"
check "reports carry the inventory scripts' key=value lines" wait_for 15 bash -c "devices --json | grep -q '\"serial\": \"SN-0042\"'"
check "a line without = is not inventory" bash -c "! devices --json | grep -q 'not a pair'"
check "shoal devices prints a table with names, tags and state" bash -c "devices | grep -E '^dev2 .*group=a line=2' | grep -q online"
check "shoal devices DEVICE shows its history" bash -c "devices dev1 | grep -q '\"history\"'"
check "a device has no devices to list" bash -c "SHOAL_CONTROL_SOCKET=$T/dev1.sock '$SHOAL' devices 2>&1 | grep -q 'only a gateway'"

code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
AUTH=(-H "Authorization: Bearer $TOKEN")
check_eq "GET /api/v1/devices without the token: 401" "$(code "$API/api/v1/devices")" 401
check_eq "a wrong token: 401" "$(code -H 'Authorization: Bearer nope' "$API/api/v1/devices")" 401
check_eq "/metrics without the token: 401" "$(code "$API/metrics")" 401
check_eq "GET /api/v1/devices with the token: 200" "$(code "${AUTH[@]}" "$API/api/v1/devices")" 200
check "it lists the three devices" bash -c "[ \$(grep -o '\"name\":\"dev' '$T/body' | wc -l) = 3 ]"
check_eq "GET /api/v1/releases: 200" "$(code "${AUTH[@]}" "$API/api/v1/releases")" 200
check "the release is listed as seeding" grep -q '"version":"2.0","counter":2,"state":"seeding"' body
check_eq "malformed JSON: 400" "$(code "${AUTH[@]}" -d '{"release": ' "$API/api/v1/campaigns")" 400
check "... with the reason" grep -q 'malformed JSON at line 1' body
check_eq "an unknown field: 400" "$(code "${AUTH[@]}" -d '{"release": "2.0", "colour": "red"}' "$API/api/v1/campaigns")" 400
check "... naming the field" grep -q 'unknown field \\"colour\\"' body
check_eq "a bad selector: 400" "$(code "${AUTH[@]}" -d '{"release": "2.0", "selector": "group"}' "$API/api/v1/campaigns")" 400
check "... saying why" grep -q 'selector: tag' body
check_eq "an unknown release: 404" "$(code "${AUTH[@]}" -d '{"release": "9.9"}' "$API/api/v1/campaigns")" 404
check_eq "an unknown endpoint: 404" "$(code "${AUTH[@]}" "$API/api/v1/nothing")" 404
check_eq "the dashboard needs no token (it holds no data)" "$(code "$API/")" 200

campaign() { SHOAL_CONTROL_SOCKET="$T/gw.sock" "$SHOAL" campaign "$@"; }
export -f campaign
check "shoal campaign create over group a" bash -c "campaign create --release 2.0 --name roll-a --selector group=a --canary-count 1 --max-parallel 2 | grep -q 'roll-a'"
check "the canary is asked to install, and only it" wait_for 10 bash -c "[ \$(grep -c 'campaign 1 asks to install' dev1.log dev2.log dev3.log | awk -F: '{s+=\$2} END {print s}') = 1 ]"
check "group b is not asked" bash -c "! grep -q 'asks to install' dev3.log"
check "campaign show lists its two targets" bash -c "campaign show 1 | grep -c 'canary\\|rest' | grep -qx 3"
check_eq "GET /api/v1/campaigns/1: 200" "$(code "${AUTH[@]}" "$API/api/v1/campaigns/1")" 200
check_eq "POST /api/v1/campaigns/1/pause: 200" "$(code "${AUTH[@]}" -X POST "$API/api/v1/campaigns/1/pause")" 200
check "... paused" grep -q '"state":"paused"' body
check "resume" bash -c "campaign resume 1 | grep -q running"

# The canary rolls the release back. The installer is not wired into the
# device daemon yet, so its state database gets the event the installer
# writes on a rollback; the device reports it like any other.
CANARY=$(grep -l 'campaign 1 asks to install' dev1.log dev2.log | head -1); CANARY=${CANARY%.log}
REL=$(code "${AUTH[@]}" "$API/api/v1/releases" >/dev/null; grep -o '"id":"[0-9a-f]*"' body | head -1 | cut -d'"' -f4)
CPID=${PID_OF_DEV[$CANARY]}
kill "$CPID"; wait "$CPID" 2>/dev/null
python3 - "$T/$CANARY/shoal.db" "$REL" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO install_events (release, version, slot, phase, result, detail) VALUES (?, '2.0', 1, 'rollback', 'rolled-back', 'health check 10-app failed: port 80 closed')",
           (bytes.fromhex(sys.argv[2]),))
db.commit()
PY
start "$CANARY"
check "a failed canary pauses the campaign at the threshold" wait_for 15 bash -c "campaign show 1 | grep -q 'paused: 1 failure(s), the last on $CANARY (threshold 1)'"
check "the device's report names the error" bash -c "devices --json | grep -q '\"last_error\": \"health check 10-app failed: port 80 closed\"'"
check "the rest is not asked while paused" bash -c "campaign show 1 | grep -Eq ' rest +pending'"
check_eq "pausing again: 409" "$(code "${AUTH[@]}" -X POST "$API/api/v1/campaigns/1/pause")" 409
check_eq "an unknown action: 404" "$(code "${AUTH[@]}" -X POST "$API/api/v1/campaigns/1/explode")" 404
check "/metrics counts devices and campaign targets" bash -c "curl -s -H 'Authorization: Bearer $TOKEN' $API/metrics | grep -q '^shoal_campaign_targets{campaign=\"1\",name=\"roll-a\",phase=\"canary\"'"

# the gateway restarts: devices and the paused campaign are still there
GWPID=${PIDS[0]}
kill "$GWPID"; wait "$GWPID" 2>/dev/null
start gw
check "after a restart the campaign is still paused" bash -c "campaign list | grep -q 'roll-a .*paused'"
check "after a restart the devices are still known" count_devices 3
check "resume goes on" bash -c "campaign resume 1 | grep -q running"
check "... and the rest is asked" wait_for 10 bash -c "campaign show 1 | grep -Eq ' rest +(commanded|installing)'"

kill "$DEV3PID"
check "a device that stops reporting shows offline" wait_for 15 bash -c "devices | grep -E '^dev3 ' | grep -q OFFLINE"
done_testing
