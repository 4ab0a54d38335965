#!/usr/bin/env node
// Gatehouse e2e test client built on kafkajs (v2, pure JavaScript).
//
// Usage: node kafkajs_client.mjs {produce,consume,metadata,create-topic,delete-topic} --flag value ...
// Prints one JSON object on stdout; logs go to stderr. See README.md.
// Exit codes: 0 ok, 1 failure, 2 usage error, 3 unsupported codec (lz4/snappy/zstd need plugins).
// --option takes librdkafka property names (as confluent_client.py does); the security ones are
// translated to kafkajs' ssl/sasl settings (securityConfig), anything else is a usage error.
import { readFileSync, realpathSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import kafkajs from 'kafkajs';

const { Kafka, logLevel, CompressionTypes, Partitioners, PartitionAssigners } = kafkajs;
const CLIENT_ID = 'gatehouse-e2e-kafkajs';
const CODECS = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP };
const ALL_CODECS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];

const log = (...a) => console.error(...a);
let emitted = false;
const emit = (obj) => { // the single JSON result; stdout writes to a pipe are synchronous on Linux
  if (emitted) return false;
  emitted = true;
  process.stdout.write(JSON.stringify(obj) + '\n');
  return true;
};

class Failure extends Error {}
export class UsageError extends Error {}

// Authentication failed (stage 'sasl', or 'tls' for a TLS handshake): print the JSON error and
// exit 1 at once, from wherever it is noticed, rather than wait for kafkajs' retries to give up.
function authFailed(stage, detail) {
  log(`authentication failed (${stage}): ${detail}`);
  if (!emit({ error: 'authentication', stage, detail: String(detail) })) return;
  process.exit(1);
}

const PROTOCOLS = ['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'];
const MECHANISMS = {
  PLAIN: 'plain', 'SCRAM-SHA-256': 'scram-sha-256', 'SCRAM-SHA-512': 'scram-sha-512', OAUTHBEARER: 'oauthbearer',
};
const SUPPORTED = [
  'enable.ssl.certificate.verification', 'sasl.mechanism', 'sasl.mechanisms', 'sasl.password', 'sasl.username',
  'security.protocol', 'ssl.ca.location', 'ssl.certificate.location', 'ssl.endpoint.identification.algorithm',
  'ssl.key.location', 'ssl.key.password',
];

// The JWT in the --oauth-token-file, read afresh every time (tests rotate the file).
export function readToken(path) {
  let token;
  try {
    token = readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new Failure(`cannot read --oauth-token-file ${path}: ${e.message}`);
  }
  if (!token) throw new Failure(`--oauth-token-file ${path} is empty`);
  return token;
}

// "KEY=VALUE" strings -> Map (a repeated key: the last one wins).
function optionMap(pairs) {
  const options = new Map();
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    const key = at < 0 ? '' : pair.slice(0, at).trim();
    if (!key) throw new UsageError(`--option: expected KEY=VALUE, got ${JSON.stringify(pair)}`);
    options.set(key, pair.slice(at + 1));
  }
  return options;
}

