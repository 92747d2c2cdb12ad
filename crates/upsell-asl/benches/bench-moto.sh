#!/usr/bin/env bash
# Side by side: benches/five-state.asl.json on this engine (criterion, one core) and on moto
# server's Step Functions interpreter (started here on 127.0.0.1, executions enabled through
# /moto-api/config, each execution named, completion polled), then the ratio.
# Usage: crates/upsell-asl/benches/bench-moto.sh [moto executions, default 200]
set -euo pipefail
cd "$(dirname "$0")/../../.."
N="${1:-200}"
PORT="${MOTO_PORT:-5060}"
VENV="${VENV:-/work/venv}"
DEF=crates/upsell-asl/benches/five-state.asl.json

cargo bench -p upsell-asl --bench engine -- five_state --warm-up-time 1 --measurement-time 3 >/dev/null
EST=target/criterion/five_state/execution/new/estimates.json
ENGINE_NS=$("$VENV/bin/python" -c "import json,sys; print(json.load(open('$EST'))['mean']['point_estimate'])")

"$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >/tmp/bench-moto-server.log 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT

"$VENV/bin/python" - "$PORT" "$N" "$DEF" "$ENGINE_NS" <<'PY'
import json, sys, time, urllib.request
import boto3
port, n, path, engine_ns = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
url = f"http://127.0.0.1:{port}"
for _ in range(100):
    try:
        urllib.request.urlopen(url + "/moto-api/", timeout=1)
        break
    except Exception:
        time.sleep(0.1)
req = urllib.request.Request(url + "/moto-api/config", method="POST",
    data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
    headers={"Content-Type": "application/json"})
urllib.request.urlopen(req).read()
sfn = boto3.client("stepfunctions", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
arn = sfn.create_state_machine(name="five-state", definition=open(path).read(),
    roleArn="arn:aws:iam::123456789012:role/bench")["stateMachineArn"]
def run(i):
    ex = sfn.start_execution(stateMachineArn=arn, name=f"bench-{i}", input="{}")["executionArn"]
    while True:
        d = sfn.describe_execution(executionArn=ex)
        if d["status"] != "RUNNING":
            assert d["status"] == "SUCCEEDED", d
            return json.loads(d["output"])
        time.sleep(0.001)
first = run("check")
assert first == {"offer": "premium", "customer": "gold"}, first
start = time.perf_counter()
for i in range(n):
    run(i)
moto = n / (time.perf_counter() - start)
engine = 1e9 / engine_ns
print(f"five-state machine: upsell-asl {engine:,.0f} executions/s (criterion mean {engine_ns/1000:.1f} us), "
      f"moto {moto:,.1f} executions/s over {n} executions; ratio {engine/moto:,.0f}x")
PY
