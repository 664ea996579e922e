//! The data directory is the service user's alone: every directory 0700,
//! every file 0600 (ledger, checkpoint, key, principals, HJ 212 state).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use server::principals::Role;

use crate::support::*;

fn assert_private(path: &Path) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_dir() {
        assert_eq!(mode, 0o700, "{} is {mode:o}", path.display());
        for entry in std::fs::read_dir(path).unwrap() {
            assert_private(&entry.unwrap().path());
        }
    } else if meta.is_file() {
        assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
    }
}

#[tokio::test]
async fn other_users_cannot_read_the_ledger_principals_or_gateway_state() {
    let server = TestServer::start_with_gateway().await;
    let mut admin = server.client(&server.token("ops", Role::Admin)).await;
    admin.register(ACME, "Ningbo Acme Dyeing Co.", "330206").await;
    admin.append(record(ACME, "P-1", "inspection.finding", -1)).await.unwrap();
    // A principal added while the server runs, as `ecocode principal add` does.
    server.token("bank-a", Role::Lender);
    let on_sled = server.store.is_none();
    let dir = server.stop().await;
    // On PostgreSQL the principals and the gateway's state are rows in the
    // database, not files.
    assert_eq!(dir.path().join("principals").join("bank-a.toml").exists(), on_sled);
    assert_eq!(dir.path().join("hj212").exists(), on_sled);
    assert_private(dir.path());
}
