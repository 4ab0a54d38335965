#!/usr/bin/env python3
"""Gatehouse e2e test client built on kafka-python (2.x, pure Python).

Usage: kafka_python_client.py {produce,consume,metadata,create-topic,delete-topic} ...
Prints one JSON object on stdout; logs go to stderr. See README.md.
The broker's API versions are auto-detected (api_version is not pinned).
--option takes librdkafka property names (as confluent_client.py does); the security
ones are translated to kafka-python settings, anything else is a usage error.
"""
import logging
import os
import ssl
import sys
import time

import kafka.errors as Errors
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.conn import BrokerConnection
from kafka.errors import CommitFailedError

try:  # kafka-python >= 2.1
    from kafka.sasl.oauth import AbstractTokenProvider
except ImportError:  # kafka-python 2.0.x
    from kafka.oauth.abstract import AbstractTokenProvider

from clientlib import (Failure, Tally, UsageError, auth_failed, check_token_file, log,
                       option_dict, read_token, records_to_produce, run)

CLIENT_ID = "gatehouse-e2e-kafka-python"

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
# librdkafka property -> kafka-python setting, value taken as is
RENAMED = {
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "ssl.ca.location": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl.key.password": "ssl_password",
}
# properties with a value to check or convert (handled in security_config)
SPECIAL = ("security.protocol", "sasl.mechanism", "sasl.mechanisms",
           "ssl.endpoint.identification.algorithm", "enable.ssl.certificate.verification")
SUPPORTED = sorted(SPECIAL + tuple(RENAMED))
BOOLEANS = {"true": True, "false": False}


class FileTokenProvider(AbstractTokenProvider):
    """SASL/OAUTHBEARER token provider: the JWT in a file, re-read for every token request
    (kafka-python asks once per new connection)."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def token(self):
        try:
            return read_token(self.path)
        except Failure as e:
            auth_failed(str(e))
            raise


def security_config(options, oauth_token_file=None):
    """kafka-python settings from librdkafka-style --option properties and --oauth-token-file.

    Like librdkafka, sasl.* properties only matter with a SASL_* security.protocol and
    ssl.* ones only with SSL/SASL_SSL (kafka-python ignores them otherwise). Raises
    UsageError for unknown properties, bad values and incomplete SASL settings."""
    unknown = sorted(set(options) - set(SUPPORTED))
    if unknown:
        raise UsageError(f"unsupported --option {', '.join(unknown)} for kafka-python "
                         f"(supported: {', '.join(SUPPORTED)})")
    conf = {RENAMED[k]: v for k, v in options.items() if k in RENAMED}

    protocol = options.get("security.protocol", "SASL_PLAINTEXT" if oauth_token_file else "PLAINTEXT")
    if protocol.upper() not in PROTOCOLS:
        raise UsageError(f"security.protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    protocol = protocol.upper()
    conf["security_protocol"] = protocol

    mechanism = options.get("sasl.mechanism", options.get("sasl.mechanisms"))
    if oauth_token_file:
        if mechanism is not None and mechanism.upper() != "OAUTHBEARER":
            raise UsageError(f"--oauth-token-file needs sasl.mechanism=OAUTHBEARER, not {mechanism}")
        mechanism = "OAUTHBEARER"
        conf["sasl_oauth_token_provider"] = FileTokenProvider(oauth_token_file)
    if mechanism is not None:
        if mechanism.upper() not in MECHANISMS:
            raise UsageError(f"sasl.mechanism must be one of {', '.join(MECHANISMS)}, not {mechanism!r}")
        mechanism = mechanism.upper()
        conf["sasl_mechanism"] = mechanism

    sasl = protocol.startswith("SASL_")
    if sasl:
        if mechanism is None:
            raise UsageError(f"security.protocol={protocol} needs sasl.mechanism "
                             f"({', '.join(MECHANISMS)})")
        if mechanism == "OAUTHBEARER" and not oauth_token_file:
            raise UsageError("sasl.mechanism=OAUTHBEARER needs --oauth-token-file")
        if mechanism != "OAUTHBEARER" and ("sasl_plain_username" not in conf
                                           or "sasl_plain_password" not in conf):
            raise UsageError(f"sasl.mechanism={mechanism} needs sasl.username and sasl.password")
    elif mechanism is not None or "sasl_plain_username" in conf or "sasl_plain_password" in conf:
        log(f"warning: sasl.* options are ignored with security.protocol={protocol}")

    algorithm = options.get("ssl.endpoint.identification.algorithm")
    if algorithm is not None:
        if algorithm.lower() not in ("none", "https"):
            raise UsageError(f"ssl.endpoint.identification.algorithm must be none or https, not {algorithm!r}")
        conf["ssl_check_hostname"] = algorithm.lower() == "https"
    verify = options.get("enable.ssl.certificate.verification")
    if verify is not None:
        if verify.lower() not in BOOLEANS:
            raise UsageError(f"enable.ssl.certificate.verification must be true or false, not {verify!r}")
        verify = BOOLEANS[verify.lower()]
    if protocol in ("SSL", "SASL_SSL"):
        for key in ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location"):
            if key in options and not os.access(options[key], os.R_OK):
                raise UsageError(f"{key}: cannot read {options[key]}")
        if verify is False:
            conf["ssl_context"] = unverified_ssl_context(conf)
    elif any(k.startswith("ssl") for k in conf):
        log(f"warning: ssl.* options are ignored with security.protocol={protocol}")
    return conf


def unverified_ssl_context(conf):
    """enable.ssl.certificate.verification=false: kafka-python has no such setting and
    ignores every other ssl_* one once given an ssl_context, so build the whole context."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if conf.get("ssl_certfile"):
        ctx.load_cert_chain(conf["ssl_certfile"], conf.get("ssl_keyfile"), conf.get("ssl_password"))
    return ctx


