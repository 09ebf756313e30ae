import { $, api, badge, boot, daysAgo, el, money, num, on, signCls, table, toast, when } from '../app.js';
import { holdActions, onHold, ordersPanel } from '../orders.js';

if (await boot({ live: true })) {
  $('#from').value = daysAgo(30);
  const closedCols = [
    { key: 'closed_at', label: 'Closed', fmt: when }, { key: 'tag', label: 'Tag' },
    { key: 'strategy', label: 'Strategy' }, { key: 'mode', label: 'Mode', fmt: badge },
    { key: 'quantity', label: 'Qty', num: true }, { key: 'entry_price', label: 'Entry', num: true, fmt: money },
    { key: 'exit_price', label: 'Exit', num: true, fmt: money }, { key: 'charges', label: 'Charges', num: true, fmt: money },
    { key: 'realized_pnl', label: 'Net P&L', num: true, fmt: money, cls: signCls }, { key: 'exit_reason', label: 'Exit reason' },
  ];
  const openCols = [
    { key: 'opened_at', label: 'Opened', fmt: when }, { key: 'tag', label: 'Tag' },
    { key: 'strategy', label: 'Strategy' }, { key: 'mode', label: 'Mode', fmt: badge },
    { key: 'quantity', label: 'Qty', num: true }, { key: 'entry_price', label: 'Entry', num: true, fmt: money },
    { key: 'payload', label: 'MTM', num: true, fmt: p => money(p && p.mtm) },
    { key: 'hold', label: 'Hold', fmt: (_v, t) => onHold(t)
      ? [el('div', { class: 'why' }, t.payload.hold), holdActions(t, () => { loadTrades(); panel.load(); })] : '—' },
  ];
  async function loadTrades() {
    const q = new URLSearchParams({ status: $('#status').value, limit: 1000 });
    for (const k of ['from', 'to', 'strategy']) if ($('#' + k).value) q.set(k, $('#' + k).value);
    try {
      const r = await api('/api/trades?' + q);
      table($('#trades'), r.status === 'open' ? openCols : closedCols, r.trades, { empty: 'no trades in range' });
      if (r.status === 'closed') {
        const pnl = r.trades.reduce((s, t) => s + Number(t.realized_pnl), 0);
        const wins = r.trades.filter(t => Number(t.realized_pnl) > 0).length;
        $('#summary').replaceChildren(`${r.count} trades · win rate ${r.count ? (100 * wins / r.count).toFixed(0) : 0}% · net `,
          el('b', { class: signCls(pnl) }, money(pnl)));
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
      { key: 'trade_date', label: 'Day' }, { key: 'tag', label: 'Tag' }, { key: 'strategy', label: 'Strategy' },
      { key: 'realized_pnl', label: 'P&L', num: true, fmt: money, cls: signCls },
      { key: 'exit_reason', label: 'Exit' }, { key: 'entry_iv', label: 'IV in', num: true, fmt: v => num(v) },
      { key: 'exit_iv', label: 'IV out', num: true, fmt: v => num(v) }, { key: 'mfe', label: 'MFE', num: true, fmt: money },
      { key: 'mae', label: 'MAE', num: true, fmt: money }, { key: 'ai_verdict', label: 'AI' },
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
  setInterval(() => loadPanel(), 20000);
  await Promise.all([loadTrades(), loadJournal(), loadPanel()]);
}
