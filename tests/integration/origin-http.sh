#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A gateway fed from an HTTP origin (nginx on loopback serving release
# directories as they came out of `shoal release create`): it imports
# version 1, checks it and seeds it to a device; version 2 costs only the
# chunks version 1 lacks; a gateway killed mid-import resumes without
# fetching a stored chunk again and seeds its store after a restart;
# origin_rate holds the download to its limit; a
# corrupted chunk on the origin is refused and named, and that release is
# not seeded; an origin with a manifest signed by a stranger gets nothing
# fetched past the manifest.
#
# usage: origin-http.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/fleet.sh"

NGINX=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null)
if [ -z "$NGINX" ]; then
	echo "1..0 # SKIP nginx is not installed (scripts/setup-deps installs it)"
	exit 0
fi
fleet_setup

"$GEN" --seed 41 --size $((24 << 20)) --kind mixed -o v1.img
"$GEN" --from v1.img --seed 42 --change 3 --insert 4 -o v2.img
"$GEN" --from v2.img --seed 43 --change 3 -o v3.img
mk() { # VERSION COUNTER IMAGE DIR
	"$SHOAL" release create --image "$3" --product demo --version "$1" --counter "$2" --key rel.key --keyring kr \
		-o "$4" >/dev/null
}
mkdir -p www
mk 1.0 1 v1.img www/v1
mk 2.0 2 v2.img www/v2
mk 3.0 3 v3.img www/v3
"$SHOAL" keygen -o stranger >/dev/null
"$SHOAL" release create --image v1.img --product demo --version 9.0 --counter 9 --key stranger.key \
	-o www/evil >/dev/null
# "stable" is a channel: a symlink the release manager moves
ln -s v1 www/stable

read -r HP GP DP <<<"$(free_ports 3)"
chmod 755 "$T" # nginx's workers run as another user
mkdir -p nginx
cat >nginx/nginx.conf <<EOF
daemon off;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log;
events { worker_connections 64; }
http {
	access_log $T/nginx/access.log;
	client_body_temp_path $T/nginx;
	proxy_temp_path $T/nginx;
	fastcgi_temp_path $T/nginx;
	uwsgi_temp_path $T/nginx;
	scgi_temp_path $T/nginx;
	server {
		listen 127.0.0.1:$HP;
		root $T/www;
	}
}
EOF
"$NGINX" -c "$T/nginx/nginx.conf" -p "$T/nginx" 2>nginx/stderr &
PIDS+=($!)
check "nginx serves the origin on loopback" wait_for 10 curl -sf -o /dev/null "http://127.0.0.1:$HP/v1/manifest.shoal"

counter() { # NAME COUNTER
	SHOAL_CONTROL_SOCKET="$T/$1.sock" "$SHOAL" status --json |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"][sys.argv[1]])' "$2"
}
seeding() { SHOAL_CONTROL_SOCKET="$T/gw.sock" "$SHOAL" releases --json | grep -q "\"version\": \"$1\""; }
stored_bytes() { # RELEASE-DIR [EXCEPT-DIR]: bytes of the stored chunks of one release dir, minus another's
	python3 - "$@" <<'PY'
import os, sys
def ids(d):
    out = {}
    for root, _, files in os.walk(os.path.join(d, "chunks")):
        for f in files:
            out[f] = os.path.getsize(os.path.join(root, f))
    return out
a = ids(sys.argv[1]); b = ids(sys.argv[2]) if len(sys.argv) > 2 else {}
print(sum(v for k, v in a.items() if k not in b))
PY
}

# --- version 1 from the channel, to a device ---
conf gw gateway "$GP" fleet.key '[gateway]' "store_dir = $T/store" "origin = http://127.0.0.1:$HP/stable" \
	"origin_interval = 1s"
check "shoald --check accepts an origin" "$SHOALD" --check -c gw.conf
start gw
check "the gateway imports 1.0 from the origin and seeds it" wait_for 60 seeding 1.0
V1=$(stored_bytes www/v1)
check "it fetched each stored chunk of 1.0 once ($V1 bytes)" test "$(counter gw origin)" = "$V1"
conf dev1 device "$DP" fleet.key "gateway = 127.0.0.1:$GP" '[device]' "target = $T/dev1.img"
start dev1
check "a device fetches 1.0 from that gateway" wait_for 60 is_complete dev1
check "its image is byte-identical" cmp -s v1.img dev1.img

# --- version 2: only what 1.0 lacks ---
ln -sfn v2 www/stable
check "the gateway notices 2.0 on the origin and seeds it" wait_for 60 seeding 2.0
V2=$(stored_bytes www/v2 www/v1)
check "2.0 cost only the chunks 1.0 lacks ($V2 of $(stored_bytes www/v2) bytes)" \
	test "$(counter gw origin)" = "$((V1 + V2))"
