//! TLS and mutual TLS: certificates made in the test with rcgen, the real
//! server started with `--tls-cert`/`--tls-key` (and `--client-ca`).

use std::path::{Path, PathBuf};

use ecocode_proto::v1 as pb;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use server::TlsFiles;
use server::principals::Role;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::support::*;

/// A throwaway CA, a server certificate for `localhost`/127.0.0.1 and a
/// client certificate, all as PEM files in one directory.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ours = ca("ecocode test CA");
        std::fs::write(dir.path().join("ca.pem"), ours.pem()).unwrap();
        leaf(&ours, "server", vec!["localhost".into(), "127.0.0.1".into()], dir.path());
        leaf(&ours, "client", vec!["bank-a.example".into()], dir.path());
        // A client certificate from a CA the server does not trust.
        let rogue = ca("someone else's CA");
        leaf(&rogue, "rogue", vec!["bank-a.example".into()], dir.path());
        let ca_pem = ours.pem();
        Pki { dir, ca_pem }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server_files(&self, mutual: bool) -> TlsFiles {
        TlsFiles {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: mutual.then(|| self.path("ca.pem")),
        }
    }

    /// A client trusting our CA, presenting `identity` (`client`, `rogue`) if given.
    fn client(&self, identity: Option<&str>) -> ClientTlsConfig {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name("localhost");
        if let Some(name) = identity {
            let cert = std::fs::read(self.path(&format!("{name}.pem"))).unwrap();
            let key = std::fs::read(self.path(&format!("{name}.key"))).unwrap();
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        tls
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, name: &str, names: Vec<String>, dir: &Path) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

async fn tls_server(pki: &Pki, mutual: bool) -> TestServer {
    let files = pki.server_files(mutual);
    TestServer::start_with(move |config| config.transport.tls = Some(files)).await
}

/// One authenticated call over `channel`: the latest checkpoint.
async fn checkpoint(server: &TestServer, channel: Channel) -> Result<pb::Checkpoint, tonic::Status> {
    let token = server.token(&format!("bank-{}", rand_suffix()), Role::Lender);
    let mut client = Client::new(channel, &token);
    client.ledger.get_checkpoint(pb::GetCheckpointRequest {}).await.map(|r| r.into_inner())
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn endpoint(server: &TestServer, scheme: &str) -> tonic::transport::Endpoint {
    Channel::from_shared(format!("{scheme}://{}", server.addr)).unwrap()
}

/// Connects over TLS; a refused handshake may surface here or at the first call.
async fn call_over_tls(server: &TestServer, tls: ClientTlsConfig) -> Result<pb::Checkpoint, String> {
    let channel =
        endpoint(server, "https").tls_config(tls).unwrap().connect().await.map_err(|e| e.to_string())?;
    checkpoint(server, channel).await.map_err(|s| s.to_string())
}

#[tokio::test]
async fn a_client_trusting_the_ca_gets_answers_over_tls() {
    let pki = Pki::new();
    let server = tls_server(&pki, false).await;
    call_over_tls(&server, pki.client(None)).await.expect("a call over TLS succeeds");
    server.stop().await;
}

#[tokio::test]
async fn a_plaintext_client_is_refused_on_a_tls_port() {
    let pki = Pki::new();
    let server = tls_server(&pki, false).await;
    let channel = endpoint(&server, "http").connect_lazy();
    let refused = checkpoint(&server, channel).await;
    assert!(refused.is_err(), "plaintext must not be served on a TLS port: {refused:?}");
    server.stop().await;
}

#[tokio::test]
async fn an_impostor_server_is_refused_by_a_client_trusting_only_our_ca() {
    let pki = Pki::new();
    let other = Pki::new();
    let server = tls_server(&pki, false).await;
    assert!(call_over_tls(&server, other.client(None)).await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_under_mtls() {
    let pki = Pki::new();
    let server = tls_server(&pki, true).await;
    let refused = call_over_tls(&server, pki.client(None)).await;
    assert!(refused.is_err(), "mTLS must refuse a client without a certificate: {refused:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused_under_mtls() {
    let pki = Pki::new();
    let server = tls_server(&pki, true).await;
    let refused = call_over_tls(&server, pki.client(Some("rogue"))).await;
    assert!(refused.is_err(), "mTLS must refuse a certificate of another CA: {refused:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_certificate_signed_by_the_client_ca_is_accepted_under_mtls() {
    let pki = Pki::new();
    let server = tls_server(&pki, true).await;
    let checkpoint = call_over_tls(&server, pki.client(Some("client"))).await.expect("mTLS call succeeds");
    assert_eq!(checkpoint.tree_size, 0);
    server.stop().await;
}

/// Why `App::build` refuses to start with these TLS files.
async fn start_error(files: TlsFiles) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut config = server::Config::new(data.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.transport.tls = Some(files);
    let built = server::App::build(config, &mut |_, _| {}).await;
    built.map(|_| ()).expect_err("bad TLS files stop the start").to_string()
}

#[tokio::test]
async fn a_server_refuses_to_start_with_a_key_file_that_is_not_pem() {
    let pki = Pki::new();
    std::fs::write(pki.path("broken.key"), "not a key").unwrap();
    let error = start_error(TlsFiles { key: pki.path("broken.key"), ..pki.server_files(false) }).await;
    assert!(error.contains("--tls-key"), "{error}");
}

#[tokio::test]
async fn a_server_refuses_to_start_with_a_key_that_does_not_match_its_certificate() {
    let pki = Pki::new();
    let error = start_error(TlsFiles { key: pki.path("client.key"), ..pki.server_files(false) }).await;
    assert!(error.contains("--tls-key"), "{error}");
}

/// `ecocode` as a client: `https://`, `--ca`, `--cert` and `--key`.
#[tokio::test]
async fn the_cli_client_speaks_mtls_with_its_ca_certificate_and_key() {
    let pki = Pki::new();
    let server = tls_server(&pki, true).await;
    let token = server.token("bank-cli", Role::Lender);
    let mut conn = cli::Connection::plaintext(format!("https://localhost:{}", server.addr.port()), token);
    conn.ca = Some(pki.path("ca.pem"));
    conn.cert = Some(pki.path("client.pem"));
    conn.key = Some(pki.path("client.key"));
    let channel = cli::client::channel(&conn).await.expect("the CLI connects over mTLS");
    let request = cli::client::authed(&conn, pb::GetCheckpointRequest {}).unwrap();
    pb::ledger_client::LedgerClient::new(channel).get_checkpoint(request).await.expect("and is answered");
    // Without its certificate the same client is turned away.
    conn.cert = None;
    conn.key = None;
    let refused = match cli::client::channel(&conn).await {
        Err(_) => true,
        Ok(channel) => {
            let request = cli::client::authed(&conn, pb::GetCheckpointRequest {}).unwrap();
            pb::ledger_client::LedgerClient::new(channel).get_checkpoint(request).await.is_err()
        }
    };
    assert!(refused);
    server.stop().await;
}
