#!/usr/bin/env bash
# Runs segbridge end to end on one machine: a real Orthanc (loopback only,
# data under .demo/), `segbridge serve` with its embedded queue and one worker,
# and an MR series made from mricron-data's ch2 T1 brain. It waits for the
# DICOM SEG (and the SR and preview series beside it) to appear in Orthanc,
# prints how long each stage took and the segment volumes, ends with the URL
# of the status page, and keeps both servers running until Ctrl-C.
#   bash testdata/demo/demo.sh        start (make demo)
#   bash testdata/demo/demo.sh stop   stop and remove .demo/ (make demo-stop)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DEMO=$ROOT/.demo
ORTHANC_PORT=${DEMO_ORTHANC_PORT:-8042}
BRIDGE_PORT=${DEMO_BRIDGE_PORT:-8080}
PY=/usr/bin/python3

stop() {
  for p in segbridge orthanc; do
    if [ -f "$DEMO/$p.pid" ]; then
      kill "$(cat "$DEMO/$p.pid")" 2>/dev/null || true
    fi
  done
  for p in segbridge orthanc; do
    if [ -f "$DEMO/$p.pid" ]; then
      pid=$(cat "$DEMO/$p.pid")
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$DEMO"
  echo "demo stopped; .demo/ removed"
}
if [ "${1:-}" = stop ]; then stop; exit 0; fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -f "$DEMO/orthanc.pid" ] && kill -0 "$(cat "$DEMO/orthanc.pid")" 2>/dev/null; then
  echo "a demo is already running: make demo-stop first"; exit 1
fi
for p in "$ORTHANC_PORT" "$BRIDGE_PORT"; do
  if port_busy "$p"; then
    echo "port $p is in use: stop what uses it, or set DEMO_ORTHANC_PORT / DEMO_BRIDGE_PORT"; exit 1
  fi
done
rm -rf "$DEMO"
mkdir -p "$DEMO"/{orthanc-db,data,series,logs}
chmod 700 "$DEMO"

# Fresh secrets for this demo only; nothing is a default. They go into files
# only this user can read (umask 077), never onto a command line, where any
# user on the machine could read them with ps: curl reads the Orthanc
# credentials from a config file (-K) and segbridge its secrets from _FILE
# variables.
rnd() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
ORTHANC_USER=segbridge
ORTHANC_PASSWORD=$(rnd)
WEBHOOK_TOKEN=$(rnd)
umask 077
cat > "$DEMO/secrets.env" <<ENV
ORTHANC_USER=$ORTHANC_USER
ORTHANC_PASSWORD=$ORTHANC_PASSWORD
SEGBRIDGE_WEBHOOK_TOKEN=$WEBHOOK_TOKEN
ENV
printf '%s' "$ORTHANC_PASSWORD" > "$DEMO/orthanc-password"
printf '%s' "$WEBHOOK_TOKEN" > "$DEMO/webhook-token"
CURL_ORTHANC=$DEMO/curl-orthanc.conf
printf 'user = "%s:%s"\n' "$ORTHANC_USER" "$ORTHANC_PASSWORD" > "$CURL_ORTHANC"
# The AI analysis button in Orthanc Explorer needs Debian's orthanc-python
# (make deps installs it); without it the demo runs as before.
PLUGINS=""
PY_PLUGIN=/usr/lib/orthanc/libOrthancPython.so.4.0
[ -f "$PY_PLUGIN" ] && PLUGINS="\"$PY_PLUGIN\""
cat > "$DEMO/orthanc.json" <<JSON
{
  "Name": "segbridge-demo",
  "StorageDirectory": "$DEMO/orthanc-db",
  "IndexDirectory": "$DEMO/orthanc-db",
  "HttpPort": $ORTHANC_PORT,
  "DicomServerEnabled": false,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": true,
  "RegisteredUsers": { "$ORTHANC_USER": "$ORTHANC_PASSWORD" },
  "StableAge": 2,
  "HttpTimeout": 10,
  "LuaScripts": ["$ROOT/orthanc-lua/segbridge.lua"],
  "Segbridge": { "Url": "http://127.0.0.1:$BRIDGE_PORT", "Token": "$WEBHOOK_TOKEN", "Modalities": ["MR"] },
  "UserMetadata": { "segbridge": 4242 },
  "Plugins": [$PLUGINS],
  "PythonScript": "$ROOT/orthanc-lua/segbridge_explorer.py"
}
JSON
umask 022

