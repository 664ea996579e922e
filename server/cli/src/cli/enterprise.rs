//! `ecocode enterprise`: an enterprise's details and status over gRPC.

use super::*;

/// `ecocode enterprise update|history` (client).
pub(super) async fn enterprise(command: EnterpriseCommand) -> anyhow::Result<()> {
    match command {
        EnterpriseCommand::Update {
            conn,
            uscc,
            name,
            region,
            industry,
            close,
            merged_into,
            reopen,
            reason,
        } => {
            let status = match (close, &merged_into, reopen) {
                (true, _, _) => pb::EnterpriseStatus::Closed,
                (_, Some(_), _) => pb::EnterpriseStatus::Merged,
                (_, _, true) => pb::EnterpriseStatus::Active,
                _ => pb::EnterpriseStatus::Unspecified,
            };
            let update = pb::EnterpriseUpdate {
                uscc,
                name: name.unwrap_or_default(),
                region_code: region.unwrap_or_default(),
                industry_code: industry.unwrap_or_default(),
                status: status as i32,
                merged_into: merged_into.unwrap_or_default(),
                reason,
            };
            let mut client = pb::registry_client::RegistryClient::new(channel(&conn).await?);
            let receipt =
                client.update_enterprise(authed(&conn, update)?).await.map_err(status_error)?.into_inner();
            println!(
                "enterprise updated at seq {}{}",
                receipt.seq,
                if receipt.duplicate { " (no change)" } else { "" }
            );
            Ok(())
        }
        EnterpriseCommand::History { conn, uscc } => {
            let mut client = pb::registry_client::RegistryClient::new(channel(&conn).await?);
            let request = authed(&conn, pb::GetEnterpriseRequest { uscc })?;
            let history = client.get_enterprise_history(request).await.map_err(status_error)?.into_inner();
            for v in history.versions {
                let Some(s) = v.state else { continue };
                let status = s.status().as_str_name();
                let into =
                    if s.merged_into.is_empty() { String::new() } else { format!(" into {}", s.merged_into) };
                println!(
                    "seq {} {status}{into} name={:?} region={} industry={} reason={:?}",
                    v.seq, s.name, s.region_code, s.industry_code, s.reason
                );
            }
            Ok(())
        }
    }
}
