// The agent console: sign-in, presence, call offers, the active call (caller info, live
// transcript, summary, hold / resume / mute / hang up), the transfer dialog, Agent B's offer
// card with the briefing, complete / cancel for Agent A, and a live timeline. Every state
// change comes from WebSocket events; the page never polls (it fetches only in answer to an
// event or a click).

import { api, ApiError, banner, clock, elapsed, h, render, Session, typing } from './common.js';
import { Media } from './media.js';

const $ = (id) => document.getElementById(id);
const OPEN_TRANSFER = ['initiated', 'ringing', 'accepted', 'briefing'];

const S = {
  me: null,
  token: null,
  session: null,
  media: null,
  muted: false,
  agents: new Map(),
  calls: new Map(),
  outcome: '',
  where: null,
};

function call(callId) {
  let c = S.calls.get(callId);
  if (!c) {
    c = {
      callId,
      callerName: '',
      reason: '',
      status: 'unknown',
      ownerId: null,
      since: null,
      offer: null, // {kind: 'call', expiresAt} while offered to me
      transfer: null,
      transferOffer: null, // the briefing, while a transfer is offered to me
      targetJoined: false,
      released: false,
      summary: null,
      transcript: null,
      info: null, // GET /api/calls/{id} once: channel (web/phone), callerNumber, callerId
      callerMuted: false,
      parties: new Map(),
      timeline: [],
    };
    S.calls.set(callId, c);
  }
  return c;
}

// --- Events -------------------------------------------------------------------------------

function describe(ev) {
  const d = ev.data || {};
  switch (ev.type) {
    case 'call.offered': return `offered to ${d.agentId}`;
    case 'call.active': return `owner ${d.ownerId}`;
    case 'call.queued': return `queued (${d.reason})`;
    case 'call.ended': return `ended (${d.reason})`;
    case 'participant.move': return `${d.identity} → ${d.space} room ${d.room}${d.plane ? ` (${d.plane})` : ''}`;
    case 'participant.joined': return `${d.identity} joined ${d.space}${d.acknowledged ? ' (ack)' : ''}`;
    case 'participant.left': return `${d.identity} left ${d.space}`;
    case 'participant.muted': return `${d.identity} muted`;
    case 'participant.unmuted': return `${d.identity} unmuted`;
    case 'participant.released': return `${d.agentId} released (${d.reason})`;
    case 'agent.presence': return `${d.agentId} is ${d.presence}`;
    default:
      if (ev.type.startsWith('transfer.')) {
        return [d.mode, d.fromAgentId && `${d.fromAgentId} → ${d.toAgentId || ''}`, d.reason].filter(Boolean).join(' · ');
      }
      return '';
  }
}