t0=$(date +%s.%N)
echo "1/5 generating an axial MR series from ch2 (181 slices of 181x217)"
$PY testdata/tools/makeseries.py --nifti /usr/share/mricron/templates/ch2.nii.gz \
  --out "$DEMO/series" --plane axial --shuffle --patient-id DEMO-CH2 >"$DEMO/logs/makeseries.log" 2>&1

echo "2/5 starting Orthanc on 127.0.0.1:$ORTHANC_PORT"
ORTHANC_BIN=$(command -v Orthanc || echo /usr/sbin/Orthanc)
nohup "$ORTHANC_BIN" "$DEMO/orthanc.json" >"$DEMO/logs/orthanc.log" 2>&1 &
echo $! >"$DEMO/orthanc.pid"
for _ in $(seq 150); do
  curl -sf -K "$CURL_ORTHANC" "http://127.0.0.1:$ORTHANC_PORT/system" >/dev/null && break; sleep 0.2
done
curl -sf -K "$CURL_ORTHANC" "http://127.0.0.1:$ORTHANC_PORT/system" >/dev/null ||
  { echo "Orthanc did not start; see $DEMO/logs/orthanc.log"; exit 1; }

# The model: brainchop's pretrained mindgrab (a brain mask) when it is
# installed (segbridge models install), installed first when the network
# allows (from SEGBRIDGE_MODELS_URL, by default where brainchop publishes
# them); otherwise the hand-built reference filter, and how to get mindgrab.
SB="$ROOT/bin/segbridge"
has_mindgrab() { "$SB" models list 2>/dev/null | grep -q '^mindgrab '; }
if ! has_mindgrab; then
  echo "    installing brainchop's mindgrab (segbridge models install brainchop mindgrab)"
  timeout 600 "$SB" models install brainchop mindgrab >"$DEMO/logs/models-install.log" 2>&1 ||
    echo "    could not install mindgrab (no network? see .demo/logs/models-install.log)"
fi
if has_mindgrab; then
  MODEL_ENV=(SEGBRIDGE_MODEL=mindgrab)
  MODEL_NAME="mindgrab (brainchop's pretrained brain mask; about 30 s and 2.3 GB on 2 CPU cores)"
else
  MODEL_ENV=(MODEL_PATH="$ROOT/testdata/models/head-threshold.yaml")
  MODEL_NAME="the reference filter head-threshold (not a learned model)"
  echo "    mindgrab is not installed, so the demo runs the reference filter. For a real brain mask:"
  echo "      bin/segbridge models install brainchop   (or make models; SEGBRIDGE_MODELS_URL=<a copy> offline)"
  echo "    (README.md, \"Real models\"), then make demo-stop && make demo"
fi

echo "3/5 starting segbridge serve on 127.0.0.1:$BRIDGE_PORT (embedded NATS JetStream, 1 worker, CPU), model $MODEL_NAME"
(
  export ORTHANC_USER ORTHANC_PASSWORD_FILE="$DEMO/orthanc-password" SEGBRIDGE_WEBHOOK_TOKEN_FILE="$DEMO/webhook-token"
  export ORTHANC_URL="http://127.0.0.1:$ORTHANC_PORT" SEGBRIDGE_LISTEN="127.0.0.1:$BRIDGE_PORT" \
    SEGBRIDGE_DATA_DIR="$DEMO/data" SEGBRIDGE_OUTPUTS=seg,sr,preview SEGBRIDGE_LOG_FORMAT=console "${MODEL_ENV[@]}"
  exec nohup "$SB" serve >"$DEMO/logs/segbridge.log" 2>&1
) &
echo $! >"$DEMO/segbridge.pid"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$BRIDGE_PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$BRIDGE_PORT/healthz" >/dev/null || { echo "segbridge did not start; see $DEMO/logs/segbridge.log"; tail -5 "$DEMO/logs/segbridge.log"; exit 1; }

