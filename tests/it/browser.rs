//! The web page in a real headless Chromium (Debian's `chromium`), driven
//! over the DevTools protocol on a pipe (`--remote-debugging-pipe`: the
//! browser reads commands on fd 3 and answers on fd 4, NUL-terminated
//! JSON), with the QR code read back by `zbarimg` (Debian's `zbar-tools`).
//!
//! It loads a seeded enterprise's public page, screenshots it, decodes the
//! QR code from the screenshot and checks the decoded text with `ecocode
//! attest verify`; then it signs in as the enterprise by typing the token
//! into the sign-in form, submits a rectification with the page's own form
//! and checks that the page shows it pending; then the regulator's list and
//! the lender's portfolio. `.ci/run` installs both packages; without them
//! this test fails, it never skips. `ECOCODE_UPDATE_SCREENSHOTS=1` copies
//! the screenshots to `docs/screenshots/` (they are committed).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use server::principals::Role;

use crate::support::*;

/// Longest wait for one answer or event of the browser.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
const WIDTH: u64 = 412;

/// One headless Chromium with one page, over the DevTools pipe.
struct Browser {
    child: Child,
    commands: ChildStdin,
    messages: mpsc::Receiver<Value>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

fn require(tool: &str) {
    let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "{tool} is not installed: the browser test needs Debian's chromium and zbar-tools \
         (`apt-get install -y chromium zbar-tools fonts-wqy-microhei`; .ci/run installs them)"
    );
}

