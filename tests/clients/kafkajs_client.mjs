#!/usr/bin/env node
// Gatehouse e2e test client built on kafkajs (v2, pure JavaScript).
//
// Usage: node kafkajs_client.mjs {produce,consume,metadata,create-topic,delete-topic} --flag value ...
// Prints one JSON object on stdout; logs go to stderr. See README.md.
// Exit codes: 0 ok, 1 failure, 2 usage error, 3 unsupported codec (lz4/snappy/zstd need plugins).
import { parseArgs } from 'node:util';
import kafkajs from 'kafkajs';

const { Kafka, logLevel, CompressionTypes, Partitioners, PartitionAssigners } = kafkajs;
const CLIENT_ID = 'gatehouse-e2e-kafkajs';
const CODECS = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP };
const ALL_CODECS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];

const log = (...a) => console.error(...a);
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

class Failure extends Error {}
class UsageError extends Error {}

// kafkajs' default logger writes INFO/DEBUG to stdout; keep stdout for the JSON result.
const logCreator = () => ({ namespace, label, log: entry }) => {
  const { message, ...rest } = entry;
  log(`kafkajs ${label} [${namespace}] ${message} ${JSON.stringify(rest)}`);
};

function parse(argv) {
  const [cmd, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    strict: true,
    options: {
      bootstrap: { type: 'string' }, topic: { type: 'string' }, count: { type: 'string' },
      start: { type: 'string', default: '0' }, compression: { type: 'string', default: 'none' },
      size: { type: 'string', default: '100' }, idempotent: { type: 'boolean', default: false },
      acks: { type: 'string', default: 'all' }, group: { type: 'string' },
      timeout: { type: 'string', default: '60' }, from: { type: 'string', default: 'earliest' },
      partitions: { type: 'string' }, 'replication-factor': { type: 'string', default: '1' },
    },
  });
  const need = {
    produce: ['topic', 'count'], consume: ['topic', 'group', 'count'], metadata: [],
    'create-topic': ['topic', 'partitions'], 'delete-topic': ['topic'],
  }[cmd];
  if (!need) throw new UsageError(`unknown subcommand ${JSON.stringify(cmd)}`);
  for (const k of ['bootstrap', ...need]) {
    if (values[k] === undefined) throw new UsageError(`${cmd}: --${k} is required`);
  }
  const int = (k) => {
    const n = Number(values[k]);
    if (!Number.isInteger(n)) throw new UsageError(`--${k} must be an integer`);
    return n;
  };
  const positive = (k) => {
    const n = Number(values[k]);
    if (!(n > 0)) throw new UsageError(`--${k} must be a positive number`);
    return n;
  };
  const choice = (k, allowed) => {
    if (!allowed.includes(values[k])) throw new UsageError(`--${k} must be one of ${allowed.join('|')}`);
    return values[k];
  };
  return {
    cmd, bootstrap: values.bootstrap, topic: values.topic, group: values.group,
    count: values.count && int('count'), start: int('start'), size: int('size'),
    compression: choice('compression', ALL_CODECS), acks: choice('acks', ['all', '1', '0']),
    idempotent: values.idempotent, from: choice('from', ['earliest', 'latest']),
    timeout: positive('timeout'), partitions: values.partitions && int('partitions'),
    replicationFactor: int('replication-factor'),
  };
}

function makeKafka(args) {
  return new Kafka({
    clientId: CLIENT_ID, brokers: [args.bootstrap], logLevel: logLevel.ERROR, logCreator,
    connectionTimeout: 10000, requestTimeout: 15000, retry: { retries: 5 },
  });
}

function record(i, size) {
  const base = JSON.stringify({ i, pad: '' }).length;
  return { key: `key-${i}`, value: JSON.stringify({ i, pad: 'x'.repeat(Math.max(0, size - base)) }) };
}

async function produce(args) {
  if (!(args.compression in CODECS)) {
    return [{ unsupported: args.compression }, 3];
  }
  const producer = makeKafka(args).producer({
    idempotent: args.idempotent, allowAutoTopicCreation: true, metadataMaxAge: 5000,
    createPartitioner: Partitioners.DefaultPartitioner,
    ...(args.idempotent ? { maxInFlightRequests: 1 } : {}),
  });
  await producer.connect();
  try {
    const acks = args.acks === 'all' ? -1 : Number(args.acks);
    const chunk = Math.max(1, Math.min(500, Math.floor((512 * 1024) / Math.max(1, args.size))));
    for (let s = args.start; s < args.start + args.count; s += chunk) {
      const messages = [];
      for (let i = s; i < Math.min(s + chunk, args.start + args.count); i++) messages.push(record(i, args.size));
      // send() resolves only once the broker acknowledged every record (per acks), else throws
      await producer.send({ topic: args.topic, compression: CODECS[args.compression], acks, timeout: 30000, messages });
    }
  } finally {
    await producer.disconnect();
  }
  return [{ produced: args.count }, 0];
}

