/**
 * `orchard rollout list` and `orchard rollout resume BLUEPRINT`: the staged rollouts of a server
 * (GET /api/v1/rollouts, read token) and going on past a halted gate (admin token).
 * Exit codes: 0 done, 1 the server refused (unknown blueprint, not halted, token), 2 unreachable.
 */
import type { RolloutView } from '../reconcile/rollout.js';

export interface RolloutCliOptions {
  server: string;
  token?: string;
  action: 'list' | 'resume';
  blueprint?: string;
}

export async function runRollout(opts: RolloutCliOptions): Promise<{ exitCode: 0 | 1 | 2; stdout: string; stderr?: string }> {
  const path = opts.action === 'resume' ? `/api/v1/rollouts/${encodeURIComponent(opts.blueprint ?? '')}/resume` : '/api/v1/rollouts';
  const url = new URL(path, opts.server);
  let res: Response;
  try {
    res = await fetch(url, {
      method: opts.action === 'resume' ? 'POST' : 'GET',
      headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
    });
  } catch (err) {
    return { exitCode: 2, stdout: '', stderr: `orchard rollout: cannot reach ${url.origin}: ${(err as Error).message}\n` };
  }
  const text = await res.text();
  if (!res.ok) {
    let message = text.slice(0, 300);
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? message;
    } catch {
      // not JSON: the text as it came
    }
    return { exitCode: 1, stdout: '', stderr: `orchard rollout: ${res.status}: ${message}\n` };
  }
  const body = JSON.parse(text) as RolloutView | { rollouts: RolloutView[] };
  const views = 'rollouts' in body ? body.rollouts : [body];
  if (views.length === 0) return { exitCode: 0, stdout: 'No staged rollouts.\n' };
  return { exitCode: 0, stdout: views.map(line).join('\n') + '\n' };
}

function line(v: RolloutView): string {
  const c = v.counts;
  const where = `step ${v.step + 1} of ${v.steps.length} (${v.percent}%)`;
  const why = v.halted ? `: ${v.halted.reason}` : '';
  return `${v.blueprint}: ${v.phase}, ${where}, ${c.verified} verified, ${c.pending} pending, ${c.failed} failed of ${c.devices}${why}`;
}
