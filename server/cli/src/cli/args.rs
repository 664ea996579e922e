//! The command line's argument types: the commands and their families
//! (`serve`'s own are in [`super::serve`]).

use super::*;

#[derive(Parser, Debug)]
#[command(
    name = "ecocode",
    version,
    about = "Environmental-protection codes and credit scores on a verifiable ledger"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service on an embedded sled store in the data directory.
    Serve(Box<ServeArgs>),
    /// Manage principals (who may call the service).
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Check every entry, the hash chain, the Merkle tree and the last
    /// signed checkpoint of a stopped server's data directory, or of the
    /// PostgreSQL store given with --store (nodes may keep running).
    Verify {
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// `postgres://USER@HOST/DB`: verify the ledger in that database.
        #[arg(long, env = "ECOCODE_STORE")]
        store: Option<String>,
        /// The signer key file, so that the last checkpoint's signature is
        /// checked too (default: DATA/ledger.key if it exists).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Copy a stopped server's sled ledger into an empty PostgreSQL
    /// database, proving the copy has the same root and chain hash.
    Migrate {
        /// The data directory to copy from.
        #[arg(long)]
        from: PathBuf,
        /// `postgres://USER@HOST/DB` of an empty database.
        #[arg(long)]
        to: String,
    },
    /// Show the service's public key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Change a registered enterprise or show its history (client).
    #[command(subcommand)]
    Enterprise(EnterpriseCommand),
    /// Everything held about an enterprise in one file (client; the
    /// enterprise itself, or a regulator of its region): every ledger entry
    /// about it with its inclusion proof against one signed checkpoint,
    /// every access grant and every inquiry, as JSON Lines.
    Export {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        uscc: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Lender access an enterprise grants to its details (client): the
    /// enterprise adds and revokes, a lender lists what it holds.
    #[command(subcommand)]
    Grant(GrantCommand),
    /// The HJ 212 gateway's figures: totals, and per device packets,
    /// acknowledgements, rejections by reason, deviations by kind and when
    /// it was last seen (client; admin or regulator).
    Gateway {
        #[command(flatten)]
        conn: Connection,
        /// Only this device (MN).
        #[arg(long)]
        mn: Option<String>,
    },
    /// Register or update an HJ 212 monitoring point (client).
    Point {
        #[command(flatten)]
        conn: Connection,
        /// The data logger's device id (MN).
        #[arg(long)]
        mn: String,
        #[arg(long)]
        uscc: String,
        /// The outlet's id in the discharge permit, e.g. DW001.
        #[arg(long)]
        outlet: String,
        /// A permitted daily mean: POLLUTANT=LIMIT[UNIT][@Avg|@ZsAvg], e.g.
        /// w01018=50mg/L or a21026=35mg/m3@ZsAvg; repeat per pollutant.
        #[arg(long = "limit")]
        limits: Vec<String>,
        /// The data logger's HJ 212 password (PW): packets with another PW
        /// are acknowledged but never recorded. Registering again with a new
        /// one rotates it. The server keeps only a verifier keyed with its
        /// own secret, never in the ledger.
        #[arg(long, env = "ECOCODE_DEVICE_PASSWORD", hide_env_values = true)]
        password: String,
    },
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
    /// Append the records of a JSON Lines file, one record per line (client):
    /// streamed in chunks with progress; a stop says how to resume.
    Append {
        #[command(flatten)]
        conn: Connection,
        file: PathBuf,
        /// Records per `AppendRecords` stream; keep it at or below the
        /// server's --max-stream-records.
        #[arg(long, default_value_t = crate::append::DEFAULT_CHUNK_RECORDS)]
        chunk_records: u64,
        /// Lines at the start of FILE not to send: what a run that stopped
        /// says was appended.
        #[arg(long, default_value_t = 0)]
        skip_lines: u64,
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
        /// Why you look (e.g. a loan application number); lenders' and
        /// regulators' reads are recorded with it in the inquiry log.
        #[arg(long, default_value = "")]
        purpose: String,
    },
    /// Who looked at whose score, newest first (client): an enterprise sees
    /// every inquiry on itself, a lender its own, a regulator its region's.
    Inquiries {
        #[command(flatten)]
        conn: Connection,
        /// Only inquiries on this enterprise.
        #[arg(long, default_value = "")]
        uscc: String,
        /// Only inquiries at or after this time, RFC 3339.
        #[arg(long)]
        from: Option<String>,
        /// Only inquiries before this time, RFC 3339.
        #[arg(long)]
        to: Option<String>,
        /// Stop after this many (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// Print the latest signed checkpoint (client).
    Checkpoint {
        #[command(flatten)]
        conn: Connection,
    },
    /// Signed score attestations.
    #[command(subcommand)]
    Attest(AttestCommand),
    /// Import records from a CSV or Parquet file, reporting every rejected
    /// row; re-running the same file adds nothing (client).
    Import {
        #[command(flatten)]
        conn: Connection,
        /// A `.csv` (UTF-8, header row) or `.parquet` file; see README for the columns.
        file: PathBuf,
    },
    /// Re-score every enterprise with the batch (polars) scorer and write one
    /// row per enterprise to a `.parquet` or `.csv` file (client).
    ScoreAll {
        #[command(flatten)]
        conn: Connection,
        /// Evaluation time, RFC 3339 (default: now).
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long)]
        out: PathBuf,
        /// Scoring model file (default: the model built into the binary).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Grades and colours by region, city and industry, and the enterprises
    /// whose colour changed between --from and --to (client).
    Report {
        #[command(flatten)]
        conn: Connection,
        /// Start of the period for colour changes, RFC 3339.
        #[arg(long)]
        from: Option<String>,
        /// Evaluation time of the distribution, RFC 3339 (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Only enterprises whose region code starts with this prefix.
        #[arg(long)]
        region: Option<String>,
        /// Write the distribution to this `.csv` or `.parquet` file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the colour changes to this `.csv` or `.parquet` file.
        #[arg(long)]
        changes_out: Option<PathBuf>,
        /// Scoring model file (default: the model built into the binary).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Inclusion and consistency proofs, fetched as files and checked offline.
    #[command(subcommand)]
    Proof(ProofCommand),
    /// Run a C2SP tlog-witness that cosigns logs' checkpoints (banks,
    /// regulators), or print its key.
    #[command(subcommand)]
    Witness(crate::witness::WitnessCommand),
    /// Follow a log through its tiles (C2SP tlog-tiles on the web
    /// listener), verifying every entry, the tree and each checkpoint's
    /// consistency with the last, into a local copy that `ecocode verify
    /// --data DIR` checks (a bank's offline mirror).
    Mirror {
        /// The log's web listener, `http://HOST:PORT` (`--http-listen`).
        #[arg(long)]
        from: String,
        /// The local copy (created on the first run, resumed afterwards).
        #[arg(long)]
        data: PathBuf,
        /// A bearer token of an admin or a regulator without a scope on
        /// the log: entry bundles are theirs to read.
        #[arg(long, env = "ECOCODE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The log's verifier key (`ecocode key show`), or a file holding
        /// it; needed on the first run, then pinned in DATA/mirror/log.pub.
        #[arg(long)]
        public_key: Option<String>,
        /// Catch up to the current checkpoint, print its size and root, exit.
        #[arg(long)]
        once: bool,
        /// Seconds between rounds when following.
        #[arg(long, default_value_t = 10)]
        interval: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProofCommand {
    /// Fetch entry SEQ with its inclusion proof in the latest checkpoint (client).
    Inclusion {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        seq: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Fetch a proof that the ledger only grew since an older checkpoint,
    /// saved earlier with `ecocode checkpoint > old.note` (client).
    Consistency {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        old_checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Fetch a score proof: the signed score, every entry about USCC below
    /// a signed checkpoint's index entry, the model entry and the proofs
    /// (client). `proof verify` recomputes the score from it offline.
    Score {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        uscc: String,
        /// A signed checkpoint's size (default: the latest published one).
        #[arg(long)]
        tree_size: Option<u64>,
        /// Score at this instant, RFC 3339 (default: now).
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a proof file offline against the signed checkpoint(s) it holds;
    /// a score proof is also recomputed with the model it holds.
    Verify {
        file: PathBuf,
        /// The verifier key, as printed by `ecocode key show`.
        #[arg(long)]
        public_key: String,
        /// A C2SP tlog-policy file: also require its quorum of witness
        /// cosignatures on the (newest) checkpoint.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
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
        /// `postgres://USER@HOST/DB`: add it to that shared store (every
        /// node sees it) instead of DATA/principals/.
        #[arg(long, env = "ECOCODE_STORE")]
        store: Option<String>,
    },
    /// Revoke a principal: its token stops working, on a running server
    /// within a second. The name stays taken.
    Revoke {
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        #[arg(long)]
        name: String,
        /// `postgres://USER@HOST/DB`: revoke it in that shared store.
        #[arg(long, env = "ECOCODE_STORE")]
        store: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum EnterpriseCommand {
    /// Change name, region or industry, or mark closed or merged; a new
    /// ledger entry, the history is kept (admin, regulator in scope).
    Update {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        uscc: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        industry: Option<String>,
        /// Mark the enterprise closed (ceased operating).
        #[arg(long, conflicts_with = "merged_into")]
        close: bool,
        /// Mark the enterprise merged into this USCC.
        #[arg(long)]
        merged_into: Option<String>,
        /// Mark a closed or merged enterprise active again.
        #[arg(long, conflicts_with_all = ["close", "merged_into"])]
        reopen: bool,
        /// Why, e.g. the notice the change is based on.
        #[arg(long)]
        reason: String,
    },
    /// Every state of the enterprise, oldest first.
    History {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        uscc: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum GrantCommand {
    /// Grant a lender access to the enterprise's details (the enterprise itself, or an admin).
    Add {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        uscc: String,
        /// The lender's principal name.
        #[arg(long)]
        lender: String,
        /// loan_application, loan_monitoring, bond_issuance, or other text.
        #[arg(long)]
        purpose: String,
        /// What it covers: details, history (repeat or separate with commas).
        #[arg(long, value_delimiter = ',', default_values_t = ["details".to_owned()])]
        covers: Vec<String>,
        /// From when, RFC 3339 (default: now).
        #[arg(long)]
        starts_at: Option<String>,
        /// Until when, RFC 3339 (at most five years).
        #[arg(long)]
        expires_at: String,
    },
    /// Revoke a grant now, by its seq (the enterprise itself, or an admin).
    Revoke {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        uscc: String,
        /// The grant's ledger seq, as `grant add` and `grant list` print it.
        #[arg(long)]
        seq: u64,
    },
    /// The grants the caller may see, newest first, with status and expiry.
    List {
        #[command(flatten)]
        conn: Connection,
        /// Only this enterprise's grants.
        #[arg(long, default_value = "")]
        uscc: String,
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
    /// The file holds a signed note (`attest get`, the page's download) or
    /// the text of a scanned QR code: the compact form
    /// (`HTTP://HOST/Q/<digits>`) or the full one (`<page URL>?att=...`).
    Verify {
        file: PathBuf,
        /// The verifier key, as printed by `ecocode key show`.
        #[arg(long)]
        public_key: String,
        /// A C2SP tlog-policy file: also require the quorum of witness
        /// cosignatures on the checkpoint given with --checkpoint.
        #[arg(long, requires = "checkpoint")]
        policy: Option<PathBuf>,
        /// The cosigned checkpoint of the attestation's tree (its size and
        /// root), e.g. saved with `ecocode checkpoint`; needed by --policy.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
}
