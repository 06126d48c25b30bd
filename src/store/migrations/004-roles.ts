/**
 * The store roles that lived in LevelDB directories beside the main store even on PostgreSQL
 * (src/store/postgres-roles.ts): DDM sets and status, staged rollouts, ABM devices and cursors.
 * Values are JSON in `text`, as in the first schema.
 */
export const sql = `
-- slot: 'current' or 'given' (a declaration set) or 'status' (what the device reported).
CREATE TABLE ddm (
  enrollment_id text COLLATE "C" NOT NULL,
  slot text NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (enrollment_id, slot)
);

CREATE TABLE rollouts (
  blueprint text COLLATE "C" PRIMARY KEY,
  state text NOT NULL
);

CREATE TABLE abm_devices (
  serial text COLLATE "C" PRIMARY KEY,
  record text NOT NULL
);

CREATE TABLE abm_cursors (
  token text COLLATE "C" PRIMARY KEY,
  cursor text NOT NULL
);
`;
