/**
 * The attendee player page and its error page: self-contained HTML with inline CSS and one
 * nonce-bearing inline script (no build step). The page polls `status.json` and plays
 * `live.m3u8` / `archive.m3u8` through hls.js from `/vendor/hls.min.js`.
 *
 * hls.js is used whenever `Hls.isSupported()`: Chromium also has a native HLS player that would
 * otherwise win and that neither fails over between redundant variants nor lets us refresh auth
 * codes (FIELD-NOTES "Chromium and hls.js").
 */
import { bannerCss, pageHead } from './page-kit.ts';

/** What the player page shows before its first status poll. */
export interface PlayerPageOptions {
  /** Event title (escaped here); for password-protected events pass a neutral placeholder. */
  title: string;
  eventId: string;
  /** CSP nonce of the inline script (see playerPageCsp). */
  nonce: string;
  /** Whether the token carries a password proof: the page asks for the password first. */
  needsPassword: boolean;
  /** Seconds between auth-code refreshes; keep well under the auth-code timeout. */
  codeRefreshS: number;
}

/** What the error page says. */
export interface ErrorPageOptions {
  heading: string;
  message: string;
}

/** Escapes text for HTML element content and double-quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * The Content-Security-Policy of the player page. Workers are off in the page's hls.js config, so
 * no `blob:` script or worker source is needed; `media-src blob:` is for MediaSource.
 */
