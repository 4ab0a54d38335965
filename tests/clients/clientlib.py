"""Shared command line and payload helpers for the Python test clients.

Both confluent_client.py and kafka_python_client.py import this module (it sits
beside them, so `python3 tests/clients/<script>.py` finds it). kafkajs_client.mjs
mirrors the same interface in JavaScript. Each script turns the common security flags
(--option KEY=VALUE with librdkafka property names, --oauth-token-file) into its own
library's configuration; the token file and JWT helpers and the fail-fast exit on an
authentication failure live here.
"""
import argparse
import base64
import json
import os
import sys
import threading
import time
import traceback

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_UNSUPPORTED = 3


def log(*args):
    print(*args, file=sys.stderr, flush=True)


_emit_lock = threading.Lock()
_emitted = False


def emit(obj):
    """Print the single JSON result object on stdout (at most once per process)."""
    global _emitted
    with _emit_lock:
        if _emitted:
            return False
        _emitted = True
        print(json.dumps(obj, separators=(",", ":")), flush=True)
        return True


class Failure(Exception):
    """An expected failure: message goes to stderr, exit code 1."""


class UsageError(Exception):
    """A bad command line (e.g. an unsupported --option): message goes to stderr, exit code 2."""


def auth_failed(detail, stage="sasl"):
    """Authentication failed (stage "sasl", or "tls" for a failed TLS handshake): print
    {"error": "authentication", "stage": ..., "detail": ...} and exit 1 immediately.

    Callable from any thread, including a client library's I/O thread or callback: it does
    not unwind through the library (which would keep retrying until its own timeouts) but
    ends the process with os._exit, so nothing can hang on the way out."""
    log(f"authentication failed ({stage}): {detail}")
    if not emit({"error": "authentication", "stage": stage, "detail": str(detail)}):
        return  # the result is already out and the main thread is exiting with its code
    sys.stderr.flush()
    os._exit(EXIT_FAIL)


def key_value(text):
    """argparse type of --option: "KEY=VALUE" -> (key, value); the value may contain '='."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def common_args():
    """Flags every subcommand takes: the broker address and the security options."""
    c = argparse.ArgumentParser(add_help=False)
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--option", dest="options", metavar="KEY=VALUE", type=key_value,
                   action="append", default=[],
                   help="client configuration property, librdkafka name (repeatable)")
    c.add_argument("--oauth-token-file", metavar="PATH",
                   help="SASL/OAUTHBEARER with the JWT in PATH, re-read for every token request")
    return c


def parse_args(prog):
    p = argparse.ArgumentParser(prog=prog, description="Kafka client for Gatehouse e2e tests")
    sub = p.add_subparsers(dest="cmd", required=True)
    common = common_args()

    pr = sub.add_parser("produce", parents=[common])
    pr.add_argument("--topic", required=True)
    pr.add_argument("--count", type=int,
                    help="required unless --records gives the records")
    pr.add_argument("--start", type=int, default=0)
    pr.add_argument("--compression", choices=CODECS, default="none")
    pr.add_argument("--size", type=int, default=100)
    pr.add_argument("--idempotent", action="store_true")
    pr.add_argument("--acks", choices=["all", "1", "0"], default="all")
    pr.add_argument("--records", metavar="FILE",
                    help='produce the records in FILE (JSON Lines of {"key": text|null, '
                         '"value": text|null}) instead of generated ones')

    co = sub.add_parser("consume", parents=[common])
    co.add_argument("--topic", required=True)
    co.add_argument("--group", required=True)
    co.add_argument("--count", type=int, required=True)
    co.add_argument("--timeout", type=float, default=60.0)
    co.add_argument("--from", dest="offset_reset", choices=["earliest", "latest"], default="earliest")
    shown = co.add_mutually_exclusive_group()
    shown.add_argument("--dump", action="store_true",
                       help="return every record as [key, value] (UTF-8 text) instead of checking them")
    shown.add_argument("--values", action="store_true",
                       help='return every record as {"key": ..., "value": ...} (UTF-8 text) '
                            "instead of checking them")

    sub.add_parser("metadata", parents=[common])

    ct = sub.add_parser("create-topic", parents=[common])
    ct.add_argument("--topic", required=True)
    ct.add_argument("--partitions", type=int, required=True)
    ct.add_argument("--replication-factor", type=int, default=1)

    dt = sub.add_parser("delete-topic", parents=[common])
    dt.add_argument("--topic", required=True)
    args = p.parse_args()
    if args.cmd == "produce":
        if args.records is not None:
            try:
                args.given = read_records(args.records)
            except (OSError, ValueError) as e:
                p.error(f"--records {args.records}: {e}")
            if args.count is not None and args.count != len(args.given):
                p.error(f"--count {args.count} but --records holds {len(args.given)} records")
            args.count = len(args.given)
        elif args.count is None:
            p.error("produce needs --count or --records")
        else:
            args.given = None
    return args


def read_records(path):
    """The (key, value) bytes of a --records file: one JSON object per non-empty line,
    {"key": text or null, "value": text or null}."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            if not isinstance(r, dict):
                raise ValueError(f"line {n} is not a JSON object")
            enc = lambda t: None if t is None else str(t).encode()
            out.append((enc(r.get("key")), enc(r.get("value"))))
    return out


