import { describe, expect, it } from 'vitest';
import { matches, mayOverlap, parseRange, platformOf, satisfies, type DeviceView } from '../../src/gitops/selector.js';
import { deviceView } from '../../src/reconcile/desired.js';

const mac = (o: Partial<DeviceView> = {}): DeviceView => ({
  serial: 'S1',
  tags: new Set(['office']),
  platform: 'macOS',
  model: 'Mac14,2',
  productName: 'Mac14,2',
  osVersion: '14.5',
  supervised: false,
  ...o,
});

describe('version ranges', () => {
  it('all comparators must hold', () => {
    const r = parseRange('>=14.0 <16');
    expect(satisfies('14.0', r)).toBe(true);
    expect(satisfies('15.7.1', r)).toBe(true);
    expect(satisfies('16.0', r)).toBe(false);
    expect(satisfies('13.6', r)).toBe(false);
    expect(satisfies('14', parseRange('=14.0'))).toBe(true);
    expect(() => parseRange('>=14.0 <<16')).toThrow(/<<16/);
    expect(() => parseRange('')).toThrow();
  });
});

describe('matching a device', () => {
  it('every field set must match; excludes remove', () => {
    expect(matches({ platforms: ['macOS'], tags: ['office'], osVersion: '>=14' }, mac())).toBe(true);
    expect(matches({ platforms: ['iOS'] }, mac())).toBe(false);
    expect(matches({ tags: ['office', 'design'] }, mac())).toBe(false);
    expect(matches({ serials: ['S2'] }, mac())).toBe(false);
    expect(matches({ models: ['Mac14,2'] }, mac())).toBe(true);
    expect(matches({ supervised: true }, mac())).toBe(false);
    expect(matches({ osVersion: '>=15' }, mac({ osVersion: undefined }))).toBe(false);
    expect(matches({ platforms: ['macOS'], exclude: { tags: ['office'] } }, mac())).toBe(false);
    expect(matches({ exclude: {} }, mac())).toBe(true);
  });

  it("proven: true needs a serial the device's certificate was issued for, not one it claims", () => {
    expect(matches({ serials: ['S1'], proven: true }, mac())).toBe(false);
    expect(matches({ serials: ['S1'], proven: true }, mac({ serialProven: true }))).toBe(true);
    expect(matches({ proven: true }, mac({ serial: undefined, serialProven: true }))).toBe(false);
    expect(matches({ serials: ['S1'], proven: false }, mac())).toBe(true);
    expect(matches({ exclude: { proven: true } }, mac({ serialProven: true }))).toBe(false);
    // From a device record: the proof covers the serial the certificate was issued for; a
    // DeviceInformation that reports another serial is a claim again.
    const fleet = { tagsBySerial: new Map([['C02A', new Set(['office'])]]) };
    const rec = (provenSerialNumber: string | undefined, reportedSerial?: string) => ({
      id: 'U1',
      facts: { Topic: 't', SerialNumber: 'C02A', ...(provenSerialNumber ? { provenSerialNumber } : {}) },
      reported: reportedSerial ? { DeviceInformation: { at: 't', commandUUID: 'c', value: { SerialNumber: reportedSerial } } } : {},
    });
    expect(deviceView(rec('C02A'), fleet).view).toMatchObject({ serial: 'C02A', serialProven: true });
    expect(deviceView(rec(undefined), fleet).view.serialProven).toBe(false);
    expect(deviceView(rec('C02A', 'C02B'), fleet).view).toMatchObject({ serial: 'C02B', serialProven: false });
  });

  it('platform from model or product name', () => {
    expect(platformOf('iPad2,5', 'iPad2,5')).toBe('iPadOS');
    expect(platformOf('iMac14,2')).toBe('macOS');
    expect(platformOf('MacBookPro18,3')).toBe('macOS');
    expect(platformOf(undefined, 'iPhone15,2')).toBe('iOS');
    expect(platformOf('AppleTV11,1')).toBe('tvOS');
    expect(platformOf('Unknown1,1')).toBeUndefined();
  });
});

describe('can two selectors select the same device?', () => {
  it('proves disjointness only when it must hold', () => {
    expect(mayOverlap({ platforms: ['iOS'] }, { platforms: ['macOS'] })).toBe(false);
    expect(mayOverlap({ serials: ['A'] }, { serials: ['B'] })).toBe(false);
    expect(mayOverlap({ osVersion: '<14' }, { osVersion: '>=14' })).toBe(false);
    expect(mayOverlap({ osVersion: '<=14' }, { osVersion: '>=14' })).toBe(true);
    expect(mayOverlap({ osVersion: '>=13 <15' }, { osVersion: '>=14.5' })).toBe(true);
    expect(mayOverlap({ supervised: true }, { supervised: false })).toBe(false);
    expect(mayOverlap({ tags: ['lab'] }, { exclude: { tags: ['lab'] } })).toBe(false);
    expect(mayOverlap({ tags: ['lab'] }, { exclude: { tags: ['lab'], platforms: ['iOS'] } })).toBe(true);
    expect(mayOverlap({ tags: ['a'] }, { tags: ['b'] })).toBe(true);
    expect(mayOverlap({}, { platforms: ['macOS'] })).toBe(true);
  });
});
