// Shared helpers: API calls with CSRF, tables, live events, the header (engine clock, status).
import { rupee, num as fmtNum, signClass, istDate, istTime, istDateTime, istIsoDate, engineClock } from './format.js';

export const state = { csrf: null };

export async function session() {
  const r = await fetch('/api/auth/session', { credentials: 'same-origin' });
  const j = await r.json();
  state.csrf = j.csrf_token || null;
  return j;
}

export async function api(path, { method = 'GET', body } = {}) {
  const opts = { method, headers: {}, credentials: 'same-origin' };
  if (method !== 'GET') {
    if (!state.csrf) await session();
    if (state.csrf) opts.headers['X-CSRF-Token'] = state.csrf;
  }
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const data = (r.headers.get('content-type') || '').includes('json') ? await r.json() : {};
  if (r.status === 401 && !path.startsWith('/api/auth')) {
    location.href = '/login?next=' + encodeURIComponent(location.pathname);
  }
  if (!r.ok) {
    const e = new Error(data.error || r.statusText);
    e.status = r.status; e.field = data.field; e.data = data;
    throw e;
  }
  return data;
}

// Formatting lives in format.js (one module for every page). The old names stay as thin
// wrappers with their old output so pages that still import them keep working (money: Indian
// grouping, 2 decimals, no ₹ — orders.js prefixes its own; time/when: IST; daysAgo: the
// engine's clock). New code imports format.js directly.
export { rupee, rupeeShort, pnl, pct, pctPoints, istDate, istTime, istDateTime, istIsoDate, duration,
  contract, engineClock, signClass } from './format.js';
export function money(v) { return fmtNum(v, 2); }
export function num(v, digits = 2) { return fmtNum(v, digits); }
export function signCls(v) { return signClass(v); }
export function time(iso) { return istTime(iso); }
export function when(iso) { return istDateTime(iso); }

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else if (k === 'html') node.innerHTML = v;
    // Through CSSOM, never as an attribute: the CSP (style-src 'self') blocks inline style attributes.
    else if (k === 'style') { if (typeof v === 'string') node.style.cssText = v; else Object.assign(node.style, v); }
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
export const $ = (sel, root = document) => root.querySelector(sel);

export function badge(text, cls) {
  const c = typeof cls === 'string' ? cls : String(text || '').toLowerCase();
  return el('span', { class: 'badge ' + c }, text ?? '—');
}

// columns: [{key, label, fmt?(value,row)->Node|string, num?, cls?(value,row)}]
export function table(container, columns, rows, { sortable = true, rowKey, empty = 'nothing yet' } = {}) {
  let sortKey = null, asc = false;
  const render = () => {
    let data = rows.slice();
    if (sortKey) {
      data.sort((a, b) => {
        const x = a[sortKey], y = b[sortKey];
        const nx = Number(x), ny = Number(y);
        const c = (Number.isFinite(nx) && Number.isFinite(ny) && x !== '' && y !== '') ? nx - ny
          : String(x ?? '').localeCompare(String(y ?? ''));
        return asc ? c : -c;
      });
    }
    const head = el('tr', {}, columns.map(c => el('th', {
      class: [c.num ? 'num' : '', sortable ? 'sortable' : '', sortKey === c.key ? 'sorted' + (asc ? ' asc' : '') : ''].join(' '),
      onclick: sortable ? () => { asc = sortKey === c.key ? !asc : false; sortKey = c.key; render(); } : undefined,
    }, c.label)));
    const body = data.length ? data.map(r => el('tr', rowKey ? { 'data-key': r[rowKey] } : {}, columns.map(c => {
      const v = r[c.key];
      const out = c.fmt ? c.fmt(v, r) : (v ?? '—');
      return el('td', { class: [c.num ? 'num' : '', c.cls ? c.cls(v, r) : ''].join(' ') }, out);
    }))) : [el('tr', {}, el('td', { colspan: columns.length, class: 'muted' }, empty))];
    container.replaceChildren(el('table', {}, el('thead', {}, head), el('tbody', {}, body)));
  };
  render();
  return { update(newRows) { rows = newRows; render(); } };
}

export function toast(msg, bad = false) {
  const t = el('div', { class: 'toast' + (bad ? ' bad' : '') }, msg);
  document.body.append(t);
  setTimeout(() => t.remove(), 4000);
}

