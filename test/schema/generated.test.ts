/**
 * One schema source: the committed schemas/ are exactly what `npm run gen:schemas` writes from
 * src/schema/fleet.ts, the loader refuses what they refuse, and the OpenAPI document carries the
 * very schemas the API validates bodies against.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { OPENAPI } from '../../src/http/openapi.js';
import { CommandRequest, EnrollmentRequest, PushRequest } from '../../src/schema/api.js';
import { FLEET_KINDS, KINDS } from '../../src/schema/fleet.js';
import { renderSchemaFiles } from '../../src/schema/files.js';
import { compileSchema } from '../../src/schema/validate.js';

const SCHEMAS = join(import.meta.dirname, '..', '..', 'schemas');

describe('schemas/', () => {
  it('holds exactly the generated files, byte for byte (run npm run gen:schemas when this fails)', () => {
    const generated = renderSchemaFiles();
    const committed = readdirSync(SCHEMAS).filter((f) => f.endsWith('.json'));
    expect(committed.sort()).toEqual(Object.keys(generated).sort());
    for (const [file, text] of Object.entries(generated)) expect(readFileSync(join(SCHEMAS, file), 'utf8'), file).toBe(text);
  });

  it('has one file per kind, and orchard.schema.json dispatches to each by kind', () => {
    const any = JSON.parse(readFileSync(join(SCHEMAS, 'orchard.schema.json'), 'utf8')) as { properties: { kind: { enum: string[] } }; allOf: unknown[] };
    expect(any.properties.kind.enum).toEqual(KINDS);
    expect(any.allOf).toHaveLength(KINDS.length);
    for (const kind of KINDS) {
      const doc = JSON.parse(readFileSync(join(SCHEMAS, FLEET_KINDS[kind].file), 'utf8')) as { properties: { kind: { const: string } } };
      expect(doc.properties.kind.const).toBe(kind);
    }
  });

  it('the committed files, read by an editor-like validator, accept a good document and refuse a typo', () => {
    const ajv = new Ajv2020({ strict: false });
    for (const f of readdirSync(SCHEMAS)) ajv.addSchema(JSON.parse(readFileSync(join(SCHEMAS, f), 'utf8')) as object);
    const validate = ajv.getSchema('https://orchard.dev/schemas/orchard.schema.json');
    if (!validate) throw new Error('orchard.schema.json not registered');
    const good = { apiVersion: 'orchard/v1', kind: 'Blueprint', metadata: { name: 'macs' }, spec: { selector: { platforms: ['macOS'] }, profiles: ['wifi'] } };
    expect(validate(good)).toBe(true);
    expect(validate({ ...good, spec: { ...good.spec, prfiles: ['wifi'] } })).toBe(false);
    expect(validate({ ...good, spec: { ...good.spec, selector: { platforms: ['Windows'] } } })).toBe(false);
  });
});

describe('OpenAPI request bodies', () => {
  it('are the schemas the routes validate against', () => {
    const body = (path: keyof typeof OPENAPI.paths) =>
      (OPENAPI.paths[path] as { post: { requestBody: { content: Record<string, { schema: unknown }> } } }).post;
    expect(body('/api/v1/commands').requestBody.content['application/json']?.schema).toBe(CommandRequest);
    expect(body('/api/v1/push').requestBody.content['application/json']?.schema).toBe(PushRequest);
    expect(body('/api/v1/enrollments').requestBody.content['application/json']?.schema).toBe(EnrollmentRequest);
  });

  it('serialize to plain JSON Schema (no TypeBox internals in the served document)', () => {
    const text = JSON.stringify(OPENAPI);
    expect(text).not.toMatch(/~kind|~optional/);
    const served = JSON.parse(text) as { paths: Record<string, { post?: { requestBody?: { content: Record<string, { schema: object }> } } }> };
    const schema = served.paths['/api/v1/commands']?.post?.requestBody?.content['application/json']?.schema;
    expect(schema).toMatchObject({ type: 'object', required: ['targets', 'command'], additionalProperties: false });
  });
});

describe('schema problems', () => {
  it('name the path of each problem', () => {
    const v = compileSchema(CommandRequest, 'body');
    expect(v.problems({ targets: ['D1'], command: { RequestType: 'DeviceInformation' } })).toEqual([]);
    const messages = v.problems({ targets: [], command: {}, priority: 100, extra: 1 }).map((p) => p.message);
    expect(messages).toEqual(
      expect.arrayContaining([
        'unknown key "extra" in body',
        'targets must NOT have fewer than 1 items',
        'command: missing required key "RequestType"',
        'priority must be <= 99',
      ]),
    );
    expect(v.problems([1]).map((p) => p.message)).toEqual(['body must be object']);
  });
});
