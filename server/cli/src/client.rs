//! Reaching the server: where it is, who we are, and how its errors and
//! long-running work are shown to a person.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Where the server is and who we are.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// `http://HOST:PORT` for plaintext, `https://HOST:PORT` for TLS.
    #[arg(long, env = "ECOCODE_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    #[arg(long, env = "ECOCODE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// CA certificate (PEM) the server's certificate must chain to; without
    /// it, https:// trusts the system's roots.
    #[arg(long, env = "ECOCODE_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for servers that require mutual TLS; needs --key.
    #[arg(long, env = "ECOCODE_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, env = "ECOCODE_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl Connection {
    /// A plaintext connection to `server` (`http://HOST:PORT`) with `token`.
    pub fn plaintext(server: String, token: String) -> Connection {
        Connection { server, token, ca: None, cert: None, key: None }
    }
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
    let mut endpoint = tonic::transport::Endpoint::from_shared(conn.server.clone())
        .with_context(|| format!("--server {:?} is not a URL like http://127.0.0.1:50051", conn.server))?;
    if conn.server.starts_with("https://") {
        endpoint = endpoint.tls_config(tls_config(conn)?).context("TLS settings")?;
    } else if conn.ca.is_some() || conn.cert.is_some() {
        bail!("--ca and --cert are for TLS; use an https:// --server URL");
    }
    endpoint.connect().await.with_context(|| {
        format!(
            "cannot reach the server at {}; is `ecocode serve` running (with TLS for https://)?",
            conn.server
        )
    })
}

/// The server's CA (or the system's roots) and, for mTLS, our certificate.
fn tls_config(conn: &Connection) -> anyhow::Result<ClientTlsConfig> {
    let read = |flag: &str, path: &PathBuf| {
        std::fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))
    };
    let mut tls = ClientTlsConfig::new();
    tls = match &conn.ca {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read("--ca", ca)?)),
        None => tls.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&conn.cert, &conn.key) {
        tls = tls.identity(Identity::from_pem(read("--cert", cert)?, read("--key", key)?));
    }
    Ok(tls)
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
