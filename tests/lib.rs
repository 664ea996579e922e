//! Integration-test crate: see `it/` for the tests.
