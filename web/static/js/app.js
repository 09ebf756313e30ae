// Shared helpers: API calls with CSRF, formatting, tables, live events, header status.
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

const INR = new Intl.NumberFormat('en-IN', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
export function money(v) {
  if (v === null || v === undefined || v === '') return '—';
  const n = Number(v);
  return Number.isFinite(n) ? INR.format(n) : String(v);
}
export function num(v, digits = 2) {
  if (v === null || v === undefined || v === '') return '—';
  const n = Number(v);
  return Number.isFinite(n) ? n.toFixed(digits) : String(v);
}
export function signCls(v) { const n = Number(v); return n > 0 ? 'pos' : n < 0 ? 'neg' : ''; }
const TIME = new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Kolkata', hour: '2-digit',
  minute: '2-digit', second: '2-digit', hour12: false });
const DATETIME = new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Kolkata', day: '2-digit',
  month: 'short', hour: '2-digit', minute: '2-digit', hour12: false });
export function time(iso) { return iso ? TIME.format(new Date(iso)) : '—'; }
export function when(iso) { return iso ? DATETIME.format(new Date(iso)) : '—'; }

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

async function health() {
  try {
    const h = await fetch('/api/health').then(r => r.json());
    const age = h.engine_heartbeat_age_s;
    const d = $('#engine-dot');
    d.className = 'dot ' + (h.status === 'ok' ? 'ok' : h.database === 'ok' ? 'warn' : 'bad');
    $('#engine-text').textContent = age === null ? 'engine: no heartbeat' : `engine ${Math.round(age)}s`;
  } catch { $('#engine-dot').className = 'dot bad'; }
}

export async function boot({ live = true } = {}) {
  const s = await session();
  if (!s.authenticated) { location.href = '/login?next=' + encodeURIComponent(location.pathname); return false; }
  $('#logout')?.addEventListener('click', async () => {
    await api('/api/auth/logout', { method: 'POST' }).catch(() => {});
    location.href = '/login';
  });
  const tick = () => { const c = $('#clock'); if (c) c.textContent = TIME.format(new Date()) + ' IST'; };
  tick(); setInterval(tick, 1000);
  health(); setInterval(health, 15000);
  on('heartbeat', () => health());
  if (live) connectLive(); else { const w = $('#ws-dot'); if (w) w.parentElement.hidden = true; }
  return true;
}

export function isoDate(d) { return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`; }
export function daysAgo(n) { const d = new Date(); d.setDate(d.getDate() - n); return isoDate(d); }
