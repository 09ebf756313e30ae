import { $, api, badge, boot, el, isoDate, table } from '../app.js';

if (await boot({ live: false })) {
  const now = new Date();
  let cursor = new Date(now.getFullYear(), now.getMonth(), 1);
  const today = isoDate(new Date());
  async function render() {
    const first = new Date(cursor), last = new Date(cursor.getFullYear(), cursor.getMonth() + 1, 0);
    const start = new Date(first); start.setDate(1 - ((first.getDay() + 6) % 7));
    const end = new Date(last); end.setDate(last.getDate() + (7 - ((last.getDay() + 6) % 7) - 1));
    const r = await api(`/api/events?from=${isoDate(start)}&to=${isoDate(end)}&limit=1000`);
    $('#month').textContent = first.toLocaleString('en-IN', { month: 'long', year: 'numeric' });
    const byDay = {};
    for (const e of r.events) (byDay[e.event_date] = byDay[e.event_date] || []).push(e);
    const hol = Object.fromEntries(r.holidays.map(h => [h.holiday_date, h.description || 'holiday']));
    const exp = Object.fromEntries((r.expiries || []).map(x => [x.date, x.monthly ? 'monthly expiry' : 'weekly expiry']));
    const cells = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'].map(d => el('div', { class: 'h' }, d));
    for (let d = new Date(start); d <= end; d.setDate(d.getDate() + 1)) {
      const key = isoDate(d);
      const cls = ['d', d.getMonth() !== first.getMonth() ? 'off' : '', key === today ? 'today' : '', hol[key] || d.getDay() % 6 === 0 ? 'hol' : ''].join(' ');
      cells.push(el('div', { class: cls }, el('div', { class: 'muted' }, d.getDate()),
        hol[key] ? el('div', { class: 'neg' }, hol[key]) : null,
        exp[key] ? el('div', { class: 'muted' }, exp[key]) : null,
        (byDay[key] || []).map(e => el('div', {}, badge(e.risk_level), ' ', e.event_time ? e.event_time.slice(0, 5) + ' ' : '', e.name))));
    }
    $('#cal').replaceChildren(...cells);
  }
  const upcoming = await api('/api/events?limit=200');
  table($('#list'), [
    { key: 'event_date', label: 'Date' }, { key: 'event_time', label: 'Time', fmt: v => v ? v.slice(0, 5) : '' },
    { key: 'name', label: 'Event' }, { key: 'category', label: 'Kind' }, { key: 'risk_level', label: 'Risk', fmt: badge },
  ], upcoming.events.filter(e => e.event_date >= today), { empty: 'no upcoming events' });
  $('#prev').addEventListener('click', () => { cursor.setMonth(cursor.getMonth() - 1); render(); });
  $('#next').addEventListener('click', () => { cursor.setMonth(cursor.getMonth() + 1); render(); });
  await render();
}
