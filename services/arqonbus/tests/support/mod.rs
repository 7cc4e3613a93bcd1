//! Shared by the tests that run the `arqonbus` binary: a process with its output read
//! line by line, and waits bounded by [`WAIT`].

// Not every test file uses every helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A running `arqonbus` with its output read line by line.
pub(crate) struct Process {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

impl Process {
    pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_arqonbus"));
        command
            .args(args)
            .args(["--log-format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Only what the test sets: nothing inherited from the developer's shell.
        for (key, _) in std::env::vars() {
            if key.starts_with("ARQONBUS_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("spawn arqonbus");
        let stdout = lines(child.stdout.take().expect("stdout"));
        let stderr = lines(child.stderr.take().expect("stderr"));
        Self {
            child,
            stdout,
            stderr,
            stderr_seen: Vec::new(),
        }
    }

    /// The first stdout line containing `needle`.
    pub(crate) fn stdout_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stdout.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no stdout line with {needle:?}");
    }

    /// The first JSON log event with `message`.
    pub(crate) fn log_event(&mut self, message: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if let Ok(event) = serde_json::from_str::<Value>(&line)
                        && event["message"] == message
                    {
                        return event;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no log event {message:?}; stderr so far:\n{}",
            self.stderr_seen.join("\n")
        );
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "arqonbus did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything written to stderr, after the process exited.
    pub(crate) fn stderr_text(&mut self) -> String {
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(500)) {
            self.stderr_seen.push(line);
        }
        self.stderr_seen.join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
