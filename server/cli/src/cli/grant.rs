//! `ecocode grant`: lender access an enterprise grants (Consent.*) over gRPC.

use super::*;

/// `ecocode grant add|revoke|list` (client).
pub(super) async fn grant(command: GrantCommand) -> anyhow::Result<()> {
    match command {
        GrantCommand::Add { conn, uscc, lender, purpose, covers, starts_at, expires_at } => {
            let starts_at = starts_at.as_deref().map(|t| parse_time("--starts-at", t)).transpose()?;
            let expires_at = parse_time("--expires-at", &expires_at)?;
            let grant = pb::AccessGrant {
                uscc,
                lender,
                purpose,
                covers,
                starts_at: starts_at.map(to_proto::timestamp),
                expires_at: Some(to_proto::timestamp(expires_at)),
            };
            let mut client = pb::consent_client::ConsentClient::new(channel(&conn).await?);
            let request = authed(&conn, pb::GrantAccessRequest { grant: Some(grant) })?;
            let g = client.grant_access(request).await.map_err(status_error)?.into_inner();
            print_grants_header();
            print_grant(&g);
            Ok(())
        }
        GrantCommand::Revoke { conn, uscc, seq } => {
            let mut client = pb::consent_client::ConsentClient::new(channel(&conn).await?);
            let request = authed(&conn, pb::RevokeAccessRequest { uscc, grant_seq: seq })?;
            let g = client.revoke_access(request).await.map_err(status_error)?.into_inner();
            print_grants_header();
            print_grant(&g);
            Ok(())
        }
        GrantCommand::List { conn, uscc } => {
            let mut client = pb::consent_client::ConsentClient::new(channel(&conn).await?);
            let request = authed(&conn, pb::ListGrantsRequest { uscc })?;
            let list = client.list_grants(request).await.map_err(status_error)?.into_inner();
            print_grants_header();
            for g in &list.grants {
                print_grant(g);
            }
            Ok(())
        }
    }
}

fn print_grants_header() {
    println!(
        "{:<6} {:<8} {:<18} {:<16} {:<16} {:<15} {:<25} expires_at",
        "seq", "status", "uscc", "lender", "purpose", "covers", "starts_at"
    );
}

fn print_grant(g: &pb::Grant) {
    let time = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| Timestamp::from_unix(t.seconds, t.nanos))
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    let Some(a) = &g.grant else { return };
    // Every field is the server's text: shown, never run.
    println!(
        "{:<6} {:<8} {:<18} {:<16} {:<16} {:<15} {:<25} {}",
        g.seq,
        terminal_text(&g.status),
        terminal_text(&a.uscc),
        terminal_text(&a.lender),
        terminal_text(&a.purpose),
        terminal_text(&a.covers.join(",")),
        time(&a.starts_at),
        time(&a.expires_at),
    );
}
