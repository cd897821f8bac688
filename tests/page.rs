//! The page at `/` in a real browser: Debian's chromium, headless, driven over WebDriver by
//! chromedriver. The lesson's lab: images chosen, dropped, pasted; every panel's pixels read back
//! from its canvas and checked against the reference, and what is derived without sending.

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
    /// Where the browser saves what the page's download links give.
    downloads: tempfile::TempDir,
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
            downloads: tempfile::tempdir().unwrap(),
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
                "prefs": {
                    "download.default_directory": browser.downloads.path(),
                    "download.prompt_for_download": false,
                },
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

    /// Does `action`, which makes the page send an image, and waits for it to say it is done
    /// (or failed) with the answer; its status line.
    fn sent(&self, action: impl FnOnce()) -> String {
        let before = self.requests();
        self.script("document.body.dataset.state = 'idle';");
        action();
        let start = Instant::now();
        loop {
            let state = self.script("return document.body.dataset.state");
            if matches!(state.as_str(), Some("done" | "error")) && self.requests() > before {
                return self.status();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the page never finished: {}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn status(&self) -> String {
        self.script("return document.getElementById('status').textContent")
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// How many requests the page has sent to the filter.
    fn requests(&self) -> u64 {
        self.script("return window.gpuconvRequests")
            .as_u64()
            .unwrap()
    }

    /// The pixels of the panel `name`'s canvas, read back from it (gray: every channel
    /// equal, opaque, checked).
    fn panel(&self, name: &str) -> GrayImage {
        let read = self.script(&format!(
            "const c = document.getElementById('panel-{name}');
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             return [c.width, c.height, Array.from(d)];"
        ));
        let width = read[0].as_u64().unwrap() as u32;
        let height = read[1].as_u64().unwrap() as u32;
        let rgba: Vec<u8> = read[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        let gray: Vec<u8> = rgba
            .chunks_exact(4)
            .map(|p| {
                assert!(p[0] == p[1] && p[1] == p[2] && p[3] == 255, "{name}: {p:?}");
                p[0]
            })
            .collect();
        GrayImage::from_raw(width, height, gray).unwrap()
    }

    /// The image the panel `name`'s download link saves, clicked as a user would, named after
    /// the image shown (`stem`).
    fn download(&self, stem: &str, name: &str) -> GrayImage {
        let saved = self.downloads.path().join(format!("{stem}-{name}.png"));
        let _ = std::fs::remove_file(&saved);
        self.click(&format!("#download-{name}"));
        let start = Instant::now();
        loop {
            // Saved under a temporary name, then renamed when complete.
            if let Ok(bytes) = std::fs::read(&saved) {
                std::fs::remove_file(&saved).unwrap();
                return image::load_from_memory(&bytes).unwrap().to_luma8();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nothing saved: {:?}",
                common::listing(self.downloads.path())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Hands the page a file as a drop on its drop zone (`how` = "drop") or a paste
    /// ("paste"), as a user's drag or Ctrl+V would.
    fn hand_over(&self, how: &str, name: &str, bytes: &[u8]) {
        let script = format!(
            "const dt = new DataTransfer();
             dt.items.add(new File([new Uint8Array({bytes:?})], '{name}'));
             if ('{how}' === 'drop') {{
               document.getElementById('drop').dispatchEvent(
                 new DragEvent('drop', {{ dataTransfer: dt, bubbles: true, cancelable: true }}));
             }} else {{
               document.dispatchEvent(new ClipboardEvent('paste', {{ clipboardData: dt, bubbles: true }}));
             }}"
        );
        self.script(&script);
    }

    /// Fills the grid `g` (`v` or `h`) with nine comma-separated weights at once, then tells
    /// the page, as pasting into it would.
    fn set_grid(&self, g: &str, weights: &str) {
        self.script(&format!(
            "const w = '{weights}'.split(',');
             w.forEach((v, i) => {{ document.getElementById('{g}' + i).value = v; }});
             document.getElementById('{g}8').dispatchEvent(new Event('input'));"
        ));
    }

    /// Presses keys (WebDriver's codes) on the element `css` selects.
    fn keys(&self, css: &str, keys: &str) {
        let element = self.find(css);
        self.command(
            &format!("/element/{element}/value"),
            json!({ "text": keys }),
        );
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
fn the_page_is_the_lessons_lab_drawn_from_the_reference_bits() {
    let Some(browser) = Browser::start() else {
        return;
    };
    for backend in ["cpu", "gpu"] {
        if let Some(server) = Server::start(backend, &[]) {
            try_the_page(&browser, &server, backend);
        }
    }
}

fn edge(v: Kernel, h: Kernel, border: Border) -> Operation {
    Operation::new(vec![v, h], Combine::Edge, false)
        .unwrap()
        .with_border(border)
}

fn threshold(v: Kernel, h: Kernel, t: u16, border: Border) -> Operation {
    Operation::new(vec![v, h], Combine::Threshold(t), false)
        .unwrap()
        .with_border(border)
}

fn one(kernel: Kernel, border: Border) -> Operation {
    Operation::responses(vec![kernel])
        .unwrap()
        .with_border(border)
}

/// Every panel against the reference for kernels `v` and `h`, `border` and threshold `t`.
fn assert_panels(
    browser: &Browser,
    image: &GrayImage,
    (v, h): (&Kernel, &Kernel),
    border: Border,
    t: u16,
    what: &str,
) {
    common::assert_same(
        &browser.panel("original"),
        image,
        &format!("{what}: original"),
    );
    for (name, operation) in [
        ("vertical", one(v.clone(), border)),
        ("horizontal", one(h.clone(), border)),
        ("edge", edge(v.clone(), h.clone(), border)),
        ("threshold", threshold(v.clone(), h.clone(), t, border)),
    ] {
        common::assert_same(
            &browser.panel(name),
            &reference_image(image, &operation),
            &format!("{what}: {name}"),
        );
    }
}

/// Every control of the page, on `server`'s `backend`: each panel's pixels are read back from
/// its canvas and compared with the reference.
fn try_the_page(browser: &Browser, server: &Server, backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let image = common::random_image(61, 43, 255, 31);
    let path = dir.path().join("photo.png");
    image.save(&path).unwrap();
    let (vertical, horizontal) = (Kernel::vertical_lines(), Kernel::horizontal_lines());

    browser.go(&server.url("/"));
    // The lesson's 5×5 example, computed by the server as the page loads.
    let start = Instant::now();
    let result = loop {
        let cells = browser.script(
            "return Array.from(document.querySelectorAll('#example figure:last-of-type td'), (c) => c.textContent)",
        );
        let cells = cells.as_array().unwrap();
        if cells.len() == 9 && browser.requests() == 1 {
            break cells.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no 5×5 example");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        result,
        ["4", "3", "4", "2", "4", "3", "2", "3", "4"].map(Value::from)
    );

    // An upload: five panels from one request.
    let status = browser.sent(|| browser.choose_file("#file", &path));
    assert!(status.contains(&format!("{backend} backend")), "{status}");
    assert!(status.contains(" ms on the server's"), "{status}");
    let shown = browser.script("return document.getElementById('shown').textContent");
    assert_eq!(shown, "Showing photo.png: 61×43 → 59×41 (border valid)");
    assert_eq!(browser.requests(), 2);
    assert_panels(
        browser,
        &image,
        (&vertical, &horizontal),
        Border::Valid,
        255,
        "upload",
    );
    common::assert_same(
        &browser.download("photo", "edge"),
        &reference_image(
            &image,
            &edge(vertical.clone(), horizontal.clone(), Border::Valid),
        ),
        "the edge panel's download",
    );

    // The threshold slider, moved with the keyboard: 255 down to 250, nothing sent.
    browser.keys("#threshold", &"\u{E012}".repeat(5));
    let shown = browser.script("return document.getElementById('threshold-value').textContent");
    assert_eq!(shown, "250");
    assert_eq!(browser.requests(), 2, "the slider sends nothing");
    assert_panels(
        browser,
        &image,
        (&vertical, &horizontal),
        Border::Valid,
        250,
        "slider",
    );

    // V's grid filled in as V + H (in one go, as a paste would: typed, a pause between two
    // keys may send the image): a combination of the kernels applied, derived, nothing sent.
    browser.set_grid("v", "2,2,0,2,0,-2,0,-2,-2");
    assert!(
        browser.status().starts_with("V and H drawn from the sums"),
        "{}",
        browser.status()
    );
    assert_eq!(browser.requests(), 2, "a derivable kernel sends nothing");
    let summed = Kernel::parse("2,2,0;2,0,-2;0,-2,-2", "sum").unwrap();
    assert_panels(
        browser,
        &image,
        (&summed, &horizontal),
        Border::Valid,
        250,
        "V + H",
    );
    // Beyond the weights the service takes: not derived, sent, and refused by the server.
    let status = browser.sent(|| browser.set_grid("v", "100000,0,0,0,0,0,0,0,0"));
    assert!(
        status.contains("larger in magnitude than the maximum"),
        "{status}"
    );

    // H's grid typed key by key as a Laplacian, which no combination gives: the image goes
    // again once the typing stops.
    browser.set_grid("v", "2,2,0,2,0,-2,0,-2,-2");
    let laplacian = Kernel::parse("0,1,0;1,-4,1;0,1,0", "laplacian").unwrap();
    let before = browser.requests();
    browser.sent(|| {
        for (i, weight) in ["0", "1", "0", "1", "-4", "1", "0", "1", "0"]
            .iter()
            .enumerate()
        {
            browser.type_into(&format!("#h{i}"), weight);
        }
    });
    assert!(browser.requests() > before, "the image is sent again");
    assert_panels(
        browser,
        &image,
        (&summed, &laplacian),
        Border::Valid,
        250,
        "laplacian",
    );

    // Edited back while the Laplacian's answer is on its way: that answer, arriving late, does
    // not win over the grid (H is sent again, since no combination of V + H and the Laplacian
    // gives it).
    browser.sent(|| {
        browser.set_grid("h", "1,0,1,0,1,0,1,0,1");
        let sent = browser.requests();
        let start = Instant::now();
        while browser.requests() == sent {
            assert!(start.elapsed() < Duration::from_secs(10), "never sent");
            std::thread::sleep(Duration::from_millis(5));
        }
        browser.set_grid("h", "1,2,1,0,0,0,-1,-2,-1");
    });
    assert_panels(
        browser,
        &image,
        (&summed, &horizontal),
        Border::Valid,
        250,
        "edited while an answer was awaited",
    );
    browser.sent(|| browser.set_grid("h", "0,1,0,1,-4,1,0,1,0"));

    // Another border, and the presets back: sent again.
    browser.sent(|| browser.click("#border option[value=replicate]"));
    assert_panels(
        browser,
        &image,
        (&summed, &laplacian),
        Border::Replicate,
        250,
        "replicate",
    );
    browser.sent(|| {
        browser.click("#v-preset option[value=vertical]");
        browser.click("#h-preset option[value=horizontal]");
    });
    assert_panels(
        browser,
        &image,
        (&vertical, &horizontal),
        Border::Replicate,
        250,
        "presets",
    );

    // A fractional preset: sums in float64 beside V's whole ones, rounded half to even.
    browser.sent(|| browser.click("#h-preset option[value=box-blur]"));
    let blur = Kernel::named("box-blur").unwrap();
    assert_panels(
        browser,
        &image,
        (&vertical, &blur),
        Border::Replicate,
        250,
        "box-blur",
    );
    browser.sent(|| browser.click("#h-preset option[value=horizontal]"));

    // The lesson's stripes, chosen with the keyboard: the numbers are shown too.
    browser.click("#border option[value=valid]");
    browser.sent(|| browser.keys("button[data-name='stripe-vertical.pgm']", "\u{E007}"));
    let stripes = gpuconv::io::load_gray(std::path::Path::new("img/stripe-vertical.pgm")).unwrap();
    assert_panels(
        browser,
        &stripes,
        (&vertical, &horizontal),
        Border::Valid,
        250,
        "stripes",
    );
    let numbers = browser.script("return document.querySelectorAll('#numbers td').length");
    assert_eq!(numbers, 49 + 25 + 25, "the stripes' matrices");

    // The arrows, with a click.
    browser.sent(|| browser.click("button[data-name='arrows.png']"));
    let arrows = gpuconv::io::load_gray(std::path::Path::new("img/arrows.png")).unwrap();
    assert_panels(
        browser,
        &arrows,
        (&vertical, &horizontal),
        Border::Valid,
        250,
        "arrows",
    );

    // Dropped and pasted files.
    let dropped = common::random_image(9, 7, 255, 5);
    browser.sent(|| browser.hand_over("drop", "dropped.png", &common::png(&dropped)));
    assert_panels(
        browser,
        &dropped,
        (&vertical, &horizontal),
        Border::Valid,
        250,
        "dropped",
    );
    let pasted = common::random_image(17, 11, 200, 6);
    browser.sent(|| browser.hand_over("paste", "image.png", &common::png(&pasted)));
    assert_panels(
        browser,
        &pasted,
        (&vertical, &horizontal),
        Border::Valid,
        250,
        "pasted",
    );

    // A file that is not an image: the page shows the server's one line.
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image").unwrap();
    let status = browser.sent(|| browser.choose_file("#file", &text));
    assert!(status.starts_with("415: cannot read image"), "{status}");

    // A weight that is not a number: named, marked, nothing sent; another image chosen
    // meanwhile is not drawn from the old sums once the weight is mended.
    browser.sent(|| browser.click("button[data-name='arrows.png']"));
    let before = browser.requests();
    browser.type_into("#h4", "x");
    assert_eq!(
        browser.status(),
        "The horizontal weight in row 2, column 2 is not a number."
    );
    let marked =
        browser.script("return document.getElementById('h4').getAttribute('aria-invalid')");
    assert_eq!(marked, "true");
    browser.click("button[data-name='stripe-horizontal.pgm']");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(browser.requests(), before, "nothing sent with a bad weight");
    browser.sent(|| browser.type_into("#h4", "0"));
    let stripes =
        gpuconv::io::load_gray(std::path::Path::new("img/stripe-horizontal.pgm")).unwrap();
    assert_panels(
        browser,
        &stripes,
        (&vertical, &horizontal),
        Border::Valid,
        250,
        "mended after another image",
    );

    // On a phone-sized window nothing is wider than the screen, a 12×12 image's matrices
    // included.
    browser.command("/window/rect", json!({ "width": 390, "height": 844 }));
    let small = common::random_image(12, 12, 255, 8);
    browser.sent(|| browser.hand_over("drop", "small.png", &common::png(&small)));
    let numbers = browser.script("return document.querySelectorAll('#numbers td').length");
    assert_eq!(numbers, 144 + 100 + 100);
    let overflow = browser.script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    );
    assert_eq!(overflow, 0, "the page scrolls sideways on a phone");
    browser.command("/window/rect", json!({ "width": 1280, "height": 900 }));
}
