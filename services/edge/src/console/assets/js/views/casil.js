// CASIL: the live policy, its versions, a draft checked without applying it (errors
// inline) and reloaded, and the stream of decisions as the policy stage publishes them
// (a payload only when the policy lets decisions carry one).
import { h, fill, card, table, notice, pretty, when, badge } from '../dom.js';
import { openFeed } from '../feed.js';

/** Decisions the view keeps on screen. */
const DECISIONS_KEEP = 100;

const DECISION_BADGE = { BLOCK: 'bad', ALLOW_WITH_REDACTION: 'warn', ALLOW: 'good' };

export function render({ main, bus, identity, credential }) {
  const live = h('div', { id: 'casil-live' }, h('p', { class: 'muted' }, 'Loading…'));
  const versions = h('div', { id: 'casil-versions' }, h('p', { class: 'muted' }, 'Loading…'));
  const draft = h('textarea', { id: 'casil-draft', rows: 6, spellcheck: 'false' });
  const problems = h('ul', { id: 'casil-problems', class: 'problems', hidden: true });
  const result = h('p', { id: 'casil-result', hidden: true });
  const validate = h('button', { id: 'casil-validate', type: 'button' }, 'Validate');
  const reload = h('button', { id: 'casil-reload', type: 'button', class: 'primary' }, 'Reload');
  const decisions = h('ol', { id: 'casil-decisions', class: 'decisions' });
  const feedState = h('span', { id: 'casil-feed-state', class: 'muted small' }, 'connecting…');
  const system = identity.system;
  validate.disabled = !system;
  reload.disabled = !system;

  fill(main,
    h('div', { class: 'view-head' }, h('h1', {}, 'CASIL'),
      h('p', { class: 'muted small' }, 'The one policy every tenant lives under; only the system authority changes it (ADR 015).')),
    h('div', { class: 'grid' },
      card('Live policy', live),
      card('Draft',
        h('p', { class: 'muted small' }, 'The settings to change, as the live policy names them (the arguments of op.casil.reload); the rest is kept.'),
        draft, problems, result,
        h('div', { class: 'row' }, validate, reload),
        system ? null : h('p', { class: 'muted small' }, 'Validating and reloading need the system authority (the operator login).')),
      card('Decisions', h('div', { class: 'row' }, feedState), decisions),
      card('Versions', versions)));

  const showProblems = (list) => {
    problems.hidden = !list.length;
    fill(problems, list.map((p) => h('li', {}, p)));
  };

  const readDraft = () => {
    let args;
    try {
      args = JSON.parse(draft.value || '{}');
    } catch (e) {
      showProblems([`The draft is not JSON: ${e.message}`]);
      return null;
    }
    if (typeof args !== 'object' || args === null || Array.isArray(args)) {
      showProblems(['The draft must be a JSON object of settings, e.g. {"mode": "enforce"}']);
      return null;
    }
    return args;
  };

  const loadLive = async () => {
    try {
      const data = (await bus.command('op.casil.get')).data || {};
      const { version, updated_at: updatedAt, updated_by: updatedBy, ...settings } = data;
      fill(live,
        h('p', {}, badge(`version ${version}`, 'info'), ' ', h('span', { class: 'muted small' }, `${when(updatedAt)} by ${updatedBy || '—'}`)),
        table(['Setting', 'Value'], Object.keys(settings).sort().map((k) => [h('code', {}, k), h('code', {}, JSON.stringify(settings[k]))])));
      if (!draft.value) draft.value = pretty({ mode: settings.mode, enabled: settings.enabled });
    } catch (e) {
      fill(live, h('p', { class: 'error' }, e.message));
    }
  };

  const loadVersions = async () => {
    try {
      const data = (await bus.command('op.casil.history')).data || {};
      fill(versions, table(['Version', 'Stored', 'By', 'Mode'],
        (data.versions || []).map((v) => [badge(String(v.version), 'info'), when(v.updated_at), v.updated_by || '—',
          v.policy ? `${v.policy.enabled ? v.policy.mode : 'off'}` : '—']),
        'No version stored yet.'),
      data.complete === false ? h('p', { class: 'muted small' }, 'Older versions are no longer kept.') : null);
    } catch (e) {
      fill(versions, h('p', { class: 'error' }, e.message));
    }
  };

  validate.addEventListener('click', async () => {
    const args = readDraft();
    notice(result, '');
    if (!args) return;
    try {
      const data = (await bus.command('op.casil.validate', args)).data || {};
      showProblems(data.valid ? [] : (data.problems || []));
      notice(result, data.valid ? 'Valid: reloading it would apply this policy.' : '', 'success');
    } catch (e) {
      showProblems([e.message]);
    }
  });

  reload.addEventListener('click', async () => {
    const args = readDraft();
    notice(result, '');
    if (!args) return;
    try {
      const data = (await bus.command('op.casil.reload', args)).data || {};
      showProblems([]);
      notice(result, `Reloaded: version ${data.version} is live.`, 'success');
      loadLive();
      loadVersions();
    } catch (e) {
      // A refused policy lists every problem in its message.
      showProblems(e.message.replace(/^Validation error: /, '').split('; '));
    }
  });

  loadLive();
  loadVersions();

  const onDecision = ({ tenant, event }) => {
    const meta = event.metadata || {};
    const flags = Object.entries(meta.flags || {}).filter(([, on]) => on).map(([flag]) => flag);
    decisions.prepend(h('li', { class: 'decision' },
      h('div', { class: 'message-head' },
        badge(meta.decision || '?', DECISION_BADGE[meta.decision] || ''),
        h('code', {}, meta.reason_code || ''),
        h('span', { class: 'muted small' }, `${tenant} · ${meta.room || '—'}:${meta.channel || '—'} · ${event.client_id || ''}`),
        h('span', { class: 'muted small' }, new Date().toLocaleTimeString())),
      flags.length ? h('div', { class: 'small' }, 'flags: ', flags.join(', ')) : null,
      event.payload !== undefined ? h('pre', {}, pretty(event.payload)) : null));
    while (decisions.children.length > DECISIONS_KEEP) decisions.lastElementChild.remove();
  };
  if (!identity.admin && !system) {
    feedState.textContent = 'Decisions are shown to tenant admins and the system authority.';
    return null;
  }
  return openFeed('casil', credential, onDecision, (text) => { feedState.textContent = text; });
}
