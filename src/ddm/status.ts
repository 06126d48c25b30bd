/**
 * DDM status reports (declarative/protocol/statusreport.yaml): parsing what the device sends,
 * merging it into what it sent before (a FullReport replaces, others update), and the phase of
 * each declaration the device should have.
 */
import { Malformed } from '../errors.js';
import type { DdmStatus, DeclarationClass, DeclarationPhase, DeclarationReport, SetEntry, StatusReason } from './model.js';
import { isStatusItem } from './schema.js';
import type { DeviceRecord } from '../store/types.js';

export interface StatusReport {
  full: boolean;
  /** Present when the report carries management.declarations. */
  declarations?: Record<string, DeclarationReport>;
  items: Record<string, unknown>;
  errors: { item: string; reasons?: StatusReason[] }[];
}

const CLASS_OF_LIST: Record<string, DeclarationClass> = {
  activations: 'activation',
  assets: 'asset',
  configurations: 'configuration',
  management: 'management',
};
const VALID = new Set(['valid', 'invalid', 'unknown']);
const isDict = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** A status body as the device sends it (JSON). Refuses what is not a status report, with a 400. */
export function parseStatusReport(body: Buffer | undefined): StatusReport {
  let json: unknown;
  try {
    json = JSON.parse((body ?? Buffer.alloc(0)).toString('utf8'));
  } catch {
    throw new Malformed('DeclarativeManagement status: Data is not JSON');
  }
  if (!isDict(json) || !isDict(json.StatusItems)) throw new Malformed('DeclarativeManagement status: StatusItems missing or not a dictionary');
  const out: StatusReport = { full: json.FullReport === true, items: {}, errors: [] };
  const walk = (v: unknown, name: string) => {
    if (name === 'management.declarations') out.declarations = declarationsOf(v);
    else if (isDict(v) && !isStatusItem(name)) for (const [k, x] of Object.entries(v)) walk(x, name ? `${name}.${k}` : k);
    else if (name) out.items[name] = v;
  };
  walk(json.StatusItems, '');
  if (Array.isArray(json.Errors)) {
    for (const e of json.Errors) {
      if (isDict(e) && typeof e.StatusItem === 'string')
        out.errors.push({ item: e.StatusItem, ...(Array.isArray(e.Reasons) ? { reasons: reasons(e.Reasons) } : {}) });
    }
  }
  return out;
}

function declarationsOf(v: unknown): Record<string, DeclarationReport> {
  if (!isDict(v)) throw new Malformed('DeclarativeManagement status: management.declarations is not a dictionary');
  const out: Record<string, DeclarationReport> = {};
  for (const [list, cls] of Object.entries(CLASS_OF_LIST)) {
    const items = v[list];
    if (items === undefined) continue;
    if (!Array.isArray(items)) throw new Malformed(`DeclarativeManagement status: management.declarations.${list} is not an array`);
    for (const d of items) {
      if (!isDict(d) || typeof d.identifier !== 'string' || typeof d['server-token'] !== 'string')
        throw new Malformed(`DeclarativeManagement status: an entry of management.declarations.${list} without identifier or server-token`);
      out[d.identifier] = {
        class: cls,
        serverToken: d['server-token'],
        active: d.active === true,
        valid: typeof d.valid === 'string' && VALID.has(d.valid) ? (d.valid as DeclarationReport['valid']) : 'unknown',
        ...(Array.isArray(d.reasons) && d.reasons.length ? { reasons: reasons(d.reasons) } : {}),
      };
    }
  }
  return out;
}

function reasons(list: unknown[]): StatusReason[] {
  return list.filter(isDict).map((r) => ({
    code: String(r.code ?? r.Code ?? ''),
    ...(typeof (r.description ?? r.Description) === 'string' ? { description: String(r.description ?? r.Description) } : {}),
    ...(isDict(r.details ?? r.Details) ? { details: (r.details ?? r.Details) as Record<string, unknown> } : {}),
  }));
}

