#!/usr/bin/env node
// `npx jitcast …`: runs the TypeScript CLI through tsx (no build step). The tsconfig is named
// explicitly: tsx would otherwise look for one in the caller's working directory, and the
// class-validator decorators need this project's `experimentalDecorators`.
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

register({ tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)) });
// `jitcast start` / `jitcast node` become a node supervisor that runs this same command as a child
// and restarts it when it dies (runtime/node-supervisor.ts). Decided here, before jitcast.ts loads
// Moleculer: the supervisor stays small and quick.
const { superviseIfAsked } = await import('../runtime/node-supervisor.ts');
if (!superviseIfAsked(process.argv.slice(2), fileURLToPath(import.meta.url))) await import('./jitcast.ts');
