/**
 * The fleet repository as Orchard understands it after loading and validation: the documents
 * of each kind, and the diagnostics (errors and warnings with file:line:col) found on the way.
 */

import type { AbmProfile } from '../abm/client.js';
import type { DeclarationDoc, SoftwareUpdateSpec } from '../ddm/model.js';

export type Platform = 'macOS' | 'iOS' | 'iPadOS' | 'tvOS' | 'visionOS' | 'watchOS';

export interface Diagnostic {
  /** error: the revision is not applied; warning: applied, and shown; info: what was not checked. */
  severity: 'error' | 'warning' | 'info';
  /** Path relative to the repository root, with forward slashes. */
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  col: number;
  message: string;
  /** A short stable rule id, e.g. `schema`, `apple-unknown-key`, `ref-missing-profile`. */
  rule: string;
}

/** Where a document came from, for diagnostics raised after parsing. */
export interface Origin {
  file: string;
  line: number;
  col: number;
}

/** ABM fields a selector may ask for; each given list must contain the device's value. */
export interface AbmSelector {
  models?: string[];
  colors?: string[];
  descriptions?: string[];
  os?: string[];
  deviceFamilies?: string[];
  assignedBy?: string[];
}

export interface Selector {
  serials?: string[];
  /** All must be present on the device. */
  tags?: string[];
  platforms?: Platform[];
  models?: string[];
  /** A range like ">=14.0 <16". */
  osVersion?: string;
  supervised?: boolean;
  /**
   * true: only devices whose serial number is proven, i.e. whose identity certificate the built-in
   * CA issued through a one-time enrollment for that serial (POST /api/v1/enrollments {"serial"}).
   * Other facts (and serials of other devices) are what the device says about itself.
   */
  proven?: boolean;
  /** true: devices assigned to this server in Apple Business Manager; false: devices that are not; fields: ABM devices whose record matches. */
  abm?: boolean | AbmSelector;
}

export interface AuthoredPayload {
  type: string;
  keys: Record<string, unknown>;
}

export interface ProfileDoc {
  kind: 'Profile';
  name: string;
  origin: Origin;
  identifier: string;
  displayName?: string;
  description?: string;
  organization?: string;
  scope: 'System' | 'User';
  /** Authored payloads, or undefined when `file` is used. */
  payloads?: AuthoredPayload[];
  /** Repository-relative path of an existing .mobileconfig. */
  file?: string;
  /** The .mobileconfig's bytes as found (possibly CMS-signed), when `file` is used. */
  fileBytes?: Buffer;
  /** Device variables (`device.X`) and secrets (`secret:NAME`) the profile uses. */
  variables: string[];
  secrets: string[];
}

/**
 * Which devices a blueprint reaches: those whose stable bucket (rolloutBucket) is below `percent`.
 * A staged rollout (`steps`) starts at its first step and moves on, step by step, when the step's
 * devices are verified with failures within `maxFailures` and `waitMs` has passed
 * (src/reconcile/rollout.ts); the loader sets `percent` to the first step.
 */
export interface Rollout {
  percent: number;
  steps?: number[];
  waitMs?: number;
  /** Failed devices a step may have and still go on: a share of the step's devices, or a count. */
  maxFailures?: { percent: number } | { count: number };
}

export interface BlueprintDoc {
  kind: 'Blueprint';
  name: string;
  origin: Origin;
  selector: Selector & { exclude?: Selector };
  profiles: string[];
  /** Declaration documents for the selected devices (DDM). */
  declarations: string[];
  /** A software update to enforce (a generated declaration). */
  softwareUpdate?: SoftwareUpdateSpec;
  /**
   * What the selected devices get over DDM, by declaration name: the listed ones, those Orchard
   * generates (software update, the activation) and what they reference. Set by the loader.
   */
  deliver: string[];
  /** Remove profiles this blueprint installed and no longer wants (default true). */
  prune: boolean;
  suspend: boolean;
  /** Setup Assistant items (see src/reconcile/setup.ts): installed first on a device awaiting configuration, before DeviceConfigured. */
  setup: boolean;
  rollout?: Rollout;
}

export interface DeviceGroupDoc {
  kind: 'DeviceGroup';
  name: string;
  origin: Origin;
  devices: { serial: string; tags: string[] }[];
}

export interface SecretDoc {
  kind: 'Secret';
  name: string;
  origin: Origin;
  description?: string;
}

/** `kind: EnrollmentProfile`: Apple's profile of the device enrollment service, and which ABM devices get it. */
export interface EnrollmentProfileDoc {
  kind: 'EnrollmentProfile';
  name: string;
  origin: Origin;
  /** Apple's fields (src/abm/client.ts AbmProfile) as written; the url defaults at reconcile time (it needs the server's public URL). */
  profile: Omit<AbmProfile, 'url' | 'devices'> & { url?: string };
  assign: { all?: boolean; serials?: string[]; tags?: string[] } & AbmSelector;
}

export type FleetDoc = ProfileDoc | BlueprintDoc | DeviceGroupDoc | SecretDoc | DeclarationDoc | EnrollmentProfileDoc;

export interface Fleet {
  profiles: Map<string, ProfileDoc>;
  blueprints: Map<string, BlueprintDoc>;
  deviceGroups: Map<string, DeviceGroupDoc>;
  secrets: Map<string, SecretDoc>;
  /** Declarations by name, the repository's and those Orchard generates for blueprints. */
  declarations: Map<string, DeclarationDoc>;
  /** ABM enrollment profiles by name. */
  enrollmentProfiles: Map<string, EnrollmentProfileDoc>;
  /** serial -> tags, merged from every DeviceGroup. */
  tagsBySerial: Map<string, Set<string>>;
  /** SHA-256 over the repository's files as loaded: identifies a revision without git. */
  contentHash: string;
}

export interface LoadResult {
  /** True when there is no error (warnings allowed). */
  ok: boolean;
  /** Present when ok. */
  fleet?: Fleet;
  diagnostics: Diagnostic[];
}
