// Loader hooks of module-log.mjs: every loaded module's URL goes to ORCHARD_MODULE_LOG.
import { appendFileSync } from 'node:fs';

const logFile = process.env.ORCHARD_MODULE_LOG;

export async function load(url, context, nextLoad) {
  if (logFile) appendFileSync(logFile, `${url}\n`);
  return nextLoad(url, context);
}
