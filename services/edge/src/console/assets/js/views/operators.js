// Operators: webhook rules with their delivery outcomes and dead letters (live), cron jobs with their next
// firing, the store's keys per namespace, and the Tier-Omega lane when it is on. Each
// list is the operator's own command, as the caller may see it (an admin: the tenant's).
import { h, fill, card, table, notice, pretty, when, count, badge, wide } from '../dom.js';
import { openFeed } from '../feed.js';

const DEAD_KEEP = 50;

export function render({ main, bus, identity, credential }) {
  const webhooks = h('div', { id: 'webhooks' }, h('p', { class: 'muted' }, 'Loading…'));
  const dead = h('ol', { id: 'dead-letters', class: 'decisions' });
  const deadState = h('span', { class: 'muted small' }, '');
  const cron = h('div', { id: 'cron' }, h('p', { class: 'muted' }, 'Loading…'));
  const storeKeys = h('div', { id: 'store-keys' });
  const storeValue = h('pre', { id: 'store-value', hidden: true });
  const storeError = h('p', { hidden: true });
  const namespace = h('input', { id: 'store-namespace', placeholder: 'default namespace', spellcheck: 'false' });
  const storeForm = h('form', { class: 'row' }, namespace, h('button', { type: 'submit', class: 'small' }, 'List keys'));
  const omega = h('div', { id: 'omega' }, h('p', { class: 'muted' }, 'Loading…'));
  const admin = identity.admin || identity.system;

  fill(main,
    h('div', { class: 'view-head' }, h('h1', {}, 'Operators'),
      h('p', { class: 'muted small' }, admin ? `Everything of tenant ${identity.tenant}` : 'Your own rules and jobs')),
    h('div', { class: 'grid' },
      wide(card('Webhook rules', webhooks)),
      wide(card('Cron jobs', cron)),
      card('Dead letters', h('div', { class: 'row' }, deadState),
        h('p', { class: 'muted small' }, 'Deliveries that ran out of attempts, from now on (their bodies are not shown).'), dead),
      card('Store', storeForm, storeError, storeKeys, storeValue),
      card('Tier-Omega lane', omega)));

  const notice_ = h('p', { id: 'operators-notice', hidden: true });
  main.querySelector('.view-head').append(notice_);

  /**
   * A button that runs an existing command (`op.webhook.unregister`, `op.cron.cancel`),
   * decided by the operators service as for any client, then reloads `reload`.
   */
  const action = (label, id, command, args, reload) => h('button', {
    type: 'button',
    class: 'small danger',
    id,
    onclick: async (click) => {
      click.target.disabled = true;
      try {
        const answer = await bus.command(command, args);
        notice(notice_, answer.message || `${label}: done`, 'success');
      } catch (e) {
        notice(notice_, e.message);
      }
      await reload();
    },
  }, label);

  const loadWebhooks = async () => {
    try {
      const data = (await bus.command('op.webhook.list')).data || {};
      // Each rule's delivery outcomes (op.webhook.outcomes); the rules are still shown
      // when they cannot be read.
      let figures = new Map();
      let figuresError = null;
      try {
        const outcomes = (await bus.command('op.webhook.outcomes')).data || {};
        figures = new Map((outcomes.rules || []).map((o) => [o.rule_id, o]));
      } catch (e) {
        figuresError = e.message;
      }
      const figure = (o, key, label, kind) => {
        const n = o?.[key] ?? 0;
        return h('span', { class: 'outcome' },
          n && kind ? badge(h('span', { class: `outcome-${key}` }, count(n)), kind) : h('span', { class: `outcome-${key}` }, count(n)),
          ` ${label}`);
      };
      const outcomes = (o) => h('div', { class: 'outcomes small' },
        figure(o, 'delivered', 'delivered', 'good'), figure(o, 'retried', 'retried'),
        figure(o, 'failed', 'failed', 'bad'), figure(o, 'dead_lettered', 'dead', 'bad'));
      const lastError = (o) => (o && o.last_error
        ? h('div', { class: 'small outcome-last-error', title: o.last_error },
          o.last_error, h('div', { class: 'muted' }, when(o.last_error_at)))
        : '—');
      fill(webhooks,
        table(['Rule', 'URL', 'Where', 'Owner', 'Outcomes', 'Last error', ''],
          (data.rules || []).map((r) => {
            const o = figures.get(r.rule_id);
            return [h('code', {}, r.rule_id), r.url, `${r.room || '*'}:${r.channel || '*'}`,
              h('code', { class: 'small' }, r.owner_client_id), outcomes(o), lastError(o),
              action('Remove', `remove-${r.rule_id}`, 'op.webhook.unregister', { rule_id: r.rule_id }, loadWebhooks)];
          }),
          'No webhook rules.'),
        figuresError
          ? h('p', { class: 'error small' }, `Delivery outcomes: ${figuresError}`)
          : h('p', { class: 'muted small' }, 'Delivery outcomes since each rule was registered, every replica\'s, added every few seconds.'));
    } catch (e) {
      fill(webhooks, h('p', { class: 'error' }, e.message));
    }
  };

  const loadCron = async () => {
    try {
      const data = (await bus.command('op.cron.list')).data || {};
      fill(cron, table(['Job', 'Where', 'Schedule', 'Fired', 'Next firing', ''],
        (data.jobs || []).map((j) => [h('code', {}, j.job_id), `${j.room}:${j.channel}`,
          j.schedule ? `${j.schedule} (${j.timezone})` : `every ${j.interval_seconds ?? '—'} s × ${j.repeat_count ?? '∞'}`,
          count(j.fired), when(j.next_fire_at),
          action('Cancel', `cancel-${j.job_id}`, 'op.cron.cancel', { job_id: j.job_id }, loadCron)]),
        'No cron jobs.'));
    } catch (e) {
      fill(cron, h('p', { class: 'error' }, e.message));
    }
  };

  (async () => {
    await loadWebhooks();
    await loadCron();
    try {
      const status = (await bus.command('op.omega.status')).data || {};
      if (!status.enabled) {
        fill(omega, h('p', { class: 'muted' }, 'The lane is off (ARQONBUS_OMEGA_ENABLED).'));
      } else {
        const substrates = (await bus.command('op.omega.list_substrates')).data || {};
        const events = (await bus.command('op.omega.list_events', { limit: 20 })).data || {};
        fill(omega,
          h('p', {}, `Lab room ${status.lab_room}:${status.lab_channel} · ${count(status.substrate_count)} substrates · ${count(status.event_count)} events`),
          table(['Substrate', 'Name', 'Kind', 'Created'], (substrates.substrates || []).map((s) => [h('code', {}, s.substrate_id), s.name, s.kind, when(s.created_at)]), 'No substrates.'),
          table(['Event', 'Signal', 'Substrate', 'When'], (events.events || []).map((e) => [h('code', {}, e.event_id), e.signal, h('code', {}, e.substrate_id), when(e.timestamp)]), 'No events.'));
      }
    } catch (e) {
      fill(omega, h('p', { class: 'error' }, e.message));
    }
  })();

  const listKeys = async (event) => {
    if (event) event.preventDefault();
    notice(storeError, '');
    storeValue.hidden = true;
    const args = { limit: 200 };
    if (namespace.value.trim()) args.namespace = namespace.value.trim();
    try {
      const data = (await bus.command('op.store.list', args)).data || {};
      fill(storeKeys,
        h('p', { class: 'muted small' }, `Namespace ${data.namespace}: ${count(data.total)} keys${data.complete === false ? ' (the first 200 shown)' : ''}`),
        (data.keys || []).length
          ? h('ul', { class: 'links' }, data.keys.map((key) => h('li', {}, h('a', {
            href: '#/operators',
            onclick: async (click) => {
              click.preventDefault();
              try {
                const value = (await bus.command('op.store.get', args.namespace ? { key, namespace: args.namespace } : { key })).data || {};
                fill(storeValue, pretty(value.value));
                storeValue.hidden = false;
              } catch (e) {
                notice(storeError, e.message);
              }
            },
          }, key))))
          : h('p', { class: 'muted empty' }, 'No keys.'));
    } catch (e) {
      notice(storeError, e.message);
    }
  };
  storeForm.addEventListener('submit', listKeys);
  listKeys();

  if (!admin) {
    deadState.textContent = 'Shown to tenant admins and the system authority.';
    return null;
  }
  return openFeed('dead_letters', credential, ({ tenant, event }) => {
    dead.prepend(h('li', { class: 'decision' },
      h('div', { class: 'message-head' }, badge('dead', 'bad'), h('code', {}, event.rule_id || ''),
        h('span', { class: 'muted small' }, `${tenant} · ${event.url || ''} · ${count(event.attempts)} attempts`)),
      h('div', { class: 'small' }, event.last_error || '')));
    while (dead.children.length > DEAD_KEEP) dead.lastElementChild.remove();
  }, (text) => { deadState.textContent = text; });
}