export function playerPageCsp(nonce: string): string {
  return [
    "default-src 'self'",
    "media-src 'self' blob:",
    "style-src 'self' 'unsafe-inline'",
    `script-src 'self' 'nonce-${nonce}'`,
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** The Content-Security-Policy of the error page (no script at all). */
export function errorPageCsp(): string {
  return "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
}

const STYLE = `
:root{color-scheme:light dark;--bg:#f4f5f8;--card:#fff;--fg:#1b1f2a;--muted:#5d6475;--accent:#3452d1;
--live:#d62d3b;--ok:#1f8a4c;--warn:#b8730a;--off:#6b7280;--radius:16px}
@media (prefers-color-scheme:dark){:root{--bg:#0f1218;--card:#181c25;--fg:#e9ecf2;--muted:#9aa2b4;--accent:#7d93ff}}
*{box-sizing:border-box}
html,body{margin:0;padding:0}
body{min-height:100vh;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
display:flex;align-items:center;justify-content:center;padding:16px}
main{width:100%;max-width:560px;background:var(--card);border-radius:var(--radius);padding:28px 24px;
box-shadow:0 10px 30px rgba(0,0,0,.08)}
.brand{font-size:.8rem;letter-spacing:.08em;text-transform:uppercase;color:var(--muted);margin:0 0 6px}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 18px;overflow-wrap:anywhere}
${bannerCss('12px 14px')}
.banner[data-state=archive]{--state:var(--ok)}
.banner[data-state=ended]{--state:var(--warn)}
.banner[data-state=waiting],.banner[data-state=starting]{--state:var(--accent)}
.banner[data-state=cancelled],.banner[data-state=error]{--state:var(--off)}
.stage{margin-top:20px;display:flex;flex-direction:column;align-items:center;gap:14px}
#play{display:none;width:96px;height:96px;border-radius:50%;border:0;background:var(--accent);color:#fff;cursor:pointer;
box-shadow:0 6px 18px rgba(52,82,209,.35);align-items:center;justify-content:center}
#play.show{display:flex}
#play svg{width:40px;height:40px;margin-left:6px}
#play:focus-visible{outline:3px solid var(--fg);outline-offset:3px}
audio{width:100%}
audio.hidden{display:none}
.hint{color:var(--muted);font-size:.9rem;margin:0;text-align:center;min-height:1.4em}
form{display:none;flex-direction:column;gap:10px;margin-top:20px}
form.show{display:flex}
label{font-weight:600}
input[type=password]{font:inherit;padding:12px;border-radius:10px;border:1px solid color-mix(in srgb,var(--muted) 40%,transparent);
background:transparent;color:inherit}
button.primary{font:inherit;font-weight:600;padding:12px;border-radius:10px;border:0;background:var(--accent);color:#fff;cursor:pointer}
.err{color:var(--live);font-size:.9rem;min-height:1.2em;margin:0}
`;

// The page's script. Kept as plain ES2017 in a string: served inline under the CSP nonce.
const SCRIPT = `
(function () {
  'use strict';
  var body = document.body;
  var base = location.pathname.replace(/\\/+$/, '');
  var needsPassword = body.getAttribute('data-password') === '1';
  var refreshMs = Math.max(10, Number(body.getAttribute('data-code-refresh')) || 50) * 1000;
  var pwKey = 'jitcast-password:' + base;
  var password = '';
  try { password = needsPassword ? (sessionStorage.getItem(pwKey) || '') : ''; } catch (e) { password = ''; }

  var titleEl = document.getElementById('title');
  var banner = document.getElementById('banner');
  var bannerText = document.getElementById('banner-text');
  var hint = document.getElementById('hint');
  var audio = document.getElementById('player');
  var playBtn = document.getElementById('play');
  var form = document.getElementById('pw-form');
  var pwInput = document.getElementById('pw');
  var pwErr = document.getElementById('pw-err');

  var hls = null;        // the hls.js instance, when playing
  var mode = null;       // 'live' | 'archive' | null: what hls is loaded with
  var last = null;       // last status.json
  var codes = {};        // streamId -> freshest auth code (refreshed before the old one expires)
  var pollTimer = 0, refreshTimer = 0, reloadTimer = 0, stopTimer = 0;
  var locked = false;    // waiting for the password
  var variants = 1;      // streams live.m3u8 listed: more than one means a slow stream is worth leaving at once

  var TEXT = {
    waiting: 'Not started yet \\u2014 this page starts playing when the host dials in',
    starting: 'Starting \\u2014 the host is on the line, audio begins in a moment',
    live: 'Live',
    ended: 'Ended \\u2014 the archive will be ready shortly',
    archiveError: 'Ended \\u2014 the archive is delayed; this page will play it once it is ready',
    archive: 'Archive',
    cancelled: 'Cancelled',
    unknown: 'Connecting\\u2026',
    expired: 'This link is no longer valid'
  };

  function setBanner(state, text) {
    banner.setAttribute('data-state', state);
    bannerText.textContent = text;
  }
  function setHint(text) { hint.textContent = text || ''; }
  function showPlay(show) { playBtn.classList.toggle('show', !!show); }
  function authHeaders() { return password ? { 'X-Event-Password': password } : {}; }

  function isForbiddenForPassword(text) { return /PASSWORD/.test(text || ''); }

  function askPassword(wrong) {
    locked = true;
    destroyPlayer();
    form.classList.add('show');
    pwErr.textContent = wrong ? 'That password is not right. Please try again.' : '';
    setBanner('waiting', 'This event is protected by a password');
    setHint('');
    pwInput.focus();
  }

  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    password = pwInput.value;
    try { sessionStorage.setItem(pwKey, password); } catch (e) { /* private mode: keep it in memory */ }
    locked = false;
    form.classList.remove('show');
    poll();
  });

  playBtn.addEventListener('click', function () {
    var p = audio.play();
    if (p && p.catch) p.catch(function () { showPlay(true); });
  });
  audio.addEventListener('playing', function () { showPlay(false); setHint(''); });

  function tryPlay() {
    var p = audio.play();
    // Autoplay with sound is often blocked until the listener taps: offer the big button.
    if (p && p.catch) p.catch(function () { showPlay(true); setHint('Tap play to listen'); });
  }

  function destroyPlayer() {
    clearTimeout(reloadTimer); clearTimeout(stopTimer); clearInterval(refreshTimer);
    if (hls) { hls.destroy(); hls = null; }
    mode = null;
    audio.removeAttribute('src');
    showPlay(false);
  }

  // Rewrites a stream URL to the freshest auth code we hold for its stream, so a long listening
  // session outlives the code's timeout without the player noticing.
  function freshUrl(url) {
    var m = /^(.*\\/[sa]\\/)([^/?#]+)(\\/[^?#]*)\\?a=([^&#]*)(.*)$/.exec(url);
    if (!m || !codes[m[2]] || codes[m[2]] === m[4]) return url;
    return m[1] + m[2] + m[3] + '?a=' + codes[m[2]] + m[5];
  }

  function refreshCodes(kind) {
    var url = base + (kind === 'live' ? '/live.m3u8' : '/archive.m3u8');
    fetch(url, { headers: authHeaders(), cache: 'no-store' }).then(function (r) {
      return r.ok ? r.text() : '';
    }).then(function (text) {
      var re = /\\/[sa]\\/([^/?#\\s]+)\\/[^?#\\s]*\\?a=([^&#\\s]+)/g, m, n = 0;
      while ((m = re.exec(text))) { codes[m[1]] = m[2]; n++; }
      // Streams started since the player loaded reach hls.js by content steering: count them too.
      if (kind === 'live' && n > 0) variants = n;
    }).catch(function () { /* the next refresh or a reload will do */ });
  }

  function start(kind) {
    if (mode === kind && hls) return;
    destroyPlayer();
    mode = kind;
    var src = base + (kind === 'live' ? '/live.m3u8' : '/archive.m3u8');
    if (!(window.Hls && window.Hls.isSupported())) {
      // Safari on iOS has no MediaSource: its native HLS player is the only way (no password header there).
      if (audio.canPlayType('application/vnd.apple.mpegurl')) {
        audio.src = src;
        if (kind === 'live') tryPlay(); else showPlay(true);
      } else {
        setHint('This browser cannot play this stream.');
      }
      return;
    }
    var cfg = {
      enableWorker: false, // the page's CSP allows no blob: workers
      xhrSetup: function (xhr, url) {
        var u = freshUrl(url);
        xhr.open('GET', u, true);
        if (password && /\\/((live|archive)\\.m3u8|steering\\.json)(\\?|$)/.test(u)) xhr.setRequestHeader('X-Event-Password', password);
      }
    };
    if (kind === 'live') {
      // A redundant stream whose playlist stops growing must make hls.js fail over, not stall (FIELD-NOTES).
      cfg.liveMaxUnchangedPlaylistRefresh = 3;
      cfg.manifestLoadingMaxRetry = 2;
      // Redundant streams (issue 4): when a voice node dies, its stream answers 404 only once the
      // gateway's fetch from that node times out (3 s) or monitoring drops it. hls.js (1.5+) moves to
      // the other identical variant (a Pathway) on a 404 at once, but retries a timeout on the same
      // one. So: give up on a playlist or segment after 1.5 s without a first byte, and while
      // live.m3u8 lists another stream move on instead of retrying. And start only once 3 segments
      // are listed (hls.js then starts 3 segments behind live, its default), so the buffer outlasts
      // the failover: a player started on a 1-segment playlist plays at the live edge with ~1 s of
      // buffer and stalls.
      cfg.initialLiveManifestSize = 3;
      var leaveIfRedundant = function (retryConfig, retryCount, isTimeout, response, retry) {
        // The steering manifest's priority lists the streams live now (those started since included).
        var live = hls && hls.pathwayPriority ? hls.pathwayPriority.length : variants;
        return isTimeout && Math.max(live, variants) > 1 ? false : retry;
      };
      var policy = function (maxLoadTimeMs, retries) {
        return { default: {
          maxTimeToFirstByteMs: 1500,
          maxLoadTimeMs: maxLoadTimeMs,
          timeoutRetry: { maxNumRetry: retries, retryDelayMs: 0, maxRetryDelayMs: 0, shouldRetry: leaveIfRedundant },
          errorRetry: { maxNumRetry: retries, retryDelayMs: 1000, maxRetryDelayMs: 8000 }
        } };
      };
      cfg.playlistLoadPolicy = policy(8000, 2);
      cfg.fragLoadPolicy = policy(20000, 4);
    }
    // Support: ?debug=1 on the page URL logs hls.js's decisions to the browser console.
    if (/[?&]debug=1(&|$)/.test(location.search)) cfg.debug = true;
    var h = new window.Hls(cfg);
    hls = h;
    h.on(window.Hls.Events.ERROR, function (evt, data) {
      if (!data || !data.fatal || hls !== h) return;
      if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) { h.recoverMediaError(); return; }
      var again = mode;
      destroyPlayer();
      clearTimeout(reloadTimer);
      // Every redundant stream failed (or the codes expired): fetch a fresh master after a second.
      reloadTimer = setTimeout(function () {
        if (again === 'live' && last && last.live && !locked) start('live');
        else if (again === 'archive' && last && last.archiveReady && !locked) start('archive');
      }, 1000);
    });
    h.on(window.Hls.Events.MANIFEST_LOADED, function (evt, data) {
      variants = data && data.levels ? data.levels.length : 1;
    });
    h.on(window.Hls.Events.MANIFEST_PARSED, function () {
      if (kind === 'live') tryPlay(); else showPlay(audio.paused);
    });
    h.loadSource(src);
    h.attachMedia(audio);
    refreshTimer = setInterval(function () { refreshCodes(kind); }, refreshMs);
  }

  // When the event stops being live, play out what is buffered (listeners run seconds behind) before stopping.
  function stopLiveSoon() {
    if (mode !== 'live' || stopTimer) return;
    var ahead = 0;
    try { if (audio.buffered.length) ahead = audio.buffered.end(audio.buffered.length - 1) - audio.currentTime; } catch (e) { ahead = 0; }
    stopTimer = setTimeout(function () { stopTimer = 0; if (mode === 'live' && !(last && last.live)) destroyPlayer(); },
      Math.max(0, Math.min(ahead, 30)) * 1000 + 500);
  }

  function apply(s) {
    last = s;
    if (s.title) { titleEl.textContent = s.title; document.title = s.title; }
    if (s.status === 'cancelled') { destroyPlayer(); setBanner('cancelled', TEXT.cancelled); setHint('This event was cancelled.'); return; }
    if (s.live) { clearTimeout(stopTimer); stopTimer = 0; setBanner('live', TEXT.live); start('live'); return; }
    if (mode === 'live') stopLiveSoon();
    if (s.archiveReady) {
      setBanner('archive', TEXT.archive);
      if (mode !== 'live') { start('archive'); if (audio.paused) setHint('Press play to listen to the recording'); }
      return;
    }
    if (s.status === 'reserved') { setBanner('waiting', TEXT.waiting); setHint(s.startsAt ? 'Scheduled for ' + new Date(s.startsAt).toLocaleString() : ''); return; }
    if (s.status === 'live') { setBanner('starting', TEXT.starting); setHint(''); return; }
    if (s.status === 'ended' || s.status === 'archiving' || s.status === 'archived') { setBanner('ended', TEXT.ended); if (mode !== 'live') setHint(''); return; }
    if (s.status === 'archive-error') { setBanner('ended', TEXT.archiveError); if (mode !== 'live') setHint(''); return; }
    if (!mode) setBanner('waiting', TEXT.unknown);
  }

  function schedule() { clearTimeout(pollTimer); pollTimer = setTimeout(poll, 2500); }

  function poll() {
    if (locked) return;
    fetch(base + '/status.json', { headers: authHeaders(), cache: 'no-store' }).then(function (r) {
      if (r.status === 403) {
        return r.text().then(function (t) {
          if (needsPassword || isForbiddenForPassword(t)) { askPassword(!!password); return; }
          destroyPlayer(); setBanner('error', TEXT.expired); setHint('Ask the organizer for a new link.');
          locked = true;
        });
      }
      if (!r.ok) throw new Error('status.json answered ' + r.status);
      return r.json().then(apply);
    }).catch(function () {
      setHint('Connection problem \\u2014 retrying\\u2026');
    }).then(function () { if (!locked) schedule(); });
  }

  if (needsPassword && !password) askPassword(false); else poll();
})();
`;

const PLAY_ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path fill="currentColor" d="M6 4l15 8-15 8z"/></svg>';

/** The player page for one event (the title is escaped; the script runs under `nonce`). */
export function renderPlayerPage(o: PlayerPageOptions): string {
  const title = escapeHtml(o.title);
  const nonce = escapeHtml(o.nonce);
  return `${pageHead(title, STYLE)}
<body data-event="${escapeHtml(o.eventId)}" data-password="${o.needsPassword ? '1' : '0'}" data-code-refresh="${Math.max(10, Math.floor(o.codeRefreshS))}">
<main>
<p class="brand">jitcast · event ${escapeHtml(o.eventId)}</p>
<h1 id="title">${title}</h1>
<div id="banner" class="banner" data-state="waiting" role="status" aria-live="polite"><span class="dot"></span><span id="banner-text">Connecting…</span></div>
<form id="pw-form" autocomplete="off">
<label for="pw">Password</label>
<input id="pw" type="password" required autocomplete="current-password">
<p id="pw-err" class="err" role="alert"></p>
<button class="primary" type="submit">Listen</button>
</form>
<div class="stage">
<button id="play" type="button" aria-label="Play">${PLAY_ICON}</button>
<audio id="player" controls preload="none"></audio>
<p id="hint" class="hint"></p>
</div>
</main>
<script src="/vendor/hls.min.js"></script>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`;
}

/** A friendly error page (bad or expired link, unknown event); both texts are escaped. */
export function renderErrorPage(o: ErrorPageOptions): string {
  return `${pageHead(escapeHtml(o.heading), STYLE)}
<body>
<main>
<p class="brand">jitcast</p>
<h1>${escapeHtml(o.heading)}</h1>
<div class="banner" data-state="error"><span class="dot"></span><span>${escapeHtml(o.message)}</span></div>
</main>
</body>
</html>
`;
}
