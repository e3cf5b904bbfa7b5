//! The garbage collector's decisions, apart from any I/O: which objects need a look (from the cached graph of
//! owner references), and what to do with a dependent once the state of each of its owners is known (upstream's
//! attemptToDeleteItem rules).

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// What the collector knows of one object.
#[derive(Debug, Clone, Default)]
pub struct Item {
    pub uid: String,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
}

impl Item {
    fn has(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Being deleted in the foreground: waiting for its dependents to go first.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has(FOREGROUND)
    }

    pub fn orphaning(&self) -> bool {
        self.deleting && self.has(ORPHAN)
    }
}

/// What one owner reference points at, as checked against the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists (same uid) and is not waiting for its dependents.
    Solid,
    /// No object of that name, or one with another uid: the reference dangles.
    Absent,
    /// The owner is being deleted in the foreground.
    DeletingDependents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Drop the references to these owner uids (dangling ones, and owners waiting on dependents, when a
    /// solid owner remains).
    RemoveOwners(Vec<String>),
    Delete(Propagation),
}

/// Upstream's rules for a dependent: any solid owner keeps it (dangling references are dropped); without one
/// it goes, in the foreground when an owner waits on it and it has dependents of its own.
pub fn judge(
    item: &Item,
    owners: &[(OwnerReference, OwnerState)],
    has_dependents: bool,
) -> Verdict {
    if owners.is_empty() || (item.deleting && !item.deleting_dependents()) {
        return Verdict::Keep;
    }
    let with = |state: OwnerState| {
        owners
            .iter()
            .filter(move |(_, s)| *s == state)
            .map(|(r, _)| r.uid.clone())
    };
    if with(OwnerState::Solid).next().is_some() {
        let drop: Vec<String> = with(OwnerState::Absent)
            .chain(with(OwnerState::DeletingDependents))
            .collect();
        return if drop.is_empty() {
            Verdict::Keep
        } else {
            Verdict::RemoveOwners(drop)
        };
    }
    if with(OwnerState::DeletingDependents).next().is_some() && has_dependents {
        return Verdict::Delete(Propagation::Foreground);
    }
    Verdict::Delete(if item.has(ORPHAN) {
        Propagation::Orphan
    } else if item.has(FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    })
}

/// Work the cached graph suggests; each is checked against the API before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Work {
    /// A dependent with an owner the cache does not show as solid.
    Dependent(String),
    /// An owner deleted with propagationPolicy=Orphan: its dependents lose the reference, then it goes.
    Orphan(String),
    /// An owner deleted in the foreground whose blocking dependents are all gone.
    Release(String),
}

/// What to look at, given every cached object by uid.
pub fn plan(items: &HashMap<String, Item>) -> Vec<Work> {
    let mut blocked: HashSet<&str> = HashSet::new();
    let mut work = Vec::new();
    for item in items.values() {
        for owner in &item.owners {
            if owner.block_owner_deletion == Some(true) {
                blocked.insert(owner.uid.as_str());
            }
        }
        if item.deleting && !item.deleting_dependents() {
            continue;
        }
        let suspect = item.owners.iter().any(|owner| {
            items
                .get(&owner.uid)
                .is_none_or(|o| o.deleting_dependents())
        });
        if suspect {
            work.push(Work::Dependent(item.uid.clone()));
        }
    }
    for item in items.values() {
        if item.orphaning() {
            work.push(Work::Orphan(item.uid.clone()));
        } else if item.deleting_dependents() && !blocked.contains(item.uid.as_str()) {
            work.push(Work::Release(item.uid.clone()));
        }
    }
    work.sort();
    work
}

