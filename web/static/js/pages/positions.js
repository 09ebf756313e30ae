// Positions: each open trade expands to its legs (contract, side, qty, entry, LTP, P&L,
// greeks), the trade's greeks, its exit rules with distances, the payoff diagram (at expiry
// and today, Black-76 on the current surface) and a close button priced at what a close books.
import { $, api, badge, boot, closeButton, el, MtmTicks, on, setMtm, toast } from '../app.js';
import { contract, engineClock, istDateTime, num, pnl, rupee, signClass } from '../format.js';
import { lineChart } from '../charts.js';

const open = new Set(JSON.parse(sessionStorage.getItem('positions-open') || '[]'));
let positions = [];

const signed = (v) => rupee(v, { sign: true });
const entryText = (leg) => `${rupee(leg.entry_price)} ${leg.entry_kind}`;

function netEntry(p) {
  const n = p.net_entry;
  if (!n) return '—';
  return el('span', { class: 'nowrap' }, `${rupee(n.per_unit)} ${n.kind}`, el('span', { class: 'muted' }, ` (${rupee(n.rupees)})`));
}

function greekCells(g, cls = 'num') {
  if (!g) return ['Δ', 'Γ', 'Θ', 'Vega'].map(() => el('td', { class: cls + ' muted' }, '—'));
  return [el('td', { class: cls }, num(g.delta, 2)), el('td', { class: cls }, num(g.gamma, 4)),
    el('td', { class: cls + ' ' + signClass(g.theta) }, rupee(g.theta)), el('td', { class: cls + ' ' + signClass(g.vega) }, rupee(g.vega))];
}

function legsTable(p) {
  const head = ['Contract', 'Side', 'Qty', 'Entry', 'LTP', 'IV', 'P&L', 'Δ', 'Γ', 'Θ/day', 'Vega/pt'];
  const body = p.legs.map(l => el('tr', { class: 'leg' },
    el('td', { class: 'nowrap' }, l.contract || contract(l)),
    el('td', {}, badge(l.side, l.side === 'BUY' ? 'buy' : 'sell')),
    el('td', { class: 'num' }, num(l.qty)),
    el('td', { class: 'num' }, entryText(l)),
    el('td', { class: 'num', title: `mark: ${l.mark_source}` }, l.ltp === null ? '—' : rupee(l.ltp)),
    el('td', { class: 'num' }, l.iv === null ? '—' : `${num(l.iv, 2)}%`),
    el('td', { class: 'num' }, l.pnl === null ? '—' : pnl(l.pnl)),
    ...greekCells(l.delta === undefined ? null : l)));
  const total = el('tr', { class: 'total' }, el('td', { colspan: 7 }, 'Trade greeks'), ...greekCells(p.greeks));
  return el('div', { class: 'scroll-x' }, el('table', { class: 'legs' },
    el('thead', {}, el('tr', {}, head.map((h, i) => el('th', { class: i >= 2 ? 'num' : '' }, h)))),
    el('tbody', {}, body, total)));
}

function exitList(p) {
  const x = p.exits;
  if (!x) return el('p', { class: 'muted' }, 'no exit rules');
  if (x.problem) return el('p', { class: 'why' }, x.problem);
  const item = (r) => {
    let what;
    if (r.kind === 'stop' || r.kind === 'target') {
      what = [el('b', {}, `${r.label} ${signed(r.level)}`),
        r.distance === null ? '' : el('span', { class: 'muted' }, ` · ${rupee(Math.abs(r.distance))} ${Number(r.distance) >= 0 ? 'away' : 'past'}`),
        el('div', { class: 'muted small' }, `${r.basis}${r.base ? ` = ${rupee(r.base)}` : ''}`)];
    } else if (r.kind === 'spot') {
      what = [el('b', {}, r.label), el('span', { class: 'muted' }, ` · ${num(Math.abs(r.distance), 2)} points ${Number(r.distance) >= 0 ? 'away' : 'past'}`)];
    } else {
      const past = r.at && new Date(r.at) <= engineClock.now();
      what = [el('b', {}, r.label), el('span', { class: past ? 'why' : 'muted' }, ` · ${istDateTime(r.at)}${past ? ' (due)' : ''}`)];
    }
    const next = (x.next_time && r.kind === 'time' && r.at === x.next_time.at) || (x.nearest && r.kind === x.nearest.kind && r.level === x.nearest.level);
    return el('li', { class: next ? 'next' : '' }, what);
  };
  const lead = [];
  if (x.next_time) lead.push(`The next time exit: ${x.next_time.label}, ${istDateTime(x.next_time.at)}`);
  if (x.nearest) lead.push(`the nearest P&L level: ${x.nearest.label} (${rupee(Math.abs(x.nearest.distance))} away)`);
  return el('div', {}, el('p', { class: 'exit-lead' }, lead.join('; ') + (lead.length ? '.' : '')), el('ul', { class: 'exits' }, x.rules.map(item)));
}

