#!/usr/bin/env bash
# Gatehouse against a direct connection to the broker, in one run on this
# machine: every scenario straight to the broker and through the proxy,
# alternating, several rounds. Writes a markdown table of medians and ratios
# (and the machine it ran on) to bench/results/run-<time>.md, and every
# run's figures as JSON lines beside it.
# Everything binds to 127.0.0.1; the load is gatehouse-load (librdkafka).
#
#   bench/run.sh [rounds] [messages]
#
# GATEHOUSE_BENCH_PACED_RATE sets the paced scenario's msg/s (default: half of
# the median direct saturation of this run).
# GATEHOUSE_BENCH_PROXY_CPUS pins the proxies to a taskset CPU list (e.g. "1").
# GATEHOUSE_BENCH_LOAD_ARGS adds gatehouse-load options to every run (e.g.
# "--consumer-option max.partition.fetch.bytes=4194304").
#
# Scenarios (GATEHOUSE_BENCH_SCENARIOS picks a subset, e.g. "direct fields"):
#   direct        the broker itself
#   passthrough   a proxy with no authentication and no policies
#   policy        SASL/PLAIN, Cedar policies and consent: a topic whose
#                 records name a data subject, each record decided
#   fields        the same proxy, a topic whose five personal fields it
#                 encrypts on produce and decrypts on fetch
#   audit         like policy, through a proxy that also keeps the audit trail
#   fields-audit  like fields, through that proxy
#   fanout        like fields, read back twice, each time as another consumer
#                 group of the same principal: the second read is served from
#                 the view cache (its consume figures are the second group's)
#   traced1 / traced100   like policy, through a proxy that traces 1 % or
#                 100 % of requests, exported over OTLP/HTTP to a local
#                 receiver that accepts and discards them
#   paced         direct and passthrough at half of direct saturation:
#                 produce and end-to-end latency
#   conn100 / conn1000   the paced load at 20,000 msg/s with 100 or 1,000
#                 more client connections open, each producing a record a
#                 second; direct and passthrough (proxy CPU and peak RSS)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target}"
rounds="${1:-3}"
messages="${2:-100000}"
scenarios="${GATEHOUSE_BENCH_SCENARIOS:-direct passthrough policy fields audit fields-audit fanout paced conn100 conn1000}"
cargo build --release -q -p gatehouse -p gatehouse-tests --bin gatehouse --bin gatehouse-load
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
# 1,000 connections through the proxy hold a few thousand sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
broker_port=$(port); plain_port=$(port); gov_port=$(port); audit_port=$(port); fanout_port=$(port)
traced1_port=$(port); traced100_port=$(port); otlp_port=$(port)

