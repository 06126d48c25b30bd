/**
 * Identifier rules shared by the admin API's schemas (src/schema/api.ts) and the device protocol
 * (src/protocol/messages.ts). Plain strings, so the device path checks ids without loading TypeBox.
 */

/** A UDID or UserID as devices send them: the one rule, which src/protocol/messages.ts checks device messages with too. */
export const DEVICE_ID_PATTERN = '^[0-9A-Za-z][0-9A-Za-z-]{0,127}$';
export const SERIAL_PATTERN = '^[0-9A-Za-z-]{1,64}$';
