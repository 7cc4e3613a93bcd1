// The bus's own WebSocket protocol (docs/protocol.md), as the console speaks it: every
// action is a command or a message on /ws with the user's credentials, answered by the
// dispatcher like any client's.

/** The subprotocol the edge selects; the credentials ride beside it. */
const PROTOCOL = 'arqonbus.v1';
/** How long a command may take before the console gives up waiting. */
const REQUEST_TIMEOUT_MS = 15000;

/** The subprotocols carrying `credential` ({kind: 'token', token} or {kind: 'operator', token, tenant}). */
export function protocolsFor(credential) {
  if (!credential) return [PROTOCOL];
  if (credential.kind === 'operator') {
    return [PROTOCOL, `arqonbus.service.${base64url(credential.token)}`, `arqonbus.tenant.${credential.tenant}`];
  }
  return [PROTOCOL, `arqonbus.bearer.${credential.token}`];
}

function base64url(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

let sequence = 0;
/** A message id the bus accepts: arq_<ms>_<n>_<6 hex>. */
export function newId() {
  sequence += 1;
  const hex = Array.from(crypto.getRandomValues(new Uint8Array(3)), (b) => b.toString(16).padStart(2, '0')).join('');
  return `arq_${Date.now()}_${sequence}_${hex}`;
}

/** `ws://` or `wss://` URL of `path` on this origin. */
export function socketUrl(path) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${path}`;
}

/** An error answer of the bus, with its code. */
export class BusError extends Error {
  constructor(message, code, frame) {
    super(message);
    this.code = code;
    this.frame = frame;
  }
}

/**
 * One WebSocket to the bus. Emits 'frame' (every room message or telemetry frame, as
 * sent) and 'close' ({code, reason}).
 */
export class Bus extends EventTarget {
  constructor(credential) {
    super();
    this.credential = credential;
    this.pending = new Map();
    this.clientId = null;
    this.socket = null;
  }

  /** Connects; resolves with the welcome's client id. */
  open() {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(socketUrl('/ws'), protocolsFor(this.credential));
      this.socket = socket;
      let welcomed = false;
      socket.addEventListener('message', (event) => {
        let frame;
        try { frame = JSON.parse(event.data); } catch { return; }
        if (!welcomed && frame.payload && frame.payload.welcome) {
          welcomed = true;
          this.clientId = frame.payload.client_id;
          resolve(this.clientId);
          return;
        }
        this.receive(frame);
      });
      socket.addEventListener('close', (event) => {
        for (const [, waiting] of this.pending) {
          waiting.reject(new BusError('The connection closed', 'CLOSED'));
        }
        this.pending.clear();
        if (!welcomed) reject(new BusError(`Could not connect (close code ${event.code})`, 'CLOSED'));
        this.dispatchEvent(new CustomEvent('close', { detail: { code: event.code, reason: event.reason } }));
      });
    });
  }

  receive(frame) {
    const settle = (id, ok) => {
      const waiting = id && this.pending.get(id);
      if (!waiting) return false;
      this.pending.delete(id);
      clearTimeout(waiting.timer);
      if (ok) waiting.resolve(frame);
      else waiting.reject(new BusError(frame.error || frame.payload?.message || 'Refused', frame.error_code, frame));
      return true;
    };
    switch (frame.type) {
      case 'response':
        if (frame.status === 'error') {
          const message = frame.payload?.message || frame.error || 'Refused';
          const waiting = this.pending.get(frame.request_id);
          if (waiting) {
            this.pending.delete(frame.request_id);
            clearTimeout(waiting.timer);
            waiting.reject(new BusError(message, frame.error_code, frame));
          }
        } else {
          settle(frame.request_id, true);
        }
        return;
      case 'message_response':
        settle(frame.id, true);
        return;
      case 'error':
        if (!settle(frame.request_id, false)) this.dispatchEvent(new CustomEvent('frame', { detail: frame }));
        return;
      case 'command_response':
        return;
      default:
        this.dispatchEvent(new CustomEvent('frame', { detail: frame }));
    }
  }

  send(envelope) {
    return new Promise((resolve, reject) => {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
        reject(new BusError('Not connected', 'CLOSED'));
        return;
      }
      const id = newId();
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new BusError('The bus did not answer in time', 'TIMEOUT'));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.socket.send(JSON.stringify({ id, ...envelope }));
    });
  }

  /** Runs a command; resolves with the response's payload ({message, data}). */
  async command(name, args = {}) {
    const frame = await this.send({ type: 'command', command: name, args });
    return frame.payload || {};
  }

  /** Publishes a message into room:channel; resolves with the acknowledgement. */
  publish(room, channel, payload) {
    return this.send({ type: 'message', room, channel, payload });
  }

  close() {
    if (this.socket) this.socket.close(1000, 'console closed');
  }
}
