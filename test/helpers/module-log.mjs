// `node --import ./module-log.mjs ...`: appends the URL of every module the process loads (ESM, the
// CommonJS packages it imports, and what CommonJS code require()s, lazily or not) to the file named
// by ORCHARD_MODULE_LOG, one per line. The ESM hooks run on Node's loader thread, so they write to
// a file rather than keep a list in memory; require() is seen on the main thread, through the
// CommonJS loader that Node 20's ESM hooks do not reach.
import { appendFileSync } from 'node:fs';
import Module, { register } from 'node:module';
import { pathToFileURL } from 'node:url';

register(new URL('./module-log-hooks.mjs', import.meta.url));

const logFile = process.env.ORCHARD_MODULE_LOG;
const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (logFile && !Module.isBuiltin(request)) {
    try {
      appendFileSync(logFile, `${pathToFileURL(Module._resolveFilename(request, parent, isMain)).href}\n`);
    } catch {
      // Not resolvable: the load below throws its own error.
    }
  }
  return load.apply(this, arguments);
};
