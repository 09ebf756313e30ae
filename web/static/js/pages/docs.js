import { $, boot, el } from '../app.js';

if (await boot({ live: false })) {
  const spec = await fetch('/docs/openapi.json').then(r => r.json());
  $('#intro').textContent = spec.info.description;
  const ops = [];
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const params = (op.parameters || []).map(p => `${p.in === 'path' ? '{' + p.name + '}' : '?' + p.name}: ${p.schema.format || p.schema.type}${p.schema.enum ? ' (' + p.schema.enum.join('|') + ')' : ''}`);
      const body = op.requestBody ? op.requestBody.content['application/json'].schema : null;
      const fields = body ? Object.entries(body.properties).map(([k, s]) => `${k}${body.required.includes(k) ? '*' : ''}: ${s.format || s.type}${s.enum ? ' (' + s.enum.join('|') + ')' : ''}`) : [];
      ops.push(el('div', { class: 'op' },
        el('span', { class: 'method ' + method }, method), el('code', {}, path), ' ',
        op.security && op.security.length === 0 ? el('span', { class: 'badge paper' }, 'public') : null, ' ',
        el('span', {}, op.summary),
        params.length ? el('div', { class: 'fields' }, 'query/path: ' + params.join(', ')) : null,
        fields.length ? el('div', { class: 'fields' }, 'body: {' + fields.join(', ') + '}') : null));
    }
  }
  $('#ops').replaceChildren(...ops);
}
