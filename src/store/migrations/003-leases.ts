/**
 * The leader lease (src/store/lease.ts): one row per lease name, taken and renewed under
 * compare-and-set by one `INSERT ... ON CONFLICT DO UPDATE ... WHERE` statement. `token` grows
 * with every change of holder (the fencing token); `expires_at` is 'epoch' once released.
 */
export const sql = `
CREATE TABLE leases (
  name text COLLATE "C" PRIMARY KEY,
  holder text NOT NULL,
  token bigint NOT NULL,
  expires_at timestamptz NOT NULL
);
`;
