// Option chain: CE | strike | PE of the newest recorded sample, per expiry; ATM, max pain and
// open positions marked; PCR and max pain in the header. Refreshes every 30 s.
import { $, api, boot, el } from '../app.js';
import { contract, istDate, istDateTime, num, pctPoints, rupee } from '../format.js';

const REFRESH_MS = 30000;
let expiry = null;  // the expiry shown (the page reads nothing from the URL)

const price = v => (v === null || v === undefined ? '—' : rupee(v));
const signedNum = v => (v === null || v === undefined ? '—' : (v > 0 ? '+' : '') + num(v));
const delta = v => (v === null || v === undefined ? '—' : Number(v).toFixed(2));
const ratio = v => (v === null || v === undefined ? '—' : Number(v).toFixed(2));

function stat(k, v, id) {
  return el('div', { class: 'stat' }, el('span', { class: 'k' }, k), el('span', { class: 'v', id }, v));
}

function oiCell(v, maxOi, cls) {
  const td = el('td', { class: `num oi ${cls}` });
  if (v !== null && v !== undefined && maxOi > 0) {
    const bar = el('i', { class: 'bar' });
    bar.style.width = `${Math.round((100 * v) / maxOi)}%`;
    td.append(bar);
  }
  td.append(el('span', {}, num(v)));
  return td;
}

function chgCell(v, cls) {
  return el('td', { class: `num wide ${cls} ${v > 0 ? 'pos' : v < 0 ? 'neg' : ''}` }, signedNum(v));
}

function legMarks(row, type, exp) {
  return row.positions.filter(p => p.option_type === type).map(p => el('span', {
    class: 'mark pos-leg', title: `${p.tag} (${p.strategy}, ${p.mode}): ${p.side} ${p.quantity} `
      + `${contract({ expiry: exp, strike: row.strike, option_type: type })} @ ${rupee(p.entry_price)}`,
    'data-tag': p.tag,
  }, `${p.side === 'SELL' ? 'S' : 'B'} ${num(p.quantity)}`));
}

