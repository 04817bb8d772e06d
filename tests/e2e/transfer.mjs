// Three people in three browser contexts — the caller (phone-sized screen), Agent A (Alice)
// and Agent B (Bob) at 1280×720 — go through: call → accept → warm transfer → B accepts →
// briefing → complete; then a declined transfer and a cancelled one (B, now the owner,
// transfers back to A); then the caller hangs up. Every step asserts what every page shows and
// saves screenshots. No-polling: during an idle period (E2E_IDLE_SECS) no page makes any HTTP
// request, and during the full warm transfer no page repeats a request.
import {
  assertNoRepeats, BASE, gone, launch, log, person, screenshots, see, serverRequests, signIn,
  twilioUntil, until,
} from './lib.mjs';

const IDLE_SECS = Number(process.env.E2E_IDLE_SECS || '120');

const browser = await launch();
try {
  const caller = await person(browser, 'caller', { width: 390, height: 844 });
  const alice = await person(browser, 'alice');
  const bob = await person(browser, 'bob');
  const wall = await person(browser, 'wallboard');
  const everyone = [caller, alice, bob];

  // --- Sign-in, the wallboard, and a call that only Alice can take -----------------------
  await wall.page.goto(`${BASE()}/wallboard.html`);
  await see(wall, '#wall-status', 'live');
  await signIn(alice, 'alice');
  await see(wall, '#agents [data-agent-id=alice]', 'available');
  log('alice signed in');

  await caller.page.goto(`${BASE()}/caller.html`);
  await caller.page.locator('#caller-name').fill('Ann Example');
  await caller.page.locator('#caller-reason').fill('billing question');
  await caller.page.keyboard.press('Enter');
  await see(alice, '#offer-call', 'Ann Example');
  await see(alice, '#offer-call', 'billing question');
  await see(caller, '#caller-status', /Ringing an agent|Waiting for an agent/);
  await see(wall, '#calls tr', 'Ann Example');
  await screenshots('offered', caller, alice, wall);
  log('call offered to alice');

  // Accept by keyboard.
  await alice.page.keyboard.press('a');
  await see(alice, '#call-status', 'active');
  await see(alice, '#active-caller', 'Ann Example');
  await see(caller, '#caller-status', 'talking to an agent');
  await until(caller, 'the caller joins the main room on LiveKit', () => globalThis.__lk && globalThis.__lk.room);
  await until(alice, 'Alice joins the main room on LiveKit', () => globalThis.__lk && globalThis.__lk.room);
  const mainRoom = await caller.page.evaluate(() => globalThis.__lk.room);
  const aliceRoom = await alice.page.evaluate(() => globalThis.__lk.room);
  if (mainRoom !== aliceRoom) throw new Error(`caller in ${mainRoom}, Alice in ${aliceRoom}`);
  await see(alice, '#timeline', 'participant.joined');
  await see(wall, '#calls tr', 'active');
  // A note for the transcript (it feeds the briefing's summary).
  await alice.page.locator('#line').fill('Customer was charged twice for the March invoice.');
  await alice.page.keyboard.press('Enter');
  await see(alice, '#transcript', 'charged twice');
  await alice.page.keyboard.press('Escape'); // leave the field: shortcuts work again
  await screenshots('accepted', caller, alice, wall);
  log('call active with alice in', mainRoom);

  // --- Idle: nobody requests anything ------------------------------------------------------
  await signIn(bob, 'bob');
  await see(alice, '#directory [data-agent-id=bob]', 'available');
  // Presence over the WebSocket: Bob steps away and comes back; everyone sees it.
  await bob.page.locator('#presence').selectOption('away');
  await see(bob, '#presence-now', 'away');
  await see(alice, '#directory [data-agent-id=bob]', 'away');
  await see(wall, '#agents [data-agent-id=bob]', 'away');
  await bob.page.locator('#presence').selectOption('available');
  await see(alice, '#directory [data-agent-id=bob]', 'available');
  await see(wall, '#agents [data-agent-id=bob]', 'available');
  const idleFrom = Date.now();
  log(`idle for ${IDLE_SECS} s`);
  await new Promise((r) => setTimeout(r, IDLE_SECS * 1000));
  for (const p of [...everyone, wall]) {
    const during = serverRequests(p, idleFrom);
    if (during.length) {
      throw new Error(`${p.name} made HTTP requests while idle (polling?): ${during.map((r) => `${r.method} ${r.url}`).join(', ')}`);
    }
  }
  await see(caller, '#caller-status', 'talking to an agent');
  log('idle: no requests');

  // --- A phone specialist is listed; a transfer to them is cancelled while their phone rings -
  await alice.page.keyboard.press('t');
  await see(alice, '#transfer-dialog', 'Phil');
  await see(alice, '#targets', 'phone +15550100');
  await alice.page.locator('#targets input[value=phil]').check();
  await alice.page.locator('#transfer-go').click();
  await gone(alice, '#transfer-dialog');
  await see(alice, '#transfer-status', 'Phil');
  await see(alice, '#transfer-status', "Phil's phone is ringing");
  // A joined the consult conference from the browser (Voice SDK double → the Twilio fake).
  await until(alice, 'Alice joins the consult conference', () => globalThis.__tw && /--consult/.test(globalThis.__tw.conference));
  const philCall = await twilioUntil('Phil dialled', (st) => st.calls.find((c) => c.to === '+15550100'));
  await screenshots('phone-target-ringing', alice);
  await alice.page.keyboard.press('x');
  await see(alice, '#outcome', 'Transfer cancelled');
  await twilioUntil("Phil's ringing call cancelled", (st) => st.calls.find((c) => c.sid === philCall.sid && c.status === 'canceled'));
  await until(alice, 'Alice left the conference', () => !globalThis.__tw);
  await until(alice, 'Alice is back in the main room', (main) => globalThis.__lk && globalThis.__lk.room === main, mainRoom);
  await see(caller, '#caller-status', 'back with your agent');
  log('transfer to the phone specialist cancelled while ringing');

  // --- Warm transfer Alice → Bob, measured for repeated requests ---------------------------
  const transferFrom = Date.now();
  await alice.page.keyboard.press('t');
  await see(alice, '#targets', 'Bob');
  await alice.page.locator('#targets input[value=bob]').check();
  await alice.page.locator('#transfer-dialog input[name=mode][value=warm]').check();
  await alice.page.locator('#transfer-note').fill('VIP customer, refund approved');
  await alice.page.locator('#transfer-go').click();
  await gone(alice, '#transfer-dialog');
  await see(alice, '#transfer-status', /Transfer to Bob \(warm\): (initiated|ringing)/);
  await see(caller, '#hold-note', 'Please hold, we are connecting you to a specialist');
  await see(caller, '#caller-status', 'Transferring you to a specialist');
  await until(caller, 'hold music plays', () => document.body.dataset.music === 'on');
  await until(caller, 'the caller joins the hold room', (main) => globalThis.__lk && globalThis.__lk.room !== main, mainRoom);
  await see(bob, '#offer-transfer', 'Transfer from Alice (warm)');
  await see(bob, '#offer-transfer .summary-text', /\S/);
  await see(bob, '#offer-transfer .note', 'VIP customer, refund approved');
  await see(bob, '#offer-transfer', 'Ann Example');
  // The structured briefing came with the offer (no request by Bob's page).
  await see(bob, '#offer-transfer #briefing-reason', /\S/);
  await see(bob, '#offer-transfer #briefing-next', /\S/);
  // A transcript line spoken now (posted by a speech-to-text service, here management) is
  // pushed to Alice's console live: transcript.appended, no polling.
  const callId = await bob.page.locator('#offer-transfer').getAttribute('data-call-id');
  const said = await fetch(`${BASE()}/api/transcripts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ callId, speaker: 'caller', text: 'Please hurry, I am at the airport.', source: 'whisper' }),
  });
  if (said.status !== 201) throw new Error(`transcript: ${said.status} ${await said.text()}`);
  await see(alice, '#transcript', 'at the airport');
  await see(wall, '#transfers tr', 'bob');
  await screenshots('transfer-offered', caller, alice, bob, wall);
  log('transfer offered to bob');

  await bob.page.locator('#accept-transfer').click();
  await see(alice, '#transfer-status', 'briefing');
  await see(bob, '#active-caller', 'Ann Example');
  await see(bob, '#active', 'Transferred to you by Alice');
  await see(bob, '#active', 'consult room');
  await see(alice, '#active', 'consult room');
  const consultA = await alice.page.evaluate(() => globalThis.__lk.room);
  const consultB = await bob.page.evaluate(() => globalThis.__lk.room);
  if (consultA !== consultB || consultA === mainRoom) {
    throw new Error(`briefing: Alice in ${consultA}, Bob in ${consultB}, main ${mainRoom}`);
  }
  await until(alice, 'Complete is enabled', () => !document.getElementById('complete').disabled);
  await see(caller, '#hold-note', 'Please hold');
  await screenshots('briefing', caller, alice, bob);
  log('briefing in', consultA);

  await alice.page.keyboard.press('c');
  await see(alice, '#outcome', 'Transfer completed: Bob has the call.');
  await see(alice, '#active', 'No active call');
  await see(bob, '#active', 'You own this call');
  await see(bob, '#call-status', 'active');
  await see(bob, '#outcome', 'You now have the call with Ann Example');
  await see(caller, '#caller-status', 'talking to the specialist');
  await gone(caller, '#hold-note');
  await until(caller, 'hold music stops', () => document.body.dataset.music === 'off');
  await until(bob, 'Bob is in the main room', (main) => globalThis.__lk && globalThis.__lk.room === main, mainRoom);
  await until(caller, 'the caller is back in the main room', (main) => globalThis.__lk && globalThis.__lk.room === main, mainRoom);
  await until(alice, 'Alice left LiveKit', () => globalThis.__lk === null);
  await see(wall, '#transfers', 'No open transfers');
  await screenshots('completed', caller, alice, bob, wall);
  assertNoRepeats([...everyone, wall], transferFrom, Date.now());
  log('transfer completed; no repeated requests during it');

  // --- Declined: Bob (owner now) → Alice, Alice declines -----------------------------------
  await bob.page.locator('#transfer').click();
  await bob.page.locator('#targets input[value=alice]').check();
  await bob.page.locator('#transfer-go').click();
  await see(alice, '#offer-transfer', 'Transfer from Bob (warm)');
  await see(caller, '#hold-note', 'Please hold');
  await screenshots('second-offer', caller, alice, bob);
  await alice.page.keyboard.press('d');
  await see(bob, '#outcome', 'Alice declined the transfer; the caller is back with you.');
  await see(alice, '#outcome', 'You declined the transfer.');
  await see(alice, '#offers', 'No offers');
  await see(caller, '#caller-status', 'back with your agent');
  await gone(caller, '#hold-note');
  await see(bob, '#call-status', 'active');
  await until(caller, 'the caller is back in the main room', (main) => globalThis.__lk && globalThis.__lk.room === main, mainRoom);
  await screenshots('declined', caller, alice, bob);
  log('declined');

  // --- Cancelled: Bob → Alice again, Alice accepts, Bob cancels during the briefing --------
  await bob.page.keyboard.press('t');
  await bob.page.locator('#targets input[value=alice]').check();
  await bob.page.locator('#transfer-go').click();
  await see(alice, '#offer-transfer', 'Transfer from Bob');
  await alice.page.keyboard.press('a');
  await see(bob, '#transfer-status', 'briefing');
  await see(alice, '#active', 'Transferred to you by Bob');
  await screenshots('second-briefing', caller, alice, bob);
  await bob.page.keyboard.press('x');
  await see(bob, '#outcome', 'Transfer cancelled; the caller is back with you.');
  await see(alice, '#outcome', 'Bob cancelled the transfer.');
  await see(alice, '#active', 'No active call');
  await see(caller, '#caller-status', 'back with your agent');
  await gone(caller, '#hold-note');
  await until(alice, 'Alice left LiveKit', () => globalThis.__lk === null);
  await until(bob, 'Bob is back in the main room', (main) => globalThis.__lk && globalThis.__lk.room === main, mainRoom);
  await screenshots('cancelled', caller, alice, bob);
  log('cancelled');

  // --- Cold: Bob → Alice; on Alice's accept the caller is hers at once ---------------------
  await bob.page.keyboard.press('t');
  await bob.page.locator('#targets input[value=alice]').check();
  await bob.page.locator('#transfer-dialog input[name=mode][value=cold]').check();
  await bob.page.locator('#transfer-go').click();
  await see(alice, '#offer-transfer', 'Transfer from Bob (cold)');
  await see(caller, '#hold-note', 'Please hold');
  await alice.page.keyboard.press('a');
  await see(alice, '#active', 'You own this call');
  await see(alice, '#call-status', 'active');
  await see(bob, '#outcome', 'Transfer completed: Alice has the call.');
  await see(bob, '#active', 'No active call');
  await see(caller, '#caller-status', 'talking to the specialist');
  await gone(caller, '#hold-note');
  await until(alice, 'Alice is in the main room', (main) => globalThis.__lk && globalThis.__lk.room === main, mainRoom);
  await until(bob, 'Bob left LiveKit', () => globalThis.__lk === null);
  await screenshots('cold-completed', caller, alice, bob);
  log('cold transfer completed');

  // --- Conference: Alice → Bob; Bob joins the main room with both, Alice completes ----------
  await alice.page.keyboard.press('t');
  await alice.page.locator('#targets input[value=bob]').check();
  await alice.page.locator('#transfer-dialog input[name=mode][value=conference]').check();
  await alice.page.locator('#transfer-go').click();
  await see(bob, '#offer-transfer', 'Transfer from Alice (conference)');
  await bob.page.keyboard.press('a');
  await see(alice, '#transfer-status', 'briefing');
  await until(bob, 'Bob joins the main room', (main) => globalThis.__lk && globalThis.__lk.room === main, mainRoom);
  await until(caller, 'the caller stays in the main room', (main) => globalThis.__lk && globalThis.__lk.room === main, mainRoom);
  await screenshots('conference', caller, alice, bob);
  await alice.page.keyboard.press('c');
  await see(alice, '#outcome', 'Transfer completed: Bob has the call.');
  await see(bob, '#active', 'You own this call');
  await see(alice, '#active', 'No active call');
  await screenshots('conference-completed', caller, alice, bob);
  log('conference transfer completed');

  // --- The caller hangs up ------------------------------------------------------------------
  await caller.page.locator('#hangup').click();
  await see(caller, '#caller-status', 'Call ended. You hung up.');
  await see(bob, '#outcome', 'ended (caller_hangup)');
  await see(bob, '#active', 'No active call');
  await see(wall, '#calls', 'No live calls');
  await screenshots('ended', caller, bob, wall);

  for (const p of [...everyone, wall]) {
    // Refused requests are logged by Chromium as console errors and shown by the page;
    // uncaught exceptions are not allowed.
    const bad = p.errors.filter((e) => !e.startsWith('console: Failed to load resource'));
    if (bad.length) throw new Error(`${p.name} had page errors: ${bad.join(' | ')}`);
  }
  log('all steps passed');
} finally {
  await browser.close();
}
