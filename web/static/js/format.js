// One formatter module for every page: rupees with Indian grouping, signed P&L, percentages,
// IST times with dates, contracts as traders write them, and the engine's clock.
// Pure functions over values (DOM helpers return elements); nothing here fetches.

const IST = 'Asia/Kolkata';
const INR2 = new Intl.NumberFormat('en-IN', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const INR0 = new Intl.NumberFormat('en-IN', { maximumFractionDigits: 0 });
const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];

const missing = (v) => v === null || v === undefined || v === '';
const finite = (v) => { const n = Number(v); return missing(v) || !Number.isFinite(n) ? null : n; };

// ₹1,23,456.78 (negative: -₹1,596.02). digits 0 for axes and limits.
export function rupee(v, { digits = 2, sign = false } = {}) {
  const n = finite(v);
  if (n === null) return missing(v) ? '—' : String(v);
  const body = '₹' + (digits === 0 ? INR0 : INR2).format(Math.abs(n));
  if (n < 0 && Math.abs(n) >= (digits === 0 ? 0.5 : 0.005)) return '-' + body;
  return (sign && n > 0 ? '+' : '') + body;
}

// Compact rupees for chart axes: ₹950, ₹12.5K, ₹3.2L, ₹1.1Cr (lakh and crore, as traders say).
export function rupeeShort(v) {
  const n = finite(v);
  if (n === null) return '—';
  const a = Math.abs(n), s = n < 0 ? '-' : '';
  const fix = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1)).replace(/\.0$/, '');
  if (a >= 1e7) return `${s}₹${fix(a / 1e7)}Cr`;
  if (a >= 1e5) return `${s}₹${fix(a / 1e5)}L`;
  if (a >= 1e3) return `${s}₹${fix(a / 1e3)}K`;
  return `${s}₹${a.toFixed(0)}`;
}

// Grouped number (quantities, OI): 1,23,450; digits for prices without ₹.
export function num(v, digits = 0) {
  const n = finite(v);
  if (n === null) return missing(v) ? '—' : String(v);
  return new Intl.NumberFormat('en-IN', { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(n);
}

export function signClass(v) { const n = finite(v); return n > 0 ? 'pos' : n < 0 ? 'neg' : ''; }

// A P&L cell: signed rupees, coloured (span.pos / span.neg).
export function pnl(v, opts = {}) {
  const span = document.createElement('span');
  span.className = 'pnl ' + signClass(v);
  span.textContent = rupee(v, { sign: true, ...opts });
  return span;
}

// Fraction → "6.7%" (pct(0.0667)); pctPoints for values already in percent (IV 13.2 → "13.2%").
export function pct(v, digits = 1) {
  const n = finite(v);
  return n === null ? '—' : (n * 100).toFixed(digits) + '%';
}
export function pctPoints(v, digits = 1) {
  const n = finite(v);
  return n === null ? '—' : n.toFixed(digits) + '%';
}

function parts(date, opts) {
  const out = {};
  for (const p of new Intl.DateTimeFormat('en-GB', { timeZone: IST, hour12: false, ...opts }).formatToParts(date)) out[p.type] = p.value;
  return out;
}
function toDate(v) {
  if (missing(v)) return null;
  if (v instanceof Date) return v;
  if (typeof v === 'number') return new Date(v);
  // A bare date (2025-02-04) is an IST trading day, not UTC midnight.
  const s = /^\d{4}-\d{2}-\d{2}$/.test(v) ? v + 'T12:00:00+05:30' : v;
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? null : d;
}

// "04 Feb 2025"
export function istDate(v) {
  const d = toDate(v); if (!d) return '—';
  const p = parts(d, { day: '2-digit', month: 'short', year: 'numeric' });
  return `${p.day} ${p.month} ${p.year}`;
}
// "10:15:30"
export function istTime(v) {
  const d = toDate(v); if (!d) return '—';
  const p = parts(d, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return `${p.hour}:${p.minute}:${p.second}`;
}
// "04 Feb 2025 10:15 IST" (seconds: true adds them)
export function istDateTime(v, { seconds = false } = {}) {
  const d = toDate(v); if (!d) return '—';
  const p = parts(d, { day: '2-digit', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return `${p.day} ${p.month} ${p.year} ${p.hour}:${p.minute}${seconds ? ':' + p.second : ''} IST`;
}
// The IST calendar date of a moment as YYYY-MM-DD (for <input type=date> and API ranges).
export function istIsoDate(v) {
  const d = toDate(v); if (!d) return null;
  const p = parts(d, { day: '2-digit', month: '2-digit', year: 'numeric' });
  return `${p.year}-${p.month}-${p.day}`;
}

// "1h 05m", "3m 20s"
export function duration(seconds) {
  const n = finite(seconds); if (n === null) return '—';
  const s = Math.round(Math.abs(n)), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  if (h) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

// "NIFTY 06 FEB 23400 CE" from a leg {underlying?, expiry, strike, option_type|right|kind};
// a future is "NIFTY 27 FEB FUT".
export function contract(leg) {
  if (!leg) return '—';
  const under = leg.underlying || leg.symbol_root || 'NIFTY';
  const exp = toDate(leg.expiry);
  const p = exp ? parts(exp, { day: '2-digit', month: '2-digit' }) : null;
  const when = p ? `${p.day} ${MONTHS[Number(p.month) - 1]}` : '';
  const right = String(leg.option_type || leg.right || leg.kind || '').toUpperCase();
  if (!right || right === 'FUT' || right === 'FUTURE' || leg.strike === null || leg.strike === undefined) {
    return `${under} ${when} FUT`.replace(/\s+/g, ' ').trim();
  }
  const strike = Number(leg.strike);
  const k = Number.isInteger(strike) ? String(strike) : strike.toFixed(2);
  return `${under} ${when} ${k} ${right === 'CALL' ? 'CE' : right === 'PUT' ? 'PE' : right}`.replace(/\s+/g, ' ').trim();
}

// The engine's clock (simulated or real), as reported by /api/health. app.js keeps it
// current; pages ask it for "now" and "today" so every default date range follows it.
export const engineClock = {
  offsetMs: 0,          // engine time − browser time at the last report
  kind: 'real',         // 'simulated' | 'real'
  known: false,
  update(engineIso, kind) {
    const d = toDate(engineIso);
    if (d) { this.offsetMs = d.getTime() - Date.now(); this.known = true; }
    else { this.offsetMs = 0; this.known = false; }
    this.kind = d && kind === 'simulated' ? 'simulated' : 'real';
  },
  now() { return new Date(Date.now() + this.offsetMs); },
  today() { return istIsoDate(this.now()); },
  daysBefore(n) { return istIsoDate(new Date(this.now().getTime() - n * 86400000)); },
};
