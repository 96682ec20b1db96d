/**
 * sipp as the bench caller (Debian `sip-tester` 3.6). One sipp process places every call of a run
 * (FIELD-NOTES: fifty sipp processes cost a core, one placing all calls costs little). Each call:
 * INVITE (PCMU + telephone-event 101) → 200 → ACK, audio from `rtp_stream` (raw 8 kHz µ-law file),
 * the event ID and PIN keyed as SIP INFO `application/dtmf-relay`, one digit per INFO, read from an
 * `-inf` CSV line per call (one field per digit, since sipp cannot split a field), a hold, BYE.
 * With `-trace_msg`, sipp stamps every message it sends (wall clock, µs), which gives the exact
 * instant the PIN's final `#` left the caller.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

/** The keys one call presses. */
export interface CallKeys {
  eventId: string;
  pin: string;
}

/** Writes the `-inf` file: SEQUENTIAL, then one line per call, one field per digit (8 ID + 6 PIN). */
export function writeInjection(file: string, calls: CallKeys[]): void {
  const lines = ['SEQUENTIAL', ...calls.map((c) => [...c.eventId, ...c.pin].join(';') + ';')];
  writeFileSync(file, lines.join('\n') + '\n');
}

const HEAD = (method: string, cseq: number, uri: string, toTag: boolean) => `${method} ${uri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:bench@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:jitcast@[remote_ip]:[remote_port]>${toTag ? '[peer_tag_param]' : ''}
      Call-ID: [call_id]
      CSeq: ${cseq} ${method}
      Contact: <sip:bench@[local_ip]:[local_port]>
      Max-Forwards: 70`;

function info(cseq: number, signal: string): string {
  return `  <send retrans="500"><![CDATA[
      ${HEAD('INFO', cseq, '[next_url]', true)}
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal=${signal}
      Duration=160
    ]]></send>
  <recv response="200"/>`;
}

/** Options of a bench call scenario. */
export interface ScenarioOptions {
  /** Raw µ-law file for rtp_stream (absolute path) and how often to loop it (-1: until hang-up). */
  audio: { file: string; loops: number };
  /** Pause after the ACK before the first key (ms). */
  firstKeyAfterMs: number;
  /** Pause between two INFO keys (ms), after the 200 of the previous one. */
  keyGapMs: number;
  /** Pause after the PIN's `#` before the BYE (ms). */
  holdMs: number;
}

/** Number of INFOs a call sends: 8 ID digits, `#`, 6 PIN digits, `#`. */
export const KEYS_PER_CALL = 16;

