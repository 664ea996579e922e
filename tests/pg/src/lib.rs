//! Throwaway PostgreSQL clusters for tests.
//!
//! [`database`] hands each test a fresh, empty database on one cluster per
//! test process; [`Cluster::start`] gives a test a cluster of its own (to
//! stop and restart it). A cluster lives in a temporary directory, listens
//! on a Unix socket there only (no TCP port to collide on), runs as the
//! `postgres` user when the tests run as root (PostgreSQL refuses root),
//! and is stopped and removed when the test process exits, even by
//! SIGKILL: a small shell watchdog holds the cluster and stops it when the
//! pipe from the test process closes.
//!
//! Needs PostgreSQL's server binaries (Debian: `apt-get install
//! postgresql`; `.ci/run` installs them). `ECOCODE_PG_BIN` names their
//! directory if they are elsewhere than `/usr/lib/postgresql/*/bin` or
//! `pg_config --bindir`.
//!
//! The clusters of tests run with `fsync = off`: tests check what the
//! service does, not that the disk keeps what PostgreSQL wrote, and no test
//! crashes the machine. Benchmarks use [`Cluster::start_durable`].

#![forbid(unsafe_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// A running throwaway cluster; stopped when the test process exits.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    /// `on` or `off`, kept across a restart.
    fsync: &'static str,
    /// The watchdog: closing its stdin (dropping the cluster, or the
    /// process exiting) stops the cluster and removes its directory.
    _watchdog: Mutex<(Child, ChildStdin)>,
}

/// A fresh, empty database on this process's shared cluster: its URL.
pub fn database() -> String {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(Cluster::start).create_database()
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ECOCODE_PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(dir) = found.pop() {
        return dir;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    panic!(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found: install them \
         (Debian: apt-get install postgresql) or set ECOCODE_PG_BIN to their directory"
    );
}

/// `cmd` as the `postgres` user when we are root.
fn as_cluster_user(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// Creates and starts a cluster of the caller's own.
    pub fn start() -> Cluster {
        Self::start_with(false)
    }

    /// A cluster with PostgreSQL's default durability (`fsync = on`,
    /// `synchronous_commit = on`), for benchmarks that compare durable
    /// commits.
    pub fn start_durable() -> Cluster {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Cluster {
        let fsync = if durable { "on" } else { "off" };
        let bin = bin_dir();
        let dir =
            tempfile::Builder::new().prefix("ecocode-pg-").tempdir().expect("temporary directory").keep();
        if running_as_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres").arg(&dir);
                    c
                },
                "chown the cluster directory to postgres",
            );
        }
        run(
            {
                let mut c = as_cluster_user(&bin.join("initdb"));
                c.arg("-D").arg(dir.join("data")).args([
                    "-A",
                    "trust",
                    "-U",
                    "ecocode",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]);
                c
            },
            "initdb",
        );
        // The watchdog starts the cluster, says so, and stops it (and
        // removes the directory) when its stdin closes.
        let script = r#"
            "$1/pg_ctl" -D "$2/data" -l "$2/log" -w -o "-k $2 -c listen_addresses= -c fsync=$3 -c synchronous_commit=on -c max_connections=200" start >/dev/null || exit 1
            echo ready
            cat >/dev/null
            "$1/pg_ctl" -D "$2/data" -m immediate stop >/dev/null 2>&1
            rm -rf "$2"
        "#;
        let mut child = {
            let mut c = as_cluster_user(Path::new("/bin/sh"));
            c.args(["-c", script, "watchdog"]).arg(&bin).arg(&dir).arg(fsync);
            c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
            c.spawn().expect("start the PostgreSQL watchdog")
        };
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("watchdog output");
        assert_eq!(line.trim(), "ready", "the test cluster did not start; see {}", dir.join("log").display());
        let stdin = child.stdin.take().expect("piped");
        Cluster { bin, dir, fsync, _watchdog: Mutex::new((child, stdin)) }
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        let host: String = self
            .dir
            .display()
            .to_string()
            .bytes()
            .map(|b| if b == b'/' { "%2F".to_string() } else { (b as char).to_string() })
            .collect();
        format!("postgresql://ecocode@{host}/{name}")
    }

    /// Runs `sql` in database `name` with psql.
    fn psql(&self, name: &str, sql: &str) {
        let mut c = as_cluster_user(&self.bin.join("psql"));
        c.arg("-h").arg(&self.dir);
        c.args(["-U", "ecocode", "-d", name, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql]);
        run(c, &format!("psql {sql:?}"));
    }

    /// A fresh, empty database: its URL.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs SQL in database `url` (tests damage a store with it).
    pub fn execute(&self, url: &str, sql: &str) {
        self.psql(url.rsplit('/').next().expect("a database URL"), sql);
    }

    /// Stops the cluster (fast shutdown: connections are cut).
    pub fn stop(&self) {
        run(
            {
                let mut c = as_cluster_user(&self.bin.join("pg_ctl"));
                c.arg("-D").arg(self.dir.join("data")).args(["-m", "fast", "-w", "stop"]);
                c
            },
            "pg_ctl stop",
        );
    }

    /// Starts it again after [`Cluster::stop`]; returns once it accepts
    /// connections.
    pub fn restart(&self) {
        run(
            {
                let mut c = as_cluster_user(&self.bin.join("pg_ctl"));
                c.arg("-D")
                    .arg(self.dir.join("data"))
                    .arg("-l")
                    .arg(self.dir.join("log"))
                    .arg("-o")
                    .arg(format!(
                        "-k {} -c listen_addresses= -c fsync={} -c synchronous_commit=on -c max_connections=200",
                        self.dir.display(),
                        self.fsync
                    ))
                    .args(["-w", "start"]);
                c
            },
            "pg_ctl start",
        );
    }
}
