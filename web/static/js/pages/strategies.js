// Strategies: per strategy its one status badge (disabled > paused > blocked > eligible, from
// /api/strategies, i.e. the engine's why_blocked), go-live stage, today's P&L and trades, why
// it is not entering, its latest battle-log row, and its own stage form (a change to one
// strategy never moves the form to another). Formatting from format.js; dates at the engine clock.
import { $, api, badge, boot, el, on, table, toast } from '../app.js';
import { istDateTime, num, pctPoints, pnl, rupee } from '../format.js';

const STAGES = ['paper', 'shadow', 'live', 'disabled'];
const LABEL = { eligible: 'eligible', paused: 'paused', blocked: 'blocked', disabled: 'disabled', waiting: 'no cycle yet' };
const cards = new Map();  // strategy -> {root, parts}

function reasonsOf(v) {
  if (!v) return [];
  if (Array.isArray(v)) return v.map(String);
  if (typeof v === 'object') return Object.entries(v).map(([k, x]) => `${k}: ${Array.isArray(x) ? x.join(', ') : String(x)}`);
  return [String(v)];
}

function card(name) {
  const parts = {
    status: el('span', { class: 'badge st-status', 'data-role': 'status' }),
    stage: el('span', { 'data-role': 'stage' }),
    since: el('span', { class: 'muted' }),
    today: el('div', { class: 'st-today' }),
    why: el('ul', { class: 'st-why' }),
    battle: el('div', { class: 'st-battle' }),
    select: el('select', { 'data-role': 'stage-select', title: `new stage for ${name}` }, STAGES.map(s => el('option', { value: s }, s))),
    confirm: el('input', { type: 'checkbox' }),
    err: el('p', { class: 'err' }),
    pending: el('span', { class: 'st-pending' }),
  };
  parts.select.addEventListener('change', () => { parts.select.dataset.dirty = '1'; });
  const form = el('form', { class: 'st-stage', 'data-strategy': name },
    parts.select, el('label', {}, parts.confirm, ' I confirm'), el('button', { class: 'danger', type: 'submit' }, 'Set stage'),
    parts.err, parts.pending);
  form.addEventListener('submit', e => { e.preventDefault(); setStage(name, parts); });
  const root = el('article', { class: 'st-card', 'data-strategy': name },
    el('header', {}, el('strong', {}, name), parts.status, parts.stage, parts.since),
    el('h4', {}, 'Today'), parts.today, el('h4', {}, 'Why no entry?'), parts.why,
    el('h4', {}, 'Latest battle log'), parts.battle, form);
  return { root, parts };
}

function fill(parts, s) {
  parts.status.textContent = LABEL[s.status] || s.status;
  parts.status.className = `badge st-status ${s.status}`;
  parts.status.dataset.status = s.status;
  parts.stage.replaceChildren(s.stage ? badge(s.stage) : badge('not seeded', 'pending'));
  parts.since.textContent = s.stage_updated_at ? `stage since ${istDateTime(s.stage_updated_at)}` : '';
  if (!parts.select.dataset.dirty && s.stage) parts.select.value = s.stage;
  const t = s.today;
  parts.today.replaceChildren(
    el('div', {}, el('small', {}, 'P&L'), pnl(t.total)),
    el('div', {}, el('small', {}, 'realized / open'), el('span', {}, `${rupee(t.realized)} / ${rupee(t.unrealized)}`)),
    el('div', {}, el('small', {}, 'trades'), el('span', { title: t.open_tags.join(', ') },
      `${num(t.closed)} closed (${num(t.wins)}W ${num(t.losses)}L) · ${num(t.open)} open`)));
  const why = s.why || {};
  const now = why.reasons || [];
  const last = why.last_cycle;
  const items = now.map(r => el('li', {}, r));
  if (last && last.reasons?.length) items.push(...last.reasons.map(r => el('li', {}, `last cycle: ${r}`)));
  if (!items.length) items.push(el('li', { class: 'ok' }, s.status === 'eligible' ? 'nothing blocks it: it enters when its rules fire' : 'nothing recorded blocks it'));
  parts.why.replaceChildren(...items);
  const b = s.battle;
  parts.battle.replaceChildren(b ? el('span', {}, el('b', {}, istDateTime(b.created_at)), ' · spot ', el('b', {}, num(b.spot, 2)),
    ' · IV ', el('b', {}, pctPoints(b.iv)), ' · this strategy ', el('b', {}, b.eligible === true ? 'passed its rules' : b.eligible === false ? 'did not pass' : '—'),
    ' · selected ', el('b', {}, b.selected_strategy || 'none'),
    reasonsOf(b.reasons).length ? el('div', { class: 'why' }, reasonsOf(b.reasons).join('; ')) : null)
    : el('span', {}, 'no scan cycle has judged it yet'));
}

