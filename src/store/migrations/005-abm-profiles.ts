/**
 * The enrollment profiles Orchard defined at ABM (src/abm/profiles.ts): per token and profile name
 * the digest and uuid of the last definition, and every uuid Orchard defined (older ones included:
 * a device still holding one that no rule selects is cleared).
 */
export const sql = `
CREATE TABLE abm_profiles (
  token text COLLATE "C" NOT NULL,
  name text COLLATE "C" NOT NULL,
  digest text NOT NULL,
  uuid text NOT NULL,
  PRIMARY KEY (token, name)
);

CREATE TABLE abm_profile_uuids (
  uuid text COLLATE "C" PRIMARY KEY
);
`;
