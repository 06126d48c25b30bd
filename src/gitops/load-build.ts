/**
 * Loader pass 3, build: each valid document becomes its kind's model document (defaults
 * applied), names unique per kind, and the DeviceGroups' tags merged per serial. A new kind adds
 * its builder to BUILDERS (its schema is in src/schema/fleet.ts).
 */
import { buildDeclaration } from '../ddm/load.js';
import type { DeclarationDoc } from '../ddm/model.js';
import { SKIP_KEYS } from '../abm/apple/skip-keys.js';
import type {
  BlueprintSpecValue,
  DeviceGroupSpecValue,
  EnrollmentProfileSpecValue,
  Kind,
  MetadataValue,
  ProfileSpecValue,
  SecretSpecValue,
} from '../schema/fleet.js';
import type { Collector, LoadState, ParsedDoc } from './load-context.js';
import type { ValidDoc } from './load-schema.js';
import type { BlueprintDoc, DeviceGroupDoc, EnrollmentProfileDoc, Fleet, Origin, ProfileDoc, Rollout, SecretDoc } from './model.js';
import type { JsonPath } from './yaml-pos.js';
import { parseDuration } from '../config.js';

export interface BuiltFleet {
  fleet: Fleet;
  /** Each built document's YAML, for positions in later passes. */
  parsedOf: Map<object, ParsedDoc>;
}

type FleetMaps = { [K in keyof Fleet]: Fleet[K] extends Map<string, infer _> ? K : never }[keyof Fleet];

/** An error about the document being built, at a path inside its spec. */
type Fail = (rule: string, path: JsonPath, message: string) => void;

interface Builder<Spec, Doc> {
  /** The Fleet map documents of this kind go to. */
  map: FleetMaps;
  build(name: string, origin: Origin, spec: Spec, fail: Fail): Doc;
}

const BUILDERS: { [K in Kind]: Builder<never, { origin: Origin }> } = {
  Profile: {
    map: 'profiles',
    build: (name, origin, spec: ProfileSpecValue): ProfileDoc => ({
      kind: 'Profile',
      name,
      origin,
      // A profile made from a file takes its identifier from the file (the link pass).
      identifier: spec.identifier as string,
      displayName: spec.displayName,
      description: spec.description,
      organization: spec.organization,
      scope: spec.scope ?? 'System',
      payloads: spec.payloads?.map((p) => ({ type: p.type, keys: p.keys ?? {} })),
      file: spec.file,
      variables: [],
      secrets: [],
    }),
  },
  Blueprint: {
    map: 'blueprints',
    build: (name, origin, spec: BlueprintSpecValue, fail): BlueprintDoc => ({
      kind: 'Blueprint',
      name,
      origin,
      selector: spec.selector,
      profiles: spec.profiles ?? [],
      declarations: spec.declarations ?? [],
      softwareUpdate: spec.softwareUpdate,
      deliver: [],
      prune: spec.prune ?? true,
      suspend: spec.suspend ?? false,
      setup: spec.setup ?? false,
      rollout: spec.rollout && rolloutOf(spec.rollout, (message, key) => fail('rollout', ['rollout', ...(key ? [key] : [])], message)),
    }),
  },
  DeviceGroup: {
    map: 'deviceGroups',
    build: (name, origin, spec: DeviceGroupSpecValue): DeviceGroupDoc => ({
      kind: 'DeviceGroup',
      name,
      origin,
      devices: spec.devices.map((x) => ({ serial: x.serial, tags: x.tags ?? [] })),
    }),
  },
  Secret: {
    map: 'secrets',
    build: (name, origin, spec: SecretSpecValue): SecretDoc => ({ kind: 'Secret', name, origin, description: spec.description }),
  },
  Declaration: {
    map: 'declarations',
    build: (name, origin, spec: Record<string, unknown>): DeclarationDoc => buildDeclaration(name, origin, spec),
  },
  EnrollmentProfile: {
    map: 'enrollmentProfiles',
    build: (name, origin, spec: EnrollmentProfileSpecValue, fail): EnrollmentProfileDoc => {
      const { assign, profile_name, ...fields } = spec;
      (spec.skip_setup_items ?? []).forEach((key, i) => {
        if (!SKIP_KEYS.includes(key)) {
          const near = SKIP_KEYS.find((k) => k.toLowerCase() === key.toLowerCase());
          fail(
            'skip-setup-items',
            ['skip_setup_items', i],
            `"${key}" is not one of Apple's Setup Assistant skip keys${near ? ` (did you mean "${near}"?)` : ''}`,
          );
        }
      });
      return { kind: 'EnrollmentProfile', name, origin, profile: { profile_name: profile_name ?? name, ...fields }, assign };
    },
  },
};

