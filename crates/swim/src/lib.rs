//! swim (skeleton).