async function setStage(name, parts) {
  parts.err.textContent = '';
  if (!parts.confirm.checked) { parts.err.textContent = 'tick "I confirm" first'; return; }
  const stage = parts.select.value;
  try {
    const r = await api(`/api/go-live/${encodeURIComponent(name)}`, { method: 'POST', body: { stage, confirm: true } });
    parts.confirm.checked = false;
    parts.pending.textContent = `${name} → ${stage}: queued (command #${r.command_id}), waiting for the engine`;
    toast(`${name}: set_go_live_stage ${stage} queued (command ${r.command_id})`);
    watch(name, parts, r.command_id, stage);
  } catch (ex) { parts.err.textContent = ex.message; }
}

async function watch(name, parts, id, stage, tries = 0) {
  let c;
  try { c = await api(`/api/commands/${id}`); } catch { return; }
  if (c.status === 'done') { parts.pending.textContent = ''; delete parts.select.dataset.dirty; toast(`${name} is now ${stage}`); load(); return; }
  if (c.status === 'error') { parts.pending.textContent = ''; parts.err.textContent = `${name} → ${stage} failed: ${c.error}`; return; }
  if (tries < 120) setTimeout(() => watch(name, parts, id, stage, tries + 1), 2000);
}

async function load() {
  const body = await api('/api/strategies');
  $('#st-at').textContent = `at ${istDateTime(body.now)} (engine clock)`;
  const box = $('#strategies');
  if (!cards.size) box.replaceChildren();
  for (const s of body.strategies) {
    if (!cards.has(s.strategy)) { const c = card(s.strategy); cards.set(s.strategy, c); box.append(c.root); }
    fill(cards.get(s.strategy).parts, s);
  }
}

async function loadBattle() {
  const rows = (await api('/api/battle-log?limit=50')).rows;
  table($('#battle'), [
    { key: 'created_at', label: 'Time', fmt: v => istDateTime(v) },
    { key: 'spot', label: 'Spot', num: true, fmt: v => num(v, 2) },
    { key: 'iv', label: 'ATM IV', num: true, fmt: v => pctPoints(v) },
    { key: 'realized_range', label: 'Range', num: true, fmt: v => num(v, 1) },
    { key: 'near_straddle', label: 'Straddle', num: true, fmt: v => rupee(v) },
    { key: 'selected_strategy', label: 'Selected', fmt: v => v || '—' },
    { key: 'eligibility', label: 'Passed rules', fmt: v => Object.entries(v || {}).filter(([, x]) => x === true || x?.eligible).map(([k]) => k).join(', ') || '—' },
    { key: 'rejections', label: 'Reasons', fmt: v => el('div', { class: 'st-reasons' }, reasonsOf(v).join(' · ') || '—') },
  ], rows, { empty: 'no scan cycles recorded yet', sortable: false });
}

if (await boot()) {
  await Promise.all([load(), loadBattle()]);
  on('risk_paused', () => load()); on('risk_resumed', () => load());
  on('position_closed', () => load()); on('position_opened', () => load());
  setInterval(() => { load(); loadBattle(); }, 30000);
  document.body.dataset.ready = '1';
}
