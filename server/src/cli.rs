//! The command line: `serve`, offline tools (`principal`, `verify`, `key`,
//! `attest verify`, `proof verify`) and a small client for people without a
//! gRPC tool (`register`, `append`, `score`, `checkpoint`, `attest get`).

use std::future::Future;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use ecocode_proto::v1 as pb;
use indicatif::{ProgressBar, ProgressStyle};
use scoring::{Model, Timestamp};

use crate::clock::SystemClock;
use crate::principals::{PrincipalStore, Role};
use crate::state::{AppState, Config};

#[derive(Parser, Debug)]
#[command(name = "ecocode", version, about = "Environmental-protection codes and credit scores on a verifiable ledger")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service on an embedded sled store in the data directory.
    Serve(ServeArgs),
    /// Manage principals (who may call the service).
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Check every entry, the hash chain, the Merkle tree and the last
    /// signed checkpoint of a stopped server's data directory.
    Verify {
        #[arg(long, default_value = "./data")]
        data: PathBuf,
    },
    /// Show the service's public key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Register an enterprise (client).
    Register {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        uscc: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        region: String,
        #[arg(long, default_value = "")]
        industry: String,
    },
    /// Append the records of a JSON Lines file, one record per line (client).
    Append {
        #[command(flatten)]
        conn: Connection,
        file: PathBuf,
    },
    /// Print an enterprise's score with its reasons (client).
    Score {
        #[command(flatten)]
        conn: Connection,
        uscc: String,
        /// Evaluation time, RFC 3339 (default: now).
        #[arg(long)]
        as_of: Option<String>,
        /// Ledger prefix to evaluate (default: the whole ledger).
        #[arg(long, default_value_t = 0)]
        tree_size: u64,
        /// Print the score as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the latest signed checkpoint (client).
    Checkpoint {
        #[command(flatten)]
        conn: Connection,
    },
    /// Signed score attestations.
    #[command(subcommand)]
    Attest(AttestCommand),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Data directory (ledger, keys, principals).
    #[arg(long, default_value = "./data")]
    pub data: PathBuf,
    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Scoring model file (TOML); default: the model built into the binary.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Checkpoint origin line.
    #[arg(long)]
    pub origin: Option<String>,
    /// Signing key name in checkpoints and attestations.
    #[arg(long)]
    pub key_name: Option<String>,
    /// Ed25519 key file to use instead of DATA/ledger.key.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Sign a new checkpoint at most this often, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_interval_ms: u64,
}

