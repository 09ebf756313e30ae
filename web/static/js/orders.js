// Orders in doubt and trades on hold (Trades page): the operator's decision on an unsettled
// live order (resolve_order) and the two ways to close a held trade (close_trade). Every action
// is an engine command; its status is polled from /api/commands/<id> until done or error.
import { api, badge, el, money, table, toast, when } from './app.js';

export function rupees(v) {
  const m = money(v);
  return m === '—' ? m : '₹' + m;
}

export function age(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.max(0, Math.floor(Number(seconds)));
  const two = (n) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${two(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${two(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

const ACTION_LABELS = {
  filled: 'filled (at a price)',
  not_filled: 'not filled',
  flatten: 'flatten (send the opposite order)',
};
const POLL_MS = 1000;
const POLL_LIMIT = 120;

// Show a command's status in ``status`` until it is done or error; then call ``onFinal(row)``.
export async function watchCommand(id, status, onFinal) {
  status.replaceChildren(badge('pending'), ` command ${id}`);
  for (let i = 0; i < POLL_LIMIT; i++) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    let row;
    try { row = await api(`/api/commands/${id}`); }
    catch (e) { status.replaceChildren(badge('error'), ` command ${id}: ${e.message}`); return; }
    if (row.status === 'done') {
      const sent = row.result && row.result.sent ? ` — ${row.result.sent} handed to the engine` : '';
      status.replaceChildren(badge('done'), ` command ${id}${sent}`);
      toast(`command ${id} (${row.kind}) done${sent}`);
      if (onFinal) onFinal(row);
      return;
    }
    if (row.status === 'error') {
      status.replaceChildren(badge('error'), ` command ${id}: `, el('span', { class: 'neg' }, row.error || 'failed'));
      toast(`command ${id} (${row.kind}) failed: ${row.error || 'no reason given'}`, true);
      if (onFinal) onFinal(row);
      return;
    }
    status.replaceChildren(badge(row.status), ` command ${id}`);
  }
  status.replaceChildren(badge('pending'), ` command ${id} still not run after ${POLL_LIMIT}s — is the engine running?`);
}

// One resolve form: action, price (filled only), quantity, confirmation, submit, status.
function resolveForm(order, panel) {
  const action = el('select', { name: 'action', 'aria-label': 'decision' },
    order.actions.map((a) => el('option', { value: a }, ACTION_LABELS[a] || a)));
  const price = el('input', { name: 'price', inputmode: 'decimal', size: 9, placeholder: '₹ avg fill price', 'aria-label': 'fill price' });
  const quantity = el('input', { name: 'quantity', type: 'number', min: 1, max: order.quantity, step: 1, size: 7, 'aria-label': 'units' });
  const confirm = el('input', { type: 'checkbox', name: 'confirm' });
  const submit = el('button', { class: 'danger', type: 'submit' }, 'Resolve');
  const status = el('span', { class: 'status' });
  const err = el('span', { class: 'err' });
  const sync = () => {
    const a = action.value;
    price.disabled = a !== 'filled';
    quantity.disabled = a === 'not_filled';
    quantity.placeholder = a === 'flatten' ? `units (≤ ${order.quantity})` : a === 'filled' ? `units (all ${order.quantity})` : '';
  };
  action.addEventListener('change', sync); sync();
  const form = el('form', { class: 'row', 'data-cid': order.correlation_id },
    action, price, quantity, el('label', {}, confirm, ' I checked the broker'), submit, err, status);
  form.addEventListener('input', () => panel.dirty.add(order.correlation_id));
  form.addEventListener('submit', async (e) => {
    e.preventDefault(); err.textContent = '';
    if (!confirm.checked) { err.textContent = 'tick "I checked the broker" first'; return; }
    const body = { action: action.value, confirm: true };
    if (action.value === 'filled' && price.value.trim() !== '') body.price = price.value.trim();
    const q = quantity.value.trim();
    if (action.value !== 'not_filled' && q !== '') body.quantity = /^\d+$/.test(q) ? Number(q) : q;
    submit.disabled = true;
    try {
      const r = await api(`/api/orders/${encodeURIComponent(order.correlation_id)}/resolve`, { method: 'POST', body });
      panel.busy.add(order.correlation_id);
      try {
        await watchCommand(r.command_id, status, () => {
          panel.dirty.delete(order.correlation_id);
          setTimeout(() => panel.load(), 1500); // a settled order leaves the list
        });
      } finally { panel.busy.delete(order.correlation_id); }
    } catch (ex) {
      err.textContent = ex.message;
    } finally { submit.disabled = false; }
  });
  return form;
}

const CLOSE_MODES = {
  send: {
    label: 'Close (send what the broker still holds)',
    ask: (t) => `Send orders that close what the broker still holds for ${t.tag}? The engine checks the broker's positions first and refuses if they are gone.`,
  },
  record_from_broker: {
    label: 'Record closed at broker trade-book prices',
    ask: (t) => `Record ${t.tag} as closed at the prices in the broker's trade book? No order is sent: do this only after you closed the position at the broker yourself.`,
  },
};

// The two close buttons of a held trade, each with a confirm step and the command's status;
// ``busy`` (a Set) holds the tag while its command is watched.
export function holdActions(trade, onDone, busy) {
  const box = el('div', { class: 'hold-actions', 'data-tag': trade.tag });
  const status = el('span', { class: 'status' });
  const err = el('span', { class: 'err' });
  const buttons = el('div', { class: 'row' });
  const ask = el('div', { class: 'row mt-6' });
  ask.hidden = true;
  for (const [mode, spec] of Object.entries(CLOSE_MODES)) {
    buttons.append(el('button', {
      type: 'button', class: mode === 'send' ? 'primary' : 'danger', 'data-mode': mode,
      onclick: () => {
        err.textContent = '';
        const yes = el('button', { type: 'button', class: 'danger', 'data-confirm': mode, onclick: () => send(mode) }, 'Confirm');
        const no = el('button', { type: 'button', onclick: () => { ask.hidden = true; ask.replaceChildren(); } }, 'Cancel');
        ask.replaceChildren(el('span', { class: 'why' }, spec.ask(trade)), yes, no);
        ask.hidden = false;
      },
    }, spec.label));
  }
  async function send(mode) {
    ask.hidden = true; ask.replaceChildren();
    for (const b of buttons.querySelectorAll('button')) b.disabled = true;
    try {
      const r = await api(`/api/trades/${encodeURIComponent(trade.tag)}/close`, { method: 'POST', body: { mode, confirm: true } });
      if (busy) busy.add('trade:' + trade.tag);
      try { await watchCommand(r.command_id, status, () => { if (onDone) setTimeout(onDone, 1500); }); }
      finally { if (busy) busy.delete('trade:' + trade.tag); }
    } catch (ex) { err.textContent = ex.message; }
    finally { for (const b of buttons.querySelectorAll('button')) b.disabled = false; }
  }
  box.append(buttons, ask, err, status);
  return box;
}

export function onHold(trade) {
  return Boolean(trade && trade.payload && trade.payload.hold);
}

// The panel: unsettled order intents with a resolve form each, and the open trades on hold.
export function ordersPanel({ doubt, doubtSummary, held, heldSummary, onTradeChange }) {
  const panel = { busy: new Set(), dirty: new Set(), load };
  async function loadDoubt() {
    const r = await api('/api/orders/unsettled');
    doubtSummary.textContent = r.count
      ? `${r.count} unsettled · ${r.unresolved} unresolved`
      : 'none — every live order is accounted for';
    table(doubt, [
      { key: 'created_at', label: 'Sent', fmt: when },
      { key: 'age_s', label: 'Age', num: true, fmt: age },
      { key: 'trade_tag', label: 'Trade', fmt: (v, o) => [v, o.trade_hold ? el('span', { class: 'why', title: o.trade_hold }, ' (on hold)') : ''] },
      { key: 'purpose', label: 'Purpose' },
      { key: 'leg_index', label: 'Leg', num: true, fmt: (v, o) => `${v}${o.parent_correlation_id ? ' (slice)' : ''}` },
      { key: 'security_id', label: 'Security' },
      { key: 'side', label: 'Side' },
      { key: 'quantity', label: 'Qty', num: true },
      { key: 'filled_qty', label: 'Filled', num: true, fmt: (v, o) => `${v}${o.avg_price !== null ? ' @ ' + rupees(o.avg_price) : ''}` },
      { key: 'price', label: 'Limit', num: true, fmt: rupees },
      { key: 'state', label: 'State', fmt: (v, o) => badge(v, o.unresolved ? 'error' : o.terminal ? 'done' : 'pending') },
      { key: 'correlation_id', label: 'Correlation id', fmt: (v, o) => [v, o.order_id ? el('div', { class: 'muted' }, `order ${o.order_id}`) : ''] },
      { key: 'reason', label: 'Reason', cls: () => 'why' },
      { key: 'actions', label: 'Decide', fmt: (_v, o) => resolveForm(o, panel) },
    ], r.orders, { sortable: false, rowKey: 'correlation_id', empty: 'no live order in doubt' });
  }
  async function loadHeld() {
    const r = await api('/api/trades?status=open&limit=5000');
    const rows = r.trades.filter(onHold);
    heldSummary.textContent = rows.length ? `${rows.length} on hold — automatic exits suspended` : 'none';
    table(held, [
      { key: 'opened_at', label: 'Opened', fmt: when }, { key: 'tag', label: 'Tag' },
      { key: 'strategy', label: 'Strategy' }, { key: 'mode', label: 'Mode', fmt: badge },
      { key: 'quantity', label: 'Qty', num: true }, { key: 'entry_price', label: 'Entry', num: true, fmt: rupees },
      { key: 'payload', label: 'Why on hold', fmt: (p) => p.hold, cls: () => 'why' },
      { key: 'tag', label: 'Close', fmt: (_v, t) => holdActions(t, () => { load(); if (onTradeChange) onTradeChange(); }, panel.busy) },
    ], rows, { sortable: false, rowKey: 'tag', empty: 'no trade on hold' });
  }
  // An automatic reload never wipes a form being filled in or a command being watched;
  // ``force`` (the Refresh button) does.
  async function load({ force = false } = {}) {
    if (!force && (panel.busy.size || panel.dirty.size)) return;
    panel.dirty.clear();
    await Promise.all([loadDoubt(), loadHeld()]);
  }
  return panel;
}
