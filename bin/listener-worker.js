#!/usr/bin/env node
// A gateway's listener worker (runtime/listener-worker.ts), forked by runtime/listener-workers.ts:
// loads tsx the way bin/jitcast.js does, then the worker.
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

register({ tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)) });
await import('../runtime/listener-worker.ts');
