// Events: a month calendar of market events, NSE holidays and expiries, opened on the
// engine's month with the engine's today outlined; the upcoming events from that day on.
import { $, api, badge, boot, el, table } from '../app.js';
import { engineClock, istDate } from '../format.js';

// Calendar days as plain YYYY-MM-DD arithmetic in UTC (no browser time zone involved).
const day = (iso) => new Date(iso + 'T00:00:00Z');
const iso = (d) => d.toISOString().slice(0, 10);
const addDays = (d, n) => { const x = new Date(d); x.setUTCDate(x.getUTCDate() + n); return x; };
const MONTH = new Intl.DateTimeFormat('en-IN', { month: 'long', year: 'numeric', timeZone: 'UTC' });

if (await boot()) {
  const today = engineClock.today();
  let cursor = day(today.slice(0, 8) + '01');
  async function render() {
    const first = new Date(cursor);
    const last = new Date(Date.UTC(first.getUTCFullYear(), first.getUTCMonth() + 1, 0));
    const start = addDays(first, -((first.getUTCDay() + 6) % 7));
    const end = addDays(last, 6 - ((last.getUTCDay() + 6) % 7));
    const r = await api(`/api/events?from=${iso(start)}&to=${iso(end)}&limit=1000`);
    $('#month').textContent = MONTH.format(first);
    const byDay = {};
    for (const e of r.events) (byDay[e.event_date] = byDay[e.event_date] || []).push(e);
    const hol = Object.fromEntries(r.holidays.map(h => [h.holiday_date, h.description || 'holiday']));
    const exp = Object.fromEntries((r.expiries || []).map(x => [x.date, x.monthly ? 'monthly expiry' : 'weekly expiry']));
    const cells = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'].map(d => el('div', { class: 'h' }, d));
    for (let d = start; d <= end; d = addDays(d, 1)) {
      const key = iso(d);
      const weekend = d.getUTCDay() % 6 === 0;
      const cls = ['d', d.getUTCMonth() !== first.getUTCMonth() ? 'off' : '', key === today ? 'today' : '', hol[key] || weekend ? 'hol' : ''].join(' ');
      cells.push(el('div', { class: cls, 'data-date': key }, el('div', { class: 'muted' }, d.getUTCDate(), key === today ? ' · engine today' : ''),
        hol[key] ? el('div', { class: 'neg' }, hol[key]) : null,
        exp[key] ? el('div', { class: 'muted' }, exp[key]) : null,
        (byDay[key] || []).map(e => el('div', {}, badge(e.risk_level), ' ', e.event_time ? e.event_time.slice(0, 5) + ' IST ' : '', e.name))));
    }
    $('#cal').replaceChildren(...cells);
  }
  const upcoming = await api(`/api/events?from=${today}&limit=200`);
  table($('#list'), [
    { key: 'event_date', label: 'Date', fmt: istDate }, { key: 'event_time', label: 'Time (IST)', fmt: v => v ? v.slice(0, 5) : '' },
    { key: 'name', label: 'Event' }, { key: 'category', label: 'Kind' }, { key: 'risk_level', label: 'Risk', fmt: badge },
  ], upcoming.events.filter(e => e.event_date >= today), { empty: `no events from ${istDate(today)} on` });
  $('#prev').addEventListener('click', () => { cursor = new Date(Date.UTC(cursor.getUTCFullYear(), cursor.getUTCMonth() - 1, 1)); render(); });
  $('#next').addEventListener('click', () => { cursor = new Date(Date.UTC(cursor.getUTCFullYear(), cursor.getUTCMonth() + 1, 1)); render(); });
  $('#today').addEventListener('click', () => { cursor = day(today.slice(0, 8) + '01'); render(); });
  await render();
}
