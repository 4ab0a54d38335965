#!/usr/bin/env python3
"""Gatehouse e2e test client built on confluent-kafka (librdkafka).

Usage: confluent_client.py {produce,consume,metadata,create-topic,delete-topic} ...
Prints one JSON object on stdout; logs go to stderr. See README.md.
--option KEY=VALUE properties go verbatim into every client's configuration (after
the script's own settings, so they may override them).
"""
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from clientlib import (Failure, Tally, UsageError, auth_failed, check_token_file, jwt_claims,
                       log, option_dict, read_token, records_to_produce, run, token_expiry)

CLIENT_ID = "gatehouse-e2e-confluent"
AUTH_CODES = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED,
              KafkaError.UNSUPPORTED_SASL_MECHANISM, KafkaError.ILLEGAL_SASL_STATE}
# the shortest lifetime handed to librdkafka with a token whose "exp" has passed: librdkafka
# refuses expired tokens itself, but the broker is the one under test and must reject it
EXPIRED_TOKEN_LIFETIME = 10.0


def auth_failure(err):
    """(stage, detail) if the KafkaError is an authentication (SASL or TLS) failure, else None."""
    text = err.str()
    if err.code() in AUTH_CODES or "SASL authentication error" in text:
        return "sasl", text
    # a TLS alert from the broker (e.g. "tlsv13 alert certificate required" when it wants a
    # client certificate) arrives after the client's side of the handshake, as a _TRANSPORT error
    if err.code() == KafkaError._SSL or "SSL handshake failed" in text or "SSL alert number" in text:
        return "tls", text
    return None


def on_error(err):
    failed = auth_failure(err)
    if failed is not None:
        auth_failed(failed[1], stage=failed[0])  # exits; librdkafka itself would retry forever
    log(f"librdkafka error: {err}")


def oauth_cb_for(path):
    def oauth_cb(_config):
        # called by librdkafka whenever it needs a (new) token: re-read the file every time
        try:
            token = read_token(path)
        except Failure as e:
            auth_failed(str(e))
            raise
        expiry = token_expiry(token)
        if expiry <= time.time() + 1:
            log(f"token in {path} has expired; passing it on for the broker to reject")
            expiry = time.time() + EXPIRED_TOKEN_LIFETIME
        principal = str(jwt_claims(token).get("sub") or "gatehouse-e2e")
        return token, expiry, principal, {}
    return oauth_cb


def prepare(args):
    """Security settings from --oauth-token-file and --option (which wins), into args.security."""
    security = {}
    options = option_dict(args)
    if args.oauth_token_file:
        check_token_file(args.oauth_token_file)
        mechanism = options.get("sasl.mechanism", options.get("sasl.mechanisms", "OAUTHBEARER"))
        if mechanism.upper() != "OAUTHBEARER":
            raise UsageError(f"--oauth-token-file needs sasl.mechanism=OAUTHBEARER, not {mechanism}")
        security.update({
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER",
            "oauth_cb": oauth_cb_for(args.oauth_token_file),
        })
    security.update(options)
    args.security = security


def config(args, extra=None):
    conf = {
        "bootstrap.servers": args.bootstrap,
        "client.id": CLIENT_ID,
        "socket.timeout.ms": 10000,
        "topic.metadata.refresh.interval.ms": 5000,
        "metadata.max.age.ms": 15000,
        "error_cb": on_error,
    }
    conf.update(extra or {})
    conf.update(args.security)
    return conf


def new_client(cls, conf):
    """cls(conf); a configuration librdkafka rejects is a usage error (exit 2)."""
    try:
        return cls(conf)
    except KafkaException as e:
        if e.args and isinstance(e.args[0], KafkaError) and e.args[0].code() == KafkaError._INVALID_ARG:
            raise UsageError(f"invalid client configuration: {e.args[0].str()}") from e
        raise
    except (TypeError, ValueError) as e:
        raise UsageError(f"invalid client configuration: {e}") from e


def escaped_auth_error(exc):
    """For run(): an exception a handler raised that is an authentication failure."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return auth_failure(exc.args[0])
    return None


def produce(args):
    conf = config(args, {
        "acks": args.acks,
        "compression.type": args.compression,
        "enable.idempotence": args.idempotent,
        "message.timeout.ms": 30000,
        "linger.ms": 5,
        "message.max.bytes": max(1000000, args.size + 65536),
    })
    producer = new_client(Producer, conf)
    failures = []

    def on_delivery(err, msg):
        if err is not None:
            failures.append(f"partition {msg.partition()}: {err}")

    for key, value in records_to_produce(args):
        while True:
            try:
                producer.produce(args.topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: serve delivery reports, retry
                producer.poll(0.5)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise Failure(f"{remaining} records still undelivered after flush timeout")
    if failures:
        raise Failure(f"{len(failures)} deliveries failed, first: {failures[0]}")
    return {"produced": args.count}, 0


def consume(args):
    conf = config(args, {
        "group.id": args.group,
        "auto.offset.reset": args.offset_reset,
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 3000,
    })
    consumer = new_client(Consumer, conf)
    tally = Tally(dump=args.dump, values=args.values)
    try:
        consumer.subscribe([args.topic])
        deadline = time.monotonic() + args.timeout
        while tally.count < args.count and time.monotonic() < deadline:
            msgs = consumer.consume(num_messages=min(500, args.count - tally.count), timeout=1.0)
            got = False
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        raise KafkaException(err)
                    if err.code() != KafkaError._PARTITION_EOF:
                        log(f"consumer error (continuing): {err}")
                    continue
                tally.add(msg.key(), msg.value())
                got = True
            if got:
                try:
                    consumer.commit(asynchronous=False)
                except KafkaException as e:
                    if e.args[0].fatal():
                        raise
                    log(f"commit failed (continuing): {e}")
    finally:
        consumer.close()  # leaves the group
    if tally.count < args.count:
        log(f"timeout: consumed {tally.count} of {args.count} records in {args.timeout}s")
        return tally.result(), 1
    return tally.result(), 0


class Admin:
    """An AdminClient plus a thread serving its callbacks: its blocking calls (list_topics,
    futures) do not serve error_cb or oauth_cb, so without it an authentication failure
    would only surface as a timeout. Use as a context manager; it keeps the client
    referenced until its futures resolve (a garbage-collected AdminClient fails them with
    _DESTROY)."""

    def __init__(self, args):
        self.client = new_client(AdminClient, config(args))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="admin-poll", daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            self.client.poll(0.2)

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def metadata(args):
    with Admin(args) as client:
        md = client.list_topics(timeout=10)
    brokers = [{"id": b.id, "host": b.host, "port": b.port}
               for b in sorted(md.brokers.values(), key=lambda b: b.id)]
    topics = {name: len(t.partitions) for name, t in md.topics.items()}
    return {"brokers": brokers, "topics": topics}, 0


def create_topic(args):
    new = NewTopic(args.topic, num_partitions=args.partitions,
                   replication_factor=args.replication_factor)
    with Admin(args) as client:
        futures = client.create_topics([new], operation_timeout=10, request_timeout=15)
        futures[args.topic].result(timeout=20)
    return {"created": args.topic}, 0


def delete_topic(args):
    with Admin(args) as client:
        futures = client.delete_topics([args.topic], operation_timeout=10, request_timeout=15)
        futures[args.topic].result(timeout=20)
    return {"deleted": args.topic}, 0


if __name__ == "__main__":
    run("confluent_client", {
        "produce": produce,
        "consume": consume,
        "metadata": metadata,
        "create-topic": create_topic,
        "delete-topic": delete_topic,
    }, prepare=prepare, auth_error=escaped_auth_error)
