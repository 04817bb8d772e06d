//! A faithful fake of the LiveKit server: Twirp with grant checks, rooms, participants, signed webhooks.
