//! The `ecocode` binary: parses the command line, sets up logging and
//! signals, and hands over to the library.

use clap::Parser;
use cli::cli::{Cli, Command};

/// mimalloc rather than the system allocator: the ledger's verification
/// and writer, and the service's readers, allocate on one thread and free
/// on another, where glibc's arenas contend (BENCHMARKS.md, "The
/// allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sled=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => cli::cli::serve(*args, shutdown_signal()).await,
            Command::Witness(cli::witness::WitnessCommand::Serve(args)) => {
                cli::witness::serve(args, shutdown_signal()).await
            }
            other => cli::cli::run(other).await,
        }
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
