#!/usr/bin/env python3
"""Gatehouse e2e test client built on confluent-kafka (librdkafka).

Usage: confluent_client.py {produce,consume,metadata,create-topic,delete-topic} ...
Prints one JSON object on stdout; logs go to stderr. See README.md.
"""
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from clientlib import Failure, Tally, log, record, run

CLIENT_ID = "gatehouse-e2e-confluent"


def base_config(args):
    return {
        "bootstrap.servers": args.bootstrap,
        "client.id": CLIENT_ID,
        "socket.timeout.ms": 10000,
        "topic.metadata.refresh.interval.ms": 5000,
        "metadata.max.age.ms": 15000,
        "error_cb": lambda err: log(f"librdkafka error: {err}"),
    }


def produce(args):
    conf = base_config(args)
    conf.update({
        "acks": args.acks,
        "compression.type": args.compression,
        "enable.idempotence": args.idempotent,
        "message.timeout.ms": 30000,
        "linger.ms": 5,
        "message.max.bytes": max(1000000, args.size + 65536),
    })
    producer = Producer(conf)
    failures = []

    def on_delivery(err, msg):
        if err is not None:
            failures.append(f"partition {msg.partition()}: {err}")

    for i in range(args.start, args.start + args.count):
        key, value = record(i, args.size)
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
    conf = base_config(args)
    conf.update({
        "group.id": args.group,
        "auto.offset.reset": args.offset_reset,
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 3000,
    })
    consumer = Consumer(conf)
    tally = Tally()
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


def admin(args):
    # callers must keep the client referenced until its futures resolve:
    # a garbage-collected AdminClient fails them with _DESTROY
    return AdminClient(base_config(args))


def metadata(args):
    md = admin(args).list_topics(timeout=10)
    brokers = [{"id": b.id, "host": b.host, "port": b.port}
               for b in sorted(md.brokers.values(), key=lambda b: b.id)]
    topics = {name: len(t.partitions) for name, t in md.topics.items()}
    return {"brokers": brokers, "topics": topics}, 0


def create_topic(args):
    new = NewTopic(args.topic, num_partitions=args.partitions,
                   replication_factor=args.replication_factor)
    client = admin(args)
    futures = client.create_topics([new], operation_timeout=10, request_timeout=15)
    futures[args.topic].result(timeout=20)
    return {"created": args.topic}, 0


def delete_topic(args):
    client = admin(args)
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
    })
