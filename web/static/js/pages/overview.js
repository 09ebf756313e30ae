// Overview: today's P&L, the engine, the equity curve, open positions with MTM updated in
// place, and a live feed of what happened, in sentences (MTM ticks update the table instead).
import { $, api, badge, boot, closeButton, el, MtmTicks, on, setMtm, toast } from '../app.js';
import { duration, engineClock, istDate, istDateTime, istTime, num, pnl, rupee } from '../format.js';
import { lineChart } from '../charts.js';

// ---- the feed: one sentence per event kind ----------------------------------------------
const premium = (v) => {
  if (v === null || v === undefined || v === '') return '';
  const n = Number(v);
  return `${rupee(Math.abs(n))} ${n < 0 ? 'credit' : 'debit'}`;
};
const GROUP = {
  position_opened: 'trades', position_closed: 'trades', risk_paused: 'risk', risk_resumed: 'risk',
  entry_denied: 'risk', order_rejected: 'risk', alert: 'risk', command_result: 'commands',
  actor_restarted: 'system', backtest_progress: 'system', reconnected: 'system',
};
function sentence(kind, d) {
  switch (kind) {
    case 'position_opened':
      return [`Opened ${d.tag} (${d.strategy}, ${d.stage || 'paper'})`, d.entry_premium !== undefined && d.entry_premium !== null ? `: ${premium(d.entry_premium)}` : '', '.'];
    case 'position_closed':
      return [`Closed ${d.tag} (${d.strategy}): `, d.realized_pnl !== null && d.realized_pnl !== undefined ? pnl(d.realized_pnl) : 'P&L not known yet', d.reason ? ` — ${d.reason}` : '', '.'];
    case 'risk_paused':
      return [`Entries paused${d.stage ? ` for ${d.stage}` : ''} by ${d.source || 'risk'}: ${d.reason}`, d.paused_until ? ` (until ${istDateTime(d.paused_until)})` : ' (until resumed)', '.'];
    case 'risk_resumed':
      return [`Entries resumed by ${d.source || 'risk'}${d.reason ? `: ${d.reason}` : ''}.`];
    case 'entry_denied':
      return [`Entry of ${d.strategy} ${d.tag} refused by risk: ${d.reason}.`];
    case 'order_rejected':
      return [`Order of ${d.strategy} ${d.tag} rejected${d.broker_code ? ` (${d.broker_code})` : ''}: ${d.reason}.`];
    case 'alert':
      return [`Alert from ${d.source || 'engine'}: ${d.text}`];
    case 'command_result':
      return [`Command #${d.id} ${String(d.kind || '').replace(/_/g, ' ')} ${d.status === 'done' ? 'done' : d.status === 'error' ? 'failed (see Risk → Recent commands)' : d.status}.`];
    case 'actor_restarted':
      return d.level !== undefined
        ? [`Engine part ${d.name} escalated (level ${d.level}): ${d.reason}.`]
        : [`Engine part ${d.name} restarted (attempt ${d.attempt}).`];
    case 'backtest_progress': {
      const what = d.run_id ? `Backtest run #${d.run_id}` : d.job_id ? `Grid job #${d.job_id}` : 'Backtest';
      const part = d.total ? ` ${num(d.done)}/${num(d.total)}` : d.pct !== undefined ? ` ${num(d.pct)}%` : '';
      return [`${what}${d.strategy ? ` (${d.strategy})` : ''} ${d.status || 'running'}${part}${d.eta_s ? `, ${duration(d.eta_s)} left` : ''}.`];
    }
    case 'reconnected':
      return ['The live feed reconnected to the engine\'s events.'];
    default: {
      const parts = Object.entries(d || {}).filter(([, v]) => v !== null && typeof v !== 'object').slice(0, 6).map(([k, v]) => `${k.replace(/_/g, ' ')} ${v}`);
      return [`${kind.replace(/_/g, ' ')}${parts.length ? ': ' + parts.join(', ') : ''}.`];
    }
  }
}