grep -q "chunks (.* bytes) fetched, [1-9][0-9]* already in the store" gw.log
check "the log says how many chunks were already in the store" test $? = 0

# --- 3.0 through a slow path, killed mid-import, resumes ---
kill -9 "${PIDS[-2]}" 2>/dev/null # the gateway (dev1 started after it)
conf gw gateway "$GP" fleet.key '[gateway]' "store_dir = $T/store" "origin = http://127.0.0.1:$HP/v3" \
	"origin_interval = 1s" "origin_connections = 2" "origin_rate = 1M"
start gw
check "after a restart the gateway seeds its store again (1.0, 2.0)" wait_for 20 seeding 2.0
check "... without the origin" seeding 1.0
live() { # bytes the running import fetched so far
	SHOAL_CONTROL_SOCKET="$T/gw.sock" "$SHOAL" status --json |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["origins"][0]["bytes_fetched"])'
}
progress() { test "$(live)" -gt 1000000; }
check "3.0 starts coming in at origin_rate" wait_for 60 progress
GWPID=${PIDS[-1]}
kill -9 "$GWPID"
wait "$GWPID" 2>/dev/null
# what the killed gateway had stored of what 3.0 adds (complete files only)
S=$(python3 - www/v3 www/v2 store/chunks <<'PY'
import os, sys
def ids(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            if f.endswith(".zst"):
                out[f] = os.path.getsize(os.path.join(root, f))
    return out
new = {k: v for k, v in ids(os.path.join(sys.argv[1], "chunks")).items()
       if k not in ids(os.path.join(sys.argv[2], "chunks"))}
have = ids(sys.argv[3])
print(sum(v for k, v in new.items() if k in have))
PY
)
start gw
check "after kill -9 the import of 3.0 finishes" wait_for 120 seeding 3.0
V3=$(stored_bytes www/v3 www/v2)
R=$(live)
check "the resumed import fetched exactly what the store lacked ($R = $V3 - $S bytes)" test "$R" = "$((V3 - S))"
check "... and the killed one had stored some of it" test "$S" -gt 0
# --- a corrupt chunk on the origin ---
"$GEN" --from v3.img --seed 44 --change 2 -o v5.img
mk 5.0 5 v5.img www/v5
BAD=$(python3 - www/v5 www/v3 <<'PY'
import os, sys
have = set()
for root, _, files in os.walk(os.path.join(sys.argv[2], "chunks")):
    have.update(files)
for root, _, files in sorted(os.walk(os.path.join(sys.argv[1], "chunks"))):
    for f in sorted(files):
        if f not in have:
            p = os.path.join(root, f)
            b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 0x55
            open(p, "wb").write(bytes(b)); print(f.split(".")[0]); sys.exit(0)
PY
)
GWPID=${PIDS[-1]}
kill "$GWPID"
wait "$GWPID" 2>/dev/null
conf gw gateway "$GP" fleet.key '[gateway]' "store_dir = $T/store" "origin = http://127.0.0.1:$HP/v5" \
	"origin = http://127.0.0.1:$HP/evil" "origin_interval = 1s"
start gw
check "a corrupted chunk on the origin is refused and named" wait_for 60 grep -q "chunk $BAD .* is corrupt, refused" gw.log
check "the release with it is not seeded" bash -c "! SHOAL_CONTROL_SOCKET=$T/gw.sock $SHOAL releases --json | grep -q '\"5.0\"'"
check "the corrupt chunk is not in the store" bash -c "! ls store/chunks/${BAD:0:4}/$BAD.zst"
check "a manifest signed by a stranger is refused with a reason" wait_for 30 grep -q "origin http://127.0.0.1:$HP/evil/: release 9.0 refused" gw.log
check "nothing past the stranger's manifest was asked of the origin" \
	bash -c "! grep -q 'GET /evil/chunks' nginx/access.log"
SHOAL_CONTROL_SOCKET="$T/gw.sock" "$SHOAL" status --json >gw-status.json
check "shoal status --json shows each origin and its last error" \
	python3 -c 'import json,sys; o=json.load(open(sys.argv[1]))["origins"]; assert len(o)==2 and any("corrupt" in x["last_error"] for x in o)' gw-status.json

# --- bad configuration ---
conf bad gateway 0 fleet.key '[gateway]' "store_dir = $T/store" "origin = ftp://example/rel"
expect_exit 2 "an origin that is not http(s) is refused by --check" "$SHOALD" --check -c bad.conf
output_has "... naming it" "only http:// and https://" "$SHOALD" --check -c bad.conf
done_testing
