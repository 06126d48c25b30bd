/**
 * `orchard init [DIR]`: everything a new server needs, created idempotently. Existing files are
 * never overwritten (keys least of all); a second run only reports what is already there.
 *
 *   DIR/orchard.yaml   server configuration (dataDir ./data, repo ./fleet)
 *   DIR/data/          the embedded store, holding the built-in SCEP CA and profile signer (keys
 *                      sealed with DIR/data/material.key, mode 0600, unless ORCHARD_MATERIAL_KEY)
 *   DIR/fleet/         a copy of the example fleet repository, unless the repo exists
 */
import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { loadConfig } from '../config.js';
import { openStore } from '../store/open.js';
import { loadSealer } from '../store/sealing.js';
import { openStoredCa } from './ca-store.js';

export interface InitOptions {
  dir: string;
  /** Written as publicUrl in a new config file. */
  publicUrl?: string;
  /** Default: config-examples/fleet of this installation. */
  exampleFleet?: string;
  /** ORCHARD_MATERIAL_KEY, when given. */
  materialKey?: string;
}

export interface InitResult {
  dir: string;
  configFile: string;
  dataDir: string;
  caFile: string;
  /** Paths created by this run. */
  created: string[];
  /** Paths that existed and were left alone. */
  kept: string[];
  warnings: string[];
}

/** config-examples/fleet of this installation (src/enroll or dist/src/enroll, up to the package root). */
export function exampleFleetDir(): string {
  let dir = import.meta.dirname;
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'config-examples', 'fleet');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error('config-examples/fleet not found in this installation');
}

function configText(publicUrl: string | undefined): string {
  return [
    '# Orchard server configuration, written by `orchard init`. Every key mirrors an',
    '# `orchard serve` flag (flags win); paths are relative to this file.',
    'listen: 127.0.0.1:8080',
    '# Embedded store, the built-in SCEP CA (data/ca/) and one-time enrollment challenges.',
    'dataDir: ./data',
    '# The fleet repository Orchard follows: a local path or a git URL.',
    'repo: ./fleet',
    'branch: main',
    '# The URL devices reach this server at (behind your TLS proxy); enrollment profiles point there.',
    publicUrl ? `publicUrl: ${JSON.stringify(publicUrl)}` : '# publicUrl: https://mdm.example.com',
    'retention: 7d',
    'logLevel: info',
    '',
  ].join('\n');
}

export async function initOrchard(opts: InitOptions): Promise<InitResult> {
  const dir = resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const created: string[] = [];
  const kept: string[] = [];

  const configFile = join(dir, 'orchard.yaml');
  try {
    writeFileSync(configFile, configText(opts.publicUrl), { flag: 'wx' });
    created.push(configFile);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    kept.push(configFile);
  }
  // An existing config may put the data and the repository elsewhere: follow it.
  const cfg = loadConfig({ config: configFile });

  mkdirSync(cfg.dataDir, { recursive: true });
  const store = await openStore(cfg);
  let ca;
  let keyWarnings: string[];
  try {
    const key = loadSealer({ secret: opts.materialKey, file: cfg.materialKeyFile, dataDir: cfg.dataDir });
    keyWarnings = key.warnings;
    ca = await openStoredCa(store, key.sealer, cfg.dataDir);
  } finally {
    await store.close();
  }
  (ca.created ? created : kept).push(ca.caFile);

  if (cfg.repo && !/^[a-z+]+:\/\/|^git@/.test(cfg.repo)) {
    if (existsSync(cfg.repo)) {
      kept.push(cfg.repo);
    } else {
      cpSync(opts.exampleFleet ?? exampleFleetDir(), cfg.repo, { recursive: true, errorOnExist: true, force: false });
      created.push(cfg.repo);
    }
  }
  return { dir, configFile, dataDir: cfg.dataDir, caFile: ca.caFile, created, kept, warnings: [...keyWarnings, ...ca.warnings] };
}
