//! talkbell-relay: the reference talk server (being written).
