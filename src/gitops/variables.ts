/**
 * `${device.X}` and `${secret:NAME}` in profile strings. `$${` writes a literal `${`.
 */

/** Device facts a profile may use, as `${device.Name}`. */
export const DEVICE_VARIABLES = [
  'UDID',
  'SerialNumber',
  'DeviceName',
  'Model',
  'ModelName',
  'ProductName',
  'OSVersion',
  'BuildVersion',
  'IMEI',
  'MEID',
  'EnrollmentID',
] as const;

export type VariableRef = { kind: 'device'; name: string; raw: string } | { kind: 'secret'; name: string; raw: string } | { kind: 'unknown'; raw: string };

const VAR = /\$(\$?)\{([^}]*)\}/g;

export function findVariables(s: string): VariableRef[] {
  const out: VariableRef[] = [];
  for (const m of s.matchAll(VAR)) {
    if (m[1]) continue; // $${...} is a literal
    const body = m[2]!.trim();
    const dev = /^device\.([A-Za-z]+)$/.exec(body);
    const sec = /^secret:([A-Za-z0-9_.-]+)$/.exec(body);
    if (dev) out.push({ kind: 'device', name: dev[1]!, raw: m[0] });
    else if (sec) out.push({ kind: 'secret', name: sec[1]!, raw: m[0] });
    else out.push({ kind: 'unknown', raw: m[0] });
  }
  return out;
}

/** Replace variables; `lookup` returns undefined for a value it does not have (an error for the caller). */
export function substitute(s: string, lookup: (ref: VariableRef) => string | undefined): string {
  return s.replace(VAR, (whole, literal: string, body: string) => {
    if (literal) return whole.slice(1);
    const [ref] = findVariables(`\${${body}}`);
    const v = ref ? lookup(ref) : undefined;
    if (v === undefined) throw new Error(`no value for ${whole}`);
    return v;
  });
}
