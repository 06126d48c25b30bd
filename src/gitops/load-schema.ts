/**
 * Loader pass 2, schema: each document's apiVersion and kind, then the document against its
 * kind's schema (src/schema/fleet.ts). Only documents that pass go on to be built.
 */
import { API_VERSION, documentSchema, KINDS, type Kind } from '../schema/fleet.js';
import { compileSchema, type Validator } from '../schema/validate.js';
import type { Collector, LoadState, ParsedDoc } from './load-context.js';

export interface ValidDoc {
  d: ParsedDoc;
  kind: Kind;
}

// Compiled once per process: schema compilation dominates small repositories otherwise.
let validators: Record<Kind, Validator<unknown>> | undefined;
function schemaValidators(): Record<Kind, Validator<unknown>> {
  validators ??= Object.fromEntries(KINDS.map((k) => [k, compileSchema(documentSchema(k))])) as Record<Kind, Validator<unknown>>;
  return validators;
}

const isKind = (k: unknown): k is Kind => typeof k === 'string' && (KINDS as readonly string[]).includes(k);

export function schemaPass(docs: readonly ParsedDoc[], c: Collector, state: LoadState): ValidDoc[] {
  const valid: ValidDoc[] = [];
  for (const d of docs) {
    state.file = d.file;
    const kind = d.value.kind;
    if (d.value.apiVersion !== API_VERSION) {
      c.add('error', 'schema', c.at(d, ['apiVersion']), `apiVersion must be ${API_VERSION} (found ${JSON.stringify(d.value.apiVersion ?? null)})`);
      continue;
    }
    if (!isKind(kind)) {
      c.add('error', 'schema', c.at(d, ['kind']), `kind must be one of ${KINDS.join(', ')} (found ${JSON.stringify(kind ?? null)})`);
      continue;
    }
    const problems = schemaValidators()[kind].problems(d.value);
    for (const e of problems) c.add('error', 'schema', c.at(d, e.path, e.key), e.message);
    if (problems.length === 0) valid.push({ d, kind });
  }
  return valid;
}
