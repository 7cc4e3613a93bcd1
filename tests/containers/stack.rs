//! A compose project started by a test: `docker compose up --wait` on the repository's
//! compose files under a project name of its own, and `docker compose down -v` when it is
//! dropped (also when the test fails, after printing the services' logs).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Bound on `up --wait` (images are built before the tests; this is start-up only).
const UP_TIMEOUT: Duration = Duration::from_secs(240);
/// Bound on any other docker or compose command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The environment the script gives the tests (scripts/test-containers.sh).
fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests through scripts/test-containers.sh")
    })
}

/// A running compose project.
#[derive(Debug)]
pub(crate) struct Stack {
    project: String,
    files: Vec<&'static str>,
    compose: Vec<String>,
    root: PathBuf,
}

impl Stack {
    /// `docker compose -f FILES up -d --wait`, the published ports on random loopback
    /// ports. Panics (after `down -v`) if a service does not become healthy.
    pub(crate) fn up(name: &str, files: &[&'static str]) -> Stack {
        let compose = setting("ARQONBUS_COMPOSE")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the repository root")
            .to_path_buf();
        let stack = Stack {
            project: format!("arqon-test-{name}-{}", std::process::id()),
            files: files.to_vec(),
            compose,
            root,
        };
        // Checked before anything starts: the image under test must exist.
        stack.docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &setting("ARQONBUS_IMAGE"),
        ]);
        stack.compose_bounded(&["up", "-d", "--wait", "--no-build"], UP_TIMEOUT);
        stack
    }

    /// Runs `docker compose …` on this project and returns its stdout; panics with its
    /// output when it fails.
    pub(crate) fn compose(&self, args: &[&str]) -> String {
        self.compose_bounded(args, COMMAND_TIMEOUT)
    }

    fn compose_bounded(&self, args: &[&str], timeout: Duration) -> String {
        stdout(run(self.command(args), timeout))
    }

    /// Runs `docker …` and returns its stdout; panics with its output when it fails.
    pub(crate) fn docker(&self, args: &[&str]) -> String {
        let mut command = Command::new("docker");
        command.args(args);
        stdout(run(command, COMMAND_TIMEOUT))
    }

    /// The running containers of `service`, by id.
    pub(crate) fn containers(&self, service: &str) -> Vec<String> {
        self.compose(&["ps", "-q", service])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The one running container of `service`.
    pub(crate) fn container(&self, service: &str) -> String {
        let containers = self.containers(service);
        assert_eq!(containers.len(), 1, "{service}: {containers:?}");
        containers[0].clone()
    }

    /// The container's address on the project's network (reachable from this host).
    pub(crate) fn ip(&self, container: &str) -> IpAddr {
        let text = self.docker(&[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            container,
        ]);
        text.split_whitespace()
            .next()
            .and_then(|ip| ip.parse().ok())
            .unwrap_or_else(|| panic!("no IP address for {container}: {text:?}"))
    }

    /// The host address a service's container port is published on.
    pub(crate) fn published(&self, service: &str, port: u16) -> SocketAddr {
        let text = self.compose(&["port", service, &port.to_string()]);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{service}:{port} is not published: {text:?}"))
    }

    /// The WebSocket URL of the load balancer (or of the standalone container).
    pub(crate) fn ws_url(&self, service: &str) -> String {
        format!("ws://{}/ws", self.published(service, 9100))
    }

    /// A token signed with the stack's secret, minted by `arqon token` inside a container
    /// of `service` (the image's CLI, the secret the compose file gave the service).
    pub(crate) fn token(&self, service: &str, tenant: &str, role: &str) -> String {
        self.compose(&[
            "exec", "-T", service, "arqon", "token", "--tenant", tenant, "--role", role, "--ttl",
            "3600",
        ])
        .trim()
        .to_owned()
    }

    /// Waits until `service` reports healthy (every container of it).
    pub(crate) fn wait_healthy(&self, service: &str) {
        let deadline = Instant::now() + UP_TIMEOUT;
        loop {
            let states: Vec<String> = self
                .containers(service)
                .iter()
                .map(|c| self.docker(&["inspect", "--format", "{{.State.Health.Status}}", c]))
                .map(|s| s.trim().to_owned())
                .collect();
            if !states.is_empty() && states.iter().all(|s| s == "healthy") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{service} not healthy: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Stack {
    /// `docker compose …` on this project, without running it. Published ports go to
    /// free loopback ports: never one something else uses.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.compose[0]);
        command.args(&self.compose[1..]).current_dir(&self.root);
        command.args(["--project-name", &self.project]);
        for file in &self.files {
            command.args(["-f", file]);
        }
        command
            .args(args)
            .env("ARQONBUS_LISTEN", "127.0.0.1:0")
            .env("ARQONBUS_HTTP_LISTEN", "127.0.0.1:0");
        command
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.command(&["logs", "--no-color", "--tail", "60"]);
            if let Ok(output) = run_unchecked(logs, COMMAND_TIMEOUT) {
                eprintln!(
                    "--- logs of {} ---\n{}",
                    self.project,
                    String::from_utf8_lossy(&output.stdout)
                );
            }
        }
        // Services of every profile, also those a test started by name (Prometheus).
        let profiles = run_unchecked(self.command(&["config", "--profiles"]), COMMAND_TIMEOUT)
            .map(stdout)
            .unwrap_or_default();
        let mut down = vec![];
        for profile in profiles.lines() {
            down.extend(["--profile", profile]);
        }
        down.extend(["down", "-v", "--remove-orphans", "--timeout", "5"]);
        match run_unchecked(self.command(&down), COMMAND_TIMEOUT) {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "compose down of {} failed: {}",
                self.project,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(e) => eprintln!("compose down of {} failed: {e}", self.project),
        }
    }
}

fn stdout(output: Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `command` to completion within `timeout`; panics with its output if it fails.
fn run(command: Command, timeout: Duration) -> Output {
    let description = format!("{command:?}");
    match run_unchecked(command, timeout) {
        Ok(output) if output.status.success() => output,
        Ok(output) => panic!(
            "{description} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => panic!("{description}: {e}"),
    }
}

/// Runs `command` within `timeout` (killed after it), collecting its output.
fn run_unchecked(mut command: Command, timeout: Duration) -> Result<Output, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    // Output is read on threads so a chatty command cannot block on a full pipe.
    let out = child.stdout.take().map(read_all);
    let err = child.stderr.take().map(read_all);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {timeout:?}; killed"));
            }
            Err(e) => return Err(format!("cannot wait: {e}")),
        }
    };
    let join = |handle: Option<std::thread::JoinHandle<Vec<u8>>>| {
        handle.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    Ok(Output {
        status,
        stdout: join(out),
        stderr: join(err),
    })
}

fn read_all(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}
