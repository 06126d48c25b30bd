/**
 * A device's answer in one statement (PgStore.recordResult): the device's lock, the command's row,
 * its result, the merged device record (compare-and-set on the record the caller read: the merge
 * of reported state is JavaScript, as the record is JSON text the database never parses), the
 * work row, and the channel's next command (none when `p_skip_not_now` is null). Before, an answer was a transaction of five to seven
 * round trips and the next command one more. An Acknowledged EraseDevice on the device channel
 * changes nothing here and answers 'erase': the caller writes it in a transaction of its own.
 */
export const sql = `
CREATE FUNCTION orchard_record_result(
  p_enrollment text, p_device text, p_uuid text, p_status text, p_at text, p_at_ms double precision,
  p_error_chain text, p_raw bytea, p_record_read text, p_record text, p_skip_not_now boolean
) RETURNS TABLE (
  outcome text, next_uuid text, next_request_type text, next_priority smallint, next_status text, next_enqueued_at text, next_payload bytea
) LANGUAGE plpgsql AS $$
DECLARE
  cmd_status text;
  cmd_type text;
  stored text;
BEGIN
  PERFORM pg_advisory_xact_lock(1, hashtext(p_device));
  SELECT c.status, c.request_type INTO cmd_status, cmd_type FROM commands c
    WHERE c.enrollment_id = p_enrollment AND c.uuid = p_uuid FOR UPDATE;
  IF NOT FOUND THEN
    outcome := 'unknown';
  ELSIF cmd_status IN ('Acknowledged', 'Error', 'CommandFormatError') THEN
    outcome := 'duplicate';
  ELSIF p_status = 'NotNow' THEN
    UPDATE commands c SET status = 'NotNow', not_now_count = c.not_now_count + 1, updated_at = p_at
      WHERE c.enrollment_id = p_enrollment AND c.uuid = p_uuid;
    outcome := 'notnow';
  ELSIF p_status = 'Acknowledged' AND cmd_type = 'EraseDevice' AND p_enrollment = p_device THEN
    RETURN QUERY SELECT 'erase'::text, NULL::text, NULL::text, NULL::smallint, NULL::text, NULL::text, NULL::bytea;
    RETURN;
  ELSE
    IF p_record IS NOT NULL THEN
      SELECT d.record INTO stored FROM devices d WHERE d.id = p_device FOR UPDATE;
      IF stored IS DISTINCT FROM p_record_read THEN
        -- Written since the caller read it: nothing changed, the caller merges again.
        RETURN QUERY SELECT 'moved'::text, NULL::text, NULL::text, NULL::smallint, NULL::text, NULL::text, NULL::bytea;
        RETURN;
      END IF;
      UPDATE devices d SET record = p_record WHERE d.id = p_device;
    END IF;
    UPDATE commands c SET status = p_status, updated_at = p_at, result_at = p_at, result_ts = to_timestamp(p_at_ms / 1000),
        error_chain = p_error_chain, raw = p_raw
      WHERE c.enrollment_id = p_enrollment AND c.uuid = p_uuid;
    -- The device's answer is a cause to reconcile it (src/store/roles/work.ts).
    IF p_enrollment = p_device THEN
      INSERT INTO work AS w (device_id, due_at, gen) VALUES (p_device, to_timestamp(p_at_ms / 1000), 1)
        ON CONFLICT (device_id) DO UPDATE SET due_at = LEAST(w.due_at, EXCLUDED.due_at), gen = w.gen + 1;
    END IF;
    outcome := 'recorded';
  END IF;
  RETURN QUERY SELECT outcome, n.uuid, n.request_type, n.priority, n.status, n.enqueued_at, n.payload
    FROM (SELECT 1) AS one LEFT JOIN LATERAL (
      SELECT c.uuid, c.request_type, c.priority, c.status, c.enqueued_at, p.payload FROM commands c JOIN payloads p ON p.uuid = c.uuid
      WHERE p_skip_not_now IS NOT NULL AND c.enrollment_id = p_enrollment AND c.status IN ('Pending', 'NotNow')
        AND (c.status = 'Pending' OR NOT p_skip_not_now)
      ORDER BY c.priority DESC, c.seq LIMIT 1
    ) AS n ON true;
END
$$;
`;
