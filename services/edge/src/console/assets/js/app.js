// The console's shell: sign-in, the connection to the bus, the header and the views.
import { Bus } from './bus.js';
import { h, fill, notice } from './dom.js';
import * as overview from './views/overview.js';
import * as channels from './views/channels.js';
import * as casil from './views/casil.js';
import * as operators from './views/operators.js';

const VIEWS = { overview, channels, casil, operators };
/** Where the credentials are kept: this tab's session storage, never a cookie. */
const STORED = 'arqonbus.console.credential';

const $ = (id) => document.getElementById(id);

const state = {
  credential: null,
  identity: null,
  bus: null,
  closeView: null,
  reconnect: null,
  attempts: 0,
};

function load() {
  try { return JSON.parse(sessionStorage.getItem(STORED)); } catch { return null; }
}

function save(credential) {
  if (credential) sessionStorage.setItem(STORED, JSON.stringify(credential));
  else sessionStorage.removeItem(STORED);
}

/** Who the credentials make us, as the edge checks them (the same check as an upgrade). */
async function checkSession(credential) {
  const body = credential.kind === 'operator'
    ? { service_token: credential.token, tenant: credential.tenant }
    : { token: credential.token };
  const response = await fetch('/console/api/session', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.details || `Refused (${response.status})`);
  return answer;
}

function showLogin(error) {
  closeView();
  if (state.bus) { state.bus.close(); state.bus = null; }
  $('nav').hidden = true;
  $('who').hidden = true;
  $('view').hidden = true;
  $('login').hidden = false;
  notice($('login-error'), error || '');
}

function selectTab(operator) {
  $('tab-token').setAttribute('aria-selected', String(!operator));
  $('tab-operator').setAttribute('aria-selected', String(operator));
  $('login-token-fields').hidden = operator;
  $('login-operator-fields').hidden = !operator;
}

async function signIn(event) {
  event.preventDefault();
  const operator = $('tab-operator').getAttribute('aria-selected') === 'true';
  const credential = operator
    ? { kind: 'operator', token: $('login-service-token').value.trim(), tenant: $('login-tenant').value.trim() }
    : { kind: 'token', token: $('login-token').value.trim() };
  if (!credential.token) {
    notice($('login-error'), operator ? 'Enter the service token.' : 'Paste a JWT.');
    return;
  }
  $('login-submit').disabled = true;
  try {
    await start(credential);
  } finally {
    $('login-submit').disabled = false;
  }
}

/** Checks `credential`, connects, and shows the console. */
async function start(credential) {
  let identity;
  try {
    identity = await checkSession(credential);
  } catch (e) {
    save(null);
    showLogin(e.message);
    return;
  }
  state.credential = credential;
  state.identity = identity;
  save(credential);
  $('login').hidden = true;
  $('nav').hidden = false;
  $('who').hidden = false;
  $('tenant-switch').hidden = !identity.system;
  $('tenant-input').value = identity.tenant;
  const role = identity.system ? 'operator' : identity.admin ? 'tenant admin' : identity.role;
  fill($('identity'), h('strong', {}, identity.tenant), ` · ${role}`);
  await connect();
}

async function connect() {
  clearTimeout(state.reconnect);
  if (state.bus) state.bus.close();
  const bus = new Bus(state.credential);
  state.bus = bus;
  setLink('connecting');
  bus.addEventListener('close', (event) => {
    if (state.bus !== bus) return;
    setLink('down');
    closeView();
    // Expired credentials: check them again (an operator session is renewed by
    // reconnecting); anything else: reconnect with backoff.
    state.attempts += 1;
    const delay = Math.min(1000 * 2 ** Math.min(state.attempts, 4), 15000);
    state.reconnect = setTimeout(() => {
      if (event.detail.code === 4001) start(state.credential);
      else connect();
    }, delay);
  });
  try {
    await bus.open();
  } catch {
    return;
  }
  state.attempts = 0;
  setLink('up');
  route();
}

function setLink(status) {
  const link = $('link');
  link.className = `link-state ${status}`;
  link.title = { up: 'connected', down: 'disconnected, reconnecting', connecting: 'connecting' }[status];
}

function closeView() {
  if (state.closeView) {
    try { state.closeView(); } catch (e) { console.warn(e); }
    state.closeView = null;
  }
}

/** Shows the view the location names: #/<view>/<args…>. */
function route() {
  if (!state.bus || !state.identity) return;
  closeView();
  const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const view = VIEWS[name] ? name : 'overview';
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('active', link.dataset.view === view);
  }
  const main = $('view');
  main.hidden = false;
  main.dataset.view = view;
  main.replaceChildren();
  state.closeView = VIEWS[view].render({
    main,
    bus: state.bus,
    identity: state.identity,
    credential: state.credential,
    args: rest.filter(Boolean),
    setTenants,
    openTenant: state.credential.kind === 'operator' ? openTenant : null,
  }) || null;
}

/** The operator's tenant picker offers `tenants`. */
function setTenants(tenants) {
  const list = $('tenant-list');
  fill(list, tenants.map((t) => h('option', { value: t })));
}

function switchTenant(event) {
  event.preventDefault();
  openTenant($('tenant-input').value.trim());
}

/** The operator looks at `tenant` instead (a new connection as that tenant's admin). */
function openTenant(tenant) {
  if (!tenant || !state.credential || state.credential.kind !== 'operator') return;
  $('tenant-input').value = tenant;
  start({ ...state.credential, tenant });
}

function logout() {
  save(null);
  state.credential = null;
  state.identity = null;
  showLogin();
}

function boot() {
  $('login-form').addEventListener('submit', signIn);
  $('tab-token').addEventListener('click', () => selectTab(false));
  $('tab-operator').addEventListener('click', () => selectTab(true));
  $('logout').addEventListener('click', logout);
  $('tenant-switch').addEventListener('submit', switchTenant);
  window.addEventListener('hashchange', route);
  const stored = load();
  if (stored) start(stored);
  else showLogin();
}

boot();
