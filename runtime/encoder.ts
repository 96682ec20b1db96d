/**
 * One live stream: 8 kHz mono s16le PCM in → ffmpeg (through fluent-ffmpeg) → AAC-LC HLS on disk.
 *
 * ffmpeg reads PCM on stdin, never RTP/SDP, so it can never hang on a silent socket (FIELD-NOTES
 * "Traps"). The encoder owns a drift-free 20 ms clock: every tick sends exactly the frames due since
 * start, filling with silence when the caller wrote nothing, so the HLS timeline equals wall-clock
 * time whatever the RTP does. Silence fills longer than GAP_MIN_S are recorded as gaps and written
 * to `gaps.json` at the end: the archive planner uses them to pick between redundant streams.
 *
 * Output: AAC-LC mono 16 kHz ~32 kb/s (16 kHz rather than 8: browsers' MSE/AAC decoders do not all
 * take 8 kHz AAC; 16 kHz costs nothing in quality or size over telephone audio).
 */
import { EventEmitter } from 'node:events';
import { constants, watch, type FSWatcher } from 'node:fs';
import { access, appendFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { ChildProcess } from 'node:child_process';
import ffmpeg from 'fluent-ffmpeg';
import { parseMediaPlaylist, type MediaPlaylist } from '../codecs/hls.ts';
import { ProcessStartError } from './errors.ts';
import { LineTail, type ProcessExit, type Supervisable } from './supervisor.ts';

/** Input sample rate (G.711). */
export const INPUT_RATE = 8000;
/** Samples per 20 ms clock frame. */
export const FRAME_SAMPLES = 160;
const FRAME_MS = 20;
/** Most PCM buffered ahead of the clock; older samples are dropped so a burst cannot add latency. */
export const MAX_BUFFER_SAMPLES = 1600;
/** A silence fill at least this long (seconds) is recorded as a gap. */
export const GAP_MIN_S = 0.1;
const GAP_MIN_FRAMES = Math.round((GAP_MIN_S * 1000) / FRAME_MS);
const TICK_MS = 10;

/** The narrow logger the encoder needs (a Moleculer logger or `console` fit). */
export interface EncoderLogger {
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/** Options of `HlsEncoder.start`. */
export interface HlsEncoderOptions {
  /** ffmpeg binary (config.ffmpegPath). */
  ffmpegPath: string;
  /** Output directory; created if missing. */
  dir: string;
  /** Target segment duration in seconds. */
  segmentS: number;
  logger?: EncoderLogger;
  /** Log context, e.g. `event:12345674 stream:… port:20003`. */
  context?: string;
  /** ffmpeg not ready after this long → start() rejects. Default 10000 ms. */
  startTimeoutMs?: number;
  /** ffmpeg not gone this long after stdin ended → SIGKILL. Default 5000 ms. */
  stopTimeoutMs?: number;
}

/** A stretch of the stream (seconds from its start) that had to be filled with silence. */
export interface Gap {
  start: number;
  end: number;
}

/** Content of `gaps.json` in the output directory: the gaps in stream order (what archive-coordinator reads). */
export type GapsFile = Gap[];

/** Whether `cmd` (a path, or a bare name looked up in PATH) is an executable file. */
async function executable(cmd: string): Promise<boolean> {
  const candidates = cmd.includes('/') ? [cmd] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, cmd));
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      if ((await stat(c)).isFile()) return true;
    } catch {
      // try the next one
    }
  }
  return false;
}

/** One segment listed in the media playlist. */
export interface EncodedSegment {
  index: number;
  uri: string;
  durationS: number;
}

/** Parses the playlist as far as it is complete; undefined while ffmpeg is mid-rewrite (the static build rewrites in place). */
function readablePlaylist(text: string): MediaPlaylist | undefined {
  try {
    return parseMediaPlaylist(text.slice(0, text.lastIndexOf('\n') + 1));
  } catch {
    return undefined;
  }
}

interface HlsEncoderEvents {
  /** A new segment is listed in the playlist. */
  segment: [segment: EncodedSegment];
  /** ffmpeg ended without being asked (crash, kill); the encoder is finished. */
  died: [exit: ProcessExit];
}

