// Small DOM helpers: elements are built with text nodes, never from HTML strings, so
// nothing a message or a name carries can become markup.

/** An element: h('div', {class: 'x', onclick: fn}, child, 'text', …). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A card with a title and content. */
export function card(title, ...children) {
  return h('section', { class: 'card' }, title ? h('h2', {}, title) : null, ...children);
}

/** `el` across the whole grid row (a card with a wide table). */
export function wide(el) {
  el.classList.add('wide');
  return el;
}

/** A table from rows of cells; `empty` when there are none. */
export function table(headers, rows, empty = 'Nothing yet.') {
  if (!rows.length) return h('p', { class: 'muted empty' }, empty);
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c)))))));
}

/** A two-column table of label and value, without a header. */
export function facts(rows) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'facts' },
      h('tbody', {}, rows.map(([label, value]) => h('tr', {}, h('th', { scope: 'row' }, label), h('td', {}, value))))));
}

/** A figure: a big number and its label. */
export function stat(label, value, detail, id) {
  return h('div', { class: 'stat', id },
    h('div', { class: 'stat-value' }, value ?? '—'),
    h('div', { class: 'stat-label' }, label),
    detail ? h('div', { class: 'stat-detail muted' }, detail) : null);
}

/** A notice under a form: an error (red) or a success. */
export function notice(el, text, kind = 'error') {
  el.hidden = !text;
  el.className = kind;
  el.textContent = text || '';
}

/** JSON, indented, for a <pre>. */
export function pretty(value) {
  try { return JSON.stringify(value, null, 2); } catch { return String(value); }
}

/** A timestamp as local time, or '—'. */
export function when(value) {
  if (value === undefined || value === null || value === '') return '—';
  const date = typeof value === 'number' ? new Date(value > 1e12 ? value : value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** A count with thousands separators. */
export function count(value) {
  return typeof value === 'number' ? value.toLocaleString() : (value ?? '—');
}

/** A badge. */
export function badge(text, kind = '') {
  return h('span', { class: `badge ${kind}`.trim() }, text);
}

/** Runs `task` now and every `ms` until the returned stop function is called; one run at a time. */
export function every(ms, task) {
  let stopped = false;
  let timer = null;
  const loop = async () => {
    if (stopped) return;
    try { await task(); } catch (e) { console.warn(e); }
    if (!stopped) timer = setTimeout(loop, ms);
  };
  loop();
  return () => { stopped = true; clearTimeout(timer); };
}
