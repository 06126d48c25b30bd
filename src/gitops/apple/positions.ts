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

/**
 * One node per value, children by key or index: memory in proportion to the values, whatever the
 * length of their keys (a joined path per value would repeat a long key in every descendant).
 */
interface Node {
  offset?: number;
  tag?: string;
  children?: Map<string | number, Node>;
}

export class PlistPositions {
  private readonly root: Node = {};
  private readonly lineStarts: number[] = [0];
  readonly duplicates: DuplicateKey[] = [];

  /** Throws what parsePlistXml throws. */
  constructor(text: string) {
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) this.lineStarts.push(i + 1);
    const dups: PlistValueRecord[] = [];
    parsePlistXml(text, TRUSTED_LIMITS, {
      record: (r) => {
        const node = this.node(r.path, true)!;
        node.offset = r.keyAt ?? r.at;
        node.tag = r.tag;
        if (r.duplicate) dups.push(r);
      },
    });
    for (const r of dups) this.duplicates.push({ path: r.path, ...this.lineCol(r.keyAt ?? r.at) });
  }

  /** line:col of the value at `path` (of its key in a dict), or of its nearest ancestor present. */
  find(path: Path): { line: number; col: number } {
    let best: number | undefined;
    let node: Node | undefined = this.root;
    for (let i = 0; node; i++) {
      if (node.offset !== undefined) best = node.offset;
      if (i === path.length) break;
      node = node.children?.get(path[i]!);
    }
    return best === undefined ? { line: 1, col: 1 } : this.lineCol(best);
  }

  /** The element a number at `path` was written as. */
  numberTag(path: Path): 'integer' | 'real' | undefined {
    const tag = this.node(path, false)?.tag;
    return tag === 'integer' || tag === 'real' ? tag : undefined;
  }

  private node(path: Path, create: boolean): Node | undefined {
    let node: Node = this.root;
    for (const k of path) {
      let next = node.children?.get(k);
      if (!next) {
        if (!create) return undefined;
        next = {};
        (node.children ??= new Map()).set(k, next);
      }
      node = next;
    }
    return node;
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
