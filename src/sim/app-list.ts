/**
 * A realistic InstalledApplicationList report of a Mac with many apps: the largest legitimate
 * report a device sends, for tests and benchmarks of the device hot path. The keys and types
 * are those of Apple's InstalledApplicationListResponse as macOS fills them in; names mix ASCII,
 * accented and CJK text and "&" (which the XML carries as an entity), as real app names do.
 */
import type { PlistDict } from '../protocol/plist.js';

const WORDS = [
  'Pro',
  'Studio',
  'Helper',
  'Café',
  'Über',
  'Notes & Tasks',
  '写真',
  'Übersicht',
  'Sync',
  'Agent',
  'Updater',
  'Lite',
  'X',
  'Cloud',
  'Capture <Beta>',
];
const VENDORS = ['com.apple', 'com.microsoft', 'com.google', 'org.mozilla', 'com.adobe', 'io.example', 'de.firma', 'jp.co.kaisha'];

/** A deterministic PRNG (xorshift32), so the same count always gives the same report. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

export function installedApplicationListReport(apps: number, opts: { udid?: string; commandUUID?: string; seed?: number } = {}): PlistDict {
  const r = rng(opts.seed ?? apps);
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const list: PlistDict[] = [];
  for (let i = 0; i < apps; i++) {
    const name = `${pick(WORDS)} ${pick(WORDS)} ${i}`;
    const major = 1 + Math.floor(r() * 30);
    const item: PlistDict = {
      AdHocCodeSigned: r() < 0.02,
      AppStoreVendable: r() < 0.3,
      BetaApp: r() < 0.01,
      BundleSize: Math.floor(r() * 4e9),
      DeviceBasedVPP: false,
      DynamicSize: Math.floor(r() * 1e8),
      ExternalVersionIdentifier: Math.floor(r() * 9e8),
      HasUpdateAvailable: r() < 0.1,
      Identifier: `${pick(VENDORS)}.${name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`,
      Installing: false,
      IsAppClip: false,
      IsValidated: true,
      Name: name,
      ShortVersion: `${major}.${Math.floor(r() * 10)}`,
      Version: `${major}${Math.floor(r() * 1000)}.${Math.floor(r() * 100)}`,
    };
    if (r() < 0.5) item.DistributorIdentifier = 'com.apple.AppStore';
    list.push(item);
  }
  return {
    CommandUUID: opts.commandUUID ?? '0F6C1B77-2C5E-4E43-9A7B-3A1C2D4E5F60',
    InstalledApplicationList: list,
    Status: 'Acknowledged',
    UDID: opts.udid ?? '66ADE930-5FDF-5EC4-8429-15640684C489',
  };
}
