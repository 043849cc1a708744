//! A real headless Chromium driven over W3C WebDriver with fantoccini: `chromedriver`
//! (Debian `chromium-driver`) started on a free loopback port and killed by its PID on
//! drop, after the session is ended (which quits Chromium). `Browser` and `Element` are the
//! few commands the UI tests need; they panic, with the page's state where it helps, when
//! a command fails. Screenshots go under `target/ui-screenshots/`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::child::ChildGuard;
use super::free_port;

/// Finding an element is retried this long (pages load after a click).
const FIND_WITHIN: Duration = Duration::from_secs(20);

/// Where the UI tests write their screenshots.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots")
}

/// A headless Chromium session. Dropping it ends the session, then kills chromedriver.
pub struct Browser {
    client: Client,
    /// The thread whose runtime runs fantoccini's session task (the HTTP connection to
    /// chromedriver), and the way to hand it the client to close: `Drop` is synchronous and
    /// blocks the test's runtime, so the session cannot be ended on that one.
    session: Option<(oneshot::Sender<Client>, JoinHandle<()>)>,
    /// Chromedriver stays in the test's process group: when nextest kills a hung test's
    /// group, no `Drop` runs, and chromedriver and Chromium must die with it.
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
        let (runtime_tx, runtime_rx) = std::sync::mpsc::channel();
        let (close_tx, close_rx) = oneshot::channel::<Client>();
        let session_thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the WebDriver session");
            let _ = runtime_tx.send(runtime.handle().clone());
            runtime.block_on(async {
                // The sender is dropped without a client when `start` panics.
                if let Ok(client) = close_rx.await {
                    let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
                }
            });
        });
        let session_runtime = runtime_rx.recv().expect("the WebDriver session thread");
        let client = session_runtime
            .spawn(async move {
                ClientBuilder::rustls()
                    .expect("a WebDriver client")
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{port}"))
                    .await
            })
            .await
            .expect("connecting to chromedriver")
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}"));
        Browser {
            client,
            session: Some((close_tx, session_thread)),
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

    /// Clicks the element matching `css` (a submit button, a link) and waits for the page it
    /// loads: the old document marked, then gone and the new one complete. A `find` after a
    /// plain click could see the old page when the new one has the same elements.
    pub async fn click_and_load(&self, css: &str) {
        self.execute("document.documentElement.dataset.salveOld = '1'; return true;")
            .await;
        self.find(css).await.click().await;
        let started = std::time::Instant::now();
        loop {
            let loaded = self
                .execute(
                    "return document.readyState === 'complete' \
                     && document.documentElement.dataset.salveOld === undefined;",
                )
                .await;
            if loaded == Value::Bool(true) {
                return;
            }
            assert!(
                started.elapsed() < FIND_WITHIN,
                "clicking {css:?} loaded no new page within {FIND_WITHIN:?} (still {})",
                self.current_url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        // Ending the session quits Chromium; killing chromedriver alone would leave it running.
        if let Some((close, thread)) = self.session.take() {
            let _ = close.send(self.client.clone());
            let _ = thread.join();
        }
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
