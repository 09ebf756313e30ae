import { $, api, boot, el, money, num, time, when } from '../app.js';
import { lineChart } from '../charts.js';

const n = v => (v === null || v === undefined ? NaN : Number(v));

if (await boot()) {
  const snaps = (await api('/api/iv-snapshots?limit=500')).snapshots;
  const s = snaps[0];
  if (!s) {
    $('#snap').replaceChildren(el('dt', {}, 'no IV snapshots yet'));
  } else {
    $('#snap-at').textContent = when(s.created_at);
    const kv = [['Spot', num(s.spot, 2)], ['Near ATM IV', num(s.near_atm_iv)], ['Far ATM IV', num(s.far_atm_iv)],
      ['ATM call / put IV', `${num(s.atm_call_iv)} / ${num(s.atm_put_iv)}`], ['Skew', num(s.skew)],
      ['Near / far straddle', `${money(s.near_straddle)} / ${money(s.far_straddle)}`], ['Realized range', num(s.realized_range, 1)],
      ['Expiries', `${s.near_expiry || '—'} (${s.near_dte ?? '—'}d) / ${s.far_expiry || '—'} (${s.far_dte ?? '—'}d)`]];
    $('#snap').replaceChildren(...kv.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    const ts = (s.payload || {}).term_structure || {};
    const rank = k => { const i = ['near', 'mid', 'far'].indexOf(k); return i < 0 ? 9 : i; };
    const keys = Object.keys(ts).sort((a, b) => rank(a) - rank(b) || (ts[a]?.dte ?? 0) - (ts[b]?.dte ?? 0));
    const termPts = keys.map((k, i) => { const v = ts[k]; return [i, typeof v === 'object' && v ? n(v.atm_iv ?? v.iv) : n(v)]; });
    lineChart($('#term'), [{ name: 'ATM IV', points: termPts }], {
      xfmt: v => (Number.isInteger(v) ? keys[v] ?? '' : ''), empty: 'no term structure in payload' });
    const smile = (s.payload || {}).smile || [];
    const rows = Array.isArray(smile) ? smile : Object.entries(smile).map(([k, v]) => ({ strike: k, ...v }));
    lineChart($('#smile'), [
      { name: 'CE', points: rows.map(r => [n(r.strike), n(r.ce_iv ?? r.call_iv)]) },
      { name: 'PE', points: rows.map(r => [n(r.strike), n(r.pe_iv ?? r.put_iv)]) },
    ], { xfmt: v => v.toFixed(0), empty: 'no smile in payload' });
  }
  const hist = snaps.slice().reverse();
  lineChart($('#history'), [
    { name: 'near', points: hist.map(r => [Date.parse(r.created_at), n(r.near_atm_iv)]) },
    { name: 'far', points: hist.map(r => [Date.parse(r.created_at), n(r.far_atm_iv)]) },
  ], { xfmt: v => time(new Date(v).toISOString()).slice(0, 5), empty: 'no history' });
}
