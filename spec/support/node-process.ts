/**
 * Starts a real jitcast node as a child process (`node bin/jitcast.js start`), configured through
 * JITCAST_* environment variables exactly as an operator would, and waits for its banner.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apiRequest as httpApiRequest } from './http.ts';

/** A node under test. */
export interface NodeUnderTest {
  proc: ChildProcess;
  dataDir: string;
  baseUrl: string;
  apiKey: string;
  sipPort: number;
  /** Everything the node printed so far. */
  output(): string;
  /** GET/POST the node's API with the API key. */
  api(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; text: string }>;
  stop(): Promise<void>;
}

export const SPEC_SECRET = 'spec-secret-0123456789abcdefghijklmnopqrstuvwxyz';

/** Starts a node with every role on the given ports. */
export async function startNodeProcess(o: { httpPort: number; sipPort: number; rtpPorts: string; encoderPorts: string; env?: Record<string, string> }): Promise<NodeUnderTest> {
  const dataDir = mkdtempSync(join(tmpdir(), 'jitcast-e2e-'));
  const apiKey = 'e2e-api-key-0123456789';
  const env = {
    ...process.env,
    JITCAST_DATA_DIR: dataDir,
    JITCAST_HTTP_PORT: String(o.httpPort),
    JITCAST_SIP_PORT: String(o.sipPort),
    JITCAST_RTP_PORTS: o.rtpPorts,
    JITCAST_ENCODER_PORTS: o.encoderPorts,
    JITCAST_API_KEYS: apiKey,
    JITCAST_SECRET: SPEC_SECRET,
    JITCAST_NODE_ID: 'e2e-node',
    JITCAST_LOG_LEVEL: 'info',
    ...o.env,
  };
  const proc = spawn(process.execPath, ['bin/jitcast.js', 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node did not start in 60 s:\n${out.slice(-3000)}`)), 60_000);
    const check = () => {
      if (/is up/.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout!.on('data', check);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`node exited with ${code}:\n${out.slice(-3000)}`));
    });
  });
  const baseUrl = `http://127.0.0.1:${o.httpPort}`;
  return {
    proc,
    dataDir,
    baseUrl,
    apiKey,
    sipPort: o.sipPort,
    output: () => out,
    api: (method, path, body, headers = {}) => apiRequest(baseUrl, apiKey, method, path, body, { headers }),
    async stop() {
      // Keep the node's log beside its data for whoever debugs a failure.
      writeFileSync(join(dataDir, 'node.log'), out);
      if (proc.exitCode !== null) return;
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGINT');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await gone;
      clearTimeout(t);
    },
  };
}

/** An HTTP answer with its body parsed as JSON when it is JSON. */
export interface ApiAnswer {
  status: number;
  body: any;
  text: string;
}

/** Calls a node's HTTP API with an API key; a string body is sent as is, anything else as JSON. */
export async function apiRequest(
  baseUrl: string,
  apiKey: string,
  method: string,
  path: string,
  body?: unknown,
  opts: { headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<ApiAnswer> {
  const r = await httpApiRequest(baseUrl, apiKey, method, path, body, opts);
  return { status: r.status, body: r.json, text: r.text };
}

/** Polls `fn` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000, everyMs = 250): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}