#[derive(Subcommand, Debug)]
pub enum PrincipalCommand {
    /// Create a principal and print its token once, alone on the last line.
    Add {
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        #[arg(long)]
        name: String,
        /// admin, regulator, lender, enterprise or source.
        #[arg(long)]
        role: String,
        /// Region-code prefix (regulator), USCC (enterprise) or source name (source).
        #[arg(long)]
        scope: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Print the verifier key (`<name>+<key id>+<base64 key>`) of a data
    /// directory or key file; checkpoints and attestations verify with it.
    Show {
        #[arg(long, default_value = "./data")]
        data: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum AttestCommand {
    /// Fetch a signed attestation of a score and write it to a file (client).
    Get {
        #[command(flatten)]
        conn: Connection,
        uscc: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check an attestation file offline against the service's public key.
    Verify {
        file: PathBuf,
        /// The verifier key, as printed by `ecocode key show`.
        #[arg(long)]
        public_key: String,
    },
}

/// Where the server is and who we are.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    #[arg(long, env = "ECOCODE_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    #[arg(long, env = "ECOCODE_TOKEN", hide_env_values = true)]
    pub token: String,
}

pub async fn serve(args: ServeArgs, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let model = match &args.model {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the model file {}", path.display()))?;
            Model::from_toml(&text).with_context(|| format!("model file {}", path.display()))?
        }
        None => Model::builtin(),
    };
    let mut config = Config::new(&args.data);
    if let Some(origin) = args.origin {
        config.origin = origin;
    }
    if let Some(key_name) = args.key_name {
        config.key_name = key_name;
    }
    config.key_file = args.key_file;
    config.checkpoint_interval = Duration::from_millis(args.checkpoint_interval_ms);
    let bar = progress_bar("verifying ledger");
    let state = AppState::open(&config, model, Arc::new(SystemClock), &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| {
        format!(
            "cannot open the data directory {}; run `ecocode verify --data {}` for details",
            args.data.display(),
            args.data.display()
        )
    })?;
    bar.finish_and_clear();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}; is another server running there? try --listen", args.listen))?;
    eprintln!("ecocode listening on {} (data {})", listener.local_addr()?, args.data.display());
    crate::serve(listener, shutdown, Arc::new(state)).await?;
    Ok(())
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => unreachable!("serve is dispatched by main"),
        Command::Principal(PrincipalCommand::Add { data, name, role, scope }) => {
            let role = Role::parse(&role, scope.as_deref())?;
            let store = PrincipalStore::open(&data)?;
            let token = store.add(&name, role.clone())?;
            println!("created principal {name} ({}) in {}", role.name(), data.display());
            println!("the token is shown once; keep it secret:");
            println!("{token}");
            Ok(())
        }
        Command::Verify { data } => verify(&data),
        Command::Key(KeyCommand::Show { data }) => {
            let path = if data.is_dir() { data.join("ledger.key") } else { data.clone() };
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("cannot read {}; a server creates it on first start", path.display())
            })?;
            let (name, seed) = ingest::ledger::note::decode_signer_key(text.trim())
                .with_context(|| format!("{} is not an ecocode key file", path.display()))?;
            let public_key = ingest::ledger::note::public_key(&seed);
            println!("{}", ingest::ledger::note::encode_verifier_key(&name, &public_key));
            Ok(())
        }
        Command::Register { conn, uscc, name, region, industry } => {
            let mut client = pb::registry_client::RegistryClient::new(channel(&conn).await?);
            let request = authed(&conn, pb::Enterprise { uscc, name, region_code: region, industry_code: industry })?;
            let receipt = client.register_enterprise(request).await.map_err(status_error)?.into_inner();
            println!(
                "registered at seq {}{}",
                receipt.seq,
                if receipt.duplicate { " (already registered, same details)" } else { "" }
            );
            Ok(())
        }
        Command::Append { conn, file } => append(&conn, &file).await,
        Command::Score { conn, uscc, as_of, tree_size, json } => {
            let as_of = as_of
                .map(|s| {
                    Timestamp::parse_rfc3339(&s)
                        .map(crate::convert::to_proto::timestamp)
                        .with_context(|| format!("--as-of {s:?} is not RFC 3339, e.g. 2026-03-15T08:00:00Z"))
                })
                .transpose()?;
            let mut client = pb::scores_client::ScoresClient::new(channel(&conn).await?);
            let request = authed(&conn, pb::GetScoreRequest { uscc, as_of, tree_size })?;
            let score = client.get_score(request).await.map_err(status_error)?.into_inner();
            if json {
                println!("{}", score_json(&score));
            } else {
                print_score(&score);
            }
            Ok(())
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
        Command::Attest(AttestCommand::Get { conn, uscc, out }) => {
            let mut client = pb::scores_client::ScoresClient::new(channel(&conn).await?);
            let request = authed(&conn, pb::GetAttestationRequest { uscc, as_of: None, tree_size: 0 })?;
            let attestation = client.get_attestation(request).await.map_err(status_error)?.into_inner();
            std::fs::write(&out, &attestation.signed_note).with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Attest(AttestCommand::Verify { file, public_key }) => {
            let note = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let (key_name, key) = ingest::ledger::note::decode_verifier_key(public_key.trim())
                .context("--public-key must be a verifier key as printed by `ecocode key show`")?;
            let body = ingest::ledger::note::verify(&note, &key_name, &key)
                .map_err(|e| anyhow::anyhow!("attestation {} does NOT verify: {e}", file.display()))?;
            println!("attestation verifies against the given public key");
            for (k, v) in crate::attestation::fields(&body) {
                println!("  {k:<10} {v}");
            }
            Ok(())
        }
    }
}

