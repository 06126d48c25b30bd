/**
 * The fleet repository format, defined once: every kind's `spec` as a TypeBox schema. The loader
 * validates documents against these, `Static<>` gives the loader its types, and
 * `npm run gen:schemas` writes them to `schemas/*.schema.json` for editors
 * (test/schema/generated.test.ts fails when those files are stale).
 *
 * Adding a kind: its spec schema below and an entry in FLEET_KINDS; then the loader's build pass
 * (src/gitops/load.ts) turns the validated spec into its document type (src/gitops/model.ts).
 */
import { Type, type Static, type TSchema } from 'typebox';

export const API_VERSION = 'orchard/v1';

export const PLATFORMS = ['macOS', 'iOS', 'iPadOS', 'tvOS', 'visionOS', 'watchOS'] as const;
export type Platform = (typeof PLATFORMS)[number];

const NAME_PATTERN = '^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$';

const strings = (description?: string) => Type.Array(Type.String({ minLength: 1 }), { uniqueItems: true, ...(description ? { description } : {}) });

export const Metadata = Type.Object(
  {
    name: Type.String({ pattern: NAME_PATTERN, description: "Unique per kind: lowercase letters, digits, '.', '_' and '-'." }),
    description: Type.Optional(Type.String()),
    labels: Type.Optional(Type.Unsafe<Record<string, string>>({ type: 'object', additionalProperties: { type: 'string' } })),
  },
  { additionalProperties: false },
);

const abmSelectorFields = {
  models: Type.Optional(strings('ABM model names ("MacBook Air 13-inch").')),
  colors: Type.Optional(strings()),
  descriptions: Type.Optional(strings()),
  os: Type.Optional(strings('ABM os values: OSX, iOS, tvOS.')),
  deviceFamilies: Type.Optional(strings('ABM device_family values: Mac, iPad, iPhone, AppleTV.')),
  assignedBy: Type.Optional(strings('Who assigned the device to this server in ABM.')),
};

const selectorFields = {
  serials: Type.Optional(strings('Device serial numbers.')),
  tags: Type.Optional(strings('All must be on the device (tags come from DeviceGroups).')),
  platforms: Type.Optional(Type.Array(Type.Enum([...PLATFORMS]), { uniqueItems: true, minItems: 1 })),
  models: Type.Optional(strings('Model identifiers (Mac14,2) or product names (iPad13,1).')),
  osVersion: Type.Optional(Type.String({ minLength: 1, description: 'A range of comparators, all must hold: ">=14.0 <16".' })),
  supervised: Type.Optional(Type.Boolean()),
  proven: Type.Optional(
    Type.Boolean({
      description:
        'true: only devices whose serial number is proven (their identity certificate was issued through a one-time enrollment for that serial). Use it for blueprints whose profiles carry secrets.',
    }),
  ),
  abm: Type.Optional(
    Type.Union([Type.Boolean(), Type.Object(abmSelectorFields, { additionalProperties: false })], {
      description:
        'true: devices assigned to this MDM server in Apple Business Manager (matched by serial number); false: devices that are not; fields: ABM devices whose record has one of the values of each field given.',
    }),
  ),
};

export const Selector = Type.Object(selectorFields, { additionalProperties: false });

export const SelectorWithExclude = Type.Object(
  {
    ...selectorFields,
    exclude: Type.Optional(Type.Object(selectorFields, { additionalProperties: false, description: 'Devices matching this are left out.' })),
  },
  { additionalProperties: false },
);

export const AuthoredPayload = Type.Object(
  {
    type: Type.String({ minLength: 1, description: 'Apple PayloadType, e.g. com.apple.wifi.managed.' }),
    keys: Type.Optional(
      Type.Unsafe<Record<string, unknown>>({ type: 'object', description: 'Apple payload keys. Strings may use ${device.SerialNumber} and ${secret:NAME}.' }),
    ),
  },
  { additionalProperties: false },
);

export const ProfileSpec = Type.Object(
  {
    identifier: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$', description: "The profile's PayloadIdentifier." })),
    displayName: Type.Optional(Type.String({ minLength: 1 })),
    description: Type.Optional(Type.String()),
    organization: Type.Optional(Type.String()),
    scope: Type.Optional(Type.Enum(['System', 'User'], { default: 'System' })),
    payloads: Type.Optional(Type.Array(AuthoredPayload, { minItems: 1 })),
    file: Type.Optional(Type.String({ minLength: 1, description: 'A .mobileconfig in the repository (XML or signed), relative to this file.' })),
  },
  {
    additionalProperties: false,
    oneOf: [
      { required: ['identifier', 'displayName', 'payloads'], not: { required: ['file'] } },
      { required: ['file'], not: { required: ['payloads'] } },
    ],
    // What the loader says when neither branch of oneOf holds.
    'x-oneOf-message': 'a Profile needs either identifier, displayName and payloads, or file (not both)',
  },
);

