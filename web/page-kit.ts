/**
 * Pieces the self-contained pages (player, error, host, event manager) share. Each page still
 * renders one HTML document with its own inline CSS and its own nonce-bearing inline script, so
 * these are plain strings the pages interpolate: nothing here adds a request, a script element or
 * a CSP source.
 */

/**
 * The document start up to and including `</head>`: UTF-8, mobile viewport, no referrer, no
 * favicon request, and the page's inline `style`. `titleHtml` must already be HTML-escaped.
 */
export function pageHead(titleHtml: string, style: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${titleHtml}</title>
<link rel="icon" href="data:,">
<style>${style}</style>
</head>`;
}

/**
 * Browser JS (ES5, for an inline script) defining `listenersText(l)`: the listener figure the
 * monitoring answers, which is a number, or an object with current/now/live, peak and total, or
 * nothing (an em dash). The current count is followed by `nowSuffix` and the parts are joined by
 * `separator`.
 */
export function listenersTextJs(o: { nowSuffix: string; separator: string }): string {
  return `function listenersText(l) {
    if (l === null || l === undefined) return '\\u2014';
    if (typeof l === 'number') return String(l);
    if (typeof l === 'object') {
      var now = l.current !== undefined ? l.current : (l.now !== undefined ? l.now : l.live);
      var parts = [];
      if (now !== undefined) parts.push(String(now) + ${JSON.stringify(o.nowSuffix)});
      if (l.peak !== undefined) parts.push('peak ' + l.peak);
      if (l.total !== undefined) parts.push(l.total + ' total');
      return parts.length ? parts.join(${JSON.stringify(o.separator)}) : JSON.stringify(l);
    }
    return String(l);
  }`;
}

/**
 * CSS for the status banner (`<div class="banner" data-state=…><span class="dot"></span>…`): a
 * tinted pill in the colour `--state` (off by default), whose dot pulses while live. Each page adds
 * its own `data-state` → `--state` rules after it.
 */
export function bannerCss(padding: string): string {
  return `.banner{display:flex;align-items:center;gap:10px;padding:${padding};border-radius:12px;font-weight:600;
background:color-mix(in srgb,var(--state) 12%,transparent);color:var(--state);--state:var(--off)}
.banner .dot{width:10px;height:10px;border-radius:50%;background:var(--state);flex:none}
.banner[data-state=live]{--state:var(--live)}
.banner[data-state=live] .dot{animation:pulse 1.4s ease-in-out infinite}
@keyframes pulse{0%,100%{opacity:1}50%{opacity:.3}}`;
}