/** A live HLS encoder for one stream: `write()` PCM, `stop()` to finish with #EXT-X-ENDLIST. */
export class HlsEncoder extends EventEmitter<HlsEncoderEvents> implements Supervisable {
  readonly dir: string;
  readonly playlistPath: string;
  readonly #opts: HlsEncoderOptions;
  readonly #input = new PassThrough();
  readonly #tail = new LineTail();
  #proc?: ChildProcess;
  #clock?: NodeJS.Timeout;
  #t0 = 0;
  #framesSent = 0;
  #queue: Int16Array[] = [];
  #queueHead = 0;
  #buffered = 0;
  #dropped = 0;
  #fillRunStart: number | undefined = 0; // the stream starts silent until the first write
  readonly #gaps: Gap[] = [];
  #segments: EncodedSegment[] = [];
  #watcher?: FSWatcher;
  #reading?: Promise<void>;
  #rereadWanted = false;
  #exit?: ProcessExit;
  #exited!: Promise<ProcessExit>;
  #stopping = false;
  #ready = false;
  #finished?: Promise<{ durationS: number }>;

  private constructor(opts: HlsEncoderOptions) {
    super();
    this.#opts = opts;
    this.dir = opts.dir;
    this.playlistPath = join(opts.dir, 'index.m3u8');
  }

  /** Starts ffmpeg and the clock; resolves once ffmpeg writes its output, rejects with ProcessStartError otherwise. */
  static async start(opts: HlsEncoderOptions): Promise<HlsEncoder> {
    // fluent-ffmpeg throws an uncatchable TypeError when the binary cannot be spawned once its
    // capability cache is warm, so a missing binary must be caught before it gets there.
    if (!(await executable(opts.ffmpegPath))) {
      throw new ProcessStartError(`ffmpeg failed to start [not an executable: ${opts.ffmpegPath}${opts.context ? ' ' + opts.context : ''}]`, { ffmpegPath: opts.ffmpegPath });
    }
    await mkdir(opts.dir, { recursive: true });
    const enc = new HlsEncoder(opts);
    await enc.#run();
    return enc;
  }

  /** ffmpeg's process ID while it runs. */
  get pid(): number | undefined {
    return this.#exit ? undefined : this.#proc?.pid;
  }

  /** True while ffmpeg runs and stop() was not called. */
  get running(): boolean {
    return !this.#exit && !this.#stopping;
  }

  /** Seconds of PCM fed to ffmpeg so far. */
  get fedS(): number {
    return (this.#framesSent * FRAME_MS) / 1000;
  }

  /** Gaps recorded so far (an open one is not included until it ends). */
  get gaps(): readonly Gap[] {
    return this.#gaps;
  }

  /** Segments seen in the playlist so far. */
  get segments(): readonly EncodedSegment[] {
    return this.#segments;
  }

  /** Samples dropped because the caller wrote faster than real time. */
  get droppedSamples(): number {
    return this.#dropped;
  }

  #ctx(): string {
    return this.#opts.context ? ` ${this.#opts.context}` : '';
  }

