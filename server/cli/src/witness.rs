//! `ecocode witness serve|key`: run a C2SP tlog-witness for one or more
//! logs, and print its verifier key for their policies.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum WitnessCommand {
    /// Cosign logs' checkpoints over C2SP tlog-witness v1 (HTTP), keeping
    /// each log's latest cosigned checkpoint and the evidence of forks.
    Serve(WitnessServeArgs),
    /// Print the witness's verifier key (vkey) for tlog-policy files;
    /// creates the key in DIR if it does not exist yet.
    Key {
        #[arg(long)]
        data: PathBuf,
        /// The witness's name (its cosignature key name), e.g. bank.example/witness.
        #[arg(long)]
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct WitnessServeArgs {
    /// HTTP listen address (the submission and monitoring prefix).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// State directory: the witness key, each log's latest cosigned
    /// checkpoint and the conflicts.
    #[arg(long)]
    pub data: PathBuf,
    /// The witness's name (its cosignature key name).
    #[arg(long)]
    pub name: String,
    /// A log key to trust: `VKEY` (its key name is the log's origin) or
    /// `ORIGIN=VKEY`; repeat for several logs or for a key rotation.
    #[arg(long = "log-key", required = true)]
    pub log_keys: Vec<String>,
}

/// `ecocode witness key`.
pub fn key(data: &std::path::Path, name: &str) -> anyhow::Result<()> {
    let vkey = server::witness::verifier_key(data, name)
        .with_context(|| format!("cannot read or create the witness key in {}", data.display()))?;
    println!("{vkey}");
    Ok(())
}

/// `ecocode witness serve`, until `shutdown`.
pub async fn serve(
    args: WitnessServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let keys =
        args.log_keys.iter().map(|k| server::witness::parse_log_key(k)).collect::<Result<Vec<_>, _>>()?;
    let witness = server::witness::Witness::open(&args.data, &args.name, keys.clone())
        .with_context(|| format!("cannot open the witness in {}", args.data.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}; is another witness running there?", args.listen))?;
    let addr = listener.local_addr()?;
    eprintln!("{}", server::witness::describe(addr, &witness));
    for key in &keys {
        eprintln!("  following {} (key {})", key.origin, key.name);
    }
    server::witness::serve(listener, Arc::new(witness), shutdown).await;
    Ok(())
}
