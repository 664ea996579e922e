//! Offline tools over a data directory or the shared store: `verify`,
//! `migrate`, where principals are written.

use super::*;

/// Where `principal add|revoke` wrote, for its message.
pub(super) fn principals_place(data: &Path, store: Option<&str>) -> String {
    match store {
        Some(_) => "the shared store".to_string(),
        None => data.display().to_string(),
    }
}

/// `--store`: a PostgreSQL URL, or nothing (sled). Anything else is a
/// mistake worth naming.
pub(super) fn postgres_url(store: Option<String>) -> anyhow::Result<Option<String>> {
    match store {
        None => Ok(None),
        Some(url) if url.is_empty() => Ok(None),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(Some(url)),
        Some(_) => bail!(
            "--store (or ECOCODE_STORE) must be a postgres://USER@HOST/DB URL; leave it out for sled in --data"
        ),
    }
}

pub(super) fn verify_postgres(url: &str, key_file: Option<&Path>) -> anyhow::Result<()> {
    let bar = progress_bar("verifying", "entries");
    let report = ledger::verify_postgres(url, key_file, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match report {
        Ok(r) => {
            let signature = if r.checkpoint_signature_checked {
                "signature checked"
            } else {
                "signature NOT checked: pass --key-file"
            };
            println!(
                "ok, {} entries ({} index entries checked), root {}, last checkpoint {} ({signature})",
                r.entries,
                r.index_entries,
                base64::engine::general_purpose::STANDARD.encode(r.root),
                r.checkpoint_size.map_or("none".to_string(), |s| format!("at {s}")),
            );
            Ok(())
        }
        Err(e) => bail!("verification FAILED: {e}"),
    }
}

pub(super) fn migrate(from: &Path, to: &str) -> anyhow::Result<()> {
    let Some(url) = postgres_url(Some(to.to_string()))? else {
        bail!("--to must be a postgres://USER@HOST/DB URL");
    };
    if !ledger::holds_ledger(from) {
        bail!("{} holds no ledger; pass the stopped server's --data directory", from.display());
    }
    let bar = progress_bar("migrating", "entries");
    let report = ledger::migrate_to_postgres(from, &url, &mut |phase, done, total| {
        bar.set_message(phase.to_string());
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let r = report.map_err(|e| anyhow::anyhow!("migration FAILED, the source is unchanged: {e}"))?;
    println!(
        "ok, {} entries copied; root {} and chain {} are identical in both stores",
        r.entries,
        base64::engine::general_purpose::STANDARD.encode(r.root),
        base64::engine::general_purpose::STANDARD.encode(r.chain),
    );
    println!("start every node with --store {} --key-file {}", to, from.join("ledger.key").display());
    Ok(())
}

pub(super) fn verify(data: &Path) -> anyhow::Result<()> {
    if !ledger::holds_ledger(data) {
        bail!("{} holds no ledger; pass the server's --data directory", data.display());
    }
    let bar = progress_bar("verifying", "entries");
    let report = ledger::verify(data, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match report {
        Ok(r) => {
            println!(
                "ok, {} entries ({} index entries checked), root {}",
                r.entries,
                r.index_entries,
                base64::engine::general_purpose::STANDARD.encode(r.root)
            );
            verify_mirrored(data, &r)
        }
        Err(e) => bail!("verification FAILED: {e}"),
    }
}

/// For a copy made by `ecocode mirror`: the log's checkpoint kept beside
/// it must carry the log's pinned signature and name the copy's tree.
fn verify_mirrored(data: &Path, report: &ledger::VerifyReport) -> anyhow::Result<()> {
    let dir = data.join(crate::mirror::MIRROR_DIR);
    let (Ok(key), Ok(note)) =
        (std::fs::read_to_string(dir.join("log.pub")), std::fs::read_to_string(dir.join("checkpoint")))
    else {
        return Ok(());
    };
    let (name, public) = tlog::note::decode_verifier_key(key.trim())
        .with_context(|| format!("the pinned key in {}", dir.display()))?;
    let body = tlog::note::verify(&note, &name, &public).map_err(|e| {
        anyhow::anyhow!("verification FAILED: the log's checkpoint in {}: {e}", dir.display())
    })?;
    let (origin, size, root, _) = tlog::note::parse_checkpoint(&body)?;
    let b64 = |h: &[u8]| base64::engine::general_purpose::STANDARD.encode(h);
    if size == report.entries && root != report.root {
        bail!(
            "verification FAILED: the log's checkpoint of size {size} has root {}, the copy {}",
            b64(&root),
            b64(&report.root)
        );
    }
    if size > report.entries {
        bail!(
            "verification FAILED: the log's checkpoint kept is of size {size}, the copy holds {} entries",
            report.entries
        );
    }
    if size == report.entries {
        println!(
            "mirror of {}: the log's signed checkpoint of size {size} names this tree",
            terminal_text(&origin)
        );
    } else {
        println!(
            "mirror of {}: the log's signed checkpoint kept is of size {size}; the {} entries after it were checked \
             against a newer one by the round that was interrupted, the next `ecocode mirror` run checks again",
            terminal_text(&origin),
            report.entries - size
        );
    }
    Ok(())
}

/// `ecocode principal add|revoke`, on the data directory or the shared store.
pub(super) fn principal(command: PrincipalCommand) -> anyhow::Result<()> {
    match command {
        PrincipalCommand::Add { data, name, role, scope, store } => {
            let role = Role::parse(&role, scope.as_deref())?;
            let url = postgres_url(store)?;
            let principals = PrincipalStore::open_in(&data, url.as_deref())?;
            let token = principals.add(&name, role.clone())?;
            let place = principals_place(&data, url.as_deref());
            println!("created principal {name} ({}) in {place}", role.name());
            println!("the token is shown once; keep it secret:");
            println!("{token}");
            Ok(())
        }
        PrincipalCommand::Revoke { data, name, store } => {
            let url = postgres_url(store)?;
            PrincipalStore::open_in(&data, url.as_deref())?.revoke(&name)?;
            let place = principals_place(&data, url.as_deref());
            println!("revoked principal {name} in {place}; its token no longer works");
            Ok(())
        }
    }
}

/// `ecocode key show`.
pub(super) fn key(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Show { data } => {
            let path = if data.is_dir() { data.join("ledger.key") } else { data.clone() };
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("cannot read {}; a server creates it on first start", path.display())
            })?;
            let (name, seed) = tlog::note::decode_signer_key(text.trim())
                .with_context(|| format!("{} is not an ecocode key file", path.display()))?;
            let public_key = tlog::note::public_key(&seed);
            println!("{}", tlog::note::encode_verifier_key(&name, &public_key));
            Ok(())
        }
    }
}
