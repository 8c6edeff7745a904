#!/usr/bin/env bash
# Load-tests a running vca-sip with sipp.
#
# Provisions a tenant and NUMBERS phone numbers through the HTTP API (skipped with
# --no-provision), then places RATE calls per second for DURATION seconds, each to the
# next number in turn (national form, 0XXXXXXXXXX), held HOLD ms, and prints calls
# attempted, answered, failed, retransmissions and the call rate achieved.
#
#   sip-fixtures/sipp/load.sh --rate 2000 --duration 30
#   sip-fixtures/sipp/load.sh --rate 100 --duration 60 --hold 60000   # many concurrent calls
#   sip-fixtures/sipp/load.sh --rate 2000 --auth tata:Secret123   # digest on every call
#
# With --auth USER:PASSWORD every call is challenged and answered with MD5 credentials; when
# provisioning, an ip+digest platform trunk for the source address (--source, default
# 127.0.0.1) with those credentials is created first.
#
# Exit status 0 only when every call was answered with no retransmission.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
sip=127.0.0.1:5060
api=http://127.0.0.1:8080
token=${VCA_ADMIN_TOKEN:-}
rate=1000
duration=30
numbers=10000
hold=500
transport=u1
provision=1
limit=""
credentials=""
source_ip=127.0.0.1

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --sip) sip=$2; shift 2 ;;
        --api) api=$2; shift 2 ;;
        --token) token=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --numbers) numbers=$2; shift 2 ;;
        --hold) hold=$2; shift 2 ;;
        --transport) transport=$2; shift 2 ;;
        --limit) limit=$2; shift 2 ;;
        --auth) credentials=$2; shift 2 ;;
        --source) source_ip=$2; shift 2 ;;
        --no-provision) provision=0; shift ;;
        -h|--help) usage ;;
        *) echo "load.sh: unknown option $1" >&2; usage ;;
    esac
done
command -v sipp >/dev/null || { echo "load.sh: sipp is not installed (Debian package sip-tester)" >&2; exit 2; }

work=$(mktemp -d /tmp/vca-load.XXXXXX)
# National forms of +9170000000000 + i: 07000000000 + i.
python3 - "$numbers" > "$work/dids.csv" <<'PY'
import sys
n = int(sys.argv[1])
print("SEQUENTIAL")
for i in range(n):
    print(f"0{7000000000 + i};caller{i % 1000}")
PY

if [ "$provision" = 1 ]; then
    if [ -z "$token" ] && [ -f vca-sip.admin-token ]; then token=$(cat vca-sip.admin-token); fi
    [ -n "$token" ] || { echo "load.sh: pass --token or set VCA_ADMIN_TOKEN" >&2; exit 2; }
    auth="Authorization: Bearer $token"
    tenant=$(curl -fsS -H "$auth" -H 'content-type: application/json' \
        -d '{"name":"load test","max_concurrent_calls":100000}' "$api/api/tenants" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    if [ -n "$credentials" ]; then
        python3 - "$credentials" "$source_ip" > "$work/trunk.json" <<'PY'
import json, sys
user, _, password = sys.argv[1].partition(":")
print(json.dumps({"name": "load test", "provider": "sipp", "auth": "ip+digest",
                  "allowed_cidrs": [sys.argv[2]], "realm": "vca-sip.load", "username": user,
                  "password": password, "digest_algorithms": ["MD5"]}))
PY
        curl -fsS -o /dev/null -H "$auth" -H 'content-type: application/json' \
            -d @"$work/trunk.json" "$api/api/trunks"
        echo "load.sh: created an ip+digest trunk for $source_ip"
    fi
    echo "load.sh: provisioning $numbers numbers for tenant $tenant"
    tail -n +2 "$work/dids.csv" | cut -d';' -f1 |
        xargs -P 8 -I{} curl -sS -o /dev/null -w '%{http_code}\n' -H "$auth" \
            -H 'content-type: application/json' -d '{"did_number":"{}"}' \
            "$api/api/tenants/$tenant/phone-numbers" | sort | uniq -c | sed 's/^/load.sh: HTTP /'
fi

calls=$((rate * duration))
scenario=call.xml
auth_args=()
if [ -n "$credentials" ]; then
    scenario=auth_call.xml
    auth_args=(-au "${credentials%%:*}" -ap "${credentials#*:}")
fi
echo "load.sh: $calls calls at $rate/s, hold ${hold} ms, transport $transport, to $sip${credentials:+, with digest}"
set +e
(cd "$work" && sipp -nostdin -sf "$here/$scenario" -inf dids.csv "${auth_args[@]}" \
    -r "$rate" -m "$calls" -d "$hold" -t "$transport" ${limit:+-l "$limit"} \
    -buff_size 4194304 -max_socket 10000 \
    -timeout "$((duration + hold / 1000 + 30))s" -timeout_error \
    -trace_stat -stf stat.csv -fd 1 -trace_screen -screen_file screen.log \
    -i "$source_ip" -p 0 "$sip" >/dev/null 2>"$work/sipp.err")
status=$?
set -e
python3 - "$work/stat.csv" "$status" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
head, last = rows[0], rows[-1]
v = lambda name: last[head.index(name)]
attempted = int(v("TotalCallCreated"))
answered = int(v("SuccessfulCall(C)"))
failed = int(v("FailedCall(C)"))
retrans = int(v("Retransmissions(C)"))
elapsed = v("ElapsedTime(C)")
h, m, s = elapsed.split(":")[:3]
secs = int(h) * 3600 + int(m) * 60 + float(s)
print(f"attempted {attempted}  answered {answered}  failed {failed}  "
      f"retransmissions {retrans}  calls/s {float(v('CallRate(C)')):.0f}  elapsed {secs:.1f} s  "
      f"sipp exit {sys.argv[2]}")
sys.exit(0 if failed == 0 and retrans == 0 and answered == attempted else 1)
PY