/** The enrollment's status after `report`: a FullReport replaces everything, others update what they name. */
export function mergeStatus(prev: DdmStatus | undefined, report: StatusReport, at: Date): DdmStatus {
  const now = at.toISOString();
  if (report.full || !prev) {
    return {
      declarations: report.declarations ?? (report.full ? {} : {}),
      items: report.items,
      errors: report.errors,
      at: now,
      ...(report.full ? { fullReportAt: now } : {}),
    };
  }
  return {
    declarations: { ...prev.declarations, ...report.declarations },
    items: { ...prev.items, ...report.items },
    errors: report.errors,
    at: now,
    ...(prev.fullReportAt ? { fullReportAt: prev.fullReportAt } : {}),
  };
}

export interface DeclarationState {
  phase: DeclarationPhase;
  reasons?: StatusReason[];
}

/**
 * pending until the device reports this very ServerToken; then verified when valid (and active,
 * for activations and configurations: assets and management declarations are not activated),
 * failed when invalid, with Apple's reasons.
 */
export function phaseOf(entry: SetEntry, status: DdmStatus | undefined): DeclarationState {
  const r = status?.declarations[entry.declaration.Identifier];
  if (!r || r.serverToken !== entry.declaration.ServerToken) return { phase: 'pending' };
  const needsActive = entry.class === 'activation' || entry.class === 'configuration';
  if (r.valid === 'invalid') return { phase: 'failed', ...(r.reasons ? { reasons: r.reasons } : {}) };
  if (r.valid === 'valid' && (r.active || !needsActive)) return { phase: 'verified' };
  // Valid but not active (an activation's predicate, a missing asset): its reasons say why.
  return r.reasons?.some((x) => x.code.startsWith('Error.'))
    ? { phase: 'failed', reasons: r.reasons }
    : { phase: 'pending', ...(r.reasons ? { reasons: r.reasons } : {}) };
}

/** Status items that are device facts (subscribed in orchard.status-subscriptions), by the fact they update. */
export const FACT_ITEMS: Readonly<Record<string, string>> = {
  'device.operating-system.version': 'OSVersion',
  'device.operating-system.build-version': 'BuildVersion',
  'device.model.identifier': 'Model',
  'device.model.marketing-name': 'ModelName',
  'device.identifier.serial-number': 'SerialNumber',
};

/** The facts a status report gave, as DeviceInformation names them. */
export function ddmFacts(status: Pick<DdmStatus, 'items'> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [item, fact] of Object.entries(FACT_ITEMS)) {
    const v = status?.items[item];
    if (typeof v === 'string' && v !== '') out[fact] = v;
  }
  return out;
}

/**
 * The device as selectors and variables should see it: what it reported over DDM laid over its
 * DeviceInformation when the DDM report is the newer one, so an OS update the device reports
 * over DDM re-evaluates selectors without DeviceInformation polling.
 */
export function withDdmFacts<D extends Pick<DeviceRecord, 'reported'>>(device: D, status: DdmStatus | undefined): D {
  if (!status) return device;
  // What it said of its declarations, for the Setup Assistant items (src/reconcile/desired.ts).
  const Declarations = {
    at: status.at,
    commandUUID: 'DeclarativeManagement',
    value: Object.fromEntries(Object.entries(status.declarations).map(([id, d]) => [id, { active: d.active, valid: d.valid }])),
  };
  return withFacts({ ...device, reported: { ...device.reported, Declarations } }, status);
}

function withFacts<D extends Pick<DeviceRecord, 'reported'>>(device: D, status: DdmStatus): D {
  const facts = ddmFacts(status);
  if (Object.keys(facts).length === 0) return device;
  const info = device.reported.DeviceInformation;
  if (info && Date.parse(info.at) > Date.parse(status.at)) return device;
  const value = { ...(info?.value ?? {}), ...facts };
  if (info && Object.entries(facts).every(([k, v]) => info.value[k] === v)) return device;
  return {
    ...device,
    reported: { ...device.reported, DeviceInformation: { at: status.at, commandUUID: info?.commandUUID ?? 'DeclarativeManagement', value } },
  };
}

/** Whether a report changed what the device's row or its facts show (declarations, facts, software update). */
export function statusChanged(prev: DdmStatus | undefined, next: DdmStatus): boolean {
  const shown = (s: DdmStatus | undefined) =>
    JSON.stringify([
      s?.declarations ?? {},
      ddmFacts(s),
      Object.entries(s?.items ?? {})
        .filter(([k]) => k.startsWith('softwareupdate.'))
        .sort(([a], [b]) => (a < b ? -1 : 1)),
    ]);
  return shown(prev) !== shown(next);
}
