//! `ecocode mirror`: follows a remote log through its C2SP tlog-tiles
//! (`/checkpoint`, `/tile/0/...`, `/tile/entries/...`), verifies it and
//! keeps a local copy.
//!
//! The local copy is a ledger data directory of its own (`DIR/log/`,
//! `DIR/ledger.key`, `DIR/checkpoint`, signed with the mirror's own key),
//! holding the remote's entries with the same seqs and `recorded_at`
//! values, so it has the remote's tree and chain and `ecocode verify
//! --data DIR` checks it as it checks a server's store. Beside it,
//! `DIR/mirror/`: `log.pub` (the remote's verifier key, pinned on the first
//! run) and `checkpoint` (the last remote checkpoint verified and held).
//!
//! A round: fetch and verify the checkpoint's signature; fetch the entry
//! bundles and level-0 tiles from the held size to the checkpoint's; check
//! every entry against the tile and, for bundles that overlap what is held,
//! against the held entries (a difference is a fork, named by seq); extend
//! the held tree's frontier with the new leaves and require the
//! checkpoint's root and chain. Only then are the entries appended, so
//! what is held always extends a checkpoint the log signed; consistency
//! with the previous checkpoint follows, as the new tree is built on the
//! held one. New entries are held in memory until the root checks out.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use ledger::{Hash, Ledger, LedgerConfig, NewEntry, hash, note};
use tlog::tiles::{TILE_WIDTH, Tile, TileKind};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Where the remote's pinned key and last checkpoint live, inside DIR.
pub const MIRROR_DIR: &str = "mirror";
const PINNED_KEY: &str = "log.pub";
const REMOTE_CHECKPOINT: &str = "checkpoint";

/// Largest answer read: a bundle of 256 entries of the largest records.
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Longest wait for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a rate-limited (429) or busy (503) request is tried again.
const BUSY_ATTEMPTS: u32 = 120;

/// What `ecocode mirror` is told.
#[derive(Clone, Debug)]
pub struct Options {
    /// `http://HOST:PORT[/prefix]` of the log's web listener.
    pub from: String,
    pub data: PathBuf,
    /// A bearer token of an admin or an unscoped regulator (entry bundles).
    pub token: Option<String>,
    /// The log's verifier key text, or a file holding it; pinned in DIR.
    pub public_key: Option<String>,
    /// Print progress lines.
    pub report: bool,
}

/// A verified round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caught {
    pub tree_size: u64,
    pub root: Hash,
    /// Entries fetched, checked and appended in this round.
    pub appended: u64,
    /// Time spent fetching and checking, and appending to the local copy.
    pub fetching: Duration,
    pub appending: Duration,
}

/// A mirror: the local ledger and the remote's pinned key, across rounds.
pub struct Mirror {
    options: Options,
    ledger: Ledger,
    key_name: String,
    key: [u8; 32],
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror").field("from", &self.options.from).finish_non_exhaustive()
    }
}

