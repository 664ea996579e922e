//! The command line: `serve`, offline tools (`principal`, `verify`, `key`,
//! `attest verify`, `proof verify`) and a small client for people without a
//! gRPC tool (`register`, `append`, `score`, `checkpoint`, `attest get`).
//!
//! `args` holds the command types, `serve` `ecocode serve` (its flags and
//! the composition root), `enterprise`, `attest` and `proof` those command
//! families, `store` the offline tools over a data directory (`principal`,
//! `key`, `verify`, `migrate`), `print` what people read; here [`run`]
//! dispatches every command but `serve` and answers the small client ones.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use ecocode_proto::v1 as pb;
use scoring::{Model, Timestamp};
use server::convert::to_proto;
use server::principals::{PrincipalStore, Role};
use server::web::WebConfig;
use server::{App, Config, GatewayConfig, TlsFiles, TransportConfig};

use crate::client::{Connection, authed, channel, progress_bar, status_error};

mod args;
mod attest;
mod enterprise;
mod export;
mod grant;
mod print;
mod proof;
mod serve;
mod store;

pub use args::*;
use attest::*;
use enterprise::*;
use export::*;
use grant::*;
pub use print::*;
use proof::*;
pub use serve::*;
use store::*;

/// The model file given with `--model`, or the one built into the binary.
fn load_model(path: Option<&Path>) -> anyhow::Result<Model> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the model file {}", path.display()))?;
            Model::from_toml(&text).with_context(|| format!("model file {}", path.display()))
        }
        None => Ok(Model::builtin()),
    }
}