function payoffChart(box, p) {
  const pay = p.payoff;
  if (!pay) { box.replaceChildren(el('p', { class: 'muted' }, (p.problems || []).join('; ') || 'no payoff')); return; }
  const marks = [{ x: pay.spot, label: `spot ${num(pay.spot, 2)}`, color: '#5aa9ff' },
    ...pay.breakevens.map(b => ({ x: b, label: `BE ${num(b, 0)}`, color: '#e3a93b' }))];
  lineChart(box, pay.spots, [
    { label: `at expiry ${pay.expiry}`, values: pay.at_expiry, color: '#3fbf6a', width: 2 },
    { label: 'today', values: pay.today, color: '#b07cff', dash: [5, 4] },
  ], { kind: 'number', xfmt: v => num(v, 0), marks, zero: true, height: 260, legend: true, xlabel: 'NIFTY' });
}

function detail(p) {
  const chart = el('div', { class: 'payoff', id: `payoff-${p.tag}` });
  const pay = p.payoff;
  const facts = el('dl', { class: 'kv compact' },
    el('dt', {}, 'Net entry'), el('dd', {}, netEntry(p)),
    el('dt', {}, 'Entry charges'), el('dd', {}, rupee(p.net_entry?.charges)),
    el('dt', {}, 'MFE / MAE'), el('dd', {}, pnl(p.mfe), ' / ', pnl(p.mae)),
    el('dt', {}, 'Spot'), el('dd', {}, p.spot === null ? '—' : num(p.spot, 2)),
    el('dt', {}, 'Marks from'), el('dd', {}, istDateTime(p.marked_at, { seconds: true })),
    el('dt', {}, 'Breakevens'), el('dd', {}, pay ? pay.breakevens.map(b => num(b, 2)).join(' / ') || 'none' : '—'),
    el('dt', {}, 'Max profit / loss'), el('dd', {}, pay ? [pay.max_profit === null ? 'unlimited' : pnl(pay.max_profit), ' / ', pay.max_loss === null ? 'unlimited' : pnl(pay.max_loss)] : '—'));
  const c = p.close_now || {};
  const closeBox = el('div', { class: 'close-box' }, closeButton(p, load),
    el('p', { class: 'muted small close-explain' }, closeText(p)),
    c.orders ? el('p', { class: 'small' }, 'Orders: ', c.orders.map(o => `${o.action} ${o.qty} ${o.contract} at the ${o.at}`).join(' · ')) : null);
  const node = el('div', { class: 'detail', 'data-detail': p.tag },
    el('div', { class: 'detail-grid' },
      el('div', { class: 'legs-box' }, legsTable(p), p.greeks ? el('p', { class: 'muted small' }, p.greeks.units) : null,
        (p.problems || []).length ? el('p', { class: 'why' }, p.problems.join('; ')) : null),
      el('div', { class: 'facts-box' }, facts, closeBox),
      el('div', { class: 'exits-box' }, el('h3', {}, 'Exit rules'), exitList(p)),
      el('div', { class: 'payoff-box' }, el('h3', {}, 'Payoff'), chart,
        el('p', { class: 'muted small' }, pay ? `${pay.note}; breakevens and spot marked.` : ''))));
  requestAnimationFrame(() => payoffChart(chart, p));
  return node;
}

