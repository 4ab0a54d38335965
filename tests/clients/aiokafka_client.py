#!/usr/bin/env python3
"""Gatehouse e2e test client built on aiokafka (asyncio, pure Python).

Usage: aiokafka_client.py {produce,consume,metadata,create-topic,delete-topic} ...
Prints one JSON object on stdout; logs go to stderr. See README.md.
The broker's API versions are auto-detected (api_version="auto").
--option takes librdkafka property names (as confluent_client.py does); the security
ones are translated to aiokafka settings, anything else is a usage error.
"""
import asyncio
import logging
import os
import ssl
import sys
import time

import aiokafka.errors as Errors
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import AIOKafkaConnection
from aiokafka.helpers import create_ssl_context

from clientlib import (Failure, Tally, UsageError, auth_failed, check_token_file, log,
                       option_dict, read_token, records_to_produce, run)

CLIENT_ID = "gatehouse-e2e-aiokafka"

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
SUPPORTED = sorted(("security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username",
                    "sasl.password", "ssl.ca.location", "ssl.certificate.location",
                    "ssl.key.location", "ssl.key.password",
                    "ssl.endpoint.identification.algorithm",
                    "enable.ssl.certificate.verification"))
BOOLEANS = {"true": True, "false": False}


class FileTokenProvider(AbstractTokenProvider):
    """SASL/OAUTHBEARER token provider: the JWT in a file, re-read for every token request
    (aiokafka asks once per new connection)."""

    def __init__(self, path):
        self.path = path

    async def token(self):
        try:
            return read_token(self.path)
        except Failure as e:
            auth_failed(str(e))
            raise


def security_config(options, oauth_token_file=None):
    """aiokafka settings from librdkafka-style --option properties and --oauth-token-file.

    The same rules as kafka_python_client.py: sasl.* only matter with a SASL_* protocol,
    ssl.* only with SSL/SASL_SSL (ignored otherwise, with a warning). aiokafka takes TLS
    settings as one ssl_context, built here. Raises UsageError for unknown properties, bad
    values and incomplete SASL settings."""
    unknown = sorted(set(options) - set(SUPPORTED))
    if unknown:
        raise UsageError(f"unsupported --option {', '.join(unknown)} for aiokafka "
                         f"(supported: {', '.join(SUPPORTED)})")
    conf = {}
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
    if mechanism is not None:
        if mechanism.upper() not in MECHANISMS:
            raise UsageError(f"sasl.mechanism must be one of {', '.join(MECHANISMS)}, not {mechanism!r}")
        mechanism = mechanism.upper()

    user, password = options.get("sasl.username"), options.get("sasl.password")
    if protocol.startswith("SASL_"):
        if mechanism is None:
            raise UsageError(f"security.protocol={protocol} needs sasl.mechanism "
                             f"({', '.join(MECHANISMS)})")
        conf["sasl_mechanism"] = mechanism
        if mechanism == "OAUTHBEARER":
            if not oauth_token_file:
                raise UsageError("sasl.mechanism=OAUTHBEARER needs --oauth-token-file")
            conf["sasl_oauth_token_provider"] = FileTokenProvider(oauth_token_file)
        else:
            if user is None or password is None:
                raise UsageError(f"sasl.mechanism={mechanism} needs sasl.username and sasl.password")
            conf["sasl_plain_username"] = user
            conf["sasl_plain_password"] = password
    elif mechanism is not None or user is not None or password is not None:
        log(f"warning: sasl.* options are ignored with security.protocol={protocol}")

    algorithm = options.get("ssl.endpoint.identification.algorithm")
    if algorithm is not None and algorithm.lower() not in ("none", "https"):
        raise UsageError(f"ssl.endpoint.identification.algorithm must be none or https, not {algorithm!r}")
    verify = options.get("enable.ssl.certificate.verification")
    if verify is not None:
        if verify.lower() not in BOOLEANS:
            raise UsageError(f"enable.ssl.certificate.verification must be true or false, not {verify!r}")
        verify = BOOLEANS[verify.lower()]
    if protocol in ("SSL", "SASL_SSL"):
        for key in ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location"):
            if key in options and not os.access(options[key], os.R_OK):
                raise UsageError(f"{key}: cannot read {options[key]}")
        ctx = create_ssl_context(cafile=options.get("ssl.ca.location"),
                                 certfile=options.get("ssl.certificate.location"),
                                 keyfile=options.get("ssl.key.location"),
                                 password=options.get("ssl.key.password"))
        if algorithm is not None and algorithm.lower() == "none":
            ctx.check_hostname = False
        if verify is False:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        conf["ssl_context"] = ctx
    elif any(k.startswith("ssl.") for k in options):
        log(f"warning: ssl.* options are ignored with security.protocol={protocol}")
    return conf


AUTH_ERRORS = (Errors.SaslAuthenticationFailed, Errors.AuthenticationFailedError,
               Errors.AuthenticationMethodNotSupported, Errors.UnsupportedSaslMechanismError,
               Errors.IllegalSaslStateError)


