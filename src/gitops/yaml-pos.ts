/** Find the YAML node behind a JSON path, so every diagnostic can name file:line:col. */
import { isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

export type JsonPath = (string | number)[];

export interface Located {
  line: number;
  col: number;
}

/**
 * The node at `path` in the document (the closest existing ancestor if the path goes further
 * than the document does). With `key`, the position of the key itself (for "unknown key").
 */
export function locate(doc: Document, lc: LineCounter, path: JsonPath, opts: { key?: boolean } = {}): Located {
  let node: unknown = doc.contents;
  let keyNode: unknown;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg));
      if (!pair) break;
      keyNode = pair.key;
      node = pair.value ?? pair.key;
    } else if (isSeq(node) && typeof seg === 'number' && node.items[seg] !== undefined) {
      keyNode = undefined;
      node = node.items[seg];
    } else {
      break;
    }
  }
  const target = (opts.key && keyNode ? keyNode : node) as Node | undefined;
  const offset = target?.range?.[0] ?? 0;
  const p = lc.linePos(offset);
  return { line: p.line, col: p.col };
}
