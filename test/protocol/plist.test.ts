import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/protocol/errors.js';
import { decodeCheckin, decodeReport, messageKind } from '../../src/protocol/messages.js';
import { buildPlist, parsePlistDict } from '../../src/protocol/plist.js';
import { buildCommand, fromJson, validateCommand } from '../../src/protocol/commands.js';
import { thrown } from '../helpers/thrown.js';

const refusal = (fn: () => unknown): ProtocolError => thrown(ProtocolError, fn);

describe('plist parsing', () => {
  it('round-trips data, dates, numbers and nesting', () => {
    const value = { a: new Uint8Array([0, 1, 255]), d: new Date('2026-01-02T03:04:05Z'), n: 42, r: 1.5, t: true, arr: ['x', { y: 'z' }] };
    expect(parsePlistDict(buildPlist(value))).toEqual(value);
  });

  it('names the line and column of malformed XML', () => {
    const e = refusal(() => parsePlistDict('<?xml version="1.0"?>\n<plist>\n<dict><key>a</key><string>b</dict></plist>'));
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/line \d+, col \d+/);
  });

  it('refuses custom DTDs and entities but accepts Apple\'s DOCTYPE', () => {
    expect(refusal(() => parsePlistDict('<!DOCTYPE plist [<!ENTITY x "y">]><plist><dict/></plist>')).message).toMatch(/DOCTYPE/);
    expect(refusal(() => parsePlistDict('<plist><dict><key>a</key><string>&x;</string></dict></plist>')).message).toMatch(/undefined XML entity at line 1, col 34/);
    expect(parsePlistDict('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0"><dict><key>a</key><string>&amp;&#65;</string></dict></plist>')).toEqual({ a: '&A' });
  });

  it('refuses non-dict roots, binary plists and empty bodies', () => {
    expect(refusal(() => parsePlistDict(buildPlist(['a']))).message).toMatch(/an array, expected a dict/);
    expect(refusal(() => parsePlistDict(Buffer.from('bplist00xxxx'))).message).toMatch(/binary/);
    expect(refusal(() => parsePlistDict(Buffer.alloc(0))).message).toMatch(/empty/);
  });
});

describe('message decoding', () => {
  it('tells check-ins from reports and decodes channels', () => {
    expect(messageKind({ MessageType: 'Authenticate' })).toBe('checkin');
    expect(messageKind({ Status: 'Idle' })).toBe('report');
    const tu = decodeCheckin({ MessageType: 'TokenUpdate', UDID: 'U', UserID: 'X', Topic: 't', Token: new Uint8Array([1]), PushMagic: 'm' });
    expect(tu).toMatchObject({ deviceId: 'U', enrollmentId: 'U:X', userId: 'X' });
    const ue = decodeReport({ Status: 'Idle', EnrollmentID: 'E1' });
    expect(ue.enrollmentId).toBe('E1');
  });

  it('names the offending key', () => {
    expect(refusal(() => decodeCheckin({ MessageType: 'TokenUpdate', UDID: 'U', Topic: 't', PushMagic: 'm' })).message).toBe('missing Token');
    expect(refusal(() => decodeCheckin({ MessageType: 'TokenUpdate', UDID: 'U', Topic: 't', Token: 'x', PushMagic: 'm' })).message).toBe('Token is a string, expected data');
    expect(refusal(() => decodeReport({ Status: 'Bogus', UDID: 'U' })).message).toMatch(/unknown Status/);
  });
});

describe('commands', () => {
  it('builds the exact plist the device receives', () => {
    const built = buildCommand(fromJson({ RequestType: 'InstallProfile', Payload: { $data: Buffer.from('abc').toString('base64') } }) as never, 'CMD-1');
    expect(parsePlistDict(built.payload)).toEqual({ CommandUUID: 'CMD-1', Command: { RequestType: 'InstallProfile', Payload: new Uint8Array(Buffer.from('abc')) } });
  });

  it('validates against Apple\'s schema: unknown key, wrong type, allowed values', () => {
    expect(refusal(() => validateCommand({ RequestType: 'RemoveProfile', Identifer: 'x' })).message).toMatch(/unknown key "Identifer"/);
    expect(refusal(() => validateCommand({ RequestType: 'RemoveProfile', Identifier: 5 })).message).toMatch(/expected string/);
    expect(refusal(() => validateCommand({ RequestType: 'RemoveProfile' })).message).toMatch(/missing required key Identifier/);
    expect(validateCommand({ RequestType: 'DeviceInformation', Queries: ['UDID'] })).toBe('DeviceInformation');
  });
});
