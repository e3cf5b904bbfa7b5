//! `berth image pull`'s progress, shown as `docker pull` shows it: one row per layer, named by the first 12
//! hex digits of its digest, going through Downloading, Download complete, Extracting and Pull complete (or
//! Already exists). On a terminal each row is a live bar (indicatif); otherwise each change of a layer's state
//! is one plain line, so that logs and pipes stay readable.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::Mutex;

use berth_agent::image::{Digest, PullEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How many hex digits of a digest name a layer, as in `docker pull`.
const SHORT: usize = 12;
/// A layer's row on a terminal; sizes in decimal units, as the plain lines and `docker pull` print them.
const LAYER_TEMPLATE: &str = "{prefix}: {msg:<17} [{bar:30}] {decimal_bytes}/{decimal_total_bytes}";

/// Draws a pull's [`PullEvent`]s; shared with the pulling task through [`PullProgress::report`].
pub struct PullProgress {
    state: Mutex<State>,
}

struct State {
    /// Live bars on a terminal; plain lines otherwise.
    bars: Option<MultiProgress>,
    layers: HashMap<Digest, Layer>,
    /// Whether any layer had to be fetched (for the closing `Status:` line).
    downloaded: bool,
}

struct Layer {
    status: &'static str,
    bar: Option<ProgressBar>,
}

impl PullProgress {
    /// Bars when standard output is a terminal, plain lines otherwise.
    pub fn new() -> PullProgress {
        let bars = std::io::stdout()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        PullProgress {
            state: Mutex::new(State {
                bars,
                layers: HashMap::new(),
                downloaded: false,
            }),
        }
    }

    /// The progress callback handed to the image store.
    pub fn report(&self, event: PullEvent) {
        // A poisoned lock only means an earlier report panicked; drawing can go on.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.apply(event);
    }

    /// The closing line once the image is in the store.
    pub fn finish(&self, reference: &str) {
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let status = if state.downloaded {
            format!("Status: Downloaded newer image for {reference}")
        } else {
            format!("Status: Image is up to date for {reference}")
        };
        state.line(&status);
    }
}

impl State {
    fn apply(&mut self, event: PullEvent) {
        match event {
            PullEvent::Resolved {
                reference,
                layers,
                size,
                ..
            } => self.line(&format!(
                "{reference}: pulling {layers} layer(s), {}",
                indicatif::DecimalBytes(size)
            )),
            PullEvent::AlreadyPresent { digest, .. } => {
                self.set(&digest, "Already exists", None);
                self.close(&digest);
            }
            PullEvent::Downloading {
                digest,
                done,
                total,
            } => {
                self.downloaded = true;
                let status = if done == total && total > 0 {
                    "Download complete"
                } else {
                    "Downloading"
                };
                self.set(&digest, status, Some((done, total)));
            }
            PullEvent::Unpacking { digest } => self.set(&digest, "Extracting", None),
            PullEvent::Unpacked { digest } => {
                self.set(&digest, "Pull complete", None);
                self.close(&digest);
            }
            PullEvent::Done { digest } => self.line(&format!("Digest: {digest}")),
        }
    }

    /// Moves a layer to `status` (a new line when not on a terminal, and only when the status changed).
    fn set(&mut self, digest: &Digest, status: &'static str, bytes: Option<(u64, u64)>) {
        let name = short(digest);
        let bars = self.bars.clone();
        let layer = self.layers.entry(digest.clone()).or_insert_with(|| Layer {
            status: "",
            bar: bars.map(|multi| {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(layer_style());
                bar.set_prefix(name.clone());
                bar
            }),
        });
        match &layer.bar {
            Some(bar) => {
                if let Some((done, total)) = bytes {
                    bar.set_length(total);
                    bar.set_position(done);
                }
                if layer.status != status {
                    bar.set_message(status);
                }
            }
            None if layer.status != status => match bytes {
                Some((_, total)) if status == "Downloading" => {
                    println!("{name}: {status} {}", indicatif::DecimalBytes(total));
                }
                _ => println!("{name}: {status}"),
            },
            None => {}
        }
        layer.status = status;
    }

    /// A layer that is done keeps its last row on a terminal.
    fn close(&self, digest: &Digest) {
        if let Some(bar) = self.layers.get(digest).and_then(|l| l.bar.as_ref()) {
            bar.finish();
        }
    }

    /// A line above the bars (or just a line).
    fn line(&self, text: &str) {
        match &self.bars {
            Some(multi) => {
                if multi.println(text).is_err() {
                    println!("{text}");
                }
            }
            None => println!("{text}"),
        }
    }
}

fn short(digest: &Digest) -> String {
    digest.hex().chars().take(SHORT).collect()
}

fn layer_style() -> ProgressStyle {
    // The template is a constant that indicatif parses the same way every time; fall back to the default
    // bar rather than fail a pull over drawing.
    ProgressStyle::with_template(LAYER_TEMPLATE)
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> State {
        State {
            bars: None,
            layers: HashMap::new(),
            downloaded: false,
        }
    }

    #[test]
    fn plain_output_changes_state_once_per_step() {
        let digest = Digest::of(b"layer");
        let mut state = plain();
        for (done, total) in [(0, 10), (5, 10), (10, 10)] {
            state.apply(PullEvent::Downloading {
                digest: digest.clone(),
                done,
                total,
            });
        }
        assert_eq!(state.layers[&digest].status, "Download complete");
        state.apply(PullEvent::Unpacking {
            digest: digest.clone(),
        });
        state.apply(PullEvent::Unpacked {
            digest: digest.clone(),
        });
        assert_eq!(state.layers[&digest].status, "Pull complete");
        assert!(state.downloaded);
    }

    #[test]
    fn the_layer_template_parses() {
        assert!(ProgressStyle::with_template(LAYER_TEMPLATE).is_ok());
    }

    #[test]
    fn a_present_layer_downloads_nothing() {
        let digest = Digest::of(b"layer");
        let mut state = plain();
        state.apply(PullEvent::AlreadyPresent {
            digest: digest.clone(),
            size: 3,
        });
        assert_eq!(state.layers[&digest].status, "Already exists");
        assert!(!state.downloaded);
        assert_eq!(short(&digest).len(), SHORT);
    }
}
