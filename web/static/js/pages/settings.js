import { $, api, boot, el, table, toast } from '../app.js';
import { istDateTime, pct, rupee } from '../format.js';

// The value in its unit, when the setting has one: rupee caps and capital, fractions as %.
function unitHint(key, description, v) {
  if (v === null || v === undefined || v === '' || !Number.isFinite(Number(v))) return '';
  if (/_(CAP|CAPITAL_BASE)$/.test(key) || /\(₹\)|rupees|₹/i.test(description || '')) return rupee(v, { digits: Number(v) % 1 ? 2 : 0 });
  if (key.endsWith('_PCT') && Number(v) <= 5) return pct(v, 1);
  return '';
}

if (await boot()) {
  let all = [];
  async function history(key) {
    $('#hist-key').textContent = key;
    const h = (await api(`/api/settings/${key}/history`)).history;
    table($('#history'), [
      { key: 'updated_at', label: 'When', fmt: v => istDateTime(v, { seconds: true }) }, { key: 'old_value', label: 'Old' },
      { key: 'new_value', label: 'New', fmt: v => v ?? '(default)' }, { key: 'updated_by', label: 'By' },
    ], h, { sortable: false, empty: 'never changed' });
  }
  function editor(v, row) {
    const input = el('input', { value: String(row.value), size: 9, title: row.allowed, 'data-key': row.key });
    const msg = el('div', { class: 'err' });
    const save = async () => {
      msg.textContent = '';
      try { await api(`/api/settings/${row.key}`, { method: 'PUT', body: { value: input.value } }); toast(`${row.key} = ${input.value}`); load(); history(row.key); }
      catch (e) { msg.textContent = e.message; }
    };
    input.addEventListener('keydown', e => { if (e.key === 'Enter') save(); });
    const reset = async () => {
      try { await api(`/api/settings/${row.key}`, { method: 'DELETE' }); toast(`${row.key} reset to default`); load(); history(row.key); }
      catch (e) { msg.textContent = e.message; }
    };
    const hint = unitHint(row.key, row.description, row.value);
    return el('div', {}, el('div', { class: 'row' }, input, el('button', { onclick: save }, 'Save'),
      row.overridden ? el('button', { onclick: reset }, 'Reset') : null), hint ? el('div', { class: 'muted small' }, '= ' + hint) : null, msg);
  }
  function render() {
    const f = $('#filter').value.toUpperCase();
    table($('#settings'), [
      { key: 'key', label: 'Key', fmt: k => el('a', { href: '#', onclick: (e) => { e.preventDefault(); history(k); } }, k) },
      { key: 'value', label: 'Value', fmt: editor },
      { key: 'default', label: 'Default', fmt: (v, r) => { const h = unitHint(r.key, r.description, v); return h ? `${v} (${h})` : String(v); }, cls: () => 'muted' },
      { key: 'allowed', label: 'Allowed', cls: () => 'muted' },
      { key: 'description', label: 'Meaning' },
      { key: 'updated_by', label: 'Changed', fmt: (v, r) => r.overridden ? `${v}, ${istDateTime(r.updated_at)}` : '—' },
    ], all.filter(s => !f || s.key.includes(f) || s.description.toUpperCase().includes(f)), { sortable: false });
  }
  async function load() { all = (await api('/api/settings')).settings; render(); }
  $('#filter').addEventListener('input', render);
  await load();
}
