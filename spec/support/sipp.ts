/**
 * Runs sipp (Debian `sip-tester`) as a real SIP caller. Scenarios are generated per spec from the
 * templates here, so each carries the absolute path of its pcap. FIELD-NOTES: run in the
 * foreground with `-nostdin`; `-i/-mi 127.0.0.1` or the SDP names another interface; exit code 0
 * means every call passed.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** sipp's result. */
export interface SippResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs sipp against `target` (host:port) with a scenario file. */
export function runSipp(opts: {
  scenario: string;
  target: string;
  localPort: number;
  mediaPort: number;
  cwd: string;
  calls?: number;
  rate?: number;
  extra?: string[];
  timeoutS?: number;
  /** Aborting it kills sipp at once (a spec that is done with a call whose peer died). */
  signal?: AbortSignal;
}): Promise<SippResult> {
  const args = [
    '-sf', opts.scenario,
    '-i', '127.0.0.1', '-mi', '127.0.0.1',
    '-p', String(opts.localPort), '-mp', String(opts.mediaPort),
    '-m', String(opts.calls ?? 1), '-r', String(opts.rate ?? 1),
    '-nostdin', '-timeout', `${opts.timeoutS ?? 60}s`, '-timeout_error',
    '-trace_err', '-error_file', join(opts.cwd, 'sipp-errors.log'),
    ...(opts.extra ?? []),
    opts.target,
  ];
  return new Promise((resolve) => {
    const p = spawn('sipp', args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.signal ? { signal: opts.signal, killSignal: 'SIGKILL' as const } : {}) });
    p.on('error', () => {}); // an abort surfaces as 'error' before 'close'
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout: stdout.slice(-4000), stderr: stderr.slice(-4000) }));
  });
}

const SDP = (withEvents: boolean) => `v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0${withEvents ? ' 101' : ''}
      a=rtpmap:0 PCMU/8000${withEvents ? '\n      a=rtpmap:101 telephone-event/8000\n      a=fmtp:101 0-15' : ''}`;

const HEAD = (method: string, cseq: number, uri = '[next_url]') => `${method} ${uri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:jitcast@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: ${cseq} ${method}
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70`;

/**
 * A dial-in scenario: INVITE (PCMU, and telephone-event unless `inbandOnly`), ACK, play the pcap,
 * then either hang up after `holdMs` (`ending: 'caller-bye'`) or wait for jitcast's BYE
 * (`ending: 'expect-bye'`, e.g. after three wrong PINs).
 */
export function dialInScenario(dir: string, name: string, o: { pcap: string; holdMs: number; ending: 'caller-bye' | 'expect-bye'; inbandOnly?: boolean }): string {
  const end =
    o.ending === 'caller-bye'
      ? `<pause milliseconds="${o.holdMs}"/>
  <send retrans="500"><![CDATA[
      ${HEAD('BYE', 2)}
      Content-Length: 0
    ]]></send>
  <recv response="200" crlf="true"/>`
      : `<recv request="BYE" timeout="${o.holdMs}"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]></send>`;
  const xml = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="jitcast ${name}">
  <send retrans="500"><![CDATA[
      ${HEAD('INVITE', 1, 'sip:jitcast@[remote_ip]:[remote_port]').replace('[peer_tag_param]', '')}
      Content-Type: application/sdp
      Content-Length: [len]

      ${SDP(!o.inbandOnly)}
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send><![CDATA[
      ${HEAD('ACK', 1)}
      Content-Length: 0
    ]]></send>
  <nop><action><exec play_pcap_audio="${o.pcap}"/></action></nop>
  ${end}
</scenario>
`;
  const file = join(dir, `${name}.xml`);
  writeFileSync(file, xml);
  return file;
}
