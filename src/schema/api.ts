/**
 * The admin API's bodies, defined once: the routes validate requests against these (through
 * src/http/validate-body.ts), take their types from `Static<>`, and the OpenAPI document
 * (src/http/openapi.ts) embeds the same schemas.
 */
import { Type, type Static } from 'typebox';
import { DEVICE_ID_PATTERN, SERIAL_PATTERN } from './patterns.js';

export { DEVICE_ID_PATTERN, SERIAL_PATTERN };

const targets = (description: string) => Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description });

export const CommandRequest = Type.Object(
  {
    targets: targets('enrollment ids: "<UDID>" for the device channel, "<UDID>:<UserID>" for a user channel'),
    command: Type.Object(
      { RequestType: Type.String({ minLength: 1 }) },
      { additionalProperties: true, description: 'the command\'s keys as Apple documents them; binary values as {"$data": "<base64>"}' },
    ),
    commandUUID: Type.Optional(Type.String({ minLength: 1, description: 'default: a new UUID' })),
    priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 99, description: 'higher first; default 50' })),
  },
  { additionalProperties: false },
);
export type CommandRequest = Static<typeof CommandRequest>;

export const CommandQueued = Type.Object({
  commandUUID: Type.String(),
  requestType: Type.String(),
  targets: Type.Array(Type.String()),
});

export const PushRequest = Type.Object({ targets: targets('enrollment ids to push now') }, { additionalProperties: false });
export type PushRequest = Static<typeof PushRequest>;

export const EnrollmentRequest = Type.Object(
  {
    serial: Type.Optional(Type.String({ pattern: SERIAL_PATTERN, description: 'only a device with this serial number may use the link' })),
    udid: Type.Optional(Type.String({ pattern: DEVICE_ID_PATTERN, description: 'only a device with this UDID may use the link' })),
  },
  { additionalProperties: false, description: 'optional: without a body the link is for any device' },
);
export type EnrollmentRequest = Static<typeof EnrollmentRequest>;

export const EnrollmentCreated = Type.Object({
  challenge: Type.String(),
  profileUrl: Type.String(),
  expiresAt: Type.String({ format: 'date-time' }),
  serial: Type.Optional(Type.String()),
  udid: Type.Optional(Type.String()),
});

export const ErrorBody = Type.Object({ error: Type.String() });

export const DeviceState = Type.Enum(['in-sync', 'pending', 'drifted', 'failed', 'unenrolled']);

export const DeviceSummary = Type.Object({
  id: Type.String(),
  serialNumber: Type.Optional(Type.String()),
  model: Type.Optional(Type.String()),
  osVersion: Type.Optional(Type.String()),
  enrolled: Type.Boolean(),
  lastSeenAt: Type.Optional(Type.String({ format: 'date-time' })),
  state: Type.Ref('#/components/schemas/DeviceState'),
  stale: Type.Boolean(),
  blueprints: Type.Optional(Type.Array(Type.String())),
  profiles: Type.Optional(
    Type.Object({
      total: Type.Optional(Type.Integer()),
      verified: Type.Optional(Type.Integer()),
      pending: Type.Optional(Type.Integer()),
      failed: Type.Optional(Type.Integer()),
    }),
  ),
});

const optionalObject = (props: Parameters<typeof Type.Object>[0]) => Type.Optional(Type.Object(props));

export const FleetSummary = Type.Object({
  generatedAt: Type.String({ format: 'date-time' }),
  applied: optionalObject({
    commit: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    author: Type.Optional(Type.String()),
    time: Type.Optional(Type.String()),
    appliedAt: Type.Optional(Type.String()),
  }),
  latest: optionalObject({
    commit: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    valid: Type.Optional(Type.Boolean()),
    errorCount: Type.Optional(Type.Integer()),
    errors: Type.Optional(Type.Array(Type.Object({}))),
  }),
  latestRejected: Type.Optional(Type.Boolean()),
  devices: Type.Object({
    total: Type.Optional(Type.Integer()),
    enrolled: Type.Optional(Type.Integer()),
    byState: Type.Optional(Type.Object({})),
    stale: Type.Optional(Type.Integer()),
    staleDays: Type.Optional(Type.Number()),
  }),
  push: optionalObject({
    notAfter: Type.Optional(Type.String()),
    daysLeft: Type.Optional(Type.Integer()),
    expired: Type.Optional(Type.Boolean()),
    warning: Type.Optional(Type.String()),
  }),
  abm: optionalObject({
    tokens: Type.Array(
      Type.Object({
        name: Type.String(),
        expiresAt: Type.String({ format: 'date-time' }),
        daysLeft: Type.Integer(),
        expired: Type.Boolean(),
        warning: Type.Optional(Type.String()),
        lastSyncAt: Type.Optional(Type.String({ format: 'date-time' })),
      }),
    ),
    conditions: Type.Array(
      Type.Object({
        token: Type.String(),
        kind: Type.String({ description: 'token_expiring, token_expired, terms_not_signed, token_rejected, not_accessible, unreachable, ...' }),
        message: Type.String(),
        since: Type.String({ format: 'date-time' }),
        serials: Type.Optional(Type.Array(Type.String())),
      }),
    ),
    devices: optionalObject({ total: Type.Integer(), enrolled: Type.Integer(), awaitingEnrollment: Type.Integer() }),
  }),
});