/** Writes the scenario XML and returns its path. */
export function writeScenario(dir: string, name: string, o: ScenarioOptions): string {
  const steps: string[] = [];
  let cseq = 2;
  const key = (signal: string) => {
    steps.push(info(cseq++, signal));
    steps.push(`  <pause milliseconds="${o.keyGapMs}"/>`);
  };
  for (let i = 0; i < 8; i++) key(`[field${i}]`);
  key('#');
  for (let i = 8; i < 14; i++) key(`[field${i}]`);
  steps.push(info(cseq++, '#'));
  const xml = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="jitcast bench ${name}">
  <send retrans="500"><![CDATA[
      ${HEAD('INVITE', 1, 'sip:jitcast@[remote_ip]:[remote_port]', false)}
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=bench 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [rtpstream_audio_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=sendrecv
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send><![CDATA[
      ${HEAD('ACK', 1, '[next_url]', true)}
      Content-Length: 0
    ]]></send>
  <nop><action><exec rtp_stream="${o.audio.file},${o.audio.loops},0"/></action></nop>
  <pause milliseconds="${o.firstKeyAfterMs}"/>
${steps.join('\n')}
  <pause milliseconds="${o.holdMs}"/>
  <send retrans="500"><![CDATA[
      ${HEAD('BYE', cseq, '[next_url]', true)}
      Content-Length: 0
    ]]></send>
  <recv response="200" crlf="true"/>
</scenario>
`;
  const file = join(dir, `${name}.xml`);
  writeFileSync(file, xml);
  return file;
}

/** What a sipp run returned. */
export interface SippRun {
  pid: number;
  done: Promise<SippOutcome>;
}

export interface SippOutcome {
  code: number | null;
  successful: number;
  failed: number;
  stdoutTail: string;
  errorsTail: string;
  /** Messages sent, from -trace_msg (when traced). */
  sent: SentMessage[];
}

/** One message sipp sent, with its wall-clock time (ms since epoch, fractional). */
export interface SentMessage {
  at: number;
  firstLine: string;
  callId: string;
  cseq: number;
  body: string;
}

/** Starts sipp in the foreground (`-nostdin`; FIELD-NOTES: `-bg` exits at once). */
export function startSipp(o: {
  scenario: string;
  target: string;
  cwd: string;
  injection: string;
  calls: number;
  rate: number;
  limit: number;
  trace?: boolean;
  timeoutS: number;
  localPort: number;
  mediaPort: number;
}): SippRun {
  const messageFile = join(o.cwd, 'sipp-messages.log');
  const errorFile = join(o.cwd, 'sipp-errors.log');
  const args = [
    '-sf', o.scenario,
    '-inf', o.injection,
    '-i', '127.0.0.1', '-mi', '127.0.0.1',
    '-p', String(o.localPort), '-mp', String(o.mediaPort),
    '-m', String(o.calls), '-r', String(o.rate), '-l', String(o.limit),
    '-nostdin', '-timeout', `${o.timeoutS}s`, '-timeout_error',
    '-trace_err', '-error_file', errorFile,
    ...(o.trace ? ['-trace_msg', '-message_file', messageFile] : []),
    o.target,
  ];
  const p = spawn('sipp', args, { cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  const keep = (d: Buffer) => {
    stdout += d;
    if (stdout.length > 200_000) stdout = stdout.slice(-100_000);
  };
  p.stdout.on('data', keep);
  p.stderr.on('data', keep);
  const done = new Promise<SippOutcome>((resolve) => {
    p.on('close', (code) => {
      const cum = (label: string) => {
        const m = new RegExp(`${label}\\s*\\|\\s*\\d+\\s*\\|\\s*(\\d+)`).exec(stdout.slice(-6000));
        return m ? Number(m[1]) : NaN;
      };
      resolve({
        code,
        successful: cum('Successful call'),
        failed: cum('Failed call'),
        stdoutTail: stdout.slice(-4000),
        errorsTail: existsSync(errorFile) ? readFileSync(errorFile, 'utf8').slice(-3000) : '',
        sent: o.trace && existsSync(messageFile) ? parseSent(readFileSync(messageFile, 'utf8')) : [],
      });
    });
  });
  return { pid: p.pid!, done };
}

/** Parses sipp's -trace_msg log: "----- YYYY-MM-DD HH:MM:SS.uuuuuu" then "UDP message sent …". */
export function parseSent(log: string): SentMessage[] {
  const out: SentMessage[] = [];
  const blocks = log.split(/^-{20,} /m);
  for (const b of blocks) {
    const m = /^(\d{4})-(\d\d)-(\d\d)\s+(\d\d):(\d\d):(\d\d)\.(\d{6})\s*\n(.*)\n/.exec(b);
    if (!m || !/message sent/.test(m[8]!)) continue;
    // sipp prints local time.
    const at = new Date(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!).getTime() + Number(m[7]) / 1000;
    const rest = b.slice(m[0].length).replace(/^\s*\n/, '');
    const firstLine = rest.split(/\r?\n/)[0] ?? '';
    const callId = /^Call-ID:\s*(.+)$/im.exec(rest)?.[1]?.trim() ?? '';
    const cseq = Number(/^CSeq:\s*(\d+)/im.exec(rest)?.[1] ?? NaN);
    const sep = rest.search(/\r?\n\r?\n/);
    out.push({ at, firstLine, callId, cseq, body: sep >= 0 ? rest.slice(sep).trim() : '' });
  }
  return out;
}
