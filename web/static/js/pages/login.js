import { $, api, session } from '../app.js';

const err = $('#login-error');
// #next is rendered by the server through web.security.safe_next (a dashboard page or '/'),
// and the login answer's `next` went through the same function: no other value is followed.
const next = () => $('#next').value || '/';
const s = await session();
if (s.authenticated) location.href = next();
if ((s.login_methods || []).includes('chat')) $('#send-code').hidden = false;
if (!(s.login_methods || []).length) err.textContent = 'No login method configured: run `python -m engine auth setup`.';

function say(text, bad = false) { err.className = bad ? 'err' : 'muted'; err.textContent = text; }

$('#code').addEventListener('input', (e) => {
  e.target.value = e.target.value.replace(/\D/g, '').slice(0, 6);
  if (e.target.value.length === 6) $('#login-form').requestSubmit();
});

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  say('');
  $('#login-btn').disabled = true;
  try {
    const r = await api('/api/auth/login', { method: 'POST', body: { code: $('#code').value, next: next() } });
    location.href = r.next || '/';
  } catch (ex) {
    const wait = ex.data && ex.data.retry_after;
    say(ex.message + (wait ? ` (try again in ${wait}s)` : ''), true);
    $('#code').value = '';
    $('#code').focus();
  } finally { $('#login-btn').disabled = false; }
});

// The web only queues the code; the engine's notifier delivers it. Poll what really happened.
const POLL_MS = 1000, POLL_FOR_MS = 60000;
async function follow(request, started) {
  let st;
  try { st = await api(request.status_url); } catch (ex) { say(`Cannot tell whether the code was sent: ${ex.message}`, true); return; }
  const by = (status) => st.channels.filter(c => c.status === status);
  if (st.status === 'delivered') {
    say(`Code delivered via ${by('delivered').map(c => c.channel).join(' and ')}; valid ${request.valid_minutes} minutes.`);
  } else if (st.status === 'failed') {
    say('Delivery failed: ' + by('failed').map(c => `${c.channel}: ${c.error}`).join('; '), true);
  } else if (Date.now() - started > POLL_FOR_MS) {
    say(`Code still queued for ${request.channels.join(' and ')} — is the engine running?`, true);
  } else {
    setTimeout(() => follow(request, started), POLL_MS);
  }
}

$('#send-code').addEventListener('click', async () => {
  say('');
  try {
    const r = await api('/api/auth/request-code', { method: 'POST', body: {} });
    say(`Code queued for ${r.channels.join(' and ')}; waiting for delivery…`);
    setTimeout(() => follow(r, Date.now()), POLL_MS);
  } catch (ex) { say(ex.message, true); }
});