function onEvent(ev) {
  const d = ev.data || {};
  if (ev.type === 'agent.presence') {
    presence(d.agentId, d.presence);
    return;
  }
  if (!ev.callId) return;
  const c = call(ev.callId);
  c.timeline.push({ at: ev.at, type: ev.type, text: describe(ev), seq: ev.seq });
  if (!c.since) c.since = ev.at;
  switch (ev.type) {
    case 'call.offered':
      c.callerName = d.callerName || c.callerName;
      c.reason = d.reason || c.reason;
      c.status = 'ringing';
      c.offer = d.agentId === S.me ? { kind: 'call', expiresAt: d.expiresAt } : null;
      if (c.offer) loadInfo(c);
      break;
    case 'call.declined':
    case 'call.offer_timed_out':
      if (d.agentId === S.me) c.offer = null;
      break;
    case 'call.queued':
      c.status = 'queued';
      c.offer = null;
      break;
    case 'call.active':
      c.status = 'active';
      c.ownerId = d.ownerId;
      c.offer = null;
      if (d.ownerId === S.me) {
        c.released = false;
        c.since = c.since || ev.at;
        loadCallDetails(c);
      }
      break;
    case 'call.on_hold':
      c.status = 'on_hold';
      break;
    case 'call.resumed':
      c.status = 'active';
      if (d.ownerId) c.ownerId = d.ownerId;
      break;
    case 'call.updated':
      c.callerName = d.callerName || c.callerName;
      c.reason = d.reason || c.reason;
      break;
    case 'call.ended':
      if (isActive(c)) S.outcome = `Call with ${c.callerName || 'the caller'} ended (${d.reason}).`;
      c.status = 'ended';
      c.offer = null;
      c.transferOffer = null;
      if (S.media && S.media.where && S.media.where.callId === c.callId) S.media.leave();
      break;
    case 'transfer.initiated':
      c.transfer = { ...d };
      c.ownerId = d.fromAgentId; // whoever transfers owns the call
      if (d.fromAgentId === S.me) S.outcome = `Transfer to ${name(d.toAgentId)} started (${d.mode}).`;
      break;
    case 'transfer.offered':
      c.transfer = { ...(c.transfer || {}), ...d, status: 'ringing' };
      c.callerName = d.callerName || c.callerName;
      c.reason = d.reason || c.reason;
      if (d.toAgentId === S.me) {
        c.transferOffer = { ...d };
        loadInfo(c);
      }
      break;
    case 'transfer.ringing':
    case 'transfer.briefing':
      c.transfer = { ...(c.transfer || {}), ...d };
      if (ev.type === 'transfer.briefing' && c.transfer.fromAgentId === S.me) {
        S.outcome = `${name(c.transfer.toAgentId)} accepted: brief them, then complete or cancel.`;
      }
      break;
    case 'transfer.accepted':
      c.transfer = { ...(c.transfer || {}), status: 'accepted', transferId: d.transferId, toAgentId: d.toAgentId };
      if (d.toAgentId === S.me) {
        c.transferOffer = null;
        c.targetJoined = true;
        c.released = false;
        loadCallDetails(c);
      }
      break;
    case 'transfer.completed':
    case 'transfer.declined':
    case 'transfer.timed_out':
    case 'transfer.cancelled':
    case 'transfer.failed':
    case 'transfer.abandoned': {
      const status = ev.type.slice('transfer.'.length);
      c.transfer = { ...(c.transfer || {}), ...d, status };
      c.transferOffer = null;
      const t = c.transfer;
      if (status === 'completed') c.ownerId = t.toAgentId;
      if (t.fromAgentId === S.me) {
        S.outcome = {
          completed: `Transfer completed: ${name(t.toAgentId)} has the call.`,
          declined: `${name(t.toAgentId)} declined the transfer${phoneReason(t.reason)}; the caller is back with you.`,
          timed_out: `${name(t.toAgentId)} did not answer${phoneReason(t.reason)}; the caller is back with you.`,
          cancelled: 'Transfer cancelled; the caller is back with you.',
          failed: `Transfer failed (${t.reason}); the caller is back with you.`,
          abandoned: 'The caller hung up during the transfer.',
        }[status];
      } else if (t.toAgentId === S.me) {
        c.targetJoined = status === 'completed';
        S.outcome = {
          completed: `You now have the call with ${c.callerName || 'the caller'}.`,
          declined: 'You declined the transfer.',
          timed_out: 'The transfer offer expired.',
          cancelled: `${name(t.fromAgentId)} cancelled the transfer.`,
          failed: `The transfer failed (${t.reason}).`,
          abandoned: 'The caller hung up during the transfer.',
        }[status];
      }
      break;
    }
    case 'participant.move':
      if (d.identity === S.me || !d.identity) S.media.follow(ev.callId, d);
      break;
    case 'participant.joined':
      c.parties.set(d.identity, d.space);
      break;
    case 'participant.left':
      if (c.parties.get(d.identity) === d.space) c.parties.delete(d.identity);
      break;
    case 'participant.muted':
    case 'participant.unmuted':
      if (isCaller(c, d.identity)) c.callerMuted = ev.type === 'participant.muted';
      break;
    case 'participant.released':
      if (d.agentId === S.me) {
        c.released = true;
        c.targetJoined = false;
        if (S.media.where && S.media.where.callId === c.callId) S.media.leave();
        S.where = null;
      }
      break;
    case 'summary.updated':
      // The summary comes with the event; only an event without it (a replay from before
      // summaries were pushed) makes the page fetch it.
      if (typeof d.summaryText === 'string' && d.summaryText) {
        c.summary = { ...(d.briefing || {}), summaryId: d.summaryId, summaryText: d.summaryText };
      } else {
        loadSummary(c, d.summaryId);
      }
      break;
    case 'transcript.appended':
      // Live transcript: pushed, never polled; a line this page added itself is not doubled.
      if (c.transcript !== null && !(c.transcript || []).some((x) => x.transcriptId === d.transcriptId)) {
        c.transcript = [...(c.transcript || []), { ...d }];
      }
      break;
    default:
      break;
  }
  renderAll();
}