fn parse_time(flag: &str, text: &str) -> anyhow::Result<Timestamp> {
    Timestamp::parse_rfc3339(text)
        .with_context(|| format!("{flag} {text:?} is not RFC 3339, e.g. 2026-03-15T08:00:00Z"))
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => unreachable!("serve is dispatched by main"),
        Command::Witness(crate::witness::WitnessCommand::Serve(_)) => {
            unreachable!("witness serve is dispatched by main")
        }
        Command::Witness(crate::witness::WitnessCommand::Key { data, name }) => {
            crate::witness::key(&data, &name)
        }
        Command::Verify { data, store, key_file } => match postgres_url(store)? {
            None => verify(&data),
            Some(url) => {
                let key = key_file.or_else(|| Some(data.join("ledger.key")).filter(|k| k.exists()));
                verify_postgres(&url, key.as_deref())
            }
        },
        Command::Migrate { from, to } => migrate(&from, &to),
        Command::Mirror { from, data, token, public_key, once, interval } => {
            let options = crate::mirror::Options { from, data, token, public_key, report: true };
            crate::mirror::run(options, once, Duration::from_secs(interval.max(1))).await
        }
        Command::Register { conn, uscc, name, region, industry } => {
            let mut client = pb::registry_client::RegistryClient::new(channel(&conn).await?);
            let request =
                authed(&conn, pb::Enterprise { uscc, name, region_code: region, industry_code: industry })?;
            let receipt = client.register_enterprise(request).await.map_err(status_error)?.into_inner();
            println!(
                "registered at seq {}{}",
                receipt.seq,
                if receipt.duplicate { " (already registered, same details)" } else { "" }
            );
            Ok(())
        }
        Command::Append { conn, file, chunk_records, skip_lines } => {
            let options = crate::append::Options { chunk_records, skip_lines, report: true };
            crate::append::append(&conn, &file, &options).await.map(drop)
        }
        Command::Gateway { conn, mn } => {
            let mut client = pb::registry_client::RegistryClient::new(channel(&conn).await?);
            let request = authed(&conn, pb::GetGatewayFiguresRequest { mn: mn.unwrap_or_default() })?;
            let figures = client.get_gateway_figures(request).await.map_err(status_error)?.into_inner();
            print!("{}", gateway_figures_text(&figures));
            Ok(())
        }
        Command::Point { conn, mn, uscc, outlet, limits, password } => {
            let limits = limits.iter().map(|l| parse_limit(l)).collect::<anyhow::Result<Vec<_>>>()?;
            let mut client = pb::registry_client::RegistryClient::new(channel(&conn).await?);
            let request = authed(
                &conn,
                pb::MonitoringPoint { mn, uscc, outlet, limits, password, ..Default::default() },
            )?;
            let receipt = client.register_monitoring_point(request).await.map_err(status_error)?.into_inner();
            println!(
                "monitoring point registered at seq {}{}",
                receipt.seq,
                if receipt.duplicate { " (unchanged)" } else { "" }
            );
            Ok(())
        }
        Command::Score { conn, uscc, as_of, tree_size, json, purpose } => {
            let as_of =
                as_of.as_deref().map(|s| parse_time("--as-of", s).map(to_proto::timestamp)).transpose()?;
            let mut client = pb::scores_client::ScoresClient::new(channel(&conn).await?);
            let mut request = authed(&conn, pb::GetScoreRequest { uscc, as_of, tree_size })?;
            if !purpose.is_empty() {
                let value =
                    purpose.parse().context("--purpose must be printable ASCII, at most 200 bytes")?;
                request.metadata_mut().insert("x-ecocode-purpose", value);
            }
            let score = client.get_score(request).await.map_err(status_error)?.into_inner();
            if json {
                println!("{}", score_json(&score));
            } else {
                print_score(&score);
            }
            Ok(())
        }
        Command::Inquiries { conn, uscc, from, to, limit } => {
            let from =
                from.as_deref().map(|t| parse_time("--from", t).map(to_proto::timestamp)).transpose()?;
            let to = to.as_deref().map(|t| parse_time("--to", t).map(to_proto::timestamp)).transpose()?;
            let mut client = pb::scores_client::ScoresClient::new(channel(&conn).await?);
            let mut page_token = String::new();
            let mut shown = 0;
            println!(
                "{:<25} {:<18} {:<16} {:<10} {:<14} {:<6} purpose",
                "at", "uscc", "principal", "role", "method", "grant"
            );
            loop {
                let request =
                    pb::ListInquiriesRequest { uscc: uscc.clone(), from, to, page_size: 1_000, page_token };
                let page =
                    client.list_inquiries(authed(&conn, request)?).await.map_err(status_error)?.into_inner();
                for i in &page.inquiries {
                    if limit != 0 && shown == limit {
                        return Ok(());
                    }
                    let at = i.at.as_ref().and_then(|t| Timestamp::from_unix(t.seconds, t.nanos));
                    // Every field is the server's text: shown, never run.
                    // The access grant a lender read under (its seq), or "-".
                    let grant = if i.grant_seq == 0 { "-".to_owned() } else { i.grant_seq.to_string() };
                    println!(
                        "{:<25} {:<18} {:<16} {:<10} {:<14} {:<6} {}",
                        at.map(|t| t.to_string()).unwrap_or_default(),
                        terminal_text(&i.uscc),
                        terminal_text(&i.principal),
                        terminal_text(&i.role),
                        terminal_text(&i.method),
                        grant,
                        terminal_text(&i.purpose)
                    );
                    shown += 1;
                }
                if page.next_page_token.is_empty() {
                    return Ok(());
                }
                page_token = page.next_page_token;
            }
        }
        Command::Checkpoint { conn } => {
            let mut client = pb::ledger_client::LedgerClient::new(channel(&conn).await?);
            let checkpoint = client
                .get_checkpoint(authed(&conn, pb::GetCheckpointRequest {})?)
                .await
                .map_err(status_error)?
                .into_inner();
            print!("{}", checkpoint.signed_note);
            Ok(())
        }
        Command::Proof(command) => proof(command).await,
        Command::Import { conn, file } => crate::import::run(&conn, &file).await.map(|_| ()),
        Command::ScoreAll { conn, as_of, out, model } => {
            let model = load_model(model.as_deref())?;
            let as_of = as_of.as_deref().map(|t| parse_time("--as-of", t)).transpose()?;
            crate::batch::score_all(&conn, &model, as_of, &out).await.map(|_| ())
        }
        Command::Report { conn, from, to, region, out, changes_out, model } => {
            let model = load_model(model.as_deref())?;
            let from = from.as_deref().map(|t| parse_time("--from", t)).transpose()?;
            let to = to.as_deref().map(|t| parse_time("--to", t)).transpose()?;
            crate::batch::report(
                &conn,
                &model,
                from,
                to,
                region.as_deref(),
                out.as_deref(),
                changes_out.as_deref(),
            )
            .await
            .map(|_| ())
        }
        Command::Principal(command) => principal(command),
        Command::Key(command) => key(command),
        Command::Enterprise(command) => enterprise(command).await,
        Command::Grant(command) => grant(command).await,
        Command::Export { conn, uscc, out } => export(conn, uscc, out).await,
        Command::Attest(command) => attest(command).await,
    }
}

