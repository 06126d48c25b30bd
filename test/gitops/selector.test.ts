import { describe, expect, it } from 'vitest';
import { matches, mayOverlap, parseRange, platformOf, satisfies, type DeviceView } from '../../src/gitops/selector.js';

const mac = (o: Partial<DeviceView> = {}): DeviceView => ({ serial: 'S1', tags: new Set(['office']), platform: 'macOS', model: 'Mac14,2', productName: 'Mac14,2', osVersion: '14.5', supervised: false, ...o });

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
