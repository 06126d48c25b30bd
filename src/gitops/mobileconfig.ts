/**
 * Reading an existing .mobileconfig from the repository: XML, or CMS-signed (SignedData with
 * the XML as its encapsulated content). The signature is not checked: the admin committed the
 * file, and a signed profile is installed byte for byte as it is.
 */
import * as asn1js from 'asn1js';
import { parsePlistDict, TRUSTED_LIMITS, type PlistDict } from '../protocol/plist.js';
import { id_signedData } from '../identity/oids.js';

export class MobileconfigError extends Error {}

/** The XML plist inside the file, and whether the file was signed. */
export function profileXml(bytes: Buffer): { xml: Buffer; signed: boolean } {
  const head = bytes.subarray(0, 64).toString('latin1').trimStart();
  if (head.startsWith('<')) return { xml: bytes, signed: false };
  if (bytes[0] !== 0x30) throw new MobileconfigError('neither an XML plist nor a CMS-signed profile');
  const parsed = asn1js.fromBER(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  if (parsed.offset === -1) throw new MobileconfigError(`signed profile is not valid BER: ${parsed.result.error}`);
  // ContentInfo { contentType, [0] SignedData { version, digestAlgorithms, encapContentInfo { eContentType, [0] eContent } ... } }
  const ci = parsed.result as asn1js.Sequence;
  const [type, explicit] = ci.valueBlock.value as [asn1js.ObjectIdentifier, asn1js.Constructed];
  if (!(type instanceof asn1js.ObjectIdentifier) || type.valueBlock.toString() !== id_signedData) {
    throw new MobileconfigError('CMS content is not SignedData');
  }
  const sd = explicit?.valueBlock.value[0] as asn1js.Sequence | undefined;
  const encap = sd?.valueBlock.value[2] as asn1js.Sequence | undefined;
  const content = (encap?.valueBlock.value[1] as asn1js.Constructed | undefined)?.valueBlock.value[0];
  if (!content) throw new MobileconfigError('signed profile has no content (detached signature?)');
  return { xml: Buffer.from(octets(content)), signed: true };
}

/** An OCTET STRING's bytes, also when BER splits it into constructed chunks. */
function octets(block: asn1js.AsnType): Uint8Array {
  const os = block as asn1js.OctetString;
  if (os.idBlock.isConstructed) {
    const parts = (os.valueBlock.value as asn1js.OctetString[]).map(octets);
    return Buffer.concat(parts);
  }
  return new Uint8Array(os.valueBlock.valueHexView);
}

export interface ReadProfileOptions {
  /** Deepest nesting of dict and array accepted (the loader's depth limit); unchecked if absent. */
  maxDepth?: number;
}

export function readProfile(bytes: Buffer, opts: ReadProfileOptions = {}): { profile: PlistDict; signed: boolean } {
  const { xml, signed } = profileXml(bytes);
  if (opts.maxDepth !== undefined) checkNesting(xml.toString('utf8'), opts.maxDepth);
  let profile: PlistDict;
  try {
    // The admin's own file: profiles may embed large payloads, so not the device-body limits.
    profile = parsePlistDict(xml, TRUSTED_LIMITS);
  } catch (err) {
    throw new MobileconfigError((err as Error).message);
  }
  if (profile.PayloadType !== 'Configuration') {
    throw new MobileconfigError(`PayloadType is ${JSON.stringify(profile.PayloadType)}, expected "Configuration": not a configuration profile`);
  }
  return { profile, signed };
}

/**
 * Refuse dict/array nesting deeper than `max` before any parser (or, later, the renderer, which
 * recurses) sees it. A scan with indexOf, not a regular expression: linear on any input.
 */
function checkNesting(xml: string, max: number): void {
  let depth = 0;
  for (let i = xml.indexOf('<'); i !== -1; i = xml.indexOf('<', i + 1)) {
    if (xml.startsWith('<!--', i)) {
      i = xml.indexOf('-->', i + 4);
    } else if (xml.startsWith('<![CDATA[', i)) {
      i = xml.indexOf(']]>', i + 9);
    } else {
      const close = xml[i + 1] === '/';
      const name = close ? i + 2 : i + 1;
      const isContainer = (xml.startsWith('dict', name) && !/[\w.:-]/.test(xml[name + 4] ?? '')) || (xml.startsWith('array', name) && !/[\w.:-]/.test(xml[name + 5] ?? ''));
      const end = xml.indexOf('>', i);
      if (isContainer && end !== -1) {
        if (close) depth = Math.max(0, depth - 1);
        else if (xml[end - 1] !== '/' && ++depth > max) {
          const line = xml.slice(0, i).split('\n').length;
          throw new MobileconfigError(`dict and array nesting deeper than ${max} levels at line ${line} (limit depth)`);
        }
      }
      i = end;
    }
    if (i === -1) break; // unterminated: the parser says what is wrong
  }
}
