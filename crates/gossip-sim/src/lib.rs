//! gossip-sim (skeleton).
