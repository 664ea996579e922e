//! Integration tests: one binary, a module per area, each starting the real
//! server on 127.0.0.1:0 over a real sled store in a temporary directory.

mod append;
mod architecture;
mod attacks;
mod batch;
mod blocking;
mod browser;
mod consent;
mod disclosure;
mod enterprises;
mod hj212;
mod import;
mod ingest;
mod inquiries;
mod ledger;
mod limits;
mod metrics;
mod mirror;
mod permissions;
mod postgres;
mod registry;
mod revocation;
mod robustness;
mod score_proof;
mod scores;
mod support;
mod tls;
mod vectors;
mod view;
mod web;
mod web_limits;
mod witness;
