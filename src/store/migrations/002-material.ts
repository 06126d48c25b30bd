/** Server state beside the devices (src/store/material.ts): opaque values by kind and key, with an expiry. */
export const sql = `
CREATE TABLE material (
  kind text NOT NULL,
  key text COLLATE "C" NOT NULL,
  value bytea NOT NULL,
  expires_at timestamptz,
  PRIMARY KEY (kind, key)
);
CREATE INDEX material_expiry ON material (kind, expires_at) WHERE expires_at IS NOT NULL;
`;
