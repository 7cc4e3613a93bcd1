// A console feed (/console/feed): events no command returns, as they happen. Opened by
// a view and closed when the view closes.
import { protocolsFor, socketUrl } from './bus.js';

/**
 * Opens feed `name` ('casil', 'dead_letters') with `credential`; `onEvent({tenant, event})`
 * for each event, `onState(text)` when it opens, drops events or closes. Returns a
 * function that closes it.
 */
export function openFeed(name, credential, onEvent, onState) {
  let closed = false;
  let socket = null;
  let retry = null;
  const connect = () => {
    socket = new WebSocket(socketUrl(`/console/feed?feed=${encodeURIComponent(name)}`), protocolsFor(credential));
    socket.addEventListener('message', (message) => {
      let frame;
      try { frame = JSON.parse(message.data); } catch { return; }
      if (frame.scope) onState(`live (${frame.scope === 'fleet' ? 'every tenant' : `tenant ${frame.scope}`})`);
      else if (frame.dropped) onState(`live; ${frame.dropped} events dropped (over the feed's rate)`);
      else if (frame.event) onEvent(frame);
    });
    socket.addEventListener('close', (event) => {
      if (closed) return;
      onState(`closed (${event.code}); reconnecting…`);
      retry = setTimeout(connect, 3000);
    });
  };
  connect();
  return () => {
    closed = true;
    clearTimeout(retry);
    if (socket) socket.close(1000, 'view closed');
  };
}
