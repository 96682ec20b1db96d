/**
 * baresip (Debian `baresip`, 1.0.0) as an independent, real SIP caller for end-to-end specs.
 * Headless as FIELD-NOTES describes: a config directory of its own, `HOME` pointed at a temp
 * directory whose `.asoundrc` makes ALSA's default device a null sink, `aufile` streaming a WAV as
 * the microphone, and the `cons` console on a UDP port for commands (`/sndcode`, `/hangup`,
 * `/quit`). With `record`, the `sndfile` filter dumps the decoded received audio (what the
 * caller hears) to `dump-<time>-dec.wav` in its own directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readWav } from './audio.ts';

/** How one baresip is set up. */
export interface BaresipOptions {
  /** A fresh directory for this client's config, HOME and dumps. */
  dir: string;
  /** `sip_listen` port on 127.0.0.1; baresip also takes this port + 1 for SIP over TLS. */
  sipPort: number;
  /** `cons_listen` port (not sipPort + 1). */
  consPort: number;
  /** RTP port range `[min, max]` (even start; RTP + RTCP pairs). */
  rtpPorts: [number, number];
  /** 8 kHz mono 16-bit WAV played as the microphone. */
  wav: string;
  /** SIP URI to dial at start. */
  dial: string;
  /** The caller's user name in its From URI. Default `caller`. */
  user?: string;
  /** Dump received (decoded) audio with `sndfile`. Default false. */
  record?: boolean;
  /** baresip quits on its own after this many seconds (a safety net). Default 90. */
  maxSeconds?: number;
}

/** A running baresip. */
export interface Baresip {
  proc: ChildProcess;
  /** stdout + stderr so far, with the once-per-frame status line squeezed out. */
  output(): string;
  /** Sends one console command (`/sndcode 123#`, `/hangup`, `/quit`). */
  command(cmd: string): Promise<void>;
  /** Resolves once baresip reports the call established; rejects on exit or after `timeoutMs`. */
  established(timeoutMs?: number): Promise<void>;
  /** The decoded audio received so far (needs `record`; complete once the call or baresip ended). */
  received(): Int16Array;
  /** Ends baresip: `/quit`, then SIGTERM, then SIGKILL (idempotent). */
  stop(): Promise<void>;
}

const STATUS_LINE = /\[\d+:\d\d:\d\d\] audio=\d+\/\d+ \(bit\/s\)\s*/g;

/** Starts baresip with its own config and dials `o.dial`. */
export function startBaresip(o: BaresipOptions): Baresip {
  const home = join(o.dir, 'home');
  const conf = join(o.dir, 'conf');
  const dumps = join(o.dir, 'dump');
  for (const d of [home, conf, dumps]) mkdirSync(d, { recursive: true });
  writeFileSync(join(home, '.asoundrc'), 'pcm.!default { type null }\n');
  const modules = ['g711', 'aufile', 'alsa', ...(o.record ? ['sndfile'] : []), 'cons'];
  writeFileSync(
    join(conf, 'config'),
    [
      'poll_method\t\tepoll',
      `sip_listen\t\t127.0.0.1:${o.sipPort}`,
      'sip_trans_def\t\tudp',
      `net_interface\t\t127.0.0.1`,
      `rtp_ports\t\t${o.rtpPorts[0]}-${o.rtpPorts[1]}`,
      'audio_player\t\talsa,default',
      'audio_alert\t\talsa,default',
      `audio_source\t\taufile,${o.wav}`,
      'audio_srate\t\t8000',
      'audio_channels\t\t1',
      'module_path\t\t/usr/lib/baresip/modules',
      ...modules.map((m) => `module\t\t\t${m}.so`),
      'module_app\t\taccount.so',
      'module_app\t\tmenu.so',
      `cons_listen\t\t127.0.0.1:${o.consPort}`,
      `snd_path\t\t${dumps}`,
      '',
    ].join('\n'),
  );
  writeFileSync(join(conf, 'accounts'), `<sip:${o.user ?? 'caller'}@127.0.0.1>;regint=0;audio_codecs=PCMU\n`);
  writeFileSync(join(conf, 'contacts'), '');

  const proc = spawn('baresip', ['-f', conf, '-e', `/dial ${o.dial}`, '-t', String(o.maxSeconds ?? 90)], {
    cwd: o.dir,
    env: { ...process.env, HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));

  const command = (cmd: string) =>
    new Promise<void>((resolve, reject) => {
      const s = createSocket('udp4');
      s.send(Buffer.from(`${cmd}\n`), o.consPort, '127.0.0.1', (err) => {
        s.close();
        if (err) reject(err);
        else resolve();
      });
    });

  return {
    proc,
    output: () => out.replace(STATUS_LINE, ''),
    command,
    async established(timeoutMs = 15_000) {
      const until = Date.now() + timeoutMs;
      while (!/Call established/.test(out)) {
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`baresip exited (${proc.exitCode ?? proc.signalCode}) before the call was established`);
        if (Date.now() > until) throw new Error(`baresip: no established call after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    received() {
      const file = readdirSync(dumps).find((f) => f.endsWith('-dec.wav'));
      if (!file) throw new Error(`baresip wrote no received-audio dump in ${dumps}`);
      return readWav(join(dumps, file));
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      await command('/quit').catch(() => {});
      const waitExit = (ms: number) => Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
      if (await waitExit(3000)) return;
      proc.kill('SIGTERM');
      if (await waitExit(3000)) return;
      proc.kill('SIGKILL');
      await exited;
    },
  };
}
