//! Tests of the scoring model through the crate's public API, one binary
//! with a module per concern.

mod checks;
mod golden;
mod history;
mod model_file;
mod props;
mod publicity;
mod support;
mod table;
