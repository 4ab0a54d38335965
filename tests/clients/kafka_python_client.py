#!/usr/bin/env python3
"""Gatehouse e2e test client built on kafka-python (2.x, pure Python).

Usage: kafka_python_client.py {produce,consume,metadata,create-topic,delete-topic} ...
Prints one JSON object on stdout; logs go to stderr. See README.md.
The broker's API versions are auto-detected (api_version is not pinned).
"""
import logging
import sys
import time

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import CommitFailedError

from clientlib import Failure, Tally, log, record, run

CLIENT_ID = "gatehouse-e2e-kafka-python"


def base_config(args):
    return {
        "bootstrap_servers": args.bootstrap,
        "client_id": CLIENT_ID,
        "api_version_auto_timeout_ms": 10000,
        "request_timeout_ms": 15000,
        "metadata_max_age_ms": 5000,
        "reconnect_backoff_max_ms": 1000,
    }


def produce(args):
    conf = base_config(args)
    conf.update({
        "acks": "all" if args.acks == "all" else int(args.acks),
        "compression_type": None if args.compression == "none" else args.compression,
        "enable_idempotence": args.idempotent,
        "linger_ms": 5,
        "max_block_ms": 15000,
        "delivery_timeout_ms": 30000,
        "max_request_size": max(1048576, args.size + 65536),
    })
    producer = KafkaProducer(**conf)
    futures = []
    try:
        for i in range(args.start, args.start + args.count):
            key, value = record(i, args.size)
            futures.append(producer.send(args.topic, key=key, value=value))
        producer.flush(timeout=60)
        failures = []
        for f in futures:
            try:
                f.get(timeout=1)
            except Exception as e:  # noqa: BLE001 - every failed delivery is reported
                failures.append(f"{type(e).__name__}: {e}")
    finally:
        producer.close(timeout=10)
    if failures:
        raise Failure(f"{len(failures)} deliveries failed, first: {failures[0]}")
    return {"produced": args.count}, 0


def consume(args):
    conf = base_config(args)
    conf.update({
        "group_id": args.group,
        "auto_offset_reset": args.offset_reset,
        "enable_auto_commit": False,
        "session_timeout_ms": 10000,
        "heartbeat_interval_ms": 3000,
    })
    consumer = KafkaConsumer(**conf)
    tally = Tally()
    try:
        consumer.subscribe([args.topic])
        deadline = time.monotonic() + args.timeout
        while tally.count < args.count and time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=1000, max_records=min(500, args.count - tally.count))
            got = False
            for records in batches.values():
                for r in records:
                    tally.add(r.key, r.value)
                    got = True
            if got:
                try:
                    consumer.commit()
                except CommitFailedError as e:
                    log(f"commit failed (continuing): {e}")
    finally:
        consumer.close()  # leaves the group
    if tally.count < args.count:
        log(f"timeout: consumed {tally.count} of {args.count} records in {args.timeout}s")
        return tally.result(), 1
    return tally.result(), 0


def admin(args):
    return KafkaAdminClient(**base_config(args))


def metadata(args):
    # KafkaAdminClient.describe_cluster()/describe_topics() ask for authorized
    # operations and crash on ACL bits kafka-python does not know, so read the
    # metadata through a group-less consumer's cluster view instead.
    consumer = KafkaConsumer(enable_auto_commit=False, **base_config(args))
    try:
        consumer.topics()  # forces a fresh all-topics metadata request
        cluster = consumer._client.cluster  # noqa: SLF001 - no public broker list
        brokers = sorted(({"id": b.nodeId, "host": b.host, "port": b.port}
                          for b in cluster.brokers()), key=lambda b: b["id"])
        topics = {t: len(cluster.partitions_for_topic(t) or ())
                  for t in cluster.topics(exclude_internal_topics=False)}
    finally:
        consumer.close()
    return {"brokers": brokers, "topics": topics}, 0


def create_topic(args):
    client = admin(args)
    try:
        client.create_topics([NewTopic(args.topic, num_partitions=args.partitions,
                                       replication_factor=args.replication_factor)],
                             timeout_ms=10000)
    finally:
        client.close()
    return {"created": args.topic}, 0


def delete_topic(args):
    client = admin(args)
    try:
        client.delete_topics([args.topic], timeout_ms=10000)
    finally:
        client.close()
    return {"deleted": args.topic}, 0


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run("kafka_python_client", {
        "produce": produce,
        "consume": consume,
        "metadata": metadata,
        "create-topic": create_topic,
        "delete-topic": delete_topic,
    })
