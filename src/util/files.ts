import { chmodSync, renameSync, writeFileSync } from 'node:fs';

/** Replaces `file` by rename, so it is never half-written; `mode` is set even where the umask narrows it. */
export function writeAtomic(file: string, data: string | Buffer, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, file);
}