// Why a close books a different figure than the MTM shown (the server's `explain`, formatted).
function closeText(p) {
  const c = p.close_now || {};
  if (c.pnl === null || c.pnl === undefined) return c.explain || '';
  const parts = [`The MTM ${signed(p.mtm)} already marks each leg at the touch (longs sold at the bid, shorts bought at the ask), after entry charges`];
  if (c.pnl_at_ltp !== null && c.pnl_at_ltp !== undefined) parts.push(`at LTP the legs show ${signed(c.pnl_at_ltp)}, so crossing the spread costs ${rupee(Number(c.pnl_at_ltp) - Number(p.mtm))}`);
  parts.push(`a close now also pays ${rupee(c.exit_charges)} exit charges`);
  if (Number(c.slippage)) parts.push(`and ${rupee(c.slippage)} paper slippage`);
  return parts.join('; ') + `: about ${signed(c.pnl)} if the touch has not moved.`;
}

function render() {
  const cards = positions.map(p => {
    const isOpen = open.has(p.tag);
    const toggle = () => { isOpen ? open.delete(p.tag) : open.add(p.tag); sessionStorage.setItem('positions-open', JSON.stringify([...open])); render(); };
    const head = el('div', { class: 'pos-head', role: 'button', tabindex: 0, 'aria-expanded': String(isOpen), onclick: toggle,
      onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(); } } },
      el('span', { class: 'caret' }, isOpen ? '▾' : '▸'),
      el('span', { class: 'tag' }, el('b', {}, p.tag), ' ', el('span', { class: 'muted' }, p.strategy), ' ', badge(p.mode)),
      el('span', { class: 'entry' }, netEntry(p)),
      el('span', { class: 'greeks muted' }, p.greeks ? `Δ ${num(p.greeks.delta, 1)} · Θ ${rupee(p.greeks.theta, { digits: 0 })}/day` : ''),
      el('span', { class: 'mtm' }, el('span', { class: 'muted small' }, 'MTM '), p.mtm === null ? '—' : pnl(p.mtm)),
      closeButton(p, load));
    return el('div', { class: 'position' + (isOpen ? ' open' : ''), 'data-key': p.tag }, head,
      p.hold ? el('div', { class: 'why small' }, `on hold: ${p.hold}`) : null, isOpen ? detail(p) : null);
  });
  $('#positions').replaceChildren(...(cards.length ? cards : [el('p', { class: 'muted' }, 'no open positions')]));
  const total = positions.reduce((s, p) => s + (Number(p.mtm) || 0), 0);
  $('#pos-summary').replaceChildren(`${positions.length} open · MTM `, pnl(total));
}

const ticks = new MtmTicks();
async function load() {
  try {
    const mark = ticks.mark();
    positions = ticks.withTicks((await api('/api/positions')).positions, mark);
    render();
  } catch (e) { toast(e.message, true); }
}

if (await boot()) {
  await load();
  // MTM in place: the row's cell changes, nothing else moves
  on('mtm', (d) => {
    for (const u of (d.positions || (d.tag ? [d] : []))) {
      ticks.record(u.tag, u.mtm);
      const p = positions.find(x => x.tag === u.tag); if (!p) continue;
      setMtm(p, u.mtm);
      const row = document.querySelector(`.position[data-key="${CSS.escape(u.tag)}"]`);
      const cell = row?.querySelector('.pos-head .mtm');
      if (cell) { cell.replaceChildren(el('span', { class: 'muted small' }, 'MTM '), pnl(u.mtm)); row.classList.remove('flash'); void row.offsetWidth; row.classList.add('flash'); }
      for (const b of document.querySelectorAll(`.close-btn[data-tag="${CSS.escape(u.tag)}"]`)) b.replaceWith(closeButton(p, load));
    }
    const total = positions.reduce((s, p) => s + (Number(p.mtm) || 0), 0);
    $('#pos-summary').replaceChildren(`${positions.length} open · MTM `, pnl(total));
  });
  on('position_opened', load); on('position_closed', load);
  setInterval(load, 30000);
}
