import { $, api, badge, boot, el, money, on, signCls, table, time, toast, when } from '../app.js';
import { lineChart } from '../charts.js';

if (await boot()) {
  let positions = [];
  let realized = 0;
  const posTable = table($('#positions'), [
    { key: 'tag', label: 'Tag' },
    { key: 'strategy', label: 'Strategy' },
    { key: 'mode', label: 'Mode', fmt: badge },
    { key: 'quantity', label: 'Qty', num: true },
    { key: 'entry_price', label: 'Entry', num: true, fmt: money },
    { key: 'mtm', label: 'MTM', num: true, fmt: money, cls: signCls },
    { key: 'opened_at', label: 'Opened', fmt: when },
    { key: 'tag', label: '', fmt: (tag) => el('button', { class: 'danger', onclick: () => closeTrade(tag) }, 'Close') },
  ], [], { rowKey: 'tag', empty: 'no open positions' });

  async function closeTrade(tag) {
    if (!confirm(`Close ${tag} now at market?`)) return;
    try {
      const r = await api('/api/commands', { method: 'POST', body: { kind: 'close_trade', payload: { tag } } });
      toast(`close_trade queued (command ${r.command_id})`);
    } catch (e) { toast(e.message, true); }
  }

  function renderPnl() {
    const unrealized = positions.reduce((s, p) => s + (Number(p.mtm) || 0), 0);
    const total = realized + unrealized;
    const t = $('#pnl-total');
    t.textContent = money(total); t.className = 'big ' + signCls(total);
    $('#pnl-unrealized').textContent = money(unrealized);
    $('#pnl-unrealized').className = signCls(unrealized);
  }

  async function loadPnl() {
    const p = await api('/api/pnl/today');
    realized = Number(p.realized);
    $('#pnl-date').textContent = p.date;
    $('#pnl-realized').textContent = money(p.realized);
    $('#pnl-realized').className = signCls(p.realized);
    $('#pnl-counts').textContent = `${p.trades_closed} / ${p.wins} / ${p.losses}`;
    $('#pnl-charges').textContent = money(p.charges);
    renderPnl();
  }
  async function loadPositions() {
    positions = (await api('/api/positions')).positions;
    posTable.update(positions);
    $('#h-open').textContent = positions.length;
    renderPnl();
  }
  async function loadEngine() {
    const h = await fetch('/api/health').then(r => r.json());
    $('#h-status').replaceChildren(badge(h.status, h.status === 'ok' ? 'done' : 'error'));
    $('#h-age').textContent = h.engine_heartbeat_age_s === null ? 'none' : `${h.engine_heartbeat_age_s}s`;
    $('#h-token').textContent = h.token_expires_at ? when(h.token_expires_at) : '—';
    const r = await api('/api/risk');
    $('#h-risk').textContent = r.paused ? `PAUSED: ${r.state.pause_reason}` : 'allowed';
    $('#h-risk').className = r.paused ? 'neg' : 'pos';
  }
  async function loadEquity() {
    const pts = (await api('/api/pnl/equity?limit=365')).points;
    lineChart($('#equity'), [{ name: 'equity', points: pts.map(p => [Date.parse(p.trade_date), Number(p.equity)]) }],
      { zero: true, xfmt: v => new Date(v).toISOString().slice(5, 10), yfmt: v => (v / 1000).toFixed(1) + 'k', empty: 'no closed trades yet' });
  }

  function feed(ev) {
    const d = ev.data || {};
    const text = d.tag ? `${d.tag} ${d.mtm !== undefined ? money(d.mtm) : ''}` : JSON.stringify(d).slice(0, 90);
    $('#feed').prepend(el('div', {}, el('span', { class: 'muted' }, time(ev.ts), ' '), el('b', {}, ev.kind), ' ', text));
    while ($('#feed').childElementCount > 200) $('#feed').lastChild.remove();
  }

  function applyMtm(d) {
    const updates = d.positions || (d.tag ? [d] : []);
    for (const u of updates) {
      const p = positions.find(x => x.tag === u.tag);
      if (p) p.mtm = u.mtm;
    }
    posTable.update(positions);
    for (const u of updates) document.querySelector(`tr[data-key="${CSS.escape(u.tag)}"]`)?.classList.add('flash');
    $('#mtm-at').textContent = 'MTM ' + time(new Date().toISOString());
    renderPnl();
  }

  on('mtm', (d) => applyMtm(d));
  on('position_opened', () => { loadPositions(); loadPnl(); });
  on('position_closed', () => { loadPositions(); loadPnl(); loadEquity(); });
  on('risk_paused', loadEngine); on('risk_resumed', loadEngine);
  on('*', (_d, ev) => { if (ev.kind !== 'hello' && ev.kind !== 'heartbeat') feed(ev); });

  await Promise.all([loadPositions(), loadPnl(), loadEngine(), loadEquity()]);
  setInterval(() => { loadPnl(); loadEngine(); }, 30000);
}
