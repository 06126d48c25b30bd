/**
 * One YAML file of the fleet repository -> its documents as JS values, within the loader's
 * limits, with every problem a diagnostic at file:line:col and no exception for any input.
 *
 * The `yaml` package builds everything eagerly and costs hundreds of bytes of heap per token, so
 * the work is staged: a streaming lexer pass counts nodes, documents and flow nesting without
 * keeping anything; then each document's CST is checked for nesting before it is composed (the
 * composer recurses); then our own conversion to JS (not `toJS`) resolves aliases once each,
 * counts what they expand to, and refuses recursive ones. It also checks duplicate keys, which
 * the package does in quadratic time.
 */
import { Composer, isAlias, isMap, isPair, isScalar, isSeq, Lexer, LineCounter, Parser, type CST, type Document, type Node } from 'yaml';
import type { LoaderLimits } from './limits.js';
import type { Diagnostic } from './model.js';
import { Malformed } from '../errors.js';

/** What the files loaded so far have used of the repository-wide limits. */
export interface YamlUsage {
  nodes: number;
  chars: number;
  documents: number;
}

export const newUsage = (): YamlUsage => ({ nodes: 0, chars: 0, documents: 0 });

export interface YamlDoc {
  doc: Document;
  /** The document as JS: mappings are plain objects, aliases share the value of their anchor. */
  value: unknown;
}

export interface YamlFileResult {
  docs: YamlDoc[];
  lc: LineCounter;
  diagnostics: Diagnostic[];
  /** A repository-wide limit was reached: loading more files cannot succeed. */
  exhausted: boolean;
}

/** A limit or a structural problem at an offset of the file. */
class Stop extends Malformed {
  constructor(
    readonly offset: number,
    message: string,
    readonly rule: string,
    readonly exhausted = false,
  ) {
    super(message);
  }
}

const nodesMessage = (n: number) => `more than ${n} YAML nodes in the repository, aliases counted as what they expand to (limit nodes)`;

const SCALAR = '\x1f';
const DOC_MODE = '\x02';
const FLOW_END = '\x18';

/**
 * Parse one file. `usage` is updated with what its documents use; a limit is reported where the
 * file crossed it.
 */
export function parseYamlFile(file: string, text: string, limits: LoaderLimits, usage: YamlUsage): YamlFileResult {
  const lc = new LineCounter();
  const out: YamlFileResult = { docs: [], lc, diagnostics: [], exhausted: false };
  const diag = (offset: number, rule: string, message: string) => {
    const p = lc.linePos(Math.max(0, Math.min(offset, text.length)));
    out.diagnostics.push({ severity: 'error', rule, file, line: p.line, col: p.col, message });
  };
  try {
    prescan(text, limits, usage);
  } catch (err) {
    if (!(err instanceof Stop)) throw err;
    // The lexer pass keeps no line table: count the lines up to the offset.
    lc.addNewLine(0);
    for (let i = text.indexOf('\n'); i !== -1 && i < err.offset; i = text.indexOf('\n', i + 1)) lc.addNewLine(i + 1);
    diag(err.offset, err.rule, err.message);
    out.exhausted = err.exhausted;
    return out;
  }

  const parser = new Parser(lc.addNewLine);
  // Duplicate keys are found by the Converter in linear time; the package compares every pair.
  const composer = new Composer({ prettyErrors: false, uniqueKeys: false });
  const composed: Document[] = [];
  for (const token of parser.parse(text)) {
    if (token.type === 'document') {
      const deep = tooDeep(token, limits.depth);
      if (deep !== undefined) {
        diag(deep, 'yaml-depth', `nesting deeper than ${limits.depth} levels (limit depth)`);
        continue;
      }
    }
    for (const d of composer.next(token)) composed.push(d);
  }
  for (const d of composer.end()) composed.push(d);

  if (usage.documents + composed.length > limits.documents) {
    const over = composed[Math.max(0, limits.documents - usage.documents)];
    diag(over?.range?.[0] ?? 0, 'limit-documents', `more than ${limits.documents} YAML documents in the repository (limit documents)`);
    out.exhausted = true;
    return out;
  }
  usage.documents += composed.length;

  for (const doc of composed) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) diag(e.pos[0], 'yaml', e.message.split('\n')[0]!);
      continue;
    }
    try {
      const value = new Converter(doc, lc, limits, usage).run();
      out.docs.push({ doc, value });
    } catch (err) {
      if (!(err instanceof Stop)) throw err;
      diag(err.offset, err.rule, err.message);
      if (err.exhausted) {
        out.exhausted = true;
        return out;
      }
    }
  }
  return out;
}

