/**
 * The event manager (DESIGN.md "event manager"): one self-contained page (inline CSS and one
 * nonce-bearing inline script, no build step, nothing from the internet) served at `/dashboard`.
 * It asks for an operator API key once (kept in sessionStorage for the tab), then polls
 * `GET /api/cluster` and `GET /api/events` about every 1.5 s and shows, live: every event with its
 * state, callers, listeners and streams; every node, voice server, channel, encoder port and live
 * stream; pool health and evictions; the archive leader; recent errors. Actions: end an event,
 * clear an archive error flag, drain or resume a voice server.
 *
 * Rows are keyed and cells are only rewritten when their content changes, so nothing jumps or
 * loses focus between polls; destructive buttons ask for a second click instead of a modal.
 */
import { listenersTextJs, pageHead } from './page-kit.ts';

/** Content-Security-Policy of the dashboard: its own script by nonce, calls to this origin only. */
export function dashboardCsp(nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    "style-src 'unsafe-inline'",
    "connect-src 'self'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

const STYLE = `
:root{color-scheme:light dark;--bg:#f3f4f7;--panel:#fff;--fg:#1a1e27;--muted:#6a7183;--line:#e2e5ec;--head:#f7f8fa;
--accent:#3452d1;--ok:#1d8a4a;--live:#d12f3c;--warn:#b86e00;--bad:#c62828;--off:#7a8190;--info:#2f6fd6}
@media (prefers-color-scheme:dark){:root{--bg:#0e1117;--panel:#161a22;--fg:#e6e9ef;--muted:#8d95a7;--line:#262c38;--head:#1b2029;
--accent:#7d93ff;--ok:#3ccf7a;--live:#ff5c68;--warn:#f0a63a;--bad:#ff6b6b;--off:#8a92a3;--info:#6ea4ff}}
*{box-sizing:border-box}
html,body{margin:0}
body{background:var(--bg);color:var(--fg);font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-variant-numeric:tabular-nums}
header{position:sticky;top:0;z-index:2;display:flex;align-items:center;gap:16px;padding:8px 16px;background:var(--panel);border-bottom:1px solid var(--line)}
header h1{font-size:14px;margin:0;font-weight:700;letter-spacing:.02em}
header h1 span{color:var(--muted);font-weight:500}
.conn{display:flex;align-items:center;gap:6px;color:var(--muted);min-width:210px}
.dot{width:8px;height:8px;border-radius:50%;background:var(--off);flex:none}
.conn[data-state=ok] .dot{background:var(--ok)}
.conn[data-state=stale] .dot{background:var(--warn)}
.conn[data-state=down] .dot{background:var(--bad)}
.spacer{flex:1}
#flash{min-width:0;flex:0 1 520px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;color:var(--muted)}
#flash.ok{color:var(--ok)}#flash.err{color:var(--bad)}
main{padding:12px 16px;display:grid;gap:12px;grid-template-columns:repeat(12,minmax(0,1fr))}
section{background:var(--panel);border:1px solid var(--line);border-radius:8px;min-width:0;grid-column:span 12}
section.half{grid-column:span 6}
@media (max-width:1100px){section.half{grid-column:span 12}}
section h2{margin:0;padding:8px 12px;font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);display:flex;gap:10px;align-items:center;border-bottom:1px solid var(--line)}
section h2 .count{color:var(--fg);font-weight:700}
section h2 .tools{margin-left:auto;display:flex;gap:8px;align-items:center;text-transform:none;letter-spacing:0}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:1px;background:var(--line)}
.tile{background:var(--panel);padding:8px 12px;min-height:54px}
.tile b{display:block;font-size:20px;line-height:1.2}
.tile small{color:var(--muted)}
.tile.bad b{color:var(--bad)}.tile.warn b{color:var(--warn)}.tile.live b{color:var(--live)}
.scroll{overflow:auto;max-height:420px}
table{width:100%;border-collapse:collapse;table-layout:fixed}
th{position:sticky;top:0;background:var(--head);text-align:left;font-weight:600;color:var(--muted);font-size:11px;text-transform:uppercase;letter-spacing:.04em}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);white-space:nowrap;overflow:hidden;text-overflow:ellipsis;height:27px}
tr:last-child td{border-bottom:0}
td.empty{color:var(--muted);text-align:center}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.muted{color:var(--muted)}
.pill{display:inline-block;padding:1px 8px;border-radius:999px;font-size:11px;font-weight:700;background:color-mix(in srgb,var(--c) 15%,transparent);color:var(--c);--c:var(--off)}
.s-live,.s-busy,.s-running{--c:var(--live)}
.s-reserved,.s-ringing,.s-event-id,.s-pin,.s-verifying,.s-info{--c:var(--info)}
.s-ended,.s-archiving,.s-stopping,.s-closing,.s-restarting,.s-suspended,.s-maintenance,.s-draining,.s-warn{--c:var(--warn)}
.s-archived,.s-in-service,.s-healthy,.s-yes,.s-leader,.s-pass,.s-connected{--c:var(--ok)}
.s-archive-error,.s-evicted,.s-out-of-service,.s-down,.s-error,.s-fatal,.s-fail,.s-no{--c:var(--bad)}
.s-cancelled,.s-drained{--c:var(--off)}
button{font:inherit;font-size:12px;padding:2px 10px;border-radius:6px;border:1px solid var(--line);background:var(--panel);color:var(--fg);cursor:pointer;height:22px}
button:hover:not([disabled]){border-color:var(--accent)}
button[disabled]{opacity:.4;cursor:default}
button.danger{color:var(--bad);border-color:color-mix(in srgb,var(--bad) 40%,var(--line))}
button.armed{background:var(--bad);color:#fff;border-color:var(--bad)}
td.act{overflow:visible}
td.act button+button{margin-left:6px}
input[type=search]{font:inherit;font-size:12px;padding:2px 8px;border-radius:6px;border:1px solid var(--line);background:var(--bg);color:var(--fg);width:200px;height:22px}
label.chk{display:flex;gap:4px;align-items:center;color:var(--muted)}
.bar{display:inline-block;vertical-align:middle;width:60px;height:6px;border-radius:3px;background:var(--line);overflow:hidden;margin-right:6px}
.bar i{display:block;height:100%;background:var(--accent)}
#login{position:fixed;inset:0;z-index:5;display:none;align-items:center;justify-content:center;background:rgba(10,12,18,.55)}
#login.show{display:flex}
#login form{background:var(--panel);border-radius:10px;padding:20px;width:min(420px,92vw);display:flex;flex-direction:column;gap:10px;box-shadow:0 12px 40px rgba(0,0,0,.3)}
#login h2{margin:0;font-size:16px}
#login input{font:inherit;padding:8px;border-radius:6px;border:1px solid var(--line);background:var(--bg);color:var(--fg)}
#login button{height:32px;background:var(--accent);color:#fff;border:0;font-weight:600}
#login p{margin:0;color:var(--muted)}
#login .err{color:var(--bad);min-height:1.2em}
`;

// The page's script: plain ES2017 in a string, served inline under the CSP nonce.
const SCRIPT = `
(function () {
  'use strict';
  var KEY_STORE = 'jitcast-operator-key';
  var POLL_MS = 1500;
  var MAX_EVENT_ROWS = 300;
  var key = '';
  try { key = sessionStorage.getItem(KEY_STORE) || ''; } catch (e) { key = ''; }
  var $ = function (id) { return document.getElementById(id); };
  var cluster = null, events = [], details = {}, lastOk = 0, pollTimer = 0, polling = false, tick = 0;
  var armed = {};   // action key -> timeout: destructive buttons need a second click within 4 s

  // ---- helpers ---------------------------------------------------------------------------
  function esc(s) { return String(s === undefined || s === null ? '' : s).replace(/[&<>"']/g, function (c) { return '&#' + c.charCodeAt(0) + ';'; }); }
  function rel(iso) {
    if (!iso) return '';
    var t = Date.parse(iso); if (isNaN(t)) return '';
    var d = Math.round((Date.now() - t) / 1000), fut = d < 0; d = Math.abs(d);
    var s = d < 60 ? d + ' s' : d < 3600 ? Math.floor(d / 60) + ' min' : d < 86400 ? Math.floor(d / 3600) + ' h ' + Math.floor(d % 3600 / 60) + ' min' : Math.floor(d / 86400) + ' d';
    return fut ? 'in ' + s : s + ' ago';
  }
  function cls(s) { return 's-' + String(s || '').toLowerCase().replace(/[^a-z0-9]+/g, '-'); }
  function pill(text, state) { return { h: '<span class="pill ' + cls(state || text) + '">' + esc(text) + '</span>', sig: 'p' + text + (state || '') }; }
  function time(iso) { return { t: rel(iso), title: iso || '' }; }
  ${listenersTextJs({ nowSuffix: '', separator: ' \u00b7 ' })}
  function flash(text, kind) { var f = $('flash'); f.textContent = text; f.className = kind || ''; f.title = text; }

  // A cell spec: a string, or {t: text, h: html, title, c: class, btns: [{label, act, danger, disabled, title}]}.
  function cellSig(c) {
    if (typeof c === 'string') return 's' + c;
    return JSON.stringify(c) + (c.btns ? c.btns.map(function (b) { return armed[b.act] ? '1' : '0'; }).join('') : '');
  }
  function fillCell(td, c) {
    td.className = ''; td.removeAttribute('title');
    if (typeof c === 'string') { td.textContent = c; td.title = c; return; }
    if (c.c) td.className = c.c;
    if (c.btns) {
      td.className = (td.className + ' act').trim();
      td.textContent = '';
      c.btns.forEach(function (b) {
        var btn = document.createElement('button');
        btn.type = 'button'; btn.textContent = armed[b.act] ? b.confirm || 'Confirm?' : b.label;
        if (b.danger) btn.className = armed[b.act] ? 'danger armed' : 'danger';
        btn.disabled = !!b.disabled; if (b.title) btn.title = b.title;
        btn.setAttribute('data-act', b.act);
        td.appendChild(btn);
      });
      return;
    }
    if (c.h !== undefined) td.innerHTML = c.h; else td.textContent = c.t === undefined ? '' : c.t;
    if (c.title) td.title = c.title; else if (c.t) td.title = c.t;
  }
  // Keyed rows: cells are rewritten only when their content changed, so nothing jumps or loses focus.
  function sync(tbody, items, keyOf, render, cols, emptyText) {
    var seen = {};
    var rows = tbody.__rows || (tbody.__rows = {});
    if (items.length === 0) {
      if (!tbody.__empty) { tbody.textContent = ''; tbody.__rows = {}; var tr = document.createElement('tr'); var td = document.createElement('td'); td.colSpan = cols; td.className = 'empty'; td.textContent = emptyText || 'none'; tr.appendChild(td); tbody.appendChild(tr); tbody.__empty = true; }
      return;
    }
    if (tbody.__empty) { tbody.textContent = ''; tbody.__empty = false; rows = tbody.__rows = {}; }
    var prev = null;
    items.forEach(function (it) {
      var k = keyOf(it); seen[k] = true;
      var tr = rows[k];
      var cells = render(it);
      if (!tr) { tr = document.createElement('tr'); tr.setAttribute('data-key', k); cells.forEach(function () { tr.appendChild(document.createElement('td')); }); rows[k] = tr; }
      if (it.__attrs) for (var a in it.__attrs) tr.setAttribute(a, it.__attrs[a]);
      cells.forEach(function (c, i) {
        var td = tr.children[i]; var sig = cellSig(c);
        if (td.__sig !== sig) { td.__sig = sig; fillCell(td, c); }
      });
      var want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== tr) tbody.insertBefore(tr, want);
      prev = tr;
    });
    Object.keys(rows).forEach(function (k) { if (!seen[k]) { rows[k].remove(); delete rows[k]; } });
  }

  // ---- API -------------------------------------------------------------------------------
  function api(method, path) {
    return fetch(path, { method: method, cache: 'no-store', headers: { Authorization: 'Bearer ' + key, Accept: 'application/json' } }).then(function (r) {
      if (r.status === 401) { askKey('That API key was refused.'); throw new Error('unauthorized'); }
      return r.text().then(function (t) {
        var body; try { body = t ? JSON.parse(t) : null; } catch (e) { body = null; }
        if (!r.ok) throw new Error((body && body.error && (body.error.code + ': ' + body.error.message)) || ('HTTP ' + r.status));
        return body;
      });
    });
  }

  function askKey(why) {
    key = '';
    try { sessionStorage.removeItem(KEY_STORE); } catch (e) { /* private mode */ }
    clearTimeout(pollTimer);
    $('login-err').textContent = why || '';
    $('login').classList.add('show');
    $('key').focus();
  }
  $('login-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    key = $('key').value.trim();
    if (!key) return;
    try { sessionStorage.setItem(KEY_STORE, key); } catch (e) { /* keep it in memory */ }
    $('login').classList.remove('show');
    $('key').value = '';
    poll();
  });
  $('logout').addEventListener('click', function () { askKey(''); });

  // ---- polling ---------------------------------------------------------------------------
  function poll() {
    clearTimeout(pollTimer);
    if (!key || polling) return;
    polling = true; tick++;
    Promise.all([api('GET', '/api/cluster'), api('GET', '/api/events')]).then(function (res) {
      cluster = res[0];
      events = Array.isArray(res[1]) ? res[1] : (res[1] && res[1].events) || [];
      lastOk = Date.now();
      // Listener counts come from the usage report: ask for the live events (a few) every other poll;
      // an event that ended keeps the last figures seen.
      var live = events.filter(function (e) { return e.status === 'live'; }).slice(0, 20);
      if (tick % 2 === 1 && live.length) {
        return Promise.all(live.map(function (e) {
          return api('GET', '/api/events/' + e.eventId + '/report').then(function (d) { details[e.eventId] = d; }, function () { /* next time */ });
        }));
      }
    }).then(function () { render(); }, function (err) {
      if (err && err.message === 'unauthorized') return;
      setConn();
      flash('Polling failed: ' + (err && err.message || err), 'err');
    }).then(function () {
      polling = false;
      if (key) pollTimer = setTimeout(poll, POLL_MS);
    });
  }

  function setConn() {
    var c = $('conn');
    if (!lastOk) { c.setAttribute('data-state', 'down'); $('conn-text').textContent = 'not connected'; return; }
    var age = (Date.now() - lastOk) / 1000;
    c.setAttribute('data-state', age < 5 ? 'ok' : age < 15 ? 'stale' : 'down');
    $('conn-text').textContent = (age < 5 ? 'live' : 'stale') + ' \\u00b7 updated ' + (age < 1 ? 'just now' : Math.round(age) + ' s ago');
  }
  setInterval(function () { setConn(); if (cluster) renderTimes(); }, 1000);

  // ---- rendering -------------------------------------------------------------------------
  var STATE_ORDER = { live: 0, 'archive-error': 1, ended: 2, archiving: 3, reserved: 4, archived: 5, cancelled: 6 };
  function sortedEvents() {
    var q = $('filter').value.trim().toLowerCase(), hide = $('hide-done').checked;
    return events.filter(function (e) {
      if (hide && (e.status === 'archived' || e.status === 'cancelled')) return false;
      return !q || e.eventId.indexOf(q) >= 0 || String(e.title || '').toLowerCase().indexOf(q) >= 0 || e.status.indexOf(q) >= 0;
    }).sort(function (a, b) {
      var d = (STATE_ORDER[a.status] || 9) - (STATE_ORDER[b.status] || 9);
      return d || String(b.updatedAt || b.createdAt).localeCompare(String(a.updatedAt || a.createdAt));
    });
  }

  function eventSince(e) {
    if (e.status === 'live') return time(e.liveAt);
    if (e.endedAt) return time(e.endedAt);
    if (e.status === 'reserved' && e.startsAt) return time(e.startsAt);
    return time(e.createdAt);
  }

  function renderEvents() {
    var list = sortedEvents();
    var shown = list.slice(0, MAX_EVENT_ROWS);
    $('events-count').textContent = list.length + (list.length > shown.length ? ' (first ' + shown.length + ' shown)' : '');
    shown.forEach(function (e) { e.__attrs = { 'data-event': e.eventId, 'data-status': e.status }; });
    sync($('events'), shown, function (e) { return e.eventId; }, function (e) {
      var d = details[e.eventId] || {};
      var listeners = e.listeners !== undefined ? e.listeners : d.listeners;
      var streams = e.streams || [];
      var btns = [{ label: 'End', act: 'end:' + e.eventId, danger: true, confirm: 'End now?', disabled: e.status !== 'live', title: 'End the event now: callers are hung up, the archive follows' }];
      if (e.status === 'archive-error') btns.push({ label: 'Clear error', act: 'retry:' + e.eventId, title: 'Clear the archive error flag: the archive leader builds it again' });
      return [
        { h: '<span class="mono">' + esc(e.eventId) + '</span>', sig: e.eventId },
        { t: e.title, title: e.title + (e.archiveError ? ' \\u2014 archive error: ' + e.archiveError : '') },
        { h: '<span class="pill ' + cls(e.status) + '">' + esc(e.status) + '</span>', c: 'state', title: e.archiveError || e.status, sig: e.status },
        String(e.callers === undefined ? '\\u2014' : e.callers),
        listenersText(listeners),
        { t: streams.length ? streams.length + ' \\u00b7 ' + streams.map(function (s) { return s.nodeId + ':' + s.port; }).join(', ') : '0', title: streams.map(function (s) { return s.streamId; }).join('\\n') },
        eventSince(e),
        { btns: btns }
      ];
    }, 8, events.length ? 'no event matches' : 'no events yet');
  }

  function renderCluster() {
    var c = cluster;
    var leader = c.archiveLeader || '';
    var vsByNode = {};
    (c.voiceServers || []).forEach(function (v) { vsByNode[v.nodeId] = v; });
    var assets = (c.pools && c.pools.assets) || [];
    var evicted = assets.filter(function (a) { return !a.healthy; });
    var liveEvents = events.filter(function (e) { return e.status === 'live'; });
    var errEvents = events.filter(function (e) { return e.status === 'archive-error'; });
    var channels = [];
    (c.voiceServers || []).forEach(function (v) { (v.channels || []).forEach(function (ch) { ch.__node = v.nodeId; channels.push(ch); }); });
    var recent = (c.recentErrors || []);

    $('leader').textContent = leader || 'none';
    $('leader').className = 'pill ' + (leader ? 's-leader' : 's-error');
    $('t-live').textContent = liveEvents.length;
    $('t-callers').textContent = channels.filter(function (ch) { return ch.phase === 'live'; }).length;
    $('t-streams').textContent = (c.streams || []).length;
    $('t-nodes').textContent = (c.nodes || []).filter(function (n) { return n.available; }).length + ' / ' + (c.nodes || []).length;
    $('t-voice').textContent = (c.voiceServers || []).filter(function (v) { return v.state === 'in-service'; }).length + ' / ' + (c.voiceServers || []).length;
    $('t-evicted').textContent = evicted.length;
    $('t-evicted').parentNode.className = 'tile' + (evicted.length ? ' bad' : '');
    $('t-archive-err').textContent = errEvents.length;
    $('t-archive-err').parentNode.className = 'tile' + (errEvents.length ? ' bad' : '');
    $('t-errors').textContent = recent.length + (c.errors && c.errors.length ? ' + ' + c.errors.length : '');
    $('t-errors').parentNode.className = 'tile' + (recent.some(function (r) { return r.level !== 'warn'; }) || (c.errors || []).length ? ' bad' : recent.length ? ' warn' : '');

    (c.nodes || []).forEach(function (n) { n.__attrs = { 'data-node': n.id }; });
    $('nodes-count').textContent = (c.nodes || []).length;
    sync($('nodes'), (c.nodes || []).slice().sort(function (a, b) { return a.id < b.id ? -1 : 1; }), function (n) { return n.id; }, function (n) {
      var roles = n.roles ? (n.roles.length >= 10 ? 'all roles' : n.roles.join(', ')) : '';
      return [
        { h: '<span class="mono">' + esc(n.id) + '</span>' + (n.local ? ' <span class="muted">(this gateway)</span>' : ''), sig: n.id + n.local, title: n.id },
        n.dataCenter || '',
        { t: roles, title: (n.roles || []).join(', ') },
        n.address || '',
        n.available ? pill('up', 'yes') : pill('down', 'down'),
        n.id === leader ? pill('archive leader', 'leader') : ''
      ];
    }, 6);

    (c.voiceServers || []).forEach(function (v) { v.__attrs = { 'data-voice': v.nodeId, 'data-state': v.state || '' }; });
    $('voice-count').textContent = (c.voiceServers || []).length;
    sync($('voice'), c.voiceServers || [], function (v) { return v.nodeId; }, function (v) {
      var p = v.ports || {};
      var state = v.state === 'maintenance' ? (v.drained ? 'drained' : 'draining') : v.state;
      var used = p.capacity ? Math.round(100 * (p.busy || 0) / p.capacity) : 0;
      var cs = v.channelStates;
      return [
        { h: '<span class="mono">' + esc(v.nodeId) + '</span>', sig: v.nodeId },
        v.dataCenter || '',
        { t: v.sip ? v.sip.host + ':' + v.sip.port : '', c: 'mono' },
        pill(state || '?', state),
        { t: v.portRange ? v.portRange.min + '\\u2013' + v.portRange.max : '', c: 'mono' },
        { h: '<span class="bar"><i style="width:' + used + '%"></i></span>' + esc((p.busy || 0) + ' busy \\u00b7 ' + (p.available || 0) + ' free \\u00b7 ' + (p.resting || 0) + ' resting'), sig: 'b' + used + (p.busy || 0) + '/' + (p.available || 0) + '/' + (p.resting || 0) },
        { t: cs ? cs.inService + ' in service (' + cs.busy + ' busy), ' + cs.maintenance + ' maint., ' + cs.outOfService + ' out' : String((v.channels || []).length) },
        { btns: [
          { label: 'Drain', act: 'drain:' + v.nodeId, danger: true, confirm: 'Drain?', disabled: v.state === 'maintenance', title: 'No new calls; busy channels finish' },
          { label: 'Resume', act: 'resume:' + v.nodeId, disabled: v.state !== 'maintenance', title: 'Back into service' }
        ] }
      ];
    }, 8, 'no voice server');

    channels.forEach(function (ch) { ch.__attrs = { 'data-channel': ch.channelId || '' }; });
    $('channels-count').textContent = channels.length;
    sync($('channels'), channels, function (ch) { return ch.__node + '/' + ch.channelId; }, function (ch) {
      return [
        { t: ch.__node, c: 'mono' }, { t: String(ch.port), c: 'mono' }, pill(ch.phase, ch.phase), { t: ch.eventId || '', c: 'mono' },
        { t: ch.caller || '', title: ch.caller }, ch.codec || '', time(ch.since),
        { t: ch.stats ? ch.stats.rtpIn + ' in \\u00b7 ' + ch.stats.rtpOut + ' out' : '' }
      ];
    }, 8, 'no call in progress');

    var ports = c.encoderPorts || [];
    $('ports-count').textContent = ports.length;
    sync($('ports'), ports, function (p) { return p.nodeId + '/' + p.rtpPort; }, function (p) {
      return [{ t: p.nodeId, c: 'mono' }, { t: String(p.rtpPort), c: 'mono' }, { t: p.eventId || '', c: 'mono' }, { t: p.streamId || '', c: 'mono', title: p.streamId }, pill(p.state || '?', p.state), time(p.startedAt), time(p.lastRtpAt), String(p.restarts || 0)];
    }, 8, 'no encoder running');

    var streams = c.streams || [];
    streams.forEach(function (s) { s.__attrs = { 'data-stream': s.streamId, 'data-event': s.eventId }; });
    $('streams-count').textContent = streams.length;
    sync($('streams'), streams, function (s) { return s.streamId; }, function (s) {
      return [{ t: s.eventId, c: 'mono' }, { t: s.streamId, c: 'mono', title: s.streamId }, { t: s.nodeId, c: 'mono' }, s.dataCenter || '', { t: String(s.port), c: 'mono' }, time(s.startedAt), time(s.lastSeenAt)];
    }, 7, 'no live stream');

    $('pools-note').textContent = c.pools ? (c.pools.intervalS ? 'tested every ' + c.pools.intervalS + ' s' + (c.pools.tester ? ' by ' + c.pools.tester : '') : 'health tests off') : 'no monitoring';
    $('pools-count').textContent = assets.length + (evicted.length ? ' \\u00b7 ' + evicted.length + ' evicted' : '');
    sync($('pools'), assets.slice().sort(function (a, b) { return (a.healthy - b.healthy) || (a.asset + a.nodeId < b.asset + b.nodeId ? -1 : 1); }), function (a) { return a.asset + '/' + a.nodeId; }, function (a) {
      return [a.asset, { t: a.nodeId, c: 'mono' }, a.healthy ? pill('member', 'healthy') : pill('evicted', 'evicted'), time(a.since),
        { t: (a.lastOutcome || '') + (a.lastMs !== undefined ? ' \\u00b7 ' + a.lastMs + ' ms' : ''), title: a.lastTestAt }, (a.passes || 0) + ' / ' + (a.failures || 0), { t: a.reason || '', title: a.reason || '' }];
    }, 7, 'no pooled asset');

    var errs = recent.map(function (r) { return { at: r.at, nodeId: r.nodeId, level: r.level, module: r.module, message: r.message, count: r.count, k: r.nodeId + r.at + r.message }; });
    (c.errors || []).forEach(function (e) { errs.unshift({ at: c.generatedAt, nodeId: e.nodeId, level: 'error', module: 'status: ' + e.action, message: e.message, count: 1, k: 'status' + e.nodeId + e.action }); });
    $('errors-count').textContent = errs.length;
    sync($('errors'), errs, function (r) { return r.k; }, function (r) {
      return [time(r.at), { t: r.nodeId, c: 'mono' }, pill(r.level, r.level), r.module, { t: r.message, title: r.message }, r.count > 1 ? '\\u00d7' + r.count : ''];
    }, 6, 'no warning or error heard since this gateway started');
  }

  // Relative times move every second without waiting for a poll.
  function renderTimes() { renderEvents(); renderCluster(); }

  function render() {
    setConn();
    renderEvents();
    renderCluster();
    document.body.setAttribute('data-ready', '1');
    document.body.setAttribute('data-polls', String(tick));
  }

  // ---- actions ---------------------------------------------------------------------------
  var ACTIONS = {
    end: function (id) { return api('POST', '/api/events/' + id + '/end').then(function (e) { return 'Event ' + id + ' is ' + e.status; }); },
    retry: function (id) { return api('POST', '/api/events/' + id + '/archive/retry').then(function (e) { return 'Archive error of ' + id + ' cleared: ' + e.status; }); },
    drain: function (n) { return api('POST', '/api/cluster/voice-servers/' + encodeURIComponent(n) + '/drain').then(function (v) { return 'Voice server ' + n + ' is ' + v.state + (v.drained ? ' (drained)' : ' (draining)'); }); },
    resume: function (n) { return api('POST', '/api/cluster/voice-servers/' + encodeURIComponent(n) + '/resume').then(function (v) { return 'Voice server ' + n + ' is ' + v.state; }); }
  };
  var NEEDS_CONFIRM = { end: true, drain: true };
  document.addEventListener('click', function (ev) {
    var btn = ev.target && ev.target.closest ? ev.target.closest('button[data-act]') : null;
    if (!btn || btn.disabled) return;
    var act = btn.getAttribute('data-act'), i = act.indexOf(':'), kind = act.slice(0, i), arg = act.slice(i + 1);
    if (NEEDS_CONFIRM[kind] && !armed[act]) {
      armed[act] = setTimeout(function () { delete armed[act]; if (cluster) render(); }, 4000);
      render();
      return;
    }
    clearTimeout(armed[act]); delete armed[act];
    btn.disabled = true;
    flash('Working\\u2026');
    ACTIONS[kind](arg).then(function (text) { flash(text, 'ok'); }, function (err) { flash(kind + ' ' + arg + ' failed: ' + err.message, 'err'); })
      .then(function () { poll(); });
  });
  $('filter').addEventListener('input', function () { if (cluster) renderEvents(); });
  $('hide-done').addEventListener('change', function () { if (cluster) renderEvents(); });

  setConn();
  if (key) poll(); else askKey('');
})();
`;

function table(id: string, cols: Array<[string, string]>): string {
  return `<div class="scroll"><table><colgroup>${cols.map(([, w]) => `<col style="width:${w}">`).join('')}</colgroup><thead><tr>${cols
    .map(([h]) => `<th>${h}</th>`)
    .join('')}</tr></thead><tbody id="${id}"></tbody></table></div>`;
}

/** The event manager page; its script runs under `nonce` (see dashboardCsp). */
export function renderDashboardPage(o: { nonce: string }): string {
  const nonce = o.nonce.replace(/[^A-Za-z0-9+/=]/g, '');
  return `${pageHead('jitcast · event manager', STYLE)}
<body>
<header>
<h1>jitcast <span>event manager</span></h1>
<div id="conn" class="conn" data-state="down"><span class="dot"></span><span id="conn-text">not connected</span></div>
<div>archive leader <span id="leader" class="pill">—</span></div>
<div class="spacer"></div>
<div id="flash" role="status" aria-live="polite"></div>
<button id="logout" type="button" title="Forget the API key in this tab">Change key</button>
</header>
<main>
<section>
<div class="tiles">
<div class="tile live"><b id="t-live">—</b><small>live events</small></div>
<div class="tile"><b id="t-callers">—</b><small>callers on the line</small></div>
<div class="tile"><b id="t-streams">—</b><small>live streams</small></div>
<div class="tile"><b id="t-nodes">—</b><small>nodes up</small></div>
<div class="tile"><b id="t-voice">—</b><small>voice servers in service</small></div>
<div class="tile"><b id="t-evicted">—</b><small>evicted from pools</small></div>
<div class="tile"><b id="t-archive-err">—</b><small>archive errors</small></div>
<div class="tile"><b id="t-errors">—</b><small>recent errors</small></div>
</div>
</section>
<section>
<h2>Events <span class="count" id="events-count">—</span>
<span class="tools"><input id="filter" type="search" placeholder="filter: ID, title, state" aria-label="Filter events">
<label class="chk"><input id="hide-done" type="checkbox">hide archived &amp; cancelled</label></span></h2>
${table('events', [['Event', '92px'], ['Title', '24%'], ['State', '110px'], ['Callers', '70px'], ['Listeners', '120px'], ['Streams', '22%'], ['Since', '110px'], ['', '170px']])}
</section>
<section class="half">
<h2>Nodes <span class="count" id="nodes-count">—</span></h2>
${table('nodes', [['Node', '30%'], ['DC', '60px'], ['Roles', '28%'], ['Address', '110px'], ['', '60px'], ['', '130px']])}
</section>
<section class="half">
<h2>Pools <span class="count" id="pools-count">—</span><span class="tools muted" id="pools-note"></span></h2>
${table('pools', [['Pool', '110px'], ['Node', '22%'], ['Member', '96px'], ['Since', '84px'], ['Last test', '130px'], ['Pass/fail', '78px'], ['Reason', '30%']])}
</section>
<section>
<h2>Voice servers <span class="count" id="voice-count">—</span></h2>
${table('voice', [['Node', '16%'], ['DC', '60px'], ['SIP', '130px'], ['State', '100px'], ['RTP ports', '110px'], ['Ports', '26%'], ['Channels', '24%'], ['', '150px']])}
</section>
<section class="half">
<h2>Channels <span class="count" id="channels-count">—</span></h2>
${table('channels', [['Node', '18%'], ['Port', '60px'], ['Phase', '110px'], ['Event', '84px'], ['Caller', '24%'], ['Codec', '60px'], ['Since', '80px'], ['RTP', '20%']])}
</section>
<section class="half">
<h2>Encoder ports <span class="count" id="ports-count">—</span></h2>
${table('ports', [['Node', '18%'], ['Port', '60px'], ['Event', '84px'], ['Stream', '26%'], ['State', '90px'], ['Started', '80px'], ['Last RTP', '80px'], ['Restarts', '70px']])}
</section>
<section>
<h2>Live streams <span class="count" id="streams-count">—</span></h2>
${table('streams', [['Event', '92px'], ['Stream', '34%'], ['Node', '18%'], ['DC', '60px'], ['Port', '70px'], ['Started', '100px'], ['Last seen', '100px']])}
</section>
<section>
<h2>Recent errors <span class="count" id="errors-count">—</span></h2>
${table('errors', [['When', '100px'], ['Node', '14%'], ['Level', '70px'], ['Module', '14%'], ['Message', '60%'], ['', '50px']])}
</section>
</main>
<div id="login" role="dialog" aria-modal="true" aria-labelledby="login-title">
<form id="login-form" autocomplete="off">
<h2 id="login-title">Operator API key</h2>
<p>The event manager calls this node's API with an operator key (JITCAST_API_KEYS, or printed by <span class="mono">npm start</span>). It is kept in this tab only.</p>
<input id="key" type="password" placeholder="API key" aria-label="API key" autocomplete="off">
<p id="login-err" class="err" role="alert"></p>
<button type="submit">Open</button>
</form>
</div>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`;
}
