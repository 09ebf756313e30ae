// Charts on uPlot 1.6.32 (vendored from npm under /static/vendor/uplot, MIT; no CDN).
// lineChart draws lines on a time, ordinal (session-gap free) or numeric x axis with
// optional vertical markers; heatmap is an HTML table coloured on a zero-centred scale.
import uPlot from '../vendor/uplot/uPlot.esm.js';
import { rupeeShort, istDateTime, istTime, istDate } from './format.js';

export const COLORS = ['#5aa9ff', '#f0564d', '#3fbf6a', '#e3a93b', '#b07cff', '#4dd0e1'];
const AXIS = { stroke: '#8590a0', grid: { stroke: '#2a3140', width: 1 }, ticks: { stroke: '#2a3140' } };
const charts = new WeakMap();

function emptyNote(container, text) {
  const old = charts.get(container); if (old) { old.destroy(); charts.delete(container); }
  const p = document.createElement('p');
  p.className = 'muted chart-empty'; p.textContent = text;
  container.replaceChildren(p);
}

// Draw (or redraw) a line chart in ``container`` (a div).
//   x:      array of x values (ms since epoch for kind 'time'/'ordinal', numbers otherwise)
//   series: [{label, values, color?, dash?, width?}] (values aligned with x; null = gap)
//   opts:   kind: 'time' | 'ordinal' | 'number'   ('ordinal' plots points evenly, so nights
//                 and weekends take no space, and labels them with their IST date and time)
//           xfmt(v) / yfmt(v) labels; yfmt defaults to compact rupees
//           marks: [{x, label, color?}] vertical lines (spot, breakevens, expiry)
//           zero: draw y = 0; height (px); empty: text when there is nothing to draw
export function lineChart(container, x, series, opts = {}) {
  const { kind = 'time', yfmt = rupeeShort, marks = [], zero = false, height = 240, empty = 'no data' } = opts;
  const pts = series.some(s => s.values.some(v => v !== null && v !== undefined && Number.isFinite(Number(v))));
  if (!x.length || !pts) { emptyNote(container, empty); return null; }
  const xs = kind === 'ordinal' ? x.map((_, i) => i) : x.map(v => (kind === 'time' ? v / 1000 : v));
  const xlabel = opts.xfmt || (kind === 'number' ? (v => String(v))
    : kind === 'ordinal' ? (v => { const t = Math.abs(v - Math.round(v)) > 1e-6 ? undefined : x[Math.round(v)]; return t === undefined ? '' : shortStamp(t); })
      : (v => shortStamp(v * 1000)));
  const data = [xs, ...series.map(s => s.values.map(v => (v === null || v === undefined ? null : Number(v))))];
  const hooks = { draw: [u => drawMarks(u, marks, zero, kind, x)] };
  const width = Math.max(280, container.clientWidth || 600);
  const cfg = {
    width, height,
    scales: { x: { time: false } },
    legend: { show: series.length > 1 || !!opts.legend },
    cursor: { drag: { x: false, y: false } },
    axes: [
      { ...AXIS, values: (u, vals) => vals.map(xlabel), space: kind === 'number' ? 70 : 110 },
      { ...AXIS, values: (u, vals) => vals.map(yfmt), size: 64 },
    ],
    series: [
      { label: opts.xlabel || 'x', value: (u, v) => (v === null ? '—' : xlabel(v)) },
      ...series.map((s, i) => ({
        label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: s.width || 1.5,
        dash: s.dash, spanGaps: false, points: { show: s.points ?? false },
        value: (u, v) => (v === null ? '—' : yfmt(v)),
      })),
    ],
    hooks,
  };
  const old = charts.get(container);
  if (old) old.destroy();
  container.replaceChildren();
  const chart = new uPlot(cfg, data, container);
  charts.set(container, chart);
  container.dataset.drawn = String(series.length);
  return chart;
}

function shortStamp(ms) {
  const d = new Date(ms);
  return `${istDate(d).slice(0, 6)} ${istTime(d).slice(0, 5)}`;
}

