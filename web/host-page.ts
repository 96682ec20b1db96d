/**
 * The host page (the host link `/e/<hostToken>`): the host watches their event (state, live player,
 * callers and listeners), ends it, and once archived gets the archive link. Self-contained HTML
 * with inline CSS and one nonce-bearing inline script (no build step). The page acts with the host
 * token in its own URL, never with an API key: it polls `GET <link>/info` and ends the event with
 * `POST <link>/end`; the gateway accepts both for host-role tokens only.
 */
import type { EventStatus, EventView } from '../runtime/contracts.ts';
import { bannerCss, listenersTextJs, pageHead } from './page-kit.ts';
import { escapeHtml, playerPageCsp } from './player-page.ts';

/** What `GET /e/<hostToken>/info` answers. */
export interface HostInfo {
  eventId: string;
  /** The PIN the host keys after the event ID when dialing in. */
  pin: string;
  title: string;
  status: EventStatus;
  startsAt: string | null;
  liveAt: string | null;
  endedAt: string | null;
  live: boolean;
  callers: number;
  streams: number;
  /** Listener counts from the usage report (`{current, peak, total}`), or null where unknown. */
  listeners: unknown;
  /** The link to give attendees; it plays the archive once the event is archived. */
  attendeeUrl: string;
  archiveReady: boolean;
  /** Once archived: the archive link (the attendee link, which then plays the recording). */
  archiveUrl: string | null;
  /** Once archived: the archive as an HLS VOD playlist. */
  archivePlaylistUrl: string | null;
  archiveError: string | null;
}

/** The host page's view of an event; `listeners` as the usage report gives them. */
export function hostInfoOf(view: EventView, pin: string, listeners?: unknown): HostInfo {
  const archiveReady = view.status === 'archived' && Array.isArray(view.archive) && view.archive.length > 0;
  return {
    eventId: view.eventId,
    pin,
    title: view.title,
    status: view.status,
    startsAt: view.startsAt ?? null,
    liveAt: view.liveAt ?? null,
    endedAt: view.endedAt ?? null,
    live: view.status === 'live' && Array.isArray(view.streams) && view.streams.length > 0,
    callers: typeof view.callers === 'number' ? view.callers : 0,
    streams: Array.isArray(view.streams) ? view.streams.length : 0,
    listeners: listeners ?? null,
    attendeeUrl: view.attendeeUrl,
    archiveReady,
    archiveUrl: archiveReady ? view.attendeeUrl : null,
    archivePlaylistUrl: archiveReady ? `${view.attendeeUrl}/archive.m3u8` : null,
    archiveError: view.archiveError ?? null,
  };
}

/** Content-Security-Policy of the host page: the player page's (hls.js from /vendor, one nonce script). */
export function hostPageCsp(nonce: string): string {
  return playerPageCsp(nonce);
}

const STYLE = `
:root{color-scheme:light dark;--bg:#f4f5f8;--card:#fff;--fg:#1b1f2a;--muted:#5d6475;--line:#e3e6ee;--accent:#3452d1;
--live:#d62d3b;--ok:#1f8a4c;--warn:#b8730a;--off:#6b7280}
@media (prefers-color-scheme:dark){:root{--bg:#0f1218;--card:#181c25;--fg:#e9ecf2;--muted:#9aa2b4;--line:#2a3040;--accent:#7d93ff}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;padding:16px}
main{max-width:640px;margin:24px auto;background:var(--card);border-radius:16px;padding:24px;box-shadow:0 10px 30px rgba(0,0,0,.08)}
.brand{font-size:.78rem;letter-spacing:.08em;text-transform:uppercase;color:var(--muted);margin:0 0 4px}
h1{font-size:1.4rem;margin:0 0 14px;overflow-wrap:anywhere}
${bannerCss('10px 14px')}
.banner[data-state=archived]{--state:var(--ok)}
.banner[data-state=ended],.banner[data-state=archiving],.banner[data-state=archive-error]{--state:var(--warn)}
.banner[data-state=reserved]{--state:var(--accent)}
dl{display:grid;grid-template-columns:110px 1fr;gap:6px 16px;margin:18px 0}
dt{color:var(--muted)}dd{margin:0;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
audio{width:100%;margin-top:8px}
.row{display:flex;gap:10px;flex-wrap:wrap;align-items:center;margin-top:16px}
button{font:inherit;font-weight:600;padding:10px 16px;border-radius:10px;border:0;cursor:pointer}
button.danger{background:var(--live);color:#fff}
button[disabled]{opacity:.45;cursor:default}
a{color:var(--accent)}
.msg{color:var(--muted);min-height:1.4em;margin:8px 0 0}
.msg.err{color:var(--live)}
`;