function presence(agentId, p) {
  const a = S.agents.get(agentId);
  if (a) {
    a.presence = p;
  } else if (S.token) {
    // An agent created after sign-in: fetch it once.
    S.agents.set(agentId, { agentId, name: agentId, presence: p });
    api('GET', `/api/agents/${encodeURIComponent(agentId)}`, { token: S.token })
      .then((full) => {
        S.agents.set(agentId, { ...full, presence: S.agents.get(agentId).presence });
        renderAll();
      })
      .catch(() => {});
  }
  renderAll();
}

function name(agentId) {
  const a = S.agents.get(agentId);
  return a && a.name ? a.name : agentId;
}

/** Why a phone specialist's leg ended, as words (empty for a web agent's plain answer). */
function phoneReason(reason) {
  return {
    busy: ' (their phone was busy)',
    no_answer: ' (their phone was not answered)',
    no_input: ' (no key was pressed)',
    target_hangup: ' (they hung up)',
    dial_failed: ' (the call to their phone failed)',
  }[reason] || '';
}

function isPhoneAgent(agentId) {
  const a = S.agents.get(agentId);
  return !!a && a.kind === 'phone';
}

/** Whether `identity` is the call's caller (not one of the agents). */
function isCaller(c, identity) {
  if (!identity) return false;
  if (c.info && c.info.callerId) return identity === c.info.callerId;
  return !S.agents.has(identity);
}

function isPhoneCall(c) {
  return !!c.info && c.info.channel === 'phone';
}

// The call's channel and the caller's number, fetched once per call when it is offered to
// this agent or becomes theirs (an answer to an event, not a poll).
function loadInfo(c) {
  if (c.info !== null) return;
  c.info = {};
  api('GET', `/api/calls/${encodeURIComponent(c.callId)}`, { token: S.token })
    .then((v) => {
      c.info = { channel: v.channel, callerNumber: v.callerNumber, callerId: v.callerId };
      renderAll();
    })
    .catch(() => {});
}

// Details fetched once when a call becomes ours (an answer to an event, not a poll).
function loadCallDetails(c) {
  loadInfo(c);
  if (c.transcript !== null) return;
  c.transcript = [];
  api('GET', `/api/transcripts/call/${encodeURIComponent(c.callId)}`, { token: S.token })
    .then((chunks) => {
      c.transcript = Array.isArray(chunks) ? chunks : chunks.items || [];
      renderAll();
    })
    .catch(() => {});
  api('GET', `/api/summaries/call/${encodeURIComponent(c.callId)}`, { token: S.token })
    .then((list) => {
      const items = Array.isArray(list) ? list : list.items || [];
      if (items.length && !c.summary) c.summary = items[items.length - 1];
      renderAll();
    })
    .catch(() => {});
}

function loadSummary(c, summaryId) {
  api('GET', `/api/summaries/${encodeURIComponent(summaryId)}`, { token: S.token })
    .then((s) => {
      c.summary = s;
      renderAll();
    })
    .catch(() => {});
}

// --- What is active -----------------------------------------------------------------------

function isActive(c) {
  if (c.status === 'ended' || c.released) return false;
  return c.ownerId === S.me || c.targetJoined;
}

