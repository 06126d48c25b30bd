/**
 * The validating child process of validator.ts: `node load-worker.js DIR OPTIONS_JSON` loads DIR
 * with loadFleet, sends the result over IPC and exits. Its heap is capped by the parent.
 */
import { loadFleet, type LoadOptions } from './load.js';
import { EXIT_RSS, type WorkerMessage } from './validator.js';

const dir = process.argv[2];
const options = JSON.parse(process.argv[3] ?? '{}') as LoadOptions;
const rssLimit = Number(process.env.ORCHARD_VALIDATOR_RSS_MB) * 1024 * 1024;

if (!process.send || !dir) {
  process.stderr.write('load-worker: run by the fleet source (an IPC channel and a directory)\n');
  process.exit(2);
}
if (rssLimit > 0) {
  // File contents are Buffers outside the V8 heap cap; stop before they grow without bound.
  setInterval(() => {
    if (process.memoryUsage.rss() > rssLimit) process.exit(EXIT_RSS);
  }, 100).unref();
}
// The parent going away (killed, crashed) must not leave an orphan validating.
process.on('disconnect', () => process.exit(1));

const send = (m: WorkerMessage) => process.send!(m, undefined, {}, () => process.exit(0));
loadFleet(dir, options).then(
  (result) => send({ result }),
  (err: unknown) => send({ error: err instanceof Error ? err.message : String(err) }),
);
