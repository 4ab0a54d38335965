#!/usr/bin/env bash
# The broker cluster, measured in one run on this machine: produce
# throughput and p50 / p99 produce latency (acks=all, idempotent) for 1 and
# 3 brokers over a local directory and over an S3-compatible server (moto's,
# deploy/s3/serial_moto.py), and the object-store requests per MB produced
# (from the S3 server's request log). Nothing is asserted; it prints a table.
#
#   bench/cluster.sh [MESSAGES]        (default 100000 messages of 1 KiB)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
messages="${1:-100000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target}"
cargo build --release -q -p gatehouse -p gatehouse-tests --bin gatehouse --bin gatehouse-load
bin="$CARGO_TARGET_DIR/release"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
[ -n "${GATEHOUSE_BENCH_KEEP:-}" ] && trap "for p in \"\${pids[@]}\"; do kill \$p 2>/dev/null || true; done; echo kept \$work" EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

s3=$(port)
python3 "$root/deploy/s3/serial_moto.py" -H 127.0.0.1 -p "$s3" 2>"$work/s3.log" >/dev/null &
pids+=($!)
for _ in $(seq 100); do curl -sf -X PUT "http://127.0.0.1:$s3/bench" >/dev/null && break; sleep 0.1; done

results="$work/results.jsonl"
for store in dir s3; do
  for n in 1 3; do
    name="$store-$n"
    if [ "$store" = dir ]; then data="$work/$name"; opts=(); else
      data="s3://bench/$name"; opts=(--store-option "aws_endpoint=http://127.0.0.1:$s3" --store-option aws_allow_http=true); fi
    brokers=()
    cluster=()
    for node in $(seq 0 $((n - 1))); do
      p=$(port)
      "$bin/gatehouse" broker --node-id "$node" --listen "127.0.0.1:$p" --data "$data" "${opts[@]}" \
        --lease-ms 5000 >>"$work/broker.log" 2>&1 &
      pids+=($!); brokers+=("127.0.0.1:$p"); cluster+=($!)
    done
    bootstrap=$(IFS=,; echo "${brokers[*]}")
    # Until every broker sees the others (partitions are spread over the
    # brokers live when the topic is created).
    for _ in $(seq 100); do
      seen=$(kcat -b "${brokers[0]}" -L 2>/dev/null | grep -c '^  broker ' || true)
      [ "$seen" -ge "$n" ] && break; sleep 0.1
    done
    before=$(wc -l <"$work/s3.log")
    "$bin/gatehouse-load" --bootstrap "$bootstrap" --topic "bench-$name" --partitions 12 \
      --messages "$messages" --size 1024 --producers 4 --produce-only \
      --option enable.idempotence=true >"$work/out.jsonl" 2>>"$work/load.log"
    after=$(wc -l <"$work/s3.log")
    python3 - "$name" "$((after - before))" "$messages" "$work/out.jsonl" >>"$results" <<'PY'
import json, sys
name, requests, messages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for line in open(sys.argv[4]):
    row = json.loads(line)
    if row.get("phase") == "produce":
        row.update(setup=name, s3_requests=requests, mb=messages * 1024 / 1e6)
        print(json.dumps(row))
PY
    for p in "${cluster[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
  done
done
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def f(r, *keys):
    for k in keys:
        if k in r: return r[k]
    return None
print(f"{'setup':<8} {'msg/s':>9} {'MB/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'S3 requests/MB':>15}")
for r in rows:
    rate = f(r, "msgs_per_s")
    mbs = f(r, "mb_per_s")
    p50 = f(r, "latency_ms_p50")
    p99 = f(r, "latency_ms_p99")
    per = r["s3_requests"] / r["mb"] if r["setup"].startswith("s3") else None
    print(f"{r['setup']:<8} {rate or 0:>9.0f} {mbs or 0:>7.1f} {p50 or 0:>8.1f} {p99 or 0:>8.1f} {'' if per is None else f'{per:.1f}':>15}")
print(json.dumps(rows))
PY
