// Shared by the end-to-end scripts: launching Debian's Chromium, the livekit-client and
// Twilio Voice SDK test doubles (swapped in with Playwright routing), the Twilio fake's
// test surface (phone calls, its state), request recording, screenshots and waits.
import { mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { chromium } from 'playwright-core';

/** A required environment variable (set by tests/it/browser.rs). */
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this script through \`cargo test --test it browser\``);
  return v;
}

export const BASE = () => env('SWITCHBOARD_URL');
export const SHOTS = () => env('E2E_SCREENSHOT_DIR');
export const WAIT = 15000;

/** Chromium exactly as the issue says: Debian's package, headless, these flags. */
export async function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

// The test double of the vendored livekit-client: the same API surface the pages use
// (Room, RoomEvent, connect, disconnect, localParticipant.setMicrophoneEnabled). Instead of
// WebRTC it joins the LiveKit fake over HTTP with the real join token the page received, so
// the fake checks signature, key, expiry, roomJoin grant, identity and room, and sends its
// signed webhooks to the switchboard.
const LIVEKIT_DOUBLE = `
export const RoomEvent = {
  Disconnected: 'disconnected', TrackSubscribed: 'trackSubscribed', TrackUnsubscribed: 'trackUnsubscribed',
};
const httpOf = (url) => url.replace(/^ws/, 'http').replace(/\\/+$/, '');
export class Room {
  constructor() {
    this.handlers = {};
    this.localParticipant = {
      setMicrophoneEnabled: async (on) => {
        if (globalThis.__denyMic) {
          const e = new Error('Permission denied');
          e.name = 'NotAllowedError';
          throw e;
        }
        globalThis.__mic = on;
      },
    };
  }
  on(ev, cb) { (this.handlers[ev] ||= []).push(cb); return this; }
  async connect(url, token) {
    const res = await fetch(httpOf(url) + '/test/join', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }),
    });
    if (!res.ok) throw new Error('LiveKit refused the join (' + res.status + '): ' + (await res.text()));
    const j = await res.json();
    this.url = url; this.token = token;
    globalThis.__lk = { room: j.room, identity: j.identity };
    (globalThis.__lkJoins ||= []).push(j.room);
  }
  async startAudio() {}
  async disconnect() {
    if (!this.token) return;
    const token = this.token; this.token = null;
    await fetch(httpOf(this.url) + '/test/leave', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }),
    });
    globalThis.__lk = null;
  }
}
`;

// The test double of the vendored @twilio/voice-sdk (a classic script defining
// globalThis.Twilio): the API surface the pages use (new Device(token), device.connect({params})
// → Call with mute/disconnect, disconnectAll, destroy). Instead of WebRTC it calls the Twilio
// fake's POST /test/client/connect with the real Access Token the page received and the
// connect params, so the fake checks the token (signature, API key, account, expiry, identity,
// voice grant, TwiML App) and runs our TwiML App's voice URL; disconnect() hangs the leg up.
// globalThis.__tw is {callSid, conference, muted} while connected, null after.
const twilioDouble = (fakeUrl) => `
(function (root) {
  const FAKE = ${JSON.stringify(fakeUrl)};
  const post = (path, body) => fetch(FAKE + path, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  class Call {
    constructor(sid, params) { this.sid = sid; this.params = params; this.muted = false; }
    on() { return this; }
    mute(m) {
      this.muted = !!m;
      if (root.__tw && root.__tw.callSid === this.sid) root.__tw.muted = this.muted;
    }
    isMuted() { return this.muted; }
    disconnect() {
      if (!this.sid) return;
      const callSid = this.sid;
      this.sid = null;
      if (root.__tw && root.__tw.callSid === callSid) root.__tw = null;
      post('/test/client/disconnect', { callSid });
    }
  }
  class Device {
    constructor(token, options) { this.token = token; this.options = options; this.calls = []; }
    on() { return this; }
    async connect({ params } = {}) {
      const strings = {};
      for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null) strings[k] = String(v);
      const res = await post('/test/client/connect', { token: this.token, params: strings });
      if (!res.ok) throw new Error('Twilio refused the connection (' + res.status + '): ' + (await res.text()));
      const { callSid } = await res.json();
      const call = new Call(callSid, strings);
      this.calls.push(call);
      root.__tw = { callSid, conference: strings.conference, muted: false };
      (root.__twJoins ||= []).push(strings.conference);
      return call;
    }
    disconnectAll() { for (const c of this.calls) c.disconnect(); }
    destroy() {}
  }
  root.Twilio = { Device, Call };
})(globalThis);
`;

/**
 * A browser context (one person) with its page: the LiveKit SDK and the Twilio Voice SDK
 * swapped for the doubles, and every HTTP request of the page recorded as {t, method, url}.
 */
