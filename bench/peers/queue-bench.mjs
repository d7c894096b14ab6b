// BullMQ at the queue level, on a private Redis: what longrun's throughput and fan-out
// scenarios are compared with. Prints one JSON line per scenario.
//
//   node queue-bench.mjs --redis redis://127.0.0.1:PORT [--only add,add-bulk,noop,flow,monitor]
//        [--jobs 20000] [--concurrency 1,100] [--children 1000,10000] [--max-seconds 120]
//
// Every scenario uses fresh queue names, is bounded by its job count and by --max-seconds,
// counts what did not finish, and obliterates its queues afterwards. Producer and workers
// share this one process, as in BullMQ's own benchmarks; completed jobs are kept (BullMQ's default).
import { FlowProducer, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { readFileSync } from 'node:fs';
import {
  callsBetween, commandCalls, loopbackOnly, options, round, summary, sum, until, usedMemory, wallMs,
} from './lib.mjs';

const o = options({
  redis: 'redis://127.0.0.1:6379', only: 'add,add-bulk,noop,flow,monitor', 'max-seconds': 120,
  jobs: 20000, 'jobs-c1': 10000, 'add-in-flight': 50, batch: 1000, concurrency: '1,100',
  children: '1000,10000', 'child-concurrency': 100, 'monitor-jobs': 2000,
});
const connection = { url: loopbackOnly(o.redis), maxRetriesPerRequest: null };
const maxMs = Number(o['max-seconds']) * 1000;
const admin = new Redis(o.redis);
const run = `peer-${process.pid}-${Date.now()}`;
let queueCount = 0;
const opened = [];
const track = (x) => { opened.push(x); return x; };
const newQueue = () => track(new Queue(`${run}-${queueCount++}`, { connection }));
const perSecond = (n, ms) => round(n / (ms / 1000), 0);

async function closeAll() {
  const queues = opened.filter((x) => x instanceof Queue);
  for (const x of opened.splice(0).reverse()) await x.close().catch(() => {});
  for (const q of queues) {
    const again = new Queue(q.name, { connection });
    await again.obliterate({ force: true }).catch(() => {});
    await again.close();
  }
}

async function fill(queue, n) {
  for (let done = 0; done < n; done += Number(o.batch)) {
    const size = Math.min(Number(o.batch), n - done);
    await queue.addBulk(Array.from({ length: size }, () => ({ name: 'noop', data: {} })));
  }
}

/** Runs `body` between two INFO commandstats snapshots; returns its result and the calls. */
async function counted(body) {
  const before = await commandCalls(admin);
  const result = await body();
  const calls = callsBetween(before, await commandCalls(admin));
  return { result, calls };
}

const scenarios = {
  // Queue.add() one job at a time, `add-in-flight` calls outstanding.
  async add() {
    const n = Number(o.jobs), inFlight = Number(o['add-in-flight']);
    const queue = newQueue();
    await queue.waitUntilReady();
    const latencies = [];
    let next = 0, errors = 0;
    const t0 = wallMs(), deadline = t0 + maxMs;
    const { calls } = await counted(() => Promise.all(Array.from({ length: inFlight }, async () => {
      while (next < n && wallMs() < deadline) {
        next++;
        const start = wallMs();
        try { await queue.add('noop', {}); latencies.push(wallMs() - start); } catch { errors++; }
      }
    })));
    const ms = wallMs() - t0;
    return { jobs: latencies.length, errors, in_flight: inFlight, seconds: round(ms / 1000, 3),
      jobs_per_s: perSecond(latencies.length, ms), latency_ms: summary(latencies),
      redis_commands_per_job: round(sum(calls) / Math.max(1, latencies.length), 2), timed_out: latencies.length + errors < n };
  },

  // Queue.addBulk() in batches.
  async 'add-bulk'() {
    const n = Number(o.jobs), batch = Number(o.batch);
    const queue = newQueue();
    await queue.waitUntilReady();
    let added = 0;
    const t0 = wallMs(), deadline = t0 + maxMs;
    const { calls } = await counted(async () => {
      while (added < n && wallMs() < deadline) {
        const size = Math.min(batch, n - added);
        await queue.addBulk(Array.from({ length: size }, () => ({ name: 'noop', data: {} })));
        added += size;
      }
    });
    const ms = wallMs() - t0;
    return { jobs: added, batch, seconds: round(ms / 1000, 3), jobs_per_s: perSecond(added, ms),
      redis_commands_per_job: round(sum(calls) / Math.max(1, added), 2), timed_out: added < n };
  },

  // A pre-filled queue of no-op jobs drained by one Worker at each concurrency.
  async noop() {
    const rows = [];
    for (const concurrency of o.concurrency.split(',').map(Number)) {
      const n = concurrency === 1 ? Number(o['jobs-c1']) : Number(o.jobs);
      const queue = newQueue();
      await fill(queue, n);
      const worker = track(new Worker(queue.name, async () => {}, { connection, concurrency, autorun: false }));
      let completed = 0, failed = 0;
      worker.on('completed', () => completed++);
      worker.on('failed', () => failed++);
      await worker.waitUntilReady();
      const t0 = wallMs();
      const { result: finished, calls } = await counted(async () => {
        worker.run().catch(() => {});
        return until(() => completed + failed >= n, t0 + maxMs);
      });
      const ms = wallMs() - t0;
      rows.push({ concurrency, jobs: n, completed, failed, seconds: round(ms / 1000, 3),
        jobs_per_s: perSecond(completed, ms), timed_out: !finished,
        redis_commands_per_job: round(sum(calls) / Math.max(1, completed), 2), redis_commands: calls });
      await closeAll();
    }
    return { runs: rows };
  },

  // FlowProducer: 1 parent + N no-op children; wall time from flow.add() to the parent's completion.
  async flow() {
    const rows = [];
    for (const children of o.children.split(',').map(Number)) {
      await admin.flushall();
      const memoryBefore = await usedMemory(admin);
      const parents = newQueue(), kids = newQueue();
      const flow = track(new FlowProducer({ connection }));
      const childWorker = track(new Worker(kids.name, async () => {}, { connection, concurrency: Number(o['child-concurrency']) }));
      const parentWorker = track(new Worker(parents.name, async () => 'done', { connection, concurrency: 1 }));
      let parentDoneAt = null, childFailures = 0;
      parentWorker.on('completed', () => { parentDoneAt = wallMs(); });
      childWorker.on('failed', () => childFailures++);
      await Promise.all([parents.waitUntilReady(), kids.waitUntilReady(), flow.waitUntilReady(),
        childWorker.waitUntilReady(), parentWorker.waitUntilReady()]);
      const t0 = wallMs();
      const { result: finished, calls } = await counted(async () => {
        await flow.add({ name: 'parent', queueName: parents.name, data: {},
          children: Array.from({ length: children }, (_, k) => ({ name: 'child', queueName: kids.name, data: { k } })) });
        return until(() => parentDoneAt !== null, t0 + maxMs);
      });
      const memoryAfter = await usedMemory(admin);
      rows.push({ children, child_concurrency: Number(o['child-concurrency']), timed_out: !finished,
        child_failures: childFailures, wall_ms: finished ? round(parentDoneAt - t0, 1) : null,
        redis_memory_before: memoryBefore, redis_memory_after: memoryAfter,
        redis_commands_per_job: round(sum(calls) / (children + 1), 2) });
      await closeAll();
    }
    return { runs: rows };
  },

  // Commands per job split by who sent them: clients (each at most one round trip; pipelined
  // ones share one) versus commands run inside Lua scripts. MONITOR slows Redis, so this is
  // a separate, smaller run than `noop` and its speed is not reported.
  async monitor() {
    const n = Number(o['monitor-jobs']), concurrency = 100;
    const queue = newQueue();
    await fill(queue, n);
    const worker = track(new Worker(queue.name, async () => {}, { connection, concurrency, autorun: false }));
    let completed = 0;
    worker.on('completed', () => completed++);
    await worker.waitUntilReady();
    const monitor = await new Redis(o.redis).monitor();
    const fromClients = {}, inScripts = {};
    let recording = true;
    monitor.on('monitor', (_time, args, source) => {
      if (!recording) return;
      const cmd = String(args[0]).toLowerCase();
      const into = source === 'lua' ? inScripts : fromClients;
      into[cmd] = (into[cmd] || 0) + 1;
    });
    const finished = await (async () => { worker.run().catch(() => {}); return until(() => completed >= n, wallMs() + maxMs); })();
    recording = false;
    monitor.disconnect();
    return { jobs: n, concurrency, completed, timed_out: !finished,
      client_commands_per_job: round(sum(fromClients) / Math.max(1, completed), 2),
      script_commands_per_job: round(sum(inScripts) / Math.max(1, completed), 2),
      client_commands: fromClients };
  },
};

const version = (pkg) => JSON.parse(readFileSync(new URL(`./node_modules/${pkg}/package.json`, import.meta.url))).version;
const redisVersion = /redis_version:(\S+)/.exec(await admin.info('server'))[1];
const head = { tool: 'bench/peers/queue-bench.mjs', target: 'bullmq', node: process.version, bullmq: version('bullmq'),
  ioredis: version('ioredis'), redis: redisVersion };
for (const name of o.only.split(',')) {
  if (!scenarios[name]) throw new Error(`unknown scenario ${name}`);
  let out;
  try { out = await scenarios[name](); } catch (err) { out = { error: String(err?.stack || err) }; }
  await closeAll();
  console.log(JSON.stringify({ scenario: `bullmq.${name}`, at: new Date().toISOString(), ...head, ...out }));
}
await admin.quit();
process.exit(0);
