// Shared by the caller page, the agent console and the wallboard: the REST client, the
// WebSocket session (reconnects with `since=`, never polls), banners and small DOM helpers.

/** An error answered by the switchboard (`{code, message}`) or a network failure. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Calls the REST API. `token` is a session token (Bearer) or null; `apiKey` the management key
 * (only used to sign in). Throws ApiError with the server's message, or code `unreachable`.
 */
export async function api(method, path, { token = null, apiKey = null, body } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  if (apiKey) headers['x-api-key'] = apiKey;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'unreachable', `The switchboard server is unreachable (${e.message}).`);
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const code = (json && json.code) || `http_${res.status}`;
    const message = (json && json.message) || `${method} ${path} failed with HTTP ${res.status}`;
    throw new ApiError(res.status, code, message);
  }
  return json;
}

/** `h('div.card#x', {attrs}, children...)`: a tiny element builder (text is never HTML). */
export function h(spec, attrs = {}, ...children) {
  const [tagAndClasses, id] = spec.split('#');
  const [tag, ...classes] = tagAndClasses.split('.');
  const el = document.createElement(tag || 'div');
  if (classes.length) el.className = classes.join(' ');
  if (id) el.id = id;
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function render(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

/** Shows (or with `null` hides) the banner `id` with `text`; kind: 'error' | 'warn' | 'info'. */
export function banner(id, text, kind = 'error') {
  const host = document.getElementById('banners');
  let el = document.getElementById(`banner-${id}`);
  if (text === null || text === undefined) {
    if (el) el.remove();
    return;
  }
  if (!el) {
    el = h(`div.banner.${kind}#banner-${id}`, { role: kind === 'info' ? 'status' : 'alert' });
    host.append(el);
  }
  el.className = `banner ${kind}`;
  el.textContent = text;
}

/** "mm:ss" (or "h:mm:ss") since `since` (a Date or ISO string). */
export function elapsed(since, now = Date.now()) {
  const secs = Math.max(0, Math.floor((now - new Date(since).getTime()) / 1000));
  const hh = Math.floor(secs / 3600);
  const mm = String(Math.floor((secs % 3600) / 60)).padStart(2, '0');
  const ss = String(secs % 60).padStart(2, '0');
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** Local time of an ISO timestamp, "HH:MM:SS". */
export function clock(at) {
  return new Date(at).toLocaleTimeString([], { hour12: false });
}

/**
 * The WebSocket session: `onEvent(event, {replayed})` for every event once (deduplicated by
 * per-call `seq`), reconnects with back-off and `since=` (the last `seq` seen of each call),
 * shows a banner while disconnected, and pings to keep the line alive.
 */
export class Session {
  constructor({ token, onEvent, onReady, onFatal, sinceMode = 'per-call' }) {
    this.token = token;
    this.onEvent = onEvent;
    this.onReady = onReady || (() => {});
    this.onFatal = onFatal || (() => {});
    this.sinceMode = sinceMode;
    this.lastSeq = new Map();
    this.ws = null;
    this.attempt = 0;
    this.closed = false;
    this.nextId = 1;
    this.pending = new Map();
    this.connected = false;
    this.everConnected = false;
  }

  /** The `since` query value: every known call's last seq (or one number for a caller). */
  since() {
    if (this.sinceMode === 'all') {
      let max = 0;
      for (const v of this.lastSeq.values()) max = Math.max(max, v);
      return String(max);
    }
    if (this.lastSeq.size === 0) return '0';
    return [...this.lastSeq].slice(-256).map(([c, s]) => `${c}:${s}`).join(',');
  }

  start() {
    this.closed = false;
    this.open();
  }

  open() {
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const url = `${proto}://${location.host}/ws?token=${encodeURIComponent(this.token)}&since=${encodeURIComponent(this.since())}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
    };
    ws.onmessage = (m) => this.frame(m.data);
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.connected = false;
      for (const { reject } of this.pending.values()) reject(new Error('connection lost'));
      this.pending.clear();
      if (this.closed) return;
      if (!this.everConnected && this.attempt >= 2) {
        // Never got in: most likely a refused token (the upgrade answers 401/404/403).
        this.onFatal(e);
      }
      this.attempt += 1;
      const delay = Math.min(10000, 500 * 2 ** Math.min(this.attempt - 1, 5));
      banner(
        'ws',
        `Disconnected from the switchboard — reconnecting in ${Math.round(delay / 1000) || 1} s (attempt ${this.attempt}). Call events are caught up on reconnect.`,
        'error',
      );
      document.body.dataset.ws = 'down';
      setTimeout(() => this.open(), delay);
    };
  }

  frame(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg.type === 'session.ready') {
      this.connected = true;
      this.everConnected = true;
      banner('ws', null);
      document.body.dataset.ws = 'up';
      this.onReady(msg.data);
      return;
    }
    if (msg.type === 'pong') return;
    if (msg.type === 'reply' || msg.type === 'error') {
      const p = this.pending.get(msg.id);
      if (p) {
        this.pending.delete(msg.id);
        if (msg.type === 'reply') p.resolve(msg.data);
        else p.reject(new ApiError(400, msg.code, msg.message));
      }
      return;
    }
    if (msg.callId && msg.seq) {
      const last = this.lastSeq.get(msg.callId) || 0;
      if (msg.seq <= last) return;
      this.lastSeq.set(msg.callId, msg.seq);
    }
    this.onEvent(msg);
  }

  /** Sends a client message and resolves with the reply's data. */
  request(msg) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new Error('not connected to the switchboard'));
        return;
      }
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...msg, id }));
    });
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}

/** Whether a keyboard event should be ignored by page shortcuts (typing in a field). */
export function typing(e) {
  const t = e.target;
  return (
    e.ctrlKey || e.metaKey || e.altKey ||
    (t && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName)))
  );
}