if (await boot()) {
  let positions = [];
  let realized = 0;
  let filter = 'all';

  function renderPnl() {
    const unrealized = positions.reduce((s, p) => s + (Number(p.mtm) || 0), 0);
    $('#pnl-total').replaceChildren(pnl(realized + unrealized));
    $('#pnl-unrealized').replaceChildren(pnl(unrealized));
  }

  function renderPositions() {
    const cards = positions.map(p => el('div', { class: 'position', 'data-key': p.tag },
      el('div', { class: 'pos-head' },
        el('span', { class: 'tag' }, el('a', { href: '/positions' }, el('b', {}, p.tag)), ' ', el('span', { class: 'muted' }, p.strategy), ' ', badge(p.mode)),
        el('span', { class: 'legs-cell' }, p.legs.map(l => el('span', { class: 'nowrap small leg-chip' }, `${l.side === 'BUY' ? '+' : '−'}${num(l.qty)} ${l.contract}`))),
        el('span', { class: 'mtm' }, el('span', { class: 'muted small' }, 'MTM '), p.mtm === null ? '—' : pnl(p.mtm)),
        closeButton(p, loadPositions))));
    $('#positions').replaceChildren(...(cards.length ? cards : [el('p', { class: 'muted' }, 'no open positions')]));
  }

  async function loadPnl() {
    const p = await api('/api/pnl/today');
    realized = Number(p.realized);
    $('#pnl-date').textContent = istDate(p.date);
    $('#pnl-realized').replaceChildren(pnl(p.realized));
    $('#pnl-counts').textContent = `${p.trades_closed} / ${p.wins} / ${p.losses}`;
    $('#pnl-charges').textContent = rupee(p.charges);
    renderPnl();
  }
  const ticks = new MtmTicks();
  async function loadPositions() {
    const mark = ticks.mark();
    positions = ticks.withTicks((await api('/api/positions')).positions, mark);
    renderPositions();
    $('#h-open').textContent = positions.length;
    renderPnl();
  }
  async function loadEngine() {
    const h = await fetch('/api/health').then(r => r.json());
    $('#h-status').replaceChildren(badge(h.status === 'ok' ? 'running' : h.status, h.status === 'ok' ? 'done' : 'error'));
    $('#h-clock').textContent = h.engine_time ? `${istDateTime(h.engine_time, { seconds: true })}${h.clock === 'simulated' ? ' · SIM' : ''}` : 'not reported';
    $('#h-age').textContent = h.engine_heartbeat_age_s === null ? 'none' : duration(h.engine_heartbeat_age_s);
    $('#h-token').textContent = h.token_expires_at ? istDateTime(h.token_expires_at) : '—';
    const r = await api('/api/risk');
    $('#h-risk').textContent = r.paused ? `paused: ${r.state.pause_reason}` : 'allowed';
    $('#h-risk').className = r.paused ? 'neg' : 'pos';
  }
  async function loadEquity() {
    const pts = (await api('/api/pnl/equity?limit=365')).points;
    lineChart($('#equity'), pts.map(p => Date.parse(p.trade_date + 'T15:30:00+05:30')),
      [{ label: 'equity', values: pts.map(p => Number(p.equity)), color: '#5aa9ff', width: 2, points: pts.length < 40 }],
      { kind: 'ordinal', xfmt: i => (pts[Math.round(i)] ? istDate(pts[Math.round(i)].trade_date).slice(0, 6) : ''),
        zero: true, height: 170, empty: 'no closed trades yet' });
  }

  function applyFilter() {
    for (const line of $('#feed').querySelectorAll('.line')) line.hidden = filter !== 'all' && line.dataset.group !== filter;
  }
  function feed(ev) {
    const d = ev.data || {};
    const at = d.ts || d.at || engineClock.now();  // the engine's time of the event
    const group = GROUP[ev.kind] || 'system';
    $('#feed-empty')?.remove();
    const line = el('div', { class: `line ${ev.kind}`, 'data-group': group, 'data-kind': ev.kind },
      el('span', { class: 'muted when', title: istDateTime(at, { seconds: true }) }, istTime(at), ' '), ...sentence(ev.kind, d));
    line.hidden = filter !== 'all' && group !== filter;
    $('#feed').prepend(line);
    while ($('#feed').childElementCount > 200) $('#feed').lastChild.remove();
  }

  function applyMtm(d) {
    for (const u of (d.positions || (d.tag ? [d] : []))) {
      ticks.record(u.tag, u.mtm);
      const p = positions.find(x => x.tag === u.tag);
      if (!p) continue;
      setMtm(p, u.mtm);
      const row = document.querySelector(`.position[data-key="${CSS.escape(u.tag)}"]`);
      if (!row) continue;
      row.querySelector('.mtm')?.replaceChildren(el('span', { class: 'muted small' }, 'MTM '), pnl(u.mtm));
      row.querySelector('.close-btn')?.replaceWith(closeButton(p, loadPositions));
      row.classList.remove('flash'); void row.offsetWidth; row.classList.add('flash');
    }
    $('#mtm-at').textContent = 'MTM at ' + istTime(engineClock.now());
    renderPnl();
  }

  $('#feed-filter').addEventListener('change', (e) => { filter = e.target.value; applyFilter(); });
  on('mtm', applyMtm);
  on('position_opened', () => { loadPositions(); loadPnl(); });
  on('position_closed', () => { loadPositions(); loadPnl(); loadEquity(); });
  on('risk_paused', loadEngine); on('risk_resumed', loadEngine);
  on('*', (_d, ev) => { if (!['hello', 'heartbeat', 'mtm', 'ping'].includes(ev.kind)) feed(ev); });

  await Promise.all([loadPositions(), loadPnl(), loadEngine(), loadEquity()]).catch(e => toast(e.message, true));
  setInterval(() => { loadPnl(); loadEngine(); }, 30000);
}
