/**
 * The DeclarativeManagement check-in (declarative/protocol): `tokens`, `declaration-items`,
 * `declaration/<class>/<identifier>` and `status`, on the device channel and on user channels.
 * The answers come from the enrollment's stored sets: `declaration-items` hands the device the
 * current set and remembers it as given; a fetch is answered from the given set, so a revision
 * applied between the two does not make the device fail mid-sync.
 */
import { EventEmitter } from 'node:events';
import { Malformed, NotFound } from '../errors.js';
import type { DdmStore } from '../store/ddm.js';
import type { DdmStatus, DeclarationClass, DeclarationSet } from './model.js';
import { DECLARATION_CLASSES } from './model.js';
import { mergeStatus, parseStatusReport, statusChanged } from './status.js';
import { declarationsToken } from './tokens.js';
import { KeyedMutex } from '../util/keyed-mutex.js';

export interface DdmEvents {
  /** A status report was stored (merged). */
  status: [enrollmentId: string, status: DdmStatus, full: boolean, previous: DdmStatus | undefined];
}

/** The set of an enrollment Orchard has nothing for. */
export const EMPTY_SET_TOKEN = declarationsToken([]);

const ITEM_LISTS: Record<DeclarationClass, 'Activations' | 'Assets' | 'Configurations' | 'Management'> = {
  activation: 'Activations',
  asset: 'Assets',
  configuration: 'Configurations',
  management: 'Management',
};

const json = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8');

export class DeclarativeManagement extends EventEmitter<DdmEvents> {
  /** Status reports of one enrollment are merged one at a time. */
  private readonly perEnrollment = new KeyedMutex();

  constructor(
    readonly store: DdmStore,
    private readonly now: () => Date = () => new Date(),
  ) {
    super();
  }

  /** One DeclarativeManagement check-in of an authenticated, active enrollment; a JSON body or none. */
  async handle(enrollmentId: string, endpoint: string, data: Buffer | undefined): Promise<Buffer | undefined> {
    if (endpoint === 'tokens') {
      const set = await this.store.getDeclarationSet(enrollmentId, 'current');
      return json({ SyncTokens: { DeclarationsToken: set?.declarationsToken ?? EMPTY_SET_TOKEN, Timestamp: set?.at ?? new Date(0).toISOString() } });
    }
    if (endpoint === 'declaration-items') {
      const set = await this.store.getDeclarationSet(enrollmentId, 'current');
      if (set) await this.store.putDeclarationSet(enrollmentId, 'given', set);
      return json(items(set));
    }
    if (endpoint === 'status') {
      const report = parseStatusReport(data);
      await this.perEnrollment.run(enrollmentId, async () => {
        const previous = await this.store.getDdmStatus(enrollmentId);
        const merged = mergeStatus(previous, report, this.now());
        // A report that changes what the device's row or facts show reconciles it (facts re-evaluate selectors).
        await this.store.putDdmStatus(enrollmentId, merged, { reconcile: statusChanged(previous, merged) });
        this.emit('status', enrollmentId, merged, report.full, previous);
      });
      return undefined;
    }
    const m = /^declaration\/([a-z]+)\/(.+)$/.exec(endpoint);
    if (m) {
      const cls = m[1] as DeclarationClass;
      if (!DECLARATION_CLASSES.includes(cls)) throw new Malformed(`DeclarativeManagement: no declaration class "${cls.slice(0, 40)}"`);
      const id = m[2]!;
      const given = await this.store.getDeclarationSet(enrollmentId, 'given');
      const entry = (given ?? (await this.store.getDeclarationSet(enrollmentId, 'current')))?.entries[id];
      if (!entry || entry.class !== cls) throw new NotFound(`DeclarativeManagement: no ${cls} "${id.slice(0, 80)}" for this enrollment`);
      return json(entry.declaration);
    }
    throw new Malformed(`DeclarativeManagement: unknown Endpoint "${endpoint.slice(0, 80)}"`);
  }
}

/** The DeclarationItemsResponse of a set. */
export function items(set: DeclarationSet | undefined): {
  Declarations: Record<'Activations' | 'Assets' | 'Configurations' | 'Management', { Identifier: string; ServerToken: string }[]>;
  DeclarationsToken: string;
} {
  const lists = { Activations: [], Assets: [], Configurations: [], Management: [] } as Record<
    'Activations' | 'Assets' | 'Configurations' | 'Management',
    { Identifier: string; ServerToken: string }[]
  >;
  for (const e of Object.values(set?.entries ?? {}))
    lists[ITEM_LISTS[e.class]].push({ Identifier: e.declaration.Identifier, ServerToken: e.declaration.ServerToken });
  for (const l of Object.values(lists)) l.sort((a, b) => (a.Identifier < b.Identifier ? -1 : a.Identifier > b.Identifier ? 1 : 0));
  return { Declarations: lists, DeclarationsToken: set?.declarationsToken ?? EMPTY_SET_TOKEN };
}
