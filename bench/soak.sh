#!/usr/bin/env bash
# A soak run (not in CI): mixed governed load through the proxy for a set
# time, with a fault injected every few minutes, then a read-back of what
# the cluster holds. Writes a markdown report to bench/results/soak-<time>.md.
#
#   bench/soak.sh [minutes] [fault-interval-seconds]     (default 60 and 180)
#   GATEHOUSE_SOAK_AUDIT=off bench/soak.sh ...           (the proxy without audit)
#   GATEHOUSE_SOAK_WRAP="heaptrack -o /tmp/heap" bench/soak.sh ...
#                                    (the proxy run under a profiler)
#
# The load (Python, confluent-kafka): an idempotent acks=all producer writes
# JSON posts with five personal fields (each a unique id) to a protected
# topic through the governed proxy at GATEHOUSE_SOAK_RATE msg/s (default
# 500), and a consumer as another principal reads them back through the
# proxy all along. The faults, in turn: the broker SIGKILLed and restarted;
# the proxy SIGKILLed and restarted on its ports; the broker stopped
# (SIGSTOP) for 15 s, an upstream that stalls. At the end every record the
# cluster holds is read from the broker itself: lost = acknowledged but not
# stored, duplicated = stored more than once. Memory (RSS) of the proxy and
# the broker is sampled every 10 s.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target}"
minutes="${1:-60}"
interval="${2:-180}"
rate="${GATEHOUSE_SOAK_RATE:-500}"
cargo build --release -q -p gatehouse --bin gatehouse
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; kill -CONT "${broker_pid:-0}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
# A copy: a build during the soak does not change what restarts run.
cp "$CARGO_TARGET_DIR/release/gatehouse" "$work/gatehouse"
# The commit the binary was built from (the report is written an hour later).
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+changes')"
bin="$work/gatehouse"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
broker_port=$(port); proxy_port=$(port); node_base=$(port)

