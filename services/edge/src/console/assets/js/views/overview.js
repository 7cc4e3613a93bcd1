// Overview: what the bus is doing, refreshed every few seconds (one `overview` command
// per refresh, while the view is open).
import { h, fill, card, stat, table, facts, count, badge, every, wide } from '../dom.js';

const REFRESH_MS = 3000;
/** Rates are measured over this much of the recent samples. */
const WINDOW_MS = 30000;

export function render({ main, bus, identity, setTenants }) {
  const figures = h('div', { class: 'stats', id: 'overview-stats' });
  const details = h('div', { class: 'grid' });
  const status = h('p', { class: 'muted small', id: 'overview-status' }, 'Loading…');
  fill(main,
    h('div', { class: 'view-head' },
      h('h1', {}, 'Overview'),
      status),
    figures, details);
  const samples = [];

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
    if (fleet) {
      const list = edges.list || [];
      parts.push(wide(card('Edges',
        table(['Edge', 'Connections', 'Frames in', 'Frames out', 'NATS'],
          list.map((e) => [h('code', {}, e.edge_id), count(e.connections), count(e.frames_in), count(e.frames_out),
            e.bus_connected === false ? badge('disconnected', 'bad') : badge('ok', 'good')]),
          'No edge has reported yet.'))));
      const clients = data.clients || {};
      const tenants = Object.keys(clients).sort();
      setTenants(tenants);
      parts.push(card('Tenants with connections',
        table(['Tenant', 'Connections'], tenants.map((t) => [t === identity.tenant ? h('strong', {}, t) : t, count(clients[t])]),
          'No tenant is connected.'),
        data.clients_complete === false ? h('p', { class: 'muted small' }, 'The first tenants by name only (ARQONBUS_STATUS_MAX_TENANTS).') : null));
    }
    fill(details, parts);
    status.textContent = `Updated ${new Date(now).toLocaleTimeString()}; every ${REFRESH_MS / 1000} s.`;
    status.className = 'muted small';
  };

  return every(REFRESH_MS, refresh);
}
