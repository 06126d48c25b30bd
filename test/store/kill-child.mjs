// Child for the SIGKILL test: enqueue in a tight loop from several concurrent workers and print
// each uuid once its enqueue has resolved. stdout to a pipe is synchronous on Linux, so every
// printed uuid reached the parent before any kill.
// Usage: node kill-child.mjs <dir> <prefix> <workers>
import { LevelStore } from '../../dist/src/store/leveldb.js';

const [dir, prefix, workersArg] = process.argv.slice(2);
const workers = Number(workersArg ?? '4');
const store = await LevelStore.open(dir);

/** Must match payloadOf() in leveldb.test.ts. */
const payloadOf = (uuid) => Buffer.concat([Buffer.from(uuid), Buffer.from([0, 1, 2, 0xfe, 0xff])]);

let n = 0;
await Promise.all(
  Array.from({ length: workers }, async () => {
    for (;;) {
      const uuid = `${prefix}-${String(n++).padStart(6, '0')}`;
      await store.enqueue(['T1', 'T2'], { uuid, requestType: 'DeviceInformation', payload: payloadOf(uuid) }, new Date());
      process.stdout.write(uuid + '\n');
    }
  }),
);
