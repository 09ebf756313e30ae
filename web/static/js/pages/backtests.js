// Backtests: a form whose errors appear next to their fields (checked here where cheap, then
// by the API's 400 {field}), runs with their parameters and real progress (done/total, ETA;
// a failed run stops red), formatted results (metrics with units, equity and drawdown,
// P&L by exit reason, trades with legs), two runs compared, grid heatmap centred at zero.
import { $, api, badge, boot, el, on, table, toast } from '../app.js';
import { heatmap, lineChart } from '../charts.js';
import {
  contract, duration, engineClock, istDate, istDateTime, num, pct, pnl, rupee, rupeeShort,
} from '../format.js';

// ---------------------------------------------------------------- metrics with units
const RS = v => rupee(v);
const RATIO = v => num(v, 2);
const COUNT = v => num(v, 0);
// [key, label, format, group]; pnl-coloured when fmt is 'pnl'
const METRICS = [
  ['trades', 'Closed trades', COUNT, 'Result'], ['net_pnl', 'Net P&L', 'pnl'], ['gross_pnl', 'Gross P&L', 'pnl'],
  ['charges', 'Charges', RS], ['win_rate', 'Win rate', v => pct(v)], ['avg_win', 'Average win', RS],
  ['avg_loss', 'Average loss', RS], ['expectancy', 'Expectancy per trade', 'pnl'], ['profit_factor', 'Profit factor', RATIO],
  ['final_equity', 'Final equity (incl. open)', 'pnl'], ['open_at_end', 'Open at the end', COUNT],
  ['open_unrealized_pnl', 'Open P&L at the end', 'pnl'],
  ['max_drawdown', 'Max drawdown', RS, 'Risk'], ['max_drawdown_pct', 'Max drawdown % of capital', v => pct(v, 2)],
  ['sharpe', 'Sharpe (annualized)', RATIO], ['sortino', 'Sortino (annualized)', RATIO], ['calmar', 'Calmar', RATIO],
  ['annualized_return', 'Annualized return', v => pct(v, 2)], ['capital', 'Capital base', RS],
  ['exposure', 'Sessions in the market', v => pct(v)], ['avg_margin', 'Average margin in use', RS],
  ['margin_denied', 'Entries refused on margin', COUNT],
  ['sessions', 'Sessions', COUNT, 'Data'], ['model_marked_share', 'Legs marked by the model', v => pct(v)],
  ['data', 'Market data', String], ['fill_model', 'Fill model', String], ['run_seconds', 'Run time', v => duration(v)],
];
const SKIP = new Set(['equity_curve', 'decisions', 'decision_log', 'pnl_by_exit_reason', 'margin_denials', 'capital_source']);
const human = k => k.replace(/_/g, ' ');
// "03 Feb → 28 Feb 2025" (the year once when both ends share it)
function period(a, b) {
  const [x, y] = [istDate(a), istDate(b)];
  return x.slice(-4) === y.slice(-4) ? `${x.slice(0, 6)} → ${y}` : `${x} → ${y}`;
}

function metricCell(fmt, v) {
  if (v === null || v === undefined) return el('span', { class: 'muted' }, '—');
  return fmt === 'pnl' ? pnl(v) : fmt(v);
}

function metricsTable(target, runs) {  // runs: [{label, metrics}] (1 = one run, 2 = compare)
  const rows = [];
  const head = el('tr', {}, el('th', {}, ''), runs.map(r => el('th', { class: 'num' }, r.label)),
    runs.length === 2 ? el('th', { class: 'num' }, 'B − A') : null);
  rows.push(head);
  const known = new Set(METRICS.map(m => m[0]));
  let group = null, shownGroup = null;
  for (const [key, label, fmt, g] of METRICS) {
    group = g || group;
    if (runs.every(r => r.metrics[key] === undefined)) continue;
    if (group !== shownGroup) { shownGroup = group; rows.push(el('tr', { class: 'group' }, el('th', { colspan: runs.length + 2 }, group))); }
    const cells = runs.map(r => el('td', { class: 'num', 'data-metric': key }, metricCell(fmt, r.metrics[key])));
    let delta = null;
    if (runs.length === 2) {
      const [a, b] = runs.map(r => Number(r.metrics[key]));
      delta = el('td', { class: 'num' }, Number.isFinite(a) && Number.isFinite(b) && fmt !== String
        ? (fmt === 'pnl' ? pnl(b - a) : fmt(b - a)) : '—');
    }
    rows.push(el('tr', {}, el('th', {}, label), cells, delta));
  }
  const capSrc = runs.map(r => r.metrics.capital_source).find(Boolean);
  if (capSrc) rows.push(el('tr', {}, el('th', {}, 'Capital from'), runs.map(r => el('td', { class: 'num' }, r.metrics.capital_source || '—'))));
  const cov = runs.map(r => r.metrics.coverage).filter(Boolean);
  if (cov.length) rows.push(el('tr', {}, el('th', {}, 'Sessions with data'), runs.map(r => el('td', { class: 'num' },
    r.metrics.coverage ? `${num(r.metrics.coverage.sessions_with_data)} of ${num(r.metrics.coverage.sessions)}` : '—'))));
  const other = [...new Set(runs.flatMap(r => Object.keys(r.metrics)))]
    .filter(k => !known.has(k) && !SKIP.has(k) && k !== 'coverage' && runs.some(r => r.metrics[k] !== null && typeof r.metrics[k] !== 'object'));
  if (other.length) rows.push(el('tr', { class: 'group' }, el('th', { colspan: runs.length + 2 }, 'Other')));
  for (const k of other) {
    rows.push(el('tr', {}, el('th', {}, human(k)), runs.map(r => {
      const v = r.metrics[k];
      return el('td', { class: 'num' }, v === undefined || v === null ? '—' : typeof v === 'number' ? num(v, Number.isInteger(v) ? 0 : 4) : String(v));
    })));
  }
  target.replaceChildren(el('tbody', {}, rows));
}

