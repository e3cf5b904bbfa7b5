//! "Log it once": loops meet objects they cannot understand (a bad quantity, an owner of an unknown kind) on
//! every pass; the problem is worth one log line per object and problem, not one per pass.

use std::collections::HashSet;
use std::sync::Mutex;

/// Bounds the memory of what was reported; past it, problems may be logged again.
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct Reported(Mutex<HashSet<String>>);

impl Reported {
    /// True the first time `key` (object and problem) is seen.
    pub fn first(&self, key: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= CAPACITY {
            seen.clear();
        }
        seen.insert(key.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_reported_once_per_key() {
        let reported = Reported::default();
        assert!(reported.first("default/web: bad cpu"));
        assert!(!reported.first("default/web: bad cpu"));
        assert!(reported.first("default/db: bad cpu"));
    }
}
