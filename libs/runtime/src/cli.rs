//! The command line every service shares, and the bootstrap that turns it into a running
//! server: load and validate config (exit 64 on a bad one), start telemetry, bind, serve,
//! shut down in order.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{ConfigSource, Settings, load, render};
use crate::settings::{LogFormat, ServerSettings, TelemetrySettings};
use crate::shutdown::Shutdown;
use crate::start::StartError;
use crate::{EXIT_CONFIG, metrics, telemetry};

/// Settings of a whole service: its own sections plus the shared ones.
pub trait ServiceSettings: Settings {
    /// The `[server]` section.
    fn server(&self) -> &ServerSettings;
    /// The `[telemetry]` section.
    fn telemetry(&self) -> &TelemetrySettings;
}

/// Flags shared by every service binary and by `stockcast serve <service>`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServiceArgs {
    /// Config file (TOML, YAML or JSON); environment variables
    /// `STOCKCAST_<SERVICE>__SECTION__KEY` and flags override it.
    #[arg(long, env = "STOCKCAST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// gRPC listen address (`server.grpc_addr`).
    #[arg(long, value_name = "ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Prometheus `/metrics` listen address (`server.metrics_addr`).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Log format (`telemetry.log_format`).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Sets any config key, highest precedence; repeatable: `--set server.concurrency_limit=64`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Prints the effective configuration (secrets redacted) and exits.
    #[arg(long)]
    pub print_config: bool,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl ServiceArgs {
    /// The config source for `service`: these flags over the process environment over
    /// `defaults`.
    pub fn config_source(&self, service: &str, defaults: &[(&str, &str)]) -> ConfigSource {
        let mut source = ConfigSource::from_process(service);
        source.defaults = defaults
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        source.file = self.config.clone();
        if let Some(addr) = self.grpc_addr {
            source.overrides.push(format!("server.grpc_addr={addr}"));
        }
        if let Some(addr) = self.metrics_addr {
            source.overrides.push(format!("server.metrics_addr={addr}"));
        }
        if let Some(format) = self.log_format {
            let format = match format {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            };
            let name = match format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            };
            source
                .overrides
                .push(format!("telemetry.log_format={name}"));
        }
        source.overrides.extend(self.set.iter().cloned());
        source
    }
}

/// Runs one service as a process: loads `T` for `service` (over `defaults`), then calls
/// `serve(settings, listener, shutdown)` until SIGTERM/SIGINT, then flushes telemetry.
pub async fn run<T, F, Fut>(
    service: &'static str,
    defaults: &[(&str, &str)],
    args: &ServiceArgs,
    serve: F,
) -> ExitCode
where
    T: ServiceSettings,
    F: FnOnce(T, TcpListener, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), StartError>>,
{
    let settings: T = match load(&args.config_source(service, defaults)) {
        Ok(settings) => settings,
        Err(error) => {
            report(&format!(
                "stockcast {service}: invalid configuration: {error}"
            ));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.print_config {
        return match render(&settings) {
            Ok(text) => {
                print_stdout(&text);
                ExitCode::SUCCESS
            }
            Err(error) => {
                report(&format!("stockcast {service}: {error}"));
                ExitCode::FAILURE
            }
        };
    }
    let guard = match telemetry::init(service, settings.telemetry()) {
        Ok(guard) => guard,
        Err(error) => {
            report(&format!(
                "stockcast {service}: invalid configuration: {error}"
            ));
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let shutdown = Shutdown::on_signals();
    let server = settings.server().clone();
    let listener = match TcpListener::bind(server.grpc_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(addr = %server.grpc_addr, %error, "cannot bind server.grpc_addr");
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = server.metrics_addr
        && let Err(error) = metrics::spawn(addr, shutdown.clone()).await
    {
        tracing::error!(%addr, %error, "cannot bind server.metrics_addr");
        return ExitCode::FAILURE;
    }

    let outcome = serve(settings, listener, shutdown).await;
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Interrupted(dependency)) => {
            tracing::info!(
                service,
                dependency,
                "stopped before the dependency was reachable"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(service, %error, "service failed");
            ExitCode::FAILURE
        }
    };
    guard.shutdown(Duration::from_secs(5));
    code
}

#[allow(clippy::print_stderr)]
fn report(message: &str) {
    eprintln!("{message}");
}

/// Writes `text` and a line end to stdout. A reader that stopped early (`--print-config |
/// head`) closes the pipe; that is not an error, and `println!` would panic on it.
fn print_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
}
