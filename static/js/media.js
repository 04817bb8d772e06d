// Where a party's audio goes: a LiveKit room (web legs) or a Twilio conference through the
// Twilio Voice SDK (client legs). Follows `participant.move` events: leaves the old place,
// joins the new one with the token the switchboard pushed (or a fresh one from
// POST /api/tokens for a replayed move, which carries none), then acknowledges the move.

import { Room, RoomEvent } from '/vendor/livekit-client/livekit-client.esm.mjs';
import { api, banner } from './common.js';

const TWILIO_SDK = '/vendor/twilio-voice-sdk/twilio.min.js';

let twilioLoading = null;
function loadTwilio() {
  if (globalThis.Twilio && globalThis.Twilio.Device) return Promise.resolve(globalThis.Twilio);
  if (!twilioLoading) {
    twilioLoading = new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = TWILIO_SDK;
      s.onload = () => resolve(globalThis.Twilio);
      s.onerror = () => reject(new Error('the Twilio Voice SDK could not be loaded'));
      document.head.append(s);
    });
  }
  return twilioLoading;
}

function micMessage(e) {
  const name = e && e.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return 'Microphone blocked: allow microphone access for this site (the icon in the address bar), then press "Retry microphone".';
  }
  if (name === 'NotFoundError') return 'No microphone found: plug one in, then press "Retry microphone".';
  return `The microphone could not be started: ${e && e.message ? e.message : e}`;
}

/**
 * One party's media. `onChange({plane, room, space, state, error})` reports where it is;
 * `session` is the WebSocket Session (for acks); `token()` the session token.
 */
export class Media {
  constructor({ session, sessionToken, onChange }) {
    this.session = session;
    this.sessionToken = sessionToken;
    this.onChange = onChange || (() => {});
    this.room = null;
    this.twilio = null; // {device, call}
    this.where = null; // {plane, room, space, callId, moveId}
    this.muted = false;
    this.pendingMove = null;
    this.timer = null;
    this.chain = Promise.resolve();
    this.micError = null;
  }

  /** Follows a `participant.move` (debounced, so a replay acts on the latest move only). */
  follow(callId, data) {
    this.pendingMove = { callId, data };
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      const m = this.pendingMove;
      this.pendingMove = null;
      if (m) this.chain = this.chain.then(() => this.move(m.callId, m.data)).catch(() => {});
    }, 40);
  }

  async move(callId, data) {
    if (data.moveId && this.where && this.where.moveId === data.moveId) return;
    let { token, url, room, space, moveId } = data;
    const plane = data.plane === 'twilio' ? 'twilio' : 'livekit';
    if (!token) {
      // A replayed move carries no join token: ask for one for where we are placed now.
      try {
        const t = await api('POST', '/api/tokens', { token: this.sessionToken(), body: { callId } });
        ({ token, url } = t);
        room = t.roomName;
        space = t.space;
        moveId = t.moveId;
      } catch (e) {
        if (e.code === 'not_placed') return;
        banner('media', `Could not get a media token: ${e.message}`, 'error');
        return;
      }
    }
    this.report({ plane, room, space, state: 'joining' });
    await this.leave();
    try {
      if (plane === 'twilio') await this.joinTwilio(token, room, callId, moveId);
      else await this.joinLiveKit(url, token);
    } catch (e) {
      const what = plane === 'twilio' ? 'Twilio' : 'LiveKit';
      banner('media', `Could not reach the media server (${what}) to join ${space || 'the'} room: ${e.message || e}`, 'error');
      this.report({ plane, room, space, state: 'failed', error: String(e.message || e) });
      return;
    }
    banner('media', null);
    this.where = { plane, room, space, callId, moveId };
    this.report({ plane, room, space, state: 'joined' });
    if (moveId) {
      this.session.request({ type: 'ack', callId, moveId }).catch(() => {
        // The LiveKit webhook confirms arrival too; a lost ack is re-sent by the server's
        // re-sent move if needed.
      });
    }
  }

  async joinLiveKit(url, token) {
    const room = new Room();
    // Play what the others say: every subscribed audio track gets an <audio> element.
    room.on(RoomEvent.TrackSubscribed, (track) => {
      if (track.kind === 'audio') {
        const el = track.attach();
        el.dataset.livekitAudio = '';
        document.body.append(el);
      }
    });
    room.on(RoomEvent.TrackUnsubscribed, (track) => {
      for (const el of track.detach()) el.remove();
    });
    room.on(RoomEvent.Disconnected, () => {
      if (this.room === room) {
        this.room = null;
        this.report({ ...(this.where || {}), state: 'disconnected' });
      }
    });
    await room.connect(url, token);
    this.room = room;
    // Browsers start audio only after a user gesture; the pages have had one (a click or a key).
    if (room.startAudio) room.startAudio().catch(() => {});
    await this.applyMic();
  }

  async joinTwilio(token, conference, callId, moveId) {
    const Twilio = await loadTwilio();
    const device = new Twilio.Device(token, { closeProtection: true });
    const call = await device.connect({ params: { conference, callId, moveId } });
    this.twilio = { device, call };
    if (this.muted) call.mute(true);
  }

  async applyMic() {
    if (!this.room) return;
    try {
      await this.room.localParticipant.setMicrophoneEnabled(!this.muted);
      this.micError = null;
      banner('mic', null);
    } catch (e) {
      this.micError = micMessage(e);
      banner('mic', this.micError, 'warn');
    }
  }

  /** Mutes or unmutes the microphone wherever we are. */
  async setMuted(muted) {
    this.muted = muted;
    if (this.twilio && this.twilio.call) this.twilio.call.mute(muted);
    await this.applyMic();
  }

  /** Leaves the LiveKit room and any Twilio call. */
  async leave() {
    const room = this.room;
    this.room = null;
    for (const el of document.querySelectorAll('[data-livekit-audio]')) el.remove();
    if (room) {
      try {
        await room.disconnect();
      } catch {
        // Already gone.
      }
    }
    const tw = this.twilio;
    this.twilio = null;
    if (tw) {
      try {
        tw.device.disconnectAll();
        tw.device.destroy();
      } catch {
        // Already gone.
      }
    }
    this.where = null;
  }

  report(where) {
    this.onChange(where);
  }
}
