#!/usr/bin/env bash
# cpu_per_call.sh - CPU time per call of a SIP element and of SIPp at one fixed call rate: what
# bounds an element's calls/s on this machine (BENCHMARKS.md, "Calls per second").
#
#   bench/cpu_per_call.sh "ELEMENT COMMAND" rtp|sdes RATE [seconds]
#
# Starts the element (its own process group; stopped by PID at the end), a SIPp uas on 5070 and
# a SIPp uac on 5080 sending RATE calls/s for `seconds` (default 8) through 127.0.0.1:5060 with
# one socket per call (the scenarios of bench/baselines), and reads user + system CPU from
# /proc/<pid>/stat of the element's processes (the process, its children and grandchildren:
# Kamailio's workers, pcscf-alg's worker processes) and of both SIPp processes, before and after.
# Prints µs of CPU per call for each. Example:
#   bench/cpu_per_call.sh ".venv/bin/python -m pcscf_alg run --config /tmp/plain.yaml" rtp 500
#   bench/cpu_per_call.sh "kamailio -f bench/baselines/kamailio.cfg -DD -E -Y /tmp/kamrun" rtp 1500
set -u
[ $# -ge 3 ] || { sed -n '2,16p' "$0"; exit 2; }
ELEM=$1 OFFER=$2 R=$3 DUR=${4:-8}
HERE=$(cd "$(dirname "$0")" && pwd)
SC=$HERE/baselines/scenarios
OUT=$(mktemp -d /tmp/cpu_per_call.XXXXXX)
mkdir -p /tmp/kamrun
bash -c "exec $ELEM" > "$OUT/element.log" 2>&1 &
EP=$!
UAS="" UAC=""
stop() { for p in $UAC $UAS; do kill "$p" 2>/dev/null; done
  kill -TERM "$EP" 2>/dev/null; for _ in $(seq 50); do kill -0 "$EP" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$EP" 2>/dev/null; }
trap stop EXIT INT TERM
sleep 4
kill -0 "$EP" 2>/dev/null || { echo "element died at start: $OUT/element.log"; exit 1; }
family() { local p=$1; echo "$p"; for c in $(pgrep -P "$p"); do family "$c"; done; }
cpu() { local t=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }
UAS=$(cd "$OUT" && sipp -sf "$SC/uas.xml" -i 127.0.0.1 -p 5070 -mi 127.0.0.1 -mp 17000 -bg -nostdin 2>&1 \
        | sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p')
[ -n "$UAS" ] || { echo "uas failed to start"; exit 1; }
sleep 0.5
FAMILY=$(family "$EP")
D0=$(cpu $FAMILY) U0=$(cpu "$UAS")
N=$((R * DUR))
(cd "$OUT" && exec sipp -sf "$SC/uac_$OFFER.xml" -i 127.0.0.1 -p 5080 -mi 127.0.0.1 -mp 16000 -t un \
   -max_socket $(( $(ulimit -n) - 200 )) -r "$R" -rp 1000 -m "$N" -l $((R * 10 + 100)) -nostdin \
   -timeout $((DUR + 20))s -trace_stat -stf "$OUT/uac_stat.csv" -rsa 127.0.0.1:5060 127.0.0.1:5070 \
   > "$OUT/uac.log" 2>&1) &
UAC=$!
# the uac's own CPU, sampled until it exits (its /proc entry goes with it)
C=0; while kill -0 "$UAC" 2>/dev/null; do C=$(cpu $(family "$UAC")); sleep 0.2; done; UAC=""
D1=$(cpu $FAMILY) U1=$(cpu "$UAS")
HZ=$(getconf CLK_TCK)
per() { echo "scale=0; $1 * 1000000 / $HZ / $N" | bc; }
OK=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="SuccessfulCall(C)") c=i} END{print $c+0}' "$OUT/uac_stat.csv" 2>/dev/null)
echo "rate $R calls/s, $N calls ($OK successful): element $(per $((D1 - D0))) µs CPU/call;" \
     "SIPp uas $(per $((U1 - U0))) µs, uac >= $(per "$C") µs (logs: $OUT)"
