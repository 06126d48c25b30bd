import { describe, expect, it } from 'vitest';
import { loadFleet } from '../../src/gitops/load.js';
import { makeRepo } from '../gitops/repo.js';
import { ddmBlueprint, passcodeDecl } from './fleet.js';

const errors = (r: Awaited<ReturnType<typeof loadFleet>>) => r.diagnostics.filter((d) => d.severity === 'error');

describe('Declaration documents', () => {
  it('loads declarations, generates the activation, the status subscriptions and the software update', async () => {
    const root = makeRepo({
      'd.yaml': passcodeDecl(),
      'b.yaml': ddmBlueprint('office', ['passcode'], '  softwareUpdate: {targetOSVersion: "15.2", deadline: "2026-12-24T18:00:00"}\n'),
    });
    const r = await loadFleet(root);
    expect(errors(r)).toEqual([]);
    const fleet = r.fleet!;
    const b = fleet.blueprints.get('office')!;
    expect(b.deliver.sort()).toEqual(['blueprint/office/activation', 'blueprint/office/softwareupdate', 'orchard/status-subscriptions', 'passcode']);
    const act = fleet.declarations.get('blueprint/office/activation')!;
    expect(act.type).toBe('com.apple.activation.simple');
    expect(act.payload.StandardConfigurations).toEqual(['com.example.passcode', 'orchard.blueprint.office.softwareupdate', 'orchard.status-subscriptions']);
    expect(fleet.declarations.get('blueprint/office/softwareupdate')!.payload).toEqual({ TargetOSVersion: '15.2', TargetLocalDateTime: '2026-12-24T18:00:00' });
  });

  it('reports payload problems with file:line:col and Apple rule ids', async () => {
    const root = makeRepo({
      'd.yaml': passcodeDecl('passcode', 8, '    MinimumLenght: 4\n    MaximumFailedAttempts: "ten"\n'),
      'b.yaml': ddmBlueprint('office', ['passcode']),
    });
    const r = await loadFleet(root);
    expect(r.ok).toBe(false);
    const unknown = r.diagnostics.find((d) => d.rule === 'apple-unknown-key')!;
    expect(unknown).toMatchObject({ file: 'd.yaml', line: 10, col: 5, severity: 'warning' });
    expect(unknown.message).toContain("did you mean 'MinimumLength'");
    expect(errors(r)).toEqual([expect.objectContaining({ rule: 'apple-type', file: 'd.yaml', line: 11 })]);
  });

  it('refuses unknown types, missing references and overlong identifiers', async () => {
    const root = makeRepo({
      'd.yaml': `apiVersion: orchard/v1
kind: Declaration
metadata: {name: typo}
spec:
  Type: com.apple.configuration.passcode.setings
  Payload: {}
---
apiVersion: orchard/v1
kind: Declaration
metadata: {name: act}
spec:
  Type: com.apple.activation.simple
  Identifier: ${'x'.repeat(65)}
  Payload:
    StandardConfigurations: [com.example.nothing]
---
apiVersion: orchard/v1
kind: Declaration
metadata: {name: cal}
spec:
  Type: com.apple.configuration.account.caldav
  Payload:
    HostName: cal.example.com
    AuthenticationCredentialsAssetReference: missing-asset
`,
      'b.yaml': ddmBlueprint('office', ['typo', 'act', 'cal', 'nope']),
    });
    const r = await loadFleet(root);
    const byRule = (rule: string) => r.diagnostics.filter((d) => d.rule === rule).map((d) => `${d.file}:${d.line}`);
    expect(byRule('ddm-type')).toEqual(['d.yaml:5']);
    expect(r.diagnostics.find((d) => d.rule === 'ddm-type')!.message).toContain("did you mean 'com.apple.configuration.passcode.settings'");
    expect(byRule('ddm-identifier')).toEqual(['d.yaml:13']);
    expect(byRule('ddm-reference').sort()).toEqual(['d.yaml:15', 'd.yaml:24']);
    expect(byRule('ref-missing-declaration')).toEqual(['b.yaml:6']);
  });

  it('checks variables and secrets in payloads, and warns about supervision and platforms', async () => {
    const root = makeRepo({
      'd.yaml': `apiVersion: orchard/v1
kind: Declaration
metadata: {name: cal}
spec:
  Type: com.apple.configuration.account.caldav
  Payload:
    HostName: \${device.SerialNumbr}.example.com
    VisibleName: \${secret:cal-password}
`,
      'b.yaml': ddmBlueprint('office', ['cal']).replace('[macOS]', '[macOS, tvOS]'),
    });
    const r = await loadFleet(root);
    expect(r.diagnostics.filter((d) => d.rule === 'variable').map((d) => d.line)).toEqual([7]);
    expect(r.diagnostics.filter((d) => d.rule === 'undeclared-secret').map((d) => d.line)).toEqual([8]);
    expect(r.diagnostics.find((d) => d.rule === 'apple-platform')!.message).toContain('tvOS');
  });

  it('a legacy declaration names a Profile document', async () => {
    const root = makeRepo({
      'd.yaml': `apiVersion: orchard/v1
kind: Declaration
metadata: {name: legacy}
spec:
  Type: com.apple.configuration.legacy
  profile: wifii
`,
      'b.yaml': ddmBlueprint('office', ['legacy']),
    });
    const r = await loadFleet(root);
    expect(errors(r).map((d) => `${d.rule} ${d.line}`)).toEqual(['ref-missing-profile 6']);
  });
});