export const BlueprintSpec = Type.Object(
  {
    selector: SelectorWithExclude,
    profiles: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { uniqueItems: true })),
    declarations: Type.Optional(
      strings('Declaration documents for the selected devices; Orchard adds an activation of the configurations unless one is listed.'),
    ),
    softwareUpdate: Type.Optional(
      Type.Object(
        {
          targetOSVersion: Type.String({ pattern: '^\\d+(\\.\\d+){0,2}$' }),
          targetBuildVersion: Type.Optional(Type.String({ minLength: 1 })),
          deadline: Type.String({
            pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}$',
            description: 'Local date and time on the device, yyyy-mm-ddThh:mm:ss.',
          }),
          detailsURL: Type.Optional(Type.String({ pattern: '^https?://' })),
        },
        { additionalProperties: false, description: 'Enforce an OS update (com.apple.configuration.softwareupdate.enforcement.specific).' },
      ),
    ),
    prune: Type.Optional(Type.Boolean({ default: true, description: 'Remove profiles this blueprint installed and no longer wants.' })),
    suspend: Type.Optional(Type.Boolean({ default: false, description: 'Queue nothing for this blueprint.' })),
    setup: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          'Its profiles are Setup Assistant items: a device awaiting configuration (enrollment profile with await_device_configured) gets them first, then DeviceConfigured; other profiles come after.',
      }),
    ),
    rollout: Type.Optional(
      Type.Object(
        {
          percent: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })),
          steps: Type.Optional(
            Type.Array(Type.Number({ exclusiveMinimum: 0, maximum: 100 }), {
              minItems: 1,
              maxItems: 20,
              description: 'Shares of the selected devices, increasing; each step starts when the one before is verified.',
            }),
          ),
          wait: Type.Optional(
            Type.Union([Type.String(), Type.Number({ minimum: 0 })], {
              description: 'Least time on each step before the next one (7d, 12h, 30m, 45s; a number is seconds). Default 0.',
            }),
          ),
          maxFailures: Type.Optional(
            Type.Union([Type.String(), Type.Integer({ minimum: 0 })], {
              description: 'Failed devices a step may have and still go on: a share ("2%") or a count. Default 0.',
            }),
          ),
        },
        {
          additionalProperties: false,
          description: 'percent: reach this share of the selected devices. steps: a staged rollout, e.g. {steps: [5, 25, 100], wait: 1h, maxFailures: 2%}.',
        },
      ),
    ),
  },
  { additionalProperties: false },
);

export const DeviceGroupSpec = Type.Object(
  {
    devices: Type.Array(
      Type.Object(
        { serial: Type.String({ minLength: 1 }), tags: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { uniqueItems: true })) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const DeclarationSpec = Type.Object(
  {
    Type: Type.String({
      pattern: '^com\\.apple\\.(activation|asset|configuration|management)\\.',
      description: "Apple's declaration type, e.g. com.apple.configuration.passcode.settings.",
    }),
    Identifier: Type.Optional(Type.String({ minLength: 1, description: "Apple's Identifier (at most 64 bytes); default: metadata.name." })),
    Payload: Type.Optional(
      Type.Unsafe<Record<string, unknown>>({ type: 'object', description: "Apple's Payload for the Type; strings may use ${device.X} and ${secret:NAME}." }),
    ),
    channel: Type.Optional(Type.Enum(['device', 'user'], { default: 'device', description: 'The device channel, or every user channel of the device.' })),
    profile: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'com.apple.configuration.legacy only: the Profile document to deliver (Orchard serves it and writes ProfileURL).',
      }),
    ),
  },
  { additionalProperties: false },
);

export const EnrollmentProfileSpec = Type.Object(
  {
    profile_name: Type.Optional(Type.String({ minLength: 1, description: 'Shown in Setup Assistant; default: metadata.name.' })),
    url: Type.Optional(
      Type.String({ pattern: '^https?://', description: "Where devices fetch the enrollment profile; default: Orchard's enrollment endpoint." }),
    ),
    allow_pairing: Type.Optional(Type.Boolean()),
    is_supervised: Type.Optional(Type.Boolean()),
    is_multi_user: Type.Optional(Type.Boolean()),
    is_mandatory: Type.Optional(Type.Boolean()),
    await_device_configured: Type.Optional(Type.Boolean({ description: 'Hold the device in Setup Assistant until Orchard sends DeviceConfigured.' })),
    is_mdm_removable: Type.Optional(Type.Boolean()),
    support_phone_number: Type.Optional(Type.String({ minLength: 1 })),
    support_email_address: Type.Optional(Type.String({ pattern: '^[^@\\s]+@[^@\\s]+$' })),
    org_magic: Type.Optional(Type.String({ minLength: 1 })),
    anchor_certs: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z0-9+/=\\s]+$', description: 'A DER certificate, base64.' }))),
    supervising_host_certs: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z0-9+/=\\s]+$' }))),
    skip_setup_items: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), { uniqueItems: true, description: "Setup Assistant panes to skip: Apple's skip keys." }),
    ),
    department: Type.Optional(Type.String({ minLength: 1 })),
    language: Type.Optional(Type.String({ minLength: 2 })),
    region: Type.Optional(Type.String({ minLength: 2 })),
    assign: Type.Object(
      {
        all: Type.Optional(Type.Boolean({ description: 'Every device ABM assigned to this server.' })),
        serials: Type.Optional(strings('Serial numbers.')),
        tags: Type.Optional(strings('All must be on the device (tags come from DeviceGroups).')),
        ...abmSelectorFields,
      },
      { additionalProperties: false, minProperties: 1, description: 'Which ABM devices get this profile: every field given must match.' },
    ),
  },
  { additionalProperties: false },
);

