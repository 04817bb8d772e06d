// Phone legs in Chromium against the Twilio fake. Agent A (Alice) and the wallboard at
// 1280×720, a web caller on a phone-sized screen; phone callers and phone specialists are the
// fake's scripted phones (tests/it/browser.rs: Phil answers and presses 1, Bess is busy).
//
// 1. A phone caller (the fake's POST /test/inbound) is offered on Alice's console with the
//    number → accept → Alice's page joins the main conference as a Voice SDK client leg (the
//    double calls the fake with the real Access Token) → hold / resume (fake: participant
//    hold) and mute / unmute the caller (fake: muted) from the console.
// 2. Warm transfer of that caller to Phil, picked in the transfer dialog: Alice's page moves to
//    the consult conference, Phil hears the briefing and presses 1 → briefing → complete →
//    Phil and the caller together in the main conference, Alice's page leaves, her console
//    shows the hand-over and the wallboard shows Phil owning the call.
// 3. A web caller (the caller page) transferred to Bess, whose phone is busy: Alice's console
//    shows the declined transfer and the caller page is back with her; Alice mutes the caller
//    (the caller page mutes itself).
// 4. That web caller warm-transferred to Phil: on complete the caller page leaves LiveKit and
//    joins the main conference through the Voice SDK, with Phil; the caller hangs up.
// Every step asserts what each page shows and where every leg is in the fake's state.
import {
  BASE, conferenceOf, env, gone, launch, log, participantOf, person, screenshots, see, signIn,
  twilio, twilioState, twilioUntil, until,
} from './lib.mjs';

const CALLER = '+15557654321';
const PHIL = '+15550100';
const BESS = '+15550199';

