/** The text of every generated file in schemas/, as scripts/gen-schemas.mjs writes it and the staleness test compares it. */
import { schemaFiles } from './fleet.js';

export function renderSchemaFiles(): Record<string, string> {
  return Object.fromEntries(Object.entries(schemaFiles()).map(([f, schema]) => [f, `${JSON.stringify(schema, null, 2)}\n`]));
}
