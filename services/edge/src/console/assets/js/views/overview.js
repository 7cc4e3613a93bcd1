// Overview: what the bus is doing, refreshed every few seconds (one `overview` command
// per refresh, while the view is open). For the system authority also every tenant with
// state (`list_tenants`, a page at a time, read when the view opens and on demand).
import { h, fill, card, stat, table, facts, count, badge, every, wide } from '../dom.js';

const REFRESH_MS = 3000;
/** Rates are measured over this much of the recent samples. */
const WINDOW_MS = 30000;
/** Tenants one `list_tenants` page asks for. */
const TENANT_PAGE = 100;

/**
 * The tenants with state, a page at a time ("More tenants" for the next); each one opens
 * that tenant when the operator signed in with the service token.
 */
function tenantList(bus, setTenants, openTenant) {
  const box = h('div', { id: 'tenants' });
  const rows = [];
  let after = null;
  const yes = (flag) => (flag ? '✓' : '');
  const load = async () => {
    let data;
    try {
      data = (await bus.command('list_tenants', after ? { limit: TENANT_PAGE, after } : { limit: TENANT_PAGE })).data || {};
    } catch (e) {
      fill(box, h('p', { class: 'error' }, `Could not list the tenants: ${e.message}`));
      return;
    }
    rows.push(...(data.tenants || []));
    after = data.complete === false ? data.next_after : null;
    setTenants(rows.map((t) => t.tenant));
    const name = (tenant) => (openTenant
      ? h('a', { href: '#/overview', class: 'tenant-link', id: `tenant-${tenant}`, onclick: (click) => { click.preventDefault(); openTenant(tenant); } }, tenant)
      : tenant);
    fill(box,
      table(['Tenant', 'Connections', 'Channels', 'History', 'Webhooks', 'Cron'],
        rows.map((t) => [name(t.tenant), count(t.connections), yes(t.channels), yes(t.history), yes(t.webhook_rules), yes(t.cron_jobs)]),
        'No tenant has any state.'),
      h('p', { class: 'muted small' }, `${count(rows.length)} of ${count(data.total_tenants)} tenants`),
      after ? h('button', { type: 'button', class: 'small', id: 'more-tenants', onclick: load }, 'More tenants') : null);
  };
  load();
  return box;
}

export function render({ main, bus, identity, setTenants, openTenant }) {
  const figures = h('div', { class: 'stats', id: 'overview-stats' });
  const details = h('div', { class: 'grid' });
  const status = h('p', { class: 'muted small', id: 'overview-status' }, 'Loading…');
  fill(main,
    h('div', { class: 'view-head' },
      h('h1', {}, 'Overview'),
      status),
    figures, details);
  const samples = [];
  const tenants = identity.system ? tenantList(bus, setTenants, openTenant) : null;

  const refresh = async () => {
    let data;
    try {
      data = (await bus.command('overview')).data || {};
    } catch (e) {
      status.textContent = `Could not read the overview: ${e.message}`;
      status.className = 'error small';
      return;
    }
    const now = Date.now();
    const fleet = data.scope === 'fleet';
    const edges = data.edges || {};
    const sample = {
      at: now,
      in: fleet ? edges.frames_in : data.stored_messages,
      out: fleet ? edges.frames_out : null,
    };
    samples.push(sample);
    while (samples.length > 2 && now - samples[0].at > WINDOW_MS) samples.shift();
    const first = samples[0];
    const seconds = (sample.at - first.at) / 1000;
    const rate = (key) => (seconds >= 2 && typeof sample[key] === 'number' && typeof first[key] === 'number'
      ? ((sample[key] - first[key]) / seconds).toFixed(1) : '…');
    const casil = data.casil || {};
    const bus_ = data.bus || {};
    const queue = data.webhooks || {};
    fill(figures,
      stat('Edges alive', count(edges.alive), fleet ? 'every edge of the fleet' : null, 'stat-edges'),
      stat('Connections', count(data.connections), fleet ? 'every tenant' : `tenant ${data.tenant}`, 'stat-connections'),
      stat(fleet ? 'Frames in / s' : 'Stored / s', rate('in'), fleet ? 'from clients, all edges' : 'messages of this tenant', 'stat-in'),
      fleet ? stat('Frames out / s', rate('out'), 'to clients, all edges', 'stat-out') : null,
      stat('Webhook queue', queue.queued === undefined ? '—' : count(queue.queued),
        queue.queued === undefined ? (queue.error || 'not available') : (fleet ? 'jobs, every tenant' : 'jobs of this tenant'), 'stat-webhooks'),
      stat('CASIL', casil.error ? 'unavailable' : `${casil.enabled ? casil.mode : 'off'}`,
        casil.error ? casil.error : `version ${casil.version}`, 'stat-casil'),
      stat('NATS', bus_.backend === 'embedded' ? 'embedded' : (bus_.connected ? 'connected' : 'disconnected'),
        bus_.backend === 'embedded' ? 'one process, in memory' : 'as the dispatcher sees it', 'stat-nats'));
    const parts = [
      card('This tenant',
        facts([
          ['Tenant', h('strong', {}, data.tenant)],
          ['Rooms', count(data.rooms)],
          ['Channels', count(data.channels)],
          ['Stored messages', data.history ? count(data.stored_messages) : 'history off'],
        ])),
      card('Dispatcher',
        facts([
          ['Replica', h('code', {}, data.dispatcher?.replica || '—')],
          ['Version', data.dispatcher?.version || '—'],
          ['Uptime', `${count(data.dispatcher?.uptime_seconds)} s`],
        ])),
    ];
    const services = data.services || {};
    const names = ['policy', 'dispatcher', 'operators'];
    if (tenants) parts.push(wide(card('Tenants', tenants)));
    if (fleet) {
      const rows = names.flatMap((name) => (services[name]?.list || []).map((r) => [name, h('code', {}, r.replica),
        r.version || '—', `${count(r.uptime_seconds)} s`, r.bus_connected === false ? badge('disconnected', 'bad') : badge('ok', 'good')]));
      parts.push(wide(card('Service replicas',
        h('div', { id: 'service-replicas' },
          table(['Service', 'Replica', 'Version', 'Uptime', 'NATS'], rows, 'No replica has reported yet.')))));
    } else {
      parts.push(card('Service replicas',
        h('div', { id: 'service-replicas' },
          facts(names.map((name) => [name, `${count(services[name]?.alive ?? 0)} alive`])))));
    }
    if (fleet) {
      const list = edges.list || [];
      parts.push(wide(card('Edges',
        table(['Edge', 'Connections', 'Frames in', 'Frames out', 'NATS'],
          list.map((e) => [h('code', {}, e.edge_id), count(e.connections), count(e.frames_in), count(e.frames_out),
            e.bus_connected === false ? badge('disconnected', 'bad') : badge('ok', 'good')]),
          'No edge has reported yet.'))));
    }
    fill(details, parts);
    status.textContent = `Updated ${new Date(now).toLocaleTimeString()}; every ${REFRESH_MS / 1000} s.`;
    status.className = 'muted small';
  };

  return every(REFRESH_MS, refresh);
}