impl Browser {
    fn start() -> Browser {
        require("chromium");
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("bash")
            .args([
                "-c",
                // fd 3 reads our commands (stdin), fd 4 writes its answers (stdout).
                r#"exec chromium "$@" --remote-debugging-pipe 3<&0 4>&1 </dev/null >/dev/null"#,
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--lang=zh-CN",
                &format!("--user-data-dir={}", profile.path().display()),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let commands = child.stdin.take().unwrap();
        let mut answers = BufReader::new(child.stdout.take().unwrap());
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut message = Vec::new();
            while answers.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop();
                if let Ok(value) = serde_json::from_slice(&message)
                    && tx.send(value).is_err()
                {
                    return;
                }
                message.clear();
            }
        });
        let mut browser =
            Browser { child, commands, messages, session: String::new(), next_id: 0, _profile: profile };
        let target = browser.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().unwrap().to_owned();
        let attached =
            browser.call_browser("Target.attachToTarget", json!({"targetId": target, "flatten": true}));
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Page.enable", json!({}));
        browser.resize(900);
        browser
    }

    fn send(&mut self, method: &str, params: Value, session: Option<String>) -> u64 {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        self.commands.flush().unwrap();
        self.next_id
    }

    fn next_message(&self, waiting_for: &str) -> Value {
        self.messages
            .recv_timeout(ANSWER_TIMEOUT)
            .unwrap_or_else(|e| panic!("no answer from chromium while waiting for {waiting_for}: {e}"))
    }

    fn answer(&self, id: u64, method: &str) -> Value {
        loop {
            let message = self.next_message(method);
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params, None);
        self.answer(id, method)
    }

    /// A command to the page.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params, Some(self.session.clone()));
        self.answer(id, method)
    }

    /// Drops the events already received (commands are answered one at a
    /// time, so nothing else is pending): the next `load` awaited is the
    /// one the coming action causes.
    fn forget_events(&self) {
        while self.messages.try_recv().is_ok() {}
    }

    /// Waits for the page's next `load` event (events queue in order, so
    /// none is missed between the action and this call).
    fn wait_load(&self) {
        loop {
            if self.next_message("Page.loadEventFired")["method"] == "Page.loadEventFired" {
                return;
            }
        }
    }

    fn open(&mut self, url: &str) {
        self.forget_events();
        self.call("Page.navigate", json!({"url": url}));
        self.wait_load();
    }

    /// Evaluates JavaScript in the page through DevTools (the page itself
    /// has none and allows none), as a person's hands and eyes would act.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true}));
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Types into a field, as a person does.
    fn type_into(&mut self, selector: &str, text: &str) {
        self.eval(&format!("document.querySelector({}).focus()", json!(selector)));
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Clicks a button and waits for the page that answers.
    fn click_and_wait(&mut self, selector: &str) {
        self.forget_events();
        let found = self.eval(&format!(
            "(() => {{ const b = document.querySelector({}); if (!b) return false; b.click(); return true; }})()",
            json!(selector)
        ));
        assert_eq!(found, json!(true), "no {selector} on {}", self.text());
        self.wait_load();
    }

    /// Chooses a file in a file input, as the file picker does.
    fn choose_file(&mut self, selector: &str, file: &Path) {
        let root = self.call("DOM.getDocument", json!({}))["root"]["nodeId"].clone();
        let node =
            self.call("DOM.querySelector", json!({"nodeId": root, "selector": selector}))["nodeId"].clone();
        self.call("DOM.setFileInputFiles", json!({"nodeId": node, "files": [file.to_str().unwrap()]}));
    }

    fn text(&mut self) -> String {
        self.eval("document.body.innerText").as_str().unwrap_or_default().to_owned()
    }

    fn location(&mut self) -> String {
        self.eval("location.href").as_str().unwrap_or_default().to_owned()
    }

    fn resize(&mut self, height: u64) {
        self.resize_to(WIDTH, height);
    }

    fn resize_to(&mut self, width: u64, height: u64) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 760}),
        );
    }

    /// Whether the page fits `width` without scrolling sideways.
    fn fits(&mut self, width: u64) -> bool {
        self.resize_to(width, 900);
        let wide = self.eval("document.documentElement.scrollWidth").as_u64().unwrap_or(u64::MAX);
        self.resize(900);
        wide <= width
    }

    /// A screenshot of the whole page at phone width, written to `path`.
    fn screenshot(&mut self, path: &Path) {
        self.screenshot_at(WIDTH, path);
    }

    fn screenshot_at(&mut self, width: u64, path: &Path) {
        self.resize_to(width, 900);
        let height = self.eval("document.documentElement.scrollHeight").as_u64().unwrap_or(900);
        self.resize_to(width, height.clamp(600, 8000));
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
        self.resize(900);
    }

    /// A screenshot of the element `selector` alone, scaled so that it is
    /// `px` pixels wide: a print size (3 cm at 300 dpi is 354 px).
    fn screenshot_element(&mut self, selector: &str, px: f64, path: &Path) {
        self.resize_to(WIDTH, 900);
        let height = self.eval("document.documentElement.scrollHeight").as_u64().unwrap_or(900);
        self.resize_to(WIDTH, height.clamp(600, 8000));
        let rect = self.eval(&format!(
            "(() => {{ const r = document.querySelector('{selector}').getBoundingClientRect(); \
             return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]; }})()"
        ));
        let rect: Vec<f64> = rect.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let clip =
            json!({"x": rect[0], "y": rect[1], "width": rect[2], "height": rect[3], "scale": px / rect[2]});
        let shot = self.call("Page.captureScreenshot", json!({"format": "png", "clip": clip}));
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
        self.resize(900);
    }
}