function activeCall() {
  let best = null;
  for (const c of S.calls.values()) if (isActive(c)) best = c;
  return best;
}

function offers() {
  const out = [];
  for (const c of S.calls.values()) {
    if (c.status === 'ended') continue;
    if (c.offer) out.push({ kind: 'call', c });
    if (c.transferOffer) out.push({ kind: 'transfer', c });
  }
  return out;
}

function openTransfer(c) {
  return c && c.transfer && OPEN_TRANSFER.includes(c.transfer.status) ? c.transfer : null;
}

// --- Actions ------------------------------------------------------------------------------

async function act(label, method, path, body = {}) {
  banner('action', null);
  try {
    return await api(method, path, { token: S.token, body });
  } catch (e) {
    banner('action', `${label}: ${e.message}`, 'error');
    return null;
  }
}

const A = {
  accept(o) {
    if (!o) return;
    if (o.kind === 'call') act('Accept', 'POST', `/api/calls/${o.c.callId}/accept`);
    else act('Accept transfer', 'POST', `/api/transfers/${o.c.transferOffer.transferId}/accept`);
  },
  decline(o) {
    if (!o) return;
    if (o.kind === 'call') act('Decline', 'POST', `/api/calls/${o.c.callId}/decline`);
    else act('Decline transfer', 'POST', `/api/transfers/${o.c.transferOffer.transferId}/decline`);
  },
  hold() {
    const c = activeCall();
    if (!c || c.ownerId !== S.me || openTransfer(c)) return;
    if (c.status === 'on_hold') act('Resume', 'POST', `/api/calls/${c.callId}/resume`);
    else act('Hold', 'POST', `/api/calls/${c.callId}/hold`);
  },
  hangup() {
    const c = activeCall();
    if (c && c.ownerId === S.me) act('Hang up', 'POST', `/api/calls/${c.callId}/hangup`);
  },
  muteCaller() {
    const c = activeCall();
    if (!c || c.ownerId !== S.me) return;
    const verb = c.callerMuted ? 'unmute' : 'mute';
    act(c.callerMuted ? 'Unmute caller' : 'Mute caller', 'POST', `/api/calls/${c.callId}/${verb}`, { party: 'caller' });
  },
  async mute() {
    S.muted = !S.muted;
    await S.media.setMuted(S.muted);
    renderAll();
  },
  complete() {
    const c = activeCall();
    const t = openTransfer(c);
    if (t && t.fromAgentId === S.me) act('Complete', 'POST', `/api/transfers/${t.transferId}/complete`);
  },
  cancel() {
    const c = activeCall();
    const t = openTransfer(c);
    if (t && t.fromAgentId === S.me) act('Cancel', 'POST', `/api/transfers/${t.transferId}/cancel`);
  },
  transfer() {
    const c = activeCall();
    if (!c || c.ownerId !== S.me || openTransfer(c)) return;
    openTransferDialog();
  },
};

// --- Transfer dialog ------------------------------------------------------------------------

function openTransferDialog() {
  const targets = [...S.agents.values()].filter(
    (a) => a.agentId !== S.me && a.active !== false &&
      (a.kind === 'phone' || a.presence === 'available'),
  );
  $('transfer-error').textContent = '';
  $('transfer-note').value = '';
  render(
    $('targets'),
    targets.length
      ? targets.map((a, i) => h('label.target', {},
        h('input', { type: 'radio', name: 'target', value: a.agentId, checked: i === 0, required: true }),
        ` ${a.name || a.agentId} `,
        a.kind === 'phone'
          ? [h('span.pill.phone', {}, `phone ${a.phoneNumber || ''}`),
            h('span.muted.small', {}, a.presence === 'busy' ? ' on a call now' : ' dialled; hears the briefing, presses 1 to take the call')]
          : h(`span.pill.${a.presence}`, {}, a.presence)))
      : h('p.muted', {}, 'No colleague is available right now.'),
  );
  $('transfer-go').disabled = targets.length === 0;
  $('transfer-dialog').showModal();
  const first = $('targets').querySelector('input');
  (first || $('transfer-close')).focus();
}

