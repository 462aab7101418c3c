//! `convene instance …`: commands that talk to a running Convene over its HTTP API.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;

/// How often pairing asks the server whether the phone has linked, and for the current QR code.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// One request's limit, so a stalled server cannot hold `pair` long past its `--timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Subcommand)]
pub enum InstanceCommand {
    /// Link a WhatsApp account to an instance: shows the pairing QR code (or a code to type on the phone) and
    /// waits until the phone has linked.
    Pair(PairArgs),
}

#[derive(Args)]
pub struct PairArgs {
    /// The instance to pair.
    id: String,
    /// The running Convene's base URL; by default the `listen` address of the configuration (file and
    /// `CONVENE_*` environment) that `serve` reads.
    #[arg(long, env = "CONVENE_URL")]
    url: Option<String>,
    /// An API key of the account that owns the instance.
    #[arg(long, env = "CONVENE_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Pair by typing a code on this phone (international format) instead of scanning a QR code.
    #[arg(long, value_name = "NUMBER")]
    phone: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
}

pub async fn run(command: InstanceCommand, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    match command {
        InstanceCommand::Pair(args) => pair(args, config).await,
    }
}

/// Where a server started with `listen` is reached from this machine: a wildcard address means its loopback.
fn local_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

async fn pair(args: PairArgs, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let url = match args.url {
        Some(url) => url,
        None => local_url(convene_server::Config::load(config)?.listen),
    };
    let api = Http::new(&url, &args.api_key, &args.id)?;
    let mut out = std::io::stdout();
    let mode = match &args.phone {
        Some(phone) => {
            let code = api.pairing_code(phone).await?;
            writeln!(out, "Pairing code: {} (expires {})", code.code, code.expires_at)?;
            writeln!(out, "On the phone: WhatsApp > Linked devices > Link a device > Link with phone number instead,")?;
            writeln!(out, "then type the code. Waiting…")?;
            Mode::PhoneCode
        }
        None => Mode::Qr,
    };
    let timeout = Duration::from_secs(args.timeout);
    wait_for_pairing(&api, mode, POLL_INTERVAL, timeout, &mut out)
        .await
        .with_context(|| format!("pairing instance {}", args.id))
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Draw each new QR code the server offers.
    Qr,
    /// The code was shown already; only wait.
    PhoneCode,
}

/// What pairing asks of the server: [`Http`] against a running Convene, a script in the tests.
trait PairingApi {
    async fn instance(&self) -> anyhow::Result<InstanceOut>;
    async fn qr(&self) -> anyhow::Result<Qr>;
}

#[derive(Debug, PartialEq)]
enum Qr {
    /// The payload to draw now.
    Code(String),
    /// The server has no QR code right now (409 `not_pairing`), and says why.
    NotPairing(String),
}

/// The part of `GET /v1/instances/{id}` that pairing reads.
#[derive(Deserialize)]
struct InstanceOut {
    state: StateOut,
    /// The server's `InstanceOut` calls it `phone`.
    phone: Option<String>,
}

#[derive(Deserialize)]
struct StateOut {
    /// `pairing`, `connected`, `disconnected`, …; kept as text so a status added later does not break the CLI.
    status: String,
}

