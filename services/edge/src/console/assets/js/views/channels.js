// Channels: the tenant's rooms and channels, a channel's members (refreshed while shown),
// its history a page at a time, a live tail (the console joins the channel, and leaves it
// when the view closes), publishing, creating and deleting. Each is a command of the bus.
import { h, fill, card, table, facts, notice, pretty, when, count, badge, every } from '../dom.js';

const MEMBERS_REFRESH_MS = 2000;
/** Messages the tail keeps on screen; older ones are removed. */
const TAIL_KEEP = 200;
const HISTORY_PAGE = 20;

const link = (...parts) => `#/channels/${parts.map(encodeURIComponent).join('/')}`;

export function render(ctx) {
  const [room, channel] = ctx.args;
  if (room && channel) return channelView(ctx, room, channel);
  return roomsView(ctx, room);
}

function roomsView({ main, bus, identity }, selected) {
  const rooms = h('div', { id: 'rooms' }, h('p', { class: 'muted' }, 'Loading…'));
  const channels = h('div', { id: 'channels-list' });
  const createError = h('p', { hidden: true });
  const form = h('form', { id: 'create-form', class: 'stack' },
    h('label', { for: 'create-room' }, 'Room'),
    h('input', { id: 'create-room', value: selected || '', spellcheck: 'false', required: true }),
    h('label', { for: 'create-channel' }, 'Channel'),
    h('input', { id: 'create-channel', spellcheck: 'false', required: true }),
    h('label', { for: 'create-description' }, 'Description'),
    h('input', { id: 'create-description' }),
    createError,
    h('button', { id: 'create-submit', type: 'submit' }, 'Create channel'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const args = {
      room: form.querySelector('#create-room').value.trim(),
      channel: form.querySelector('#create-channel').value.trim(),
    };
    const description = form.querySelector('#create-description').value.trim();
    if (description) args.description = description;
    try {
      await bus.command('create_channel', args);
      location.hash = link(args.room, args.channel);
    } catch (e) {
      notice(createError, e.message);
    }
  });
  fill(main,
    h('div', { class: 'view-head' }, h('h1', {}, 'Channels'),
      h('p', { class: 'muted small' }, `Tenant ${identity.tenant}`)),
    h('div', { class: 'grid' },
      card('Rooms', rooms),
      selected ? card(`Channels of ${selected}`, channels) : null,
      card('New channel', form)));

  (async () => {
    try {
      const data = (await bus.command('list_rooms', { limit: 1000 })).data || {};
      const list = data.rooms || [];
      fill(rooms,
        list.length
          ? h('ul', { class: 'links' }, list.map((r) => h('li', {},
            h('a', { href: link(r.room), class: `room-link${r.room === selected ? ' active' : ''}` }, r.room),
            h('span', { class: 'muted small' }, ` ${count(r.channels)} channel${r.channels === 1 ? '' : 's'}`))))
          : h('p', { class: 'muted empty' }, 'No rooms yet: create a channel, or join one from a client.'),
        data.complete === false ? h('p', { class: 'muted small' }, 'More rooms follow (the first 1000 by name).') : null);
    } catch (e) {
      fill(rooms, h('p', { class: 'error' }, e.message));
    }
    if (!selected) return;
    try {
      const data = (await bus.command('list_channels', { room: selected, limit: 1000 })).data || {};
      fill(channels, table(['Channel', 'Members', 'Last activity', 'Description'],
        (data.channels || []).map((c) => [
          h('a', { href: link(selected, c.name), class: 'channel-link' }, c.name),
          count(c.member_count), when(c.last_activity), c.description || '']),
        'No channels in this room.'));
    } catch (e) {
      fill(channels, h('p', { class: 'error' }, e.message));
    }
  })();
}

