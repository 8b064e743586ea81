//! talkbell-testkit: what the tests (tests/, crates/*/tests) and the benchmarks share, so
//! that each helper is written once. Test code only: it panics where a test would fail.

pub mod tls;
