#!/usr/bin/env bash
# bench_cps.sh - calls/s through pcscf-alg and through the baselines, side by side in ONE run.
#
#   (b) Kamailio 5.6 stateful proxy          vs  (d) pcscf-alg as a plain proxy (RTP/AVP offer)
#   (c) Kamailio + rtpengine SDES bridging   vs  (e) pcscf-alg e2ae: UE offers RTP/SAVP + a=crypto
#                                                    + a=3ge2ae:requested; core gets RTP/AVP; UE
#                                                    gets RTP/SAVP + our a=crypto (SIPp checks it)
# Uses bench/baselines/sipp_cps.sh (SIPp uac 5080 -> element 5060 -> uas 5070), the same
# scenarios and the same steps for every element, and prints the max sustained rate of each and
# the ratios. The SIPp UE does not REGISTER, so (d)/(e) run with registration not required and
# the NOTE 2a policy set to `apply` (e2ae without registered support).
# Needs: apt-get install -y sip-tester kamailio rtpengine-daemon bc
# Usage: bench/bench_cps.sh [duration_s]   (default 8 s per step)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BASE=${BASELINES:-$HERE/baselines}
DUR=${1:-8}
OUT=${OUT:-/tmp/bench_cps.$$}
mkdir -p "$OUT" /tmp/kamrun
PY="$ROOT/.venv/bin/python"
for t in sipp kamailio rtpengine bc; do
  command -v $t >/dev/null || { echo "missing $t: apt-get install -y sip-tester kamailio rtpengine-daemon bc"; exit 2; }
done

cat > "$OUT/plain.yaml" <<YAML
sip:
  access: {host: 127.0.0.1, port: 5060}
  core:   {host: 127.0.0.1, port: 5072}
  next_hop: "sip:127.0.0.1:5070;lr"
registration: {require_for_originating: false}
agw: {cert_dir: $OUT/agw, rtp_ports: [30000, 49999]}
log: {level: WARNING}
YAML
cp "$OUT/plain.yaml" "$OUT/e2ae.yaml"
echo "policy: {e2ae_not_registered: apply}" >> "$OUT/e2ae.yaml"

KAM="kamailio -f $BASE/kamailio.cfg -DD -E -Y /tmp/kamrun -m 1024 -M 32"
RTPE_PID=""
cleanup() { [ -n "$RTPE_PID" ] && kill "$RTPE_PID" 2>/dev/null; }
trap cleanup EXIT INT TERM

run() { # name rates offer elem_cmd
  local name=$1 rates=$2 offer=$3 cmd=$4
  echo "## $name" >&2
  "$BASE/sipp_cps.sh" -e "$cmd" -o "$offer" -r "$rates" -d "$DUR" -O "$OUT/$name" >&2
  awk -F, '$12=="OK"{r=$3} END{print r+0}' "$OUT/$name/results.csv" 2>/dev/null || echo 0
}

B=$(run kamailio 250,500,1000,1500,2000 rtp "$KAM")
D=$(run pcscf-plain 100,200,300,400,500,600,800,1000 rtp "$PY -m pcscf_alg run --config $OUT/plain.yaml")
rtpengine --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng=127.0.0.1:2223 \
  --foreground --log-stderr --log-level=4 --port-min=50000 --port-max=59999 --num-threads=2 \
  --delete-delay=0 > "$OUT/rtpengine.log" 2>&1 &
RTPE_PID=$!; sleep 1.5
C=$(run kamailio-rtpengine 100,200,400,600,700,800 sdes "$KAM -A WITH_RTPENGINE")
kill "$RTPE_PID" 2>/dev/null; RTPE_PID=""
E=$(run pcscf-e2ae 100,200,300,400,500,600,800 sdes "$PY -m pcscf_alg run --config $OUT/e2ae.yaml")

ratio() { echo "scale=2; if ($2 > 0) $1 / $2 else 0" | bc; }
echo
echo "| element | max sustained calls/s | ratio |"
echo "|---|---:|---:|"
echo "| Kamailio stateful proxy | $B | 1.00 |"
echo "| pcscf-alg, plain proxy | $D | $(ratio "$D" "$B") of Kamailio |"
echo "| Kamailio + rtpengine SDES | $C | 1.00 |"
echo "| pcscf-alg, e2ae SDES through its gateway | $E | $(ratio "$E" "$C") of Kamailio + rtpengine |"
echo "(logs: $OUT)"
