/** The types shared by protocol, store, reconciler and reports (src/model/ depends on nothing else in src). */
export type * from './device.js';
export type * from './command.js';
export type * from './artifacts.js';
