/**
 * One live stream: 8 kHz mono s16le PCM in → ffmpeg (through fluent-ffmpeg) → AAC-LC HLS on disk.
 *
 * ffmpeg reads PCM on stdin, never RTP/SDP, so it can never hang on a silent socket (FIELD-NOTES
 * "Traps"). The encoder keeps a drift-free 20 ms timeline: every tick takes exactly the frames due
 * since start, filling with silence when the caller wrote nothing, so the HLS timeline equals
 * wall-clock time whatever the RTP does. Silence fills longer than GAP_MIN_S are recorded as gaps
 * and written to `gaps.json` at the end: the archive planner uses them to pick between redundant
 * streams.
 *
 * Cost at scale: every encoder of the process is woken by ONE shared 20 ms ticker (not a timer
 * each), PCM waits in a fixed ring (no allocation per write), and frames go to ffmpeg's stdin in
 * 100 ms chunks (CHUNK_FRAMES): a fifth of the pipe writes and of ffmpeg's wake-ups, for at most
 * 100 ms more latency on 2 s segments.
 *
 * Output: AAC-LC mono 16 kHz ~32 kb/s (16 kHz rather than 8: browsers' MSE/AAC decoders do not all
 * take 8 kHz AAC; 16 kHz costs nothing in quality or size over telephone audio).
 */