# Policies: the shipped set, plus a `bench` team that may write and read
# bench.* topics with every field in clear. The catalog gains
# bench.consent-* (records name their author as data subject) and
# bench.fields-* (the same, with the posts' five personal fields protected);
# bench.plain-* stays ungoverned.
mkdir -p "$work/policies"
cp policies/default/*.cedar policies/default/catalog.toml "$work/policies/"
cat >>"$work/policies/catalog.toml" <<'TOML'

[[topic]]
name = "bench.consent-*"
classification = "personal"
residency = "eu"
owner = "platform"
format = "json"
subject = "json:$.author.id"

[[topic]]
name = "bench.fields-*"
classification = "personal"
residency = "eu"
owner = "platform"
format = "json"
subject = "json:$.author.id"
fields = [
  { path = "$.author.email", category = "email" },
  { path = "$.author.name", category = "name" },
  { path = "$.author.handle", category = "handle" },
  { path = "$.author.ip", category = "ip" },
  { path = "$.geo", category = "location" },
]
TOML
cat >"$work/policies/bench.cedar" <<'CEDAR'
@id("bench-topics")
permit (
  principal,
  action in [Gatehouse::Action::"produce", Gatehouse::Action::"consume",
             Gatehouse::Action::"describe", Gatehouse::Action::"create_topic",
             Gatehouse::Action::"produce_record", Gatehouse::Action::"consume_record"],
  resource is Gatehouse::Topic
)
when { principal.team == "bench" && resource.name like "bench.*" };

@id("bench-fields-clear")
permit (principal, action == Gatehouse::Action::"read_clear", resource is Gatehouse::Field)
when { principal.team == "bench" && resource.topic.name like "bench.*" };
CEDAR
"$bin/gatehouse" policy validate "$work/policies" >/dev/null
GATEHOUSE_BENCH_PW=bench-pw "$bin/gatehouse" users add --file "$work/users.toml" --name bench \
  --password-env GATEHOUSE_BENCH_PW --attr team=bench --attr region=eu --list-attr purposes=bench >/dev/null

"$bin/gatehouse" broker --listen "127.0.0.1:$broker_port" --data "$work/data" >"$work/broker.log" 2>&1 &
broker_pid=$!
cat >"$work/plain.toml" <<TOML
[listener]
bind = "127.0.0.1:$plain_port"
[upstream]
bootstrap_servers = ["127.0.0.1:$broker_port"]
TOML
cat >"$work/gov.toml" <<TOML
[listener]
bind = "127.0.0.1:$gov_port"
[upstream]
bootstrap_servers = ["127.0.0.1:$broker_port"]
[auth]
mechanisms = ["PLAIN"]
credentials_file = "$work/users.toml"
[policy]
dir = "$work/policies"
state_dir = "$work/state"
[keys]
key_file = "$work/keys/kek.json"
state_dir = "$work/keys-state"
TOML
# The audited proxy: the same, plus [audit], with state of its own.
sed -e "s/127.0.0.1:$gov_port/127.0.0.1:$audit_port/" -e "s#$work/state#$work/state-audit#" \
    -e "s#$work/keys-state#$work/keys-state-audit#" "$work/gov.toml" >"$work/audit.toml"
cat >>"$work/audit.toml" <<TOML
[audit]
dir = "$work/audit"
replica_id = "bench"
TOML
# The fan-out proxy: the same as gov, with a view cache whose half for
# batches fetched once holds a whole read of the run (the default, 64 MiB,
# suits consumer groups that read near each other, as tailing ones do).
sed -e "s/127.0.0.1:$gov_port/127.0.0.1:$fanout_port/" -e "s#$work/state#$work/state-fanout#" \
    -e "s#$work/keys-state#$work/keys-state-fanout#" "$work/gov.toml" >"$work/fanout.toml"
cat >>"$work/fanout.toml" <<TOML
[limits]
view_cache_bytes = $(( messages * 3072 + (64 << 20) ))
TOML
# The traced proxies: the same as gov, with [telemetry] towards an OTLP/HTTP
# receiver that reads each export and answers 200.
for pct in 1 100; do
  eval "tport=\$traced${pct}_port"
  sed -e "s/127.0.0.1:$gov_port/127.0.0.1:$tport/" -e "s#$work/state#$work/state-t$pct#" \
      -e "s#$work/keys-state#$work/keys-state-t$pct#" "$work/gov.toml" >"$work/traced$pct.toml"
  ratio=$(python3 -c "print($pct / 100)")
  cat >>"$work/traced$pct.toml" <<TOML
[telemetry]
otlp_endpoint = "http://127.0.0.1:$otlp_port"
trace_sample_ratio = $ratio
TOML
done
python3 - "$otlp_port" >"$work/otlp.log" 2>&1 <<'PY' &
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
# GATEHOUSE_BENCH_PROXY_CPUS (a taskset CPU list, e.g. "1" or "0,1") pins
# every proxy to those cores: how governed traffic scales with cores.
proxy_cpus=(env)
if [ -n "${GATEHOUSE_BENCH_PROXY_CPUS:-}" ]; then
  proxy_cpus=(taskset -c "$GATEHOUSE_BENCH_PROXY_CPUS")
fi
"${proxy_cpus[@]}" "$bin/gatehouse" serve --config "$work/traced1.toml" >"$work/traced1.log" 2>&1 &
traced1_pid=$!
"${proxy_cpus[@]}" "$bin/gatehouse" serve --config "$work/traced100.toml" >"$work/traced100.log" 2>&1 &
traced100_pid=$!
"${proxy_cpus[@]}" "$bin/gatehouse" serve --config "$work/plain.toml" >"$work/plain.log" 2>&1 &
plain_pid=$!
"${proxy_cpus[@]}" "$bin/gatehouse" serve --config "$work/gov.toml" >"$work/gov.log" 2>&1 &
gov_pid=$!
"${proxy_cpus[@]}" "$bin/gatehouse" serve --config "$work/audit.toml" >"$work/audit.log" 2>&1 &
audit_pid=$!
"${proxy_cpus[@]}" "$bin/gatehouse" serve --config "$work/fanout.toml" >"$work/fanout.log" 2>&1 &
fanout_pid=$!
for p in $broker_port $plain_port $gov_port $audit_port $fanout_port $traced1_port $traced100_port $otlp_port; do
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
sasl=(--option security.protocol=SASL_PLAINTEXT --option sasl.mechanisms=PLAIN
      --option sasl.username=bench --option sasl.password=bench-pw)

# run SCENARIO TARGET ARGS...: one gatehouse-load run, its JSON lines tagged.
run() {
  local scenario=$1 target=$2; shift 2
  local addr pid topic auth=()
  case $target in
    direct) addr=$broker_port; pid=$broker_pid; topic=bench.plain ;;
    passthrough) addr=$plain_port; pid=$plain_pid; topic=bench.plain ;;
    policy) addr=$gov_port; pid=$gov_pid; topic=bench.consent; auth=("${sasl[@]}") ;;
    fields) addr=$gov_port; pid=$gov_pid; topic=bench.fields; auth=("${sasl[@]}") ;;
    fanout) addr=$fanout_port; pid=$fanout_pid; topic=bench.fields; auth=("${sasl[@]}"); set -- "$@" --reads 2 ;;
    audit) addr=$audit_port; pid=$audit_pid; topic=bench.consent; auth=("${sasl[@]}") ;;
    fields-audit) addr=$audit_port; pid=$audit_pid; topic=bench.fields; auth=("${sasl[@]}") ;;
    traced1) addr=$traced1_port; pid=$traced1_pid; topic=bench.consent; auth=("${sasl[@]}") ;;
    traced100) addr=$traced100_port; pid=$traced100_pid; topic=bench.consent; auth=("${sasl[@]}") ;;
  esac
  "$bin/gatehouse-load" --bootstrap "127.0.0.1:$addr" --topic "$topic-$scenario-$RANDOM$RANDOM" \
    --values posts --size 1024 --watch-pid "$pid" "${auth[@]}" "$@" ${GATEHOUSE_BENCH_LOAD_ARGS:-} >"$work/out.jsonl" \
    2>>"$work/load.log" || { echo "$scenario/$target failed:" >&2; tail -5 "$work/load.log" >&2; exit 1; }
  python3 -c 'import json,sys
for l in sys.stdin:
    print(json.dumps(dict(json.loads(l), scenario=sys.argv[1], target=sys.argv[2])))' \
    "$scenario" "$target" <"$work/out.jsonl" >>"$work/results.jsonl"
}
has() { [[ " $scenarios " == *" $1 "* ]]; }
# Every throughput run uses the same batch size, below the broker's 1 MiB
# limit (the proxy compresses an encrypted batch that outgrows it).
throughput=(--messages "$messages" --option batch.size=524288)
for r in $(seq "$rounds"); do
  echo "throughput, round $r of $rounds" >&2
  for t in direct passthrough policy fields audit fields-audit fanout traced1 traced100; do
    if has "$t"; then run throughput "$t" "${throughput[@]}"; fi
  done
done
paced_rate="${GATEHOUSE_BENCH_PACED_RATE:-}"
if has paced && [ -z "$paced_rate" ]; then
  # Half of direct saturation: the median of this run's direct runs (or of
  # calibration runs of its own).
  if ! has direct; then
    for r in $(seq "$rounds"); do run calibrate direct "${throughput[@]}" --produce-only; done
  fi
  paced_rate=$(python3 -c 'import json,statistics,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
v=[x["msgs_per_s"] for x in rows if x["target"]=="direct" and x["phase"]=="produce"]
print(int(statistics.median(v) / 2 // 1000 * 1000))' "$work/results.jsonl")
fi
for r in $(seq "$rounds"); do
  echo "latency and connections, round $r of $rounds" >&2
  if has paced; then
    for t in direct passthrough; do
      run paced "$t" --duration 8 --rate "$paced_rate" --linger-ms 1 --e2e --produce-only
    done
  fi
  for n in 100 1000; do
    if has "conn$n"; then
      for t in direct passthrough; do
        run "conn$n" "$t" --connections "$n" --duration 8 --rate 20000 --linger-ms 1 --e2e --produce-only
      done
    fi
  done
done

mkdir -p bench/results
out="bench/results/run-$(date -u +%Y%m%d-%H%M).md"
python3 - "$work/results.jsonl" "$rounds" "$messages" "$(rustc --version)" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >"$out" <<'PY'
import json, os, platform, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds, n, rustc, commit = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
# fanout reads back twice: its consume figures are the second group's.
for r in rows:
    if r["target"] == "fanout" and r["phase"] in ("consume", "consume-2"):
        r["phase"] = {"consume": "consume-first", "consume-2": "consume"}[r["phase"]]

def med(scenario, target, phase, key):
    v = [r[key] for r in rows if r["scenario"] == scenario and r["target"] == target
         and r["phase"] == phase and key in r]
    return statistics.median(v) if v else None

def fmt(v, digits=1):
    return "–" if v is None else f"{v:,.{digits}f}"

def ratio(a, b):
    return "–" if a is None or b in (None, 0) else f"{a / b:.2f}×"

cpu = "unknown"
try:
    cpu = open("/proc/cpuinfo").read().split("model name", 1)[1].split("\n", 1)[0].split(":", 1)[1].strip()
except (OSError, IndexError):
    pass
mem = "unknown"
try:
    kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
    mem = f"{kb / 1024 / 1024:.0f} GiB"
except (OSError, StopIteration, ValueError):
    pass
print(f"# Gatehouse vs direct ({rounds} rounds, medians)\n")
if os.environ.get("GATEHOUSE_BENCH_PROXY_CPUS"):
    print(f"Every proxy pinned to CPU(s) {os.environ['GATEHOUSE_BENCH_PROXY_CPUS']} (taskset); "
          "client and broker run on any.\n")
print(f"Machine: {os.cpu_count()} cores ({cpu}), {mem} RAM, {platform.system()} {platform.release()}; "
      f"{rustc}; commit {commit}. Client (gatehouse-load, librdkafka), proxies and broker share "
      "the machine, on 127.0.0.1. Reproduce: `bench/run.sh " + f"{rounds} {n}`.\n")

targets = ["direct", "passthrough", "policy", "fields", "audit", "fields-audit", "fanout", "traced1", "traced100"]
present = [t for t in targets if med("throughput", t, "produce", "mb_per_s") is not None]
if present:
    print(f"## Throughput: {n:,} JSON posts of 1 KB, acks=all, 3 partitions, then read back\n")
    print("Saturated: as fast as one producer can send (batch.size 512 KiB, linger 5 ms), then one "
          "consumer reads everything from the start.\n")
    if "fanout" in present:
        print("fanout: the fields load, read back by a first and then a second consumer group of the "
              "same principal; its consume figures are the second group's, served from the view cache.\n")
    print("| metric | " + " | ".join(present) + " |")
    print("|---|" + "---|" * len(present))
    for phase, key, label, d in [
        ("produce", "mb_per_s", "produce MB/s", 1),
        ("produce", "msgs_per_s", "produce msg/s", 0),
        ("produce", "latency_ms_p99", "produce p99 ms (saturated)", 1),
        ("consume", "mb_per_s", "consume MB/s", 1),
        ("consume", "msgs_per_s", "consume msg/s", 0),
        ("produce", "proxy_peak_rss_mb", "peak RSS MB (produce)", 0),
        ("consume", "proxy_peak_rss_mb", "peak RSS MB (consume)", 0),
    ]:
        print(f"| {label} | " + " | ".join(fmt(med("throughput", t, phase, key), d) for t in present) + " |")
    # Proxy CPU per MB carried: the median over runs of each run's CPU
    # seconds over the MB it moved, per phase.
    def cpu_per_mb(t, phase):
        v = [r["proxy_cpu_s"] * 1000 / (r["mb_per_s"] * r["seconds"]) for r in rows
             if r["scenario"] == "throughput" and r["target"] == t and r["phase"] == phase
             and "proxy_cpu_s" in r and r["mb_per_s"] > 0]
        return statistics.median(v) if v and t != "direct" else None
    for phase in ("produce", "consume"):
        cells = []
        for t in present:
            ms = cpu_per_mb(t, phase)
            cells.append("–" if not ms else f"{ms:.2f} ms/MB ≈ {1000 / ms:,.0f} MB/s per core")
        print(f"| proxy CPU per MB, {phase} | " + " | ".join(cells) + " |")
    print()
    print("Ratios (same run):\n")
    print("| ratio | produce MB/s | consume MB/s |")
    print("|---|---|---|")
    for a, b, label in [
        ("passthrough", "direct", "passthrough / direct"),
        ("policy", "passthrough", "policy / passthrough"),
        ("fields", "passthrough", "fields / passthrough"),
        ("audit", "policy", "audit on / audit off (policy)"),
        ("fields-audit", "fields", "audit on / audit off (fields)"),
        ("fanout", "fields", "fanout (consume: second group, view cache) / fields"),
        ("traced1", "policy", "traces 1 % / off (policy)"),
        ("traced100", "policy", "traces 100 % / off (policy)"),
    ]:
        if a in present and b in present:
            print(f"| {label} | " + " | ".join(
                ratio(med("throughput", a, p, "mb_per_s"), med("throughput", b, p, "mb_per_s"))
                for p in ("produce", "consume")) + " |")
    print()

if any(r["scenario"] == "paced" for r in rows):
    rate = next(r["rate"] for r in rows if r["scenario"] == "paced")
    print(f"## Latency at half of direct saturation: {rate:,} msg/s of 1 KB posts, 8 s, linger 1 ms, "
          "a consumer tailing the topic\n")
    print("| metric | direct | passthrough | added by the proxy |")
    print("|---|---|---|---|")
    for key, label in [
        ("msgs_per_s", "msg/s achieved"),
        ("latency_ms_p50", "produce p50 ms"), ("latency_ms_p99", "produce p99 ms"),
        ("latency_ms_p999", "produce p99.9 ms"), ("e2e_ms_p50", "end-to-end p50 ms"),
        ("e2e_ms_p99", "end-to-end p99 ms"), ("e2e_ms_p999", "end-to-end p99.9 ms"),
    ]:
        d, p = med("paced", "direct", "produce", key), med("paced", "passthrough", "produce", key)
        added = "" if key == "msgs_per_s" or None in (d, p) else f"{p - d:+.2f}"
        print(f"| {label} | {fmt(d, 2)} | {fmt(p, 2)} | {added} |")
    print()

conns = [c for c in ("conn100", "conn1000") if any(r["scenario"] == c for r in rows)]
if conns:
    print("## Many connections: 20,000 msg/s of 1 KB posts from one librdkafka producer (linger 1 ms), "
          "a consumer tailing the topic, and 100 or 1,000 more client connections each producing "
          "a record a second (acks=1), 8 s\n")
    print("| metric | " + " | ".join(f"{c[4:]} direct | {c[4:]} passthrough" for c in conns) + " |")
    print("|---|" + "---|---|" * len(conns))
    for key, label, d in [
        ("msgs_per_s", "msg/s achieved (librdkafka)", 0), ("background_acked", "records acked on the extra connections", 0),
        ("latency_ms_p50", "produce p50 ms", 2), ("latency_ms_p99", "produce p99 ms", 2),
        ("latency_ms_p999", "produce p99.9 ms", 2), ("e2e_ms_p99", "end-to-end p99 ms", 2),
        ("proxy_cpu_s", "proxy CPU s (broker's for direct)", 2),
        ("proxy_peak_rss_mb", "peak RSS MB (broker's for direct)", 0),
    ]:
        cells = []
        for c in conns:
            cells += [fmt(med(c, "direct", "produce", key), d), fmt(med(c, "passthrough", "produce", key), d)]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
PY
cp "$work/results.jsonl" "${out%.md}.jsonl"
cat "$out"
echo "written to $out (raw figures per run: ${out%.md}.jsonl)" >&2
