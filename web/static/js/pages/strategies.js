import { $, api, badge, boot, el, money, num, table, toast, when } from '../app.js';

function reasons(v) {
  if (!v) return '—';
  if (Array.isArray(v)) return v.join('; ');
  if (typeof v === 'object') return Object.entries(v).map(([k, x]) => `${k}: ${Array.isArray(x) ? x.join(', ') : JSON.stringify(x)}`).join(' · ');
  return String(v);
}

if (await boot()) {
  async function loadGoLive() {
    const rows = (await api('/api/go-live')).strategies;
    table($('#golive'), [
      { key: 'strategy', label: 'Strategy' }, { key: 'stage', label: 'Stage', fmt: badge },
      { key: 'updated_by', label: 'By' }, { key: 'updated_at', label: 'Since', fmt: when },
    ], rows, { empty: 'no strategies seeded yet (engine not started?)' });
    $('#stage-strategy').replaceChildren(...rows.map(r => el('option', {}, r.strategy)));
  }
  async function loadBattle() {
    const rows = (await api('/api/battle-log?limit=100')).rows;
    const last = rows[0];
    $('#why-at').textContent = last ? when(last.created_at) : '';
    if (last) {
      const elig = last.eligibility || {}, rej = last.rejections || {};
      const names = [...new Set([...Object.keys(elig), ...Object.keys(rej)])].sort();
      // what blocks each strategy now (event guard, pauses, slots): /api/events/why-blocked
      const now = Object.fromEntries(await Promise.all(names.map(async n => {
        try { return [n, (await api(`/api/events/why-blocked?strategy=${encodeURIComponent(n)}`)).reasons.join('; ')]; }
        catch { return [n, '']; }
      })));
      table($('#why'), [
        { key: 'name', label: 'Strategy' },
        { key: 'ok', label: 'Eligible', fmt: v => badge(v ? 'eligible' : 'blocked', v ? 'done' : 'error') },
        { key: 'why', label: 'Reasons (last cycle)', cls: () => 'why' },
        { key: 'now', label: 'Blocked now', cls: () => 'why' },
      ], names.map(n => ({ name: n, ok: elig[n] === true || (elig[n] && elig[n].eligible), why: reasons(rej[n]) || '', now: now[n] || '' })),
      { sortable: false, empty: 'selected: ' + (last.selected_strategy || 'none') });
    } else $('#why').textContent = 'no scan cycles recorded yet';
    table($('#battle'), [
      { key: 'created_at', label: 'Time', fmt: when }, { key: 'spot', label: 'Spot', num: true, fmt: v => num(v, 1) },
      { key: 'iv', label: 'IV', num: true, fmt: v => num(v) }, { key: 'realized_range', label: 'Range', num: true, fmt: v => num(v, 1) },
      { key: 'near_straddle', label: 'Straddle', num: true, fmt: money }, { key: 'selected_strategy', label: 'Selected' },
      { key: 'rejections', label: 'Rejections', fmt: reasons },
    ], rows);
  }
  $('#stage-form').addEventListener('submit', async (e) => {
    e.preventDefault(); $('#stage-err').textContent = '';
    const strategy = $('#stage-strategy').value, stage = $('#stage-value').value;
    if (!$('#stage-confirm').checked) { $('#stage-err').textContent = 'tick "I confirm" first'; return; }
    try {
      const r = await api(`/api/go-live/${encodeURIComponent(strategy)}`, { method: 'POST', body: { stage, confirm: true } });
      toast(`set_go_live_stage queued (command ${r.command_id})`);
    } catch (ex) { $('#stage-err').textContent = ex.message; }
  });
  await Promise.all([loadGoLive(), loadBattle()]);
  setInterval(loadBattle, 60000);
}
