import { $, api, badge, boot, el, money, on, signCls, table, toast, when } from '../app.js';

if (await boot()) {
  async function loadEnv() {
    const r = await api('/api/risk');
    const s = r.state;
    $('#paused').replaceChildren(badge(r.paused ? 'ENTRIES PAUSED' : 'entries allowed', r.paused ? 'error' : 'done'));
    const kv = [['Daily P&L', s.daily_pnl, true], ['Weekly P&L', s.weekly_pnl, true], ['Monthly P&L', s.monthly_pnl, true],
      ['Lifetime P&L', s.lifetime_pnl, true], ['Loss streak', s.loss_streak], ['Pause reason', s.pause_reason || '—'],
      ['Paused until', when(s.paused_until)], ['What to do', r.action_needed || '—'],
      ['Last close', s.last_close_date || '—'], ['Updated', when(s.updated_at)]];
    $('#env').replaceChildren(...kv.flatMap(([k, v, m]) => [el('dt', {}, k), el('dd', { class: m ? signCls(v) : '' }, m ? money(v) : v)]));
  }
  async function loadLimits() {
    const all = (await api('/api/settings')).settings.filter(x => x.key.startsWith('RISK_'));
    table($('#limits'), [
      { key: 'key', label: 'Setting' }, { key: 'value', label: 'Value', num: true, fmt: String },
      { key: 'default', label: 'Default', num: true, fmt: String }, { key: 'description', label: 'Meaning' },
    ], all, { sortable: false });
  }
  async function loadCommands() {
    table($('#commands'), [
      { key: 'id', label: '#', num: true }, { key: 'created_at', label: 'When', fmt: when }, { key: 'kind', label: 'Kind' },
      { key: 'payload', label: 'Payload', fmt: v => JSON.stringify(v) }, { key: 'status', label: 'Status', fmt: badge },
      { key: 'error', label: 'Error', cls: () => 'neg' },
    ], (await api('/api/commands?limit=30')).commands);
  }
  async function loadLogs() {
    table($('#advisories'), [
      { key: 'created_at', label: 'When', fmt: when }, { key: 'trade_tag', label: 'Trade' }, { key: 'strategy', label: 'Strategy' },
      { key: 'reason', label: 'Reason' }, { key: 'confidence_pct', label: 'Conf %', num: true }, { key: 'action_taken', label: 'Action', fmt: badge },
    ], (await api('/api/ai/exit-advisories?limit=100')).rows);
    table($('#recon'), [
      { key: 'created_at', label: 'When', fmt: when }, { key: 'action', label: 'Action', fmt: badge },
      { key: 'trade_tag', label: 'Trade' }, { key: 'security_id', label: 'Security' },
      { key: 'details', label: 'Details', fmt: v => JSON.stringify(v) },
    ], (await api('/api/reconciliation/log?limit=200')).rows);
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
  on('command_result', () => { loadCommands(); loadEnv(); });
  on('risk_paused', loadEnv); on('risk_resumed', loadEnv);
  await Promise.all([loadEnv(), loadLimits(), loadCommands(), loadLogs()]);
}
