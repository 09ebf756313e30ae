import { $, api, badge, boot, daysAgo, el, money, on, signCls, table, toast, when } from '../app.js';
import { heatmap, lineChart } from '../charts.js';

const progress = v => el('div', { class: 'progress', title: `${v}%` }, el('i', { style: { width: `${Number(v) || 0}%` } }));
const parseVal = s => { const t = s.trim(); if (t === 'true' || t === 'false') return t === 'true'; const n = Number(t); return t !== '' && Number.isFinite(n) ? n : t; };
function parseLines(text, grid) {
  const out = {};
  for (const line of text.split('\n').map(l => l.trim()).filter(Boolean)) {
    const i = line.indexOf('=');
    if (i < 1) throw new Error(`bad line "${line}": expected KEY=value`);
    const k = line.slice(0, i).trim(), v = line.slice(i + 1);
    out[k] = grid ? v.split(',').map(parseVal) : parseVal(v);
  }
  return out;
}

if (await boot()) {
  $('#bt-start').value = daysAgo(60); $('#bt-end').value = daysAgo(1);
  let current = null, job = null;

  async function loadRuns() {
    const runs = (await api('/api/backtest/runs?limit=100')).runs;
    table($('#runs'), [
      { key: 'run_id', label: '#', num: true, fmt: id => el('a', { href: '#', onclick: e => { e.preventDefault(); showRun(id); } }, id) },
      { key: 'strategy', label: 'Strategy' }, { key: 'start_date', label: 'From' }, { key: 'end_date', label: 'To' },
      { key: 'status', label: 'Status', fmt: badge }, { key: 'progress_pct', label: 'Progress', fmt: progress },
      { key: 'trade_count', label: 'Trades', num: true },
      { key: 'metrics_json', label: 'Net P&L', num: true, fmt: m => money(m && (m.net_pnl ?? m.total_pnl ?? m.net)), cls: m => signCls(m && (m.net_pnl ?? m.total_pnl ?? m.net)) },
      { key: 'created_at', label: 'Created', fmt: when },
    ], runs, { empty: 'no runs yet' });
    return runs;
  }
  async function showRun(id) {
    current = id;
    const r = await api(`/api/backtest/runs/${id}`);
    $('#run-title').textContent = `#${id} ${r.strategy} ${r.start_date} → ${r.end_date} · ${r.status}${r.error_text ? ' · ' + r.error_text : ''}`;
    const trades = r.trades_json || [];
    let eq = 0;
    const pts = trades.map((t, i) => [i + 1, (eq += Number(t.realized_pnl ?? t.pnl ?? 0))]);
    lineChart($('#run-equity'), [{ name: 'equity', points: pts }], { zero: true, xfmt: v => `#${v}`, empty: 'no trades' });
    const cols = trades.length ? Object.keys(trades[0]).slice(0, 10).map(k => ({ key: k, label: k,
      num: typeof trades[0][k] !== 'object' && Number.isFinite(Number(trades[0][k])) })) : [{ key: 'x', label: 'trades' }];
    table($('#run-trades'), cols.map(c => ({ ...c, fmt: v => (typeof v === 'object' && v !== null ? JSON.stringify(v) : v ?? '—') })), trades);
    $('#run-metrics').replaceChildren(...Object.entries(r.metrics_json || {}).flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, typeof v === 'object' ? JSON.stringify(v) : v)]));
  }
  async function loadJobs() {
    const jobs = (await api('/api/backtest/grid-search?limit=50')).jobs;
    table($('#jobs'), [
      { key: 'job_id', label: '#', num: true, fmt: id => el('a', { href: '#', onclick: e => { e.preventDefault(); showJob(id); } }, id) },
      { key: 'strategy', label: 'Strategy' }, { key: 'param_space', label: 'Space', fmt: s => Object.keys(s || {}).filter(k => !k.startsWith('_') && k !== 'summary').join(' × ') },
      { key: 'status', label: 'Status', fmt: badge }, { key: 'progress_pct', label: 'Progress', fmt: progress },
      { key: 'result_count', label: 'Results', num: true },
    ], jobs, { empty: 'no grid searches yet' });
    return jobs;
  }
  async function showJob(id) {
    job = await api(`/api/backtest/grid-search/${id}`);
    const results = (job.results_json || []).map(r => ({ rank: r.rank ?? '—', ...(r.params || {}), ...(r.metrics || r) }));
    const params = Object.keys(job.param_space || {}).filter(k => !k.startsWith('_') && k !== 'summary');
    const summary = (job.param_space || {}).summary;
    if (summary) toast(`job #${id}: ${summary.tried} combinations tried, ${summary.ranked} ranked`);
    const metrics = results.length ? Object.keys(results[0]).filter(k => !params.includes(k) && Number.isFinite(Number(results[0][k])) && k !== 'params') : [];
    const sel = $('#metric'); const prev = sel.value;
    sel.replaceChildren(...metrics.map(m => el('option', {}, m)));
    sel.value = metrics.includes(prev) ? prev : (metrics.find(m => /pnl/i.test(m)) || metrics[0] || '');
    table($('#grid-table'), ['rank', ...params, ...metrics.filter(k => k !== 'rank')].map(k => ({ key: k, label: k, num: metrics.includes(k),
      cls: metrics.includes(k) ? v => signCls(v) : undefined })), results, { empty: `job #${id}: ${job.status}` });
    drawHeat(results, params);
  }
  function drawHeat(results, params) {
    const m = $('#metric').value;
    if (!m || !params.length) { heatmap($('#heat'), { xs: [], ys: [], z: [] }); return; }
    const [px, py] = [params[0], params[1]];
    const xs = job.param_space[px], ys = py ? job.param_space[py] : ['—'];
    const z = ys.map(y => xs.map(x => {
      const hits = results.filter(r => String(r[px]) === String(x) && (!py || String(r[py]) === String(y))).map(r => Number(r[m]));
      return hits.length ? Math.max(...hits) : NaN;
    }));
    heatmap($('#heat'), { xs, ys, z, xlabel: px, ylabel: py || '', fmt: v => Math.abs(v) >= 1000 ? (v / 1000).toFixed(1) + 'k' : v.toFixed(1) });
  }
  $('#metric').addEventListener('change', () => job && showJob(job.job_id));

  async function submit(grid) {
    $('#bt-err').textContent = '';
    try {
      const base = { strategy: $('#bt-strategy').value.trim(), start: $('#bt-start').value, end: $('#bt-end').value,
        data: $('#bt-data').value, fill_model: $('#bt-fill').value };
      if (grid) {
        const r = await api('/api/backtest/grid-search', { method: 'POST', body: { ...base, rank_by: $('#bt-rank').value,
          use_defaults: $('#bt-defaults').checked, param_space: parseLines($('#bt-params').value, true) } });
        toast(`grid #${r.job_id} queued: ${r.combinations} combinations`); loadJobs();
      } else {
        const r = await api('/api/backtest/run', { method: 'POST', body: { ...base, params: parseLines($('#bt-params').value, false) } });
        toast(`run #${r.run_id} queued`); await loadRuns(); showRun(r.run_id);
      }
    } catch (e) { $('#bt-err').textContent = e.message; }
  }
  $('#run-form').addEventListener('submit', e => { e.preventDefault(); submit(false); });
  $('#grid-btn').addEventListener('click', () => submit(true));

  on('backtest_progress', (d) => { loadRuns(); loadJobs(); if (d.run_id === current) showRun(current); if (job && d.job_id === job.job_id) showJob(job.job_id); });
  const [runs, jobs] = await Promise.all([loadRuns(), loadJobs()]);
  const shown = runs.find(r => r.status === 'complete') || runs[0];
  if (shown) showRun(shown.run_id);
  if (jobs[0]) showJob(jobs[0].job_id);
  setInterval(async () => {  // poll while anything is still pending or running
    const busy = [...await loadRuns(), ...await loadJobs()].some(x => x.status === 'pending' || x.status === 'running');
    if (busy && current) showRun(current);
  }, 5000);
}
