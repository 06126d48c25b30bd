/**
 * Fleet and blueprint counts kept, not computed: a scrape of /api/v1/status or /metrics reads
 * O(blueprints) rows instead of a GROUP BY over every device's status row.
 *
 * Every change of a status row's counted columns adds its net change to `status_count_deltas`
 * (a row trigger, so it is in the transaction that writes the row, whichever statement writes
 * it). Writers only append, so concurrent transactions never wait on a hot counter row; readers
 * add the deltas to `status_counts`, and any replica folds the deltas into `status_counts` now and
 * then (PgStore.foldCounts). `status_count_keys` says what one row counts for, for the trigger and
 * for the recount that fills `status_counts` from the rows already there (an existing install).
 *
 * Keys: (blueprint '', kind 'fleet', state), ('', 'enrolled', ''); per blueprint (name, 'matched',
 * ''), (name, 'state', state), (name, 'verified' | 'failed', PayloadIdentifier). As
 * StatusIndex (src/store/status.ts) counts: a blueprint's profile phases only while enrolled.
 *
 * Also: per-state pages walk (state, device_id) in order, and stale counts and pages use `seen`.
 */
export const sql = `
CREATE TABLE status_counts (
  blueprint text COLLATE "C" NOT NULL,
  kind text NOT NULL,
  key text COLLATE "C" NOT NULL,
  n bigint NOT NULL,
  PRIMARY KEY (blueprint, kind, key)
);

CREATE TABLE status_count_deltas (
  blueprint text COLLATE "C" NOT NULL,
  kind text NOT NULL,
  key text COLLATE "C" NOT NULL,
  n bigint NOT NULL
);

CREATE FUNCTION status_count_keys(st text, enr boolean, bps text[], mat text[], ph json)
RETURNS TABLE (blueprint text, kind text, key text) LANGUAGE sql IMMUTABLE AS $$
  SELECT '', 'fleet', st
  UNION ALL SELECT '', 'enrolled', '' WHERE enr
  UNION ALL SELECT m, 'matched', '' FROM unnest(mat) AS m
  UNION ALL SELECT b, 'state', st FROM unnest(bps) AS b
  UNION ALL SELECT b, p.value, p.key FROM unnest(bps) AS b, json_each_text(ph) AS p
    WHERE st <> 'unenrolled' AND p.value IN ('verified', 'failed')
$$;

CREATE FUNCTION status_rows_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.state = NEW.state AND OLD.enrolled = NEW.enrolled AND OLD.blueprints = NEW.blueprints
     AND OLD.matched = NEW.matched AND OLD.phases::text = NEW.phases::text THEN
    RETURN NULL;
  END IF;
  INSERT INTO status_count_deltas (blueprint, kind, key, n)
  SELECT k.blueprint, k.kind, k.key, sum(k.n) FROM (
    SELECT o.blueprint, o.kind, o.key, -1 AS n FROM status_count_keys(OLD.state, OLD.enrolled, OLD.blueprints, OLD.matched, OLD.phases) AS o
      WHERE TG_OP <> 'INSERT'
    UNION ALL
    SELECT w.blueprint, w.kind, w.key, 1 FROM status_count_keys(NEW.state, NEW.enrolled, NEW.blueprints, NEW.matched, NEW.phases) AS w
      WHERE TG_OP <> 'DELETE'
  ) AS k
  GROUP BY 1, 2, 3 HAVING sum(k.n) <> 0;
  RETURN NULL;
END
$$;

CREATE TRIGGER status_rows_count AFTER INSERT OR DELETE OR UPDATE OF state, enrolled, blueprints, matched, phases ON status_rows
  FOR EACH ROW EXECUTE FUNCTION status_rows_count();

INSERT INTO status_counts (blueprint, kind, key, n)
SELECT k.blueprint, k.kind, k.key, count(*) FROM status_rows AS s, status_count_keys(s.state, s.enrolled, s.blueprints, s.matched, s.phases) AS k
GROUP BY 1, 2, 3;

DROP INDEX status_rows_state;
CREATE INDEX status_rows_state ON status_rows (state, device_id);
CREATE INDEX status_rows_seen ON status_rows (seen);
`;
