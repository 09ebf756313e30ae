// Risk: the envelope (P&L against the loss caps, streak, pause), the limits with units, recent
// commands, AI exit advisories and the reconciliation log; pause / resume entries.
import { $, api, badge, boot, el, on, table, toast } from '../app.js';
import { istDate, istDateTime, num, pct, pnl, rupee } from '../format.js';

// A RISK_ setting's value in its unit: rupee caps and capital, fractions as %, counts plain.
function limitValue(key, v) {
  if (v === null || v === undefined || v === '') return '—';
  if (/_(CAP|CAPITAL_BASE)$/.test(key) || key.includes('RUPEES')) return rupee(v, { digits: 0 });
  if (key.endsWith('_PCT')) return pct(v, 0);
  return Number.isFinite(Number(v)) ? num(v, String(v).includes('.') ? 2 : 0) : String(v);
}

if (await boot()) {
  let caps = {};
  function capLine(value, cap) {
    if (!cap) return pnl(value);
    const used = Number(value) < 0 ? Math.min(1, -Number(value) / Number(cap)) : 0;
    return el('span', {}, pnl(value), el('span', { class: 'muted small' }, ` of −${rupee(cap, { digits: 0 })} cap (${pct(used, 0)} used)`));
  }
  async function loadEnv() {
    const r = await api('/api/risk');
    const s = r.state;
    $('#paused').replaceChildren(badge(r.paused ? 'entries paused' : 'entries allowed', r.paused ? 'error' : 'done'));
    const kv = [['Daily P&L', capLine(s.daily_pnl, caps.RISK_DAILY_LOSS_CAP)],
      ['Weekly P&L', capLine(s.weekly_pnl, caps.RISK_WEEKLY_LOSS_CAP)],
      ['Monthly P&L', capLine(s.monthly_pnl, caps.RISK_MONTHLY_LOSS_CAP)],
      ['Lifetime P&L', pnl(s.lifetime_pnl)],
      ['Loss streak', `${num(s.loss_streak)}${caps.RISK_MAX_LOSS_STREAK ? ` of ${caps.RISK_MAX_LOSS_STREAK}` : ''}`],
      ['Pause reason', s.pause_reason || '—'], ['Paused until', s.paused_until ? istDateTime(s.paused_until) : (r.paused ? 'resumed by hand' : '—')],
      ['What to do', r.action_needed || '—'],
      ['Last close', s.last_close_date ? istDate(s.last_close_date) : '—'], ['Updated', istDateTime(s.updated_at, { seconds: true })]];
    $('#env').replaceChildren(...kv.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  }
  async function loadLimits() {
    const all = (await api('/api/settings')).settings.filter(x => x.key.startsWith('RISK_'));
    caps = Object.fromEntries(all.map(x => [x.key, x.value]));
    table($('#limits'), [
      { key: 'key', label: 'Setting' }, { key: 'value', label: 'Value', num: true, fmt: (v, r) => limitValue(r.key, v) },
      { key: 'default', label: 'Default', num: true, fmt: (v, r) => limitValue(r.key, v) }, { key: 'description', label: 'Meaning' },
    ], all, { sortable: false });
  }
  const payloadText = (v) => (v && typeof v === 'object'
    ? Object.entries(v).map(([k, x]) => `${k}: ${typeof x === 'object' ? JSON.stringify(x) : x}`).join(', ') : String(v ?? '—'));
  async function loadCommands() {
    table($('#commands'), [
      { key: 'id', label: '#', num: true }, { key: 'created_at', label: 'When', fmt: v => istDateTime(v, { seconds: true }) },
      { key: 'kind', label: 'Kind', fmt: v => String(v).replace(/_/g, ' ') },
      { key: 'payload', label: 'Payload', fmt: payloadText }, { key: 'status', label: 'Status', fmt: badge },
      { key: 'error', label: 'Error', cls: () => 'neg' },
    ], (await api('/api/commands?limit=30')).commands);
  }
  async function loadLogs() {
    table($('#advisories'), [
      { key: 'created_at', label: 'When', fmt: istDateTime }, { key: 'trade_tag', label: 'Trade' }, { key: 'strategy', label: 'Strategy' },
      { key: 'reason', label: 'Reason' }, { key: 'confidence_pct', label: 'Confidence', num: true, fmt: v => (v === null || v === undefined ? '—' : `${num(v, 0)}%`) },
      { key: 'action_taken', label: 'Action', fmt: badge },
    ], (await api('/api/ai/exit-advisories?limit=100')).rows);
    table($('#recon'), [
      { key: 'created_at', label: 'When', fmt: istDateTime }, { key: 'action', label: 'Action', fmt: badge },
      { key: 'trade_tag', label: 'Trade' }, { key: 'security_id', label: 'Security' },
      { key: 'details', label: 'Details', fmt: payloadText },
    ], (await api('/api/reconciliation/log?limit=200')).rows);
  }
  async function loadRecon() {
    const r = await api('/api/reconciliation/status?days=1');
    const st = r.state || {};
    const last = st.last_check || {};
    const gate = r.state === null ? badge('no broker to reconcile (paper)', 'muted')
      : st.startup_done ? badge('books and broker reconciled', 'done') : badge('live entries wait', 'error');
    const kv = [['Start-up gate', gate], ['Waiting for', st.waiting || '—'],
      ['Last check', last.at ? istDateTime(last.at, { seconds: true }) : '—'],
      ['Found', last.at ? `${num(last.findings || 0)} finding(s), ${num(last.heals || 0)} heal(s), ${num(last.adoptions || 0)} adoption(s)` : '—'],
      ['Differences watched', (last.differences || []).join(', ') || '—'],
      ['Updated', r.updated_at ? istDateTime(r.updated_at, { seconds: true }) : '—']];
    $('#recon-state').replaceChildren(...kv.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    table($('#recon-counts'), [
      { key: 'action', label: 'Action', fmt: v => String(v).replace(/_/g, ' ').toLowerCase() },
      { key: 'n', label: 'Rows', num: true, fmt: v => num(v) }, { key: 'last_at', label: 'Last', fmt: v => istDateTime(v, { seconds: true }) },
    ], r.counts, { sortable: false, empty: 'no reconciliation action in the last 24 h' });
  }
  $('#pause-form').addEventListener('submit', async (e) => {
    e.preventDefault(); $('#risk-err').textContent = '';
    try { const r = await api('/api/risk/pause', { method: 'POST', body: { reason: $('#reason').value } }); toast(`pause queued (command ${r.command_id})`); loadCommands(); }
    catch (ex) { $('#risk-err').textContent = ex.message; }
  });
  $('#resume').addEventListener('click', async () => {
    try { const r = await api('/api/risk/resume', { method: 'POST', body: {} }); toast(`resume queued (command ${r.command_id})`); loadCommands(); }
    catch (ex) { $('#risk-err').textContent = ex.message; }
  });
  $('#killswitch').addEventListener('click', async () => {
    $('#risk-err').textContent = '';
    const reason = $('#reason').value.trim() || 'kill switch from the dashboard';
    if (!window.confirm('Pause entries and activate Dhan\'s kill switch once the account is flat? '
      + 'No order (not even an exit) can be placed at Dhan for the rest of the day.')) return;
    try { const r = await api('/api/risk/kill-switch', { method: 'POST', body: { reason, confirm: true } }); toast(`kill switch queued (command ${r.command_id}); the outcome comes as an alert`); loadCommands(); }
    catch (ex) { $('#risk-err').textContent = ex.message; }
  });
  on('command_result', () => { loadCommands(); loadEnv(); });
  on('risk_paused', loadEnv); on('risk_resumed', loadEnv);
  await loadLimits().catch(e => toast(e.message, true));
  on('alert', (d) => { if (d.source === 'reconciliation') { loadRecon(); loadLogs(); } });
  setInterval(() => loadRecon().catch(() => {}), 30000);
  await Promise.all([loadEnv(), loadCommands(), loadLogs(), loadRecon()]).catch(e => toast(e.message, true));
}
