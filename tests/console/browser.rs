//! A headless Chromium driven over WebDriver (chromedriver), for the console's tests.
//!
//! The driver is `$ARQONBUS_CHROMEDRIVER` or `chromedriver` on the PATH (and the browser
//! `$ARQONBUS_CHROMIUM`, else the driver's default); `scripts/install-browser.sh`
//! installs both from Debian's packages. A missing driver fails the test and says so:
//! it never skips. The driver is started on a port it picks itself, in a process group
//! of its own, and [`Browser::close`] ends the session (the browser quits) and the
//! driver. If a test panics first, dropping the [`Browser`] does the same without the
//! runtime: a blocking `DELETE /session/<id>` to the driver (the browser runs in a
//! process group of its own, so killing the driver's would leave it running), then the
//! driver's process group is killed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long a test waits for the page to show something.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A laptop's window, for the screenshots.
pub(crate) const LAPTOP: (u32, u32) = (1360, 900);
/// A phone's.
pub(crate) const PHONE: (u32, u32) = (400, 860);

pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Child,
    /// The driver's port and the session's id, to end the session from `Drop`.
    port: u16,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

fn executable(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        names
            .iter()
            .map(|name| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

impl Browser {
    pub(crate) async fn start() -> Browser {
        let driver_path = executable("ARQONBUS_CHROMEDRIVER", &["chromedriver"]).unwrap_or_else(|| {
            panic!(
                "no chromedriver: run scripts/install-browser.sh (apt-get install chromium chromium-driver), \
                 or point ARQONBUS_CHROMEDRIVER at one"
            )
        });
        let mut command = Command::new(&driver_path);
        command
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut driver = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver_path.display()));
        let stdout = driver.stdout.take().expect("piped stdout");
        // The driver says which port it took; the rest of what it prints is drained.
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok())
                {
                    let _ = port_tx.send(port);
                }
            }
        });
        let port = match port_rx.recv_timeout(WAIT) {
            Ok(port) => port,
            Err(_) => {
                let _ = driver.kill();
                panic!("chromedriver did not say which port it listens on");
            }
        };
        let profile = tempfile::Builder::new()
            .prefix("arqon-chromium-")
            .tempdir()
            .expect("a temp dir for the browser's profile");
        let mut chrome = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                format!("--user-data-dir={}", profile.path().display()),
                format!("--window-size={},{}", LAPTOP.0, LAPTOP.1),
            ],
        });
        if let Some(binary) = executable("ARQONBUS_CHROMIUM", &[]) {
            chrome["binary"] = Value::from(binary.to_string_lossy().into_owned());
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".to_owned(), chrome);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut browser = Browser {
            client: match ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => client,
                Err(e) => {
                    kill_group(&mut driver);
                    panic!("cannot open a browser session: {e}");
                }
            },
            driver,
            port,
            session: None,
            _profile: profile,
        };
        browser.session = browser.client.session_id().await.ok().flatten();
        browser.resize(LAPTOP).await;
        browser
    }

    /// Ends the session (the browser quits), then the driver.
    pub(crate) async fn close(mut self) {
        let client = self.client.clone();
        if tokio::time::timeout(WAIT, client.close()).await.is_ok() {
            self.session = None;
        }
        self.end();
    }

    /// Ends the session if it is still open (blocking), then kills the driver's group.
    fn end(&mut self) {
        if let Some(session) = self.session.take() {
            end_session(self.port, &session);
        }
        kill_group(&mut self.driver);
    }

    pub(crate) async fn resize(&mut self, (width, height): (u32, u32)) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize the window");
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("open the page");
    }

    /// The element `css` finds, once it is there.
    pub(crate) async fn wait_for(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
    }

    /// Waits until one of the elements `css` finds contains `text`; returns its text.
    pub(crate) async fn wait_for_text(&self, css: &str, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            seen.clear();
            if let Ok(elements) = self.client.find_all(Locator::Css(css)).await {
                for element in elements {
                    if let Ok(shown) = element.text().await {
                        if shown.contains(text) {
                            return shown;
                        }
                        seen.push(shown);
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let page = match self.client.find(Locator::Css("body")).await {
                    Ok(body) => body.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!("no {css} showed {text:?}; seen: {seen:?}; the page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no element `css` finds contains `text`.
    pub(crate) async fn wait_without_text(&self, css: &str, text: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let shown = self.texts(css).await;
            if !shown.iter().any(|t| t.contains(text)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css} still shows {text:?}: {shown:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The texts of what `css` finds now.
    pub(crate) async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find elements")
        {
            texts.push(element.text().await.unwrap_or_default());
        }
        texts
    }

    /// Types `text` into the field `css` finds, replacing what it held.
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let field = self.wait_for(css).await;
        // Set at once (long tokens, JSON), then tell the page as typing would.
        self.client
            .execute(
                "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));",
                vec![serde_json::to_value(&field).expect("an element as JSON"), Value::from(text)],
            )
            .await
            .expect("fill a field");
    }

    pub(crate) async fn click(&self, css: &str) {
        self.wait_for(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// A PNG of the window.
    pub(crate) async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("a screenshot")
    }

    /// `sessionStorage` and `document.cookie` as the page sees them.
    pub(crate) async fn storage(&self) -> (Value, String) {
        let value = self
            .client
            .execute(
                "return [JSON.stringify(sessionStorage), document.cookie];",
                vec![],
            )
            .await
            .expect("read the storage");
        let storage = value[0]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        (storage, value[1].as_str().unwrap_or_default().to_owned())
    }
}

/// Kills the driver's process group, by its id.
fn kill_group(driver: &mut Child) {
    #[cfg(unix)]
    {
        // `--` is required: procps-ng's kill (4.0.2, Debian 12) reads `kill -KILL -12345`
        // as `kill(-1234, SIGKILL)`, the last digit dropped: another process group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", driver.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = driver.kill();
    let _ = driver.wait();
}

/// `DELETE /session/<id>` to the driver, which makes the browser quit; blocking, for
/// `Drop` (bounded by the timeouts).
fn end_session(port: u16, session: &str) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(WAIT));
    let _ = stream.set_write_timeout(Some(WAIT));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        // The answer comes once the browser has quit.
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if matches!(self.driver.try_wait(), Ok(None)) {
            self.end();
        }
    }
}
