// `node --import ./module-log.mjs ...`: appends the URL of every module the process loads (ESM and
// the CommonJS packages it imports) to the file named by ORCHARD_MODULE_LOG, one per line. The
// hooks run on Node's loader thread, so they write to a file rather than keep a list in memory.
import { register } from 'node:module';

register(new URL('./module-log-hooks.mjs', import.meta.url));
