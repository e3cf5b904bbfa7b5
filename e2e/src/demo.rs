//! What the demo tests share: the demo images `make images` builds (scripts/images.sh, cached under
//! .cache/images) served from a registry of the test's own, and the demo app seen through HTTP (its `/health`,
//! the visit count each page load shows).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

// serde_json through k8s-openapi's re-export: it is only a dev-dependency of this crate.
use k8s_openapi::serde_json::{self, Value, json};

use crate::{Server, free_port, output_text, wait_every};

/// How often to poll the app: each poll is a curl process.
const POLL: Duration = Duration::from_millis(250);

/// The registry scripts/images.sh starts for one test, filled with the demo images; stopped on drop.
pub struct Images {
    /// `127.0.0.1:<port>`: the registry's address, in place of the sample's 127.0.0.1:5000.
    pub addr: String,
    dir: tempfile::TempDir,
}

impl Images {
    /// Builds what changed (the cache usually has everything) and pushes it to a fresh registry. Panics when the
    /// images cannot be built here (debootstrap cannot reach Debian): a test that cannot run must not pass.
    pub fn start() -> Images {
        let dir = tempfile::Builder::new()
            .prefix("berth-demo-registry-")
            .tempdir()
            .expect("a registry directory");
        let images = Images {
            addr: format!("127.0.0.1:{}", free_port()),
            dir,
        };
        let out = images.script("all");
        assert_ne!(
            out.status.code(),
            Some(3),
            "the demo images cannot be built here: debootstrap cannot reach Debian's mirror (`make images` \
             needs Debian's archive):\n{}",
            output_text(&out)
        );
        assert!(
            out.status.success(),
            "scripts/images.sh failed:\n{}",
            output_text(&out)
        );
        eprintln!("{}", output_text(&out));
        images
    }

    /// Points a command at this registry: scripts/images.sh, up.sh and dev.sh read `BERTH_REGISTRY`.
    pub fn env<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        command
            .env("BERTH_REGISTRY", &self.addr)
            .env("BERTH_REGISTRY_DIR", self.dir.path())
    }

    fn script(&self, command: &str) -> Output {
        self.env(&mut Command::new(
            Server::repo_root().join("scripts/images.sh"),
        ))
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/images.sh")
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let _ = self.script("stop");
    }
}

/// An HTTP GET with curl: (status, body), or None when nothing answered. `netns` runs curl in a network
/// namespace the test made; None on the host's loopback.
pub fn http_get(netns: Option<&str>, url: &str) -> Option<(u16, String)> {
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns, "curl"]);
            command
        }
        None => Command::new("curl"),
    };
    let out = command
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", url])
        .stdin(Stdio::null())
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.parse().ok().filter(|c| *c != 0)?, body.to_owned()))
}

/// Waits for the app's `/health` at `base` (`http://127.0.0.1:<port>`) to say PostgreSQL and Redis answer.
pub fn wait_healthy(base: &str, deadline: Duration) {
    let (_, body) = wait_every("the app's /health to answer 200", deadline, POLL, || {
        http_get(None, &format!("{base}/health")).filter(|(status, _)| *status == 200)
    });
    let health: Value = serde_json::from_str(&body).expect("/health answers JSON");
    assert_eq!(
        health,
        json!({"status": "ok", "database": "ok", "redis": "ok"})
    );
}

/// Loads the page at `base` once: (the visit count Redis keeps, the page).
pub fn visit(base: &str) -> (u64, String) {
    let (status, page) = http_get(None, &format!("{base}/")).expect("the app answers /");
    assert_eq!(status, 200, "{page}");
    (visit_count(&page), page)
}

/// The visit count a page of the demo app shows.
pub fn visit_count(page: &str) -> u64 {
    page.split_once("<strong id=\"count\">")
        .and_then(|(_, rest)| rest.split_once("</strong>"))
        .and_then(|(count, _)| count.parse().ok())
        .unwrap_or_else(|| panic!("the page shows a visit count: {page}"))
}

/// The heading of the demo page, and what [`edit_heading`] changes it to.
pub const HEADING: &str = "<h1>Hello from berth</h1>";
pub const EDITED_HEADING: &str = "<h1>Hello from an edited berth</h1>";

/// Edits a copy of the app's source (its `app.py`, never the checkout's) so that the page shows
/// [`EDITED_HEADING`]: what a developer's edit looks like to the dev overlay's reloader.
pub fn edit_heading(app_py: &Path) {
    let source = std::fs::read_to_string(app_py).expect("reading the copy of app.py");
    assert!(
        source.contains(HEADING),
        "{} shows {HEADING}",
        app_py.display()
    );
    std::fs::write(app_py, source.replace(HEADING, EDITED_HEADING))
        .expect("editing the copy of app.py");
}
