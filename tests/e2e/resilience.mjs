// What people see when things go wrong, in Chromium: a blocked microphone (message and retry),
// the switchboard unreachable at sign-in, the WebSocket cut (banner, then a reconnect with
// `since=` that catches up on what was missed), LiveKit unreachable on a move (banner), the
// agent console on a phone-sized screen, and the client side of the Twilio contract
// (`participant.move` with `plane: "twilio"` → `new Device(token)` + `device.connect` with the
// conference, leaving LiveKit; back to LiveKit → the Twilio call is disconnected).
import {
  BASE, gone, launch, log, person, screenshots, see, until,
} from './lib.mjs';

// The Twilio Voice SDK double: records what the page does with the Device.
const TWILIO_DOUBLE = `
(function (root) {
  class Call {
    constructor(params) { this.params = params; this.muted = false; this.disconnected = false; }
    mute(m) { this.muted = m; }
    disconnect() { this.disconnected = true; }
  }
  class Device {
    constructor(token, options) {
      this.token = token; this.options = options; this.destroyed = false; this.calls = [];
      (root.__twilio ||= { devices: [] }).devices.push(this);
    }
    async connect({ params }) { const c = new Call(params); this.calls.push(c); return c; }
    disconnectAll() { for (const c of this.calls) c.disconnect(); }
    destroy() { this.destroyed = true; }
  }
  root.Twilio = { Device, Call };
})(globalThis);
`;

