"""Shared command line and payload helpers for the Python test clients.

Both confluent_client.py and kafka_python_client.py import this module (it sits
beside them, so `python3 tests/clients/<script>.py` finds it). kafkajs_client.mjs
mirrors the same interface in JavaScript.
"""
import argparse
import json
import sys
import traceback

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
EXIT_FAIL = 1
EXIT_UNSUPPORTED = 3


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def emit(obj):
    """Print the single JSON result object on stdout."""
    print(json.dumps(obj, separators=(",", ":")), flush=True)


class Failure(Exception):
    """An expected failure: message goes to stderr, exit code 1."""


def parse_args(prog):
    p = argparse.ArgumentParser(prog=prog, description="Kafka client for Gatehouse e2e tests")
    sub = p.add_subparsers(dest="cmd", required=True)

    pr = sub.add_parser("produce")
    pr.add_argument("--bootstrap", required=True)
    pr.add_argument("--topic", required=True)
    pr.add_argument("--count", type=int, required=True)
    pr.add_argument("--start", type=int, default=0)
    pr.add_argument("--compression", choices=CODECS, default="none")
    pr.add_argument("--size", type=int, default=100)
    pr.add_argument("--idempotent", action="store_true")
    pr.add_argument("--acks", choices=["all", "1", "0"], default="all")

    co = sub.add_parser("consume")
    co.add_argument("--bootstrap", required=True)
    co.add_argument("--topic", required=True)
    co.add_argument("--group", required=True)
    co.add_argument("--count", type=int, required=True)
    co.add_argument("--timeout", type=float, default=60.0)
    co.add_argument("--from", dest="offset_reset", choices=["earliest", "latest"], default="earliest")

    md = sub.add_parser("metadata")
    md.add_argument("--bootstrap", required=True)

    ct = sub.add_parser("create-topic")
    ct.add_argument("--bootstrap", required=True)
    ct.add_argument("--topic", required=True)
    ct.add_argument("--partitions", type=int, required=True)
    ct.add_argument("--replication-factor", type=int, default=1)

    dt = sub.add_parser("delete-topic")
    dt.add_argument("--bootstrap", required=True)
    dt.add_argument("--topic", required=True)
    return p.parse_args()


def record(i, size):
    """(key, value) bytes for record i; the value is JSON about `size` bytes long."""
    base = len(json.dumps({"i": i, "pad": ""}, separators=(",", ":")))
    value = json.dumps({"i": i, "pad": "x" * max(0, size - base)}, separators=(",", ":"))
    return f"key-{i}".encode(), value.encode()


class Tally:
    """Collects consumed records and checks their keys."""

    def __init__(self):
        self.count = 0
        self.ids = []
        self.keys_ok = True

    def add(self, key, value):
        self.count += 1
        try:
            i = int(json.loads(value.decode())["i"])
        except Exception as e:  # noqa: BLE001 - any malformed record is reported
            log(f"malformed record value {value[:80]!r}: {e}")
            self.keys_ok = False
            return
        self.ids.append(i)
        if key is None or key != f"key-{i}".encode():
            log(f"key mismatch for i={i}: {key!r}")
            self.keys_ok = False

    def result(self):
        return {"consumed": self.count, "ids": sorted(self.ids), "keys_ok": self.keys_ok}


def run(prog, handlers):
    """Parse args, dispatch to handlers[cmd](args) -> (result_dict, exit_code)."""
    args = parse_args(prog)
    try:
        result, code = handlers[args.cmd](args)
    except Failure as e:
        log(f"{prog}: {args.cmd} failed: {e}")
        sys.exit(EXIT_FAIL)
    except Exception as e:  # noqa: BLE001 - report anything unexpected clearly
        traceback.print_exc(file=sys.stderr)
        log(f"{prog}: {args.cmd} failed: {type(e).__name__}: {e}")
        sys.exit(EXIT_FAIL)
    emit(result)
    sys.exit(code)
