#!/usr/bin/env python3
"""Writes the phone-leg seeds of the call_machine fuzz target (fuzz/corpus/call_machine/
seed-phone-*), in the target's one-byte-per-choice format (see its module docs). Run from the
repository root: python3 fuzz/seeds_call_machine.py"""
import os

CALLER, A, B, C, SYSTEM = 0, 1, 2, 3, 4  # actors (and parties: caller 0, a 1, b 2, c 3)
DT = 4  # one second between steps


def step(actor, op, *args, dt=DT):
    return [dt, actor, op, *args]


def offer(agent_ix):
    return step(SYSTEM, 0, agent_ix)


def accept_call(actor):
    return step(actor, 1)


def joined(party, room=0):
    return step(CALLER, 13, party, room, 0)


def left(party, room=0):
    return step(CALLER, 13, party, room, 1)


def initiate(actor, agent_ix, mode=0, n=0, phone=1):
    return step(actor, 6, agent_ix, mode, n, phone)


def conf_started(which, n=0):
    # which: 0 the main conference, 1 the transfer's consult one, 2 consult-(n+1)
    return step(CALLER, 19, which, *([n] if which == 2 else []))


def dial_result(i, refuse=0):
    return step(CALLER, 20, i, refuse)


def answered(i):
    return step(CALLER, 22, i)


STATUSES = ["completed", "busy", "no-answer", "failed", "canceled", "hung_up", "no_input",
            "declined", "in-progress"]


def leg_ended(i, status, by_label=0):
    # by_label: 0 = the SID is told (1 or 2 tell only the party when it is the current leg)
    return step(CALLER, 23, i, STATUSES.index(status), 0 if by_label else 1)


def timer(key, party=None, dt=DT):
    return step(CALLER, 17, key, *([] if party is None else [party]), dt=dt)


def answered_call(phone):
    s = [1 if phone else 0]
    s += offer(0) + accept_call(A) + joined(0) + joined(1) + conf_started(0)
    return s


seeds = {}
# A phone caller handed from A to phone specialist B (warm): dial, answer, accept, complete;
# B holds, resumes and mutes the caller, then hangs up (B owns the call: it ends).
s = answered_call(True)
s += initiate(A, 1) + joined(0) + joined(1) + dial_result(0) + answered(0)
s += step(B, 7) + joined(2) + conf_started(1) + step(A, 9) + joined(0) + joined(2)
s += step(B, 3) + joined(0) + step(B, 4) + joined(0) + step(B, 11, 0, 1)
s += leg_ended(0, "completed", by_label=1)
seeds["seed-phone-warm"] = s
# A web caller; phone specialist busy, then refused by Twilio, then ringing out (timer), then
# a cold transfer to a phone that answers and is completed; the caller hangs up.
s = answered_call(False)
s += initiate(A, 1, n=0) + joined(0) + joined(1) + dial_result(0) + leg_ended(0, "busy")
s += joined(0) + joined(1)
s += initiate(A, 2, n=1) + dial_result(1, refuse=1) + joined(0) + joined(1)
s += initiate(A, 1, n=2) + dial_result(2) + timer(1, dt=140) + joined(0) + joined(1)
s += initiate(A, 2, mode=1, n=0) + joined(0) + dial_result(3) + answered(3) + step(C, 7)
s += joined(3) + joined(0) + step(CALLER, 5)
seeds["seed-phone-failures"] = s
# Phone caller, conference transfer to a phone specialist who declines at the prompt; then
# to a web agent, A cancels; then the caller hangs up while a phone dial is still out.
s = answered_call(True)
s += initiate(A, 1, mode=2) + dial_result(0) + answered(0) + leg_ended(0, "declined", 1)
s += joined(0) + initiate(A, 2, n=1, phone=0) + joined(0) + joined(1) + step(A, 10)
s += joined(0) + joined(1) + initiate(A, 2, n=2) + joined(0)
s += leg_ended(1, "completed")
seeds["seed-phone-decline-hangup"] = s
# Duplicated and late Twilio reports: Dialed twice, a leg's end told twice with different
# statuses, a conference started for a finished consult, the owner's phone gone.
s = answered_call(True)
s += initiate(A, 1) + dial_result(0) + dial_result(0) + answered(0) + step(B, 7) + joined(2)
s += step(A, 10) + conf_started(1) + leg_ended(0, "completed") + leg_ended(0, "no_input")
s += joined(0) + joined(1) + step(A, 11, 0, 1) + step(A, 11, 0, 0) + step(CALLER, 16, 0)
seeds["seed-phone-duplicates"] = s

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "call_machine")
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes(data))
    print(name, len(data), "bytes")