// ---------------------------------------------------------------- equity, drawdown
function curveOf(run) {  // [{t (ms), equity}] from the daily curve, else cumulative closed trades
  const m = run.metrics_json || {};
  if (Array.isArray(m.equity_curve) && m.equity_curve.length) {
    return m.equity_curve.map(p => ({ t: Date.parse(p.date + 'T15:30:00+05:30'), equity: Number(p.equity) }));
  }
  let eq = 0;
  return (run.trades_json || []).filter(t => t.realized_pnl !== null && t.realized_pnl !== undefined && t.closed_at)
    .sort((a, b) => Date.parse(a.closed_at) - Date.parse(b.closed_at))
    .map(t => ({ t: Date.parse(t.closed_at), equity: (eq += Number(t.realized_pnl)) }));
}
function drawdowns(values) {
  let peak = 0;
  return values.map(v => { if (v === null) return null; peak = Math.max(peak, v); return v - peak; });
}
// ordinal axis: label whole steps only (uPlot may place ticks between sessions)
const dayLabel = x => v => { const t = Number.isInteger(v) ? x[v] : undefined; return t === undefined ? '' : istDate(t).slice(0, 6); };

function drawEquity(run) {
  const c = curveOf(run);
  const x = c.map(p => p.t), eq = c.map(p => p.equity);
  lineChart($('#run-equity'), x, [{ label: 'equity', values: eq }], { kind: 'ordinal', zero: true, height: 220,
    xfmt: dayLabel(x), empty: run.status === 'complete' ? 'no equity points (no sessions / trades)' : 'appears when the run completes' });
  lineChart($('#run-dd'), x, [{ label: 'drawdown', values: drawdowns(eq), color: '#f0564d' }], { kind: 'ordinal', height: 140,
    xfmt: dayLabel(x), empty: '—' });
}

function reasonsTable(run) {
  let rows = Object.entries((run.metrics_json || {}).pnl_by_exit_reason || {}).map(([reason, v]) => ({ reason, ...v }));
  if (!rows.length) {  // the simulated replay does not group: group its closed trades here
    const by = {};
    for (const t of run.trades_json || []) {
      if (t.realized_pnl === null || t.realized_pnl === undefined) continue;
      const k = t.exit_kind || String(t.exit_reason || '?').split(':')[0].slice(0, 40);
      by[k] = by[k] || { reason: k, trades: 0, net_pnl: 0 };
      by[k].trades += 1; by[k].net_pnl += Number(t.realized_pnl);
    }
    rows = Object.values(by);
  }
  table($('#run-reasons'), [
    { key: 'reason', label: 'Exit reason' }, { key: 'trades', label: 'Trades', num: true, fmt: COUNT },
    { key: 'net_pnl', label: 'Net P&L', num: true, fmt: v => pnl(v) },
  ], rows, { empty: 'no closed trades' });
}

