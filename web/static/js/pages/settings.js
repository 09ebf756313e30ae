import { $, api, boot, el, table, toast, when } from '../app.js';

if (await boot({ live: false })) {
  let all = [];
  async function history(key) {
    $('#hist-key').textContent = key;
    const h = (await api(`/api/settings/${key}/history`)).history;
    table($('#history'), [
      { key: 'updated_at', label: 'When', fmt: when }, { key: 'old_value', label: 'Old' },
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
    return el('div', {}, el('div', { class: 'row' }, input, el('button', { onclick: save }, 'Save'),
      row.overridden ? el('button', { onclick: reset }, 'Reset') : null), msg);
  }
  function render() {
    const f = $('#filter').value.toUpperCase();
    table($('#settings'), [
      { key: 'key', label: 'Key', fmt: k => el('a', { href: '#', onclick: (e) => { e.preventDefault(); history(k); } }, k) },
      { key: 'value', label: 'Value', fmt: editor },
      { key: 'default', label: 'Default', fmt: String, cls: () => 'muted' },
      { key: 'allowed', label: 'Allowed', cls: () => 'muted' },
      { key: 'description', label: 'Meaning' },
      { key: 'updated_by', label: 'Changed', fmt: (v, r) => r.overridden ? `${v} ${when(r.updated_at)}` : '—' },
    ], all.filter(s => !f || s.key.includes(f) || s.description.toUpperCase().includes(f)), { sortable: false });
  }
  async function load() { all = (await api('/api/settings')).settings; render(); }
  $('#filter').addEventListener('input', render);
  await load();
}