export const SecretSpec = Type.Object({ description: Type.Optional(Type.String()) }, { additionalProperties: false });

export type MetadataValue = Static<typeof Metadata>;
export type SelectorSpec = Static<typeof Selector>;
export type ProfileSpecValue = Static<typeof ProfileSpec>;
export type BlueprintSpecValue = Static<typeof BlueprintSpec>;
export type DeviceGroupSpecValue = Static<typeof DeviceGroupSpec>;
export type SecretSpecValue = Static<typeof SecretSpec>;
export type EnrollmentProfileSpecValue = Static<typeof EnrollmentProfileSpec>;
export type DeclarationSpecValue = Static<typeof DeclarationSpec>;

export interface KindDefinition {
  /** The file in schemas/. */
  file: string;
  title: string;
  description: string;
  spec: TSchema;
}

/** Every kind of document a fleet repository may hold. */
export const FLEET_KINDS = {
  Profile: {
    file: 'profile.schema.json',
    title: 'Orchard Profile',
    description: 'A configuration profile: authored payloads or an existing .mobileconfig.',
    spec: ProfileSpec,
  },
  Blueprint: {
    file: 'blueprint.schema.json',
    title: 'Orchard Blueprint',
    description: 'Which devices get which profiles.',
    spec: BlueprintSpec,
  },
  DeviceGroup: {
    file: 'devicegroup.schema.json',
    title: 'Orchard DeviceGroup',
    description: 'Tags for devices, by serial number.',
    spec: DeviceGroupSpec,
  },
  Secret: {
    file: 'secret.schema.json',
    title: 'Orchard Secret',
    description: 'Declares a secret used as ${secret:NAME}; its value lives on the server (secrets directory or environment), never in git.',
    spec: SecretSpec,
  },
  Declaration: {
    file: 'declaration.schema.json',
    title: 'Orchard Declaration',
    description:
      "A Declarative Device Management declaration: Apple's Type, Identifier and Payload (checked against Apple's declarative schema); Orchard computes the ServerToken.",
    spec: DeclarationSpec,
  },
  EnrollmentProfile: {
    file: 'enrollmentprofile.schema.json',
    title: 'Orchard EnrollmentProfile',
    description: "An Automated Device Enrollment profile (Apple's fields of the device enrollment service's /profile) and which ABM devices it is assigned to.",
    spec: EnrollmentProfileSpec,
  },
} satisfies Record<string, KindDefinition>;

export type Kind = keyof typeof FLEET_KINDS;
export const KINDS = Object.keys(FLEET_KINDS) as Kind[];

/** The JSON Schema of one whole document of `kind`: apiVersion, kind, metadata and its spec. */
export function documentSchema(kind: Kind): Record<string, unknown> {
  const k: KindDefinition = FLEET_KINDS[kind];
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: `https://orchard.dev/schemas/${k.file}`,
    title: k.title,
    description: k.description,
    ...Type.Object(
      {
        apiVersion: Type.Literal(API_VERSION),
        kind: Type.Literal(kind),
        metadata: Metadata,
        spec: k.spec,
      },
      { additionalProperties: false },
    ),
  };
}

/** Any document of the repository, dispatching on `kind` (for editors; the loader checks kind itself). */
export function anyDocumentSchema(): Record<string, unknown> {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'https://orchard.dev/schemas/orchard.schema.json',
    title: 'Orchard fleet document',
    description: 'Any document of an Orchard fleet repository. For editors: # yaml-language-server: $schema=<path>/schemas/orchard.schema.json',
    type: 'object',
    required: ['apiVersion', 'kind'],
    properties: { kind: { enum: KINDS } },
    allOf: KINDS.map((kind) => ({
      if: { properties: { kind: { const: kind } }, required: ['kind'] },
      then: { $ref: FLEET_KINDS[kind].file },
    })),
  };
}

/** schemas/: file name -> its JSON Schema document. */
export function schemaFiles(): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = { 'orchard.schema.json': anyDocumentSchema() };
  for (const kind of KINDS) out[FLEET_KINDS[kind].file] = documentSchema(kind);
  return out;
}