/**
 * The lexer pass: no tokens are kept. Nodes are counted as scalars, aliases and flow
 * collections, plus indicators (`-`, `?`, `:`) with nothing after them (an empty or nested
 * value), which never counts more than the composer will build, so it is never stricter than
 * the exact count later; it only keeps hostile input from being parsed into a huge CST.
 */
function prescan(text: string, limits: LoaderLimits, usage: YamlUsage): void {
  let offset = 0;
  let nodes = 0;
  let docs = 0;
  let inDoc = false;
  let flow = 0;
  let pending = false;
  const nodeBudget = limits.nodes - usage.nodes;
  // Nesting seen here is flow nesting only; block nesting is checked on each document's CST.
  const flowLimit = limits.depth;
  const count = (at: number) => {
    if (++nodes > nodeBudget) throw new Stop(at, nodesMessage(limits.nodes), 'limit-nodes', true);
  };
  // A document starts at `---` or at its first node; never more than the composer will make.
  const startDoc = (at: number) => {
    if (inDoc) return;
    inDoc = true;
    if (++docs + usage.documents > limits.documents) {
      throw new Stop(at, `more than ${limits.documents} YAML documents in the repository (limit documents)`, 'limit-documents', true);
    }
  };
  for (const lexeme of new Lexer().lex(text)) {
    if (lexeme === SCALAR || lexeme === DOC_MODE || lexeme === FLOW_END) continue; // markers, not in the source
    const at = offset;
    offset += lexeme.length;
    const c = lexeme[0];
    if (lexeme === '-' || lexeme === '?' || lexeme === ':') {
      startDoc(at);
      if (pending) count(at);
      pending = true;
    } else if (lexeme === '[' || lexeme === '{') {
      startDoc(at);
      pending = false;
      count(at);
      if (++flow > flowLimit) throw new Stop(at, `nesting deeper than ${limits.depth} levels (limit depth)`, 'yaml-depth');
    } else if (lexeme === ']' || lexeme === '}') {
      flow = Math.max(0, flow - 1);
    } else if (lexeme === '---') {
      if (pending) count(at);
      pending = false;
      inDoc = false;
      startDoc(at);
    } else if (lexeme === '...') {
      inDoc = false;
    } else if (
      c === ' ' ||
      c === '\t' ||
      c === '\n' ||
      c === '\r' ||
      c === '#' ||
      c === ',' ||
      c === '&' ||
      c === '!' ||
      c === '|' ||
      c === '>' ||
      c === '%' ||
      lexeme === '\uFEFF'
    ) {
      // layout, comments, properties, headers, directives: not nodes
    } else {
      startDoc(at);
      pending = false;
      count(at); // a scalar (or its continuation) or an alias
    }
  }
  if (pending) count(offset);
}

/** The offset of the first collection nested deeper than `limit` in a document's CST, if any. */
function tooDeep(doc: CST.Document, limit: number): number | undefined {
  // Iterative: the CST of hostile input may be nested far deeper than the stack allows.
  const stack: [CST.Token, number][] = doc.value ? [[doc.value, 0]] : [];
  while (stack.length > 0) {
    const [t, level] = stack.pop()!;
    if (t.type !== 'block-map' && t.type !== 'block-seq' && t.type !== 'flow-collection') continue;
    if (level + 1 > limit) return t.offset;
    for (const item of t.items) {
      if (item.key) stack.push([item.key, level + 1]);
      if (item.value) stack.push([item.value, level + 1]);
    }
  }
  return undefined;
}

interface Anchored {
  value: unknown;
  nodes: number;
  chars: number;
  height: number;
  done: boolean;
}

/**
 * AST -> JS, counting every node and scalar character against the repository's limits; an alias
 * counts as the whole subtree it stands for, so a "billion laughs" stops at the limit while a
 * harmless anchor reused many times loads. Values match `toJS` for the core schema.
 */
class Converter {
  private readonly anchors = new Map<string, Node>();
  private readonly info = new Map<Node, Anchored>();

  constructor(
    private readonly doc: Document,
    private readonly lc: LineCounter,
    private readonly limits: LoaderLimits,
    private readonly usage: YamlUsage,
  ) {}

  run(): unknown {
    const contents = this.doc.contents as Node | null;
    return contents ? this.node(contents, 0).value : null;
  }

  private add(nodes: number, chars: number, at: number): void {
    this.usage.nodes += nodes;
    this.usage.chars += chars;
    if (this.usage.nodes > this.limits.nodes) {
      throw new Stop(at, nodesMessage(this.limits.nodes), 'limit-nodes', true);
    }
    if (this.usage.chars > this.limits.scalarChars) {
      throw new Stop(
        at,
        `more than ${this.limits.scalarChars} characters of YAML values in the repository, aliases counted as what they expand to (limit scalarChars)`,
        'limit-chars',
        true,
      );
    }
  }