/// The uids of the cached objects that reference `owner`.
pub fn dependents_of<'a>(
    items: &'a HashMap<String, Item>,
    owner: &'a str,
) -> impl Iterator<Item = &'a Item> + 'a {
    items
        .values()
        .filter(move |i| i.owners.iter().any(|o| o.uid == owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("owner-{uid}"),
            uid: uid.into(),
            block_owner_deletion: block.then_some(true),
            controller: None,
        }
    }

    fn item(uid: &str, owners: Vec<OwnerReference>) -> Item {
        Item {
            uid: uid.into(),
            owners,
            ..Item::default()
        }
    }

    #[test]
    fn a_dependent_with_a_solid_owner_stays() {
        let dep = item("d", vec![owner("a", false)]);
        let verdict = judge(&dep, &[(owner("a", false), OwnerState::Solid)], false);
        assert_eq!(verdict, Verdict::Keep);
    }

    #[test]
    fn a_dependent_whose_only_owner_is_gone_is_deleted_in_the_background() {
        let dep = item("d", vec![owner("a", false)]);
        let verdict = judge(&dep, &[(owner("a", false), OwnerState::Absent)], false);
        assert_eq!(verdict, Verdict::Delete(Propagation::Background));
    }

    #[test]
    fn a_dangling_reference_beside_a_solid_owner_is_dropped_not_the_dependent() {
        let dep = item("d", vec![owner("a", false), owner("b", false)]);
        let verdict = judge(
            &dep,
            &[
                (owner("a", false), OwnerState::Solid),
                (owner("b", false), OwnerState::Absent),
            ],
            false,
        );
        assert_eq!(verdict, Verdict::RemoveOwners(vec!["b".into()]));
    }

    #[test]
    fn dependents_of_a_foreground_deletion_go_in_the_foreground_when_they_have_dependents() {
        let dep = item("d", vec![owner("a", true)]);
        let owners = [(owner("a", true), OwnerState::DeletingDependents)];
        assert_eq!(
            judge(&dep, &owners, true),
            Verdict::Delete(Propagation::Foreground)
        );
        assert_eq!(
            judge(&dep, &owners, false),
            Verdict::Delete(Propagation::Background)
        );
    }

    #[test]
    fn an_object_already_being_deleted_is_left_alone() {
        let mut dep = item("d", vec![owner("a", false)]);
        dep.deleting = true;
        dep.finalizers = vec!["example.com/hold".into()];
        assert_eq!(
            judge(&dep, &[(owner("a", false), OwnerState::Absent)], false),
            Verdict::Keep
        );
    }

    #[test]
    fn a_dependent_keeps_its_own_orphan_finalizer_policy() {
        let mut dep = item("d", vec![owner("a", false)]);
        dep.finalizers = vec![ORPHAN.into()];
        assert_eq!(
            judge(&dep, &[(owner("a", false), OwnerState::Absent)], true),
            Verdict::Delete(Propagation::Orphan)
        );
    }

    #[test]
    fn plan_suspects_dependents_of_missing_or_foreground_owners_only() {
        let mut items = HashMap::new();
        items.insert("a".to_owned(), item("a", vec![]));
        items.insert("ok".to_owned(), item("ok", vec![owner("a", false)]));
        items.insert("lost".to_owned(), item("lost", vec![owner("never", false)]));
        assert_eq!(plan(&items), vec![Work::Dependent("lost".into())]);
    }

    #[test]
    fn a_foreground_owner_is_released_only_when_no_blocking_dependent_remains() {
        let mut items = HashMap::new();
        let mut owner_item = item("a", vec![]);
        owner_item.deleting = true;
        owner_item.finalizers = vec![FOREGROUND.into()];
        items.insert("a".to_owned(), owner_item);
        items.insert("d".to_owned(), item("d", vec![owner("a", true)]));
        assert_eq!(plan(&items), vec![Work::Dependent("d".into())]);
        items.insert("d".to_owned(), item("d", vec![owner("a", false)]));
        assert_eq!(
            plan(&items),
            vec![Work::Dependent("d".into()), Work::Release("a".into())]
        );
        items.remove("d");
        assert_eq!(plan(&items), vec![Work::Release("a".into())]);
    }

    #[test]
    fn an_orphaning_owner_is_planned() {
        let mut items = HashMap::new();
        let mut owner_item = item("a", vec![]);
        owner_item.deleting = true;
        owner_item.finalizers = vec![ORPHAN.into()];
        items.insert("a".to_owned(), owner_item);
        items.insert("d".to_owned(), item("d", vec![owner("a", false)]));
        assert_eq!(plan(&items), vec![Work::Orphan("a".into())]);
        assert_eq!(dependents_of(&items, "a").count(), 1);
    }
}
