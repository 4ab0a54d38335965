#!/usr/bin/env bash
# Runs the same librdkafka load straight to the broker and through the
# Gatehouse proxy, alternating, several rounds, in one go on this machine;
# writes a markdown table of medians and proxy/direct ratios to
# bench/results/. Everything binds to 127.0.0.1.
#
#   bench/proxy-vs-direct.sh [rounds]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target}"
rounds="${1:-3}"
cargo build --release -q -p gatehouse -p gatehouse-tests --bin gatehouse --bin gatehouse-load
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
broker_port=$(port); proxy_port=$(port)
"$bin/gatehouse" broker --listen "127.0.0.1:$broker_port" --data "$work/data" >"$work/broker.log" 2>&1 &
cat >"$work/proxy.toml" <<TOML
[listener]
bind = "127.0.0.1:$proxy_port"
[upstream]
bootstrap_servers = ["127.0.0.1:$broker_port"]
TOML
"$bin/gatehouse" serve --config "$work/proxy.toml" >"$work/proxy.log" 2>&1 &
proxy_pid=$!
for p in $broker_port $proxy_port; do
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$proxy_pid/stat"; }
run() { # target scenario load-args...
  local target=$1 name=$2; shift 2
  local addr="127.0.0.1:$proxy_port"
  [ "$target" = direct ] && addr="127.0.0.1:$broker_port"
  local before; before=$(cpu_ticks)
  "$bin/gatehouse-load" --bootstrap "$addr" --topic "$name-$target-$RANDOM" "$@" >"$work/out.jsonl"
  local ticks=$(( $(cpu_ticks) - before ))
  python3 -c 'import json,sys
for l in sys.stdin:
    print(json.dumps(dict(json.loads(l), target=sys.argv[1], scenario=sys.argv[2], proxy_cpu_ticks=int(sys.argv[3]))))' \
    "$target" "$name" "$ticks" <"$work/out.jsonl" >>"$work/results.jsonl"
}
for r in $(seq "$rounds"); do
  for target in direct proxy; do
    run "$target" saturate-1k --messages 200000 --size 1024
    run "$target" saturate-200b --messages 400000 --size 200 --produce-only
    run "$target" paced-1k --messages 100000 --size 1024 --rate 20000 --linger-ms 1 --produce-only
  done
done

mkdir -p bench/results
out="bench/results/proxy-vs-direct-$(date -u +%Y%m%d-%H%M).md"
python3 - "$work/results.jsonl" "$rounds" "$(getconf CLK_TCK)" >"$out" <<'PY'
import json, statistics, sys, platform, os
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds, hz = int(sys.argv[2]), int(sys.argv[3])
def med(sc, target, phase, key):
    v = [r[key] for r in rows if r["scenario"] == sc and r["target"] == target and r["phase"] == phase]
    return statistics.median(v) if v else None
cpu = open("/proc/cpuinfo").read().split("model name", 1)[1].split("\n", 1)[0].split(":", 1)[1].strip()
print(f"# Proxy vs direct ({rounds} rounds, medians)\n")
print(f"Machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}.")
print("Client: librdkafka (gatehouse-load), acks=all, 3 partitions; broker with fsync, on a local directory; all on 127.0.0.1.\n")
print("| scenario | metric | direct | proxy | proxy/direct |")
print("|---|---|---|---|---|")
for sc, phase, key, label in [
    ("saturate-1k", "produce", "mb_per_s", "produce MB/s (1 KiB)"),
    ("saturate-1k", "produce", "msgs_per_s", "produce msg/s (1 KiB)"),
    ("saturate-1k", "consume", "mb_per_s", "consume MB/s (1 KiB)"),
    ("saturate-200b", "produce", "msgs_per_s", "produce msg/s (200 B)"),
    ("paced-1k", "produce", "latency_ms_p50", "p50 produce latency ms @ 20k msg/s"),
    ("paced-1k", "produce", "latency_ms_p99", "p99 produce latency ms @ 20k msg/s"),
]:
    d, p = med(sc, "direct", phase, key), med(sc, "proxy", phase, key)
    if d is None or p is None:
        continue
    print(f"| {sc} | {label} | {d:,.2f} | {p:,.2f} | {p / d:.3f} |")
# Proxy CPU per MB/s: CPU seconds the proxy used per MB it carried.
ticks = [r["proxy_cpu_ticks"] for r in rows if r["target"] == "proxy" and r["scenario"] == "saturate-1k" and r["phase"] == "produce"]
# That run produced and then consumed the data: twice its size crossed the proxy.
mb = [2 * r["messages"] * r["size"] / 1e6 for r in rows if r["target"] == "proxy" and r["scenario"] == "saturate-1k" and r["phase"] == "produce"]
if ticks and mb:
    per_mb = statistics.median([t / hz / m for t, m in zip(ticks, mb)])
    print(f"\nProxy CPU for the 1 KiB produce+consume run: {per_mb * 1000:.2f} ms of CPU per MB carried "
          f"(≈ {1 / per_mb:,.0f} MB/s per fully used core).")
PY
cat "$out"
echo "written to $out" >&2
