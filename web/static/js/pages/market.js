// Market: the newest IV sample, term structure, smile, ATM IV history (session-gap free),
// realized vs implied per session, and the near/far futures spread with CAL_ARB's z-score.
import { $, api, boot, el } from '../app.js';
import { lineChart } from '../charts.js';
import { engineClock, istDate, istDateTime, num, pctPoints, rupee } from '../format.js';

const n = v => (v === null || v === undefined || v === '' ? null : Number(v));
const ivAxis = v => pctPoints(v, 1);
const ms = iso => Date.parse(iso);

function kv(pairs) {
  return pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]);
}

function stat(k, v, id) {
  return el('div', { class: 'stat' }, el('span', { class: 'k' }, k), el('span', { class: 'v', id }, v));
}

async function surface() {
  const d = await api('/api/market/surface');
  const s = d.snapshot;
  if (!s) {
    $('#snap').replaceChildren(el('dt', {}, d.reason || 'no IV snapshots yet'));
    lineChart($('#term'), [], [], { empty: 'no IV snapshots yet' });
    lineChart($('#smile'), [], [], { empty: 'no IV snapshots yet' });
    return;
  }
  $('#snap-at').textContent = istDateTime(s.created_at);
  $('#snap').replaceChildren(...kv([
    ['Spot', num(s.spot, 2)],
    ['Near ATM IV', pctPoints(s.near_atm_iv, 2)], ['Far ATM IV', pctPoints(s.far_atm_iv, 2)],
    ['ATM call / put IV', `${pctPoints(s.atm_call_iv, 2)} / ${pctPoints(s.atm_put_iv, 2)}`],
    ['25Δ skew (put − call)', pctPoints(s.skew, 2)],
    ['Near / far straddle', `${rupee(s.near_straddle)} / ${rupee(s.far_straddle)}`],
    ['Session range', s.realized_range === null ? '—' : `${num(s.realized_range, 1)} pts`],
    ['Near expiry', s.near_expiry ? `${istDate(s.near_expiry)} (${s.near_dte}d)` : '—'],
    ['Far expiry', s.far_expiry ? `${istDate(s.far_expiry)} (${s.far_dte}d)` : '—'],
  ]));
  const ts = d.term_structure || [];
  const byDte = new Map(ts.map(t => [Number(t.dte), t]));
  lineChart($('#term'), ts.map(t => Number(t.dte)), [{ label: 'ATM IV', values: ts.map(t => n(t.atm_iv)), points: true }], {
    kind: 'number', yfmt: ivAxis, height: 200, empty: 'no term structure in the newest sample',
    xfmt: v => { const t = byDte.get(Math.round(v)); return t ? `${istDate(t.expiry).slice(0, 6)} ${t.dte}d` : `${Math.round(v)}d`; },
  });
  const near = d.smile, far = d.far_smile;
  const strikes = [...new Set([...(near?.rows || []), ...(far?.rows || [])].map(r => r.strike))].sort((a, b) => a - b);
  const col = (sm, key) => { const m = new Map((sm?.rows || []).map(r => [r.strike, r[key]])); return strikes.map(k => n(m.get(k))); };
  const series = [];
  if (near) series.push({ label: `CE ${istDate(near.expiry).slice(0, 6)}`, values: col(near, 'ce_iv') },
    { label: `PE ${istDate(near.expiry).slice(0, 6)}`, values: col(near, 'pe_iv') });
  if (far) series.push({ label: `CE ${istDate(far.expiry).slice(0, 6)}`, values: col(far, 'ce_iv'), dash: [5, 4] },
    { label: `PE ${istDate(far.expiry).slice(0, 6)}`, values: col(far, 'pe_iv'), dash: [5, 4] });
  $('#smile-note').textContent = near ? `near ${istDate(near.expiry)}${far ? `, far ${istDate(far.expiry)} (dashed)` : ''}` : '';
  lineChart($('#smile'), strikes, series, {
    kind: 'number', yfmt: ivAxis, xfmt: v => num(v), height: 200, empty: 'no smile in the newest sample',
    marks: [{ x: Number(s.spot), label: 'spot', color: '#e3a93b' }],
  });
}

async function history() {
  const from = $('#from').value, to = $('#to').value;
  const d = await api(`/api/market/iv-history?from=${from}&to=${to}`);
  const r = d.rows;
  lineChart($('#history'), r.map(x => ms(x.created_at)), [
    { label: 'near ATM IV', values: r.map(x => n(x.near_atm_iv)) },
    { label: 'far ATM IV', values: r.map(x => n(x.far_atm_iv)) },
  ], { kind: 'ordinal', yfmt: ivAxis, height: 220, empty: `no IV samples between ${istDate(from)} and ${istDate(to)}` });
}