const SCRIPT = `
(function () {
  'use strict';
  var base = location.pathname.replace(/\\/+$/, '');
  var $ = function (id) { return document.getElementById(id); };
  var LABEL = { reserved: 'Not started \\u2014 dial in to go live', live: 'Live', ended: 'Ended \\u2014 archiving shortly',
    archiving: 'Ended \\u2014 building the archive', archived: 'Archived', 'archive-error': 'Ended \\u2014 the archive is delayed',
    cancelled: 'Cancelled' };
  var hls = null, playing = null, last = null, timer = 0;

  ${listenersTextJs({ nowSuffix: ' now', separator: ', ' })}

  function stopPlayer() { if (hls) { hls.destroy(); hls = null; } playing = null; $('player').removeAttribute('src'); }
  function play(kind) {
    if (playing === kind) return;
    stopPlayer();
    var src = base + (kind === 'live' ? '/live.m3u8' : '/archive.m3u8');
    var audio = $('player');
    if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls({ enableWorker: false });
      hls.loadSource(src);
      hls.attachMedia(audio);
    } else if (audio.canPlayType('application/vnd.apple.mpegurl')) {
      audio.src = src;
    }
    playing = kind;
  }

  function apply(s) {
    last = s;
    $('title').textContent = s.title; document.title = 'Host \\u00b7 ' + s.title;
    $('banner').setAttribute('data-state', s.status);
    $('state').textContent = LABEL[s.status] || s.status;
    $('pin').textContent = s.pin;
    $('callers').textContent = String(s.callers);
    $('streams').textContent = String(s.streams);
    $('listeners').textContent = listenersText(s.listeners);
    var link = $('attendee'); link.href = s.attendeeUrl; link.textContent = s.attendeeUrl;
    $('end').disabled = s.status !== 'live';
    $('end').hidden = !(s.status === 'live' || s.status === 'reserved');
    var arc = $('archive');
    if (s.archiveReady && s.archiveUrl) { arc.hidden = false; $('archive-link').href = s.archiveUrl; $('archive-link').textContent = s.archiveUrl; $('archive-m3u8').href = s.archivePlaylistUrl; }
    else arc.hidden = true;
    $('archive-error').textContent = s.archiveError ? 'Archive problem: ' + s.archiveError + ' (the operators are told)' : '';
    if (s.live) play('live');
    else if (s.archiveReady) play('archive');
    else stopPlayer();
  }

  function msg(text, err) { var m = $('msg'); m.textContent = text || ''; m.className = err ? 'msg err' : 'msg'; }

  function errorText(r) {
    return r.json().then(function (b) { return (b && b.error && b.error.message) || ('HTTP ' + r.status); }, function () { return 'HTTP ' + r.status; });
  }

  function poll() {
    clearTimeout(timer);
    fetch(base + '/info', { cache: 'no-store' }).then(function (r) {
      if (!r.ok) return errorText(r).then(function (t) { msg(t, true); });
      return r.json().then(function (s) { apply(s); if ($('msg').className === 'msg err') msg(''); });
    }).catch(function () { msg('Connection problem \\u2014 retrying\\u2026', true); })
      .then(function () { timer = setTimeout(poll, 2000); });
  }

  $('end').addEventListener('click', function () {
    if (!last || !confirm('End "' + last.title + '" now? Every caller is hung up and the archive is built.')) return;
    $('end').disabled = true;
    msg('Ending\\u2026');
    fetch(base + '/end', { method: 'POST', cache: 'no-store' }).then(function (r) {
      if (!r.ok) return errorText(r).then(function (t) { msg('Could not end the event: ' + t, true); $('end').disabled = false; });
      return r.json().then(function (s) { msg('The event has ended.'); apply(s); });
    }).catch(function () { msg('Could not reach the server; try again.', true); $('end').disabled = false; });
  });

  poll();
})();
`;

/** The host page for one event; `title` is a placeholder until the first `info` poll. */
export function renderHostPage(o: { title: string; eventId: string; nonce: string }): string {
  const title = escapeHtml(o.title);
  return `${pageHead(`Host · ${title}`, STYLE)}
<body data-role="host" data-event="${escapeHtml(o.eventId)}">
<main>
<p class="brand">jitcast · host of event ${escapeHtml(o.eventId)}</p>
<h1 id="title">${title}</h1>
<div id="banner" class="banner" data-state="reserved" role="status" aria-live="polite"><span class="dot"></span><span id="state">Connecting…</span></div>
<dl>
<dt>Dial in</dt><dd>event ID <span class="mono" id="event-id">${escapeHtml(o.eventId)}</span>#, then your PIN <span class="mono" id="pin">…</span>#</dd>
<dt>Callers</dt><dd id="callers">—</dd>
<dt>Listeners</dt><dd id="listeners">—</dd>
<dt>Live streams</dt><dd id="streams">—</dd>
<dt>Attendee link</dt><dd><a id="attendee" href="#" rel="noreferrer" target="_blank">—</a></dd>
</dl>
<audio id="player" controls preload="none"></audio>
<div id="archive" hidden><dl><dt>Archive</dt><dd><a id="archive-link" href="#" rel="noreferrer" target="_blank"></a> · <a id="archive-m3u8" href="#" rel="noreferrer">HLS playlist</a></dd></dl></div>
<p id="archive-error" class="msg err"></p>
<div class="row"><button id="end" class="danger" type="button" disabled>End event</button></div>
<p id="msg" class="msg" role="alert"></p>
</main>
<script src="/vendor/hls.min.js"></script>
<script nonce="${escapeHtml(o.nonce)}">${SCRIPT}</script>
</body>
</html>
`;
}
