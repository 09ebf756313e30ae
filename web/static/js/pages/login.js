import { $, api, session } from '../app.js';

const err = $('#login-error');
const s = await session();
if (s.authenticated) location.href = $('#next').value || '/';
if ((s.login_methods || []).includes('chat')) $('#send-code').hidden = false;
if (!(s.login_methods || []).length) err.textContent = 'No login method configured: run `python -m engine auth setup`.';

$('#code').addEventListener('input', (e) => {
  e.target.value = e.target.value.replace(/\D/g, '').slice(0, 6);
  if (e.target.value.length === 6) $('#login-form').requestSubmit();
});

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  err.textContent = '';
  $('#login-btn').disabled = true;
  try {
    await api('/api/auth/login', { method: 'POST', body: { code: $('#code').value } });
    location.href = $('#next').value || '/';
  } catch (ex) {
    const wait = ex.data && ex.data.retry_after;
    err.textContent = ex.message + (wait ? ` (try again in ${wait}s)` : '');
    $('#code').value = '';
    $('#code').focus();
  } finally { $('#login-btn').disabled = false; }
});

$('#send-code').addEventListener('click', async () => {
  err.textContent = '';
  try {
    const r = await api('/api/auth/request-code', { method: 'POST', body: {} });
    err.textContent = `Code sent via ${r.channels.join(' and ')}; valid ${r.valid_minutes} minutes.`;
    err.className = 'muted';
  } catch (ex) { err.className = 'err'; err.textContent = ex.message; }
});
