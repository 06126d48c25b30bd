/**
 * The loader's declaration pass: `kind: Declaration` documents and the blueprints' `declarations`
 * and `softwareUpdate`, checked against Apple's declarative schema and each other. It adds the
 * declarations Orchard generates (a blueprint's software update and activation, the status
 * subscriptions its reports need) and sets each blueprint's `deliver` list.
 */
import type { BlueprintDoc, Fleet, Origin, Platform } from '../gitops/model.js';
import { mayOverlap } from '../gitops/selector.js';
import type { JsonPath } from '../gitops/yaml-pos.js';
import type { DeclarationChannel, DeclarationDoc, SoftwareUpdateSpec } from './model.js';
import { classOfType, DDM_RULES, declarationSchema, validateDeclaration, valuesAt, type DdmIssue, type DdmRule } from './schema.js';

export interface PassContext {
  add(severity: 'error' | 'warning' | 'info', rule: string, at: Origin, message: string): void;
  /** Where a path of a repository document (declaration or blueprint) is. */
  at(doc: object, path: JsonPath, key?: boolean): Origin;
  /** " (did you mean "x"?)" or "". */
  suggest(name: string, options: string[]): string;
  /** Checks the variables and secrets of an authored value, recording them on `target`. */
  variables(doc: object, value: unknown, path: JsonPath, target: { variables: string[]; secrets: string[] }): void;
}

export const LEGACY_TYPE = 'com.apple.configuration.legacy';
export const SOFTWARE_UPDATE_TYPE = 'com.apple.configuration.softwareupdate.enforcement.specific';
export const STATUS_SUBSCRIPTIONS_TYPE = 'com.apple.configuration.management.status-subscriptions';
export const ACTIVATION_TYPE = 'com.apple.activation.simple';
export const STATUS_SUBSCRIPTIONS = 'orchard/status-subscriptions';
/** What Orchard's reports read from devices (issue 14: OS version and build, software update state). */
export const SUBSCRIBED_STATUS_ITEMS = [
  'device.operating-system.version',
  'device.operating-system.build-version',
  'device.model.identifier',
  'device.model.marketing-name',
  'device.identifier.serial-number',
  'softwareupdate.pending-version',
  'softwareupdate.install-state',
  'softwareupdate.failure-reason',
];

export function buildDeclaration(name: string, origin: Origin, spec: Record<string, unknown>): DeclarationDoc {
  const type = spec.Type as string;
  return {
    kind: 'Declaration',
    name,
    origin,
    type,
    identifier: (spec.Identifier as string | undefined) ?? name,
    class: classOfType(type)!, // the JSON Schema requires com.apple.<class>.
    channel: (spec.channel as DeclarationChannel | undefined) ?? 'device',
    payload: (spec.Payload as Record<string, unknown> | undefined) ?? {},
    ...(typeof spec.profile === 'string' ? { profile: spec.profile } : {}),
    variables: [],
    secrets: [],
  };
}

/** The payload of a blueprint's software update declaration. */
export function softwareUpdatePayload(s: SoftwareUpdateSpec): Record<string, unknown> {
  return {
    TargetOSVersion: s.targetOSVersion,
    ...(s.targetBuildVersion !== undefined ? { TargetBuildVersion: s.targetBuildVersion } : {}),
    TargetLocalDateTime: s.deadline,
    ...(s.detailsURL !== undefined ? { DetailsURL: s.detailsURL } : {}),
  };
}

function generated(name: string, origin: Origin, type: string, identifier: string, payload: Record<string, unknown>): DeclarationDoc {
  return {
    kind: 'Declaration',
    name,
    origin,
    type,
    identifier,
    class: classOfType(type)!,
    channel: 'device',
    payload,
    variables: [],
    secrets: [],
    generated: true,
  };
}