  #run(): Promise<void> {
    const o = this.#opts;
    const cmd = ffmpeg({ stdoutLines: 20 })
      .setFfmpegPath(o.ffmpegPath)
      .input(this.#input)
      // Raw PCM needs no probing: without the two probe limits ffmpeg first buffers ~2 s of input.
      .inputOptions('-hide_banner', '-nostats', '-loglevel', 'info', '-probesize', '32', '-analyzeduration', '0', '-f', 's16le', '-ar', String(INPUT_RATE), '-ac', '1')
      .output(this.playlistPath)
      .outputOptions(
        '-c:a', 'aac', '-b:a', '32k', '-ar', '16000', '-ac', '1',
        '-f', 'hls', '-hls_time', String(o.segmentS), '-hls_list_size', '0', '-hls_playlist_type', 'event',
        '-hls_segment_filename', join(o.dir, 'seg%05d.ts'),
      );
    // fluent-ffmpeg keeps setFfmpegPath in a module-global cache: pin this command's binary so two
    // encoders with different binaries in one process cannot swap them.
    (cmd as unknown as { _getFfmpegPath: (cb: (err: Error | null, p: string) => void) => void })._getFfmpegPath = (cb) => cb(null, o.ffmpegPath);

    this.#exited = new Promise((resolveExit) => {
      cmd.on('start', () => {
        this.#proc = (cmd as unknown as { ffmpegProc: ChildProcess }).ffmpegProc;
        // 'close' rather than 'exit': stderr is drained, so the tail is complete.
        this.#proc.once('close', (code, signal) => resolveExit(this.#onExit({ code, signal, stderrTail: this.#tail.snapshot() })));
        // The timeline starts when ffmpeg exists; the pipe holds what it has not read yet.
        this.#t0 = performance.now();
        this.#clock = setInterval(() => this.#tick(), TICK_MS);
      });
      cmd.on('error', (err: Error) => {
        // Only errors before spawn (binary missing, capability probe failed) end here; later ones come through 'close'.
        if (!this.#proc) resolveExit(this.#onExit({ code: null, signal: null, stderrTail: [...this.#tail.snapshot(), err.message] }));
      });
    });
    cmd.on('stderr', (line: string) => this.#tail.add(line));

    return new Promise<void>((resolve, reject) => {
      const timeoutMs = o.startTimeoutMs ?? 10_000;
      const fail = (why: string, exit?: ProcessExit) => {
        clearTimeout(timer);
        reject(new ProcessStartError(`ffmpeg failed to start [${why}${this.#ctx()} dir:${o.dir}]`, { ffmpegPath: o.ffmpegPath, ...(exit ?? { stderrTail: this.#tail.snapshot() }) }));
      };
      const timer = setTimeout(() => {
        fail(`not ready after ${timeoutMs} ms`);
        this.#proc?.kill('SIGKILL');
      }, timeoutMs);
      const onLine = (line: string) => {
        // ffmpeg prints its output header once the input is probed and the muxer is open.
        if (!/^Output #0/.test(line)) return;
        cmd.off('stderr', onLine);
        clearTimeout(timer);
        this.#ready = true;
        this.#watchPlaylist();
        resolve();
      };
      cmd.on('stderr', onLine);
      this.#exited.then((exit) => {
        if (this.#ready) return; // 'died' reports it
        fail(`code:${exit.code} signal:${exit.signal}${exit.stderrTail.length ? ' ' + exit.stderrTail.at(-1) : ''}`, exit);
      });
      cmd.run();
    });
  }

  /** Queues PCM (8 kHz mono); the clock sends it. Beyond ~200 ms queued, the oldest samples are dropped. */
  write(pcm: Int16Array): void {
    if (this.#exit || this.#stopping || pcm.length === 0) return;
    this.#queue.push(pcm.slice());
    this.#buffered += pcm.length;
    while (this.#buffered > MAX_BUFFER_SAMPLES) {
      const excess = this.#buffered - MAX_BUFFER_SAMPLES;
      const head = this.#queue[0]!;
      const avail = head.length - this.#queueHead;
      const n = Math.min(excess, avail);
      this.#queueHead += n;
      this.#buffered -= n;
      this.#dropped += n;
      if (this.#queueHead >= head.length) {
        this.#queue.shift();
        this.#queueHead = 0;
      }
    }
  }

  /** Sends every frame due since start; pure arithmetic on performance.now(), so it never drifts. */
  #tick(): void {
    const due = Math.floor((performance.now() - this.#t0) / FRAME_MS);
    const n = due - this.#framesSent;
    if (n <= 0) return;
    const out = new Int16Array(n * FRAME_SAMPLES);
    for (let f = 0; f < n; f++) {
      const got = this.#take(out.subarray(f * FRAME_SAMPLES, (f + 1) * FRAME_SAMPLES));
      this.#track(this.#framesSent + f, got > 0);
    }
    this.#framesSent = due;
    this.#input.write(Buffer.from(out.buffer, out.byteOffset, out.byteLength));
  }

  /** Fills `frame` from the queue (zeros stay where nothing is queued); returns samples taken. */
  #take(frame: Int16Array): number {
    let filled = 0;
    while (filled < frame.length && this.#buffered > 0) {
      const head = this.#queue[0]!;
      const n = Math.min(frame.length - filled, head.length - this.#queueHead);
      frame.set(head.subarray(this.#queueHead, this.#queueHead + n), filled);
      filled += n;
      this.#queueHead += n;
      this.#buffered -= n;
      if (this.#queueHead >= head.length) {
        this.#queue.shift();
        this.#queueHead = 0;
      }
    }
    return filled;
  }

  #track(frame: number, hadAudio: boolean): void {
    if (!hadAudio) {
      if (this.#fillRunStart === undefined) this.#fillRunStart = frame;
      return;
    }
    this.#closeFillRun(frame);
  }

  #closeFillRun(endFrame: number): void {
    const start = this.#fillRunStart;
    this.#fillRunStart = undefined;
    if (start === undefined || endFrame - start < GAP_MIN_FRAMES) return;
    this.#gaps.push({ start: (start * FRAME_MS) / 1000, end: (endFrame * FRAME_MS) / 1000 });
  }

  #watchPlaylist(): void {
    try {
      this.#watcher = watch(this.dir, (_evt, name) => {
        if (name && String(name).startsWith('index.m3u8')) void this.#readPlaylist();
      });
      this.#watcher.on('error', () => {});
    } catch {
      // No inotify: segments are still read once at the end.
    }
  }

  /** Re-reads the playlist and emits `segment` for each new entry; calls coalesce while one read runs. */
  #readPlaylist(): Promise<void> {
    if (this.#reading) {
      this.#rereadWanted = true;
      return this.#reading;
    }
    this.#reading = (async () => {
      do {
        this.#rereadWanted = false;
        let text: string;
        try {
          text = await readFile(this.playlistPath, 'utf8');
        } catch {
          continue;
        }
        const segments = readablePlaylist(text)?.segments ?? [];
        for (let i = this.#segments.length; i < segments.length; i++) {
          const seg = { index: i, uri: segments[i]!.uri, durationS: segments[i]!.duration };
          this.#segments.push(seg);
          this.emit('segment', seg);
        }
      } while (this.#rereadWanted);
    })().finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  #onExit(exit: ProcessExit): ProcessExit {
    if (this.#exit) return this.#exit;
    this.#exit = exit;
    if (this.#clock) clearInterval(this.#clock);
    this.#input.destroy();
    if (!this.#stopping && this.#ready) {
      // Died while running. No #EXT-X-ENDLIST here on purpose: hls.js ends playback on it, and the
      // listener should fail over to a redundant stream instead (FIELD-NOTES "Chromium and hls.js").
      this.#finished = this.#finish(false);
      this.#finished.then(
        () => this.emit('died', exit),
        () => this.emit('died', exit),
      );
    }
    return exit;
  }

  /** Ends stdin so ffmpeg flushes and writes #EXT-X-ENDLIST; SIGKILL after a timeout; idempotent. After `died` it resolves with what was written. */
  stop(): Promise<{ durationS: number }> {
    if (this.#finished) return this.#finished;
    this.#stopping = true;
    this.#finished = (async () => {
      if (!this.#exit) {
        this.#tick(); // every frame due up to now
        if (this.#clock) clearInterval(this.#clock);
        this.#input.end();
        const ms = this.#opts.stopTimeoutMs ?? 5000;
        const timer = setTimeout(() => {
          this.#opts.logger?.warn(`ffmpeg did not finish in ${ms} ms, killing [${this.#opts.context ?? ''} pid:${this.#proc?.pid}]`);
          this.#proc?.kill('SIGKILL');
        }, ms);
        await this.#exited;
        clearTimeout(timer);
      }
      return this.#finish(true);
    })();
    return this.#finished;
  }

  /** Same as stop(), for the supervisor. */
  close(): Promise<{ durationS: number }> {
    return this.stop();
  }

  async #finish(endList: boolean): Promise<{ durationS: number }> {
    this.#watcher?.close();
    this.#closeFillRun(this.#framesSent);
    await this.#readPlaylist();
    let durationS = this.#segments.reduce((s, x) => s + x.durationS, 0);
    if (endList) {
      const text = await readFile(this.playlistPath, 'utf8').catch(() => '');
      // A killed ffmpeg leaves the playlist open; stop() promises a finished one.
      if (text && !/^#EXT-X-ENDLIST\s*$/m.test(text)) await appendFile(this.playlistPath, (text.endsWith('\n') ? '' : '\n') + '#EXT-X-ENDLIST\n');
    }
    if (this.#segments.length === 0) durationS = 0;
    const gaps: GapsFile = this.#gaps;
    await writeFile(join(this.dir, 'gaps.json'), JSON.stringify(gaps, null, 2) + '\n');
    return { durationS: Math.round(durationS * 1000) / 1000 };
  }
}