import { EventEmitter } from 'node:events';
import { constants, watch, type FSWatcher } from 'node:fs';
import { access, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { setPriority } from 'node:os';
import { delimiter, join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';
import ffmpeg from 'fluent-ffmpeg';
import { parseMediaPlaylist, serializeMediaPlaylist, type MediaPlaylist } from '../codecs/hls.ts';
import { ProcessStartError } from './errors.ts';
import { SharedTicker } from './media-clock.ts';
import { LineTail, type ProcessExit, type Supervisable } from './supervisor.ts';

/** Input sample rate (G.711). */
export const INPUT_RATE = 8000;
/** Samples per 20 ms clock frame. */
export const FRAME_SAMPLES = 160;
const FRAME_MS = 20;
/** Most PCM buffered ahead of the clock; older samples are dropped so a burst cannot add latency. */
export const MAX_BUFFER_SAMPLES = 1600;
/** MPEG-TS timestamps are 33 bits of a 90 kHz clock: they wrap every 2^33 / 90000 s (about 26.5 h). */
const PTS_WRAP_S = 2 ** 33 / 90_000;
/** A silence fill at least this long (seconds) is recorded as a gap. */
export const GAP_MIN_S = 0.1;
const GAP_MIN_FRAMES = Math.round((GAP_MIN_S * 1000) / FRAME_MS);
/** Frames written to ffmpeg's stdin at once (100 ms). */
export const CHUNK_FRAMES = 5;

/** The one clock of every encoder in this process. */
const TICKER = new SharedTicker(FRAME_MS);

/** A playlist change is read this long (ms) after its first file event. */
const PLAYLIST_SETTLE_MS = 20;
/** ffmpeg's own playlist; index.m3u8 is published from it (see #publish). */
const RAW_PLAYLIST = '.ffmpeg.m3u8';

/** Default nice value of ffmpeg (see HlsEncoderOptions.niceness). */
export const ENCODER_NICENESS = 19;

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
  /**
   * Nice value ffmpeg runs at. Default ENCODER_NICENESS (19): an encoder woken by a chunk must not
   * preempt the node's 20 ms media clock, and encoders that fell behind under load must not
   * outweigh it together (200 runnable at nice 10 weigh 21× the node; at 19, 3×). An encoder has
   * whole segments of slack; the mixer has none.
   */
  niceness?: number;
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

/** Parses ffmpeg's playlist as far as it is complete; undefined while ffmpeg is mid-rewrite (the static build rewrites in place). */
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
  /** The published playlist, `index.m3u8`: always whole (replaced by rename), only ever grows. */
  readonly playlistPath: string;
  /** Where ffmpeg writes its playlist (a dot-file: content storage does not keep it). */
  readonly #rawPlaylistPath: string;
  /** Segments listed in index.m3u8, and whether it carries #EXT-X-ENDLIST. */
  #published = { segments: 0, ended: false };
  readonly #opts: HlsEncoderOptions;
  readonly #tail = new LineTail();
  #proc?: ChildProcess;
  #stdin?: Writable;
  #unsubscribe?: () => void;
  #t0 = 0;
  /** Wall-clock time (ms since the epoch) of t0: the date of media time 0. */
  #wallT0 = 0;
  /** Frames of the timeline produced so far (the last chunk may not be written yet). */
  #framesSent = 0;
  /** PCM written ahead of the clock: a ring of MAX_BUFFER_SAMPLES, oldest at #ringHead. */
  readonly #ring = new Int16Array(MAX_BUFFER_SAMPLES);
  #ringHead = 0;
  #buffered = 0;
  #dropped = 0;
  /** The chunk being filled for stdin and how many frames it holds. */
  #chunk?: Int16Array;
  #chunkFrames = 0;
  #fillRunStart: number | undefined = 0; // the stream starts silent until the first write
  readonly #gaps: Gap[] = [];
  #segments: EncodedSegment[] = [];
  #watcher?: FSWatcher;
  #settle?: NodeJS.Timeout;
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
    this.#rawPlaylistPath = join(opts.dir, RAW_PLAYLIST);
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

  /** Seconds of timeline fed to ffmpeg so far (the last < 100 ms may still wait in the chunk). */
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
    // The timeline starts now; the pipe holds what ffmpeg has not read yet. Its timestamps start at
    // the wall clock (modulo MPEG-TS's 33-bit wrap), so redundant streams of one event, started
    // apart, carry the same timestamp for the same moment: a player failing over from one to the
    // other places the new one's audio where it belongs (with PROGRAM-DATE-TIME to find the
    // segment), instead of off by however far apart the streams started.
    this.#wallT0 = Date.now();
    this.#t0 = performance.now();
    const tsOffsetS = ((this.#wallT0 / 1000) % PTS_WRAP_S).toFixed(6);
    const cmd = ffmpeg({ stdoutLines: 20 })
      .setFfmpegPath(o.ffmpegPath)
      // stdin by name, written directly (no PassThrough piped in between).
      .input('pipe:0')
      // Raw PCM needs no probing: without the two probe limits ffmpeg first buffers ~2 s of input.
      .inputOptions('-hide_banner', '-nostats', '-loglevel', 'info', '-probesize', '32', '-analyzeduration', '0', '-f', 's16le', '-ar', String(INPUT_RATE), '-ac', '1')
      .output(this.#rawPlaylistPath)
      .outputOptions(
        // G.711 carries nothing above 4 kHz: coding the empty 4-8 kHz band of the 16 kHz output
        // wastes bits and about a quarter of the encoder's CPU.
        '-c:a', 'aac', '-b:a', '32k', '-cutoff', '4000', '-ar', '16000', '-ac', '1',
        '-output_ts_offset', tsOffsetS,
        '-f', 'hls', '-hls_time', String(o.segmentS), '-hls_list_size', '0', '-hls_playlist_type', 'event',
        '-hls_segment_filename', join(o.dir, 'seg%05d.ts'),
      );
    // fluent-ffmpeg keeps setFfmpegPath in a module-global cache: pin this command's binary so two
    // encoders with different binaries in one process cannot swap them.
    (cmd as unknown as { _getFfmpegPath: (cb: (err: Error | null, p: string) => void) => void })._getFfmpegPath = (cb) => cb(null, o.ffmpegPath);

    this.#exited = new Promise((resolveExit) => {
      cmd.on('start', () => {
        this.#proc = (cmd as unknown as { ffmpegProc: ChildProcess }).ffmpegProc;
        // os.setPriority, not fluent-ffmpeg's `niceness` (which spawns renice: a second fork per encoder).
        if (this.#proc.pid) {
          try {
            setPriority(this.#proc.pid, o.niceness ?? ENCODER_NICENESS);
          } catch {
            // Already gone (the exit reports it) or not permitted: it runs at the node's priority.
          }
        }
        this.#stdin = this.#proc.stdin ?? undefined;
        // EPIPE when ffmpeg dies mid-write: the exit reports it ('close' below).
        this.#stdin?.on('error', () => {});
        // 'close' rather than 'exit': stderr is drained, so the tail is complete.
        this.#proc.once('close', (code, signal) => resolveExit(this.#onExit({ code, signal, stderrTail: this.#tail.snapshot() })));
        this.#unsubscribe = TICKER.subscribe((now) => this.#tick(now));
      });
      cmd.on('error', (err: Error) => {
        // Only errors before spawn (binary missing, capability probe failed) end here; later ones come through 'close'.
        if (!this.#proc) resolveExit(this.#onExit({ code: null, signal: null, stderrTail: [...this.#tail.snapshot(), err.message] }));
      });
    });
    cmd.on('stderr', (line: string) => {
        // fluent-ffmpeg emits the empty remainder after the last newline as a line: keep the last real one.
        if (line.trim() !== '') this.#tail.add(line);
      });

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
    const cap = MAX_BUFFER_SAMPLES;
    let src = pcm;
    if (src.length > cap) {
      this.#dropped += src.length - cap;
      src = src.subarray(src.length - cap);
    }
    const excess = this.#buffered + src.length - cap;
    if (excess > 0) {
      this.#ringHead = (this.#ringHead + excess) % cap;
      this.#buffered -= excess;
      this.#dropped += excess;
    }
    // Copy in at the tail, in two pieces when it wraps.
    const tail = (this.#ringHead + this.#buffered) % cap;
    const first = Math.min(src.length, cap - tail);
    this.#ring.set(first === src.length ? src : src.subarray(0, first), tail);
    if (first < src.length) this.#ring.set(src.subarray(first), 0);
    this.#buffered += src.length;
  }

  /**
   * Takes every frame due since start into the stdin chunk and writes each full chunk (all of it
   * when `flush`); pure arithmetic on performance.now(), so the timeline never drifts.
   */
  #tick(now = performance.now(), flush = false): void {
    if (this.#exit) return;
    const due = Math.floor((now - this.#t0) / FRAME_MS);
    for (; this.#framesSent < due; this.#framesSent++) {
      // Zeroed, so whatever the queue cannot fill is silence.
      this.#chunk ??= new Int16Array(CHUNK_FRAMES * FRAME_SAMPLES);
      const got = this.#take(this.#chunk, this.#chunkFrames * FRAME_SAMPLES);
      this.#track(this.#framesSent, got > 0);
      if (++this.#chunkFrames === CHUNK_FRAMES) this.#writeChunk();
    }
    if (flush && this.#chunkFrames > 0) this.#writeChunk();
  }

  /** Hands the chunk to ffmpeg's stdin (which keeps the buffer until written: a new chunk follows). */
  #writeChunk(): void {
    const c = this.#chunk!;
    const bytes = this.#chunkFrames * FRAME_SAMPLES * 2;
    this.#chunk = undefined;
    this.#chunkFrames = 0;
    if (this.#stdin && !this.#stdin.destroyed) this.#stdin.write(Buffer.from(c.buffer, c.byteOffset, bytes));
  }

  /** Fills one frame of `out` at `offset` from the queue (zeros stay where nothing is queued); returns samples taken. */
  #take(out: Int16Array, offset: number): number {
    const n = Math.min(FRAME_SAMPLES, this.#buffered);
    if (n === 0) return 0;
    const cap = MAX_BUFFER_SAMPLES;
    const first = Math.min(n, cap - this.#ringHead);
    out.set(this.#ring.subarray(this.#ringHead, this.#ringHead + first), offset);
    if (first < n) out.set(this.#ring.subarray(0, n - first), offset + first);
    this.#ringHead = (this.#ringHead + n) % cap;
    this.#buffered -= n;
    return n;
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
        if (!name || !String(name).startsWith(RAW_PLAYLIST) || this.#settle) return;
        // One rewrite fires several events (truncate, write, close): read once, after it settled.
        this.#settle = setTimeout(() => {
          this.#settle = undefined;
          void this.#readPlaylist();
        }, PLAYLIST_SETTLE_MS);
      });
      this.#watcher.on('error', () => {});
    } catch {
      // No inotify: segments are still read once at the end.
    }
  }

  /**
   * Re-reads ffmpeg's playlist; when it lists more segments than index.m3u8 (or newly ends), publishes
   * it, then emits `segment` for each new entry. Calls coalesce while one read runs.
   */
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
          text = await readFile(this.#rawPlaylistPath, 'utf8');
        } catch {
          continue;
        }
        const p = readablePlaylist(text);
        if (p) await this.#publish(p);
      } while (this.#rereadWanted);
    })().finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  /**
   * Writes `p` to index.m3u8 by rename, so a reader never sees a half-written playlist (players got
   * 404s while the static build rewrote its own in place), unless it would shrink or un-end what is
   * published (a read that caught ffmpeg mid-rewrite). Segments become visible (`segment`) only once
   * published: the encoder port announces a stream on its first segment.
   */
  async #publish(p: MediaPlaylist): Promise<void> {
    const grows = p.segments.length > this.#published.segments;
    if (!grows && !(p.ended && !this.#published.ended && p.segments.length === this.#published.segments)) return;
    const tmp = `${this.playlistPath}.tmp`;
    await writeFile(tmp, serializeMediaPlaylist(this.#dated(p)));
    await rename(tmp, this.playlistPath);
    this.#published = { segments: p.segments.length, ended: p.ended };
    for (let i = this.#segments.length; i < p.segments.length; i++) {
      const seg = { index: i, uri: p.segments[i]!.uri, durationS: p.segments[i]!.duration };
      this.#segments.push(seg);
      this.emit('segment', seg);
    }
  }

  /**
   * `p` with EXT-X-PROGRAM-DATE-TIME on every segment: the timeline is paced to the wall clock from
   * t0 (a frame is due every 20 ms whatever the RTP does), so a segment's first sample was due at t0
   * plus the durations before it. Redundant streams of one event, started apart, carry the same date
   * for the same moment of the conference: players align them by it when they fail over.
   */
  #dated(p: MediaPlaylist): MediaPlaylist {
    let at = this.#wallT0;
    const segments = p.segments.map((s) => {
      const seg = { ...s, programDateTime: Math.round(at) };
      at += s.duration * 1000;
      return seg;
    });
    return { ...p, segments };
  }

  #onExit(exit: ProcessExit): ProcessExit {
    if (this.#exit) return this.#exit;
    this.#exit = exit;
    this.#unsubscribe?.();
    this.#stdin?.destroy();
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
        this.#tick(performance.now(), true); // every frame due up to now, the last chunk included
        this.#unsubscribe?.();
        this.#stdin?.end();
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
    clearTimeout(this.#settle);
    this.#closeFillRun(this.#framesSent);
    // ffmpeg is gone: its playlist is final.
    const text = await readFile(this.#rawPlaylistPath, 'utf8').catch(() => '');
    await unlink(this.#rawPlaylistPath).catch(() => undefined);
    await this.#reading;
    const last = text ? readablePlaylist(text) : undefined;
    if (last) await this.#publish(last);
    if (endList && this.#published.segments > 0 && !this.#published.ended) {
      // A killed ffmpeg leaves the playlist open; stop() promises a finished one.
      const p = parseMediaPlaylist(await readFile(this.playlistPath, 'utf8'));
      await this.#publish({ ...p, ended: true });
    }
    let durationS = this.#segments.reduce((s, x) => s + x.durationS, 0);
    if (this.#segments.length === 0) durationS = 0;
    const gaps: GapsFile = this.#gaps;
    await writeFile(join(this.dir, 'gaps.json'), JSON.stringify(gaps, null, 2) + '\n');
    return { durationS: Math.round(durationS * 1000) / 1000 };
  }
}