export function emptyFleet(): Fleet {
  return {
    profiles: new Map(),
    blueprints: new Map(),
    deviceGroups: new Map(),
    secrets: new Map(),
    declarations: new Map(),
    enrollmentProfiles: new Map(),
    tagsBySerial: new Map(),
    contentHash: '',
  };
}

export function buildPass(valid: readonly ValidDoc[], c: Collector, state: LoadState): BuiltFleet {
  const fleet = emptyFleet();
  const parsedOf = new Map<object, ParsedDoc>();
  for (const { d, kind } of valid) {
    state.file = d.file;
    // The schema pass checked the document: metadata and spec have their schema's shape.
    const meta = d.value.metadata as MetadataValue;
    const origin = c.at(d, ['metadata', 'name']);
    const builder = BUILDERS[kind] as Builder<unknown, { origin: Origin }>;
    const map = fleet[builder.map] as Map<string, { origin: Origin }>;
    const prev = map.get(meta.name);
    if (prev) {
      c.add('error', 'duplicate-name', origin, `${kind} "${meta.name}" is already defined at ${prev.origin.file}:${prev.origin.line}`);
      continue;
    }
    const fail: Fail = (rule, path, message) => c.add('error', rule, c.at(d, ['spec', ...path]), message);
    const built = builder.build(meta.name, origin, d.value.spec, fail);
    map.set(meta.name, built);
    parsedOf.set(built, d);
  }
  for (const g of fleet.deviceGroups.values()) {
    for (const dev of g.devices) {
      let tags = fleet.tagsBySerial.get(dev.serial);
      if (!tags) fleet.tagsBySerial.set(dev.serial, (tags = new Set()));
      for (const t of dev.tags) tags.add(t);
    }
  }
  return { fleet, parsedOf };
}

type RawRollout = NonNullable<BlueprintSpecValue['rollout']>;

/** The schema-checked `rollout` as the model has it; what the schema cannot say is reported through `fail`. */
function rolloutOf(raw: RawRollout, fail: (message: string, key?: string) => void): Rollout | undefined {
  const [first] = raw.steps ?? [];
  if (raw.steps === undefined || first === undefined) {
    if (raw.percent === undefined) {
      fail('rollout needs either percent or steps');
      return undefined;
    }
    if (raw.wait !== undefined || raw.maxFailures !== undefined) fail('wait and maxFailures go with steps', raw.wait !== undefined ? 'wait' : 'maxFailures');
    return { percent: raw.percent };
  }
  if (raw.percent !== undefined) {
    fail('rollout needs either percent or steps');
    return undefined;
  }
  const steps = raw.steps;
  if (steps.some((x, i) => i > 0 && x <= (steps[i - 1] ?? x))) fail(`steps must increase (found ${steps.join(', ')})`, 'steps');
  let waitMs = 0;
  if (raw.wait !== undefined) {
    try {
      waitMs = typeof raw.wait === 'number' ? raw.wait * 1000 : parseDuration(raw.wait, 'wait');
    } catch (err) {
      fail((err as Error).message, 'wait');
    }
  }
  let maxFailures: Rollout['maxFailures'] = { count: 0 };
  if (typeof raw.maxFailures === 'number') maxFailures = { count: raw.maxFailures };
  else if (raw.maxFailures !== undefined) {
    const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(raw.maxFailures);
    if (m && Number(m[1]) <= 100) maxFailures = { percent: Number(m[1]) };
    else fail(`maxFailures: "${raw.maxFailures}" is not a share like 2% or a count like 3`, 'maxFailures');
  }
  return { percent: first, steps, waitMs, maxFailures };
}
