#!/usr/bin/env bash
# Compares two vca-sip binaries under the same sipp load, in alternating runs.
#
# Each run starts a fresh server (empty SQLite file in a temporary directory, default
# configuration, --media-timeout 0) from one binary, runs load.sh against it, and reads the
# server's CPU time (all threads, /proc/PID/stat) and its peak open files; then the other
# binary runs. Prints one line per run and, per binary, the median CPU per answered call and
# the sums of failed calls and retransmissions.
#
#   sip-fixtures/sipp/compare.sh OLD_BIN NEW_BIN --runs 5 --rate 13000 --duration 30
#   sip-fixtures/sipp/compare.sh OLD_BIN NEW_BIN --runs 5 --rate 13000 --auth tata:Secret12345
#   sip-fixtures/sipp/compare.sh OLD_BIN NEW_BIN --runs 5 --rate 16000 --rtp-ports 16384-49151
#
# Options other than --runs and --rtp-ports are passed to load.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
bins=("$(realpath "$1")" "$(realpath "$2")")
shift 2
runs=5
rtp_ports=""
load_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --rtp-ports) rtp_ports=$2; shift 2 ;;
        *) load_args+=("$1"); shift ;;
    esac
done
ulimit -n 20000
token=compare-admin-token-0123456789
results=$(mktemp /tmp/vca-compare.XXXXXX)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

one_run() {
    local which=$1 bin=${bins[$1]} dir pid peak=0 fds before after out
    dir=$(mktemp -d /tmp/vca-compare-run.XXXXXX)
    (cd "$dir" && VCA_ADMIN_TOKEN=$token exec "$bin" serve \
        --sip-udp 127.0.0.1:5060 --sip-tcp 127.0.0.1:5060 --media-timeout 0 \
        ${rtp_ports:+--rtp-ports "$rtp_ports"} >"$dir/server.log" 2>&1) &
    pid=$!
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null http://127.0.0.1:8080/healthz 2>/dev/null && break
        sleep 0.1
    done
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "binary $((which + 1)) did not start (is another server on 5060 or 8080?):" >&2
        tail -n 5 "$dir/server.log" >&2
        exit 1
    fi
    (while kill -0 "$pid" 2>/dev/null; do
        ls "/proc/$pid/fd" 2>/dev/null | wc -l
        sleep 0.5
    done) >"$dir/fds" &
    local sampler=$!
    # Provisioning is not measured: the CPU count starts once the numbers exist.
    "$here/load.sh" --token "$token" "${load_args[@]}" --rate 1 --duration 1 >"$dir/provision.log" 2>&1 || true
    before=$(cpu_ticks "$pid")
    out=$("$here/load.sh" --no-provision "${load_args[@]}" 2>&1 | tail -n 1) || true
    if ! after=$(cpu_ticks "$pid" 2>/dev/null); then
        echo "binary $((which + 1)): the server exited during the run; its log: $dir/server.log" >&2
        exit 1
    fi
    peak=$(sort -n "$dir/fds" | tail -n 1)
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
    local answered failed retrans hz
    hz=$(getconf CLK_TCK)
    answered=$(sed -n 's/.*answered \([0-9]*\).*/\1/p' <<<"$out")
    failed=$(sed -n 's/.*failed \([0-9]*\).*/\1/p' <<<"$out")
    retrans=$(sed -n 's/.*retransmissions \([0-9]*\).*/\1/p' <<<"$out")
    local us_per_call
    us_per_call=$(python3 -c "print(f'{($after - $before) / $hz * 1e6 / max(int(\"${answered:-0}\" or 0), 1):.1f}')")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$which" "${answered:-0}" "${failed:-0}" "${retrans:-0}" "$us_per_call" "$peak" >>"$results"
    printf 'binary %s: answered %s failed %s retransmissions %s  %s us CPU per call  peak open files %s\n' \
        "$((which + 1))" "${answered:-0}" "${failed:-0}" "${retrans:-0}" "$us_per_call" "$peak"
    rm -rf "$dir"
    sleep 2
}

for run in $(seq 1 "$runs"); do
    echo "== run $run of $runs"
    one_run 0
    one_run 1
done
python3 - "$results" "${bins[@]}" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
for which, name in enumerate(sys.argv[2:]):
    mine = [r for r in rows if r[0] == str(which)]
    cpu = statistics.median(float(r[4]) for r in mine)
    print(f"binary {which + 1} ({name}): median {cpu:.1f} us CPU per call, "
          f"failed {sum(int(r[2]) for r in mine)}, retransmissions {sum(int(r[3]) for r in mine)}, "
          f"peak open files {max(int(r[5]) for r in mine)}, runs {len(mine)}")
PY
rm -f "$results"
