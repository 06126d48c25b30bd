/**
 * A schema of src/schema/api.ts loaded when first needed: the routes name their body schema here,
 * so `orchard serve` starts without TypeBox (and Ajv, see src/http/validate-body.ts) until an admin
 * API body arrives.
 */
type ApiSchemas = typeof import('./api.js');

export type SchemaLoader<S> = () => Promise<S>;

export function apiSchema<K extends keyof ApiSchemas>(name: K): SchemaLoader<ApiSchemas[K]> {
  return async () => (await import('./api.js'))[name];
}
