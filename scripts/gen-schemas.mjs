#!/usr/bin/env node
// Writes schemas/*.schema.json (the repository format, for editors) from their one definition,
// src/schema/fleet.ts, as built into dist/. Run through `npm run gen:schemas` (builds first).
// test/schema/generated.test.ts fails when the committed files differ from what this writes.
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderSchemaFiles } from '../dist/src/schema/files.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'schemas');
const files = renderSchemaFiles();
for (const f of readdirSync(dir)) if (f.endsWith('.schema.json') && !(f in files)) rmSync(join(dir, f));
for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
console.log(`wrote ${Object.keys(files).length} files to schemas/`);