async function submitTransfer(e) {
  e.preventDefault();
  const c = activeCall();
  const form = $('transfer-form');
  const target = form.querySelector('input[name=target]:checked');
  const mode = form.querySelector('input[name=mode]:checked').value;
  const note = $('transfer-note').value.trim();
  if (!c || !target) return;
  $('transfer-go').disabled = true;
  try {
    await api('POST', '/api/transfers/initiate', {
      token: S.token,
      body: { callId: c.callId, agentBId: target.value, mode, ...(note ? { note } : {}) },
    });
    $('transfer-dialog').close();
  } catch (err) {
    $('transfer-error').textContent = err instanceof ApiError ? `${err.message} (${err.code})` : String(err);
  } finally {
    $('transfer-go').disabled = false;
  }
}

// --- Rendering ----------------------------------------------------------------------------

function button(id, label, key, onclick, opts = {}) {
  return h(`button${opts.cls ? `.${opts.cls}` : ''}#${id}`, {
    type: 'button', onclick, 'aria-keyshortcuts': key ? key.toLowerCase() : null, disabled: opts.disabled,
  }, label, key ? h('kbd', {}, key) : null);
}

function renderOffers() {
  const list = offers();
  if (!list.length) {
    render($('offers'), h('p.muted', {}, 'No offers.'));
    return;
  }
  render($('offers'), list.map((o, i) => {
    const c = o.c;
    if (o.kind === 'call') {
      const phone = isPhoneCall(c);
      return h('article.card.offer#offer-call', { dataset: { callId: c.callId, channel: phone ? 'phone' : 'web' } },
        h('h3', {}, phone ? 'Incoming phone call' : 'Incoming call'),
        h('p', {}, h('strong', {}, c.callerName || 'A caller'), ' — ', c.reason),
        phone ? h('p.small', {}, h('span.pill.phone', {}, `phone ${c.info.callerNumber || ''}`), ' waiting in the conference with music') : null,
        c.offer.expiresAt ? h('p.muted.small', {}, `answer by ${clock(c.offer.expiresAt)}`) : null,
        h('div.actions', {},
          button(`accept-call${i ? `-${i}` : ''}`, 'Accept ', i === 0 ? 'A' : null, () => A.accept(o), { cls: 'primary' }),
          button(`decline-call${i ? `-${i}` : ''}`, 'Decline ', i === 0 ? 'D' : null, () => A.decline(o))));
    }
    const t = c.transferOffer;
    return h('article.card.offer.briefing#offer-transfer', { dataset: { callId: c.callId, transferId: t.transferId } },
      h('h3', {}, `Transfer from ${name(t.fromAgentId)} (${t.mode})`),
      h('dl.briefing', {},
        h('dt', {}, 'Caller'), h('dd', {}, t.callerName || c.callerName || '—',
          isPhoneCall(c) ? h('span.pill.phone', {}, `phone ${c.info.callerNumber || ''}`) : null),
        h('dt', {}, 'Reason'), h('dd', {}, t.reason || c.reason || '—'),
        h('dt', {}, 'Summary'), h('dd.summary-text', {}, t.summaryText || 'No summary yet.'),
        ...briefingRows(t.briefing),
        h('dt', {}, 'Note'), h('dd.note', {}, t.note || '—')),
      t.expiresAt ? h('p.muted.small', {}, `answer by ${clock(t.expiresAt)}`) : null,
      h('div.actions', {},
        button('accept-transfer', 'Accept ', i === 0 ? 'A' : null, () => A.accept(o), { cls: 'primary' }),
        button('decline-transfer', 'Decline ', i === 0 ? 'D' : null, () => A.decline(o))));
  }));
}

