//! Reaching the server: where it is, who we are, and how its errors and
//! long-running work are shown to a person.

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

/// Where the server is and who we are.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    #[arg(long, env = "ECOCODE_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    #[arg(long, env = "ECOCODE_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// A progress bar counting `unit` (entries, rows, ...).
pub fn progress_bar(message: &'static str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

pub async fn channel(conn: &Connection) -> anyhow::Result<tonic::transport::Channel> {
    tonic::transport::Endpoint::from_shared(conn.server.clone())
        .with_context(|| format!("--server {:?} is not a URL like http://127.0.0.1:50051", conn.server))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the server at {}; is `ecocode serve` running?", conn.server))
}

pub fn authed<T>(conn: &Connection, message: T) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {}", conn.token)
        .parse()
        .context("the token contains characters not allowed in metadata")?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}
