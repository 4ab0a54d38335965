#!/usr/bin/env bash
# Field protection and audit end to end: the same librdkafka load of 1 KB
# JSON posts (five personal fields each) straight to the broker, and through
# Gatehouse proxies with policies and keys on: to a topic it passes through,
# to a topic whose fields it protects, and to the pass-through topic via a
# second proxy that also writes the audit trail; alternating, several
# rounds, in one go.
# Writes a markdown table of medians and ratios to bench/results/.
# Everything binds to 127.0.0.1.
#
#   bench/governance-load.sh [rounds] [messages]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target}"
rounds="${1:-3}"
messages="${2:-100000}"
cargo build --release -q -p gatehouse -p gatehouse-tests --bin gatehouse --bin gatehouse-load
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
broker_port=$(port); proxy_port=$(port); audit_port=$(port)

# Policies: the shipped set, plus a `bench` team that may write and read
# bench.* topics with every field in clear; the catalog gains bench.fields-*
# (the posts' five fields protected) while bench.plain-* stays ungoverned.
mkdir -p "$work/policies"
cp policies/default/*.cedar policies/default/catalog.toml "$work/policies/"
cat >>"$work/policies/catalog.toml" <<'TOML'

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
cat >"$work/proxy.toml" <<TOML
[listener]
bind = "127.0.0.1:$proxy_port"
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
"$bin/gatehouse" serve --config "$work/proxy.toml" >"$work/proxy.log" 2>&1 &
proxy_pid=$!
# The audited proxy: the same, plus [audit], with state of its own.
sed -e "s/127.0.0.1:$proxy_port/127.0.0.1:$audit_port/" -e "s#$work/state#$work/state-audit#" \
    -e "s#$work/keys-state#$work/keys-state-audit#" "$work/proxy.toml" >"$work/audit.toml"
cat >>"$work/audit.toml" <<TOML
[audit]
dir = "$work/audit"
replica_id = "bench"
TOML
"$bin/gatehouse" serve --config "$work/audit.toml" >"$work/audit.log" 2>&1 &
audit_pid=$!
for p in $broker_port $proxy_port $audit_port; do
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
sasl=(--option security.protocol=SASL_PLAINTEXT --option sasl.mechanisms=PLAIN
      --option sasl.username=bench --option sasl.password=bench-pw)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # scenario
  # Every scenario uses the same batch size, below the broker's 1 MiB
  # limit (the proxy compresses an encrypted batch that outgrows it).
  local name=$1 addr="127.0.0.1:$proxy_port" topic args=("${sasl[@]}" --option batch.size=524288)
  case $name in
    direct) addr="127.0.0.1:$broker_port"; topic="bench.plain-direct-$RANDOM"; args=(--option batch.size=524288) ;;
    passthrough) topic="bench.plain-$RANDOM" ;;
    fields) topic="bench.fields-$RANDOM" ;;
    audit) addr="127.0.0.1:$audit_port"; topic="bench.plain-$RANDOM" ;;
    fields-audit) addr="127.0.0.1:$audit_port"; topic="bench.fields-$RANDOM" ;;
  esac
  local pid=$proxy_pid
  case $name in audit|fields-audit) pid=$audit_pid ;; esac
  local before; before=$(cpu_ticks "$pid")
  "$bin/gatehouse-load" --bootstrap "$addr" --topic "$topic" --values posts --size 1024 \
    --messages "$messages" "${args[@]}" >"$work/out.jsonl"
  local ticks=$(( $(cpu_ticks "$pid") - before ))
  python3 -c 'import json,sys
for l in sys.stdin:
    print(json.dumps(dict(json.loads(l), scenario=sys.argv[1], proxy_cpu_ticks=int(sys.argv[2]))))' \
    "$name" "$ticks" <"$work/out.jsonl" >>"$work/results.jsonl"
}
for r in $(seq "$rounds"); do
  for s in direct passthrough fields audit fields-audit; do run "$s"; done
done

mkdir -p bench/results
out="bench/results/fields-audit-vs-passthrough-$(date -u +%Y%m%d-%H%M).md"
python3 - "$work/results.jsonl" "$rounds" "$(getconf CLK_TCK)" "$messages" >"$out" <<'PY'
import json, statistics, sys, platform, os
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds, hz, n = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def med(sc, phase, key):
    v = [r[key] for r in rows if r["scenario"] == sc and r["phase"] == phase]
    return statistics.median(v) if v else None
cpu = open("/proc/cpuinfo").read().split("model name", 1)[1].split("\n", 1)[0].split(":", 1)[1].strip()
print(f"# Governance load: field protection and audit vs passthrough ({rounds} rounds, medians)\n")
print(f"Machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}.")
print(f"Load: gatehouse-load (librdkafka), {n:,} JSON posts of 1 KB with five personal fields, acks=all, "
      "3 partitions, then read back from the start. `passthrough`: through the proxy (SASL, policies on) "
      "to an ungoverned topic; `fields`: the same proxy to a topic whose five fields it encrypts on "
      "produce and decrypts on fetch (reader allowed `read_clear`); `audit on`: like passthrough, through a "
      "second proxy that also writes the audit trail (a durable event per produced and per delivered "
      "partition before the client is answered); `fields + audit`: the protected topic through that proxy. "
      "Client, proxies and broker share the machine.\n")
print("| metric | direct | passthrough | fields | audit on | fields + audit | fields/passthrough | audit/passthrough | fields+audit/fields | passthrough/direct |")
print("|---|---|---|---|---|---|---|---|---|---|")
for phase, key, label in [
    ("produce", "mb_per_s", "produce MB/s"),
    ("produce", "msgs_per_s", "produce msg/s"),
    ("produce", "latency_ms_p99", "produce p99 latency ms (saturated)"),
    ("consume", "mb_per_s", "consume MB/s"),
    ("consume", "msgs_per_s", "consume msg/s"),
]:
    d, p, f, a, fa = (med(sc, phase, key) for sc in ("direct", "passthrough", "fields", "audit", "fields-audit"))
    if None in (d, p, f, a, fa):
        continue
    print(f"| {label} | {d:,.1f} | {p:,.1f} | {f:,.1f} | {a:,.1f} | {fa:,.1f} | {f / p:.3f} | {a / p:.3f} | {fa / f:.3f} | {p / d:.3f} |")
for sc in ("passthrough", "fields", "audit", "fields-audit"):
    t = [r["proxy_cpu_ticks"] for r in rows if r["scenario"] == sc and r["phase"] == "produce"]
    if t:
        mb = 2 * n * 1024 / 1e6
        per = statistics.median(t) / hz / mb
        print(f"\nProxy CPU, {sc}: {per * 1000:.2f} ms per MB carried (produce + consume), "
              f"≈ {1 / per:,.0f} MB/s per fully used core.")
PY
cat "$out"
echo "written to $out" >&2
