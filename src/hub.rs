//! Event fan-out to WebSocket sessions, by agent and by call, with bounded outboxes.
