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

/// Reads and parses a `--policy` file.
pub fn read_policy(path: &std::path::Path) -> anyhow::Result<tlog::policy::Policy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the policy file {}", path.display()))?;
    tlog::policy::Policy::parse(&text).with_context(|| format!("policy file {}", path.display()))
}

/// Requires the policy's quorum on `checkpoint`; answers the line to print.
pub fn quorum(policy_path: &std::path::Path, checkpoint: &str) -> anyhow::Result<String> {
    let policy = read_policy(policy_path)?;
    let verdict = policy.verify(checkpoint).map_err(|e| {
        anyhow::anyhow!(
            "checkpoint NOT accepted by the policy {}: {e}; ask the log for a checkpoint its witnesses cosigned",
            policy_path.display()
        )
    })?;
    Ok(witnessed_line(&verdict, policy.witnesses.len()))
}

/// `witnessed by k of n: A, B` (or that the policy asks for none).
pub fn witnessed_line(verdict: &tlog::policy::Verdict, n: usize) -> String {
    if verdict.cosigned.is_empty() {
        return format!("ok: the policy's quorum is met without cosignatures (0 of {n} witnesses)");
    }
    format!("ok: witnessed by {} of {n}: {}", verdict.cosigned.len(), verdict.cosigned.join(", "))
}

/// `proof verify --policy`: the quorum on the bundle's (newest) checkpoint.
pub fn bundle_quorum(policy_path: &std::path::Path, bundle: &tlog::bundle::Bundle) -> anyhow::Result<String> {
    let checkpoint = match bundle {
        tlog::bundle::Bundle::Inclusion { checkpoint, .. }
        | tlog::bundle::Bundle::Consistency { checkpoint, .. } => checkpoint,
    };
    quorum(policy_path, checkpoint)
}

/// `attest verify --policy --checkpoint`: the checkpoint is the log's,
/// of the attestation's very tree, and has the policy's quorum.
pub fn attestation_quorum(
    policy_path: &std::path::Path,
    checkpoint_path: &std::path::Path,
    attestation: &tlog::attestation::Attestation,
    key_name: &str,
    key: &[u8; 32],
) -> anyhow::Result<()> {
    let checkpoint = std::fs::read_to_string(checkpoint_path)
        .with_context(|| format!("cannot read {}", checkpoint_path.display()))?;
    let body = tlog::note::verify(&checkpoint, key_name, key).map_err(|e| {
        anyhow::anyhow!("checkpoint {} is not signed by the given public key: {e}", checkpoint_path.display())
    })?;
    let head = tlog::witness::parse_head(&body)?;
    if head.origin != attestation.origin
        || head.size != attestation.tree_size
        || head.root != attestation.root
    {
        anyhow::bail!(
            "checkpoint {} is of {} at size {}, the attestation of {} at size {}; give the checkpoint of the \
             attestation's tree (`ecocode checkpoint` at the time, or the log's witnessed checkpoint)",
            checkpoint_path.display(),
            head.origin,
            head.size,
            attestation.origin,
            attestation.tree_size
        );
    }
    println!("{}", quorum(policy_path, &checkpoint)?);
    Ok(())
}
