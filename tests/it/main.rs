//! Integration tests. One binary, modules per area, to keep link time down.