function render(d) {
  const exp = d.expiry.expiry;
  $('#chain-at').textContent = `sample ${istDateTime(d.created_at)}`;
  $('#expiries').replaceChildren(...d.expiries.map(x => el('button', {
    class: x.expiry === exp ? 'on' : '', 'data-expiry': x.expiry,
    title: `ATM IV ${pctPoints(x.atm_iv)}`,
    onclick: () => { expiry = x.expiry; load(); },
  }, `${istDate(x.expiry)} · ${x.dte}d`, x.open_legs ? el('span', { class: 'legs' }, `● ${x.open_legs}`) : null)));
  const s = d.stats || {};
  $('#chain-stats').replaceChildren(
    stat('Spot', num(d.spot, 2), 'spot'),
    stat('Forward', num(d.expiry.forward, 2)),
    stat('ATM', num(d.expiry.atm_strike), 'atm'),
    stat('ATM IV', pctPoints(d.expiry.atm_iv)),
    stat('PCR (OI)', ratio(s.pcr_oi), 'pcr'),
    stat('PCR (volume)', ratio(s.pcr_volume)),
    stat('Max pain', num(s.max_pain), 'max-pain'),
    stat('CE / PE OI', `${num(s.ce_oi)} / ${num(s.pe_oi)}`),
    stat('Lot', num(d.lot_size)),
  );
  const basis = d.oi_change || {};
  const outside = (d.positions_outside_window || []).map(p => `${p.tag} ${p.side} ${p.quantity} `
    + contract({ expiry: exp, strike: p.strike, option_type: p.option_type }));
  $('#chain-note').textContent = [
    `PCR and max pain over all ${num(s.strikes)} listed strikes; the table shows ${d.half_width} each side of ATM.`,
    basis.basis ? `OI change: against ${istDateTime(basis.created_at)} (the previous session's last recorded chain).`
      : `OI change: ${basis.reason || 'unknown'}.`,
    outside.length ? `Open legs outside the table: ${outside.join('; ')}.` : '',
  ].filter(Boolean).join(' ');
  const maxOi = Math.max(0, ...d.rows.flatMap(r => [r.ce.oi || 0, r.pe.oi || 0]));
  const head = el('thead', {},
    el('tr', { class: 'group' }, el('th', { class: 'ce', colspan: 8 }, 'CALLS (CE)'), el('th', { class: 'ce' }, ''),
      el('th', { class: 'pe', colspan: 8 }, 'PUTS (PE)')),
    el('tr', {}, ...['OI chg', 'OI', 'Volume', 'IV', 'Δ', 'Bid', 'Ask', 'LTP'].map((h, i) => el('th', { class: `num${i === 0 || i === 2 ? ' wide' : ''}` }, h)),
      el('th', { class: 'ce' }, 'Strike'),
      ...['LTP', 'Bid', 'Ask', 'Δ', 'IV', 'Volume', 'OI', 'OI chg'].map((h, i) => el('th', { class: `num${i === 5 || i === 7 ? ' wide' : ''}` }, h))));
  const body = el('tbody', {}, d.rows.map(r => {
    const c = r.ce, p = r.pe;
    const ci = c.itm ? ' itm' : '', pi = p.itm ? ' itm' : '';
    const strike = el('td', { class: 'strike' }, num(r.strike),
      r.atm ? el('span', { class: 'mark atm-tag' }, 'ATM') : null,
      r.max_pain ? el('span', { class: 'mark pain', title: 'max pain' }, 'MAX PAIN') : null);
    return el('tr', { class: [r.atm ? 'atm' : '', r.positions.length ? 'has-pos' : ''].join(' '), 'data-strike': r.strike },
      chgCell(c.oi_change, 'ce-side' + ci), oiCell(c.oi, maxOi, 'ce-side' + ci),
      el('td', { class: 'num wide' + ci }, num(c.volume)), el('td', { class: 'num' + ci }, pctPoints(c.iv)),
      el('td', { class: 'num' + ci }, delta(c.delta)), el('td', { class: 'num' + ci }, price(c.bid)),
      el('td', { class: 'num' + ci }, price(c.ask)),
      el('td', { class: 'num ce-ltp' + ci }, price(c.ltp), ...legMarks(r, 'CE', exp)),
      strike,
      el('td', { class: 'num pe-ltp' + pi }, ...legMarks(r, 'PE', exp), price(p.ltp)),
      el('td', { class: 'num' + pi }, price(p.bid)), el('td', { class: 'num' + pi }, price(p.ask)),
      el('td', { class: 'num' + pi }, delta(p.delta)), el('td', { class: 'num' + pi }, pctPoints(p.iv)),
      el('td', { class: 'num wide' + pi }, num(p.volume)), oiCell(p.oi, maxOi, 'pe-side' + pi),
      chgCell(p.oi_change, 'pe-side' + pi));
  }));
  const box = $('#chain');
  box.replaceChildren(el('table', { class: 'chain' }, head, body));
  box.dataset.expiry = exp;
  const atm = box.querySelector('tr.atm');
  if (atm && !box.dataset.scrolled) { box.scrollTop = atm.offsetTop - box.clientHeight / 2; box.dataset.scrolled = '1'; }
}

async function load() {
  let d;
  try {
    d = await api('/api/market/chain' + (expiry ? `?expiry=${encodeURIComponent(expiry)}` : ''));
  } catch (e) {
    if (e.status === 400 && expiry) { expiry = null; return load(); }  // that expiry is gone
    $('#chain-note').textContent = e.message; return;
  }
  if (!d.rows) {
    $('#chain').replaceChildren(el('p', { class: 'muted' }, d.reason || 'no chain recorded'));
    $('#chain-stats').replaceChildren();
    $('#expiries').replaceChildren();
    return;
  }
  render(d);
}

if (await boot()) {
  await load();
  setInterval(load, REFRESH_MS);
}
