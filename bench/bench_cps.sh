#!/usr/bin/env bash
# bench_cps.sh - calls/s through pcscf-alg and through the baselines, side by side in ONE run.
#
#   Kamailio 5.6 stateful proxy          vs  pcscf-alg as a plain proxy (RTP/AVP offer): P2
#   Kamailio + rtpengine SDES bridging   vs  pcscf-alg e2ae (P1): the UE offers RTP/SAVP +
#                                            a=crypto + a=3ge2ae:requested; the core gets
#                                            RTP/AVP; the UE gets RTP/SAVP + a=crypto (SIPp
#                                            checks it)
# pcscf-alg runs with 1 and with 2 worker processes (sip.workers; 2 needs the shared
# registration store: a redis-server this script starts), and for e2ae with its embedded gateway
# and with rtpengine as its media backend (agw.backend: rtpengine; the same rtpengine build the
# Kamailio baseline uses).
#
# Every element steps through the SAME rate list and stops at its first failing step
# (bench/baselines/sipp_cps.sh: < 1 % failed calls and >= 95 % of the target rate): the list
# goes far beyond what this machine can do, so every element's figure is where it failed, not
# where the list ended. A figure equal to the list's top would be a bound: the script says so.
# The SIPp UE opens one socket per call (-T un) for every element: with one socket the kernel
# would hand all of SIPp's traffic to one worker (SO_REUSEPORT hashes the source address).
# The SIPp UE does not REGISTER: pcscf-alg runs with registration not required and the NOTE 2a
# policy `apply` (e2ae without registered support).
# Needs: apt-get install -y sip-tester kamailio rtpengine-daemon redis-server bc
# Usage: bench/bench_cps.sh [duration_s] [elements]   (default 8 s per step, all elements;
#        elements: comma-separated names from the table, e.g. kamailio,pcscf-plain-1w)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BASE=${BASELINES:-$HERE/baselines}
DUR=${1:-8}
ONLY=${2:-}
OUT=${OUT:-/tmp/bench_cps.$$}
STEPS=${STEPS:-100,200,300,400,500,600,800,1000,1200,1500,2000,2500,3000,4000,5000,6000,8000}
TRANSPORT=${TRANSPORT:-un}
mkdir -p "$OUT" /tmp/kamrun
PY="$ROOT/.venv/bin/python"
for t in sipp kamailio rtpengine redis-server bc; do
  command -v $t >/dev/null || {
    echo "missing $t: apt-get install -y sip-tester kamailio rtpengine-daemon redis-server bc"; exit 2; }
done

RTPE_PID="" REDIS_PID=""
stop_pid() { local pid=$1; [ -n "$pid" ] || return 0; kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL "$pid" 2>/dev/null; }
cleanup() { stop_pid "$RTPE_PID"; stop_pid "$REDIS_PID"; }
trap cleanup EXIT INT TERM

# The shared registration store of the 2-worker runs, and rtpengine (userspace, 2 threads) for
# the Kamailio baseline and pcscf-alg's rtpengine backend: both up for the whole run.
redis-server --port 6391 --bind 127.0.0.1 --save "" --appendonly no > "$OUT/redis.log" 2>&1 &
REDIS_PID=$!
rtpengine --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng=127.0.0.1:2223 \
  --foreground --log-stderr --log-level=4 --port-min=50000 --port-max=59999 --num-threads=2 \
  --delete-delay=0 > "$OUT/rtpengine.log" 2>&1 &
RTPE_PID=$!
sleep 1.5

config() { # name workers backend policy_apply
  local f="$OUT/$1.yaml"
  cat > "$f" <<YAML
sip:
  access: {host: 127.0.0.1, port: 5060}
  core:   {host: 127.0.0.1, port: 5072}
  next_hop: "sip:127.0.0.1:5070;lr"
  workers: $2
registration: {require_for_originating: false, store: {backend: $([ "$2" -gt 1 ] && echo redis || echo memory), url: "redis://127.0.0.1:6391/0"}}
agw: {cert_dir: $OUT/agw, rtp_ports: [30000, 49999], backend: $3, rtpengine: {ng: "127.0.0.1:2223"}}
log: {level: WARNING}
YAML
  [ "$4" = apply ] && echo "policy: {e2ae_not_registered: apply}" >> "$f"
  echo "$f"
}

declare -A RESULT
run() { # name offer elem_cmd
  local name=$1 offer=$2 cmd=$3
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then RESULT[$name]="-"; return; fi
  echo "## $name" >&2
  "$BASE/sipp_cps.sh" -e "$cmd" -o "$offer" -r "$STEPS" -d "$DUR" -T "$TRANSPORT" -w 3 \
    -O "$OUT/$name" >&2
  RESULT[$name]=$(awk -F, '$12=="OK"{r=$3} END{print r+0}' "$OUT/$name/results.csv" 2>/dev/null || echo 0)
}

KAM="kamailio -f $BASE/kamailio.cfg -DD -E -Y /tmp/kamrun -m 1024 -M 32"
PCSCF="$PY -m pcscf_alg run --config"
run kamailio rtp "$KAM"
run kamailio-rtpengine sdes "$KAM -A WITH_RTPENGINE"
run pcscf-plain-1w rtp "$PCSCF $(config plain1 1 embedded none)"
run pcscf-plain-2w rtp "$PCSCF $(config plain2 2 embedded none)"
run pcscf-e2ae-1w sdes "$PCSCF $(config e2ae1 1 embedded apply)"
run pcscf-e2ae-2w sdes "$PCSCF $(config e2ae2 2 embedded apply)"
run pcscf-e2ae-rtpengine-1w sdes "$PCSCF $(config e2aer1 1 rtpengine apply)"
run pcscf-e2ae-rtpengine-2w sdes "$PCSCF $(config e2aer2 2 rtpengine apply)"

TOP=${STEPS##*,}
ratio() { [ "$1" = - ] || [ "$2" = - ] && { echo -; return; }; echo "scale=2; if ($2 > 0) $1 / $2 else 0" | bc; }
fig() { local v=${RESULT[$1]}; [ "$v" = "$TOP" ] && echo "$v (top step: a bound)" || echo "$v"; }
K=${RESULT[kamailio]} KR=${RESULT[kamailio-rtpengine]}
echo
echo "steps: $STEPS (each ${DUR} s; an element stops at its first failing step); SIPp transport $TRANSPORT"
echo
echo "| element | max sustained calls/s | ratio |"
echo "|---|---:|---:|"
echo "| Kamailio stateful proxy | $(fig kamailio) | 1.00 |"
for n in pcscf-plain-1w pcscf-plain-2w; do
  echo "| pcscf-alg plain proxy, ${n##*-} | $(fig $n) | $(ratio "${RESULT[$n]}" "$K") of Kamailio |"
done
echo "| Kamailio + rtpengine SDES | $(fig kamailio-rtpengine) | 1.00 |"
for n in pcscf-e2ae-1w pcscf-e2ae-2w pcscf-e2ae-rtpengine-1w pcscf-e2ae-rtpengine-2w; do
  gw=embedded; [[ $n == *rtpengine* ]] && gw=rtpengine
  echo "| pcscf-alg e2ae SDES, $gw gateway, ${n##*-} | $(fig $n) | $(ratio "${RESULT[$n]}" "$KR") of Kamailio + rtpengine |"
done
echo "(logs: $OUT)"
