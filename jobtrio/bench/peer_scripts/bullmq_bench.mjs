// BullMQ's side of `jobtrio bench --compare`: one process, one Redis.
//   node bullmq_bench.mjs drain|enqueue REDIS_URL PREFIX JOBS WORKERS
// enqueue: addBulk of 1,000 jobs a call, timed; drain: JOBS jobs added first (untimed),
// then one Worker of concurrency WORKERS runs them; each job's body is one INCR, the
// same one Redis round trip as every peer's. Prints one JSON line.
import { Queue, Worker } from "bullmq";
import IORedis from "ioredis";

const [mode, redisUrl, prefix, jobsText, workersText] = process.argv.slice(2);
const jobs = Number(jobsText);
const workers = Number(workersText);
const url = new URL(redisUrl);
const connection = {
  host: url.hostname,
  port: Number(url.port || 6379),
  db: Number(url.pathname.slice(1) || 0),
  maxRetriesPerRequest: null,
};
const queue = new Queue(prefix, { connection });
const batch = (n) => Array.from({ length: n }, () => ({ name: "noop", data: { source: "bench" } }));

async function addAll() {
  for (let i = 0; i < jobs; i += 1000) await queue.addBulk(batch(Math.min(1000, jobs - i)));
}

let result;
if (mode === "enqueue") {
  await queue.addBulk(batch(10)); // warm up
  const start = performance.now();
  await addAll();
  result = { jobs_per_s: jobs / ((performance.now() - start) / 1000) };
} else {
  await addAll();
  const counter = new IORedis(connection);
  const key = `${prefix}:done`;
  let done = 0;
  let first = 0;
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  const worker = new Worker(prefix, async () => { await counter.incr(key); }, {
    connection,
    concurrency: workers,
    autorun: false,
  });
  worker.on("completed", () => {
    done += 1;
    if (done === 1) first = performance.now();
    if (done === jobs) finish(performance.now());
  });
  worker.on("failed", (job, err) => { console.error(`bullmq job failed: ${err}`); process.exit(1); });
  worker.run();
  const end = await finished;
  await worker.close();
  await counter.del(key);
  await counter.quit();
  result = { jobs_per_s: jobs > 1 ? (jobs - 1) / ((end - first) / 1000) : null };
}
await queue.obliterate({ force: true });
await queue.close();
console.log(JSON.stringify(result));
process.exit(0);
