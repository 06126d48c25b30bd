/**
 * Validation against the schemas of src/schema/: one Ajv (draft 2020-12) for repository
 * documents and API bodies, and one mapping of its errors to a message per problem that names
 * the path (the loader turns the path into file:line:col, the API into its 400 answer).
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';

export type SchemaPath = (string | number)[];

export interface SchemaProblem {
  path: SchemaPath;
  /** The problem is the key at `path` (an unknown key), not its value. */
  key: boolean;
  message: string;
}

export interface Validator<T> {
  /** The problems of `value`; none means it is a T. */
  problems(value: unknown): SchemaProblem[];
  is(value: unknown): value is T;
}

let ajv: Ajv2020 | undefined;
// verbose: a oneOf error carries its schema, whose x-oneOf-message says what the branches mean.
const instance = () => (ajv ??= new Ajv2020({ allErrors: true, strict: false, verbose: true }));

/** Compiles `schema` (compile once per process and keep it: compiling costs more than validating). */
export function compileSchema<T = unknown>(schema: object, root = 'document'): Validator<T> {
  const validate: ValidateFunction = instance().compile(schema);
  return {
    problems: (value) => (validate(value) ? [] : schemaProblems(validate.errors ?? [], root)),
    is: (value): value is T => validate(value),
  };
}

/** Ajv errors -> one clear message per problem, pointing at the offending node. */
export function schemaProblems(errors: ErrorObject[], root = 'document'): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    if (e.schemaPath.includes('/oneOf/')) continue; // branch details; the oneOf error says it better
    const path: SchemaPath = e.instancePath
      .split('/')
      .slice(1)
      .map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')));
    const where = path.length ? path.join('.') : root;
    let m: SchemaProblem;
    switch (e.keyword) {
      case 'additionalProperties': {
        const prop = String((e.params as { additionalProperty: string }).additionalProperty);
        m = { path: [...path, prop], key: true, message: `unknown key "${prop}" in ${where}` };
        break;
      }
      case 'required':
        m = { path, key: false, message: `${where}: missing required key "${(e.params as { missingProperty: string }).missingProperty}"` };
        break;
      case 'oneOf': {
        const says = (e.parentSchema as { 'x-oneOf-message'?: string } | undefined)?.['x-oneOf-message'];
        m = { path, key: false, message: `${where}: ${says ?? 'must match exactly one of its alternatives'}` };
        break;
      }
      case 'enum':
        m = {
          path,
          key: false,
          message: `${where} must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`,
        };
        break;
      case 'const':
        m = { path, key: false, message: `${where} must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}` };
        break;
      default:
        m = { path, key: false, message: `${where} ${e.message ?? 'is invalid'}` };
    }
    const k = `${m.path.join('/')}|${m.message}`;
    if (!seen.has(k)) {
      seen.add(k);
      out.push(m);
    }
  }
  return out;
}
