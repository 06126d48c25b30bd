/**
 * Loader pass 5, check: the linked fleet against the rules, reading it and changing nothing.
 * Selector ranges, each profile against Apple's schema (authored payloads and `.mobileconfig`
 * contents) and its size, unused profiles, identifiers shared by profiles that may reach one
 * device, and the manifests that could not be used.
 */
import {
  checkProfile,
  pathText,
  payloadIssue,
  shortText,
  validatePayload,
  validateTopLevel,
  type ManifestLookup,
  type PayloadIssue,
} from './apple/payloads.js';
import { PlistPositions } from './apple/positions.js';
import { must } from '../util/must.js';
import { formatBytes, type LoaderLimits } from './limits.js';
import { atFile, PayloadReporter, type Collector, type LoadState, type ParsedDoc } from './load-context.js';
import type { BuiltFleet } from './load-build.js';
import type { Links, ProfileFile } from './load-link.js';
import type { ManifestSet } from './manifests.js';
import { profileText } from './mobileconfig.js';
import type { BlueprintDoc, Fleet, Origin, Platform, ProfileDoc } from './model.js';
import { mayOverlap, parseRange } from './selector.js';
import type { JsonPath } from './yaml-pos.js';

type PayloadContext = { platforms: Platform[]; supervised?: boolean; manifests?: ManifestLookup };

export function checkPass(built: BuiltFleet, links: Links, c: Collector, state: LoadState, limits: LoaderLimits, manifests: ManifestSet | undefined): void {
  const { fleet, parsedOf } = built;
  const parsed = (doc: object) => must(parsedOf.get(doc), 'the parsed document of a built one');
  for (const b of fleet.blueprints.values()) checkSelectors(b, parsed(b), c, state);
  const reporter = new PayloadReporter(c);
  for (const p of fleet.profiles.values()) {
    const d = parsed(p);
    state.file = d.file;
    const users = links.usedBy.get(p.name) ?? [];
    const ctx: PayloadContext = { ...payloadContext(users), manifests };
    const file = links.files.get(p);
    if (file) checkProfileFile(p, file, ctx, c, limits, reporter);
    else if (p.file === undefined) checkProfileSize(p, authoredSize(p), c.at(d, ['spec', 'payloads']), c, limits);
    checkAuthoredPayloads(p, d, ctx, c, reporter);
    if (users.length === 0) c.add('warning', 'unused-profile', p.origin, `profile "${p.name}" is not used by any blueprint`);
  }
  state.file = '.';
  checkIdentifiers(fleet, links.usedBy, c, limits);
  if (manifests && manifests.problems.length > 0) {
    const shown = manifests.problems.slice(0, 3).join('; ');
    c.add(
      'warning',
      'manifests',
      atFile('.'),
      `${manifests.problems.length} manifest file${manifests.problems.length === 1 ? '' : 's'} in ${manifests.dir} could not be used: ${shown}${manifests.problems.length > 3 ? '; …' : ''}`,
    );
  }
}

function checkSelectors(b: BlueprintDoc, d: ParsedDoc, c: Collector, state: LoadState): void {
  state.file = d.file;
  for (const [path, range] of [
    [['spec', 'selector', 'osVersion'], b.selector.osVersion],
    [['spec', 'selector', 'exclude', 'osVersion'], b.selector.exclude?.osVersion],
  ] as const) {
    if (range === undefined) continue;
    try {
      parseRange(range);
    } catch (err) {
      c.add('error', 'selector', c.at(d, [...path]), `osVersion: ${(err as Error).message}`);
    }
  }
}

/** Where a profile may land, from the blueprints that use it: for Apple's platform and supervision warnings. */
function payloadContext(users: BlueprintDoc[]): { platforms: Platform[]; supervised?: boolean } {
  const supervised = users.length > 0 && users.every((b) => b.selector.supervised === true) ? true : undefined;
  const each = users.map((b) => b.selector.platforms);
  if (users.length === 0 || each.some((x) => x === undefined)) return { platforms: [], supervised };
  return { platforms: [...new Set(each.flatMap((x) => x ?? []))], supervised };
}