// kafkajs calls its round-robin assigner "RoundRobinAssigner"; librdkafka, kafka-python and Java
// name the same (standard-encoded) protocol "roundrobin". Using that name lets a kafkajs member
// share a consumer group with the other clients instead of failing with INCONSISTENT_GROUP_PROTOCOL.
const roundRobin = (ctx) => ({ ...PartitionAssigners.roundRobin(ctx), name: 'roundrobin' });

async function consume(args) {
  const consumer = makeKafka(args).consumer({
    groupId: args.group, sessionTimeout: 10000, rebalanceTimeout: 10000,
    heartbeatInterval: 3000, metadataMaxAge: 5000, partitionAssigners: [roundRobin],
  });
  let count = 0; const ids = []; let keysOk = true;
  let done; const finished = new Promise((resolve) => { done = resolve; });
  let crash = null;
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    log(`consumer crashed (restart=${payload.restart}): ${payload.error}`);
    if (!payload.restart) { crash = payload.error; done(); }
  });
  const timer = setTimeout(done, args.timeout * 1000); // overall deadline, includes joining
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [args.topic], fromBeginning: args.from === 'earliest' });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary, uncommittedOffsets, heartbeat }) => {
        let processed = 0;
        for (const m of batch.messages) {
          if (count >= args.count) break; // take exactly --count records, commit nothing past them
          count++; processed++;
          const key = m.key === null ? null : m.key.toString();
          try {
            const i = JSON.parse(m.value.toString()).i;
            if (!Number.isInteger(i)) throw new Error('"i" is not an integer');
            ids.push(i);
            if (key !== `key-${i}`) { keysOk = false; log(`key mismatch for i=${i}: ${key}`); }
          } catch (e) {
            keysOk = false; log(`malformed record value at offset ${m.offset}: ${e.message}`);
          }
          resolveOffset(m.offset);
        }
        if (processed > 0) {
          await commitOffsetsIfNecessary(uncommittedOffsets()); // explicit offsets: commits now
          await heartbeat();
        }
        if (count >= args.count) done();
      },
    });
    await finished;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect(); // stops the runner and leaves the group
  }
  if (crash) {
    // records compressed with a codec kafkajs lacks (snappy/lz4/zstd need plugins)
    const m = /^(\w+) compression not implemented/i.exec(crash.message || '');
    if (crash.name === 'KafkaJSNotImplemented' && m) return [{ unsupported: m[1].toLowerCase() }, 3];
    throw crash;
  }
  const result = { consumed: count, ids: ids.sort((a, b) => a - b), keys_ok: keysOk };
  if (count < args.count) {
    log(`timeout: consumed ${count} of ${args.count} records in ${args.timeout}s`);
    return [result, 1];
  }
  return [result, 0];
}

async function withAdmin(args, fn) {
  const admin = makeKafka(args).admin();
  await admin.connect();
  try { return await fn(admin); } finally { await admin.disconnect(); }
}

const metadata = (args) => withAdmin(args, async (admin) => {
  const cluster = await admin.describeCluster();
  const { topics } = await admin.fetchTopicMetadata(); // no topics given: all topics
  const brokers = cluster.brokers.map((b) => ({ id: b.nodeId, host: b.host, port: b.port }))
    .sort((a, b) => a.id - b.id);
  return [{ brokers, topics: Object.fromEntries(topics.map((t) => [t.name, t.partitions.length])) }, 0];
});

const createTopic = (args) => withAdmin(args, async (admin) => {
  const created = await admin.createTopics({
    topics: [{ topic: args.topic, numPartitions: args.partitions, replicationFactor: args.replicationFactor }],
    timeout: 10000,
  });
  if (!created) throw new Failure(`topic ${args.topic} already exists`);
  return [{ created: args.topic }, 0];
});

const deleteTopic = (args) => withAdmin(args, async (admin) => {
  await admin.deleteTopics({ topics: [args.topic], timeout: 10000 });
  return [{ deleted: args.topic }, 0];
});

const HANDLERS = { produce, consume, metadata, 'create-topic': createTopic, 'delete-topic': deleteTopic };

async function main() {
  let args;
  try {
    args = parse(process.argv.slice(2));
  } catch (e) {
    log(`kafkajs_client: usage error: ${e.message}`);
    log('usage: kafkajs_client.mjs {produce,consume,metadata,create-topic,delete-topic} --bootstrap HOST:PORT ...');
    process.exit(2);
  }
  try {
    const [result, code] = await HANDLERS[args.cmd](args);
    emit(result);
    process.exitCode = code;
  } catch (e) {
    if (!(e instanceof Failure)) log(e && e.stack ? e.stack : e);
    log(`kafkajs_client: ${args.cmd} failed: ${e && e.name}: ${e && e.message}`);
    process.exitCode = 1;
  }
  // do not wait for lingering sockets/timers of a failed client
  setTimeout(() => process.exit(process.exitCode ?? 0), 200).unref();
}

main();
