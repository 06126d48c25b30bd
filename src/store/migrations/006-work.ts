/**
 * Durable per-device reconcile work (src/store/roles/work.ts): one row per device that needs a
 * reconcile, written in the transaction of its cause. Claimed with `FOR UPDATE SKIP LOCKED`;
 * `claim_until` is the claim's lease (a dead claimer's rows come back when it passes); `gen`
 * grows with every cause, so a cause written after a claim keeps the row when the claim finishes.
 */
export const sql = `
CREATE TABLE work (
  device_id text COLLATE "C" PRIMARY KEY,
  due_at timestamptz NOT NULL,
  gen bigint NOT NULL,
  claimed_by text,
  claim_until timestamptz NOT NULL DEFAULT 'epoch'
);
CREATE INDEX work_due ON work (due_at);
`;