/// Width and height of a PNG, from its header.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of the QR code in a PNG, as `zbarimg` reads it.
fn decode_qr(png: &Path) -> String {
    require("zbarimg");
    let out = Command::new("zbarimg").args(["--raw", "-q"]).arg(png).output().expect("zbarimg runs");
    assert!(
        out.status.success(),
        "zbarimg found no QR code in {}: {}",
        png.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// `ecocode attest verify FILE --public-key KEY`, through the binary's own
/// argument parser and command.
async fn ecocode_attest_verify(file: &Path, key: &str) -> anyhow::Result<()> {
    use clap::Parser;
    let cli = cli::cli::Cli::try_parse_from([
        "ecocode",
        "attest",
        "verify",
        file.to_str().unwrap(),
        "--public-key",
        key,
    ])?;
    cli::cli::run(cli.command).await
}

fn keep_screenshot(shot: &Path, name: &str) {
    if std::env::var_os("ECOCODE_UPDATE_SCREENSHOTS").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(shot, docs.join(name)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_scans_the_qr_verifies_it_and_the_enterprise_files_a_rectification() {
    let server = TestServer::start_web().await;
    // Real time for the page: the manual clock starts at 2026-06-01.
    let mut admin = server.admin().await;
    admin.register(ACME, "宁波蓝海染整有限公司 Ningbo Lanhai Dyeing", "330206").await;
    admin.register(BETA, "北仑绿源电镀厂 Beilun Lvyuan Plating", "330206").await;
    admin.append(record(ACME, "I-1", "inspection.finding", -400)).await.unwrap();
    let mut fine = record(ACME, "P-1", "penalty.fine", -200);
    fine.description = "COD 排放超标（DW001 排口）".into();
    let fine = admin.append(fine).await.unwrap().seq;
    admin.append(record(ACME, "S-1", "enforcement.suspend", -30)).await.unwrap();
    // A bank reads under the enterprise's grant (--lender-access granted).
    grant(&mut admin, ACME, "bank-a").await;
    grant(&mut admin, BETA, "bank-a").await;
    // The page shows what the latest published checkpoint covers.
    server.publish();
    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let epb = server.token("beilun-epb-staff", Role::Regulator { region_prefix: "330206".into() });
    let bank = server.token("bank-a", Role::Lender);
    let web = format!("http://{}", server.http.unwrap());
    let key = server.service.verifier_key();
    let shots = tempfile::tempdir().unwrap();
    let dir = shots.path().to_owned();

    let (qr_text, page_text, sticker_text, qr_width) = tokio::task::spawn_blocking({
        let (web, dir) = (web.clone(), dir.clone());
        move || {
            let mut browser = Browser::start();
            browser.open(&format!("{web}/e/{ACME}"));
            let text = browser.text();
            // Readable on a 360 px phone and on a desktop: nothing wider.
            assert!(browser.fits(360), "the page scrolls sideways at 360 px");
            assert!(browser.fits(1280), "the page scrolls sideways at 1280 px");
            let public = dir.join("enterprise-public.png");
            browser.screenshot(&public);
            keep_screenshot(&public, "enterprise-public.png");
            let desktop = dir.join("enterprise-desktop.png");
            browser.screenshot_at(1280, &desktop);
            keep_screenshot(&desktop, "enterprise-desktop.png");
            // The QR alone at sticker size: 3 cm at 300 dpi, quiet zone included.
            let sticker = dir.join("qr-3cm-300dpi.png");
            browser.screenshot_element("svg.qr", 354.0, &sticker);
            keep_screenshot(&sticker, "qr-3cm-300dpi.png");
            let (w, h) = png_size(&sticker);
            assert!((353..=355).contains(&w) && (353..=355).contains(&h), "sticker is {w}x{h} px");
            let qr_width = browser.eval("document.querySelector('svg.qr').getAttribute('width')");
            let qr_width: u64 = qr_width.as_str().unwrap().parse().unwrap();
            (decode_qr(&public), text, decode_qr(&sticker), qr_width)
        }
    })
    .await
    .unwrap();
    assert!(page_text.contains("黄码") && page_text.contains("YELLOW"), "{page_text}");
    assert!(page_text.contains("黄牌") && page_text.contains("环保警示") && page_text.contains("YELLOW"));
    // Issue 24: the compact form, a version 10 symbol at most (57 modules
    // and the quiet zone of 4 on each side, 4 px a module), read the same
    // from the page and from a 3 cm sticker at 300 dpi.
    assert!(qr_text.starts_with(&format!("{}/Q/", web.to_uppercase())), "{qr_text}");
    assert!(qr_width <= (57 + 8) * 4, "the QR is {qr_width} px wide, above version 10");
    assert_eq!(sticker_text, qr_text, "the sticker-size QR reads differently");
    let scanned = dir.join("scanned.txt");
    std::fs::write(&scanned, &sticker_text).unwrap();
    ecocode_attest_verify(&scanned, &key).await.expect("the scanned attestation verifies");
    // The full form of the same note, as on stickers printed before, still verifies.
    let note = tlog::attestation::note_from_qr_text(&qr_text).unwrap();
    std::fs::write(&scanned, tlog::attestation::qr_text(&format!("{web}/e/{ACME}"), &note)).unwrap();
    ecocode_attest_verify(&scanned, &key).await.expect("the full form verifies");
    let mut forged = qr_text.clone();
    forged.truncate(forged.len() - 8);
    std::fs::write(&scanned, &forged).unwrap();
    assert!(ecocode_attest_verify(&scanned, &key).await.is_err(), "a damaged scan does not verify");

    tokio::task::spawn_blocking(move || {
        let mut browser = Browser::start();
        // Scanning opens the page, which checks what was scanned.
        browser.open(&qr_text);
        assert!(browser.text().contains("扫描的环保码有效且为最新"), "{}", browser.text());
        let shot = dir.join("scanned.png");
        browser.screenshot(&shot);
        keep_screenshot(&shot, "scanned-current.png");

        // The enterprise signs in with the form and files a rectification.
        browser.open(&format!("{web}/signin"));
        let shot = dir.join("signin.png");
        browser.screenshot(&shot);
        keep_screenshot(&shot, "signin.png");
        browser.type_into("#token", &acme);
        browser.click_and_wait(r#"form[action="/signin"] button"#);
        assert!(
            browser.location().ends_with(&format!("/e/{ACME}")),
            "{}: {}",
            browser.location(),
            browser.text()
        );
        assert!(browser.text().contains("acme (enterprise)"));
        browser.eval(&format!("document.querySelector('#reason-{fine} details').open = true"));
        let form = format!(r#"#reason-{fine} form[action$="/rectification"]"#);
        browser.type_into(&format!("{form} textarea"), "已更换在线监测设备并完成第三方比对 <b>");
        browser.type_into(&format!("{form} input[name=evidence]"), "EV-2026-0042");
        browser.click_and_wait(&format!("{form} button"));
        assert!(browser.location().contains("filed="), "{}", browser.location());
        let text = browser.text();
        assert!(text.contains("整改待验收 rectification pending"), "{text}");
        assert!(text.contains("EV-2026-0042") && text.contains("已更换在线监测设备并完成第三方比对 <b>"));
        let shot = dir.join("enterprise-signed-in.png");
        browser.screenshot(&shot);
        keep_screenshot(&shot, "enterprise-signed-in.png");
        browser.click_and_wait(r#"form[action="/signout"] button"#);

        // The regulator's list.
        browser.open(&format!("{web}/signin"));
        browser.type_into("#token", &epb);
        browser.click_and_wait(r#"form[action="/signin"] button"#);
        assert!(browser.location().ends_with("/region"));
        assert!(browser.text().contains(ACME) && browser.text().contains(BETA));
        let shot = dir.join("region.png");
        browser.screenshot(&shot);
        keep_screenshot(&shot, "region.png");
        browser.click_and_wait(r#"form[action="/signout"] button"#);

        // The lender's portfolio.
        browser.open(&format!("{web}/signin"));
        browser.type_into("#token", &bank);
        browser.click_and_wait(r#"form[action="/signin"] button"#);
        // One USCC pasted, the others in an uploaded file.
        browser.type_into("textarea[name=usccs]", ACME);
        let book = dir.join("loan-book.txt");
        std::fs::write(&book, format!("{BETA}\n91330206MA2H123450\n")).unwrap();
        browser.choose_file("input[type=file]", &book);
        browser.type_into("input[name=purpose]", "LA-2026-001");
        browser.click_and_wait(r#"button[value="html"]"#);
        let text = browser.text();
        assert!(text.contains("黄码") && text.contains("绿码"), "{text}");
        assert!(text.contains(ACME) && text.contains(BETA) && text.contains("91330206MA2H123450"), "{text}");
        let shot = dir.join("portfolio.png");
        browser.screenshot(&shot);
        keep_screenshot(&shot, "portfolio.png");
    })
    .await
    .unwrap();

    // The filing went through the pipeline: the public page shows it pending.
    let mut admin = server.admin().await;
    assert_eq!(admin.score(ACME).await.rectification_pending, vec![fine]);
    server.stop().await;
}
