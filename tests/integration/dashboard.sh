#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The gateway's dashboard in headless Chromium (playwright-core from npm,
# tests/dashboard/package-lock.json): a gateway and six tagged devices on
# loopback, five of them with an installed release; the page lists the
# devices by group with their versions and shows a campaign's progress; a
# screenshot is kept in the build directory (meson-logs/dashboard.png).
# The API's refusals (no token 401, bad JSON 400) are checked here too.
#
# usage: dashboard.sh SHOAL SHOALD GEN-IMAGE BUILD-DIR
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
BUILD=$4
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/fleet.sh"
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROMIUM" ] || ! command -v node >/dev/null || ! command -v npm >/dev/null || ! command -v curl >/dev/null; then
	echo "1..0 # SKIP needs chromium, node, npm and curl (scripts/setup-deps)"
	exit 0
fi
# playwright-core, exactly as locked, installed once per build directory
NODE_DIR=$BUILD/dashboard-node
if ! cmp -s "$SRC/tests/dashboard/package-lock.json" "$NODE_DIR/package-lock.json" ||
	[ ! -d "$NODE_DIR/node_modules/playwright-core" ]; then
	mkdir -p "$NODE_DIR"
	cp "$SRC/tests/dashboard/package.json" "$SRC/tests/dashboard/package-lock.json" "$NODE_DIR/"
	if ! (cd "$NODE_DIR" && timeout 300 npm ci --no-audit --no-fund >npm.log 2>&1); then
		echo "1..0 # SKIP npm ci of playwright-core failed (no registry?): see $NODE_DIR/npm.log"
		exit 0
	fi
fi
fleet_setup
"$GEN" --seed 71 --size $((2 << 20)) --kind mixed -o v2.img
"$SHOAL" release create --image v2.img --product demo --version 2.0 --counter 2 --key rel.key --keyring kr -o rel2 >/dev/null
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >token
read -r GP HP P1 P2 P3 P4 P5 P6 <<<"$(free_ports 8)"
API=http://127.0.0.1:$HP
conf gw gateway "$GP" fleet.key '[gateway]' "store_dir = $T/store" "import = $T/rel2" \
	"http_listen = 127.0.0.1:$HP" "http_token_file = $T/token"
start gw

# What an installer leaves behind on a device that runs version 1.x: its
# slot record (the installer's own tests cover how it gets there).
installed() { # NAME VERSION COUNTER
	python3 - "$T/$1/shoal.db" "$2" "$3" <<'PY'
import hashlib, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rid = hashlib.blake2b(sys.argv[2].encode(), digest_size=32).digest()
db.execute("INSERT OR REPLACE INTO slots (slot, state, release, version, counter) VALUES (0, 'good', ?, ?, ?)",
           (rid, sys.argv[2], int(sys.argv[3])))
db.commit()
PY
}
TAGS=("group=a" "group=a" "group=b" "group=b" "group=a" "group=b")
VERS=("1.0" "1.1" "" "1.0" "1.0" "1.1")
PORTS=($P1 $P2 $P3 $P4 $P5 $P6)
for i in 1 2 3 4 5 6; do
	conf "dev$i" device "${PORTS[$((i - 1))]}" fleet.key "[daemon]" "tags = ${TAGS[$((i - 1))]}" \
		"report_interval = 2s" "[discovery]" "gateway = 127.0.0.1:$GP" '[device]' "target = $T/dev$i.img"
	if [ -n "${VERS[$((i - 1))]}" ]; then
		# once to create the database, then with the slot record
		start "dev$i"
		kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null
		installed "dev$i" "${VERS[$((i - 1))]}" 1
	fi
	start "dev$i"
done
devices() { SHOAL_CONTROL_SOCKET="$T/gw.sock" "$SHOAL" devices --json; }
six() { [ "$(devices | grep -c '"name": "dev')" = 6 ] && [ "$(devices | grep -c '"version": "1\.')" = 5 ]; }
# (a device's first report, before its slot record, may still be the latest)
check "six devices report, five with an installed version" wait_for 30 six

code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
check "no token: 401" test "$(code "$API/api/v1/campaigns")" = 401
check "bad JSON: 400" test "$(code -H "Authorization: Bearer $(cat token)" -d '{"release"' "$API/api/v1/campaigns")" = 400
check "... with the reason" grep -q '"error":"malformed JSON' body
check "a campaign over group a" test "$(code -H "Authorization: Bearer $(cat token)" \
	-d '{"release": "2.0", "selector": "group=a", "canary_count": 1, "name": "to-2.0"}' "$API/api/v1/campaigns")" = 201

cat >expect.json <<JSON
{"devices": {"dev1": "1.0", "dev2": "1.1", "dev3": "none", "dev4": "1.0", "dev5": "1.0", "dev6": "1.1"}, "campaign": 1, "groups": ["group=a", "group=b"]}
JSON
mkdir -p "$BUILD/meson-logs"
NODE_PATH=$NODE_DIR/node_modules CHROMIUM=$CHROMIUM timeout 120 node "$SRC/tests/dashboard/dashboard-test.js" \
	"$API/" "$(cat token)" "$BUILD/meson-logs/dashboard.png" expect.json >node.tap 2>node.err
rc=$?
# the browser's checks, renumbered into this test's plan
while read -r line; do
	case $line in
	"ok "*) _tap_report ok "chromium: ${line#* - }" ;;
	"not ok "*) echo "${line#* - }" >"$TAP_LOG"; _tap_report fail "chromium: ${line#* - }" ;;
	"# "*) echo "$line" ;;
	esac
done <node.tap
check "the browser run ended well" bash -c "[ $rc = 0 ] || { cat '$T/node.err'; false; }"
done_testing