// kafkajs { ssl, sasl } settings from librdkafka-style --option pairs and --oauth-token-file.
// Like librdkafka, sasl.* properties only matter with a SASL_* security.protocol and ssl.* ones
// only with SSL/SASL_SSL. Throws UsageError for unknown properties, bad values, unreadable files.
export function securityConfig(pairs, oauthTokenFile) {
  const options = optionMap(pairs);
  const unknown = [...options.keys()].filter((k) => !SUPPORTED.includes(k)).sort();
  if (unknown.length) {
    throw new UsageError(`unsupported --option ${unknown.join(', ')} for kafkajs (supported: ${SUPPORTED.join(', ')})`);
  }
  const get = (k) => options.get(k);
  const readFile = (k) => {
    try { return readFileSync(get(k), 'utf8'); } catch (e) { throw new UsageError(`${k}: ${e.message}`); }
  };
  const protocol = (get('security.protocol') ?? (oauthTokenFile ? 'SASL_PLAINTEXT' : 'PLAINTEXT')).toUpperCase();
  if (!PROTOCOLS.includes(protocol)) {
    throw new UsageError(`security.protocol must be one of ${PROTOCOLS.join(', ')}, not ${JSON.stringify(get('security.protocol'))}`);
  }
  let mechanism = get('sasl.mechanism') ?? get('sasl.mechanisms');
  if (oauthTokenFile) {
    if (mechanism !== undefined && mechanism.toUpperCase() !== 'OAUTHBEARER') {
      throw new UsageError(`--oauth-token-file needs sasl.mechanism=OAUTHBEARER, not ${mechanism}`);
    }
    mechanism = 'OAUTHBEARER';
    try { readToken(oauthTokenFile); } catch (e) { throw new UsageError(e.message); }
  }
  if (mechanism !== undefined) {
    mechanism = mechanism.toUpperCase();
    if (!(mechanism in MECHANISMS)) {
      throw new UsageError(`sasl.mechanism must be one of ${Object.keys(MECHANISMS).join(', ')}, not ${JSON.stringify(mechanism)}`);
    }
  }
  const algorithm = get('ssl.endpoint.identification.algorithm')?.toLowerCase();
  if (algorithm !== undefined && !['none', 'https'].includes(algorithm)) {
    throw new UsageError(`ssl.endpoint.identification.algorithm must be none or https, not ${JSON.stringify(algorithm)}`);
  }
  const verify = get('enable.ssl.certificate.verification')?.toLowerCase();
  if (verify !== undefined && !['true', 'false'].includes(verify)) {
    throw new UsageError(`enable.ssl.certificate.verification must be true or false, not ${JSON.stringify(verify)}`);
  }

  const config = {};
  if (protocol === 'SSL' || protocol === 'SASL_SSL') {
    const ssl = {};
    if (get('ssl.ca.location') !== undefined) ssl.ca = [readFile('ssl.ca.location')];
    if (get('ssl.certificate.location') !== undefined) ssl.cert = readFile('ssl.certificate.location');
    if (get('ssl.key.location') !== undefined) ssl.key = readFile('ssl.key.location');
    if (get('ssl.key.password') !== undefined) ssl.passphrase = get('ssl.key.password');
    if (verify === 'false') ssl.rejectUnauthorized = false;
    if (algorithm === 'none') ssl.checkServerIdentity = () => undefined; // chain still verified
    config.ssl = ssl;
  } else if ([...options.keys()].some((k) => k.startsWith('ssl.') || k.startsWith('enable.ssl.'))) {
    log(`warning: ssl.* options are ignored with security.protocol=${protocol}`);
  }
  if (protocol.startsWith('SASL_')) {
    if (mechanism === undefined) {
      throw new UsageError(`security.protocol=${protocol} needs sasl.mechanism (${Object.keys(MECHANISMS).join(', ')})`);
    }
    if (mechanism === 'OAUTHBEARER') {
      if (!oauthTokenFile) throw new UsageError('sasl.mechanism=OAUTHBEARER needs --oauth-token-file');
      config.sasl = {
        mechanism: 'oauthbearer',
        // kafkajs asks on every (re-)authentication
        oauthBearerProvider: async () => {
          try {
            return { value: readToken(oauthTokenFile) };
          } catch (e) {
            authFailed('sasl', e.message);
            throw e;
          }
        },
      };
    } else {
      if (get('sasl.username') === undefined || get('sasl.password') === undefined) {
        throw new UsageError(`sasl.mechanism=${mechanism} needs sasl.username and sasl.password`);
      }
      config.sasl = { mechanism: MECHANISMS[mechanism], username: get('sasl.username'), password: get('sasl.password') };
    }
  } else if ([...options.keys()].some((k) => k.startsWith('sasl.'))) {
    log(`warning: sasl.* options are ignored with security.protocol=${protocol}`);
  }
  return config;
}

// TLS failures: node's certificate verification codes, OpenSSL (ERR_SSL_*, e.g. a TLS alert from
// the broker rejecting our certificate) and node's TLS errors (ERR_TLS_*, e.g. a hostname mismatch).
const TLS_ERROR = /^ERR_SSL_|^ERR_TLS_|CERT|CRL|HOSTNAME_MISMATCH|INVALID_CA|INVALID_PURPOSE|PATH_LENGTH_EXCEEDED/;

// kafkajs' default socket factory, plus a fail-fast check: kafkajs treats a failed TLS handshake
// as a retriable connection error and would retry it until its retries are exhausted.
function socketFactory({ host, port, ssl, onConnect }) {
  const socket = ssl
    ? tls.connect(Object.assign({ host, port }, !net.isIP(host) ? { servername: host } : {}, ssl), onConnect)
    : net.connect({ host, port }, onConnect);
  socket.setKeepAlive(true, 60000);
  if (ssl) {
    socket.on('error', (e) => {
      if (TLS_ERROR.test(e.code || '')) authFailed('tls', `${host}:${port}: TLS handshake failed: ${e.message.trim()}`);
    });
  }
  return socket;
}

const SASL_ERROR_TYPES = ['SASL_AUTHENTICATION_FAILED', 'UNSUPPORTED_SASL_MECHANISM', 'ILLEGAL_SASL_STATE'];