  /** `level`: collections around this node. Returns the value and the height of its subtree. */
  private node(n: Node, level: number): { value: unknown; height: number } {
    const at = n.range?.[0] ?? 0;
    if (isAlias(n)) {
      const target = this.anchors.get(n.source);
      const info = target && this.info.get(target);
      if (!info) throw new Stop(at, `alias *${n.source} has no anchor &${n.source} before it`, 'yaml');
      if (!info.done) throw new Stop(at, `alias *${n.source} is inside the node it refers to (a recursive structure)`, 'yaml');
      if (level + info.height > this.limits.depth) {
        throw new Stop(at, `alias *${n.source} makes the nesting deeper than ${this.limits.depth} levels (limit depth)`, 'yaml-depth');
      }
      this.add(info.nodes, info.chars, at);
      return { value: info.value, height: info.height };
    }
    const before = n.anchor ? { nodes: this.usage.nodes, chars: this.usage.chars } : undefined;
    let rec: Anchored | undefined;
    if (n.anchor) {
      // Registered before the children: an alias inside refers to this node (and is refused).
      rec = { value: undefined, nodes: 0, chars: 0, height: 0, done: false };
      this.anchors.set(n.anchor, n);
      this.info.set(n, rec);
    }
    const r = this.build(n, level, at);
    if (rec && before) {
      Object.assign(rec, { value: r.value, height: r.height, nodes: this.usage.nodes - before.nodes, chars: this.usage.chars - before.chars, done: true });
    }
    return r;
  }

  private build(n: Node, level: number, at: number): { value: unknown; height: number } {
    if (isScalar(n)) {
      const v = n.value;
      this.add(1, typeof v === 'string' ? v.length : 0, at);
      return { value: v, height: 0 };
    }
    if (level + 1 > this.limits.depth) throw new Stop(at, `nesting deeper than ${this.limits.depth} levels (limit depth)`, 'yaml-depth');
    this.add(1, 0, at);
    if (isSeq(n)) {
      const arr: unknown[] = [];
      let height = 0;
      for (const item of n.items) {
        if (isPair(item)) {
          // A single-pair mapping inside a flow sequence, `[a: b]`.
          const r = this.pairMap(item as never, level + 1, at);
          arr.push(r.value);
          height = Math.max(height, r.height);
          continue;
        }
        const r = item ? this.node(item as Node, level + 1) : { value: null, height: 0 };
        arr.push(r.value);
        height = Math.max(height, r.height);
      }
      return { value: arr, height: height + 1 };
    }
    if (isMap(n)) {
      const obj: Record<string, unknown> = {};
      const seen = new Map<string, number>();
      let height = 0;
      for (const pair of n.items) {
        const k = this.key(pair.key as Node | null, level + 1, at);
        const keyAt = (pair.key as Node | null)?.range?.[0] ?? at;
        const first = seen.get(k);
        if (first !== undefined) throw new Stop(keyAt, `duplicate key ${JSON.stringify(k.slice(0, 100))} (first at line ${this.lineOf(first)})`, 'yaml');
        seen.set(k, keyAt);
        const r = pair.value ? this.node(pair.value as Node, level + 1) : { value: null, height: 0 };
        if (!pair.value) this.add(1, 0, keyAt);
        setKey(obj, k, r.value);
        height = Math.max(height, r.height);
      }
      return { value: obj, height: height + 1 };
    }
    throw new Stop(at, 'unsupported YAML node', 'yaml');
  }

  private pairMap(pair: { key: Node | null; value: Node | null }, level: number, at: number): { value: unknown; height: number } {
    if (level + 1 > this.limits.depth) throw new Stop(at, `nesting deeper than ${this.limits.depth} levels (limit depth)`, 'yaml-depth');
    this.add(1, 0, at);
    const obj: Record<string, unknown> = {};
    const k = this.key(pair.key, level + 1, at);
    const r = pair.value ? this.node(pair.value, level + 1) : { value: null, height: 0 };
    setKey(obj, k, r.value);
    return { value: obj, height: r.height + 1 };
  }

  /** Mapping keys must be scalars (or aliases of scalars); their JS key is the string of the value. */
  private key(k: Node | null, level: number, at: number): string {
    if (!k) {
      this.add(1, 0, at);
      return '';
    }
    const { value } = this.node(k, level);
    if (value !== null && typeof value === 'object')
      throw new Stop(k.range?.[0] ?? at, 'a mapping key must be a plain value, not a mapping or sequence', 'yaml');
    return value === null || value === undefined ? '' : String(value);
  }

  private lineOf(offset: number): number {
    return this.lc.linePos(offset).line;
  }
}

/** Like toJS: `__proto__` becomes an own property rather than the object's prototype. */
function setKey(obj: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__') Object.defineProperty(obj, k, { value: v, writable: true, enumerable: true, configurable: true });
  else obj[k] = v;
}