# The shipped policies, plus a `soak` team that writes and reads soak.* with
# every field in clear; soak.posts is protected like social.posts.
mkdir -p "$work/policies"
cp policies/default/*.cedar policies/default/catalog.toml "$work/policies/"
cat >>"$work/policies/catalog.toml" <<'TOML'

[[topic]]
name = "soak.posts"
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
cat >"$work/policies/soak.cedar" <<'CEDAR'
@id("soak-topics")
permit (
  principal,
  action in [Gatehouse::Action::"produce", Gatehouse::Action::"consume",
             Gatehouse::Action::"describe", Gatehouse::Action::"create_topic",
             Gatehouse::Action::"produce_record", Gatehouse::Action::"consume_record"],
  resource is Gatehouse::Topic
)
when { principal.team == "soak" && resource.name like "soak.*" };

@id("soak-fields-clear")
permit (principal, action == Gatehouse::Action::"read_clear", resource is Gatehouse::Field)
when { principal.team == "soak" && resource.topic.name like "soak.*" };

@id("soak-idempotent")
permit (principal, action == Gatehouse::Action::"idempotent_write", resource is Gatehouse::Cluster)
when { principal.team == "soak" };

@id("soak-groups")
permit (principal, action, resource is Gatehouse::Group)
when { principal.team == "soak" };
CEDAR
"$bin" policy validate "$work/policies" >/dev/null
for who in soak-writer soak-reader; do
  GATEHOUSE_SOAK_PW=soak-pw "$bin" users add --file "$work/users.toml" --name "$who" \
    --password-env GATEHOUSE_SOAK_PW --attr team=soak --attr region=eu --list-attr purposes=soak >/dev/null
done
cat >"$work/proxy.toml" <<TOML
[listener]
bind = "127.0.0.1:$proxy_port"
node_port_base = $node_base
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
# GATEHOUSE_SOAK_AUDIT=off runs the proxy without its audit trail (to tell
# the audit log's share of the proxy's memory).
if [ "${GATEHOUSE_SOAK_AUDIT:-on}" != off ]; then
  printf '[audit]\ndir = "%s/audit"\nreplica_id = "soak"\n' "$work" >>"$work/proxy.toml"
fi

start_broker() {
  "$bin" broker --listen "127.0.0.1:$broker_port" --data "$work/data" --auto-create-topics \
    --default-partitions 3 >>"$work/broker.log" 2>&1 &
  broker_pid=$!
}
start_proxy() {
  # shellcheck disable=SC2086 # the wrapper is a command and its words
  ${GATEHOUSE_SOAK_WRAP:-} "$bin" serve --config "$work/proxy.toml" >>"$work/proxy.log" 2>&1 &
  proxy_pid=$!
}
wait_port() { for _ in $(seq 300); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
start_broker; wait_port "$broker_port"
start_proxy; wait_port "$proxy_port"
echo "soak: $minutes min, a fault every $interval s, $rate msg/s; broker $broker_pid, proxy $proxy_pid" >&2

# Memory samples: seconds, proxy RSS MB, broker RSS MB.
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "-"; }
(
  start=$(date +%s)
  while true; do
    echo "$(( $(date +%s) - start )) $(rss "$(pgrep -f "serve --config $work/proxy.toml" | head -1)") $(rss "$(pgrep -f "broker --listen 127.0.0.1:$broker_port" | head -1)")"
    sleep 10
  done
) >"$work/memory.txt" &

# The load.
python3 - "$proxy_port" "$broker_port" "$((minutes * 60))" "$rate" "$work" >"$work/load.json" 2>"$work/load.log" <<'PY' &
import json, sys, threading, time
from confluent_kafka import Consumer, Producer, TopicPartition
proxy, broker, seconds, rate, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
sasl = lambda who: {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
                    "sasl.username": who, "sasl.password": "soak-pw"}
acked, failed, errors = set(), 0, []
lock = threading.Lock()
def done(err, msg):
    global failed
    with lock:
        if err is None:
            acked.add(msg.key().decode() + "/" + json.loads(msg.value())["id"])
        else:
            failed += 1
            errors.append(str(err))
p = Producer({"bootstrap.servers": f"127.0.0.1:{proxy}", "enable.idempotence": True, "acks": "all",
              "message.timeout.ms": 300000, "linger.ms": 5, **sasl("soak-writer")})
stop = threading.Event()
read = [0]
def reader():
    c = Consumer({"bootstrap.servers": f"127.0.0.1:{proxy}", "group.id": "soak-readers",
                  "auto.offset.reset": "earliest", **sasl("soak-reader")})
    c.subscribe(["soak.posts"])
    while not stop.is_set():
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            read[0] += 1
    c.close()
t = threading.Thread(target=reader, daemon=True); t.start()
start, i = time.time(), 0
while time.time() - start < seconds:
    subject = f"u-{i % 5000:06d}"
    post = {"id": f"p-{i}", "author": {"id": subject, "email": f"{subject}@example.com",
            "name": f"Name {subject}", "handle": f"@{subject}", "ip": "203.0.113.7"},
            "geo": {"lat": 48.85, "lon": 2.35}, "text": "soak " * 20}
    while True:
        try:
            p.produce("soak.posts", key=subject, value=json.dumps(post), on_delivery=done)
            break
        except BufferError:
            p.poll(0.1)
    i += 1
    p.poll(0)
    ahead = i / rate - (time.time() - start)
    if ahead > 0:
        time.sleep(ahead)
p.flush(300)
stop.set(); t.join(30)
# Everything the cluster holds, read from the broker itself.
c = Consumer({"bootstrap.servers": f"127.0.0.1:{broker}", "group.id": "soak-check",
              "auto.offset.reset": "earliest", "enable.partition.eof": True})
parts = [TopicPartition("soak.posts", n, 0) for n in range(3)]
c.assign(parts)
stored, eof = {}, set()
while len(eof) < 3:
    m = c.poll(5)
    if m is None:
        break
    if m.error():
        if m.error().code() == -191:
            eof.add(m.partition())
        continue
    k = m.key().decode() + "/" + json.loads(m.value())["id"]
    stored[k] = stored.get(k, 0) + 1
c.close()
lost = len(acked - set(stored))
dup = sum(1 for n in stored.values() if n > 1)
print(json.dumps({"produced": i, "acknowledged": len(acked), "failed": failed, "stored": len(stored),
                  "lost": lost, "duplicated": dup, "read_through_proxy": read[0],
                  "first_errors": errors[:5]}))
PY
load_pid=$!

# The faults.
faults=()
n=0
deadline=$(( $(date +%s) + minutes * 60 ))
while [ "$(date +%s)" -lt $(( deadline - interval / 2 )) ]; do
  sleep "$interval"
  kill -0 "$load_pid" 2>/dev/null || break
  t0=$(date +%s.%N)
  case $(( n % 3 )) in
    0) kill -9 "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; start_broker; wait_port "$broker_port"
       faults+=("broker SIGKILLed and restarted at $(date -u +%T)") ;;
    1) kill -9 "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true; start_proxy; wait_port "$proxy_port"
       faults+=("proxy SIGKILLed and restarted at $(date -u +%T)") ;;
    2) kill -STOP "$broker_pid"; sleep 15; kill -CONT "$broker_pid"
       faults+=("broker stopped 15 s (upstream stall) at $(date -u +%T)") ;;
  esac
  echo "fault $((n + 1)): ${faults[-1]} ($(python3 -c "import time; print(round(time.time() - $t0, 1))") s)" >&2
  n=$((n + 1))
done
wait "$load_pid" || { echo "the load failed:" >&2; tail -20 "$work/load.log" >&2; exit 1; }

mkdir -p bench/results
out="bench/results/soak-$(date -u +%Y%m%d-%H%M).md"
python3 - "$work/load.json" "$work/memory.txt" "$minutes" "$interval" "$rate" \
  "$commit" "${faults[@]}" >"$out" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
mem = [l.split() for l in open(sys.argv[2]) if len(l.split()) == 3]
minutes, interval, rate, commit, faults = sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7:]
def col(i):
    v = [float(m[i]) for m in mem if m[i] != "-"]
    return (min(v), max(v), v[-1]) if v else ("-", "-", "-")
print(f"# Soak: {minutes} min of governed load, a fault every {interval} s\n")
print(f"Commit {commit}. `bench/soak.sh {minutes} {interval}`, {rate} msg/s of JSON posts with five "
      "protected fields, idempotent acks=all through the governed proxy (SASL, Cedar, field "
      "encryption, audit), a consumer reading through the proxy all along.\n")
print("| figure | value |\n|---|---|")
for k in ["produced", "acknowledged", "failed", "stored", "lost", "duplicated", "read_through_proxy"]:
    print(f"| {k.replace('_', ' ')} | {r[k]:,} |")
pmin, pmax, plast = col(1); bmin, bmax, blast = col(2)
print(f"| proxy RSS MB (min / max / last) | {pmin} / {pmax} / {plast} |")
print(f"| broker RSS MB (min / max / last) | {bmin} / {bmax} / {blast} |")
print("\nFaults:\n")
for f in faults:
    print(f"- {f}")
if r["first_errors"]:
    print("\nFirst delivery errors: " + "; ".join(r["first_errors"]))
print("\nMemory every 10 s (s, proxy MB, broker MB): " + ", ".join(f"{m[0]}: {m[1]}/{m[2]}" for m in mem))
PY
cat "$out"
echo "written to $out" >&2
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(1 if r["lost"] or r["duplicated"] else 0)' "$work/load.json"