/** The structured briefing pushed with `transfer.offered` (no request needed). */
function briefingRows(b) {
  if (!b || typeof b !== 'object') return [];
  const list = (xs) => (Array.isArray(xs) && xs.length ? xs.join('; ') : '—');
  const rows = [
    ['Why', b.reason || '—', 'briefing-reason'],
    ['Customer', list(b.customerDetails), 'briefing-customer'],
    ['Tried', list(b.tried), 'briefing-tried'],
    ['Promised', list(b.promised), 'briefing-promised'],
    ['Next step', b.nextStep || '—', 'briefing-next'],
    ['Mood', [b.sentiment, b.urgency && `urgency ${b.urgency}`].filter(Boolean).join(', ') || '—', 'briefing-mood'],
  ];
  return rows.flatMap(([label, text, id]) => [h('dt', {}, label), h(`dd#${id}`, {}, text)]);
}

/** For a transfer to a phone specialist: where their phone call is. */
function phoneTargetLine(t) {
  if (!isPhoneAgent(t.toAgentId)) return '';
  const who = name(t.toAgentId);
  const number = S.agents.get(t.toAgentId).phoneNumber || '';
  if (t.status === 'initiated' || t.status === 'ringing') {
    return ` — ${who}'s phone is ringing (${number}); they hear the briefing and press 1 to take the call`;
  }
  if (t.status === 'briefing' || t.status === 'accepted') {
    return t.mode === 'warm'
      ? ` — ${who} pressed 1 and is in the conference with you: brief them, then complete`
      : ` — ${who} pressed 1 and is with the caller`;
  }
  return '';
}

