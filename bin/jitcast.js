#!/usr/bin/env node
// `npx jitcast …`: runs the TypeScript CLI through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
await import('./jitcast.ts');