impl Mirror {
    /// Opens (verifying) or creates the local copy in `options.data` and
    /// pins the remote's key: `--public-key` on the first run; afterwards
    /// the pinned one, which a different `--public-key` may not replace.
    pub fn open(options: Options) -> anyhow::Result<Mirror> {
        if !options.from.starts_with("http://") {
            bail!(
                "--from {:?} must start with http:// (for an https:// log, run a local TLS proxy in front)",
                options.from
            );
        }
        let dir = options.data.join(MIRROR_DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let pinned_path = dir.join(PINNED_KEY);
        let given = options.public_key.as_deref().map(read_key_text).transpose()?;
        let pinned = match std::fs::read_to_string(&pinned_path) {
            Ok(text) => Some(text.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", pinned_path.display())),
        };
        let key_text = match (pinned, given) {
            (Some(pinned), Some(given)) if pinned != given => bail!(
                "--public-key {given} differs from the key this mirror pinned on its first run ({pinned}, in {}); \
                 mirror another log into another --data directory",
                pinned_path.display()
            ),
            (Some(pinned), _) => pinned,
            (None, Some(given)) => {
                write_atomic(&pinned_path, format!("{given}\n").as_bytes())?;
                given
            }
            (None, None) => bail!(
                "the first run needs the log's verifier key: --public-key (as printed by `ecocode key show` on the server)"
            ),
        };
        let (key_name, key) = note::decode_verifier_key(&key_text)
            .with_context(|| format!("the log's verifier key {key_text:?}"))?;
        let mut config = LedgerConfig::new(&options.data);
        config.origin = "ecocode.mirror/local".into();
        config.key_name = "ecocode.mirror".into();
        config.replica = true;
        let bar = options.report.then(|| crate::client::progress_bar("verifying the local copy", "entries"));
        let ledger = Ledger::open_with_progress(config, &mut |done, total| {
            if let Some(bar) = &bar {
                bar.set_length(total);
                bar.set_position(done);
            }
        })
        .with_context(|| format!("the local copy in {} does not verify", options.data.display()))?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let mirror = Mirror { options, ledger, key_name, key };
        if let Some(held) = mirror.held_checkpoint()? {
            // The entries held must be those the held checkpoint signed.
            let head = mirror.ledger.head();
            if held.1 > head.size || mirror.ledger.root_at(held.1)? != held.2 {
                bail!(
                    "the local copy ({} entries) does not hold the log's checkpoint of size {} kept in {}",
                    head.size,
                    held.1,
                    dir.display()
                );
            }
        }
        Ok(mirror)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// `(origin, size, root, chain)` of the remote checkpoint held, if any.
    fn held_checkpoint(&self) -> anyhow::Result<Option<(String, u64, Hash, Hash)>> {
        let path = self.options.data.join(MIRROR_DIR).join(REMOTE_CHECKPOINT);
        match std::fs::read_to_string(&path) {
            Ok(note) => Ok(Some(self.check_note(&note).with_context(|| format!("{}", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn check_note(&self, note_text: &str) -> anyhow::Result<(String, u64, Hash, Hash)> {
        let body = note::verify(note_text, &self.key_name, &self.key)
            .context("the checkpoint is not signed by the log's pinned key")?;
        Ok(note::parse_checkpoint(&body)?)
    }

    /// One round: catch up to the log's current checkpoint.
    pub async fn catch_up(&self) -> anyhow::Result<Caught> {
        let note_bytes = self.get("checkpoint", false).await?;
        let note_text = String::from_utf8(note_bytes).context("the log's /checkpoint is not UTF-8")?;
        let (origin, size, root, chain) = self.check_note(&note_text).context("the log's /checkpoint")?;
        if let Some((held_origin, ..)) = self.held_checkpoint()?
            && held_origin != origin
        {
            bail!("the log's checkpoint is for origin {origin:?}, this mirror holds {held_origin:?}");
        }
        let head = self.ledger.head();
        if size <= head.size {
            let ours = self.ledger.root_at(size)?;
            if ours != root {
                bail!(
                    "the log is inconsistent with this mirror: its checkpoint of size {size} has root {}, \
                     the mirror's first {size} entries (of {} held) give {}",
                    b64(&root),
                    head.size,
                    b64(&ours)
                );
            }
            if size == head.size {
                self.keep_checkpoint(&note_text)?;
            }
            return Ok(Caught {
                tree_size: head.size,
                root: head.root,
                appended: 0,
                fetching: Duration::ZERO,
                appending: Duration::ZERO,
            });
        }
        let fetch_started = Instant::now();
        let staged = self.fetch_and_check(head.size, size).await?;
        let mut frontier = Frontier::of(&self.ledger)?;
        let mut running_chain = head.chain;
        for (seq, (_, leaf)) in (head.size..).zip(&staged) {
            frontier.push(*leaf);
            running_chain = hash::chain_hash(&running_chain, leaf);
            debug_assert_eq!(frontier.size, seq + 1);
        }
        if frontier.root() != root {
            bail!(
                "the log is inconsistent with this mirror: its checkpoint of size {size} has root {}, but the \
                 {} entries held extended by the {} it served give {}; refusing it (the log forked, or served \
                 entries that are not its own)",
                b64(&root),
                head.size,
                size - head.size,
                b64(&frontier.root())
            );
        }
        if running_chain != chain {
            bail!("the log's checkpoint of size {size} names a chain hash its entries do not give");
        }
        let fetching = fetch_started.elapsed();
        let append_started = Instant::now();
        let appended = staged.len() as u64;
        let mut rest = staged.into_iter().map(|(entry, _)| entry).peekable();
        while rest.peek().is_some() {
            let batch: Vec<_> = rest.by_ref().take(4096).collect();
            self.ledger.append_at(batch).await.context("appending to the local copy")?;
        }
        let now = self.ledger.head();
        if now.size != size || now.root != root || now.chain != chain {
            bail!("the local copy's head after appending differs from the verified checkpoint");
        }
        self.ledger.sign_checkpoint_now()?;
        self.keep_checkpoint(&note_text)?;
        Ok(Caught { tree_size: size, root, appended, fetching, appending: append_started.elapsed() })
    }

    fn keep_checkpoint(&self, note_text: &str) -> anyhow::Result<()> {
        write_atomic(&self.options.data.join(MIRROR_DIR).join(REMOTE_CHECKPOINT), note_text.as_bytes())
    }

    /// The entries `[from, to)` with their leaves, each checked against the
    /// log's level-0 tile, and the bundles' overlap with what is held
    /// checked against the held entries.
    async fn fetch_and_check(&self, from: u64, to: u64) -> anyhow::Result<Vec<((NewEntry, i64), Hash)>> {
        let mut staged = Vec::with_capacity((to - from) as usize);
        let bar = self.options.report.then(|| crate::client::progress_bar("fetching", "entries"));
        if let Some(bar) = &bar {
            bar.set_length(to - from);
        }
        for index in from / TILE_WIDTH..to.div_ceil(TILE_WIDTH) {
            let first = index * TILE_WIDTH;
            let end = (first + TILE_WIDTH).min(to);
            let width = (end - first < TILE_WIDTH).then_some((end - first) as u8);
            let bundle = Tile { kind: TileKind::Entries, index, width };
            let tile = Tile { kind: TileKind::Hashes(0), index, width };
            let entries = tlog::tiles::decode_bundle(&self.get(&bundle.path(), true).await?, bundle.count())
                .with_context(|| format!("the log's {}", bundle.path()))?;
            let leaves = tlog::tiles::decode_hashes(&self.get(&tile.path(), false).await?, tile.count())
                .with_context(|| format!("the log's {}", tile.path()))?;
            for ((seq, entry), leaf) in (first..).zip(entries).zip(leaves) {
                let computed = hash::entry_hash(seq, entry.recorded_at_ns, &entry.payload);
                if computed != leaf {
                    bail!(
                        "entry {seq} of the log's {} does not hash to its leaf in {}; refusing the log",
                        bundle.path(),
                        tile.path()
                    );
                }
                if seq < from {
                    let held = self.ledger.entry(seq)?;
                    if held.entry_hash != computed {
                        bail!(
                            "the log is inconsistent with this mirror at seq {seq}: it now serves another entry \
                             there than the one held (the log forked at or before seq {seq}, holding {from} entries)"
                        );
                    }
                    continue;
                }
                let subject = subject_of(&entry.payload);
                let new =
                    NewEntry { payload: entry.payload, subject, idempotency: None, details: Vec::new() };
                staged.push(((new, entry.recorded_at_ns), computed));
            }
            if let Some(bar) = &bar {
                bar.set_position(end - from);
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        Ok(staged)
    }

    /// GET `prefix/path`, retrying while the log answers 429 or 503.
    async fn get(&self, path: &str, authorized: bool) -> anyhow::Result<Vec<u8>> {
        let token = if authorized {
            Some(self.options.token.as_deref().context(
                "entry bundles need --token: a token of an admin or a regulator without a scope on the log",
            )?)
        } else {
            None
        };
        let mut attempts = 0;
        loop {
            let (status, body) =
                tokio::time::timeout(ANSWER_TIMEOUT, http_get(&self.options.from, path, token))
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!("no answer for /{path} within {} s", ANSWER_TIMEOUT.as_secs())
                    })??;
            match status {
                200 => return Ok(body),
                429 | 503 if attempts < BUSY_ATTEMPTS => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => {
                    let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
                    // The log's text, shown with control characters escaped.
                    let shown: String = text
                        .trim()
                        .chars()
                        .map(|c| {
                            if scoring::is_control(c) {
                                c.escape_unicode().to_string()
                            } else {
                                c.to_string()
                            }
                        })
                        .collect();
                    bail!("the log answered /{path} with HTTP {status}: {shown}")
                }
            }
        }
    }
}

/// `ecocode mirror`: once, or following the log every `interval`.
pub async fn run(options: Options, once: bool, interval: Duration) -> anyhow::Result<()> {
    let mirror = Mirror::open(options)?;
    loop {
        let started = Instant::now();
        let caught = mirror.catch_up().await?;
        let seconds = started.elapsed().as_secs_f64();
        if once {
            println!("verified tree size {} root {}", caught.tree_size, b64(&caught.root));
            if caught.appended > 0 {
                println!(
                    "caught up {} entries in {seconds:.2} s ({:.0} entries/s): fetched and checked in {:.2} s, \
                     appended to the local copy in {:.2} s",
                    caught.appended,
                    caught.appended as f64 / seconds.max(1e-9),
                    caught.fetching.as_secs_f64(),
                    caught.appending.as_secs_f64()
                );
            }
            mirror.ledger.close().await?;
            return Ok(());
        }
        println!(
            "{} verified tree size {} root {} (+{} entries)",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
            caught.tree_size,
            b64(&caught.root),
            caught.appended
        );
        let _ = std::io::stdout().flush();
        tokio::time::sleep(interval).await;
    }
}

/// The index key of an entry, as the service writes it: the enterprise's
/// USCC, `platform` for outages; none for what this build cannot decode.
fn subject_of(payload: &[u8]) -> Vec<u8> {
    use server::events::Event;
    let probe = ledger::Entry {
        seq: 0,
        recorded_at_ns: 0,
        payload: payload.to_vec(),
        subject: Vec::new(),
        entry_hash: [0; 32],
        chain_hash: [0; 32],
        details: Vec::new(),
    };
    match Event::decode(&probe) {
        Ok(Event::Registration(e)) => e.uscc.as_str().as_bytes().to_vec(),
        Ok(Event::Record(r)) => r.uscc.as_str().as_bytes().to_vec(),
        Ok(Event::MonitoringPoint(p)) => p.uscc().as_str().as_bytes().to_vec(),
        Ok(Event::EnterpriseUpdate { update, .. }) => update.enterprise.uscc.as_str().as_bytes().to_vec(),
        Ok(Event::AccessGrant(g)) => g.uscc.as_str().as_bytes().to_vec(),
        Ok(Event::AccessRevocation { uscc, .. }) => uscc.as_str().as_bytes().to_vec(),
        Ok(Event::PlatformOutage(_) | Event::ScoringModel { .. }) => {
            server::events::PLATFORM_SUBJECT.as_bytes().to_vec()
        }
        // About no enterprise: not indexed.
        Ok(Event::Index(_)) | Err(_) => Vec::new(),
    }
}

/// The right edge of the held tree, as the ledger keeps it: one complete
/// subtree hash per set bit of the size.
struct Frontier {
    size: u64,
    /// `(level, hash)` from the largest subtree to the smallest.
    subtrees: Vec<(u8, Hash)>,
}

impl Frontier {
    fn of(ledger: &Ledger) -> anyhow::Result<Frontier> {
        let size = ledger.head().size;
        let mut subtrees = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size >> level & 1 == 1 {
                subtrees.push((level, ledger.subtree_hash(level, start >> level)?));
                start += 1 << level;
            }
        }
        Ok(Frontier { size, subtrees })
    }

    fn push(&mut self, leaf: Hash) {
        let mut carry = (0u8, leaf);
        while let Some(&(level, left)) = self.subtrees.last() {
            if level != carry.0 {
                break;
            }
            self.subtrees.pop();
            carry = (level + 1, hash::node(&left, &carry.1));
        }
        self.subtrees.push(carry);
        self.size += 1;
    }

    fn root(&self) -> Hash {
        let mut acc: Option<Hash> = None;
        for (_, hash) in self.subtrees.iter().rev() {
            acc = Some(match acc {
                None => *hash,
                Some(right) => hash::node(hash, &right),
            });
        }
        acc.unwrap_or_else(hash::empty_root)
    }
}

/// A verifier key given inline or as a file holding it.
fn read_key_text(given: &str) -> anyhow::Result<String> {
    let path = Path::new(given);
    let text = if !given.contains('+') && path.exists() {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    } else {
        given.to_owned()
    };
    let text = text.trim().to_owned();
    note::decode_verifier_key(&text).with_context(|| format!("--public-key {text:?}"))?;
    Ok(text)
}

fn b64(hash: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(hash)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// One `GET` over plain HTTP/1.1 (`Connection: close`), answering the
/// status and the body (Content-Length, chunked or to the end), bounded.
async fn http_get(prefix: &str, path: &str, token: Option<&str>) -> anyhow::Result<(u16, Vec<u8>)> {
    let rest = prefix.strip_prefix("http://").context("--from must start with http://")?;
    let (host, base) = match rest.split_once('/') {
        Some((host, base)) => (host, format!("/{}", base.trim_end_matches('/'))),
        None => (rest, String::new()),
    };
    let base = if base == "/" { "" } else { &base };
    let mut stream =
        tokio::net::TcpStream::connect(host).await.with_context(|| format!("cannot connect to {host}"))?;
    let mut head = format!("GET {base}/{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.with_context(|| format!("cannot send to {host}"))?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_ANSWER_BYTES as u64 + 64 * 1024)
        .read_to_end(&mut raw)
        .await
        .with_context(|| format!("cannot read the answer of {host}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("{host} did not answer in HTTP/1.1"))?;
    let head = std::str::from_utf8(&raw[..split])
        .with_context(|| format!("{host}: the answer's head is not text"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{host} did not answer in HTTP/1.1"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("transfer-encoding") && value.trim().eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let body = &raw[split + 4..];
    let body = if chunked {
        dechunk(body).with_context(|| format!("{host}: a malformed chunked answer"))?
    } else {
        match length {
            Some(n) if body.len() >= n => body[..n].to_vec(),
            Some(n) => bail!("{host}: the answer ended after {} of its {n} bytes", body.len()),
            None => body.to_vec(),
        }
    };
    if body.len() > MAX_ANSWER_BYTES {
        bail!("{host}: the answer is larger than {MAX_ANSWER_BYTES} bytes");
    }
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frontier_gives_the_reference_root_at_every_size() {
        let leaves: Vec<Hash> = (0..70u64).map(|i| hash::entry_hash(i, 0, &i.to_be_bytes())).collect();
        let mut frontier = Frontier { size: 0, subtrees: Vec::new() };
        assert_eq!(frontier.root(), tlog::proof::root(&[]));
        for (i, leaf) in leaves.iter().enumerate() {
            frontier.push(*leaf);
            assert_eq!(frontier.root(), tlog::proof::root(&leaves[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn chunked_answers_are_joined() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
        assert!(dechunk(b"5\r\nab").is_none());
    }
}
