//! WebSocket sessions of agents and callers: authentication, replay, heartbeat, push.