fn verify(data: &Path) -> anyhow::Result<()> {
    if !data.join("ledger").exists() {
        bail!("{} holds no ledger; pass the server's --data directory", data.display());
    }
    let bar = progress_bar("verifying");
    let report = ingest::ledger::verify(data, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match report {
        Ok(r) => {
            println!(
                "ok, {} entries, root {}",
                r.entries,
                base64::engine::general_purpose::STANDARD.encode(r.root)
            );
            Ok(())
        }
        Err(e) => bail!("verification FAILED: {e}"),
    }
}

fn progress_bar(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} entries ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

async fn channel(conn: &Connection) -> anyhow::Result<tonic::transport::Channel> {
    tonic::transport::Endpoint::from_shared(conn.server.clone())
        .with_context(|| format!("--server {:?} is not a URL like http://127.0.0.1:50051", conn.server))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the server at {}; is `ecocode serve` running?", conn.server))
}

fn authed<T>(conn: &Connection, message: T) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {}", conn.token)
        .parse()
        .context("the token contains characters not allowed in metadata")?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

/// One line of an `append` file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecord {
    source: String,
    source_record_id: String,
    uscc: String,
    kind: String,
    occurred_at: String,
    #[serde(default)]
    amount_yuan: i64,
    #[serde(default)]
    refers_to_seq: u64,
    #[serde(default)]
    description: String,
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, String>,
}

async fn append(conn: &Connection, file: &Path) -> anyhow::Result<()> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let mut records = Vec::new();
    let mut line_numbers = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: JsonRecord = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a record", file.display(), i + 1))?;
        let occurred_at = Timestamp::parse_rfc3339(&r.occurred_at).with_context(|| {
            format!("{}:{}: occurred_at {:?} is not RFC 3339", file.display(), i + 1, r.occurred_at)
        })?;
        records.push(pb::Record {
            source: r.source,
            source_record_id: r.source_record_id,
            uscc: r.uscc,
            kind: r.kind,
            occurred_at: Some(crate::convert::to_proto::timestamp(occurred_at)),
            amount_yuan: r.amount_yuan,
            refers_to_seq: r.refers_to_seq,
            description: r.description,
            attributes: r.attributes,
        });
        line_numbers.push(i + 1);
    }
    let mut client = pb::ingest_client::IngestClient::new(channel(conn).await?);
    let total = records.len();
    let request = authed(conn, tokio_stream::iter(records))?;
    let response = client.append_records(request).await.map_err(status_error)?.into_inner();
    println!(
        "{} records: {} appended, {} already present, {} rejected",
        total,
        response.accepted,
        response.duplicates,
        response.rejected.len()
    );
    let mut stdout = std::io::stdout().lock();
    for r in &response.rejected {
        let line = line_numbers.get(r.index as usize).copied().unwrap_or(0);
        writeln!(stdout, "  line {line}: {} {}", r.code, r.message)?;
    }
    if let Some(c) = &response.checkpoint {
        writeln!(stdout, "ledger now has {} entries", c.tree_size)?;
    }
    if !response.rejected.is_empty() {
        bail!("{} records were rejected; fix the lines above and re-run (appended records are not duplicated)", response.rejected.len());
    }
    Ok(())
}

fn print_score(s: &pb::Score) {
    let grade = pb::CreditGrade::try_from(s.grade).map(|g| g.as_str_name()).unwrap_or("?");
    let code = pb::EcoCode::try_from(s.code).map(|c| c.as_str_name()).unwrap_or("?");
    println!("{} {}", s.uscc, s.name);
    println!("  {code}  {grade}  {} points{}{}", s.points, if s.veto { "  VETO" } else { "" }, if s.disputed { "  DISPUTED" } else { "" });
    println!("  model {}, ledger size {}", s.model_version, s.tree_size);
    for r in &s.reasons {
        println!("  {:>+4}  {:<32} seq {:<6} {}", r.points, r.kind, r.seq, r.description);
    }
}

fn score_json(s: &pb::Score) -> serde_json::Value {
    let ts = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| Timestamp::from_unix(t.seconds, t.nanos))
            .map(|t| t.to_string())
    };
    serde_json::json!({
        "uscc": s.uscc,
        "name": s.name,
        "points": s.points,
        "grade": pb::CreditGrade::try_from(s.grade).map(|g| g.as_str_name()).unwrap_or("?"),
        "code": pb::EcoCode::try_from(s.code).map(|c| c.as_str_name()).unwrap_or("?"),
        "veto": s.veto,
        "disputed": s.disputed,
        "as_of": ts(&s.as_of),
        "tree_size": s.tree_size,
        "model_version": s.model_version,
        "reasons": s.reasons.iter().map(|r| serde_json::json!({
            "kind": r.kind, "points": r.points, "seq": r.seq, "description": r.description,
            "expires_at": ts(&r.expires_at),
        })).collect::<Vec<_>>(),
    })
}
