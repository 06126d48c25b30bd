/**
 * Where each value of an XML profile stands (line:col of its key), how each number was written
 * (<integer> or <real>), and which dict keys appear twice: what the values alone cannot tell the
 * validator. From a second, recording parse of the text (parsePlistXml's `record` option).
 */
import { parsePlistXml, TRUSTED_LIMITS, type PlistValueRecord } from '../../protocol/plist-xml.js';

type Path = readonly (string | number)[];

export interface DuplicateKey {
  path: (string | number)[];
  line: number;
  col: number;
}

const keyOf = (path: Path) => path.join('\u0000');

export class PlistPositions {
  private readonly at = new Map<string, { offset: number; tag: string }>();
  private readonly lineStarts: number[] = [0];
  readonly duplicates: DuplicateKey[] = [];

  /** Throws what parsePlistXml throws. */
  constructor(text: string) {
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) this.lineStarts.push(i + 1);
    const dups: PlistValueRecord[] = [];
    parsePlistXml(text, TRUSTED_LIMITS, {
      record: (r) => {
        this.at.set(keyOf(r.path), { offset: r.keyAt ?? r.at, tag: r.tag });
        if (r.duplicate) dups.push(r);
      },
    });
    for (const r of dups) this.duplicates.push({ path: r.path, ...this.lineCol(r.keyAt ?? r.at) });
  }

  /** line:col of the value at `path` (of its key in a dict), or of its nearest ancestor present. */
  find(path: Path): { line: number; col: number } {
    for (let n = path.length; n >= 0; n--) {
      const hit = this.at.get(keyOf(path.slice(0, n)));
      if (hit) return this.lineCol(hit.offset);
    }
    return { line: 1, col: 1 };
  }

  /** The element a number at `path` was written as. */
  numberTag(path: Path): 'integer' | 'real' | undefined {
    const tag = this.at.get(keyOf(path))?.tag;
    return tag === 'integer' || tag === 'real' ? tag : undefined;
  }

  private lineCol(offset: number): { line: number; col: number } {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, col: offset - this.lineStarts[lo]! + 1 };
  }
}
