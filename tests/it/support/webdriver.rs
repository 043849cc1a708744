//! A real headless Chromium driven over W3C WebDriver with fantoccini: `chromedriver`
//! (Debian `chromium-driver`) started on a free loopback port in its own process group,
//! which is killed by chromedriver's PID on drop (Chromium with it). `Browser` and
//! `Element` are the few commands the UI tests need; they panic, with the page's state
//! where it helps, when a command fails. Screenshots go under `target/ui-screenshots/`.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::child::ChildGuard;
use super::free_port;

/// Finding an element is retried this long (pages load after a click).
const FIND_WITHIN: Duration = Duration::from_secs(20);

/// Where the UI tests write their screenshots.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots")
}

/// A headless Chromium session. Dropping it kills chromedriver's process group, so
/// Chromium and its helpers end with it even when the test panicked.
pub struct Browser {
    client: Client,
    driver: ChildGuard,
    /// Chromium's profile; deleted after the processes that write it are gone.
    _profile: tempfile::TempDir,
}

/// An element of the current page.
pub struct Element {
    element: fantoccini::elements::Element,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (`--no-sandbox`: the tests run
    /// as root), `width`×`height` pixels. Panics when the bed has no chromedriver.
    pub async fn start(width: u32, height: u32) -> Browser {
        for binary in ["/usr/bin/chromedriver", "/usr/bin/chromium"] {
            assert!(
                std::path::Path::new(binary).exists(),
                "{binary} is missing: the test bed needs Debian's chromium and chromium-driver (scripts/testbed/install-packages.sh)"
            );
        }
        let port = free_port();
        let driver = ChildGuard::new(
            Command::new("/usr/bin/chromedriver")
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own group (id = its PID): Chromium, started by chromedriver, stays in it.
                .process_group(0)
                .spawn()
                .expect("start chromedriver"),
        );
        let profile = tempfile::Builder::new()
            .prefix("salve-ui-chromium-")
            .tempdir()
            .expect("a Chromium profile directory");
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-proxy-server",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("capabilities are a JSON object")
        };
        let client = ClientBuilder::rustls()
            .expect("a WebDriver client")
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}"));
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("WebDriver goto {url}: {e}"));
    }

    pub async fn current_url(&self) -> String {
        self.client
            .current_url()
            .await
            .unwrap_or_else(|e| panic!("WebDriver current_url: {e}"))
            .to_string()
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .unwrap_or_else(|e| panic!("WebDriver resize to {width}x{height}: {e}"));
    }

    /// The elements matching a CSS selector now (maybe none).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("WebDriver find_all {css:?}: {e}"))
            .into_iter()
            .map(|element| Element { element })
            .collect()
    }

    /// The first element matching a CSS selector, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let found = self
            .client
            .wait()
            .at_most(FIND_WITHIN)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => Element { element },
            Err(e) => panic!(
                "no element {css:?} on {} within {FIND_WITHIN:?} ({e}): {}",
                self.current_url().await,
                self.text("body").await
            ),
        }
    }

    /// The visible text of the first element matching `css` (empty when there is none).
    pub async fn text(&self, css: &str) -> String {
        match self.find_all(css).await.into_iter().next() {
            Some(element) => element.text().await,
            None => String::new(),
        }
    }

    /// Runs `script` in the page and returns its value.
    pub async fn execute(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("WebDriver execute {script:?}: {e}"))
    }

    /// Writes a PNG of the viewport as `target/ui-screenshots/NAME.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("WebDriver screenshot {name}: {e}"));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Drop is synchronous, so the session cannot be ended over WebDriver here (its
        // requests run on the test's runtime, blocked in this call). Killing the whole group
        // ends Chromium too; a plain kill of chromedriver would leave it running.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.pid())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.driver.kill_and_reap();
    }
}

impl Element {
    pub async fn click(&self) {
        self.element
            .click()
            .await
            .unwrap_or_else(|e| panic!("WebDriver click: {e}"));
    }

    /// Clears the field and types `text`.
    pub async fn type_text(&self, text: &str) {
        self.element
            .clear()
            .await
            .unwrap_or_else(|e| panic!("WebDriver clear: {e}"));
        self.element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("WebDriver type {text:?}: {e}"));
    }

    pub async fn text(&self) -> String {
        self.element
            .text()
            .await
            .unwrap_or_else(|e| panic!("WebDriver text: {e}"))
    }
}
