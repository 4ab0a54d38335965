#!/usr/bin/env bash
# The right to erasure at scale, with the release build of the demo: a
# thousand data subjects with a post, a profile and a support ticket each;
# then the time to erase one subject, and the time to erase N more asked all
# at once (every workflow done: keys destroyed, tombstones written, every
# governed topic read back), as `gatehouse erase` users see it.
#
#   bench/erasure.sh [subjects to erase at once, default 1000] [subjects in the world, default 2000]
#
# Prints one line per measurement; needs kcat and curl. Binds 127.0.0.1
# ports 29092 (proxy), 29192 (broker), 29180 (admin) and 29200+ (node
# listeners).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target}"
erase_n="${1:-1000}"
world_n="${2:-2000}"
cargo build --release -q -p gatehouse --bin gatehouse
bin="$CARGO_TARGET_DIR/release/gatehouse"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

"$bin" demo --data "$work/data" --port 29092 --broker-port 29192 --admin-port 29180 \
  >"$work/demo.log" 2>&1 &
for _ in $(seq 1 300); do
  grep -q 'Press Ctrl-C' "$work/demo.log" && break
  sleep 0.1
done
grep -q 'Press Ctrl-C' "$work/demo.log" || { cat "$work/demo.log"; exit 1; }
ingest="$work/data/clients/ingest.properties"
privacy="$work/data/clients/privacy.properties"
admin=http://127.0.0.1:29180

# The world: a post, a profile and a ticket per subject.
for i in $(seq 0 $((world_n - 1))); do
  s=$(printf 'u-%06d' "$i")
  printf '%s:{"id":"p-%d","author":{"id":"%s","email":"%s@example.com","handle":"@%s"},"text":"post %d"}\n' "$s" "$i" "$s" "$s" "$s" "$i" >>"$work/posts"
  printf '%s:{"email":"%s@example.com","phone":"+33 1 23 45 67 89","name":"Name %s","address":"1 rue de %s"}\n' "$s" "$s" "$s" "$s" >>"$work/profiles"
  printf '%s:{"id":"t-%d","customer":{"id":"%s","email":"%s@example.com"},"body":"my order %d is late"}\n' "$s" "$i" "$s" "$s" "$i" >>"$work/tickets"
done
for t in posts:social.posts profiles:social.profiles tickets:support.tickets; do
  kcat -b 127.0.0.1:29092 -F "$ingest" -t "${t#*:}" -P -K: -l "$work/${t%%:*}"
done
echo "world: $world_n subjects, $((3 * world_n)) records (posts, profiles, tickets)"

now() { date +%s.%N; }
done_count() {
  curl -s -u "privacy:$(sed -n 's/^sasl.password=//p' "$privacy")" "$admin/api/erasures" |
    python3 -c 'import json,sys; print(sum(1 for w in json.load(sys.stdin)["workflows"] if w["done"]))'
}

# One subject.
t0=$(now)
"$bin" erase --url "$admin" --properties "$privacy" --subject u-000000 --reason "bench: one" >/dev/null
until [ "$(done_count)" -ge 1 ]; do sleep 0.05; done
t1=$(now)
echo "erase 1 subject: $(python3 -c "print(f'{$t1 - $t0:.2f}')") s until its workflow is done"
"$bin" erase status --url "$admin" --properties "$privacy" u-000000 | sed 's/^/  /'

# N subjects asked at once (32 requests in flight).
seq 1 "$erase_n" | awk '{printf "u-%06d\n", $1}' >"$work/erase"
t0=$(now)
xargs -P 32 -I{} "$bin" erase --url "$admin" --properties "$privacy" --subject {} \
  --reason "bench: many" <"$work/erase" >/dev/null
t1=$(now)
until [ "$(done_count)" -ge $((erase_n + 1)) ]; do sleep 0.2; done
t2=$(now)
echo "erase $erase_n subjects at once: requests recorded after $(python3 -c "print(f'{$t1 - $t0:.2f}')") s, every workflow done after $(python3 -c "print(f'{$t2 - $t0:.2f}')") s"
"$bin" erase status --url "$admin" --properties "$privacy" "$(printf 'u-%06d' "$erase_n")" | sed 's/^/  /'
