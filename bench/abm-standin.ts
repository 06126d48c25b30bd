/**
 * The device enrollment stand-in (src/sim/dep.ts) in a process of its own for bench/abm-sync.ts, so
 * the memory measured there is Orchard's sync alone. Over IPC: `{ seed: N }` lists N devices and
 * answers `{ url }`; `{ modify: N }` changes N of them (one sync's worth) and answers `{ modified }`.
 */
import { DepStandin } from '../src/sim/dep.js';

export const BENCH_CREDENTIALS = { consumerKey: 'CK_bench', consumerSecret: 'CS_bench', accessToken: 'AT_bench', accessSecret: 'AS_bench' };

export const benchSerial = (i: number): string => `C02${String(i).padStart(9, '0')}`;

async function main(): Promise<void> {
  const standin = await new DepStandin({ credentials: BENCH_CREDENTIALS }).start();
  let devices = 0;
  process.on('message', (m: { seed?: number; modify?: number }) => {
    if (m.seed !== undefined) {
      const models = ['MacBook Pro', 'MacBook Air', 'iMac', 'iPad Pro', 'iPhone 16'];
      devices = m.seed;
      for (let i = 0; i < devices; i++) {
        standin.add({
          serial_number: benchSerial(i),
          model: models[i % models.length],
          os: i % 2 ? 'OSX' : 'iOS',
          description: 'bench device',
          color: 'SILVER',
          device_assigned_by: 'buyer@example.com',
        });
      }
      process.send!({ url: standin.url });
    } else if (m.modify !== undefined) {
      for (let i = 0; i < m.modify; i++) standin.modify(benchSerial((i * 97) % devices), { color: 'SPACE GRAY' });
      process.send!({ modified: m.modify });
    }
  });
  process.on('disconnect', () => void standin.stop().then(() => process.exit(0)));
}

if (process.send) void main();