// ---------------------------------------------------------------- trades with legs
function legsTable(t) {
  if (!Array.isArray(t.legs) || !t.legs.length) return el('p', { class: 'muted' }, 'legs not recorded by this replay');
  return el('table', {}, el('thead', {}, el('tr', {}, ['Contract', 'Side', 'Qty', 'Entry', 'Exit', 'Leg P&L', 'Price source']
    .map((h, i) => el('th', { class: i >= 2 && i <= 5 ? 'num' : '' }, h)))),
  el('tbody', {}, t.legs.map(l => {
    const sign = l.side === 'SELL' ? -1 : 1;
    const exit = l.exit_price ?? t.last_mark?.legs?.[l.security_id]?.price;
    const legPnl = exit !== undefined && exit !== null ? (Number(exit) - Number(l.entry_price)) * Number(l.quantity) * sign : null;
    return el('tr', {}, el('td', {}, contract(l)), el('td', { class: l.side === 'SELL' ? 'neg' : 'pos' }, l.side),
      el('td', { class: 'num' }, num(l.quantity)), el('td', { class: 'num' }, rupee(l.entry_price)),
      el('td', { class: 'num' }, l.exit_price ? rupee(l.exit_price) : exit ? `${rupee(exit)} (mark)` : '—'),
      el('td', { class: 'num' }, legPnl === null ? '—' : pnl(legPnl)),
      el('td', { class: 'muted' }, [l.entry_source, l.exit_source].filter(Boolean).join(' → ') || '—'));
  })));
}

function tradesTable(run) {
  const trades = run.trades_json || [];
  const cols = ['Trade', 'Opened', 'Closed', 'Direction', 'Legs', 'Net P&L', 'Charges', 'Exit reason'];
  const body = [];
  trades.forEach((t, i) => {
    const legsRow = el('tr', { class: 'bt-legs', hidden: true }, el('td', { colspan: cols.length }, legsTable(t)));
    const net = t.realized_pnl ?? t.last_mark?.unrealized_pnl;
    const row = el('tr', { class: 'bt-trade', 'data-i': i, onclick: () => { legsRow.hidden = !legsRow.hidden; row.classList.toggle('open', !legsRow.hidden); } },
      el('td', {}, t.tag || `#${i + 1}`),
      el('td', { class: 'num' }, t.opened_at ? istDateTime(t.opened_at) : istDate(t.entry_day)),
      el('td', { class: 'num' }, t.closed_at ? istDateTime(t.closed_at) : el('span', { class: 'badge running' }, 'open')),
      el('td', {}, t.direction || '—'),
      el('td', { class: 'num' }, Array.isArray(t.legs) ? t.legs.length : '—'),
      el('td', { class: 'num' }, net === undefined || net === null ? '—' : pnl(net), t.realized_pnl === null && net !== undefined ? el('span', { class: 'muted' }, ' (marked)') : null),
      el('td', { class: 'num' }, rupee(t.charges)),
      el('td', { class: 'bt-reason', title: t.exit_reason || '' }, t.exit_kind || t.exit_reason || '—'));
    body.push(row, legsRow);
  });
  if (!body.length) body.push(el('tr', {}, el('td', { colspan: cols.length, class: 'muted' }, run.status === 'complete' ? 'no trades' : 'trades appear when the run completes')));
  $('#run-trades').replaceChildren(el('table', {}, el('thead', {}, el('tr', {}, cols.map((c, i) => el('th', { class: [1, 2, 4, 5, 6].includes(i) ? 'num' : '' }, c)))),
    el('tbody', {}, body)));
}

// ---------------------------------------------------------------- progress
function progressBar(row) {
  const p = row.progress || {};
  const status = row.status;
  const pctDone = status === 'complete' ? 100 : Number(p.pct) || 0;
  let text;
  if (status === 'pending') text = 'queued: waiting for the engine';
  else if (status === 'running') text = p.total ? `${num(p.done)}/${num(p.total)} ${p.unit}` + (p.eta_s !== null && p.eta_s !== undefined ? ` · ETA ${duration(p.eta_s)}` : '') : 'starting: loading data';
  else if (status === 'complete') text = `${p.total ? `${num(p.total)} ${p.unit}` : 'done'}${p.elapsed_s ? ' in ' + duration(p.elapsed_s) : ''}`;
  else text = p.total ? `failed at ${num(p.done ?? 0)}/${num(p.total)} ${p.unit}` : 'failed before the first step';
  const bar = el('i');
  bar.style.width = `${Math.max(0, Math.min(100, pctDone))}%`;
  return el('div', { class: `bt-progress ${status}`, 'data-pct': String(pctDone), 'data-status': status,
    title: row.error_text || `${pctDone.toFixed(1)}%` }, el('div', { class: 'progress' }, bar), el('small', {}, text));
}