// The authentication failure in an error kafkajs threw (possibly wrapped in a retry error).
function authFailure(e) {
  for (let err = e, depth = 0; err && depth < 10; err = err.cause || err.originalError, depth++) {
    if (err.name === 'KafkaJSSASLAuthenticationError') return ['sasl', err.message];
    if (err.name === 'KafkaJSProtocolError' && SASL_ERROR_TYPES.includes(err.type)) return ['sasl', err.message];
    if (err.name === 'KafkaJSServerDoesNotSupportApiKey' && /^Sasl/.test(err.apiName || '')) {
      return ['sasl', `broker does not support ${err.apiName}: ${err.message}`];
    }
    if (TLS_ERROR.test(err.code || '')) return ['tls', err.message.trim()];
  }
  return null;
}

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
      option: { type: 'string', multiple: true, default: [] }, 'oauth-token-file': { type: 'string' },
      records: { type: 'string' }, values: { type: 'boolean', default: false },
      dump: { type: 'boolean', default: false },
    },
  });
  const need = {
    produce: ['topic'], consume: ['topic', 'group', 'count'], metadata: [],
    'create-topic': ['topic', 'partitions'], 'delete-topic': ['topic'],
  }[cmd];
  if (!need) throw new UsageError(`unknown subcommand ${JSON.stringify(cmd)}`);
  for (const k of ['bootstrap', ...need]) {
    if (values[k] === undefined) throw new UsageError(`${cmd}: --${k} is required`);
  }
  if (values.values && values.dump) throw new UsageError('--values and --dump exclude each other');
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
  let given = null;
  if (cmd === 'produce') {
    if (values.records !== undefined) {
      given = readRecords(values.records);
      if (values.count !== undefined && int('count') !== given.length) {
        throw new UsageError(`--count ${values.count} but --records holds ${given.length} records`);
      }
      values.count = String(given.length);
    } else if (values.count === undefined) {
      throw new UsageError('produce needs --count or --records');
    }
  }
  return {
    given, values: values.values, dump: values.dump,
    cmd, bootstrap: values.bootstrap, topic: values.topic, group: values.group,
    count: values.count && int('count'), start: int('start'), size: int('size'),
    compression: choice('compression', ALL_CODECS), acks: choice('acks', ['all', '1', '0']),
    idempotent: values.idempotent, from: choice('from', ['earliest', 'latest']),
    timeout: positive('timeout'), partitions: values.partitions && int('partitions'),
    replicationFactor: int('replication-factor'),
    security: securityConfig(values.option, values['oauth-token-file']),
  };
}

// --records FILE: JSON Lines of {"key": text|null, "value": text|null}
function readRecords(path) {
  let text;
  try { text = readFileSync(path, 'utf8'); } catch (e) { throw new UsageError(`--records ${path}: ${e.message}`); }
  return text.split('\n').filter((l) => l.trim()).map((l, n) => {
    let r;
    try { r = JSON.parse(l); } catch (e) { throw new UsageError(`--records ${path}: line ${n + 1}: ${e.message}`); }
    if (r === null || typeof r !== 'object' || Array.isArray(r)) {
      throw new UsageError(`--records ${path}: line ${n + 1} is not a JSON object`);
    }
    const text = (t) => (t === undefined || t === null ? null : String(t));
    return { key: text(r.key), value: text(r.value) };
  });
}

function makeKafka(args) {
  return new Kafka({
    clientId: CLIENT_ID, brokers: args.bootstrap.split(','), logLevel: logLevel.ERROR, logCreator,
    connectionTimeout: 10000, requestTimeout: 15000, retry: { retries: 5 }, socketFactory,
    ...args.security,
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
      for (let i = s; i < Math.min(s + chunk, args.start + args.count); i++) {
        messages.push(args.given ? args.given[i - args.start] : record(i, args.size));
      }
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
  const shown = args.values || args.dump ? [] : null; // --values / --dump: the records, unchecked
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
          if (shown) {
            const value = m.value === null ? null : m.value.toString();
            shown.push(args.values ? { key, value } : [key, value]);
            resolveOffset(m.offset);
            continue;
          }
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
  if (shown) result.records = shown;
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
    log('usage: kafkajs_client.mjs {produce,consume,metadata,create-topic,delete-topic} --bootstrap HOST:PORT[,HOST:PORT…] ...');
    process.exit(2);
  }
  try {
    const [result, code] = await HANDLERS[args.cmd](args);
    emit(result);
    process.exitCode = code;
  } catch (e) {
    const failed = authFailure(e);
    if (failed) authFailed(...failed);
    if (!(e instanceof Failure)) log(e && e.stack ? e.stack : e);
    log(`kafkajs_client: ${args.cmd} failed: ${e && e.name}: ${e && e.message}`);
    process.exitCode = 1;
  }
  // do not wait for lingering sockets/timers of a failed client
  setTimeout(() => process.exit(process.exitCode ?? 0), 200).unref();
}

// run as a script (not when imported, e.g. to check securityConfig)
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) main();
