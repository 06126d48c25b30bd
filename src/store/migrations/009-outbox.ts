/**
 * The webhook outbox (src/store/roles/outbox.ts): one row per event and URL, ordered per URL by
 * `seq`; the event is JSON in `text`, as the first schema keeps records.
 */
export const sql = `
CREATE TABLE outbox (
  seq bigserial PRIMARY KEY,
  url text COLLATE "C" NOT NULL,
  event text NOT NULL
);
CREATE INDEX outbox_url ON outbox (url, seq);
`;
