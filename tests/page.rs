//! The page at `/` in a real browser: Debian's chromium, headless, driven over WebDriver by
//! chromedriver. Upload an image, pick an operation, click, and check the returned bytes.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::reference_image;
use common::server::{Server, agent};
use gpuconv::{Border, Combine, Kernel, Operation};
use image::GrayImage;
use serde_json::{Value, json};

/// chromedriver's key for an element reference (W3C WebDriver).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless chromium session; the browser and its driver end when dropped.
struct Browser {
    driver: Child,
    session: String,
    agent: ureq::Agent,
}

impl Browser {
    /// `None` when chromium or chromedriver is missing (under `CI=true` that fails instead).
    fn start() -> Option<Self> {
        let missing: Vec<_> = ["chromium", "chromedriver"]
            .into_iter()
            .filter(|tool| {
                Command::new(tool)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map_or(true, |s| !s.success())
            })
            .collect();
        if !missing.is_empty() {
            let why = format!(
                "{} not installed (apt install chromium chromium-driver)",
                missing.join(" and ")
            );
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true but {why}"
            );
            eprintln!("skipping the browser test: {why}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut browser = Self {
            driver,
            session: format!("http://127.0.0.1:{port}/session"),
            agent: agent(),
        };
        let start = Instant::now();
        while browser
            .call("GET", &format!("http://127.0.0.1:{port}/status"), None)
            .is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--no-first-run",
                         "--disable-background-networking", "--disable-dev-shm-usage",
                         "--disable-gpu"],
            },
        }}});
        let session = browser
            .call("POST", &browser.session.clone(), Some(capabilities))
            .expect("a chromium session");
        let id = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser.session = format!("{}/{id}", browser.session);
        Some(browser)
    }

    /// One WebDriver command; its `value`, or its error.
    fn call(&self, method: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
        let response = match body {
            Some(body) => self
                .agent
                .post(url)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
            None if method == "DELETE" => self.agent.delete(url).call(),
            None => self.agent.get(url).call(),
        };
        let mut response = response.map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if status.is_success() {
            Ok(value["value"].clone())
        } else {
            Err(format!("{status}: {}", value["value"]))
        }
    }

    fn command(&self, path: &str, body: Value) -> Value {
        self.call("POST", &format!("{}{path}", self.session), Some(body))
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    fn go(&self, url: &str) {
        self.command("/url", json!({ "url": url }));
    }

    /// The element `css` selects.
    fn find(&self, css: &str) -> String {
        let found = self.command("/element", json!({ "using": "css selector", "value": css }));
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.command(&format!("/element/{element}/click"), json!({}));
    }

    /// Types `text` into the element `css` selects, after clearing it.
    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.command(&format!("/element/{element}/clear"), json!({}));
        self.command(
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        );
    }

    /// Gives a file input the file at `path`, as a user choosing it would.
    fn choose_file(&self, css: &str, path: &std::path::Path) {
        let element = self.find(css);
        self.command(
            &format!("/element/{element}/value"),
            json!({ "text": path.to_str().unwrap() }),
        );
    }

    fn script(&self, script: &str) -> Value {
        self.command("/execute/sync", json!({ "script": script, "args": [] }))
    }

    /// Clicks Filter and waits for the page to say it is done (or failed).
    fn run(&self) -> String {
        self.script("document.body.dataset.state = 'idle'; window.gpuconvResult = null;");
        self.click("#run");
        let start = Instant::now();
        loop {
            let state = self.script("return document.body.dataset.state");
            match state.as_str() {
                Some("done") | Some("error") => {
                    return self
                        .script("return document.getElementById('status').textContent")
                        .as_str()
                        .unwrap()
                        .to_owned();
                }
                _ => {}
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the page never finished"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The bytes of the image the page received.
    fn result(&self) -> GrayImage {
        let bytes: Vec<u8> = self
            .script("return Array.from(window.gpuconvResult)")
            .as_array()
            .expect("the page kept the result")
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        image::load_from_memory(&bytes).unwrap().to_luma8()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call("DELETE", &self.session, None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_page_uploads_filters_and_shows_the_reference_bits() {
    let Some(browser) = Browser::start() else {
        return;
    };
    for backend in ["cpu", "gpu"] {
        if let Some(server) = Server::start(backend, &[]) {
            try_the_page(&browser, &server, backend);
        }
    }
}

/// Every control of the page, once each, on `server`'s `backend`.
fn try_the_page(browser: &Browser, server: &Server, backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let image = common::random_image(61, 43, 255, 31);
    let path = dir.path().join("photo.png");
    image.save(&path).unwrap();
    let lines = || vec![Kernel::vertical_lines(), Kernel::horizontal_lines()];

    browser.go(&server.url("/"));
    browser.choose_file("#file", &path);
    // The original is shown as soon as it is chosen.
    let shown = browser.script("return document.getElementById('original').src");
    assert!(shown.as_str().unwrap().starts_with("blob:"), "{shown}");

    // The edge image with a replicated border.
    browser.click("#mode-edge");
    browser.click("#border option[value=replicate]");
    let status = browser.run();
    assert!(
        status.contains(&format!("61x43 on the {backend} backend")),
        "{status}"
    );
    let edge = Operation::new(lines(), Combine::Edge, false).unwrap();
    common::assert_same(
        &browser.result(),
        &reference_image(&image, &edge.with_border(Border::Replicate)),
        "edge, replicate",
    );
    let width = browser.script("return document.getElementById('result').naturalWidth");
    assert_eq!(width, 61, "the result is displayed");

    // A named kernel, valid border.
    browser.click("#mode-kernel");
    browser.click("#kernel option[value=horizontal]");
    browser.click("#border option[value=valid]");
    let status = browser.run();
    assert!(status.contains("59x41"), "{status}");
    common::assert_same(
        &browser.result(),
        &reference_image(
            &image,
            &Operation::responses(vec![Kernel::horizontal_lines()]).unwrap(),
        ),
        "horizontal",
    );

    // A 3×3 grid of weights typed in, reflected border.
    browser.click("#kernel option[value=grid]");
    let laplacian = ["0", "1", "0", "1", "-4", "1", "0", "1", "0"];
    for (i, weight) in laplacian.iter().enumerate() {
        browser.type_into(&format!("#w{i}"), weight);
    }
    browser.click("#border option[value=reflect]");
    browser.run();
    let grid = Kernel::parse("0,1,0;1,-4,1;0,1,0", "grid").unwrap();
    common::assert_same(
        &browser.result(),
        &reference_image(
            &image,
            &Operation::responses(vec![grid])
                .unwrap()
                .with_border(Border::Reflect),
        ),
        "typed grid, reflect",
    );

    // The threshold slider, moved with the keyboard as a user would: 255 down to 250.
    browser.click("#border option[value=valid]");
    let slider = browser.find("#threshold");
    browser.command(&format!("/element/{slider}/click"), json!({}));
    browser.script("const s = document.getElementById('threshold'); s.value = 255; s.dispatchEvent(new Event('input'));");
    let left = "\u{E012}".repeat(5);
    browser.command(&format!("/element/{slider}/value"), json!({ "text": left }));
    let shown = browser.script("return document.getElementById('threshold-value').textContent");
    assert_eq!(shown, "250");
    browser.run();
    common::assert_same(
        &browser.result(),
        &reference_image(
            &image,
            &Operation::new(lines(), Combine::Threshold(250), false).unwrap(),
        ),
        "threshold 250",
    );

    // A file that is not an image: the page shows the server's one line.
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image").unwrap();
    browser.choose_file("#file", &text);
    let status = browser.run();
    assert!(status.starts_with("415: cannot read image"), "{status}");
}
