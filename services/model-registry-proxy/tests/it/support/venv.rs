//! The Python venv of the test servers (`scripts/deps.sh up mlflow` fills it): an MLflow
//! server of a test's own, and the mlflow client.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use stockcast_testkit::process::ChildGuard;

/// The venv: `STOCKCAST_VENV`, else `~/.cache/stockcast/venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("STOCKCAST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache")
                });
            cache.join("stockcast").join("venv")
        })
}

/// A program of the venv, failing loudly with how to install it.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `scripts/deps.sh up mlflow`, which installs mlflow, skl2onnx and \
         onnxruntime into the venv (or set STOCKCAST_VENV)",
        path.display()
    );
    path
}

/// An MLflow tracking server of this test alone, on a free port, that the test can kill.
pub struct OwnMlflow {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl OwnMlflow {
    /// Starts the server and waits until its REST API answers.
    pub async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    /// Starts the server with extra environment variables.
    pub async fn start_with_env(env: &[(&str, &str)]) -> Self {
        let mlflow = venv_bin("mlflow");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = stockcast_testkit::free_port();
        let artifacts = dir.path().join("artifacts");
        std::fs::create_dir_all(&artifacts).expect("artifacts dir");
        let mut command = Command::new(mlflow);
        command
            .current_dir(dir.path())
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .envs(env.iter().copied())
            .args(["server", "--backend-store-uri"])
            .arg(format!("sqlite:///{}/mlflow.db", dir.path().display()))
            .arg("--serve-artifacts")
            .arg("--artifacts-destination")
            .arg(&artifacts)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
            ]);
        // Its own process group: killing the group takes its workers too.
        let child = ChildGuard::spawn_group("mlflow", command);
        let mut server = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let probe = format!(
            "{}/api/2.0/mlflow/registered-models/search?max_results=1",
            self.url
        );
        let client = reqwest::Client::new();
        loop {
            // Fails with its output when it exited during start-up.
            self.child.assert_running();
            let ok = client
                .get(&probe)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mlflow at {} did not answer within 180 s",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the server and its workers (SIGKILL to its process group) and waits for it.
    pub fn kill(&mut self) {
        self.child.kill();
    }
}
