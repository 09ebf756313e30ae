// Trades: closed or open trades in a date range that defaults to the engine's clock (the
// last 30 days up to the engine's today), entry and exit as debit / credit (never a flipped
// sign), net P&L coloured; the orders in doubt and trades on hold; the journal.
import { $, api, badge, boot, el, on, table, toast } from '../app.js';
import { engineClock, istDate, istDateTime, num, pctPoints, pnl, rupee } from '../format.js';
import { holdActions, onHold, ordersPanel } from '../orders.js';

// Net premium per unit, positive = paid: show it as "₹86.55 debit" / "₹71.90 credit".
function premium(v) {
  if (v === null || v === undefined || v === '') return '—';
  const n = Number(v);
  return el('span', { class: 'nowrap' }, rupee(Math.abs(n)), el('span', { class: 'muted' }, n < 0 ? ' credit' : n > 0 ? ' debit' : ''));
}
const money = (v) => rupee(v);
const pnlCell = (v) => (v === null || v === undefined ? '—' : pnl(v));

if (await boot()) {
  $('#from').value = engineClock.daysBefore(30);
  $('#to').value = engineClock.today();
  $('#range-note').textContent = `dates follow the engine clock (${engineClock.kind === 'simulated' ? 'simulated' : 'real'}: ${istDate(engineClock.now())})`;
  const closedCols = [
    { key: 'closed_at', label: 'Closed', fmt: istDateTime }, { key: 'tag', label: 'Tag' },
    { key: 'strategy', label: 'Strategy' }, { key: 'mode', label: 'Mode', fmt: badge },
    { key: 'quantity', label: 'Qty', num: true, fmt: v => num(v) }, { key: 'entry_price', label: 'Entry', num: true, fmt: premium },
    { key: 'exit_price', label: 'Exit', num: true, fmt: premium }, { key: 'gross_pnl', label: 'Gross', num: true, fmt: pnlCell },
    { key: 'charges', label: 'Charges', num: true, fmt: money },
    { key: 'realized_pnl', label: 'Net P&L', num: true, fmt: pnlCell }, { key: 'exit_reason', label: 'Exit reason' },
  ];
  const openCols = [
    { key: 'opened_at', label: 'Opened', fmt: istDateTime }, { key: 'tag', label: 'Tag' },
    { key: 'strategy', label: 'Strategy' }, { key: 'mode', label: 'Mode', fmt: badge },
    { key: 'quantity', label: 'Qty', num: true, fmt: v => num(v) }, { key: 'entry_price', label: 'Entry', num: true, fmt: premium },
    { key: 'payload', label: 'MTM', num: true, fmt: p => pnlCell(p && p.mtm) },
    { key: 'hold', label: 'Hold', fmt: (_v, t) => onHold(t)
      ? [el('div', { class: 'why' }, t.payload.hold), holdActions(t, () => { loadTrades(); panel.load(); })] : '—' },
  ];
  async function loadTrades() {
    const q = new URLSearchParams({ status: $('#status').value, limit: 1000 });
    for (const k of ['from', 'to', 'strategy']) if ($('#' + k).value) q.set(k, $('#' + k).value);
    try {
      const r = await api('/api/trades?' + q);
      table($('#trades'), r.status === 'open' ? openCols : closedCols, r.trades,
        { empty: `no ${r.status} trades from ${istDate($('#from').value)} to ${istDate($('#to').value)}` });
      if (r.status === 'closed') {
        const total = r.trades.reduce((s, t) => s + Number(t.realized_pnl), 0);
        const wins = r.trades.filter(t => Number(t.realized_pnl) > 0).length;
        $('#summary').replaceChildren(`${r.count} trades · win rate ${r.count ? (100 * wins / r.count).toFixed(1) : '0.0'}% · net `, pnl(total));
      } else $('#summary').textContent = `${r.count} open`;
    } catch (e) { toast(e.message, true); }
  }
  async function editNotes(row) {
    const notes = prompt(`Notes for ${row.tag}`, row.operator_notes || '');
    if (notes === null) return;
    try { await api(`/api/journal/${encodeURIComponent(row.tag)}`, { method: 'PATCH', body: { notes } }); loadJournal(); }
    catch (e) { toast(e.message, true); }
  }
  async function loadJournal() {
    const r = await api('/api/journal?limit=300');
    table($('#journal'), [
      { key: 'trade_date', label: 'Day', fmt: istDate }, { key: 'tag', label: 'Tag' }, { key: 'strategy', label: 'Strategy' },
      { key: 'realized_pnl', label: 'P&L', num: true, fmt: pnlCell },
      { key: 'exit_reason', label: 'Exit' }, { key: 'entry_iv', label: 'IV in', num: true, fmt: v => pctPoints(v, 2) },
      { key: 'exit_iv', label: 'IV out', num: true, fmt: v => pctPoints(v, 2) }, { key: 'mfe', label: 'MFE', num: true, fmt: pnlCell },
      { key: 'mae', label: 'MAE', num: true, fmt: pnlCell }, { key: 'ai_verdict', label: 'AI' },
      { key: 'event_risk_label', label: 'Event' },
      { key: 'operator_notes', label: 'Notes', fmt: (v, row) => el('a', { href: '#', onclick: (e) => { e.preventDefault(); editNotes(row); } }, v || '+ add') },
    ], r.entries, { empty: 'no journal entries' });
  }
  const panel = ordersPanel({ doubt: $('#doubt'), doubtSummary: $('#doubt-summary'), held: $('#held'),
    heldSummary: $('#held-summary'), onTradeChange: () => loadTrades() });
  const loadPanel = (opts) => panel.load(opts).catch((e) => toast(e.message, true));
  $('#apply').addEventListener('click', loadTrades);
  $('#doubt-refresh').addEventListener('click', () => loadPanel({ force: true }));
  on('command_result', () => loadPanel());
  on('position_closed', () => loadTrades());
  setInterval(() => loadPanel(), 20000);
  await Promise.all([loadTrades(), loadJournal(), loadPanel()]);
}
