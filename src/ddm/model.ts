/**
 * Declarative Device Management as Orchard models it: the declaration documents of the
 * repository, the rendered set an enrollment should have, and what the device reported. Apple's
 * wire shapes (declarative/protocol, declarative/status) keep Apple's key names.
 */
import type { Origin } from '../gitops/model.js';

/** Apple's four declaration classes; the class is the first part of a Type after "com.apple.". */
export type DeclarationClass = 'activation' | 'asset' | 'configuration' | 'management';
export const DECLARATION_CLASSES: readonly DeclarationClass[] = ['activation', 'asset', 'configuration', 'management'];

/** Which channel a declaration goes to: the device channel, or each user channel of the device. */
export type DeclarationChannel = 'device' | 'user';

/** A `kind: Declaration` document. */
export interface DeclarationDoc {
  kind: 'Declaration';
  name: string;
  origin: Origin;
  /** Apple's `Type`, e.g. com.apple.configuration.passcode.settings. */
  type: string;
  /** Apple's `Identifier` (default: the document's name). */
  identifier: string;
  class: DeclarationClass;
  channel: DeclarationChannel;
  /** Apple's `Payload`, as authored (variables not yet substituted). */
  payload: Record<string, unknown>;
  /** A com.apple.configuration.legacy declaration delivering this Profile document (ProfileURL is Orchard's). */
  profile?: string;
  /** Device variables and secrets the payload uses. */
  variables: string[];
  secrets: string[];
  /** Made by Orchard (a blueprint's activation or software update), not written in the repository. */
  generated?: boolean;
}

/** A blueprint's `softwareUpdate:`: becomes com.apple.configuration.softwareupdate.enforcement.specific. */
export interface SoftwareUpdateSpec {
  targetOSVersion: string;
  targetBuildVersion?: string;
  /** Local date and time, yyyy-mm-ddThh:mm:ss (Apple's TargetLocalDateTime). */
  deadline: string;
  detailsURL?: string;
}

/** A declaration as the device receives it (declarationbase.yaml). */
export interface DeclarationJson {
  Type: string;
  Identifier: string;
  ServerToken: string;
  Payload: Record<string, unknown>;
}

/** One rendered declaration of an enrollment's set. */
export interface SetEntry {
  class: DeclarationClass;
  /** The repository document (or the generated name, `blueprint/<name>`), for reports. */
  source: string;
  /** Blueprints that deliver it to this device. */
  blueprints: string[];
  declaration: DeclarationJson;
  /** The ServerToken of the rendering with secrets left as placeholders: what `orchard plan` can compare. */
  templateToken: string;
}

/** What an enrollment should have: every declaration, by Identifier, and the token over them. */
export interface DeclarationSet {
  declarationsToken: string;
  /** Identifier -> declaration. */
  entries: Record<string, SetEntry>;
  revision: string;
  at: string;
  /** The DeclarativeManagement command that told the device about this set. */
  command?: string;
  /** Set (with no entries) when a blueprint gives the device declarations but its OS has no DDM. */
  unsupported?: string;
}

/** Apple's status reason (declarationbase.yaml reasons, management.declarations status). */
export interface StatusReason {
  code: string;
  description?: string;
  details?: Record<string, unknown>;
}

/** What the device reported of one declaration (management.declarations). */
export interface DeclarationReport {
  class: DeclarationClass;
  serverToken: string;
  active: boolean;
  valid: 'valid' | 'invalid' | 'unknown';
  reasons?: StatusReason[];
}

/** Everything an enrollment reported over DDM, merged (a FullReport replaces it). */
export interface DdmStatus {
  /** Identifier -> report. */
  declarations: Record<string, DeclarationReport>;
  /** Other status items by their dotted name (device.operating-system.version, softwareupdate.install-state, ...). */
  items: Record<string, unknown>;
  /** Status items the device could not report, with its reasons. */
  errors?: { item: string; reasons?: StatusReason[] }[];
  at: string;
  fullReportAt?: string;
}

/** A device's declaration as the reconciler reports it. */
export type DeclarationPhase = 'pending' | 'verified' | 'failed';