function renderActive() {
  const c = activeCall();
  if (!c) {
    render($('active'), h('p.muted', {}, 'No active call. Offers appear on the left; press ', h('kbd', {}, 'A'), ' to accept.'));
    return;
  }
  const owner = c.ownerId === S.me;
  const t = openTransfer(c);
  const where = S.where && S.where.callId === c.callId ? S.where : null;
  const held = c.status === 'on_hold';
  const rows = [];
  rows.push(h('div.call-head', {},
    h('h3#active-caller', {}, c.callerName || 'Caller'),
    h(`span.pill.${c.status}#call-status`, {}, c.status.replace('_', ' ')),
    h('span.timer', { dataset: { since: c.since || '' } }, c.since ? elapsed(c.since) : '')));
  const phone = isPhoneCall(c);
  rows.push(h('p#active-reason', {}, c.reason,
    phone ? [' ', h('span.pill.phone#caller-channel', {}, `phone caller ${c.info.callerNumber || ''}`)] : null));
  const place = where
    ? (where.plane === 'twilio'
      ? ` · you are in the ${where.space} conference (Twilio, through the browser)`
      : ` · you are in the ${where.space} room`)
    : '';
  rows.push(h('p.muted.small', {},
    owner ? 'You own this call' : `Transferred to you by ${name(c.transfer && c.transfer.fromAgentId)}`,
    place));
  if (t) {
    rows.push(h('p.transfer-line#transfer-status', { role: 'status' },
      owner
        ? `Transfer to ${name(t.toAgentId)} (${t.mode}): ${t.status}${phoneTargetLine(t)}`
        : `Transfer from ${name(t.fromAgentId)} (${t.mode}): ${t.status}`));
  }
  const callerHeld = held || (t && t.mode !== 'conference' && ['initiated', 'ringing', 'accepted', 'briefing'].includes(t.status) &&
    !(t.mode === 'cold' && t.status === 'accepted'));
  if (callerHeld && owner) {
    rows.push(h('p.hold-note#caller-hold', { role: 'status' }, phone
      ? (t ? `The caller is on hold in the phone conference, hearing hold music, while we connect them to ${name(t.toAgentId)}.`
        : 'The caller is on hold in the phone conference, hearing hold music.')
      : (t ? 'The caller is in the hold room with music: "Please hold, we are connecting you to a specialist."'
        : 'The caller is in the hold room with music: "You are on hold."')));
  }
  if (c.callerMuted) rows.push(h('p.small#caller-muted', { role: 'status' }, 'The caller is muted.'));
  const controls = [];
  if (owner && !t) {
    controls.push(button('hold', held ? 'Resume ' : 'Hold ', 'H', A.hold));
    controls.push(button('transfer', 'Transfer… ', 'T', A.transfer, { disabled: held }));
  }
  if (owner && t) {
    const canComplete = t.status === 'briefing' || (t.mode !== 'warm' && t.status === 'accepted');
    controls.push(button('complete', 'Complete transfer ', 'C', A.complete, { cls: 'primary', disabled: !canComplete }));
    controls.push(button('cancel', 'Cancel transfer ', 'X', A.cancel));
  }
  controls.push(button('mute', S.muted ? 'Unmute ' : 'Mute ', 'M', A.mute));
  if (owner) controls.push(button('mute-caller', c.callerMuted ? 'Unmute caller ' : 'Mute caller ', 'U', A.muteCaller));
  if (owner) controls.push(button('hangup', 'Hang up', null, A.hangup, { cls: 'danger' }));
  rows.push(h('div.actions', {}, controls));
  const summaryText = (c.summary && c.summary.summaryText) || (c.transfer && c.transfer.summaryText);
  rows.push(h('h4', {}, 'Summary'), h('p.summary#summary', {}, summaryText || 'No summary yet.'));
  rows.push(h('h4', {}, 'Transcript'));
  rows.push(h('ol.transcript#transcript', {},
    (c.transcript || []).map((x) => h('li', {}, h('span.muted', {}, `${x.speaker || x.source || ''} `), x.text))));
  rows.push(h('form.add-line#add-line', {
    onsubmit: (e) => {
      e.preventDefault();
      const input = $('line');
      const text = input.value.trim();
      if (!text) return;
      api('POST', '/api/transcripts', { token: S.token, body: { callId: c.callId, text, speaker: S.me } })
        .then((chunk) => {
          if (!(c.transcript || []).some((x) => x.transcriptId === chunk.transcriptId)) c.transcript = [...(c.transcript || []), chunk];
          input.value = '';
          renderAll();
        })
        .catch((err) => banner('action', `Transcript: ${err.message}`, 'error'));
    },
  }, h('label.visually-hidden', { for: 'line' }, 'Add a transcript line'),
  h('input#line', { placeholder: 'Add a note to the transcript…', maxlength: 4000 }),
  h('button', { type: 'submit' }, 'Add')));
  const people = [...c.parties].map(([who, space]) => h('li', {},
    isCaller(c, who) ? `caller ${c.callerName || who}${phone ? ' (phone)' : ''}` : `${name(who)}${isPhoneAgent(who) ? ' (phone)' : ''}`,
    ` — ${space}`));
  if (people.length) rows.push(h('h4', {}, 'Who is where'), h('ul.people', {}, people));
  // Keep focus where it was across re-renders.
  const focused = document.activeElement && document.activeElement.id;
  const lineValue = $('line') ? $('line').value : '';
  render($('active'), rows);
  if (lineValue) $('line').value = lineValue;
  if (focused && $(focused) && $('active').contains($(focused))) $(focused).focus();
}

function renderTimeline() {
  const c = activeCall() || [...S.calls.values()].pop();
  render($('timeline'), c
    ? c.timeline.slice(-200).map((e) => h('li', { dataset: { type: e.type } },
      h('time', {}, clock(e.at)), ' ', h('strong', {}, e.type), e.text ? ` — ${e.text}` : ''))
    : []);
  const tl = $('timeline');
  tl.scrollTop = tl.scrollHeight;
}

function renderDirectory() {
  const list = [...S.agents.values()].sort((a, b) => a.agentId.localeCompare(b.agentId));
  render($('directory'), list.map((a) => h('li', { dataset: { agentId: a.agentId } },
    `${a.name || a.agentId}${a.agentId === S.me ? ' (you)' : ''} `,
    a.kind === 'phone'
      ? h('span.pill.phone', {}, `phone ${a.phoneNumber || ''}`)
      : h(`span.pill.${a.presence || 'offline'}`, {}, a.presence || 'offline'))));
  const mine = S.agents.get(S.me);
  const p = mine ? mine.presence : '';
  $('presence-now').textContent = p || '';
  $('presence-now').className = `pill ${p}`;
  if (p === 'available' || p === 'away') $('presence').value = p;
}

