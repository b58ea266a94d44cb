//! gossip-core (skeleton).