/// A QR payload or a phone pairing code.
#[derive(Deserialize)]
struct CodeOut {
    code: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct ErrorOut {
    detail: String,
}

/// Polls until the instance is connected, drawing each new QR code (in QR mode), or fails after `timeout`.
async fn wait_for_pairing(
    api: &impl PairingApi,
    mode: Mode,
    interval: Duration,
    timeout: Duration,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    // What the screen shows: a QR code, or why there is none. Drawn again only when it changes.
    let mut shown: Option<Qr> = None;
    loop {
        let instance = api.instance().await?;
        if instance.state.status == "connected" {
            writeln!(out, "Paired: {}", instance.phone.as_deref().unwrap_or("(number not reported)"))?;
            return Ok(());
        }
        if mode == Mode::Qr {
            let qr = api.qr().await?;
            if shown.as_ref() != Some(&qr) {
                match &qr {
                    Qr::Code(payload) => {
                        let drawing = convene_server::qr::terminal(payload).context("drawing the QR code")?;
                        write!(out, "\x1b[2J\x1b[H{drawing}")?;
                        writeln!(out, "Scan with WhatsApp > Linked devices > Link a device (code rotates; waiting…)")?;
                    }
                    Qr::NotPairing(detail) => writeln!(out, "{}", sentence(detail))?,
                }
                out.flush()?;
                shown = Some(qr);
            }
        }
        if Instant::now() >= deadline {
            match &shown {
                Some(Qr::NotPairing(detail)) => bail!("no QR code within {} s: {detail}", timeout.as_secs()),
                _ => bail!("the phone did not link within {} s", timeout.as_secs()),
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// The server's words as a line of their own: first letter capitalised.
fn sentence(detail: &str) -> String {
    let mut chars = detail.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The instance's pairing endpoints on a running Convene.
struct Http {
    client: reqwest::Client,
    /// `{url}/v1/instances/{id}`
    instance_url: String,
    api_key: String,
}

impl Http {
    fn new(base_url: &str, api_key: &str, id: &str) -> anyhow::Result<Self> {
        convene_server::delivery::install_tls_provider();
        let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().context("building the HTTP client")?;
        let instance_url = format!("{}/v1/instances/{id}", base_url.trim_end_matches('/'));
        Ok(Self { client, instance_url, api_key: api_key.to_owned() })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        request.bearer_auth(&self.api_key).send().await.with_context(|| format!("requesting {}", self.instance_url))
    }

    async fn pairing_code(&self, phone: &str) -> anyhow::Result<CodeOut> {
        let body = serde_json::json!({ "phone_number": phone });
        let response = self.send(self.client.post(format!("{}/pairing-code", self.instance_url)).json(&body)).await?;
        if !response.status().is_success() {
            return Err(api_error(response).await);
        }
        response.json().await.context("reading the pairing code")
    }
}

impl PairingApi for Http {
    async fn instance(&self) -> anyhow::Result<InstanceOut> {
        let response = self.send(self.client.get(&self.instance_url)).await?;
        if !response.status().is_success() {
            return Err(api_error(response).await);
        }
        response.json().await.context("reading the instance")
    }

    async fn qr(&self) -> anyhow::Result<Qr> {
        let response = self.send(self.client.get(format!("{}/qr", self.instance_url))).await?;
        match response.status() {
            status if status.is_success() => {
                Ok(Qr::Code(response.json::<CodeOut>().await.context("reading the QR code")?.code))
            }
            StatusCode::CONFLICT => {
                Ok(Qr::NotPairing(response.json::<ErrorOut>().await.context("reading the 409 answer")?.detail))
            }
            _ => Err(api_error(response).await),
        }
    }
}

/// The server's `{"code", "detail"}` answer as an error, or its status alone when the body is not that.
async fn api_error(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    match response.json::<ErrorOut>().await {
        Ok(body) => anyhow!("{} ({status})", body.detail),
        Err(_) => anyhow!("the server answered {status}"),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;

    #[test]
    fn the_default_url_is_the_listen_address_with_a_wildcard_read_as_loopback() {
        assert_eq!(local_url("0.0.0.0:9090".parse().unwrap()), "http://127.0.0.1:9090");
        assert_eq!(local_url("[::]:8080".parse().unwrap()), "http://[::1]:8080");
        assert_eq!(local_url("10.1.2.3:80".parse().unwrap()), "http://10.1.2.3:80");
    }

    /// Answers each poll from a script: one status per `instance()`, one answer per `qr()`.
    struct Script {
        statuses: RefCell<VecDeque<&'static str>>,
        qrs: RefCell<VecDeque<Qr>>,
    }

    impl Script {
        fn new(statuses: &[&'static str], qrs: Vec<Qr>) -> Self {
            Self { statuses: RefCell::new(statuses.iter().copied().collect()), qrs: RefCell::new(qrs.into()) }
        }
    }

    impl PairingApi for Script {
        async fn instance(&self) -> anyhow::Result<InstanceOut> {
            let status = self.statuses.borrow_mut().pop_front().context("polled past the script")?;
            let phone = (status == "connected").then(|| "+15551234567".to_owned());
            Ok(InstanceOut { state: StateOut { status: status.to_owned() }, phone })
        }

        async fn qr(&self) -> anyhow::Result<Qr> {
            self.qrs.borrow_mut().pop_front().context("asked for a QR code the script does not have")
        }
    }

    fn code(payload: &str) -> Qr {
        Qr::Code(payload.to_owned())
    }

    async fn run_script(script: &Script, mode: Mode, timeout: Duration) -> (anyhow::Result<()>, String) {
        let mut out = Vec::new();
        let result = wait_for_pairing(script, mode, Duration::ZERO, timeout, &mut out).await;
        (result, String::from_utf8(out).unwrap())
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn each_new_qr_code_is_drawn_once_until_the_phone_links() {
        // Arrange
        let script = Script::new(
            &["pairing", "pairing", "pairing", "connected"],
            vec![code("2@first,a,b,c"), code("2@first,a,b,c"), code("2@second,a,b,c")],
        );
        let first = convene_server::qr::terminal("2@first,a,b,c").unwrap();
        let second = convene_server::qr::terminal("2@second,a,b,c").unwrap();

        // Act
        let (result, out) = run_script(&script, Mode::Qr, LONG).await;

        // Assert
        result.unwrap();
        assert_eq!(out.matches("\x1b[2J\x1b[H").count(), 2, "the screen is cleared once per new code");
        assert_eq!(out.matches(&first).count(), 1);
        assert_eq!(out.matches(&second).count(), 1);
        assert!(out.find(&first) < out.find(&second));
        assert_eq!(out.matches("Link a device (code rotates; waiting…)").count(), 2);
        assert!(out.ends_with("Paired: +15551234567\n"), "{out}");
        assert!(script.statuses.borrow().is_empty() && script.qrs.borrow().is_empty());
    }

    #[tokio::test]
    async fn a_missing_qr_code_is_explained_once_and_waited_for() {
        // Arrange
        let not_pairing = || Qr::NotPairing("no QR code right now: the instance is starting".to_owned());
        let script = Script::new(
            &["starting", "starting", "pairing", "connected"],
            vec![not_pairing(), not_pairing(), code("2@a")],
        );

        // Act
        let (result, out) = run_script(&script, Mode::Qr, LONG).await;

        // Assert
        result.unwrap();
        assert_eq!(out.matches("No QR code right now: the instance is starting\n").count(), 1);
        assert!(out.contains(&convene_server::qr::terminal("2@a").unwrap()));
        assert!(out.ends_with("Paired: +15551234567\n"));
    }

    #[tokio::test]
    async fn phone_code_pairing_only_waits_for_the_link() {
        // Arrange: no QR answers, so asking for one fails the test.
        let script = Script::new(&["pairing", "pairing", "connected"], vec![]);

        // Act
        let (result, out) = run_script(&script, Mode::PhoneCode, LONG).await;

        // Assert
        result.unwrap();
        assert_eq!(out, "Paired: +15551234567\n");
    }

    #[test]
    fn the_instance_number_is_read_from_the_apis_phone_field() {
        let body = r#"{"state":{"status":"connected"},"phone":"+15551234567","kind":"whatsapp"}"#;
        let instance: InstanceOut = serde_json::from_str(body).unwrap();
        assert_eq!(instance.phone.as_deref(), Some("+15551234567"));
    }

    #[tokio::test]
    async fn pairing_gives_up_after_the_timeout() {
        // Arrange
        let script = Script::new(&["pairing"], vec![code("2@a")]);

        // Act
        let (result, _) = run_script(&script, Mode::Qr, Duration::ZERO).await;

        // Assert
        assert!(result.unwrap_err().to_string().contains("did not link within 0 s"));
    }

    #[tokio::test]
    async fn giving_up_without_a_qr_code_says_why_there_was_none() {
        // Arrange
        let why = "no QR code: WhatsApp cannot be reached (since 2026-11-23T00:00:00Z): dns error; retrying";
        let script = Script::new(&["unreachable"], vec![Qr::NotPairing(why.to_owned())]);

        // Act
        let (result, out) = run_script(&script, Mode::Qr, Duration::ZERO).await;

        // Assert
        assert_eq!(out, "No QR code: WhatsApp cannot be reached (since 2026-11-23T00:00:00Z): dns error; retrying\n");
        assert_eq!(result.unwrap_err().to_string(), format!("no QR code within 0 s: {why}"));
    }
}
