/**
 * A reconciler on a real store for tests that drive it directly (no server): no pushes, no
 * secrets, no drift timer; `opts` adds or overrides the rest.
 */
import { pino } from 'pino';
import { MdmService } from '../../src/mdm/service.js';
import { Reconciler, type ReconcilerOptions } from '../../src/reconcile/reconciler.js';
import type { Store } from '../../src/store/types.js';

export function storeReconciler(store: Store, opts: Partial<ReconcilerOptions> = {}): Reconciler {
  return new Reconciler({
    store,
    service: new MdmService(store),
    pusher: { push: async () => undefined },
    log: pino({ level: 'silent' }),
    secrets: () => undefined,
    driftIntervalMs: 0,
    ...opts,
  });
}
