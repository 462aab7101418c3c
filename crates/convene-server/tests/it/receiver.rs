//! A webhook receiver on 127.0.0.1 for the tests: it records every request and answers as told; it can be taken
//! down (connections refused) and brought up again on the same port, and it can serve HTTPS with a certificate from
//! the test CA in `tests/fixtures/tls`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Received {
    pub fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    /// The delivery as `tests/webhooks/verify.py` reads it.
    pub fn for_verifier(&self) -> Value {
        json!({ "headers": self.headers, "body": self.body })
    }
}

/// How the receiver answers.
#[derive(Clone, Debug)]
pub enum Answer {
    Ok,
    Status {
        status: u16,
        retry_after: Option<String>,
    },
    /// 200 after this long.
    Slow(Duration),
    /// 200 with this many bytes of body.
    Large(usize),
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Mutex<Answer>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
    tls: Option<TlsAcceptor>,
    running: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A receiver at `https://127.0.0.1:PORT/hook`, its certificate issued by the test CA (`ca.pem`).
    pub async fn start_tls() -> Self {
        Self::start_with(Some(test_ca_acceptor())).await
    }

    async fn start_with(tls: Option<TlsAcceptor>) -> Self {
        let shared = Shared { received: Arc::default(), answer: Arc::new(Mutex::new(Answer::Ok)) };
        let mut receiver = Self { addr: SocketAddr::from(([127, 0, 0, 1], 0)), shared, tls, running: None };
        receiver.up().await;
        receiver
    }

    /// `http://127.0.0.1:PORT/hook`, or `https://…` for a TLS receiver.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/hook", self.addr)
    }

    /// Listens again, on the same port once it had one.
    pub async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.expect("bind the receiver");
        self.addr = listener.local_addr().unwrap();
        let app = Router::new().route("/hook", post(hook)).with_state(self.shared.clone());
        let stop = CancellationToken::new();
        let stopped = {
            let stop = stop.clone();
            async move { stop.cancelled().await }
        };
        let server = match self.tls.clone() {
            None => tokio::spawn(async move {
                axum::serve(listener, app).with_graceful_shutdown(stopped).await.unwrap();
            }),
            Some(acceptor) => tokio::spawn(async move {
                let listener = TlsListener { tcp: listener, acceptor };
                axum::serve(listener, app).with_graceful_shutdown(stopped).await.unwrap();
            }),
        };
        self.running = Some((stop, server));
    }

    /// Stops listening: connections are refused until `up`.
    pub async fn down(&mut self) {
        if let Some((stop, server)) = self.running.take() {
            stop.cancel();
            server.await.unwrap();
        }
    }

    pub fn answer(&self, answer: Answer) {
        *self.shared.answer.lock().unwrap() = answer;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }
}

/// The test CA's path (`webhooks.ca_certificates` for a gateway that should trust `start_tls` receivers).
pub const TEST_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");

fn test_ca_acceptor() -> TlsAcceptor {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(format!("{dir}/server.pem"))
        .expect("server.pem")
        .collect::<Result<_, _>>()
        .expect("a certificate");
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/server.key")).expect("server.key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the test certificate and key");
    TlsAcceptor::from(Arc::new(config))
}

/// Accepts TCP connections and completes the TLS handshake; connections whose handshake fails (a client that does not
/// trust the certificate) are dropped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn hook(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = shared.answer.lock().unwrap().clone();
    if let Answer::Slow(wait) = answer {
        tokio::time::sleep(wait).await;
    }
    let headers = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or_default().to_owned()))
        .collect();
    shared.received.lock().unwrap().push(Received { headers, body: String::from_utf8_lossy(&body).into_owned() });
    match answer {
        Answer::Ok | Answer::Slow(_) => StatusCode::NO_CONTENT.into_response(),
        Answer::Large(n) => (StatusCode::OK, "x".repeat(n)).into_response(),
        Answer::Status { status, retry_after } => {
            let mut response = (StatusCode::from_u16(status).unwrap(), "not now").into_response();
            if let Some(after) = retry_after {
                response.headers_mut().insert("retry-after", HeaderValue::from_str(&after).unwrap());
            }
            response
        }
    }
}