echo "4/5 uploading $(ls "$DEMO/series" | wc -l) instances to Orthanc"
upload_start=$(date +%s.%N)
ls "$DEMO/series"/*.dcm | xargs -P 4 -I{} curl -sf -K "$CURL_ORTHANC" \
  -H 'Content-Type: application/dicom' --data-binary @{} "http://127.0.0.1:$ORTHANC_PORT/instances" -o /dev/null
upload_end=$(date +%s.%N)
SERIES=$(curl -sf -K "$CURL_ORTHANC" "http://127.0.0.1:$ORTHANC_PORT/series" | $PY -c 'import json,sys; print(json.load(sys.stdin)[0])')

echo "5/5 waiting for Orthanc's stable-series event (StableAge 2 s) and the SEG"
status=""
for _ in $(seq 600); do
  status=$(curl -sf "http://127.0.0.1:$BRIDGE_PORT/v1/series/$SERIES" || true)
  state=$(echo "$status" | $PY -c 'import json,sys; print(json.load(sys.stdin)["state"])' 2>/dev/null || echo none)
  case $state in done|failed) break ;; esac
  sleep 0.5
done
t1=$(date +%s.%N)
echo "$status" | UPLOAD_END=$upload_end UPLOAD_S=$($PY -c "print($upload_end-$upload_start)") TOTAL_S=$($PY -c "print($t1-$t0)") \
  ORTHANC="http://127.0.0.1:$ORTHANC_PORT" $PY -c '
import json, os, re, sys, datetime
st = json.load(sys.stdin)
job = st["jobs"][0] if st["jobs"] else {}
if st["state"] != "done":
    print("\nthe job did not finish: state %s, error: %s" % (st["state"], job.get("error")))
    sys.exit(1)
t = job.get("timings_ms", {})
print("\nSEG stored in Orthanc:", job["seg_url"], "(model %s)" % job.get("model"))
for w in job.get("warnings") or []:
    print("warning:", w)
if job.get("sr_url"):
    print("volumes (TID 1500 SR):", job["sr_url"])
if job.get("preview_url"):
    print("preview any viewer shows:", job["preview_url"])
print("source series:        %s/app/explorer.html#series?uuid=%s" % (os.environ["ORTHANC"], job["series_id"]))
print("\nstage times (ms):")
print("  %-34s %9.0f" % ("upload to Orthanc (demo client)", float(os.environ["UPLOAD_S"]) * 1000))
req = job.get("requested_at", "")
m = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?Z", req)
if m:
    ts = datetime.datetime.fromisoformat(m.group(1) + "+00:00").timestamp() + float(m.group(2) or 0)
    print("  %-34s %9.0f" % ("upload end to stable-series event", (ts - float(os.environ["UPLOAD_END"])) * 1000))
for k, label in [("wait", "queue wait"), ("download", "download + parse (%d instances)" % 181),
                 ("volume", "volume"), ("preprocess", "preprocess"), ("inference", "inference (ONNX Runtime, CPU)"),
                 ("postprocess", "postprocess"), ("encode", "SEG encode"), ("sr", "SR encode"),
                 ("preview", "preview series encode"), ("upload_preview", "preview series upload"),
                 ("upload_sr", "SR upload"), ("upload", "SEG upload"),
                 ("total", "worker total"), ("end_to_end", "trigger to SEG stored")]:
    if k in t:
        print("  %-34s %9.0f" % (label, t[k]))
'
# The volumes as the status page shows them (this also renders its preview).
JOB=$(echo "$status" | $PY -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["id"])')
curl -sf "http://127.0.0.1:$BRIDGE_PORT/v1/jobs/$JOB/result" | $PY -c '
import json, sys
r = json.load(sys.stdin)
print("\nsegment volumes (SEG voxels x voxel volume; the SR in Orthanc says the same):")
for s in r["segments"]:
    print("  %-34s %9.1f mL  (%d voxels)" % (s["name"], s["volume_ml"], s["voxels"]))
' || echo "(the status page could not render the result; see .demo/logs/segbridge.log)"
echo
echo "Orthanc Explorer login: user $ORTHANC_USER, password in .demo/secrets.env"
echo "bridge API: curl http://127.0.0.1:$BRIDGE_PORT/v1/series/$SERIES"
echo "logs in .demo/logs/. Press Ctrl-C to stop (or run make demo-stop from another shell)."
echo
echo "status page (AI analysis button, live state, preview, volumes):"
echo "  http://127.0.0.1:$BRIDGE_PORT/?series=$SERIES"
trap 'echo; stop; exit 0' INT TERM
while kill -0 "$(cat "$DEMO/orthanc.pid")" 2>/dev/null && kill -0 "$(cat "$DEMO/segbridge.pid")" 2>/dev/null; do sleep 1; done
echo "a demo process exited; see .demo/logs/"
exit 1