function drawMarks(u, marks, zero, kind, x) {
  const ctx = u.ctx;
  ctx.save();
  ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
  if (zero) {
    const y = u.valToPos(0, 'y', true);
    if (y >= u.bbox.top && y <= u.bbox.top + u.bbox.height) {
      ctx.strokeStyle = '#8590a0'; ctx.setLineDash([4, 4]); ctx.lineWidth = devicePixelRatio;
      ctx.beginPath(); ctx.moveTo(u.bbox.left, y); ctx.lineTo(u.bbox.left + u.bbox.width, y); ctx.stroke();
    }
  }
  marks.forEach((m, i) => {
    let xv = kind === 'time' ? m.x / 1000 : m.x;
    if (kind === 'ordinal') xv = nearestIndex(x, m.x);
    const px = u.valToPos(xv, 'x', true);
    if (!(px >= u.bbox.left && px <= u.bbox.left + u.bbox.width)) return;
    ctx.strokeStyle = m.color || '#e3a93b'; ctx.setLineDash([3, 3]); ctx.lineWidth = devicePixelRatio;
    ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height); ctx.stroke();
    if (m.label) {  // labels stepped down one line per mark so neighbours do not overprint
      ctx.fillStyle = m.color || '#e3a93b';
      const w = ctx.measureText(m.label).width;
      const lx = px + 4 * devicePixelRatio + w > u.bbox.left + u.bbox.width ? px - 4 * devicePixelRatio - w : px + 4 * devicePixelRatio;
      ctx.fillText(m.label, lx, u.bbox.top + (12 + 13 * (i % 3)) * devicePixelRatio);
    }
  });
  ctx.restore();
}

function nearestIndex(arr, v) {
  let best = 0;
  for (let i = 1; i < arr.length; i++) if (Math.abs(arr[i] - v) < Math.abs(arr[best] - v)) best = i;
  return best;
}

// Zero-centred diverging colour: losses red, gains green, intensity by |v| / max|v|.
export function divergingColor(v, maxAbs) {
  if (v === null || v === undefined || !Number.isFinite(Number(v)) || !maxAbs) return 'transparent';
  const t = Math.min(1, Math.abs(Number(v)) / maxAbs);
  const a = (0.15 + 0.75 * t).toFixed(3);
  return Number(v) >= 0 ? `rgba(63, 191, 106, ${a})` : `rgba(240, 86, 77, ${a})`;
}

// grid: {xs, ys, z (z[yi][xi]), xlabel, ylabel, fmt}; rendered as a table (readable, copyable).
export function heatmap(container, { xs, ys, z, xlabel = '', ylabel = '', fmt = rupeeShort }) {
  if (!xs.length) { emptyNote(container, 'no grid'); return; }
  const flat = z.flat().filter(v => v !== null && v !== undefined && Number.isFinite(Number(v)));
  const maxAbs = Math.max(0, ...flat.map(v => Math.abs(Number(v))));
  const t = document.createElement('table');
  t.className = 'heatmap';
  const head = t.createTHead().insertRow();
  head.insertCell().textContent = `${ylabel} \\ ${xlabel}`;
  for (const xv of xs) { const th = document.createElement('th'); th.textContent = String(xv); head.append(th); }
  const body = t.createTBody();
  ys.forEach((yv, yi) => {
    const row = body.insertRow();
    const th = document.createElement('th'); th.textContent = String(yv); row.append(th);
    xs.forEach((_, xi) => {
      const v = z[yi]?.[xi];
      const cell = row.insertCell();
      cell.className = 'num';
      cell.textContent = v === null || v === undefined ? '—' : fmt(v);
      cell.style.backgroundColor = divergingColor(v, maxAbs);
      if (v !== null && v !== undefined) cell.dataset.value = String(v);
    });
  });
  container.replaceChildren(t);
  container.dataset.scale = `±${maxAbs}`;
}

export { istDateTime };
