// The supervisor wallboard: live calls with status and duration, open transfers, agents and
// their presence, counts per status. One long-lived stream (GET /api/wallboard/events, Server-
// Sent Events read with fetch so the management key can go in a header): a snapshot, then every
// event. Reconnects with back-off and a banner; never polls.

import { banner, elapsed, h, render } from './common.js';

const $ = (id) => document.getElementById(id);
const S = { calls: new Map(), transfers: new Map(), agents: new Map(), attempt: 0, abort: null };
const TERMINAL = ['completed', 'cancelled', 'declined', 'timed_out', 'failed', 'abandoned'];

function applySnapshot(s) {
  S.calls = new Map(s.calls.map((c) => [c.callId, c]));
  S.transfers = new Map(s.transfers.map((t) => [t.transferId, t]));
  S.agents = new Map(s.agents.map((a) => [a.agentId, a]));
}

function apply(ev) {
  const d = ev.data || {};
  if (ev.type === 'agent.presence') {
    const a = S.agents.get(d.agentId) || { agentId: d.agentId, name: d.agentId, kind: 'web' };
    a.presence = d.presence;
    S.agents.set(d.agentId, a);
    return;
  }
  if (!ev.callId) return;
  const c = S.calls.get(ev.callId) || { callId: ev.callId, callerName: '', reason: '', status: 'queued', createdAt: ev.at };
  switch (ev.type) {
    case 'call.created':
      c.callerName = d.callerName;
      c.reason = d.reason;
      c.channel = d.channel;
      c.createdAt = c.createdAt || ev.at;
      break;
    case 'call.offered':
      c.status = 'ringing';
      c.offeredTo = d.agentId;
      c.callerName = d.callerName || c.callerName;
      break;
    case 'call.queued': c.status = 'queued'; break;
    case 'call.active': c.status = 'active'; c.ownerId = d.ownerId; break;
    case 'call.on_hold': c.status = 'on_hold'; break;
    case 'call.resumed': c.status = 'active'; if (d.ownerId) c.ownerId = d.ownerId; break;
    case 'call.updated': c.callerName = d.callerName || c.callerName; c.reason = d.reason || c.reason; break;
    case 'call.ended':
      S.calls.delete(ev.callId);
      for (const [id, t] of S.transfers) if (t.callId === ev.callId) S.transfers.delete(id);
      return;
    default:
      if (ev.type.startsWith('transfer.') && d.transferId) {
        const status = ev.type.slice('transfer.'.length);
        if (TERMINAL.includes(status)) {
          S.transfers.delete(d.transferId);
          c.openTransferId = null;
        } else if (status !== 'offered') {
          const t = S.transfers.get(d.transferId) || { transferId: d.transferId, callId: ev.callId, createdAt: ev.at };
          Object.assign(t, Object.fromEntries(Object.entries(d).filter(([k]) => ['fromAgentId', 'toAgentId', 'mode'].includes(k))));
          t.status = status === 'initiated' ? d.status || 'initiated' : status;
          S.transfers.set(d.transferId, t);
          c.openTransferId = d.transferId;
        }
      }
  }
  S.calls.set(ev.callId, c);
}

function renderAll() {
  const counts = new Map();
  for (const c of S.calls.values()) counts.set(c.status, (counts.get(c.status) || 0) + 1);
  const presence = new Map();
  for (const a of S.agents.values()) presence.set(a.presence, (presence.get(a.presence) || 0) + 1);
  render($('counts'),
    h('li', { dataset: { count: 'calls' } }, h('strong', {}, S.calls.size), 'live calls'),
    [...counts].map(([k, n]) => h('li', { dataset: { count: k } }, h('strong', {}, n), k.replace('_', ' '))),
    h('li', { dataset: { count: 'transfers' } }, h('strong', {}, S.transfers.size), 'open transfers'),
    [...presence].map(([k, n]) => h('li', { dataset: { count: `agents-${k}` } }, h('strong', {}, n), `agents ${k}`)));
  render($('calls'), S.calls.size
    ? h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Caller'), h('th', {}, 'Reason'), h('th', {}, 'Status'), h('th', {}, 'Agent'), h('th', {}, 'Duration'))),
      h('tbody', {}, [...S.calls.values()].map((c) => h('tr', { dataset: { callId: c.callId } },
        h('td', {}, c.callerName || '—', c.channel === 'phone' ? [' ', h('span.pill.phone', {}, 'phone')] : null),
        h('td', {}, c.reason || ''),
        h('td', {}, h(`span.pill.${c.status}`, {}, c.status.replace('_', ' ')), c.openTransferId ? ' ⇄' : ''),
        h('td', {}, c.ownerId || (c.offeredTo ? `→ ${c.offeredTo}` : '')),
        h('td.timer', { dataset: { since: c.createdAt } }, elapsed(c.createdAt))))))
    : h('p.muted', {}, 'No live calls.'));
  render($('transfers'), S.transfers.size
    ? h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'From'), h('th', {}, 'To'), h('th', {}, 'Mode'), h('th', {}, 'Status'), h('th', {}, 'For'))),
      h('tbody', {}, [...S.transfers.values()].map((t) => h('tr', { dataset: { transferId: t.transferId } },
        h('td', {}, t.fromAgentId), h('td', {}, t.toAgentId), h('td', {}, t.mode), h('td', {}, t.status),
        h('td.timer', { dataset: { since: t.createdAt } }, elapsed(t.createdAt))))))
    : h('p.muted', {}, 'No open transfers.'));
  render($('agents'), [...S.agents.values()].sort((a, b) => a.agentId.localeCompare(b.agentId)).map((a) =>
    h('li', { dataset: { agentId: a.agentId } }, `${a.name} `,
      h(`span.pill.${a.presence}`, {}, a.kind === 'phone' ? `phone · ${a.presence}` : a.presence))));
}

function setStatus(text, cls) {
  $('wall-status').textContent = text;
  $('wall-status').className = `me pill ${cls}`;
}

async function connect() {
  if (S.abort) S.abort.abort();
  const abort = new AbortController();
  S.abort = abort;
  const key = $('wall-key').value.trim();
  let res;
  try {
    res = await fetch('/api/wallboard/events', {
      headers: key ? { 'x-api-key': key } : {},
      signal: abort.signal,
    });
  } catch (e) {
    if (abort.signal.aborted) return;
    return retry(`The switchboard server is unreachable (${e.message}).`);
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    setStatus('refused', 'offline');
    banner('wall', `The wallboard needs management access: ${body.message || res.status}. Enter the management key and press Connect.`, 'error');
    return;
  }
  S.attempt = 0;
  banner('wall', null);
  setStatus('live', 'available');
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let type = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) type = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
        }
        if (!data.length) continue;
        const json = JSON.parse(data.join('\n'));
        if (type === 'snapshot') applySnapshot(json);
        else apply(json);
        renderAll();
      }
    }
  } catch (e) {
    if (abort.signal.aborted) return;
  }
  if (!abort.signal.aborted) retry('The live stream from the switchboard was interrupted.');
}

function retry(why) {
  S.attempt += 1;
  const delay = Math.min(10000, 500 * 2 ** Math.min(S.attempt - 1, 5));
  setStatus('disconnected', 'offline');
  banner('wall', `${why} Reconnecting in ${Math.ceil(delay / 1000)} s (attempt ${S.attempt}).`, 'error');
  setTimeout(connect, delay);
}

$('wall-connect').addEventListener('click', connect);
setInterval(() => {
  for (const el of document.querySelectorAll('.timer[data-since]')) el.textContent = elapsed(el.dataset.since);
}, 1000);
renderAll();
connect();
