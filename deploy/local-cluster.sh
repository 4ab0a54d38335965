#!/usr/bin/env bash
# A Gatehouse cluster on one machine, over an S3-compatible server (moto's,
# with create-only writes made atomic: deploy/s3/serial_moto.py):
#
#   deploy/local-cluster.sh            three brokers (`gatehouse broker`, each
#                                      its own process) sharing one bucket
#   deploy/local-cluster.sh demo       the demo world: `gatehouse demo` with
#                                      three brokers on the bucket and the
#                                      proxy in front (in the foreground)
#   deploy/local-cluster.sh stop       stop everything
#
# Data and logs go under $GATEHOUSE_CLUSTER_DIR (default .gatehouse-cluster).
# Brokers listen on 19092-19094, the S3 server on 19000. Try, once it runs:
#
#   kcat -b 127.0.0.1:19092 -L                        three brokers, leaders spread
#   kill -9 "$(cat .gatehouse-cluster/broker-1.pid)"  partitions move within ~12 s
#   deploy/local-cluster.sh restart-broker 1          it joins again, takes a share
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
dir="${GATEHOUSE_CLUSTER_DIR:-$root/.gatehouse-cluster}"
s3_port=19000
bucket=gatehouse
lease_ms="${GATEHOUSE_LEASE_MS:-10000}"
bin="${GATEHOUSE_BIN:-$root/target/release/gatehouse}"

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

stop() {
    for f in "$dir"/*.pid; do
        [ -e "$f" ] || continue
        kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
}

broker() {
    local n="$1"
    "$bin" broker --node-id "$n" --listen "127.0.0.1:$((19092 + n))" \
        --data "s3://$bucket/cluster" \
        --store-option "aws_endpoint=http://127.0.0.1:$s3_port" \
        --store-option aws_allow_http=true \
        --lease-ms "$lease_ms" --auto-create-topics --default-partitions 6 \
        >>"$dir/broker-$n.log" 2>&1 &
    echo $! >"$dir/broker-$n.pid"
}

case "${1:-start}" in
stop)
    stop
    echo "stopped"
    exit 0
    ;;
restart-broker)
    n="${2:?which broker}"
    broker "$n"
    echo "broker $n started again (log: $dir/broker-$n.log)"
    exit 0
    ;;
start | demo) ;;
*)
    echo "usage: $0 [start|stop|restart-broker N]" >&2
    exit 2
    ;;
esac

mkdir -p "$dir"
stop
if [ ! -x "$bin" ]; then
    (cd "$root" && cargo build --release -p gatehouse)
fi
python3 -c 'import moto.server' 2>/dev/null || python3 -m pip install --quiet 'moto[server]>=5'

python3 "$here/s3/serial_moto.py" -H 127.0.0.1 -p "$s3_port" >>"$dir/s3.log" 2>&1 &
echo $! >"$dir/s3.pid"
for _ in $(seq 1 100); do
    if curl -sf -X PUT "http://127.0.0.1:$s3_port/$bucket" >/dev/null; then break; fi
    sleep 0.1
done

if [ "${1:-start}" = demo ]; then
    trap stop EXIT
    "$bin" demo --brokers 3 --data "$dir/demo" --store "s3://$bucket/demo" \
        --store-option "aws_endpoint=http://127.0.0.1:$s3_port" \
        --store-option aws_allow_http=true
    exit 0
fi

for n in 0 1 2; do broker "$n"; done

cat <<INFO
Gatehouse cluster running (data and logs in $dir):
  S3-compatible server   http://127.0.0.1:$s3_port   bucket $bucket
  broker 0, 1, 2         127.0.0.1:19092, 19093, 19094   (lease ${lease_ms} ms)

Put the proxy in front with a config whose [upstream] lists the three
brokers (deploy/README.md); or run the demo world on three brokers over the
same S3 server: $0 demo

Stop with: $0 stop
INFO
