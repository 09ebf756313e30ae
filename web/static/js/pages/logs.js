import { $, api, boot, el, toast } from '../app.js';

if (await boot()) {
  let lines = [];
  const level = l => (l.match(/\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b/) || [])[1] || '';
  function render() {
    const f = $('#grep').value.toLowerCase();
    const box = $('#log');
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 20;
    box.replaceChildren(...lines.filter(l => !f || l.toLowerCase().includes(f)).map(l => el('div', { class: level(l) }, l)));
    if (atBottom || !box.dataset.loaded) box.scrollTop = box.scrollHeight;
    box.dataset.loaded = '1';
  }
  async function load() {
    try {
      const r = await api(`/api/logs/tail?file=${$('#file').value}&lines=${$('#lines').value}`);
      lines = r.missing ? [`(${r.file} does not exist yet)`] : r.lines;
      render();
    } catch (e) { toast(e.message, true); }
  }
  for (const id of ['file', 'lines']) $('#' + id).addEventListener('change', load);
  $('#grep').addEventListener('input', render);
  $('#refresh').addEventListener('click', load);
  setInterval(() => { if ($('#follow').checked) load(); }, 5000);
  await load();
}