function renderAll() {
  renderOffers();
  renderActive();
  renderTimeline();
  renderDirectory();
  $('outcome').textContent = S.outcome;
}

// --- Sign-in ------------------------------------------------------------------------------

async function signIn(e) {
  e.preventDefault();
  const agentId = $('agent-id').value.trim();
  const apiKey = $('api-key').value.trim() || null;
  $('signin-button').disabled = true;
  banner('signin', null);
  try {
    const { token } = await api('POST', `/api/agents/${encodeURIComponent(agentId)}/token`, { apiKey, body: {} });
    sessionStorage.setItem('switchboard.agent', JSON.stringify({ agentId, token }));
    await start(agentId, token);
  } catch (err) {
    banner('signin', `Could not sign in: ${err.message}`, 'error');
  } finally {
    $('signin-button').disabled = false;
  }
}

async function start(agentId, token) {
  S.me = agentId;
  S.token = token;
  const agents = await api('GET', '/api/agents', { token });
  for (const a of Array.isArray(agents) ? agents : agents.items || []) S.agents.set(a.agentId, a);
  $('signin').hidden = true;
  $('console').hidden = false;
  $('presence-box').hidden = false;
  $('sign-out').hidden = false;
  $('me').textContent = name(agentId);
  document.body.dataset.agent = agentId;
  S.session = new Session({
    token,
    onEvent,
    onFatal: () => banner('ws', 'The switchboard refused this session (expired or unknown agent). Sign out and sign in again.', 'error'),
  });
  S.media = new Media({
    session: S.session,
    sessionToken: () => S.token,
    onChange: (w) => {
      S.where = w.state === 'joined' ? { ...w, callId: S.media.where && S.media.where.callId } : S.where;
      document.body.dataset.media = w.state;
      renderActive();
    },
  });
  S.session.start();
  renderAll();
}

$('signin-form').addEventListener('submit', signIn);
$('transfer-form').addEventListener('submit', submitTransfer);
$('transfer-close').addEventListener('click', () => $('transfer-dialog').close());
$('presence').addEventListener('change', (e) => {
  S.session.request({ type: 'presence', status: e.target.value })
    .catch((err) => banner('action', `Presence: ${err.message}`, 'error'));
});
$('sign-out').addEventListener('click', () => {
  sessionStorage.removeItem('switchboard.agent');
  location.reload();
});
document.addEventListener('keydown', (e) => {
  // Escape leaves a text field, so the shortcuts work again.
  if (e.key === 'Escape' && typing(e) && document.activeElement && !$('transfer-dialog').open) {
    document.activeElement.blur();
    return;
  }
  if (typing(e) || !S.session || $('transfer-dialog').open) return;
  const key = e.key.toLowerCase();
  const first = offers()[0];
  const map = {
    a: () => A.accept(first), d: () => A.decline(first), h: A.hold, m: A.mute, u: A.muteCaller, t: A.transfer, c: A.complete, x: A.cancel,
  };
  if (map[key]) {
    e.preventDefault();
    map[key]();
  }
});
// The call timers tick locally (no request).
setInterval(() => {
  for (const el of document.querySelectorAll('.timer[data-since]')) {
    if (el.dataset.since) el.textContent = elapsed(el.dataset.since);
  }
}, 1000);

const saved = sessionStorage.getItem('switchboard.agent');
if (saved) {
  try {
    const { agentId, token } = JSON.parse(saved);
    start(agentId, token).catch((err) => {
      sessionStorage.removeItem('switchboard.agent');
      $('signin').hidden = false;
      banner('signin', `Please sign in again: ${err.message}`, 'error');
    });
  } catch {
    sessionStorage.removeItem('switchboard.agent');
  }
} else {
  $('agent-id').focus();
}