def records_to_produce(args):
    """The (key, value) bytes `produce` sends: the --records file's, or generated ones."""
    if getattr(args, "given", None) is not None:
        return list(args.given)
    return [record(i, args.size) for i in range(args.start, args.start + args.count)]


def option_dict(args):
    """The --option pairs as a dict (a repeated key: the last one wins)."""
    return dict(args.options)


def read_token(path):
    """The JWT in the --oauth-token-file, read afresh (tests rotate the file)."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise Failure(f"cannot read --oauth-token-file {path}: {e}") from e
    if not token:
        raise Failure(f"--oauth-token-file {path} is empty")
    return token


def check_token_file(path):
    """Fail with a usage error (exit 2) unless the token file is readable now."""
    try:
        read_token(path)
    except Failure as e:
        raise UsageError(str(e)) from e


def jwt_claims(token):
    """The JWT's payload claims (base64url JSON, signature not checked); {} if not a JWT."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def token_expiry(token, default_lifetime=300.0):
    """The JWT's "exp" claim (seconds since the epoch), else now + default_lifetime."""
    exp = jwt_claims(token).get("exp")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool):
        return float(exp)
    return time.time() + default_lifetime


def record(i, size):
    """(key, value) bytes for record i; the value is JSON about `size` bytes long."""
    base = len(json.dumps({"i": i, "pad": ""}, separators=(",", ":")))
    value = json.dumps({"i": i, "pad": "x" * max(0, size - base)}, separators=(",", ":"))
    return f"key-{i}".encode(), value.encode()


class Tally:
    """Collects consumed records and checks their keys."""

    def __init__(self, dump=False, values=False):
        self.count = 0
        self.ids = []
        self.keys_ok = True
        self.dump = [] if dump or values else None
        self.as_objects = values

    def add(self, key, value):
        self.count += 1
        if self.dump is not None:
            text = lambda b: None if b is None else b.decode("utf-8", "replace")
            if self.as_objects:
                self.dump.append({"key": text(key), "value": text(value)})
            else:
                self.dump.append([text(key), text(value)])
            return
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
        out = {"consumed": self.count, "ids": sorted(self.ids), "keys_ok": self.keys_ok}
        if self.dump is not None:
            out["records"] = self.dump
        return out


def run(prog, handlers, prepare=None, auth_error=None):
    """Parse args, call prepare(args) (may raise UsageError), then dispatch to
    handlers[cmd](args) -> (result_dict, exit_code). auth_error(exc) -> (stage, detail) or
    None classifies an exception that escaped a handler as an authentication failure."""
    args = parse_args(prog)
    try:
        if prepare is not None:
            prepare(args)
        result, code = handlers[args.cmd](args)
    except UsageError as e:
        log(f"{prog}: usage error: {e}")
        sys.exit(EXIT_USAGE)
    except Exception as e:  # noqa: BLE001 - authentication failures first
        failed = auth_error(e) if auth_error is not None else None
        if failed is not None:
            auth_failed(failed[1], stage=failed[0])
        if isinstance(e, Failure):
            log(f"{prog}: {args.cmd} failed: {e}")
            sys.exit(EXIT_FAIL)
        traceback.print_exc(file=sys.stderr)
        log(f"{prog}: {args.cmd} failed: {type(e).__name__}: {e}")
        sys.exit(EXIT_FAIL)
    emit(result)
    sys.exit(code)
