/**
 * The PostgreSQL schema's migrations: versioned, forward only, each applied once in a
 * transaction of its own and recorded in `orchard_migrations`. Add one as NNN-name.ts and list it
 * here; never edit one that has shipped. Each version not yet recorded is applied, in order, so a
 * version landed after a higher one (developed side by side) still runs.
 */
import { sql as initial } from './001-initial.js';
import { sql as material } from './002-material.js';
import { sql as leases } from './003-leases.js';
import { sql as roles } from './004-roles.js';
import { sql as abmProfiles } from './005-abm-profiles.js';
import { sql as work } from './006-work.js';
import { sql as recordResult } from './007-record-result.js';
import { sql as statusCounts } from './008-status-counts.js';
import { sql as outbox } from './009-outbox.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'initial', sql: initial },
  { version: 2, name: 'material', sql: material },
  { version: 3, name: 'leases', sql: leases },
  { version: 4, name: 'roles', sql: roles },
  { version: 5, name: 'abm-profiles', sql: abmProfiles },
  { version: 6, name: 'work', sql: work },
  { version: 7, name: 'record-result', sql: recordResult },
  { version: 8, name: 'status-counts', sql: statusCounts },
  { version: 9, name: 'outbox', sql: outbox },
];

export const LATEST_SCHEMA = MIGRATIONS.at(-1)!.version;

/**
 * Why a database whose `orchard_migrations` holds `applied` is not the schema this server knows, or
 * undefined when it is. The whole set counts, not the highest: a middle migration missing (a
 * restore, a hand edit) leaves its tables out even though the latest is recorded.
 */
export function schemaMismatch(applied: Iterable<number>): string | undefined {
  const have = new Set(applied);
  const highest = Math.max(0, ...have);
  const unknown = [...have].filter((v) => !MIGRATIONS.some((m) => m.version === v)).sort((a, b) => a - b);
  const missing = MIGRATIONS.filter((m) => !have.has(m.version)).map((m) => m.version);
  if (!unknown.length && !missing.length) return undefined;
  if (unknown.length && highest > LATEST_SCHEMA) return `schema version ${highest}, this server needs ${LATEST_SCHEMA}`;
  if (unknown.length) return `schema has version ${unknown.join(', ')}, which this server does not know (it needs ${LATEST_SCHEMA})`;
  const gaps = missing.filter((v) => v < highest);
  return `schema version ${highest}${gaps.length ? ` without ${gaps.join(', ')}` : ''}, this server needs ${LATEST_SCHEMA}`;
}
