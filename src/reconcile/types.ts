/** Reconciler state (the artifacts Orchard manages on each device): defined in src/model/artifacts.ts. */
export type { ArtifactKind, ArtifactPhase, ArtifactStatus, DeviceArtifacts } from '../model/artifacts.js';