function paramChips(config) {
  const c = config || {};
  const src = [c.BT_DATA, c.BT_DATA === 'bhavcopy' || !c.BT_DATA ? c.BT_FILL_MODEL : null].filter(Boolean).join(' · ');
  const own = Object.entries(c).filter(([k]) => k !== 'BT_DATA' && k !== 'BT_FILL_MODEL' && !k.startsWith('_'));
  return el('div', { class: 'bt-chips' }, src ? el('span', { class: 'bt-chip src' }, src) : null,
    own.length ? own.map(([k, v]) => el('span', { class: 'bt-chip', title: k }, `${k}=${v}`)) : el('span', { class: 'muted' }, 'defaults'));
}

// ---------------------------------------------------------------- the form
let catalog = null;  // /api/backtest/strategies
const knobOf = key => catalog && [...catalog.strategies.flatMap(s => s.params), ...catalog.run_settings].find(k => k.key === key);
const NUM_RE = { int: /^-?\d+$/, decimal: /^-?\d+(\.\d+)?$/ };

function allowed(k) {
  if (k.type === 'bool') return 'true or false';
  if (k.choices?.length) return 'one of ' + k.choices.join(', ');
  const kind = k.type === 'int' ? 'integer' : k.type === 'decimal' ? 'number' : 'text';
  if (k.minimum !== null && k.maximum !== null) return `${kind} ${k.minimum} … ${k.maximum}`;
  return kind;
}

function checkValue(k, text) {  // null when fine, else what is wrong (as the API would say)
  const v = text.trim();
  if (k.type === 'bool') return /^(true|false|1|0|yes|no|on|off)$/i.test(v) ? null : `expected true or false, not "${v}"`;
  if (k.choices?.length) return k.choices.includes(v) ? null : `expected one of ${k.choices.join(', ')}`;
  if (NUM_RE[k.type]) {
    if (!NUM_RE[k.type].test(v)) return `expected ${k.type === 'int' ? 'an integer' : 'a number'}, not "${v}"`;
    const n = Number(v);
    if (k.minimum !== null && n < Number(k.minimum)) return `must be at least ${k.minimum}`;
    if (k.maximum !== null && n > Number(k.maximum)) return `must be at most ${k.maximum}`;
  }
  return null;
}

function renderParams() {
  const s = catalog.strategies.find(x => x.name === $('#bt-strategy').value) || catalog.strategies[0];
  const prev = Object.fromEntries([...document.querySelectorAll('#bt-params input')].map(i => [i.dataset.key, i.value]));
  const row = k => el('div', { class: 'bt-param' },
    el('label', { for: `p-${k.key}`, title: k.description }, k.key),
    el('input', { id: `p-${k.key}`, 'data-key': k.key, name: `params.${k.key}`, placeholder: k.default, value: prev[k.key] || '',
      autocomplete: 'off', title: `${k.description} (${allowed(k)}; default ${k.default})` }),
    el('span', { class: 'field-err', 'data-for': `params.${k.key}` }));
  const grid = new Set(Object.keys(s.grid_space || {}));
  const mine = s.params.slice().sort((a, b) => Number(grid.has(b.key)) - Number(grid.has(a.key)));
  $('#bt-params').replaceChildren(el('h4', {}, `${s.name} parameters`), ...mine.map(row),
    el('h4', {}, 'Run settings'), ...catalog.run_settings.map(row));
}

function clearErrors() {
  for (const e of document.querySelectorAll('#run-form .field-err')) e.textContent = '';
  for (const e of document.querySelectorAll('#run-form .invalid')) { e.classList.remove('invalid'); e.removeAttribute('aria-invalid'); }
  $('#bt-err').textContent = '';
}
const INPUT_OF = { strategy: '#bt-strategy', start: '#bt-start', end: '#bt-end', data: '#bt-data', fill_model: '#bt-fill', rank_by: '#bt-rank' };

// Show ``message`` next to the field the API (or the check here) named.
function fieldError(field, message) {
  const key = String(field || '').replace(/^(params|param_space)\./, '');
  const param = key !== field ? document.querySelector(`#bt-params input[data-key="${CSS.escape(key)}"]`) : null;
  const input = param || (INPUT_OF[field] && $(INPUT_OF[field]));
  const slot = param ? param.parentElement.querySelector('.field-err')
    : document.querySelector(`#run-form .field-err[data-for="${CSS.escape(String(field))}"]`);
  if (input) { input.classList.add('invalid'); input.setAttribute('aria-invalid', 'true'); }
  if (slot) slot.textContent = message; else $('#bt-err').textContent = `${field ? field + ': ' : ''}${message}`;
  (input || slot || $('#bt-err')).scrollIntoView?.({ block: 'nearest' });
  input?.focus();
}