function channelView({ main, bus, identity }, room, channel) {
  const members = h('div', { id: 'members' }, h('p', { class: 'muted' }, 'Loading…'));
  const details = h('div', { id: 'channel-facts' });
  const tailList = h('ol', { id: 'tail', class: 'messages' });
  const tailState = h('span', { id: 'tail-state', class: 'muted small' }, 'not tailing');
  const tailToggle = h('button', { id: 'tail-toggle', type: 'button' }, 'Start tail');
  const historyList = h('ol', { id: 'history', class: 'messages' });
  const historyMore = h('button', { id: 'history-older', type: 'button', class: 'ghost', hidden: true }, 'Older');
  const historyRefresh = h('button', { id: 'history-refresh', type: 'button', class: 'ghost' }, 'Newest');
  const historyState = h('p', { class: 'muted small' });
  const publishResult = h('p', { id: 'publish-result', hidden: true });
  const payload = h('textarea', { id: 'publish-payload', rows: 3, spellcheck: 'false', placeholder: '{"content": "hello"} or plain text' });
  const publishForm = h('form', { id: 'publish-form', class: 'stack' },
    h('label', { for: 'publish-payload' }, 'Payload (JSON object, or text sent as {"content": …})'),
    payload, publishResult,
    h('button', { id: 'publish-submit', type: 'submit' }, 'Publish'));
  const deleteResult = h('p', { hidden: true });
  const force = h('input', { id: 'delete-force', type: 'checkbox' });
  const deleteForm = h('form', { id: 'delete-form', class: 'stack' },
    identity.admin ? h('label', { class: 'check' }, force, ' Force: remove its members too (admins)') : null,
    deleteResult,
    h('button', { id: 'delete-channel', type: 'submit', class: 'danger' }, 'Delete channel'));

  fill(main,
    h('div', { class: 'view-head' },
      h('h1', {}, h('a', { href: link(room), class: 'crumb' }, room), h('span', { class: 'muted' }, ' : '), channel),
      h('p', { class: 'muted small' }, `Tenant ${identity.tenant}`)),
    h('div', { class: 'grid' },
      card('Members', members, details),
      card('Live tail', h('div', { class: 'row' }, tailToggle, tailState), tailList),
      card('Publish', publishForm),
      card('History', historyList, h('div', { class: 'row' }, historyRefresh, historyMore, historyState)),
      card('Delete', deleteForm)));

  // Members, refreshed while the view is open.
  const stopMembers = every(MEMBERS_REFRESH_MS, async () => {
    try {
      const data = (await bus.command('channel_info', { room, channel })).data || {};
      const ids = data.members || [];
      fill(members,
        ids.length
          ? h('ul', { class: 'members' }, ids.map((id) => h('li', { dataset: { client: id } },
            h('code', {}, id), id === bus.clientId ? badge('this console', 'info') : null)))
          : h('p', { class: 'muted empty' }, 'No members.'),
        data.members_complete === false ? h('p', { class: 'muted small' }, `The first ${ids.length} of ${data.member_count} by id.`) : null);
      fill(details, facts([
        ['Members', count(data.member_count)],
        ['Stored messages', count(data.statistics?.message_count)],
        ['Created', `${when(data.created_at)} by ${data.created_by || '—'}`],
        ['Last activity', when(data.last_activity)],
      ]));
    } catch (e) {
      fill(members, h('p', { class: 'error' }, e.message));
    }
  });

  // The live tail: the console's connection joins the channel.
  let tailing = false;
  const showMessage = (list, frame, prepend = false) => {
    const item = h('li', { class: 'message', dataset: { id: frame.id || frame.message_id || '' } },
      h('div', { class: 'message-head' },
        h('code', {}, frame.sender || '—'),
        frame.type && frame.type !== 'message' ? badge(frame.type) : null,
        frame.sender && frame.sender === bus.clientId ? badge('sent by this console', 'info') : null,
        h('span', { class: 'muted small' }, when(frame.timestamp))),
      h('pre', {}, pretty(frame.payload)));
    if (prepend) list.prepend(item); else list.append(item);
    while (list.children.length > TAIL_KEEP) list.firstElementChild.remove();
  };
  const onFrame = (event) => {
    const frame = event.detail;
    if (!tailing || frame.room !== room || frame.channel !== channel) return;
    if (frame.payload && frame.payload.event === 'channel_deleted') {
      tailState.textContent = 'the channel was deleted';
      tailing = false;
      tailToggle.textContent = 'Start tail';
    }
    showMessage(tailList, frame);
  };
  bus.addEventListener('frame', onFrame);
  tailToggle.addEventListener('click', async () => {
    tailToggle.disabled = true;
    try {
      if (!tailing) {
        await bus.command('join_channel', { room, channel });
        tailing = true;
        tailToggle.textContent = 'Stop tail';
        tailState.textContent = 'tailing: messages appear as they arrive';
      } else {
        tailing = false;
        await bus.command('leave_channel', { room, channel });
        tailToggle.textContent = 'Start tail';
        tailState.textContent = 'not tailing';
      }
    } catch (e) {
      tailState.textContent = e.message;
    } finally {
      tailToggle.disabled = false;
    }
  });

  publishForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = payload.value.trim();
    if (!text) return;
    let body;
    try {
      body = JSON.parse(text);
      if (typeof body !== 'object' || body === null || Array.isArray(body)) body = { content: body };
    } catch {
      body = { content: text };
    }
    try {
      const ack = await bus.publish(room, channel, body);
      notice(publishResult, `Published ${ack.id}.`, 'success');
      // The bus does not send a message back to its sender: show it in the tail here.
      if (tailing) showMessage(tailList, { ...ack, type: 'message', sender: bus.clientId });
      payload.value = '';
    } catch (e) {
      notice(publishResult, `${e.code ? `${e.code}: ` : ''}${e.message}`);
    }
  });

  // History, newest page first; "Older" continues from where the page was cut.
  let until = null;
  const loadHistory = async () => {
    const args = { room, channel, limit: HISTORY_PAGE };
    if (until) args.until = until;
    try {
      const data = (await bus.command('history', args)).data || {};
      const page = data.history || [];
      if (!until && !page.length) historyState.textContent = 'Nothing stored.';
      // Each page is oldest first; older pages go above.
      for (const message of [...page].reverse()) {
        showMessage(historyList, { ...message, id: message.message_id }, true);
      }
      const oldest = page[0];
      const more = page.length === HISTORY_PAGE || data.complete === false;
      until = data.next_until || (oldest ? oldest.stored_at || oldest.timestamp : null);
      historyMore.hidden = !(more && until);
      if (page.length) historyState.textContent = `${count(data.total_messages)} stored in all.`;
    } catch (e) {
      historyState.textContent = e.message;
    }
  };
  historyMore.addEventListener('click', loadHistory);
  historyRefresh.addEventListener('click', () => {
    until = null;
    historyList.replaceChildren();
    historyState.textContent = '';
    loadHistory();
  });
  loadHistory();

  deleteForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!window.confirm(`Delete ${room}:${channel} and its history?`)) return;
    try {
      await bus.command('delete_channel', { room, channel, force: force.checked });
      location.hash = link(room);
    } catch (e) {
      notice(deleteResult, e.message);
    }
  });

  return () => {
    stopMembers();
    bus.removeEventListener('frame', onFrame);
    if (tailing) bus.command('leave_channel', { room, channel }).catch(() => {});
  };
}