// Live events over /ws with reconnect; handlers by kind ('*' for all).
const handlers = {};
export function on(kind, fn) { (handlers[kind] = handlers[kind] || []).push(fn); }
let wsRetry = 500;
function setWs(ok, text) {
  const d = $('#ws-dot'); if (!d) return;
  d.className = 'dot ' + (ok ? 'ok' : 'bad'); $('#ws-text').textContent = text;
}
export function connectLive() {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/ws`);
  ws.onopen = () => { wsRetry = 500; setWs(true, 'live'); };
  ws.onmessage = (m) => {
    let ev; try { ev = JSON.parse(m.data); } catch { return; }
    if (ev.kind === 'ping') return;
    for (const fn of [...(handlers[ev.kind] || []), ...(handlers['*'] || [])]) {
      try { fn(ev.data || {}, ev); } catch (e) { console.error(e); }
    }
  };
  ws.onclose = () => {
    setWs(false, 'offline');
    setTimeout(connectLive, wsRetry); wsRetry = Math.min(wsRetry * 2, 15000);
  };
  window.__ws = ws;
}

// The header clock is the ENGINE's clock (simulated or real), from /api/health and from each
// heartbeat event; the wall clock only stands in, labelled, while no engine reports.
function renderClock() {
  const c = $('#clock'); if (!c) return;
  const now = engineClock.now();
  const tag = !engineClock.known ? ' · no engine clock' : engineClock.kind === 'simulated' ? ' · SIM' : '';
  c.textContent = `${istDate(now)} ${istTime(now)} IST${tag}`;
  c.classList.toggle('sim', engineClock.known && engineClock.kind === 'simulated');
  c.title = engineClock.known ? `engine clock (${engineClock.kind})` : 'browser clock: the engine has not reported its time';
  c.dataset.engineTime = engineClock.known ? now.toISOString() : '';
}

async function health() {
  try {
    const h = await fetch('/api/health').then(r => r.json());
    engineClock.update(h.engine_time, h.clock);
    renderClock();
    const age = h.engine_heartbeat_age_s;
    const d = $('#engine-dot');
    if (d) d.className = 'dot ' + (h.status === 'ok' ? 'ok' : h.database === 'ok' ? 'warn' : 'bad');
    const t = $('#engine-text');
    if (t) t.textContent = age === null ? 'engine: no heartbeat' : `engine ${Math.round(age)}s`;
    return h;
  } catch { const d = $('#engine-dot'); if (d) d.className = 'dot bad'; return null; }
}

export async function boot() {
  const s = await session();
  if (!s.authenticated) { location.href = '/login?next=' + encodeURIComponent(location.pathname); return false; }
  $('#logout')?.addEventListener('click', async () => {
    await api('/api/auth/logout', { method: 'POST' }).catch(() => {});
    location.href = '/login';
  });
  await health();  // pages read engineClock for their default dates: know it first
  setInterval(renderClock, 1000);
  setInterval(health, 15000);
  on('heartbeat', (d) => {
    if (d.engine_time) { engineClock.update(d.engine_time, d.clock); renderClock(); }
    const t = $('#engine-text'); if (t) t.textContent = 'engine 0s';
    const dot = $('#engine-dot'); if (dot) dot.className = 'dot ok';
  });
  connectLive();  // the live indicator on every page
  return true;
}

// YYYY-MM-DD of a Date in IST; days before the engine's today.
export function isoDate(d) { return istIsoDate(d); }
export function daysAgo(n) { return engineClock.daysBefore(n); }

// Close a trade through the existing command API, after the operator saw what a close books now.
export async function closeTrade(p) {
  const c = p.close_now || {};
  const price = c.pnl !== null && c.pnl !== undefined ? `about ${rupee(c.pnl, { sign: true })}` : 'at market';
  const why = c.explain ? `\n\n${c.explain}` : '';
  if (!confirm(`Close ${p.tag} now: ${price}.${why}`)) return null;
  try {
    const r = await api('/api/commands', { method: 'POST', body: { kind: 'close_trade', payload: { tag: p.tag } } });
    toast(`close of ${p.tag} queued (command ${r.command_id})`);
    return r;
  } catch (e) { toast(e.message, true); return null; }
}

// The close button: labelled with the P&L a close would book now.
// A position's MTM from a WebSocket tick; the close-now P&L moves with it.
export function setMtm(p, mtm) {
  p.mtm = mtm;
  const c = p.close_now;
  if (c && c.pnl !== null && c.pnl !== undefined) c.pnl = (Number(mtm) - Number(c.exit_charges) - Number(c.slippage)).toFixed(2);
}

// MTM ticks numbered as they arrive. A page that refetches /api/positions notes mark() before
// the request; a tick that came while it was in flight is newer than the answer and wins
// (withTicks), so a slow fetch never puts an older MTM back on screen.
export class MtmTicks {
  constructor() { this.seq = 0; this.latest = new Map(); }
  mark() { return this.seq; }
  record(tag, mtm) { this.latest.set(tag, { seq: ++this.seq, mtm }); }
  withTicks(positions, mark) {
    for (const p of positions) {
      const t = this.latest.get(p.tag);
      if (t && t.seq > mark) setMtm(p, t.mtm);
    }
    return positions;
  }
}

export function closeButton(p, onDone) {
  const c = p.close_now || {};
  const label = c.pnl !== null && c.pnl !== undefined ? `Close ≈ ${rupee(c.pnl, { sign: true })}` : 'Close';
  return el('button', { class: 'danger close-btn', title: c.explain || 'close at market',
    'data-tag': p.tag, onclick: async (e) => { e.stopPropagation(); if (await closeTrade(p)) onDone?.(); } }, label);
}