export function checkDeclarations(fleet: Fleet, pc: PassContext): void {
  const repoDocs = [...fleet.declarations.values()];
  const byIdentifier = new Map<string, DeclarationDoc[]>();
  const index = (d: DeclarationDoc) => byIdentifier.set(d.identifier, [...(byIdentifier.get(d.identifier) ?? []), d]);
  repoDocs.forEach(index);
  const names = repoDocs.map((d) => d.name);
  /** Where to report about a declaration: its own document, or the blueprint that generated it. */
  const owner = new Map<DeclarationDoc, { doc: object; path: JsonPath }>();
  for (const d of repoDocs) owner.set(d, { doc: d, path: ['spec'] });
  const issue = (d: DeclarationDoc, rule: DdmRule, path: JsonPath, message: string, key = false) => {
    const o = owner.get(d)!;
    pc.add(DDM_RULES[rule].severity, rule, pc.at(o.doc, [...o.path, ...path], key), message);
  };

  // Blueprints: references, generated declarations, what each delivers.
  const usedBy = new Map<DeclarationDoc, BlueprintDoc[]>();
  let subscriptions: DeclarationDoc | undefined;
  for (const b of fleet.blueprints.values()) {
    const listed: DeclarationDoc[] = [];
    b.declarations.forEach((name, i) => {
      const d = fleet.declarations.get(name);
      if (d) listed.push(d);
      else pc.add('error', 'ref-missing-declaration', pc.at(b, ['spec', 'declarations', i]), `declaration "${name}" is not defined${pc.suggest(name, names)}`);
    });
    const made: DeclarationDoc[] = [];
    if (b.softwareUpdate) {
      const at = pc.at(b, ['spec', 'softwareUpdate']);
      const su = generated(
        `blueprint/${b.name}/softwareupdate`,
        at,
        SOFTWARE_UPDATE_TYPE,
        `orchard.blueprint.${b.name}.softwareupdate`,
        softwareUpdatePayload(b.softwareUpdate),
      );
      owner.set(su, { doc: b, path: ['spec', 'softwareUpdate'] });
      if (!validLocalDateTime(b.softwareUpdate.deadline))
        pc.add('error', 'software-update', pc.at(b, ['spec', 'softwareUpdate', 'deadline']), `deadline "${b.softwareUpdate.deadline}" is not a date and time`);
      made.push(su);
    }
    if (listed.length + made.length === 0) continue;
    if (!subscriptions) {
      subscriptions = generated(STATUS_SUBSCRIPTIONS, pc.at(b, ['spec']), STATUS_SUBSCRIPTIONS_TYPE, 'orchard.status-subscriptions', {
        StatusItems: SUBSCRIBED_STATUS_ITEMS.map((Name) => ({ Name })),
      });
      owner.set(subscriptions, { doc: b, path: ['spec'] });
      fleet.declarations.set(subscriptions.name, subscriptions);
      index(subscriptions);
    }
    made.push(subscriptions);
    // The repository writes its own activation: Orchard's activates only what Orchard made.
    const ownActivation = listed.some((d) => d.class === 'activation');
    const configs = [...(ownActivation ? [] : listed.filter((d) => d.class === 'configuration')), ...made];
    const activation = generated(`blueprint/${b.name}/activation`, pc.at(b, ['spec']), ACTIVATION_TYPE, `orchard.blueprint.${b.name}.activation`, {
      StandardConfigurations: [...new Set(configs.map((d) => d.identifier))],
    });
    owner.set(activation, { doc: b, path: ['spec'] });
    made.push(activation);
    for (const d of made) {
      if (d === subscriptions) continue;
      fleet.declarations.set(d.name, d);
      index(d);
    }
    b.deliver = [...new Set([...listed, ...made].map((d) => d.name))];
  }

  // The closure of what each blueprint delivers: an activation's configurations, a configuration's assets.
  const refsOf = (d: DeclarationDoc): DeclarationDoc[] => {
    const out: DeclarationDoc[] = [];
    const pick = (id: unknown) => {
      if (typeof id === 'string') out.push(...(byIdentifier.get(id) ?? []));
    };
    if (d.class === 'activation' && Array.isArray(d.payload.StandardConfigurations)) d.payload.StandardConfigurations.forEach(pick);
    for (const ref of declarationSchema(d.type)?.assetRefs ?? []) for (const v of valuesAt(d.payload, ref.path)) pick(v.value);
    return out;
  };
  for (const b of fleet.blueprints.values()) {
    const seen = new Set(b.deliver.map((n) => fleet.declarations.get(n)!));
    const queue = [...seen];
    while (queue.length) {
      for (const r of refsOf(queue.pop()!)) {
        if (seen.has(r)) continue;
        seen.add(r);
        queue.push(r);
      }
    }
    b.deliver = [...seen].map((d) => d.name);
    for (const d of seen) usedBy.set(d, [...(usedBy.get(d) ?? []), b]);
  }

  // Each declaration: schema, references, variables, identifiers.
  for (const d of fleet.declarations.values()) {
    const users = usedBy.get(d) ?? [];
    const ctx = where(users);
    if (!d.generated) {
      if (Buffer.byteLength(d.identifier, 'utf8') > 64)
        issue(d, 'ddm-identifier', ['Identifier'], `Identifier is ${Buffer.byteLength(d.identifier, 'utf8')} bytes; Apple allows at most 64`);
      pc.variables(d, d.payload, ['spec', 'Payload'], d);
      if (users.length === 0) pc.add('warning', 'unused-declaration', d.origin, `declaration "${d.name}" is not used by any blueprint`);
    }
    let payload = d.payload;
    if (d.type === LEGACY_TYPE || d.profile !== undefined) {
      if (d.type !== LEGACY_TYPE) issue(d, 'ddm-legacy', ['profile'], `profile: is only for ${LEGACY_TYPE}`, true);
      else if (d.profile !== undefined) {
        if (payload.ProfileURL !== undefined) issue(d, 'ddm-legacy', ['Payload', 'ProfileURL'], 'ProfileURL is written by Orchard when profile: is set');
        if (!fleet.profiles.has(d.profile))
          pc.add(
            'error',
            'ref-missing-profile',
            pc.at(d, ['spec', 'profile']),
            `profile "${d.profile}" is not defined${pc.suggest(d.profile, [...fleet.profiles.keys()])}`,
          );
        payload = { ...payload, ProfileURL: 'https://orchard.invalid/placeholder' };
      } else if (payload.ProfileURL === undefined)
        issue(d, 'ddm-legacy', ['Payload'], 'a legacy declaration needs profile: (a Profile document) or Payload.ProfileURL');
    }
    for (const i of validateDeclaration(d.type, payload, { ...ctx, channel: d.channel })) report(d, i, issue, pc, owner);
    checkReferences(d, byIdentifier, issue);
  }
  for (const [id, docs] of byIdentifier) {
    if (docs.length < 2) continue;
    for (let i = 0; i < docs.length; i++)
      for (let j = i + 1; j < docs.length; j++) {
        const a = docs[i]!;
        const b = docs[j]!;
        const clash = (usedBy.get(a) ?? []).some((x) => (usedBy.get(b) ?? []).some((y) => x === y || mayOverlap(x.selector, y.selector)));
        if (clash || a.generated || b.generated)
          issue(b, 'ddm-identifier', ['Identifier'], `declarations "${a.name}" and "${b.name}" share Identifier ${id} and can reach the same device`);
      }
  }
}

