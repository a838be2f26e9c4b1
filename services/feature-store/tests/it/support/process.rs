//! Child processes of a test (the feature-store binary, a private `redis-server`): output to
//! a log file, SIGKILL or SIGTERM on request, and always killed when dropped, so a failing
//! test leaves nothing running.

#![allow(dead_code)]

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running child process, killed when dropped.
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Spawns `command` with its stdout and stderr in a log file named after `name`.
    pub fn spawn(mut command: Command, name: &str) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", stockcast_testkit::unique(name)));
        let out = File::create(&log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("log file")))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The last lines of the process's output, for failure messages.
    pub fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- last output of {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// Panics (with its output) when the process has exited.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("running");
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("{} exited with {status}\n{}", self.name, self.logs());
        }
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap the killed process");
    }

    /// SIGTERM, and waits (at most `deadline`) for the process to exit.
    pub fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        let pid = self.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let until = Instant::now() + deadline;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < until,
                "{} did not exit within {deadline:?} of SIGTERM\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Kept for a failing test, whose message names it.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
pub fn await_port(port: u16, process: &mut Process) {
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        process.assert_running();
        assert!(
            Instant::now() < until,
            "nothing listens on port {port} after 30 s\n{}",
            process.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