function checkAuthoredPayloads(p: ProfileDoc, d: ParsedDoc, ctx: PayloadContext, c: Collector, reporter: PayloadReporter): void {
  p.payloads?.forEach((payload, i) => {
    const base: JsonPath = ['spec', 'payloads', i];
    for (const issue of validatePayload(payload.type, payload.keys, { ...ctx, mode: 'authored' })) {
      const aboutType =
        issue.path.length === 0 && (issue.rule === 'apple-payload-type' || issue.rule === 'apple-payload-type-typo' || issue.rule === 'custom-preferences');
      const path = aboutType ? [...base, 'type'] : [...base, 'keys', ...issue.path];
      reporter.add(issue, c.at(d, path, issue.rule.endsWith('unknown-key')));
    }
  });
}

/** A `.mobileconfig`'s size, repeated keys, top-level keys and each payload, against Apple's schema; findings at their line in the file. */
function checkProfileFile(p: ProfileDoc, file: ProfileFile, ctx: PayloadContext, c: Collector, limits: LoaderLimits, reporter: PayloadReporter): void {
  const { inRepo, bytes, profile, signed } = file;
  // A signed file is installed as it is; an unsigned one is rebuilt from its plist, about as large.
  checkProfileSize(p, bytes.length, file.at, c, limits);
  const positions = xmlPositions(bytes, limits.depth);
  // A signed file's lines are those of the XML inside the signature: no editor shows them.
  const where = (path: (string | number)[]): Origin => ({ file: inRepo, ...(positions && !signed ? positions.find(path) : { line: 1, col: 1 }) });
  const report = (issue: PayloadIssue) => reporter.add(issue, where(issue.path), `${issue.path.length ? pathText(issue.path) + ': ' : ''}${issue.message}`);
  for (const dup of positions?.duplicates ?? []) {
    // CFPropertyList keeps the last value of a repeated key, as our parser does.
    const key = shortText(String(dup.path[dup.path.length - 1]));
    report(payloadIssue('plist-duplicate-key', dup.path, `key '${key}' appears again in this dict: the device keeps this value and ignores the earlier one`));
  }
  const numberTag = (prefix: (string | number)[]) => positions && ((path: readonly (string | number)[]) => positions.numberTag([...prefix, ...path]));
  for (const issue of validateTopLevel(profile, { ...ctx, numberTag: numberTag([]) })) report(issue);
  for (const issue of checkProfile(profile)) report(issue);
  const content = Array.isArray(profile.PayloadContent) ? profile.PayloadContent : [];
  content.forEach((payload, i) => {
    if (!payload || typeof payload !== 'object' || Array.isArray(payload) || payload instanceof Uint8Array || payload instanceof Date) return;
    const keys = payload as Record<string, unknown>;
    const type = keys.PayloadType;
    if (typeof type !== 'string' || type === '') {
      report(payloadIssue('apple-required-key', ['PayloadContent', i], 'a payload without PayloadType: the device refuses the profile'));
      return;
    }
    for (const issue of validatePayload(type, keys, { ...ctx, mode: 'complete', numberTag: numberTag(['PayloadContent', i]) }))
      report({ ...issue, path: ['PayloadContent', i, ...issue.path] });
  });
}

/** Positions of an XML profile's values (in the text readProfile parsed); undefined for a binary plist. */
function xmlPositions(bytes: Buffer, maxDepth: number): PlistPositions | undefined {
  try {
    const text = profileText(bytes, maxDepth);
    return text === undefined ? undefined : new PlistPositions(text);
  } catch {
    // readProfile read these bytes; should the second reading differ, findings point at line 1.
    return undefined;
  }
}

/**
 * Devices (and the push-triggered sessions that fetch InstallProfile) handle multi-MB profiles
 * badly: a warning above profileWarnBytes, an error above profileMaxBytes.
 */
