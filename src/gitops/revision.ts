import type { RevisionInfo } from './source.js';

/** How a revision is named in device state, logs and rollouts: its commit, or (no git) its content hash's first 12 characters. */
export function revisionLabel(info: Pick<RevisionInfo, 'commit' | 'contentHash'>): string {
  return info.commit ?? info.contentHash.slice(0, 12);
}