AUTH_ERRORS = (Errors.SaslAuthenticationFailedError, Errors.UnsupportedSaslMechanismError,
               Errors.IllegalSaslStateError)


def auth_failure(exc):
    """(stage, detail) if the exception is an authentication (SASL or TLS) failure, else None."""
    if isinstance(exc, AUTH_ERRORS):
        return "sasl", f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ssl.SSLError):
        return "tls", f"{type(exc).__name__}: {exc}"
    return None


def watch_authentication():
    """Exit as soon as any connection fails to authenticate.

    kafka-python only closes the connection with the error and keeps reconnecting (from the
    caller's thread or the producer's I/O thread) until its own timeouts, so the failure is
    caught where BrokerConnection sees it: close(error) and the SASL exchange for SASL (a
    rejected SaslAuthenticate, an unsupported mechanism, a broker without SaslHandshake),
    the TLS handshake for TLS."""
    original_close = BrokerConnection.close
    original_authenticate = BrokerConnection._try_authenticate  # noqa: SLF001
    original_handshake = BrokerConnection._try_handshake  # noqa: SLF001

    def close(self, error=None):
        original_close(self, error)
        failed = auth_failure(error) if error is not None else None
        if failed is not None:
            auth_failed(f"{self}: {failed[1]}", stage=failed[0])

    def try_authenticate(self):
        try:
            return original_authenticate(self)
        except Errors.KafkaConnectionError:
            raise
        except Exception as e:  # noqa: BLE001 - kafka-python raises these from its I/O loop
            auth_failed(f"{self}: SASL {self.config['sasl_mechanism']}: {type(e).__name__}: {e}")
            raise

    def try_handshake(self):
        try:
            return original_handshake(self)
        except ssl.SSLError as e:  # certificate rejected either way; kafka-python would re-raise
            auth_failed(f"{self}: TLS handshake failed: {e}", stage="tls")
            raise

    BrokerConnection.close = close
    BrokerConnection._try_authenticate = try_authenticate  # noqa: SLF001
    BrokerConnection._try_handshake = try_handshake  # noqa: SLF001


def prepare(args):
    if args.oauth_token_file:
        check_token_file(args.oauth_token_file)
    args.security = security_config(option_dict(args), args.oauth_token_file)
    watch_authentication()


def base_config(args):
    return {
        "bootstrap_servers": args.bootstrap,
        "client_id": CLIENT_ID,
        "api_version_auto_timeout_ms": 10000,
        "request_timeout_ms": 15000,
        "metadata_max_age_ms": 5000,
        "reconnect_backoff_max_ms": 1000,
        **args.security,
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
        for key, value in records_to_produce(args):
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
    tally = Tally(dump=args.dump, values=args.values)
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
    }, prepare=prepare, auth_error=auth_failure)
