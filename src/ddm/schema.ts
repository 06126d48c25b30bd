/**
 * Declarations against Apple's declarative schema (declarative/declarations, vendored as
 * apple/declarations.json by scripts/gen-apple-declarations.mjs). Payload keys are checked by the
 * profile validator's engine (same apple-* rules and severities); what is particular to
 * declarations has ddm-* rules of its own here.
 */
import appleDeclarations from './apple/declarations.json' with { type: 'json' };
import {
  shortText,
  suggest,
  validateWithSchema,
  type OSMap,
  type PayloadIssue,
  type PayloadJson,
  type Platform,
  type Severity,
} from '../gitops/apple/payloads.js';
import type { DeclarationChannel, DeclarationClass } from './model.js';
import { compareVersions, parseVersion, type DeviceView } from '../gitops/selector.js';

export interface DeclarationSchema extends PayloadJson {
  class: DeclarationClass;
  /** Keys naming asset declarations ('*': every item of an array) and the asset types they take. */
  assetRefs?: { path: string[]; types: string[] }[];
}

interface DeclarationsJson {
  declarations: Record<string, DeclarationSchema>;
  reasons: Record<string, string>;
  statusItems: Record<string, OSMap>;
}

const DATA = appleDeclarations as unknown as DeclarationsJson;

/** Every ddm-* rule, with its one severity (the README's table lists them). */
export const DDM_RULES = {
  'ddm-type': { severity: 'error', meaning: 'a declaration Type Apple does not define: the device refuses it (Error.ConfigurationNotSupported)' },
  'ddm-identifier': {
    severity: 'error',
    meaning: 'an Identifier longer than 64 bytes, or one used by two declarations that can reach the same device: the device keeps one',
  },
  'ddm-reference': {
    severity: 'error',
    meaning:
      "an activation's StandardConfigurations or a configuration's asset reference naming no declaration of the right class or asset type (the device reports Error.MissingConfigurations / MissingAssets)",
  },
  'ddm-channel': { severity: 'warning', meaning: 'a declaration for a channel (device or user) its type does not support on the selected platforms' },
  'ddm-status-item': { severity: 'warning', meaning: 'a status subscription naming a status item Apple does not define: the device reports an error for it' },
  'ddm-legacy': { severity: 'error', meaning: 'a com.apple.configuration.legacy declaration with both profile and Payload.ProfileURL, or neither' },
  'ref-missing-declaration': { severity: 'error', meaning: 'a blueprint naming a declaration that is not defined' },
  'unused-declaration': { severity: 'warning', meaning: 'a declaration no blueprint uses (and no activation of a used blueprint references)' },
  'software-update': { severity: 'error', meaning: "a blueprint's softwareUpdate whose deadline or version is not what devices read" },
} as const satisfies Record<string, { severity: Severity; meaning: string }>;
export type DdmRule = keyof typeof DDM_RULES;

export interface DdmIssue {
  severity: Severity;
  rule: DdmRule | PayloadIssue['rule'];
  path: (string | number)[];
  message: string;
}

export function ddmIssue(rule: DdmRule, path: (string | number)[], message: string): DdmIssue {
  return { severity: DDM_RULES[rule].severity, rule, path, message };
}

export function declarationSchema(type: string): DeclarationSchema | undefined {
  return Object.hasOwn(DATA.declarations, type) ? DATA.declarations[type] : undefined;
}

export function knownDeclarationTypes(): string[] {
  return Object.keys(DATA.declarations);
}

/** Apple's description of a status reason code (Error.MissingConfigurations, ...). */
export function reasonText(code: string): string | undefined {
  return Object.hasOwn(DATA.reasons, code) ? DATA.reasons[code] : undefined;
}

export function isStatusItem(name: string): boolean {
  return Object.hasOwn(DATA.statusItems, name);
}

/** The class a Type names (com.apple.<class>.…), for types outside the schema too. */
export function classOfType(type: string): DeclarationClass | undefined {
  const m = /^com\.apple\.(activation|asset|configuration|management)\./.exec(type);
  return m ? (m[1] as DeclarationClass) : declarationSchema(type)?.class;
}

const PLATFORM_OS: Record<Platform, keyof OSMap> = { macOS: 'macOS', iOS: 'iOS', iPadOS: 'iOS', tvOS: 'tvOS', visionOS: 'visionOS', watchOS: 'watchOS' };

/**
 * The first OS version with DDM, per platform (declarationbase.yaml); a device below it gets no
 * declarations and is reported as such.
 */
export const DDM_MINIMUM: Record<Platform, string> = { macOS: '13.0', iOS: '15.0', iPadOS: '15.0', tvOS: '16.0', visionOS: '1.1', watchOS: '10.0' };

/** Whether the device's OS has DDM (undefined: its platform or version is not known). */
export function ddmCapable(view: Pick<DeviceView, 'platform' | 'osVersion'>): boolean | undefined {
  if (!view.platform || !view.osVersion) return undefined;
  const v = parseVersion(view.osVersion);
  const min = parseVersion(DDM_MINIMUM[view.platform]);
  return v && min ? compareVersions(v, min) >= 0 : undefined;
}

export interface DeclarationContext {
  platforms: Platform[];
  supervised?: boolean;
  channel: DeclarationChannel;
}

/** Validate one declaration's Payload; issue paths are inside the Payload. */
export function validateDeclaration(type: string, payload: Record<string, unknown>, ctx: DeclarationContext): DdmIssue[] {
  const spec = declarationSchema(type);
  if (!spec) {
    const hint = suggest(type, knownDeclarationTypes(), 3);
    return [ddmIssue('ddm-type', [], `unknown declaration type '${shortText(type)}'${hint ? `; did you mean '${hint}'?` : ''}`)];
  }
  const issues: DdmIssue[] = validateWithSchema(type, spec, payload, { platforms: ctx.platforms, supervised: ctx.supervised });
  const flag = ctx.channel === 'user' ? 'userchannel' : 'devicechannel';
  const off = [...new Set(ctx.platforms)].filter((p) => spec.os[PLATFORM_OS[p]]?.[flag] === false);
  if (off.length)
    issues.push(
      ddmIssue(
        'ddm-channel',
        [],
        `${type} is not supported on the ${ctx.channel} channel of ${off.join(', ')}; the device reports Error.ConfigurationNotSupported`,
      ),
    );
  if (type === 'com.apple.configuration.management.status-subscriptions' && Array.isArray(payload.StatusItems)) {
    payload.StatusItems.forEach((item, i) => {
      const name = (item as { Name?: unknown } | null)?.Name;
      if (typeof name === 'string' && !isStatusItem(name))
        issues.push(ddmIssue('ddm-status-item', ['StatusItems', i, 'Name'], `'${shortText(name)}' is not a status item Apple defines`));
    });
  }
  return issues;
}

/** Values at a key path of a payload ('*' walks an array's items), with their concrete paths. */
export function valuesAt(payload: unknown, path: readonly string[]): { value: unknown; path: (string | number)[] }[] {
  let level: { value: unknown; path: (string | number)[] }[] = [{ value: payload, path: [] }];
  for (const step of path) {
    const next: typeof level = [];
    for (const { value, path: p } of level) {
      if (step === '*') {
        if (Array.isArray(value)) value.forEach((v, i) => next.push({ value: v, path: [...p, i] }));
      } else if (value && typeof value === 'object' && !Array.isArray(value) && Object.hasOwn(value, step)) {
        next.push({ value: (value as Record<string, unknown>)[step], path: [...p, step] });
      }
    }
    level = next;
  }
  return level;
}