def auth_failure(exc):
    """(stage, detail) if the exception is an authentication (SASL or TLS) failure, else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:  # aiokafka wraps some in KafkaConnectionError
        seen.add(id(exc))
        if isinstance(exc, AUTH_ERRORS):
            return "sasl", f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ssl.SSLError):
            return "tls", f"{type(exc).__name__}: {exc}"
        if isinstance(exc, Errors.IncompatibleBrokerVersion) and "SaslHandShake" in str(exc):
            return "sasl", f"broker without SaslHandshake: {exc}"  # aiokafka's spelling
        exc = exc.__cause__ or exc.__context__
    return None


def watch_authentication():
    """Exit as soon as any connection fails to authenticate: aiokafka logs a failed
    bootstrap connection and goes on with the next one (or retries until its timeouts),
    so the failure is caught where AIOKafkaConnection.connect sees it."""
    original_connect = AIOKafkaConnection.connect

    async def connect(self):
        try:
            return await original_connect(self)
        except Exception as e:  # noqa: BLE001 - classified, re-raised if not authentication
            failed = auth_failure(e)
            if failed is not None:
                auth_failed(f"{self}: {failed[1]}", stage=failed[0])
            raise

    AIOKafkaConnection.connect = connect


def prepare(args):
    if args.oauth_token_file:
        check_token_file(args.oauth_token_file)
    args.security = security_config(option_dict(args), args.oauth_token_file)
    watch_authentication()


def base_config(args):
    return {
        "bootstrap_servers": args.bootstrap,
        "client_id": CLIENT_ID,
        "request_timeout_ms": 15000,
        "metadata_max_age_ms": 5000,
        "retry_backoff_ms": 200,
        **args.security,
    }


async def produce_async(args):
    conf = base_config(args)
    conf.update({
        "acks": "all" if args.acks == "all" else int(args.acks),
        "compression_type": None if args.compression == "none" else args.compression,
        "enable_idempotence": args.idempotent,
        "linger_ms": 5,
        "max_request_size": max(1048576, args.size + 65536),
    })
    producer = AIOKafkaProducer(**conf)
    failures = []
    try:
        await producer.start()
        futures = [await producer.send(args.topic, key=key, value=value)
                   for key, value in records_to_produce(args)]
        await producer.flush()
        for f in futures:
            try:
                await asyncio.wait_for(f, timeout=30)
            except Exception as e:  # noqa: BLE001 - every failed delivery is reported
                failures.append(f"{type(e).__name__}: {e}")
    finally:
        await producer.stop()
    if failures:
        raise Failure(f"{len(failures)} deliveries failed, first: {failures[0]}")
    return {"produced": args.count}, 0


async def consume_async(args):
    conf = base_config(args)
    conf.update({
        "group_id": args.group,
        "auto_offset_reset": args.offset_reset,
        "enable_auto_commit": False,
        "session_timeout_ms": 10000,
        "heartbeat_interval_ms": 3000,
    })
    consumer = AIOKafkaConsumer(args.topic, **conf)
    tally = Tally(dump=args.dump, values=args.values)
    try:
        await consumer.start()
        deadline = time.monotonic() + args.timeout
        while tally.count < args.count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000,
                                             max_records=min(500, args.count - tally.count))
            got = False
            for records in batches.values():
                for r in records:
                    tally.add(r.key, r.value)
                    got = True
            if got:
                try:
                    await consumer.commit()
                except Errors.CommitFailedError as e:
                    log(f"commit failed (continuing): {e}")
    finally:
        await consumer.stop()  # leaves the group
    if tally.count < args.count:
        log(f"timeout: consumed {tally.count} of {args.count} records in {args.timeout}s")
        return tally.result(), 1
    return tally.result(), 0


async def metadata_async(args):
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **base_config(args))
    try:
        await consumer.start()
        cluster = await consumer._client.fetch_all_metadata()  # noqa: SLF001 - no public broker list
        brokers = sorted(({"id": b.nodeId, "host": b.host, "port": b.port}
                          for b in cluster.brokers()), key=lambda b: b["id"])
        topics = {t: len(cluster.partitions_for_topic(t) or ())
                  for t in cluster.topics(exclude_internal_topics=False)}
    finally:
        await consumer.stop()
    return {"brokers": brokers, "topics": topics}, 0


async def with_admin(args, fn):
    client = AIOKafkaAdminClient(**base_config(args))
    try:
        await client.start()
        return await fn(client)
    finally:
        await client.close()


async def create_topic_async(args):
    async def create(client):
        resp = await client.create_topics(
            [NewTopic(args.topic, num_partitions=args.partitions,
                      replication_factor=args.replication_factor)], timeout_ms=10000)
        for topic_error in getattr(resp, "topic_errors", ()):
            code = topic_error[1]
            if code != 0:
                raise Failure(f"creating {args.topic} failed: "
                              f"{Errors.for_code(code).__name__} {topic_error[2:]}")
    await with_admin(args, create)
    return {"created": args.topic}, 0


async def delete_topic_async(args):
    async def delete(client):
        resp = await client.delete_topics([args.topic], timeout_ms=10000)
        for topic_error in getattr(resp, "topic_error_codes", ()):
            if topic_error[1] != 0:
                raise Failure(f"deleting {args.topic} failed: "
                              f"{Errors.for_code(topic_error[1]).__name__}")
    await with_admin(args, delete)
    return {"deleted": args.topic}, 0


def sync(fn):
    return lambda args: asyncio.run(fn(args))


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run("aiokafka_client", {
        "produce": sync(produce_async),
        "consume": sync(consume_async),
        "metadata": sync(metadata_async),
        "create-topic": sync(create_topic_async),
        "delete-topic": sync(delete_topic_async),
    }, prepare=prepare, auth_error=auth_failure)
