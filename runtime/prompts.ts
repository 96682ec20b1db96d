/**
 * Spoken IVR prompts. Each prompt's text is spoken by espeak-ng once, resampled to 8 kHz mono PCM
 * by ffmpeg, and cached under `<dataDir>/prompts/` by a hash of its text, so later starts load
 * in milliseconds. Without espeak-ng the IVR still works, with tone cues instead of speech, and
 * says so loudly in the log.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PROMPT_TEXT, type PromptName } from '../core/ivr.ts';
import { concatPcm, silence, sine } from '../codecs/tones.ts';

const run = promisify(execFile);

/** Audio of every prompt, 8 kHz mono 16-bit. */
export type PromptAudio = Record<PromptName, Int16Array>;

interface Logger {
  info(...a: unknown[]): void;
  warn(...a: unknown[]): void;
}

/** Where espeak-ng is, or undefined. */
export async function findEspeak(): Promise<string | undefined> {
  for (const bin of ['espeak-ng', 'espeak']) {
    try {
      await run(bin, ['--version']);
      return bin;
    } catch {
      /* try the next one */
    }
  }
  return undefined;
}

/** Loads (or synthesises once) every prompt. */
export async function loadPrompts(dataDir: string, ffmpegPath: string, logger: Logger): Promise<PromptAudio> {
  const dir = join(dataDir, 'prompts');
  mkdirSync(dir, { recursive: true });
  const espeak = await findEspeak();
  if (!espeak) logger.warn('espeak-ng not found: IVR prompts are tone cues, not speech [install: apt-get install espeak-ng]');
  const out = {} as PromptAudio;
  const started = Date.now();
  let made = 0;
  for (const [name, text] of Object.entries(PROMPT_TEXT) as [PromptName, string][]) {
    const hash = createHash('sha256').update(`v1|${text}`).digest('hex').slice(0, 16);
    const file = join(dir, `${name}-${hash}.s16`);
    if (!existsSync(file) && espeak) {
      await synthesize(espeak, ffmpegPath, text, file);
      made++;
    }
    out[name] = existsSync(file) ? pcmFromFile(file) : toneCue(name);
  }
  if (made > 0) logger.info(`prompts synthesised [count:${made} ms:${Date.now() - started}]`);
  return out;
}

async function synthesize(espeak: string, ffmpegPath: string, text: string, file: string): Promise<void> {
  const wav = `${file}.${process.pid}.wav`;
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await run(espeak, ['-v', 'en-us', '-s', '150', '-w', wav, text]);
    await run(ffmpegPath, ['-hide_banner', '-loglevel', 'error', '-y', '-i', wav, '-ar', '8000', '-ac', '1', '-f', 's16le', tmp]);
    renameSync(tmp, file);
  } finally {
    rmSync(wav, { force: true });
    rmSync(tmp, { force: true });
  }
}

function pcmFromFile(file: string): Int16Array {
  const buf = readFileSync(file);
  const pcm = new Int16Array(buf.length >> 1);
  for (let i = 0; i < pcm.length; i++) pcm[i] = buf.readInt16LE(i * 2);
  // A short pause after each prompt keeps consecutive prompts apart.
  return concatPcm(pcm, silence(200));
}

/** Distinct tone patterns when no speech synthesiser is installed. */
function toneCue(name: PromptName): Int16Array {
  const good = ['welcome', 'joined', 'enter-event-id', 'enter-pin'].includes(name);
  return good
    ? concatPcm(sine(660, 150, 6000), silence(80), sine(880, 150, 6000), silence(300))
    : concatPcm(sine(440, 300, 6000), silence(80), sine(330, 300, 6000), silence(300));
}
