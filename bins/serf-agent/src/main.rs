//! temporary
#![allow(dead_code)]
mod config;
mod duration;
mod handlers;
mod logging;
mod metrics;
fn main() {}
