/** PEM (RFC 7468) <-> DER: the one place that writes and finds PEM blocks. */

/** A PEM block of `label` around DER, 64 columns. */
export function toPem(der: Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength)
    .toString('base64')
    .replace(/.{64}(?=.)/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** DER of every `label` block in a PEM text, in order. */
export function pemBlocks(pem: string | Buffer, label = 'CERTIFICATE'): Buffer[] {
  const text = typeof pem === 'string' ? pem : pem.toString('latin1');
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, 'g');
  return [...text.matchAll(re)].map((m) => Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
}

/** DER of the first `label` block; throws when there is none. */
export function pemToDer(pem: string | Buffer, label = 'CERTIFICATE'): Buffer {
  const der = pemBlocks(pem, label)[0];
  if (!der) throw new Error(`no ${label} block in PEM`);
  return der;
}

/** Whether the bytes hold any PEM block. */
export function isPem(data: string | Buffer): boolean {
  return data.includes('-----BEGIN ');
}
