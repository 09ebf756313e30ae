// Tiny canvas charts: lines (with axes) and a heatmap. No dependencies.
const COLORS = ['#5aa9ff', '#f0564d', '#3fbf6a', '#e3a93b', '#b07cff', '#4dd0e1'];

function setup(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600, h = canvas.clientHeight || 240;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const ctx = canvas.getContext('2d');
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, w, h);
  ctx.font = '11px system-ui, sans-serif';
  return { ctx, w, h };
}

function ticks(lo, hi, n = 5) {
  if (lo === hi) { lo -= 1; hi += 1; }
  const raw = (hi - lo) / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

// series: [{name, points: [[x, y], ...], color?}], x numeric (or Date ms)
export function lineChart(canvas, series, { xfmt = String, yfmt = v => v.toFixed(2), zero = false, empty = 'no data' } = {}) {
  const { ctx, w, h } = setup(canvas);
  const pts = series.flatMap(s => s.points).filter(p => Number.isFinite(p[0]) && Number.isFinite(p[1]));
  if (!pts.length) { ctx.fillStyle = '#8590a0'; ctx.fillText(empty, w / 2 - 20, h / 2); return; }
  let [x0, x1] = [Math.min(...pts.map(p => p[0])), Math.max(...pts.map(p => p[0]))];
  let [y0, y1] = [Math.min(...pts.map(p => p[1])), Math.max(...pts.map(p => p[1]))];
  if (zero) { y0 = Math.min(0, y0); y1 = Math.max(0, y1); }
  const yt = ticks(y0, y1); y0 = Math.min(y0, yt[0]); y1 = Math.max(y1, yt[yt.length - 1]);
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const L = 62, R = 12, T = 10, B = 24;
  const X = x => L + (x - x0) / (x1 - x0) * (w - L - R);
  const Y = y => T + (1 - (y - y0) / (y1 - y0 || 1)) * (h - T - B);
  ctx.strokeStyle = '#262d38'; ctx.fillStyle = '#8590a0'; ctx.lineWidth = 1;
  for (const v of yt) {
    ctx.beginPath(); ctx.moveTo(L, Y(v)); ctx.lineTo(w - R, Y(v)); ctx.stroke();
    ctx.fillText(yfmt(v), 4, Y(v) + 4);
  }
  if (zero && y0 < 0 && y1 > 0) { ctx.strokeStyle = '#4a5565'; ctx.beginPath(); ctx.moveTo(L, Y(0)); ctx.lineTo(w - R, Y(0)); ctx.stroke(); }
  for (const v of ticks(x0, x1, Math.max(2, Math.floor((w - L) / 110)))) {
    const label = xfmt(v); ctx.fillText(label, Math.min(X(v) - ctx.measureText(label).width / 2, w - R - 40), h - 6);
  }
  series.forEach((s, i) => {
    const p = s.points.filter(q => Number.isFinite(q[0]) && Number.isFinite(q[1]));
    ctx.strokeStyle = s.color || COLORS[i % COLORS.length]; ctx.lineWidth = 1.6;
    ctx.beginPath(); p.forEach((q, j) => j ? ctx.lineTo(X(q[0]), Y(q[1])) : ctx.moveTo(X(q[0]), Y(q[1]))); ctx.stroke();
    if (p.length < 40) { ctx.fillStyle = ctx.strokeStyle; p.forEach(q => { ctx.beginPath(); ctx.arc(X(q[0]), Y(q[1]), 2.5, 0, 7); ctx.fill(); }); }
    if (series.length > 1) { ctx.fillStyle = ctx.strokeStyle; ctx.fillText('● ' + s.name, L + 8 + i * 90, T + 10); }
  });
}

// grid: {xs: [...], ys: [...], z: [[v for x] for y], xlabel, ylabel, fmt}
export function heatmap(canvas, { xs, ys, z, xlabel = '', ylabel = '', fmt = v => v.toFixed(0) }) {
  const { ctx, w, h } = setup(canvas);
  const vals = z.flat().filter(Number.isFinite);
  if (!vals.length) { ctx.fillStyle = '#8590a0'; ctx.fillText('no results', w / 2 - 20, h / 2); return; }
  const lo = Math.min(...vals), hi = Math.max(...vals), mid = lo < 0 && hi > 0 ? 0 : (lo + hi) / 2;
  const L = 70, B = 34, T = 8, R = 8, cw = (w - L - R) / xs.length, ch = (h - T - B) / ys.length;
  const color = v => {
    if (!Number.isFinite(v)) return '#1b212a';
    const t = v >= mid ? (v - mid) / ((hi - mid) || 1) : (v - mid) / ((mid - lo) || 1);
    const a = Math.min(1, Math.abs(t));
    return t >= 0 ? `rgba(63,191,106,${0.15 + 0.85 * a})` : `rgba(240,86,77,${0.15 + 0.85 * a})`;
  };
  ctx.textAlign = 'center';
  ys.forEach((y, j) => xs.forEach((x, i) => {
    const v = z[j][i]; ctx.fillStyle = color(v);
    ctx.fillRect(L + i * cw + 1, T + j * ch + 1, cw - 2, ch - 2);
    if (cw > 34 && ch > 14 && Number.isFinite(v)) { ctx.fillStyle = '#fff'; ctx.fillText(fmt(v), L + (i + .5) * cw, T + (j + .5) * ch + 4); }
  }));
  ctx.fillStyle = '#8590a0';
  xs.forEach((x, i) => ctx.fillText(String(x), L + (i + .5) * cw, h - B + 14));
  ctx.fillText(xlabel, L + (w - L - R) / 2, h - 4);
  ctx.textAlign = 'right';
  ys.forEach((y, j) => ctx.fillText(String(y), L - 6, T + (j + .5) * ch + 4));
  ctx.save(); ctx.translate(10, T + (h - T - B) / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = 'center'; ctx.fillText(ylabel, 0, 0); ctx.restore();
}
