// The caller page: name and reason → start call; follows every participant.move on its own
// (hold room with hold music, back to the main room), mute, hang up. All state comes from the
// WebSocket; the page never polls.

import { api, banner, Session, typing } from './common.js';
import { Media } from './media.js';

const $ = (id) => document.getElementById(id);
const state = { transferring: false, owner: null, call: null, token: null, session: null, media: null, space: null, ended: false };

// --- Hold music: a soft arpeggio made with WebAudio (no file to fetch). --------------------
let audio = null;
let musicTimer = null;
function holdMusic(on) {
  if (!on) {
    clearInterval(musicTimer);
    musicTimer = null;
    document.body.dataset.music = 'off';
    return;
  }
  if (musicTimer) return;
  document.body.dataset.music = 'on';
  try {
    audio = audio || new AudioContext();
  } catch {
    return;
  }
  const notes = [261.63, 329.63, 392.0, 523.25, 392.0, 329.63];
  let i = 0;
  const play = () => {
    const t = audio.currentTime;
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = 'sine';
    osc.frequency.value = notes[i++ % notes.length];
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.05, t + 0.05);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.45);
    osc.connect(gain).connect(audio.destination);
    osc.start(t);
    osc.stop(t + 0.5);
  };
  play();
  musicTimer = setInterval(play, 500);
}

function status(text) {
  $('caller-status').textContent = text;
}

function showHold(on) {
  $('hold-note').firstChild.textContent = state.transferring
    ? 'Please hold, we are connecting you to a specialist. '
    : 'You are on hold. Please stay on the line. ';
  $('hold-note').hidden = !on;
  document.body.dataset.space = on ? 'hold' : state.space || '';
  holdMusic(on);
}

function onEvent(ev) {
  const d = ev.data || {};
  switch (ev.type) {
    case 'call.created':
      status('Waiting for an agent…');
      break;
    case 'call.offered':
      status('Ringing an agent…');
      break;
    case 'call.queued':
      status('All our agents are busy — you are next in line.');
      break;
    case 'call.active':
      // A new owner after a hand-over is the specialist.
      status(state.owner && d.ownerId !== state.owner
        ? 'Connected — you are talking to the specialist.'
        : 'Connected — you are talking to an agent.');
      state.owner = d.ownerId;
      break;
    case 'call.on_hold':
      status('On hold.');
      break;
    case 'call.resumed':
      // With ownerId: a transfer was rolled back.
      status(d.ownerId ? 'Connected — back with your agent.' : 'Connected — you are talking to an agent.');
      if (d.ownerId) state.owner = d.ownerId;
      break;
    case 'transfer.initiated':
      state.transferring = true;
      status('Transferring you to a specialist…');
      if (state.space === 'hold') showHold(true);
      break;
    case 'transfer.completed':
      state.transferring = false;
      status('Connected — you are talking to the specialist.');
      break;
    case 'transfer.declined':
    case 'transfer.cancelled':
    case 'transfer.timed_out':
    case 'transfer.failed':
      state.transferring = false;
      if (!state.ended) status('Connected — back with your agent.');
      break;
    case 'transfer.abandoned':
      state.transferring = false;
      break;
    case 'participant.move':
      state.space = d.space;
      $('where').textContent = d.space === 'hold' ? 'on hold' : 'in the call';
      showHold(d.space === 'hold');
      state.media.follow(ev.callId, d);
      break;
    case 'participant.muted':
    case 'participant.unmuted': {
      // The agent muted (or unmuted) this caller: the page mutes its own microphone.
      const muted = ev.type === 'participant.muted';
      state.media.setMuted(muted).then(() => showMuted(muted));
      $('muted-note').hidden = !muted;
      break;
    }
    case 'call.ended':
      ended(d.reason);
      break;
    default:
      break;
  }
}

function ended(reason) {
  state.ended = true;
  const why = {
    caller_hangup: 'You hung up.',
    agent_hangup: 'The agent ended the call.',
    caller_lost: 'We lost your connection.',
    system: 'The call was ended.',
  }[reason] || 'The call has ended.';
  status(`Call ended. ${why}`);
  showHold(false);
  document.body.dataset.call = 'ended';
  $('mute').disabled = true;
  $('hangup').textContent = 'Start a new call';
  state.media && state.media.leave();
  state.session && state.session.close();
  sessionStorage.removeItem('switchboard.caller');
}

async function start(e) {
  e.preventDefault();
  const callerName = $('caller-name').value.trim();
  const reason = $('caller-reason').value.trim();
  $('start-call').disabled = true;
  banner('start', null);
  // Hold music needs an AudioContext created from a user gesture.
  try {
    audio = audio || new AudioContext();
  } catch {
    audio = null;
  }
  let created;
  try {
    created = await api('POST', '/api/calls', { body: { callerName, reason } });
  } catch (err) {
    banner('start', `Could not start the call: ${err.message}`, 'error');
    $('start-call').disabled = false;
    return;
  }
  sessionStorage.setItem(
    'switchboard.caller',
    JSON.stringify({ callId: created.call.callId, token: created.callerToken }),
  );
  begin(created.call.callId, created.callerToken, created.livekit);
}

function begin(callId, token, firstPlacement) {
  state.call = callId;
  state.token = token;
  $('start').hidden = true;
  $('incall').hidden = false;
  $('call-id').textContent = callId;
  document.body.dataset.call = 'live';
  status('Connecting…');
  let first = true;
  state.session = new Session({
    token,
    sinceMode: 'all',
    onEvent,
    onReady: () => {
      if (first && firstPlacement) {
        first = false;
        state.media.follow(callId, {
          token: firstPlacement.token,
          url: firstPlacement.url,
          room: firstPlacement.roomName,
          space: 'main',
          moveId: firstPlacement.moveId,
        });
      }
    },
    onFatal: () => {
      banner('ws', 'The switchboard refused this call session (it may have expired). Start a new call.', 'error');
    },
  });
  state.media = new Media({
    session: state.session,
    sessionToken: () => state.token,
    onChange: (w) => {
      document.body.dataset.media = w.state;
      $('retry-mic').hidden = !state.media.micError;
    },
  });
  state.session.start();
  $('mute').focus();
}

async function hangup() {
  if (state.ended) {
    location.reload();
    return;
  }
  try {
    await api('POST', `/api/calls/${encodeURIComponent(state.call)}/hangup`, { token: state.token, body: {} });
  } catch (err) {
    banner('hangup', `Could not hang up: ${err.message}`, 'error');
  }
}

function showMuted(muted) {
  $('mute').setAttribute('aria-pressed', String(muted));
  $('mute').firstChild.textContent = muted ? 'Unmute ' : 'Mute ';
}

async function toggleMute() {
  if (state.ended) return;
  const muted = !state.media.muted;
  await state.media.setMuted(muted);
  showMuted(muted);
  if (!muted) $('muted-note').hidden = true;
}

$('start-form').addEventListener('submit', start);
$('hangup').addEventListener('click', hangup);
$('mute').addEventListener('click', toggleMute);
$('retry-mic').addEventListener('click', () => state.media.applyMic().then(() => {
  $('retry-mic').hidden = !state.media.micError;
}));
document.addEventListener('keydown', (e) => {
  if (typing(e) || !state.call) return;
  if (e.key === 'm') toggleMute();
});

// A reload keeps the call: the session token is kept for this tab only.
const saved = sessionStorage.getItem('switchboard.caller');
if (saved) {
  try {
    const { callId, token } = JSON.parse(saved);
    begin(callId, token, null);
  } catch {
    sessionStorage.removeItem('switchboard.caller');
  }
}
$('caller-name').focus();
