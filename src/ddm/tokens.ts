/**
 * DDM synchronisation tokens. A declaration's ServerToken is a SHA-256 over its rendered content,
 * so it is the same on any server and after any restart, changes with any change to the content
 * (Apple: "computed over the entire declaration content") and fits Apple's 64 octets as 64 hex
 * digits (a legacy declaration's ProfileURL counts as the profile and its version, see
 * renderDeclaration, so a server's address does not make plan and serve disagree). An enrollment's DeclarationsToken is a SHA-256 over the sorted (Identifier, ServerToken)
 * pairs of its whole set: a change, an addition and a removal all change it.
 */
import { createHash } from 'node:crypto';

/** JSON with object keys sorted (UTF-16 order), no whitespace: one text per value. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v ?? null);
}

const sha256Hex = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

/** SHA-256 hex of canonicalJson([Type, Identifier, Payload]). */
export function serverToken(d: { Type: string; Identifier: string; Payload: Record<string, unknown> }): string {
  return sha256Hex(canonicalJson([d.Type, d.Identifier, d.Payload]));
}

/** SHA-256 hex of the JSON array of [Identifier, ServerToken] pairs sorted by Identifier. */
export function declarationsToken(items: Iterable<{ Identifier: string; ServerToken: string }>): string {
  const pairs = [...items].map((i) => [i.Identifier, i.ServerToken] as const).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return sha256Hex(JSON.stringify(pairs));
}
