/**
 * Admin API bodies validated before the handler runs: the body is read (within a byte limit),
 * parsed as JSON and checked against its schema from src/schema/api.ts; the handler finds the
 * typed value in `ctx.state.body`. A refusal says what and where (`targets.0 must NOT have fewer
 * than 1 characters`) and never quotes the body.
 *
 * Put it after the route's access check (`...guard, jsonBody(apiSchema('Name'), opts), handler`): nobody
 * without a token gets a body read.
 */
import type { IncomingMessage } from 'node:http';
import type { Middleware } from 'koa';
import getRawBody from 'raw-body';
import type { Static, TSchema } from 'typebox';
import { Malformed, TooLarge, UnsupportedMediaType } from '../errors.js';
import type { SchemaLoader } from '../schema/lazy-api.js';
import type { Validator } from '../schema/validate.js';

export interface JsonBodyOptions {
  maxBytes: number;
  /** An empty body stands for `{}` (the body is optional). */
  optional?: boolean;
  /**
   * Other media types the route reads itself: their raw bytes go to `ctx.state.rawBody` unchecked.
   * JSON is `application/json`, `*+json` or no Content-Type at all.
   */
  alsoAccept?: readonly string[];
  /**
   * Parse any other media type as JSON too (routes that always did, so `curl -d` without a
   * Content-Type header keeps working).
   */
  anyMediaType?: boolean;
}

/** What jsonBody() leaves for the handler. */
export interface BodyState<T> {
  body?: T;
  rawBody?: Buffer;
  mediaType?: string;
}

const MAX_PROBLEMS = 5;

/**
 * `schema` is loaded and compiled on the route's first body (then kept): a server that never gets
 * an admin API body never loads TypeBox or Ajv.
 */
export function jsonBody<S extends TSchema>(schema: SchemaLoader<S>, opts: JsonBodyOptions): Middleware<BodyState<Static<S>>> {
  let validator: Promise<Validator<Static<S>>> | undefined;
  const compiled = () =>
    (validator ??= Promise.all([schema(), import('../schema/validate.js')]).then(([s, { compileSchema }]) => compileSchema<Static<S>>(s, 'body')));
  const also = new Set((opts.alsoAccept ?? []).map((t) => t.toLowerCase()));
  return async (ctx, next) => {
    const type = (ctx.get('content-type').split(';')[0] ?? '').trim().toLowerCase();
    const json = type === '' || type === 'application/json' || type.endsWith('+json');
    if (!json && !also.has(type) && !opts.anyMediaType) {
      const accepted = ['application/json', ...also].join(' or ');
      throw new UnsupportedMediaType(`content type "${type.slice(0, 80)}" not accepted: send ${accepted}`);
    }
    const raw = await readBody(ctx.req, opts.maxBytes);
    ctx.state.rawBody = raw;
    ctx.state.mediaType = type;
    if (also.has(type)) return next();
    const text = raw.toString('utf8');
    let value: unknown;
    if (text.trim() === '' && opts.optional) value = {};
    else {
      try {
        value = JSON.parse(text);
      } catch (err) {
        // Not the parser's message: it quotes the body.
        const at = /position (\d+)/.exec((err as Error).message)?.[1];
        throw new Malformed(`body is not JSON${at !== undefined ? ` (at byte ${at})` : ''}`, { cause: err });
      }
    }
    const problems = (await compiled()).problems(value);
    if (problems.length > 0) {
      const shown = problems.slice(0, MAX_PROBLEMS).map((p) => p.message);
      if (problems.length > MAX_PROBLEMS) shown.push(`${problems.length - MAX_PROBLEMS} more`);
      throw new Malformed(shown.join('; '));
    }
    ctx.state.body = value as Static<S>;
    return next();
  };
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  try {
    return await getRawBody(req, { limit });
  } catch (err) {
    const e = err as { type?: string; message?: string };
    if (e.type === 'entity.too.large') throw new TooLarge(`body over the ${limit}-byte limit`, { cause: err });
    throw new Malformed(`could not read body: ${e.message ?? String(err)}`, { cause: err });
  }
}
