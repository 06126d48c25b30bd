/**
 * OpenAPI 3.1 description of Orchard's admin API (every route under /api/v1) and /metrics. The
 * request and response bodies are the schemas of src/schema/api.ts, the ones the routes validate
 * against. test/e2e/route-variants.test.ts and test/report/report.test.ts check it against the
 * routes the running server mounts, and that every operation answers.
 */
import {
  CommandQueued,
  CommandRequest,
  DeviceState,
  DeviceSummary,
  EnrollmentCreated,
  EnrollmentRequest,
  ErrorBody,
  FleetSummary,
  PushRequest,
} from '../schema/api.js';

const json = (schema: object = { type: 'object' }) => ({ 'application/json': { schema } });
const ok = (description: string, schema?: object) => ({ description, content: json(schema) });
const err = { $ref: '#/components/responses/Error' };
const readErrors = { 401: err, 403: err };
const idParam = (name: string, description: string) => ({ name, in: 'path', required: true, schema: { type: 'string' }, description });
const query = (name: string, description: string, schema: object = { type: 'string' }) => ({ name, in: 'query', required: false, schema, description });

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

export const OPENAPI = {
  openapi: '3.1.0',
  info: {
    title: 'Orchard admin API',
    version: '1',
    description:
      'Admin API of the Orchard MDM server. Bearer tokens: ORCHARD_API_TOKEN may call everything, ' +
      'ORCHARD_READ_TOKEN only GET. POST /api/v1/hooks/git is authenticated by an HMAC signature instead. ' +
      'Paths are matched exactly as written here: another case is a 404; a non-canonical spelling ' +
      '(//, a trailing slash, dot segments, ;parameters, needless or slash-hiding %-escapes) is a 400.',
  },
  servers: [{ url: '/' }],
  security: [{ bearer: [] }],
  paths: {
    '/api/v1/commands': {
      post: {
        summary: 'Queue an MDM command for enrollments (admin token)',
        requestBody: {
          required: true,
          content: {
            ...json(CommandRequest),
            'application/x-apple-plist': { schema: { type: 'string', description: 'a command plist; targets in ?target=' } },
          },
        },
        parameters: [query('target', 'enrollment id (plist bodies only; repeatable)')],
        responses: {
          201: ok('queued', CommandQueued),
          400: err,
          404: err,
          409: err,
          413: err,
          415: err,
          ...readErrors,
        },
      },
    },
    '/api/v1/devices': {
      get: {
        summary: 'Every device with its facts, enrollments and managed profiles',
        responses: { 200: ok('devices', { type: 'object', properties: { devices: { type: 'array', items: { type: 'object' } } } }), ...readErrors },
      },
    },
    '/api/v1/devices/{id}': {
      get: {
        summary: 'One device',
        parameters: [idParam('id', 'device UDID, enrollment id or serial number')],
        responses: { 200: ok('the device'), 404: err, 409: err, ...readErrors },
      },
    },
    '/api/v1/devices/{id}/commands': {
      get: {
        summary: 'Pending and finished commands of an enrollment',
        parameters: [idParam('id', 'enrollment id; a UDID or serial number means the device channel')],
        responses: { 200: ok('commands'), 404: err, 409: err, ...readErrors },
      },
    },
    '/api/v1/source': {
      get: {
        summary: 'Status of the followed fleet repository (applied and last fetched revision, errors)',
        responses: { 200: ok('source status'), 404: err, ...readErrors },
      },
    },
    '/api/v1/hooks/git': {
      post: {
        summary: 'Git host webhook: fetch the fleet repository now',
        security: [],
        parameters: [
          { name: 'X-Hub-Signature-256', in: 'header', required: false, schema: { type: 'string', pattern: '^sha256=[0-9a-f]{64}$' } },
          { name: 'X-Orchard-Signature', in: 'header', required: false, schema: { type: 'string', pattern: '^sha256=[0-9a-f]{64}$' } },
        ],
        requestBody: { required: false, content: { '*/*': { schema: {} } } },
        responses: {
          200: ok('ping answered, or a delivery already seen: {"accepted": false, "duplicate": true}'),
          202: ok('sync started, or queued behind the running one'),
          400: err,
          403: err,
          413: err,
        },
      },
    },
    '/api/v1/push': {
      get: { summary: 'APNs status: topic, certificate expiry, counters', responses: { 200: ok('push status'), ...readErrors } },
      post: {
        summary: 'Push enrollments now (admin token)',
        requestBody: {
          required: true,
          content: json(PushRequest),
        },
        responses: { 200: ok('outcome per target'), 400: err, 404: err, 413: err, 503: err, ...readErrors },
      },
    },
    '/api/v1/enrollments': {
      post: {
        summary: 'Create a one-time enrollment link (admin token)',
        requestBody: { required: false, content: json(EnrollmentRequest) },
        responses: { 201: ok('challenge', EnrollmentCreated), 400: err, 413: err, 415: err, ...readErrors },
      },
    },
    '/api/v1/status': {
      get: {
        summary: 'Fleet summary: applied and latest revision, device counts by state, push certificate, ABM tokens and conditions',
        responses: { 200: ok('fleet summary', ref('FleetSummary')), ...readErrors },
      },
    },
    '/api/v1/abm/devices': {
      get: {
        summary: "Apple Business Manager's devices, enrolled or not yet: ABM's fields, the enrolled device id, the blueprints that select them",
        parameters: [query('limit', 'page size (1..1000, default 100)', { type: 'integer' }), query('cursor', 'nextCursor of the previous page')],
        responses: { 200: ok('ABM devices'), 400: err, ...readErrors },
      },
    },
    '/api/v1/blueprints': {
      get: {
        summary: 'Per blueprint: devices selected and per-profile verified/pending/failed counts',
        responses: { 200: ok('blueprints'), 404: err, ...readErrors },
      },
    },
    '/api/v1/blueprints/{name}': {
      get: {
        summary: 'One blueprint with its selected devices',
        parameters: [idParam('blueprint', 'blueprint name')],
        responses: { 200: ok('blueprint'), 404: err, ...readErrors },
      },
    },
    '/api/v1/rollouts': {
      get: {
        summary: "Every blueprint's staged rollout: its step, counts, and whether (and why) it halted",
        responses: {
          200: ok('rollouts', { type: 'object', required: ['rollouts'], properties: { rollouts: { type: 'array', items: { type: 'object' } } } }),
          ...readErrors,
        },
      },
    },
    '/api/v1/rollouts/{name}/resume': {
      post: {
        summary: 'Go on past a halted health gate, accepting its failures (admin token)',
        parameters: [idParam('name', 'blueprint name')],
        responses: { 200: ok('the rollout after resuming', { type: 'object' }), 404: err, ...readErrors },
      },
    },
    '/api/v1/report/devices': {
      get: {
        summary: 'Devices with their state, filtered and paged',
        parameters: [
          query('state', 'only devices in this state', { type: 'string', enum: ['in-sync', 'pending', 'drifted', 'failed', 'unenrolled', 'stale'] }),
          query('blueprint', 'only devices this blueprint reaches'),
          query('limit', 'page size (default 100)', { type: 'integer', minimum: 1, maximum: 1000 }),
          query('cursor', 'nextCursor of the previous page'),
        ],
        responses: {
          200: ok('a page of devices', {
            type: 'object',
            required: ['total', 'devices'],
            properties: { total: { type: 'integer' }, devices: { type: 'array', items: ref('DeviceSummary') }, nextCursor: { type: 'string' } },
          }),
          400: err,
          404: err,
          ...readErrors,
        },
      },
    },
    '/api/v1/report/devices/{id}': {
      get: {
        summary: 'One device: facts, each desired profile with status and last error, recent commands',
        parameters: [idParam('id', 'device UDID, enrollment id or serial number')],
        responses: { 200: ok('device report'), 404: err, 409: err, ...readErrors },
      },
    },
    '/api/v1/openapi.json': {
      get: { summary: 'This document', responses: { 200: ok('OpenAPI 3.1 document'), ...readErrors } },
    },
    '/metrics': {
      get: {
        summary: 'Prometheus metrics (text exposition format)',
        responses: { 200: { description: 'metrics', content: { 'text/plain': { schema: { type: 'string' } } } }, ...readErrors },
      },
    },
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    responses: {
      Error: { description: 'refused', content: json(ErrorBody) },
    },
    schemas: { DeviceState, DeviceSummary, FleetSummary },
  },
} as const;