/// `w01018=50mg/L`, `a21026=35mg/m3@ZsAvg`.
fn parse_limit(text: &str) -> anyhow::Result<pb::PollutantLimit> {
    let bad = || anyhow::anyhow!("--limit {text:?} must look like w01018=50mg/L or a21026=35mg/m3@ZsAvg");
    let (pollutant, rest) = text.split_once('=').ok_or_else(bad)?;
    let (rest, statistic) = rest.split_once('@').unwrap_or((rest, "Avg"));
    let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let limit: f64 = rest[..split].parse().map_err(|_| bad())?;
    Ok(pb::PollutantLimit {
        pollutant: pollutant.to_owned(),
        limit,
        unit: rest[split..].to_owned(),
        statistic: statistic.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_flags_override_only_what_they_name() {
        let args = GatewayArgs {
            hj212_max_connections_per_peer: Some(4),
            hj212_idle_timeout_secs: Some(30),
            ..GatewayArgs::default()
        };
        let config = args.apply(GatewayConfig::default());
        assert_eq!((config.max_connections_per_peer, config.idle_timeout), (4, Duration::from_secs(30)));
        assert_eq!(config.max_connections, GatewayConfig::default().max_connections);
    }

    /// The second line of defence: whatever the server sends, a printed
    /// text neither runs escape sequences nor starts a line of its own.
    #[test]
    fn texts_from_the_server_are_printed_with_control_characters_escaped() {
        let shown = terminal_text("LA-7\u{1b}[2J\r\nforged\u{202e}\u{9b}x");
        assert_eq!(shown, "LA-7\\u{1b}[2J\\u{d}\\u{a}forged\\u{202e}\\u{9b}x");
        assert!(matches!(terminal_text("贷款 LA-7"), std::borrow::Cow::Borrowed("贷款 LA-7")));
    }

    #[test]
    fn gateway_figures_print_one_line_per_total_and_per_device() {
        let figures = pb::GatewayFigures {
            totals: [("acks_sent".to_owned(), 2), ("wrong_password".to_owned(), 1)].into(),
            devices: vec![pb::DeviceFigures {
                device: "LD130133000015".into(),
                packets: 3,
                acknowledged: 2,
                rejected: [("wrong_password".to_owned(), 1)].into(),
                deviations: [("no_crlf".to_owned(), 3), ("no_qn".to_owned(), 1)].into(),
                last_seen: Some(prost_types::Timestamp { seconds: 1_780_272_000, nanos: 0 }),
                legacy_verifier: 2,
            }],
        };
        assert_eq!(
            gateway_figures_text(&figures),
            "total acks_sent 2\ntotal wrong_password 1\ndevice LD130133000015 packets=3 acknowledged=2 \
             rejected=[wrong_password=1] deviations=[no_crlf=3,no_qn=1] last_seen=2026-06-01T00:00:00Z \
             legacy_verifier=2 (rotate its password)\n"
        );
    }
}
