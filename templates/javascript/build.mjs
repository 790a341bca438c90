// Builds target/{{name}}.wasm from app.js with componentize-js (pinned in package.json;
// `npm ci` installs it): `node build.mjs`, which `platform build {{name}}` runs.
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';

const { component } = await componentize({
  sourcePath: resolve('app.js'),
  witPath: resolve('wit'),
  worldName: '{{wit_name}}',
  // The platform gives a component no network: no WASI HTTP, no fetch.
  disableFeatures: ['http', 'fetch-event'],
});
await mkdir('target', { recursive: true });
await writeFile('target/{{name}}.wasm', component);
