#!/usr/bin/env bash
# Load-tests calls streamed to AI agents: N concurrent calls from a carrier generator, each
# answered by vca-sip and streamed (Twilio Media Streams) to an agent simulator that echoes
# the audio, sends a mark a second and one clear per call.
#
# Builds the load profile (vca-sip and examples/stream_load), starts vca-sip with an SQLite
# store in a temporary directory on loopback, starts the agent simulator, creates a tenant,
# a stream AI profile pointing at the agent and a number through the HTTP API, then runs the
# carrier generator: calls placed at --rate per second, --settle s once all are up, a
# measured window of --steady s, BYEs at --rate per second. Prints vca-sip's CPU per frame,
# the machine's busy share (/proc/stat), the generators' CPU, lost frames, send lateness
# p50/p99 (vca_sip_stream_send_lateness_seconds), clear-to-silence p50/p99 and RSS per call.
#
#   sip-fixtures/sipp/stream_load.sh                       # 500 calls, 60 s window
#   sip-fixtures/sipp/stream_load.sh --calls 1000 --rtp-ports 16384-49151
#   sip-fixtures/sipp/stream_load.sh --calls 20 --steady 10 --no-build --bin target/load
#   sip-fixtures/sipp/stream_load.sh --realtime 10         # media threads under SCHED_FIFO
#
# Options: --calls N (500), --rate R calls/s (100), --settle S (5), --steady S (60),
# --rtp-ports LOW-HIGH, --realtime PRIORITY (vca-sip's --media-realtime-priority; 0, the
# default, is normal scheduling), --bin DIR (the profile's folder, default $CARGO_TARGET_DIR/load),
# --no-build, --keep (keep the work folder), --perf SECONDS (record vca-sip with perf for
# that long at the window's start). Loopback only; bounded in count and time. /tmp/quiet
# exists while the measured processes run, so that other builds pause.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
calls=500
rate=100
settle=5
steady=60
rtp_ports=""
realtime=0
build=1
keep=0
perf_secs=0
bin_dir="${CARGO_TARGET_DIR:-$root/target}/load"

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --calls) calls=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --settle) settle=$2; shift 2 ;;
        --steady) steady=$2; shift 2 ;;
        --rtp-ports) rtp_ports=$2; shift 2 ;;
        --realtime) realtime=$2; shift 2 ;;
        --bin) bin_dir=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --keep) keep=1; shift ;;
        --perf) perf_secs=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "stream_load.sh: unknown option $1" >&2; usage ;;
    esac
done

if [ "$build" = 1 ]; then
    while [ -e /tmp/quiet ]; do sleep 15; done
    (cd "$root" && nice -n 19 cargo build --profile load --bin vca-sip --example stream_load)
fi
server_bin="$bin_dir/vca-sip"
gen_bin="$bin_dir/examples/stream_load"
for b in "$server_bin" "$gen_bin"; do
    [ -x "$b" ] || { echo "stream_load.sh: $b is not built" >&2; exit 2; }
done

# Each call holds two RTP/RTCP sockets and a WebSocket in vca-sip, a socket in the carrier
# and one in the agent.
ulimit -n 20000
work=$(mktemp -d /tmp/vca-stream-load.XXXXXX)
token=stream-load-admin-token-0123456789
http=127.0.0.1:8080
pids=()
cleanup() {
    rm -f /tmp/quiet
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$keep" = 1 ]; then echo "stream_load.sh: work folder $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

echo "stream_load.sh: machine before the run: $(uptime)"
ps -eo pcpu,comm --sort=-pcpu | head -n 6 | sed 's/^/stream_load.sh:   /'
touch /tmp/quiet

(cd "$work" && VCA_ADMIN_TOKEN=$token exec "$server_bin" serve \
    --sip-udp 127.0.0.1:5060 --sip-tcp 127.0.0.1:5060 --http "$http" \
    --allow-private-targets ${rtp_ports:+--rtp-ports "$rtp_ports"} \
    --media-realtime-priority "$realtime" \
    >"$work/server.log" 2>&1) &
server=$!
pids+=("$server")
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://$http/healthz" 2>/dev/null && break
    sleep 0.1
done
if ! kill -0 "$server" 2>/dev/null; then
    echo "stream_load.sh: vca-sip did not start (is another server on 5060 or 8080?):" >&2
    tail -n 5 "$work/server.log" >&2
    exit 1
fi

# The agent may run a while after the window: the BYEs at the rate, then the closes.
deadline=$(python3 -c "print($calls / $rate * 2 + $settle + $steady + 120)")
"$gen_bin" agent --port-file "$work/agent.port" --report "$work/agent.json" \
    --streams "$calls" --clear-after "$(python3 -c "print($calls / $rate + $settle + 2)")" \
    --deadline "$deadline" 2>"$work/agent.log" &
agent=$!
pids+=("$agent")
for _ in $(seq 1 100); do [ -s "$work/agent.port" ] && break; sleep 0.1; done
[ -s "$work/agent.port" ] || { echo "stream_load.sh: the agent did not start" >&2; cat "$work/agent.log" >&2; exit 1; }
agent_port=$(cat "$work/agent.port")

auth="Authorization: Bearer $token"
json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
tenant=$(curl -fsS -H "$auth" -H 'content-type: application/json' \
    -d '{"name":"stream load","max_concurrent_calls":100000}' "http://$http/api/tenants" | json id)
curl -fsS -o /dev/null -H "$auth" -H 'content-type: application/json' \
    -d "{\"name\":\"load agent\",\"role\":\"receptionist\",\"system_prompt\":\"Echo.\",\"is_default\":true,\"media_target\":\"stream\",\"stream_url\":\"ws://127.0.0.1:$agent_port/ws\",\"stream_protocol\":\"twilio\"}" \
    "http://$http/api/tenants/$tenant/ai-profiles"
curl -fsS -o /dev/null -H "$auth" -H 'content-type: application/json' \
    -d '{"did_number":"07000000000"}' "http://$http/api/tenants/$tenant/phone-numbers"
echo "stream_load.sh: $calls calls at $rate/s, settle ${settle} s, window ${steady} s; agent on port $agent_port"

if [ "$perf_secs" != 0 ]; then
    ramp=$(python3 -c "print(int($calls / $rate + $settle + 1))")
    (sleep "$ramp"; perf record -F 999 -g -p "$server" -o "$work/perf.data" -- sleep "$perf_secs" \
        >"$work/perf.log" 2>&1) &
    pids+=("$!")
fi

status=0
"$gen_bin" carrier --calls "$calls" --rate "$rate" --server 127.0.0.1:5060 --did 07000000000 \
    --settle "$settle" --steady "$steady" --server-pid "$server" --agent-pid "$agent" \
    --http "$http" --agent-report "$work/agent.json" --report "$work/report.json" || status=$?
rm -f /tmp/quiet
if [ "$perf_secs" != 0 ] && [ -s "$work/perf.data" ]; then
    perf report -i "$work/perf.data" --no-children --percent-limit 1.5 --stdio 2>/dev/null |
        grep -v '^$' | head -n 60 >"$work/perf.txt" || true
    echo "stream_load.sh: perf profile of vca-sip in $work/perf.txt"
    keep=1
fi
cp "$work/report.json" "/tmp/stream-load-$calls.json" 2>/dev/null || true
echo "stream_load.sh: full report in /tmp/stream-load-$calls.json"
exit "$status"