export async function person(browser, name, viewport = { width: 1280, height: 720 }) {
  const context = await browser.newContext({ viewport });
  await context.route('**/vendor/livekit-client/livekit-client.esm.mjs', (route) =>
    route.fulfill({ status: 200, contentType: 'application/javascript', body: LIVEKIT_DOUBLE }),
  );
  const voiceDouble = twilioDouble(env('TWILIO_FAKE_URL'));
  await context.route('**/vendor/twilio-voice-sdk/twilio.min.js', (route) =>
    route.fulfill({ status: 200, contentType: 'application/javascript', body: voiceDouble }),
  );
  const page = await context.newPage();
  const requests = [];
  page.on('request', (r) => requests.push({ t: Date.now(), method: r.method(), url: r.url() }));
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  return { name, context, page, requests, errors };
}

let shot = 0;
/** Saves a screenshot of every page given, named after the step. */
export async function screenshots(step, ...people) {
  mkdirSync(SHOTS(), { recursive: true });
  shot += 1;
  const n = String(shot).padStart(2, '0');
  for (const p of people) {
    const script = basename(process.argv[1], '.mjs');
    await p.page.screenshot({ path: join(SHOTS(), `${script}-${n}-${step}-${p.name}.png`), fullPage: true });
  }
}

/** Waits until `selector` is visible and contains `text` (a string or RegExp). */
export async function see(p, selector, text) {
  const loc = text === undefined
    ? p.page.locator(selector)
    : p.page.locator(selector, { hasText: text });
  try {
    await loc.first().waitFor({ state: 'visible', timeout: WAIT });
  } catch (e) {
    const body = await p.page.locator('body').innerText().catch(() => '?');
    throw new Error(`${p.name}: expected ${selector} showing ${text}; the page shows:\n${body}\n(errors: ${p.errors.join(' | ')})`);
  }
}

/** Waits until `selector` is gone or hidden. */
export async function gone(p, selector) {
  try {
    await p.page.locator(selector).first().waitFor({ state: 'hidden', timeout: WAIT });
  } catch {
    const body = await p.page.locator('body').innerText().catch(() => '?');
    throw new Error(`${p.name}: expected ${selector} to go away; the page shows:\n${body}`);
  }
}

/** Waits for `fn` (run in the page) to be truthy. */
export async function until(p, what, fn, arg) {
  try {
    await p.page.waitForFunction(fn, arg, { timeout: WAIT });
  } catch {
    const body = await p.page.locator('body').innerText().catch(() => '?');
    throw new Error(`${p.name}: ${what} never happened; the page shows:\n${body}`);
  }
}

/** Signs an agent in on the console, by keyboard only. */
export async function signIn(p, agentId) {
  await p.page.goto(`${BASE()}/agent.html`);
  await p.page.locator('#agent-id').fill(agentId);
  await p.page.keyboard.press('Enter');
  await see(p, '#presence-now', 'available');
}

/** The switchboard requests (not the LiveKit fake's) a person made since `from`. */
export function serverRequests(p, from, to = Infinity) {
  const base = BASE();
  return p.requests.filter((r) => r.t >= from && r.t <= to && r.url.startsWith(base));
}

/** Fails if any page requested the same method and path twice in the window. */
export function assertNoRepeats(people, from, to) {
  for (const p of people) {
    const seen = new Map();
    for (const r of serverRequests(p, from, to)) {
      const key = `${r.method} ${new URL(r.url).pathname}`;
      seen.set(key, (seen.get(key) || 0) + 1);
    }
    const repeated = [...seen].filter(([, n]) => n > 1);
    if (repeated.length) {
      throw new Error(`${p.name} repeated HTTP requests (polling?): ${repeated.map(([k, n]) => `${k} ×${n}`).join(', ')}`);
    }
  }
}

// --- The Twilio fake's test surface (the test drives phones and reads the fake's state) ----

/** Calls the Twilio fake's test surface; throws with its answer on a non-2xx. */
export async function twilio(method, path, body) {
  const res = await fetch(`${env('TWILIO_FAKE_URL')}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`Twilio fake ${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** The fake's calls, conferences (participants with label, hold, muted) and errors. */
export const twilioState = () => twilio('GET', '/test/state');

/** The live conference named `name`, or undefined. */
export function conferenceOf(state, name) {
  return state.conferences.filter((c) => c.friendlyName === name && c.status !== 'completed').pop();
}

/** The participant labelled `label` in the live conference `name`, or undefined. */
export function participantOf(state, name, label) {
  const c = conferenceOf(state, name);
  return c && c.participants.find((p) => p.label === label);
}

/**
 * Waits until `probe(state)` returns something truthy for the Twilio fake's state (the test
 * reads the fake; the pages never poll). Fails with `what` and the last state.
 */
export async function twilioUntil(what, probe) {
  const deadline = Date.now() + WAIT;
  let last = null;
  for (;;) {
    last = await twilioState();
    const found = probe(last);
    if (found) return found;
    if (Date.now() > deadline) {
      throw new Error(`Twilio fake: ${what} never happened; state:\n${JSON.stringify(last, null, 1)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function log(...args) {
  console.log(`[e2e ${new Date().toISOString().slice(11, 19)}]`, ...args);
}
