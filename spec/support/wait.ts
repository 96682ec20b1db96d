/**
 * Resolves with the first value of `check` other than undefined or false, polled every `everyMs`;
 * rejects after `limitMs` naming `what`. An exception in `check` fails at once (specs that want
 * to ride out errors use event-plane.ts's waitFor, which retries them).
 */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, limitMs = 15_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