function collect(grid) {  // the request body, or throws {field, message} for the first problem
  const problems = [];
  const start = $('#bt-start').value, end = $('#bt-end').value;
  const strategy = $('#bt-strategy').value, data = $('#bt-data').value, fill = $('#bt-fill').value;
  if (!start) problems.push(['start', 'pick a start date']);
  if (!end) problems.push(['end', 'pick an end date']);
  if (start && end && end < start) problems.push(['end', 'must not be before start']);
  if (start && end && (Date.parse(end) - Date.parse(start)) / 86400000 > catalog.max_days) problems.push(['end', `a backtest spans at most ${catalog.max_days} days`]);
  const spec = catalog.strategies.find(s => s.name === strategy);
  if (spec && data === 'bhavcopy' && !spec.eod_backtest) problems.push(['data', `${strategy} cannot be backtested on end-of-day bhavcopy data (its z-score needs intraday samples): use the simulated market`]);
  if (data === 'snapshots' && fill !== 'close') problems.push(['fill_model', 'recorded snapshots fill at the close only']);
  const params = {};
  for (const input of document.querySelectorAll('#bt-params input')) {
    const text = input.value.trim();
    if (!text) continue;
    const k = knobOf(input.dataset.key);
    const values = grid ? text.split(',').map(v => v.trim()).filter(Boolean) : [text];
    for (const v of values) {
      const bad = k && checkValue(k, v);
      if (bad) { problems.push([`${grid ? 'param_space' : 'params'}.${k.key}`, bad]); break; }
    }
    params[input.dataset.key] = grid ? values : text;
  }
  if (grid) {
    if (!Object.keys(params).length && !$('#bt-defaults').checked) problems.push(['param_space', 'give at least one parameter a list of values, or tick the declared grid space']);
    const combos = Object.values(params).reduce((n, v) => n * v.length, 1);
    if (combos > catalog.max_grid) problems.push(['param_space', `${combos} combinations; a grid search runs at most ${catalog.max_grid}`]);
  }
  if (problems.length) { for (const [f, m] of problems) fieldError(f, m); return null; }
  const base = { strategy, start, end, data, fill_model: fill };
  if (grid) {
    if (data === 'snapshots') { fieldError('data', 'a grid search runs on bhavcopy or the simulated market'); return null; }
    return { ...base, rank_by: $('#bt-rank').value, use_defaults: $('#bt-defaults').checked, param_space: params };
  }
  return { ...base, params };
}

