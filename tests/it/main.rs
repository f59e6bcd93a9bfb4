//! pgqd's behaviour, tested against real PostgreSQL clusters with pgq and the real binary.

mod harness;

mod bench_smoke;
mod cli;
mod cluster;
mod conninfo;
mod docs;
mod engine;
mod faults;
mod ha;
mod lifecycle;
mod observability;
mod service;
mod status;
mod turns;
