//! Child processes of a test (a `stockcast` binary, a private `redis-server`, an MLflow
//! server): output captured in a log file for failure messages, waits for a port or a log
//! line that always end (with the output when they fail), signals, and a guard that kills and
//! reaps the process when dropped, so a failing test leaves nothing running.

use std::fs::File;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How many of the last output lines a failure message shows.
const TAIL_LINES: usize = 40;
/// How often waits look again.
const POLL: Duration = Duration::from_millis(20);

/// A running child process, killed and reaped when dropped.
///
/// Its stdout and stderr go to one log file (kept when the test fails, and named in the
/// message). [`ChildGuard::wait_for_line`] reads that output in order, each call after the
/// line the previous one returned.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    log: PathBuf,
    /// Complete lines of the log already returned by `wait_for_line`.
    read_lines: usize,
    /// Killing takes the child's whole process group (see `spawn_group`).
    group: bool,
}

impl ChildGuard {
    /// Spawns `command` with stdin closed and stdout and stderr in a log file named after
    /// `name`. Panics with the error when it cannot start.
    pub fn spawn(name: &str, command: Command) -> Self {
        Self::start(name, command, false)
    }

    /// Like [`ChildGuard::spawn`], in a process group of its own: killing it (and dropping
    /// it) also kills the workers it started, e.g. an MLflow server's.
    pub fn spawn_group(name: &str, mut command: Command) -> Self {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
        Self::start(name, command, true)
    }