function checkProfileSize(p: ProfileDoc, size: number, at: Origin, c: Collector, limits: LoaderLimits): void {
  if (size > limits.profileMaxBytes) {
    c.add(
      'error',
      'profile-size',
      at,
      `profile "${p.name}" is about ${formatBytes(size)} rendered, more than the limit of ${formatBytes(limits.profileMaxBytes)} (limit profileMaxBytes)`,
    );
  } else if (size > limits.profileWarnBytes) {
    c.add(
      'warning',
      'profile-size',
      at,
      `profile "${p.name}" is about ${formatBytes(size)} rendered; devices handle profiles over ${formatBytes(limits.profileWarnBytes)} badly (slow or failed installs): split it or move large data out`,
    );
  }
}

/**
 * The size of the XML plist an authored profile renders to, variables as written: close enough
 * for the size warning, without rendering (which needs a device).
 */
function authoredSize(p: ProfileDoc): number {
  const esc = (s: string) => Buffer.byteLength(s, 'utf8') + 4 * (s.match(/[<>&]/g)?.length ?? 0);
  // Iterative: aliases may share subtrees, so a value may be visited more than once (its size counts each time).
  let size = 600; // the plist header and the profile's own keys
  const stack: [unknown, number][] = (p.payloads ?? []).map((x) => [x.keys, 2]);
  for (let top = stack.pop(); top !== undefined; top = stack.pop()) {
    const [v, depth] = top;
    size += depth * 2 + 1; // indentation and newline
    if (typeof v === 'string') size += 17 + esc(v);
    else if (typeof v === 'number') size += 21 + String(v).length;
    else if (typeof v === 'boolean') size += 8;
    else if (Array.isArray(v)) {
      size += 16 + depth * 2;
      for (const x of v) stack.push([x, depth + 1]);
    } else if (v && typeof v === 'object') {
      size += 14 + depth * 2;
      for (const [k, x] of Object.entries(v)) {
        size += (depth + 1) * 2 + 12 + esc(k);
        stack.push([x, depth + 1]);
      }
    } else size += 17;
  }
  return size + 200 * (p.payloads?.length ?? 0);
}

/**
 * One identifier, one profile per device. Two profiles may share an identifier (variants for
 * disjoint sets of devices), but if any device could be selected for both, the device would get
 * one, then the other, forever: that is an error naming both blueprints.
 */
function checkIdentifiers(fleet: Fleet, usedBy: Map<string, BlueprintDoc[]>, c: Collector, limits: LoaderLimits): void {
  const byId = new Map<string, ProfileDoc[]>();
  for (const p of fleet.profiles.values()) {
    if (!p.identifier) continue;
    const list = byId.get(p.identifier) ?? [];
    list.push(p);
    byId.set(p.identifier, list);
  }
  for (const [id, profiles] of byId) {
    if (profiles.length < 2) continue;
    const extra = profiles[limits.profilesPerIdentifier];
    if (extra) {
      // Every pair is compared below: thousands of variants would take quadratic time.
      const why = `${profiles.length} profiles share identifier ${id}; at most ${limits.profilesPerIdentifier} may (limit profilesPerIdentifier)`;
      c.add('error', 'limit-identifier', extra.origin, why);
      continue;
    }
    profiles.forEach((a, i) => profiles.slice(i + 1).forEach((b) => checkIdentifierPair(id, a, b, usedBy, c)));
  }
}

function checkIdentifierPair(id: string, a: ProfileDoc, b: ProfileDoc, usedBy: Map<string, BlueprintDoc[]>, c: Collector): void {
  const ua = usedBy.get(a.name) ?? [];
  const ub = usedBy.get(b.name) ?? [];
  const clash = ua.flatMap((x) => ub.filter((y) => mayOverlap(x.selector, y.selector)).map((y) => [x, y] as const))[0];
  if (clash) {
    c.add(
      'error',
      'identifier-conflict',
      b.origin,
      `profiles "${a.name}" and "${b.name}" share identifier ${id}, and blueprints "${clash[0].name}" and "${clash[1].name}" can select the same device: it would be reinstalled back and forth. Give them different identifiers or make the selectors disjoint`,
    );
  } else if (ua.length === 0 || ub.length === 0) {
    c.add('warning', 'identifier-duplicate', b.origin, `profiles "${a.name}" and "${b.name}" share identifier ${id}`);
  }
}
