/**
 * The first schema. Ids are `text COLLATE "C"`: compared and ordered byte for byte (code point
 * order), as LevelDB orders its keys, whatever the database's locale. Records the store never
 * queries inside are JSON in `text`: JSON.stringify escapes U+0000 and lone surrogates, which
 * `json`/`jsonb` input would refuse, so any record a device could cause round-trips exactly.
 */
export const sql = `
CREATE TABLE devices (
  id text COLLATE "C" PRIMARY KEY,
  record text NOT NULL
);

CREATE TABLE certs (
  cert_hash text COLLATE "C" PRIMARY KEY,
  device_id text COLLATE "C" NOT NULL
);

CREATE TABLE bootstrap_tokens (
  device_id text COLLATE "C" PRIMARY KEY,
  token bytea NOT NULL
);

-- A channel: the device channel (id = device_id) or a user channel (id = device_id || ':' || user id).
CREATE TABLE enrollments (
  id text COLLATE "C" PRIMARY KEY,
  device_id text COLLATE "C" NOT NULL,
  record text NOT NULL,
  unlock_token bytea,
  last_seen_at timestamptz
);
CREATE INDEX enrollments_device ON enrollments (device_id);

-- Stored once per command uuid, however many targets it has.
CREATE TABLE payloads (
  uuid text COLLATE "C" PRIMARY KEY,
  payload bytea NOT NULL
);

CREATE SEQUENCE command_seq;

-- A command as queued for one enrollment, pending or finished (with its result).
CREATE TABLE commands (
  enrollment_id text COLLATE "C" NOT NULL,
  uuid text COLLATE "C" NOT NULL,
  seq bigint NOT NULL,
  request_type text NOT NULL,
  priority smallint NOT NULL,
  status text NOT NULL,
  enqueued_at text NOT NULL,
  updated_at text,
  not_now_count integer NOT NULL DEFAULT 0,
  result_at text,
  result_ts timestamptz,
  error_chain text,
  raw bytea,
  PRIMARY KEY (enrollment_id, uuid)
);
-- nextCommand: highest priority, then oldest, among what is still queued.
CREATE INDEX commands_queue ON commands (enrollment_id, priority DESC, seq) WHERE status IN ('Pending', 'NotNow');
CREATE INDEX commands_order ON commands (enrollment_id, seq);
CREATE INDEX commands_uuid ON commands (uuid);
-- compaction: finished commands by result time.
CREATE INDEX commands_finished ON commands (result_ts) WHERE result_ts IS NOT NULL;

CREATE TABLE artifacts (
  device_id text COLLATE "C" PRIMARY KEY,
  version integer NOT NULL,
  state text NOT NULL
);

-- The read model (src/store/status.ts): one row per device, its counts answered by SQL.
CREATE TABLE status_rows (
  device_id text COLLATE "C" PRIMARY KEY,
  state text NOT NULL,
  enrolled boolean NOT NULL,
  blueprints text[] NOT NULL,
  matched text[] NOT NULL,
  phases json NOT NULL,
  seen timestamptz NOT NULL,
  row text NOT NULL
);
CREATE INDEX status_rows_state ON status_rows (state);
CREATE INDEX status_rows_blueprints ON status_rows USING gin (blueprints);
`;