    fn start(name: &str, mut command: Command, group: bool) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", crate::unique(name)));
        let out =
            File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot share {}: {e}", log.display()));
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            status: None,
            log,
            read_lines: 0,
            group,
        }
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("{} has been reaped", self.name))
    }

    /// The log file holding its stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything it has written so far (stdout and stderr).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of its output with a header naming it and the log file: what a
    /// failure message shows.
    pub fn logs(&self) -> String {
        let text = self.output();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- last output of {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
        )
    }

    /// Its exit status if it has exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(child) = self.child.as_mut()
        {
            self.status = child
                .try_wait()
                .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.name));
        }
        self.status
    }

    /// Panics with its output when it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_wait() {
            panic!("{} exited with {status}\n{}", self.name, self.logs());
        }
    }

    /// Waits until something accepts TCP connections at `addr` (`"127.0.0.1:port"`),
    /// failing with the output when the process exits first or after `within`.
    pub fn wait_for_port(&mut self, addr: &str, within: Duration) {
        let until = Instant::now() + within;
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .unwrap_or_else(|e| panic!("bad address {addr:?}: {e}"))
            .collect();
        while !addrs
            .iter()
            .any(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok())
        {
            self.assert_running();
            assert!(
                Instant::now() < until,
                "nothing listens on {addr} {within:?} after starting {}\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits for an output line containing `text`, after the line the previous call
    /// returned, and returns it. Fails with the output when the process exits without
    /// writing it or after `within`.
    pub fn wait_for_line(&mut self, text: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            // Only complete lines while it runs: a line being written may not hold all of
            // `text` yet.
            if let Some(line) = self.next_line_with(text, true) {
                return line;
            }
            if self.try_wait().is_some() {
                // It may have written the line just before exiting.
                if let Some(line) = self.next_line_with(text, false) {
                    return line;
                }
                panic!(
                    "{} exited ({:?}) without writing {text:?}\n{}",
                    self.name,
                    self.status,
                    self.logs()
                );
            }
            assert!(
                Instant::now() < until,
                "no {text:?} in the output of {} within {within:?}\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(POLL);
        }
    }

    /// The first line containing `text` after those already returned, marking it returned.
    fn next_line_with(&mut self, text: &str, complete_only: bool) -> Option<String> {
        let output = self.output();
        let output = if complete_only {
            output.rfind('\n').map_or("", |end| &output[..end])
        } else {
            &output
        };
        let line = output
            .lines()
            .enumerate()
            .skip(self.read_lines)
            .find(|(_, line)| line.contains(text));
        let (at, line) = line?;
        self.read_lines = at + 1;
        Some(line.to_owned())
    }

    /// Sends `signal` (`"TERM"`, `"INT"`, `"KILL"`, …) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let pid = self.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(
            sent.success(),
            "kill -{signal} {pid} ({}) failed",
            self.name
        );
    }

    /// Waits for it to exit; `None` if it still runs after `within`.
    pub fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM, and its exit status; fails with the output when it still runs after
    /// `within`.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.signal("TERM");
        self.exit_within(within).unwrap_or_else(|| {
            panic!(
                "{} did not exit within {within:?} of SIGTERM\n{}",
                self.name,
                self.logs()
            )
        })
    }

    /// SIGKILL (to its group when spawned with [`ChildGuard::spawn_group`]), and waits
    /// until it is gone. Does nothing when it has already been killed.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.group {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                .status();
        }
        let _ = child.kill();
        if let Ok(status) = child.wait() {
            self.status.get_or_insert(status);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
        // Kept for a failing test, whose message names it.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Whether the calling test should run its body here: `true` when this process is the test's
/// own, `false` after it has been run (and has passed) in a process of its own.
///
/// For tests that change what a process has only once (signal handlers, the global metrics
/// recorder or trace subscriber) or measure the process's memory. A crate's integration tests
/// are one binary, which `cargo test` runs as one process; nextest already gives each test its
/// own process, so there it is always `true`. `name` is the test's path in its binary, e.g.
/// `sigterm::sigterm_turns_not_serving`; the child's output is in the failure message.
pub fn in_own_process(name: &str) -> bool {
    const ALONE: &str = "STOCKCAST_TEST_ALONE";
    let per_process = std::env::var("NEXTEST_EXECUTION_MODE").as_deref() == Ok("process-per-test");
    if per_process || std::env::var(ALONE).as_deref() == Ok(name) {
        return true;
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current executable: {e}"));
    let mut command = Command::new(exe);
    command
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(ALONE, name);
    let mut child = ChildGuard::spawn(name, command);
    let status = child
        .exit_within(Duration::from_secs(600))
        .unwrap_or_else(|| panic!("{name} still runs after 600 s\n{}", child.logs()));
    let output = child.output();
    assert!(
        status.success() && output.contains("1 passed"),
        "{name} in its own process: {status}\n{}",
        child.logs()
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn lines_are_read_in_order_and_output_is_captured() {
        let mut child = ChildGuard::spawn(
            "printer",
            sh("echo 'port=1'; echo 'port=2' >&2; echo done; sleep 30"),
        );
        let first = child.wait_for_line("port=", Duration::from_secs(20));
        let second = child.wait_for_line("port=", Duration::from_secs(20));
        assert_eq!((first.as_str(), second.as_str()), ("port=1", "port=2"));
        child.wait_for_line("done", Duration::from_secs(20));
        assert!(child.logs().contains("last output of printer"));
        assert!(child.try_wait().is_none(), "still running");
    }

    #[test]
    #[should_panic(expected = "exited")]
    fn a_line_never_written_fails_when_the_process_exits() {
        let mut child = ChildGuard::spawn("quitter", sh("echo bye; exit 3"));
        child.wait_for_line("ready", Duration::from_secs(20));
    }

    #[test]
    #[should_panic(expected = "no \"ready\" in the output of sleeper")]
    fn a_line_never_written_fails_after_the_bound() {
        let mut child = ChildGuard::spawn("sleeper", sh("sleep 30"));
        child.wait_for_line("ready", Duration::from_millis(200));
    }

    #[test]
    fn drop_kills_and_reaps_the_process() {
        let child = ChildGuard::spawn("sleeper", sh("sleep 30"));
        let proc = PathBuf::from(format!("/proc/{}", child.id()));
        assert!(proc.exists());
        drop(child);
        assert!(!proc.exists(), "the process is gone, not left a zombie");
    }

    #[test]
    fn terminate_returns_the_exit_status() {
        let mut child = ChildGuard::spawn(
            "trapper",
            sh("trap 'echo stopping; exit 7' TERM; echo ready; while :; do sleep 0.05; done"),
        );
        child.wait_for_line("ready", Duration::from_secs(20));
        let status = child.terminate(Duration::from_secs(20));
        assert_eq!(status.code(), Some(7));
        assert!(child.output().contains("stopping"));
    }

    #[test]
    #[should_panic(expected = "nothing listens on 127.0.0.1:1")]
    fn a_port_never_opened_fails_after_the_bound() {
        let mut child = ChildGuard::spawn("sleeper", sh("sleep 30"));
        child.wait_for_port("127.0.0.1:1", Duration::from_millis(200));
    }
}