function report(
  d: DeclarationDoc,
  i: DdmIssue,
  issue: (d: DeclarationDoc, rule: DdmRule, path: JsonPath, message: string, key?: boolean) => void,
  pc: PassContext,
  owner: Map<DeclarationDoc, { doc: object; path: JsonPath }>,
): void {
  const o = owner.get(d)!;
  const path: JsonPath = d.generated ? o.path : i.rule === 'ddm-type' ? [...o.path, 'Type'] : [...o.path, 'Payload', ...i.path];
  if (i.rule in DDM_RULES && !d.generated) issue(d, i.rule as DdmRule, path.slice(o.path.length), i.message, i.rule.endsWith('unknown-key'));
  else pc.add(i.severity, i.rule, pc.at(o.doc, path, i.rule.endsWith('unknown-key')), d.generated ? `${d.type}: ${i.message}` : i.message);
}

function checkReferences(
  d: DeclarationDoc,
  byIdentifier: Map<string, DeclarationDoc[]>,
  issue: (d: DeclarationDoc, rule: DdmRule, path: JsonPath, message: string) => void,
): void {
  if (d.class === 'activation' && Array.isArray(d.payload.StandardConfigurations)) {
    d.payload.StandardConfigurations.forEach((id, i) => {
      if (typeof id !== 'string') return;
      const found = byIdentifier.get(id) ?? [];
      if (!found.some((x) => x.class === 'configuration'))
        issue(
          d,
          'ddm-reference',
          ['Payload', 'StandardConfigurations', i],
          `no configuration declaration has Identifier "${id}"${found.length ? ` (${found[0]!.name} is a ${found[0]!.class})` : ''}`,
        );
    });
  }
  for (const ref of declarationSchema(d.type)?.assetRefs ?? []) {
    for (const v of valuesAt(d.payload, ref.path)) {
      if (typeof v.value !== 'string') continue;
      const found = byIdentifier.get(v.value) ?? [];
      if (!found.some((x) => x.class === 'asset' && ref.types.includes(x.type)))
        issue(
          d,
          'ddm-reference',
          ['Payload', ...v.path],
          `no asset declaration of type ${ref.types.join(' or ')} has Identifier "${v.value}"${found.length ? ` (${found[0]!.name} is ${found[0]!.type})` : ''}`,
        );
    }
  }
}

/** Platforms and supervision of the blueprints that deliver a declaration (as for profiles). */
function where(users: BlueprintDoc[]): { platforms: Platform[]; supervised?: boolean } {
  const supervised = users.length > 0 && users.every((b) => b.selector.supervised === true) ? true : undefined;
  if (users.length === 0 || users.some((b) => !b.selector.platforms)) return { platforms: [], supervised };
  return { platforms: [...new Set(users.flatMap((b) => b.selector.platforms!))], supervised };
}

function validLocalDateTime(s: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})$/.exec(s);
  if (!m) return false;
  const [y, mo, d, h, mi, se] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const t = new Date(Date.UTC(y, mo - 1, d, h, mi, se));
  return t.getUTCFullYear() === y && t.getUTCMonth() === mo - 1 && t.getUTCDate() === d && h < 24 && mi < 60 && se < 60;
}