async function realized() {
  const from = engineClock.daysBefore(60), to = $('#to').value;
  const d = await api(`/api/market/realized?from=${from}&to=${to}`);
  const ss = d.sessions || [];
  $('#rv-note').textContent = `per session · close-to-close over ${d.rv_sessions} sessions`;
  lineChart($('#realized'), ss.map(x => ms(`${x.trade_date}T15:30:00+05:30`)), [
    { label: 'near ATM IV (last sample)', values: ss.map(x => n(x.near_atm_iv)), points: true },
    { label: 'intraday realized', values: ss.map(x => n(x.session_rv)), points: true },
    { label: `close-to-close ${d.rv_sessions}s`, values: ss.map(x => n(x.close_to_close_rv)), points: true, dash: [5, 4] },
  ], { kind: 'ordinal', yfmt: ivAxis, xfmt: v => { const x = Math.abs(v - Math.round(v)) > 1e-6 ? null : ss[Math.round(v)]; return x ? istDate(x.trade_date).slice(0, 6) : ''; },
    height: 220, empty: d.reason || 'no sessions recorded' });
  const ic = d.ic_last;
  const closes = ss.length ? ss[ss.length - 1].closes_available : 0;
  $('#rv-ic').textContent = [
    closes < d.rv_sessions + 1 ? `Close-to-close needs ${d.rv_sessions + 1} daily closes; ${closes} recorded.` : '',
    ic ? `IC's last vol check (${istDateTime(ic.created_at)}): near ATM IV ${pctPoints(100 * n(ic.near_atm_iv_trading ?? ic.near_atm_iv))} in trading time vs realized ${pctPoints(100 * n(ic.realized_vol))}${ic.iv_rv_ratio ? `, IV/RV ${Number(ic.iv_rv_ratio).toFixed(2)}` : ''}.` : '',
    'Implied: calendar-basis ATM IV as stored; realized: annualized on 252 sessions.',
  ].filter(Boolean).join(' ');
}

async function spread() {
  const d = await api('/api/market/spread');
  const ss = d.samples || [];
  const last = ss[ss.length - 1];
  const entry = n(d.entry_z), exit = n(d.exit_z);
  $('#spread-note').textContent = last ? `far ${istDate(last.far_expiry)} − near ${istDate(last.near_expiry)} · CAL_ARB ${d.enabled ? 'on' : 'off'}` : 'far − near';
  $('#spread-stats').replaceChildren(
    stat('Near fut', last ? rupee(last.near_price) : '—'), stat('Far fut', last ? rupee(last.far_price) : '—'),
    stat('Spread', last ? rupee(last.spread) : '—', 'spread-now'),
    stat('z', last && last.z !== null ? Number(last.z).toFixed(2) : '—', 'z-now'),
    stat('Mean ± sd', last && last.mean !== null ? `${num(last.mean, 2)} ± ${num(last.stdev, 2)}` : '—'),
  );
  const x = ss.map(s => ms(s.sampled_at));
  lineChart($('#spread'), x, [{ label: 'spread', values: ss.map(s => n(s.spread)) }],
    { kind: 'ordinal', yfmt: v => num(v, 1), height: 150, empty: 'no spread samples (the scanner records one each cycle with both futures quoted)' });
  const flat = v => ss.map(() => v);
  lineChart($('#zscore'), x, [
    { label: 'z', values: ss.map(s => n(s.z)) },
    { label: `entry +${entry}`, values: flat(entry), color: '#f0564d', dash: [4, 4] },
    { label: `entry −${entry}`, values: flat(-entry), color: '#f0564d', dash: [4, 4] },
    { label: `exit +${exit}`, values: flat(exit), color: '#3fbf6a', dash: [2, 4] },
    { label: `exit −${exit}`, values: flat(-exit), color: '#3fbf6a', dash: [2, 4] },
  ], { kind: 'ordinal', yfmt: v => Number(v).toFixed(1), height: 150, zero: true,
    empty: `z-score needs ${d.min_samples} samples of the current futures pair; ${ss.length} recorded` });
  $('#z-note').textContent = `z as CAL_ARB computes it: this sample against the ${d.window} before it (at least ${d.min_samples}); `
    + 'SHORT_SPREAD above +entry, LONG_SPREAD below −entry, exit inside ±exit. The history is cleared when the futures roll.';
}

if (await boot()) {
  $('#to').value = engineClock.today();
  $('#from').value = engineClock.daysBefore(7);
  $('#reload').addEventListener('click', () => { history(); realized(); });
  const jobs = [surface(), history(), realized(), spread()];
  for (const r of await Promise.allSettled(jobs)) if (r.status === 'rejected') console.warn(r.reason);
}