const browser = await launch();
try {
  const alice = await person(browser, 'alice');
  const wall = await person(browser, 'wallboard');
  const web = await person(browser, 'caller', { width: 390, height: 844 });

  await wall.page.goto(`${BASE()}/wallboard.html`);
  await see(wall, '#wall-status', 'live');
  await signIn(alice, 'alice');
  await see(alice, '#directory [data-agent-id=phil]', `phone ${PHIL}`);
  await see(wall, '#agents [data-agent-id=phil]', 'phone');

  // --- 1. A phone caller: offered, accepted, held, resumed, muted, unmuted ------------------
  const { callSid: callerSid } = await twilio('POST', '/test/inbound', { from: CALLER, to: env('TWILIO_NUMBER') });
  const callId = `call-${callerSid.toLowerCase()}`;
  const main = `${callId}--main`;
  await see(alice, '#offer-call', 'Incoming phone call');
  await see(alice, '#offer-call', `phone ${CALLER}`);
  await see(wall, '#calls tr', CALLER);
  await see(wall, '#calls tr', 'phone');
  // The caller waits in the call's conference with music until an agent takes the call.
  const callerLabel = await twilioUntil('the caller waits in the main conference', (st) => {
    const c = conferenceOf(st, main);
    const p = c && c.participants.find((x) => x.callSid === callerSid);
    return p && p.label;
  });
  await twilioUntil('the caller hears wait music', (st) =>
    st.calls.find((c) => c.sid === callerSid && c.heard.some((x) => x.kind === 'waitMusic')));
  await screenshots('phone-offered', alice, wall);
  log('phone call offered to alice:', callId);

  await alice.page.keyboard.press('a');
  await see(alice, '#call-status', 'active');
  await see(alice, '#active-caller', CALLER);
  await see(alice, '#caller-channel', `phone caller ${CALLER}`);
  await until(alice, 'Alice joins the main conference', (m) => globalThis.__tw && globalThis.__tw.conference === m, main);
  await see(alice, '#active', 'you are in the main conference');
  const aliceLeg = await alice.page.evaluate(() => globalThis.__tw.callSid);
  await twilioUntil('Alice and the caller talk in the main conference', (st) => {
    const a = participantOf(st, main, 'alice');
    const c = participantOf(st, main, callerLabel);
    return a && c && a.callSid === aliceLeg && !a.hold && !c.hold && conferenceOf(st, main).status === 'in-progress';
  });
  {
    // The leg came through our TwiML App with the Access Token's identity and the page's params.
    const leg = (await twilioState()).calls.find((c) => c.sid === aliceLeg);
    if (leg.from !== 'client:alice' || leg.params.callId !== callId || leg.params.conference !== main || !leg.params.ApplicationSid) {
      throw new Error(`Alice's client leg: ${JSON.stringify(leg)}`);
    }
  }
  await see(wall, '#calls tr', 'alice');
  await see(alice, '#timeline', 'participant.joined');
  await screenshots('phone-accepted', alice, wall);
  log('alice in the main conference as a client leg', aliceLeg);

  // Hold: the caller is held in the conference (hold music), never removed.
  await alice.page.keyboard.press('h');
  await see(alice, '#call-status', 'on hold');
  await see(alice, '#caller-hold', 'The caller is on hold in the phone conference, hearing hold music.');
  await twilioUntil('the caller held', (st) => {
    const p = participantOf(st, main, callerLabel);
    return p && p.hold;
  });
  await twilioUntil('the caller hears hold music', (st) =>
    st.calls.find((c) => c.sid === callerSid && c.heard.some((x) => x.kind === 'holdMusic')));
  await see(wall, '#calls tr', 'on hold');
  await screenshots('phone-held', alice, wall);
  await alice.page.keyboard.press('h');
  await see(alice, '#call-status', 'active');
  await gone(alice, '#caller-hold');
  await twilioUntil('the caller resumed', (st) => {
    const p = participantOf(st, main, callerLabel);
    return p && !p.hold;
  });
  log('hold and resume');

  // Mute the caller's phone leg (the conference participant), then unmute.
  await alice.page.keyboard.press('u');
  await see(alice, '#caller-muted', 'The caller is muted.');
  await see(alice, '#mute-caller', 'Unmute caller');
  await twilioUntil('the caller muted', (st) => {
    const p = participantOf(st, main, callerLabel);
    return p && p.muted;
  });
  await screenshots('phone-caller-muted', alice);
  await alice.page.keyboard.press('u');
  await gone(alice, '#caller-muted');
  await see(alice, '#mute-caller', 'Mute caller');
  await twilioUntil('the caller unmuted', (st) => {
    const p = participantOf(st, main, callerLabel);
    return p && !p.muted;
  });
  log('mute and unmute the caller');

  // --- 2. Warm transfer of the phone caller to Phil (a phone specialist; presses 1) ------------
  await alice.page.keyboard.press('t');
  await see(alice, '#targets', 'Phil');
  await see(alice, '#targets', `phone ${PHIL}`);
  await see(alice, '#targets', 'presses 1 to take the call');
  await alice.page.locator('#targets input[value=phil]').check();
  await alice.page.locator('#transfer-dialog input[name=mode][value=warm]').check();
  await alice.page.locator('#transfer-note').fill('Refund approved for March');
  await screenshots('phone-transfer-dialog', alice);
  await alice.page.locator('#transfer-go').click();
  await gone(alice, '#transfer-dialog');
  await see(alice, '#transfer-status', 'Transfer to Phil (warm)');
  await until(alice, 'Alice moves to the consult conference', () => globalThis.__tw && /--consult-/.test(globalThis.__tw.conference));
  const consult = await alice.page.evaluate(() => globalThis.__tw.conference);
  await twilioUntil('the caller held in the main conference', (st) => {
    const p = participantOf(st, main, callerLabel);
    return p && p.hold;
  });
  await see(alice, '#caller-hold', 'while we connect them to Phil');
  await twilioUntil('Phil and Alice in the consult conference', (st) => {
    const p = participantOf(st, consult, 'phil');
    const a = participantOf(st, consult, 'alice');
    return p && a && p.status === 'connected' && a.status === 'connected';
  });
  await see(alice, '#transfer-status', 'briefing');
  await see(alice, '#transfer-status', 'Phil pressed 1 and is in the conference with you');
  await see(alice, '#active', 'you are in the consult conference');
  const philCall = (await twilioState()).calls.find((c) => c.to === PHIL);
  const briefing = philCall.heard.filter((x) => x.kind === 'say').map((x) => x.what).join(' | ');
  if (!briefing.includes('Refund approved for March') || !briefing.includes('Press 1')) {
    throw new Error(`Phil's briefing: ${briefing}`);
  }
  await see(wall, '#transfers tr', 'phil');
  await screenshots('phone-briefing', alice, wall);
  log('briefing with Phil in', consult);

  await alice.page.keyboard.press('c');
  await see(alice, '#outcome', 'Transfer completed: Phil has the call.');
  await see(alice, '#active', 'No active call');
  await until(alice, "Alice's page left the conference", () => !globalThis.__tw);
  await twilioUntil('Phil and the caller together in the main conference, without Alice', (st) => {
    const p = participantOf(st, main, 'phil');
    const c = participantOf(st, main, callerLabel);
    return p && c && !c.hold && !p.hold && !participantOf(st, main, 'alice');
  });
  await twilioUntil('the consult conference ended', (st) =>
    st.conferences.find((c) => c.friendlyName === consult && c.status === 'completed'));
  await see(wall, '#transfers', 'No open transfers');
  await see(wall, `#calls tr[data-call-id="${callId}"]`, 'phil');
  await screenshots('phone-handed-over', alice, wall);
  log('handed over to Phil');

  // The caller hangs up: the call ends everywhere, Phil's leg with it.
  await twilio('POST', '/test/hangup', { callSid: callerSid });
  await see(wall, '#calls', 'No live calls');
  await twilioUntil("Phil's leg hung up", (st) => st.calls.find((c) => c.sid === philCall.sid && c.status === 'completed'));
  log('phone caller hung up');

  // --- 3. A web caller transferred to Bess, whose phone is busy --------------------------------
  await web.page.goto(`${BASE()}/caller.html`);
  await web.page.locator('#caller-name').fill('Wendy Web');
  await web.page.locator('#caller-reason').fill('address change');
  await web.page.keyboard.press('Enter');
  await see(alice, '#offer-call', 'Incoming call');
  await see(alice, '#offer-call', 'Wendy Web');
  await alice.page.keyboard.press('a');
  await see(alice, '#call-status', 'active');
  await see(web, '#caller-status', 'talking to an agent');
  await until(web, 'the caller joins the main room on LiveKit', () => globalThis.__lk && globalThis.__lk.room);
  const webMain = await web.page.evaluate(() => globalThis.__lk.room);
  await until(alice, 'Alice joins the main room on LiveKit', (m) => globalThis.__lk && globalThis.__lk.room === m, webMain);

  await alice.page.keyboard.press('t');
  await see(alice, '#targets', 'Bess');
  await alice.page.locator('#targets input[value=bess]').check();
  await alice.page.locator('#transfer-go').click();
  await gone(alice, '#transfer-dialog');
  await see(alice, '#outcome', 'Bess declined the transfer (their phone was busy); the caller is back with you.');
  await see(alice, '#call-status', 'active');
  await see(web, '#caller-status', 'back with your agent');
  await gone(web, '#hold-note');
  await until(web, 'the caller is back in the main room', (m) => globalThis.__lk && globalThis.__lk.room === m, webMain);
  await until(alice, 'Alice is back in the main room', (m) => globalThis.__lk && globalThis.__lk.room === m && !globalThis.__tw, webMain);
  await twilioUntil("Bess's phone was busy", (st) => st.calls.find((c) => c.to === BESS && c.status === 'busy'));
  await see(alice, '#timeline', 'transfer.declined');
  await screenshots('phone-target-busy', web, alice);
  log('busy specialist: the caller is back with alice');

  // The web caller is muted by Alice: the caller page mutes itself and says so.
  await alice.page.keyboard.press('u');
  await see(alice, '#caller-muted', 'The caller is muted.');
  await see(web, '#muted-note', 'Your agent muted your microphone.');
  await until(web, "the caller's microphone is off", () => globalThis.__mic === false);
  await alice.page.keyboard.press('u');
  await gone(web, '#muted-note');
  await until(web, "the caller's microphone is on", () => globalThis.__mic === true);
  log('web caller muted and unmuted by the agent');

  // --- 4. The web caller warm-transferred to Phil: the caller page joins the conference ------
  await alice.page.keyboard.press('t');
  await alice.page.locator('#targets input[value=phil]').check();
  await alice.page.locator('#transfer-go').click();
  await gone(alice, '#transfer-dialog');
  await see(web, '#hold-note', 'Please hold, we are connecting you to a specialist');
  await until(web, 'hold music plays', () => document.body.dataset.music === 'on');
  await see(alice, '#caller-hold', 'hold room');
  await twilioUntil('Phil pressed 1 and is in the consult conference with Alice', (st) => {
    const c = st.conferences.find((x) => /--consult-/.test(x.friendlyName) && x.status !== 'completed');
    return c && ['phil', 'alice'].every((l) => c.participants.some((x) => x.label === l && x.status === 'connected'));
  });
  await see(alice, '#transfer-status', 'briefing');
  await alice.page.keyboard.press('c');
  await see(alice, '#outcome', 'Transfer completed: Phil has the call.');
  await see(web, '#caller-status', 'talking to the specialist');
  await gone(web, '#hold-note');
  // The main space is a Twilio conference now (a phone party is in it): the caller page left
  // LiveKit and joined it through the Voice SDK, with Phil.
  await until(web, 'the caller page joins the main conference', (m) => globalThis.__tw && globalThis.__tw.conference === m && !globalThis.__lk, webMain);
  const webLeg = await web.page.evaluate(() => globalThis.__tw.callSid);
  await twilioUntil('the web caller and Phil together in the main conference', (st) => {
    const c = conferenceOf(st, webMain);
    return c && c.participants.some((x) => x.callSid === webLeg && !x.hold) &&
      c.participants.some((x) => x.label === 'phil' && !x.hold) && !c.participants.some((x) => x.label === 'alice');
  });
  await until(alice, "Alice's page left every room", () => !globalThis.__tw && !globalThis.__lk);
  await see(wall, '#calls tr', 'phil');
  await screenshots('web-caller-with-phone-specialist', web, alice, wall);
  log('web caller handed to Phil in the main conference');

  await web.page.locator('#hangup').click();
  await see(web, '#caller-status', 'Call ended. You hung up.');
  await see(wall, '#calls', 'No live calls');
  await until(web, "the caller page's leg hung up", () => !globalThis.__tw);
  await twilioUntil("the caller's client leg and Phil's leg ended", (st) =>
    st.calls.filter((c) => c.to === PHIL).every((c) => ['completed', 'busy', 'canceled'].includes(c.status)) &&
    st.calls.find((c) => c.sid === webLeg && c.status === 'completed'));

  const { errors } = await twilioState();
  if (errors.length) throw new Error(`the Twilio fake saw application errors: ${JSON.stringify(errors)}`);
  for (const p of [alice, wall, web]) {
    const bad = p.errors.filter((e) => !e.startsWith('console: Failed to load resource'));
    if (bad.length) throw new Error(`${p.name} had page errors: ${bad.join(' | ')}`);
  }
  log('all steps passed');
} finally {
  await browser.close();
}