// ---------------------------------------------------------------- page
if (await boot()) {
  catalog = await api('/api/backtest/strategies');
  $('#bt-strategy').replaceChildren(...catalog.strategies.map(s => el('option', { value: s.name }, s.name + (s.eod_backtest ? '' : ' (sim only)'))));
  $('#bt-rank').replaceChildren(...catalog.rank_keys.map(k => el('option', { value: k }, human(k))));
  $('#bt-strategy').value = catalog.strategies.some(s => s.name === 'DC') ? 'DC' : catalog.strategies[0].name;
  renderParams();
  // the engine's clock (simulated or real), never the browser's date
  $('#bt-start').value = engineClock.daysBefore(60); $('#bt-end').value = engineClock.daysBefore(1);
  $('#bt-strategy').addEventListener('change', () => {
    renderParams();
    const spec = catalog.strategies.find(s => s.name === $('#bt-strategy').value);
    if (spec && !spec.eod_backtest && $('#bt-data').value === 'bhavcopy') $('#bt-data').value = 'sim';
  });
  $('#run-form').addEventListener('input', (e) => {  // an edited field loses its old error
    const t = e.target; if (!t.classList?.contains('invalid')) return;
    t.classList.remove('invalid'); t.removeAttribute('aria-invalid');
    const slot = t.parentElement.querySelector('.field-err'); if (slot) slot.textContent = '';
  });

  let current = null, currentRun = null, job = null, runsCache = [];
  const selected = new Set();

  async function loadRuns() {
    runsCache = (await api('/api/backtest/runs?limit=100')).runs;
    table($('#runs'), [
      { key: 'run_id', label: '', fmt: id => el('input', { type: 'checkbox', title: 'select to compare', checked: selected.has(id),
        onclick: e => e.stopPropagation(), onchange: e => { e.target.checked ? selected.add(id) : selected.delete(id); cmpState(); } }) },
      { key: 'run_id', label: '#', num: true, fmt: id => el('a', { href: `#run-${id}`, onclick: e => { e.preventDefault(); showRun(id); } }, `#${id}`) },
      { key: 'strategy', label: 'Strategy' },
      { key: 'start_date', label: 'Period', fmt: (v, r) => el('span', { class: 'bt-period', title: `created ${istDateTime(r.created_at)}` }, period(v, r.end_date)) },
      { key: 'config_snapshot', label: 'Parameters', fmt: paramChips },
      { key: 'status', label: 'Status', fmt: s => badge(s === 'error' ? 'failed' : s, s) },
      { key: 'progress_pct', label: 'Progress', fmt: (v, r) => progressBar(r) },
      { key: 'trade_count', label: 'Trades', num: true, fmt: (v, r) => (r.metrics_json?.trades ?? v ?? '—') },
      { key: 'metrics_json', label: 'Net P&L', num: true, fmt: m => (m && m.net_pnl !== undefined ? pnl(m.net_pnl) : '—') },
      { key: 'win', label: 'Win rate', num: true, fmt: (v, r) => pct(r.metrics_json?.win_rate) },
    ], runsCache, { empty: 'no runs yet', rowKey: 'run_id', sortable: false });
    cmpState();
    return runsCache;
  }
  function cmpState() {
    for (const id of [...selected]) if (!runsCache.some(r => r.run_id === id)) selected.delete(id);
    $('#cmp-btn').disabled = selected.size !== 2;
    $('#cmp-btn').textContent = selected.size === 2 ? 'Compare the 2 selected' : `Compare: select 2 runs (${selected.size})`;
  }

  async function showRun(id) {
    current = id;
    const r = currentRun = await api(`/api/backtest/runs/${id}`);
    $('#run-title').textContent = `#${id} · ${r.strategy} · ${istDate(r.start_date)} → ${istDate(r.end_date)}`;
    $('#run-state').replaceChildren(el('div', { class: 'row' }, badge(r.status === 'error' ? 'failed' : r.status, r.status), progressBar(r), paramChips(r.config_snapshot)),
      ...(r.error_text ? [el('p', { class: 'err' }, r.error_text)] : []));
    metricsTable($('#run-metrics'), [{ label: `#${id}`, metrics: r.metrics_json || {} }]);
    drawEquity(r); reasonsTable(r); tradesTable(r);
  }

  async function compare() {
    const [a, b] = [...selected].sort((x, y) => x - y);
    const [ra, rb] = await Promise.all([a, b].map(id => api(`/api/backtest/runs/${id}`)));
    $('#cmp-card').hidden = false;
    $('#cmp-title').textContent = `A = #${a} ${ra.strategy} · B = #${b} ${rb.strategy}`;
    metricsTable($('#cmp-metrics'), [{ label: `A #${a}`, metrics: ra.metrics_json || {} }, { label: `B #${b}`, metrics: rb.metrics_json || {} }]);
    const ca = curveOf(ra), cb = curveOf(rb);
    const x = [...new Set([...ca, ...cb].map(p => p.t))].sort((p, q) => p - q);
    const align = c => { const m = new Map(c.map(p => [p.t, p.equity])); let last = null; const first = c.length ? c[0].t : Infinity;
      return x.map(t => { if (m.has(t)) last = m.get(t); return t < first ? null : last; }); };
    lineChart($('#cmp-equity'), x, [{ label: `A #${a}`, values: align(ca) }, { label: `B #${b}`, values: align(cb), color: '#e3a93b' }],
      { kind: 'ordinal', zero: true, height: 240, xfmt: dayLabel(x), empty: 'no equity points in either run' });
    $('#cmp-card').scrollIntoView({ block: 'nearest' });
  }
  $('#cmp-btn').addEventListener('click', compare);

  // ---- grid searches
  const HEAT_METRICS = [['net_pnl', 'net P&L', rupeeShort, 1], ['expectancy', 'expectancy', rupeeShort, 1],
    ['sharpe', 'Sharpe', v => num(v, 2), 1], ['sortino', 'Sortino', v => num(v, 2), 1], ['calmar', 'Calmar', v => num(v, 2), 1],
    ['max_drawdown', 'max drawdown (as a loss)', rupeeShort, -1]];
  $('#metric').replaceChildren(...HEAT_METRICS.map(([k, l]) => el('option', { value: k }, l)));

  async function loadJobs() {
    const jobs = (await api('/api/backtest/grid-search?limit=50')).jobs;
    table($('#jobs'), [
      { key: 'job_id', label: '#', num: true, fmt: id => el('a', { href: `#job-${id}`, onclick: e => { e.preventDefault(); showJob(id); } }, `#${id}`) },
      { key: 'strategy', label: 'Strategy' },
      { key: 'param_space', label: 'Space', fmt: s => el('div', { class: 'bt-chips' }, spaceKeys(s).map(k => el('span', { class: 'bt-chip' }, `${k} ×${(s[k] || []).length}`))) },
      { key: 'status', label: 'Status', fmt: s => badge(s === 'error' ? 'failed' : s, s) },
      { key: 'progress_pct', label: 'Progress', fmt: (v, r) => progressBar(r) },
      { key: 'result_count', label: 'Results', num: true },
    ], jobs, { empty: 'no grid searches yet', sortable: false });
    return jobs;
  }
  const spaceKeys = s => Object.keys(s || {}).filter(k => !k.startsWith('_') && k !== 'summary' && k !== 'grid' && Array.isArray(s[k]));

  async function showJob(id) {
    job = await api(`/api/backtest/grid-search/${id}`);
    const params = spaceKeys(job.param_space);
    const summary = (job.param_space || {}).summary;
    $('#job-title').textContent = `#${id} ${job.strategy}` + (summary ? ` · ${summary.tried} tried, ${summary.ranked} ranked` : ` · ${job.status}`);
    for (const [sel, i] of [['#heat-x', 0], ['#heat-y', 1]]) {
      const prev = $(sel).value;
      $(sel).replaceChildren(...(i ? [el('option', { value: '' }, '(rows: none)')] : []), ...params.map(p => el('option', { value: p }, p)));
      $(sel).value = params.includes(prev) ? prev : (params[i] || '');
    }
    drawHeat();
    const results = (job.results_json || []).map(r => ({ rank: r.rank ?? null, ...(r.params || {}), ...(r.metrics || {}), error: r.error }));
    table($('#grid-table'), [
      { key: 'rank', label: 'Rank', num: true, fmt: v => v ?? '—' },
      ...params.map(p => ({ key: p, label: p })),
      { key: 'trades', label: 'Trades', num: true, fmt: COUNT },
      { key: 'net_pnl', label: 'Net P&L', num: true, fmt: v => (v === undefined ? '—' : pnl(v)) },
      { key: 'win_rate', label: 'Win rate', num: true, fmt: v => pct(v) },
      { key: 'sharpe', label: 'Sharpe', num: true, fmt: RATIO },
      { key: 'profit_factor', label: 'PF', num: true, fmt: RATIO },
      { key: 'max_drawdown', label: 'Max DD', num: true, fmt: v => rupee(v) },
      { key: 'error', label: 'Error', fmt: v => v || '' },
    ], results, { empty: `job #${id}: ${job.status}${job.error_text ? ' · ' + job.error_text : ''}` });
  }
  function drawHeat() {
    if (!job) return;
    const [key, label, fmt, sign] = HEAT_METRICS.find(m => m[0] === $('#metric').value) || HEAT_METRICS[0];
    const px = $('#heat-x').value, py = $('#heat-y').value;
    const space = job.param_space || {}, params = spaceKeys(space);
    const rows = (job.results_json || []).filter(r => r.metrics);
    if (!px || !rows.length) { heatmap($('#heat'), { xs: [], ys: [], z: [] }); $('#heat-note').textContent = job.status === 'complete' ? 'no results' : `job ${job.status}`; return; }
    const xs = space[px], ys = py ? space[py] : [label];
    const same = (a, b) => String(a) === String(b) || Number(a) === Number(b);
    const z = ys.map(y => xs.map(x => {
      const hits = rows.filter(r => same(r.params[px], x) && (!py || same(r.params[py], y)))
        .map(r => Number(r.metrics[key])).filter(Number.isFinite).map(v => sign * v);
      return hits.length ? Math.max(...hits) : null;
    }));
    heatmap($('#heat'), { xs, ys, z, xlabel: px, ylabel: py || '', fmt });
    const others = params.filter(p => p !== px && p !== py);
    $('#heat-note').textContent = `${label}: losses red, gains green, white at ₹0 / 0` +
      (others.length ? ` · each cell the best over ${others.join(', ')}` : '');
  }
  for (const s of ['#metric', '#heat-x', '#heat-y']) $(s).addEventListener('change', drawHeat);

  async function submit(grid) {
    clearErrors();
    const body = collect(grid);
    if (!body) return;
    try {
      if (grid) {
        const r = await api('/api/backtest/grid-search', { method: 'POST', body });
        toast(`grid #${r.job_id} queued: ${r.combinations} combinations`); await loadJobs(); showJob(r.job_id);
      } else {
        const r = await api('/api/backtest/run', { method: 'POST', body });
        toast(`run #${r.run_id} queued`); await loadRuns(); showRun(r.run_id);
      }
      poll();
    } catch (e) {
      if (e.status === 400) fieldError(e.field, e.message); else $('#bt-err').textContent = e.message;
    }
  }
  $('#run-form').addEventListener('submit', e => { e.preventDefault(); submit(false); });
  $('#grid-btn').addEventListener('click', () => submit(true));

  // while anything runs: refresh every second (the bar moves with the worker's progress)
  let timer = null;
  async function poll() {
    clearTimeout(timer);
    const [runs, jobs] = await Promise.all([loadRuns(), loadJobs()]);
    const busy = x => x.status === 'pending' || x.status === 'running';
    const cur = runs.find(r => r.run_id === current);
    if (cur && currentRun && (cur.status !== currentRun.status || busy(cur))) {
      if (busy(cur)) { currentRun = { ...currentRun, ...cur }; $('#run-state').firstChild?.replaceChildren(badge(cur.status, cur.status), progressBar(cur), paramChips(cur.config_snapshot)); }
      else await showRun(current);
    }
    const cj = job && jobs.find(j => j.job_id === job.job_id);
    if (cj && cj.status !== job.status) await showJob(job.job_id);
    if (runs.some(busy) || jobs.some(busy)) timer = setTimeout(poll, 1000);
  }
  // ---- daily parity (engine/backtest/parity.py): one row per day, a click shows its diff
  async function loadParity() {
    const reports = (await api('/api/parity?limit=60')).reports;
    table($('#parity'), [
      { key: 'trade_date', label: 'Day', fmt: v => istDate(v) }, { key: 'strategies', label: 'Strategies', fmt: v => (v || []).join(', ') },
      { key: 'status', label: 'Result', fmt: v => badge(v === 'match' ? 'match' : v === 'no_data' ? 'no data' : 'differs', v === 'match' ? 'done' : v === 'no_data' ? 'muted' : 'error') },
      { key: 'summary', label: 'Matched', num: true, fmt: v => num(v?.matched ?? 0) },
      { key: 'summary', label: 'Flags', num: true, fmt: v => num(v?.flags ?? 0) },
      { key: 'summary', label: 'Entry slippage', num: true, fmt: v => rupee(v?.totals?.entry_slippage ?? 0) },
      { key: 'summary', label: 'Exit slippage', num: true, fmt: v => rupee(v?.totals?.exit_slippage ?? 0) },
      { key: 'summary', label: 'Charges Δ', num: true, fmt: v => pnl(v?.totals?.charges ?? 0) },
      { key: 'summary', label: 'P&L Δ', num: true, fmt: v => pnl(v?.totals?.pnl ?? 0) },
      { key: 'trade_date', label: '', fmt: v => el('button', { type: 'button', class: 'small', 'data-day': v, onclick: () => showParity(v) }, 'details') },
    ], reports, { sortable: false, empty: 'no parity report yet: one is built after each close (PARITY_DAILY) or by python -m engine parity run' });
  }
  async function showParity(day) {
    const r = await api(`/api/parity/${day}`);
    const rep = r.reports[r.reports.length - 1].report;
    $('#parity-day').hidden = false;
    $('#parity-title').textContent = `${istDate(day)}: ${num(rep.live_trades ?? 0)} live / ${num(rep.backtest_trades ?? 0)} backtest trades, ${num((rep.matched || []).length)} matched`;
    const flags = [...(rep.flags || []), ...(rep.notes || [])];
    $('#parity-flags').replaceChildren(...(flags.length ? flags : ['no difference above the tolerances']).map(f => el('li', {}, f)));
    table($('#parity-matched'), [
      { key: 'live_tag', label: 'Live trade' }, { key: 'backtest_tag', label: 'Backtest trade' },
      { key: 'entry_delay_s', label: 'Entry Δ s', num: true, fmt: v => num(v ?? 0) },
      { key: 'exit_delay_s', label: 'Exit Δ s', num: true, fmt: v => (v === null || v === undefined ? '—' : num(v)) },
      { key: 'pnl', label: 'P&L live', num: true, fmt: v => pnl(v) }, { key: 'backtest_pnl', label: 'P&L backtest', num: true, fmt: v => pnl(v) },
      { key: 'charges_diff', label: 'Charges Δ', num: true, fmt: v => pnl(v ?? 0) },
      { key: 'exit_reason', label: 'Exit live' }, { key: 'backtest_exit_reason', label: 'Exit backtest' },
    ], rep.matched || [], { sortable: false, empty: 'no matched trades' });
  }
  loadParity().catch(e => toast(e.message, true));

  on('backtest_progress', () => poll());
  const [runs, jobs] = await Promise.all([loadRuns(), loadJobs()]);
  // (the page reads nothing from the URL: the newest complete run is shown first)
  const shown = (runs.find(r => r.status === 'complete') || runs[0])?.run_id;
  if (shown) await showRun(shown);
  if (jobs[0]) await showJob(jobs[0].job_id);
  poll();
  document.body.dataset.ready = '1';
}