async function api(method, path, body) {
  const res = await fetch(`${BASE()}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const browser = await launch();
try {
  // --- The switchboard unreachable at sign-in ----------------------------------------------
  const alice = await person(browser, 'alice');
  // A WebSocket proxy we can cut: while `cut`, connections are closed at once.
  let cut = false;
  let live = null;
  const urls = [];
  await alice.context.routeWebSocket(/\/ws\?/, (ws) => {
    urls.push(ws.url());
    if (cut) {
      ws.close();
      return;
    }
    live = ws;
    ws.connectToServer();
  });
  await alice.context.route('**/api/agents/*/token', (route) => route.abort('connectionrefused'));
  await alice.page.goto(`${BASE()}/agent.html`);
  await alice.page.locator('#agent-id').fill('alice');
  await alice.page.keyboard.press('Enter');
  await see(alice, '#banner-signin', 'Could not sign in: The switchboard server is unreachable');
  await screenshots('server-unreachable', alice);
  await alice.context.unroute('**/api/agents/*/token');

  await alice.page.keyboard.press('Enter');
  await see(alice, '#presence-now', 'available');
  log('alice signed in after the failure');

  // --- A blocked microphone -------------------------------------------------------------------
  const caller = await person(browser, 'caller', { width: 390, height: 844 });
  await caller.context.addInitScript(() => { globalThis.__denyMic = true; });
  await caller.page.goto(`${BASE()}/caller.html`);
  await caller.page.locator('#caller-name').fill('Carl Caller');
  await caller.page.locator('#caller-reason').fill('lost card');
  await caller.page.locator('#start-call').click();
  await see(caller, '#banner-mic', 'Microphone blocked: allow microphone access');
  await see(caller, '#retry-mic', 'Retry microphone');
  await screenshots('mic-blocked', caller);
  await caller.page.evaluate(() => { globalThis.__denyMic = false; });
  await caller.page.locator('#retry-mic').click();
  await gone(caller, '#banner-mic');
  await gone(caller, '#retry-mic');
  log('microphone message and retry');

  await see(alice, '#offer-call', 'Carl Caller');
  await alice.page.keyboard.press('a');
  await see(alice, '#call-status', 'active');
  await see(caller, '#caller-status', 'talking to an agent');
  const callId = await caller.page.locator('#call-id').innerText();

  // --- The WebSocket cut: banner, then catch-up with since= ----------------------------------
  cut = true;
  await live.close({ code: 1001, reason: 'test cuts the line' });
  await see(alice, '#banner-ws', 'Disconnected from the switchboard');
  await until(alice, 'the page marks the socket down', () => document.body.dataset.ws === 'down');
  await screenshots('ws-disconnected', alice);
  // Missed while disconnected: management puts the call on hold.
  await api('POST', `/api/calls/${callId}/hold`, {});
  await see(caller, '#caller-status', 'On hold');
  await see(caller, '#hold-note', 'You are on hold. Please stay on the line.');
  await until(caller, 'hold music plays', () => document.body.dataset.music === 'on');
  cut = false;
  await gone(alice, '#banner-ws');
  await see(alice, '#call-status', 'on hold');
  const reconnect = urls[urls.length - 1];
  if (!new RegExp(`since=${callId}%3A\\d+`).test(reconnect)) {
    throw new Error(`the reconnect did not send since=${callId}:seq: ${reconnect}`);
  }
  await screenshots('ws-caught-up', alice);
  log('reconnected with', new URL(reconnect).searchParams.get('since'));

  // --- LiveKit unreachable on a move ----------------------------------------------------------
  await caller.context.route('**/test/join', (route) => route.abort('connectionrefused'));
  await alice.page.keyboard.press('h'); // resume: the caller moves back to the main room
  await see(caller, '#banner-media', 'Could not reach the media server (LiveKit)');
  await screenshots('livekit-unreachable', caller);
  await caller.context.unroute('**/test/join');
  log('LiveKit unreachable banner');

  // --- The console on a phone-sized screen ----------------------------------------------------
  const bob = await person(browser, 'bob-phone', { width: 390, height: 844 });
  await bob.page.goto(`${BASE()}/agent.html`);
  await bob.page.locator('#agent-id').fill('bob');
  await bob.page.keyboard.press('Enter');
  await see(bob, '#presence-now', 'available');
  const width = await bob.page.evaluate(() => document.documentElement.scrollWidth);
  if (width > 390) throw new Error(`the console is ${width}px wide on a 390px screen`);
  await bob.page.keyboard.press('Tab');
  await screenshots('console-phone', bob);

  // --- The Twilio contract, client side --------------------------------------------------------
  await alice.context.route('**/vendor/twilio-voice-sdk/twilio.min.js', (route) =>
    route.fulfill({ status: 200, contentType: 'application/javascript', body: TWILIO_DOUBLE }));
  const twilio = await alice.page.evaluate(async () => {
    const { Media } = await import('/js/media.js');
    const acks = [];
    const media = new Media({
      session: { request: async (m) => { acks.push(m); return { confirmed: true }; } },
      sessionToken: () => 'unused',
    });
    await media.move('call-t', { plane: 'twilio', token: 'twilio-access-token', room: 'conf-1', space: 'consult', moveId: 'mv-9' });
    const d = globalThis.__twilio.devices[0];
    const first = {
      token: d.token, params: d.calls[0].params, acks: acks.slice(), where: media.where,
    };
    await media.move('call-t', { plane: 'livekit', token: 'bad', url: 'ws://127.0.0.1:9', room: 'r', space: 'main', moveId: 'mv-10' });
    return { ...first, hungUp: d.calls[0].disconnected, destroyed: d.destroyed };
  });
  const expect = (cond, what) => { if (!cond) throw new Error(`twilio: ${what}: ${JSON.stringify(twilio)}`); };
  expect(twilio.token === 'twilio-access-token', 'new Device(token)');
  expect(twilio.params.conference === 'conf-1' && twilio.params.callId === 'call-t' && twilio.params.moveId === 'mv-9', 'connect params');
  expect(twilio.acks.length === 1 && twilio.acks[0].moveId === 'mv-9', 'the move is acknowledged');
  expect(twilio.where.plane === 'twilio', 'where');
  expect(twilio.hungUp && twilio.destroyed, 'a LiveKit move disconnects the Twilio call');
  log('twilio client contract');

  // --- The vendored SDKs themselves load in Chromium (the other steps use doubles) ----------
  const plain = await browser.newContext();
  const sdkPage = await plain.newPage();
  await sdkPage.goto(`${BASE()}/`);
  const sdks = await sdkPage.evaluate(async () => {
    const lk = await import('/vendor/livekit-client/livekit-client.esm.mjs');
    await new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = '/vendor/twilio-voice-sdk/twilio.min.js';
      s.onload = resolve;
      s.onerror = () => reject(new Error('twilio.min.js did not load'));
      document.head.append(s);
    });
    return {
      room: typeof lk.Room,
      disconnected: lk.RoomEvent && lk.RoomEvent.Disconnected,
      device: typeof (globalThis.Twilio && globalThis.Twilio.Device),
    };
  });
  if (sdks.room !== 'function' || !sdks.disconnected || sdks.device !== 'function') {
    throw new Error(`the vendored SDKs do not load as the pages expect: ${JSON.stringify(sdks)}`);
  }
  await plain.close();
  log('vendored SDKs load:', JSON.stringify(sdks));

  for (const p of [alice, caller, bob]) {
    const bad = p.errors.filter((e) => !e.startsWith('console: Failed to load resource') && !e.includes('WebSocket'));
    if (bad.length) throw new Error(`${p.name} had page errors: ${bad.join(' | ')}`);
  }
  log('all steps passed');
} finally {
  await browser.close();
}
