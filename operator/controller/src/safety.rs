//! Edits that would lose data are refused: removing `spec.database` or `spec.redis` while a claim holds their
//! data, turning Redis persistence off, shrinking a claim (claims cannot shrink), and renaming the database or
//! its user once PGDATA was initialised (the official image reads POSTGRES_USER and POSTGRES_DB only on an
//! empty data directory: the app would get a URL for a role that does not exist). The identity PGDATA was
//! initialised with is recorded on the database claim, so it outlives the Pod and a retained claim.

use std::collections::BTreeMap;

use berth_api::Stack;
use berth_api::constants::ANNOTATION_ALLOW_DATA_LOSS;
use berth_api::quantity::parse_milli;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::mapping::Names;

/// On the database claim: the role PGDATA was initialised with.
pub const ANNOTATION_DATABASE_USER: &str = "berth.dev/initialized-user";
/// On the database claim: the database PGDATA was initialised with.
pub const ANNOTATION_DATABASE_NAME: &str = "berth.dev/initialized-database";
/// The Stalled reason of a refused edit.
pub const REASON: &str = "DataLossRefused";

/// Did the user opt in to an edit that deletes data?
pub fn allowed(stack: &Stack) -> bool {
    stack
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ALLOW_DATA_LOSS))
        .is_some_and(|v| v == "true")
}

fn find<'a>(claims: &'a [PersistentVolumeClaim], name: &str) -> Option<&'a PersistentVolumeClaim> {
    claims
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
}

fn requested(claim: &PersistentVolumeClaim) -> Option<(String, i128)> {
    let size = claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?;
    Some((size.0.clone(), parse_milli(&size.0)?))
}

fn annotation<'a>(claim: &'a PersistentVolumeClaim, key: &str) -> Option<&'a str> {
    claim
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The identity annotations the database claim keeps: those it has, else the spec's once the database has
/// been ready with it (`initialised`), else none.
pub fn identity(
    existing: Option<&PersistentVolumeClaim>,
    stack: &Stack,
    initialised: bool,
) -> BTreeMap<String, String> {
    let recorded: BTreeMap<String, String> = existing
        .into_iter()
        .flat_map(|c| {
            [ANNOTATION_DATABASE_USER, ANNOTATION_DATABASE_NAME]
                .into_iter()
                .filter_map(|k| Some((k.to_owned(), annotation(c, k)?.to_owned())))
        })
        .collect();
    if !recorded.is_empty() {
        return recorded;
    }
    match (&stack.spec.database, initialised) {
        (Some(db), true) => BTreeMap::from([
            (ANNOTATION_DATABASE_USER.to_owned(), db.user.clone()),
            (
                ANNOTATION_DATABASE_NAME.to_owned(),
                db.database_name.clone(),
            ),
        ]),
        _ => BTreeMap::new(),
    }
}

/// Why the Stack's spec is refused, if it is: a message that names the field and says how to go on.
pub fn refusal(stack: &Stack, names: &Names, claims: &[PersistentVolumeClaim]) -> Option<String> {
    let database_claim = find(claims, &names.database_claim);
    let redis_claim = find(claims, &names.redis_claim);
    let opt_in = format!(
        "to drop the data, annotate the Stack {ANNOTATION_ALLOW_DATA_LOSS}=true (the claim is deleted), or \
         delete the Stack with deletionPolicy Delete"
    );
    if !allowed(stack) {
        if let (None, Some(claim)) = (&stack.spec.database, database_claim) {
            return Some(format!(
                "spec.database was removed, but PersistentVolumeClaim {} holds the database's data; put \
                 spec.database back to keep it; {opt_in}",
                claim.metadata.name.as_deref().unwrap_or_default()
            ));
        }
        match (&stack.spec.redis, redis_claim) {
            (None, Some(claim)) => {
                return Some(format!(
                    "spec.redis was removed, but PersistentVolumeClaim {} holds Redis's data; put spec.redis \
                     back to keep it; {opt_in}",
                    claim.metadata.name.as_deref().unwrap_or_default()
                ));
            }
            (Some(redis), Some(claim)) if !redis.persistence.enabled => {
                return Some(format!(
                    "spec.redis.persistence.enabled was turned off, but PersistentVolumeClaim {} holds Redis's \
                     data; set it back to true to keep it; {opt_in}",
                    claim.metadata.name.as_deref().unwrap_or_default()
                ));
            }
            _ => {}
        }
    }
    let sizes = [
        (
            "spec.database.storage.size",
            stack.spec.database.as_ref().map(|d| &d.storage.size),
            database_claim,
        ),
        (
            "spec.redis.persistence.size",
            stack
                .spec
                .redis
                .as_ref()
                .filter(|r| r.persistence.enabled)
                .map(|r| &r.persistence.size),
            redis_claim,
        ),
    ];
    for (field, wanted, claim) in sizes {
        let (Some(wanted), Some(claim)) = (wanted, claim) else {
            continue;
        };
        let (Some((have_text, have)), Some(want)) = (requested(claim), parse_milli(&wanted.0))
        else {
            continue;
        };
        if want < have {
            return Some(format!(
                "{field} {:?} is smaller than the {have_text} PersistentVolumeClaim {} already has, and claims \
                 cannot shrink; set it to at least {have_text}, or move the data to a new Stack",
                wanted.0,
                claim.metadata.name.as_deref().unwrap_or_default()
            ));
        }
    }
    if let (Some(db), Some(claim)) = (&stack.spec.database, database_claim) {
        for (field, key, wanted) in [
            ("spec.database.user", ANNOTATION_DATABASE_USER, &db.user),
            (
                "spec.database.databaseName",
                ANNOTATION_DATABASE_NAME,
                &db.database_name,
            ),
        ] {
            if let Some(recorded) = annotation(claim, key).filter(|r| r != wanted) {
                return Some(format!(
                    "{field} changed from {recorded:?} to {wanted:?}, but the data in PersistentVolumeClaim {} \
                     was initialised with {recorded:?} and PostgreSQL ignores the new value; set it back to \
                     {recorded:?}, or start from an empty database by deleting the Stack with deletionPolicy \
                     Delete and applying it again",
                    claim.metadata.name.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, VolumeResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::api::ObjectMeta;

    use super::*;

    const SAMPLE: &str = include_str!("../../../config/samples/stack.yaml");

    fn sample() -> Stack {
        let mut stack: Stack = serde_yaml::from_str(SAMPLE).unwrap();
        stack.metadata.namespace = Some("default".into());
        stack
    }

    fn claim(name: &str, size: &str, annotations: &[(&str, &str)]) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), Quantity(size.into()))])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        }
    }

    fn refused(stack: &Stack, claims: &[PersistentVolumeClaim]) -> Option<String> {
        refusal(stack, &Names::of(stack).unwrap(), claims)
    }

    #[test]
    fn removing_the_database_while_its_claim_exists_is_refused_unless_allowed() {
        let mut stack = sample();
        let claims = [claim("demo-db-data", "1Gi", &[])];
        assert_eq!(refused(&stack, &claims), None);
        stack.spec.database = None;
        let message = refused(&stack, &claims).unwrap();
        assert!(
            message.starts_with("spec.database was removed"),
            "{message}"
        );
        assert!(message.contains(ANNOTATION_ALLOW_DATA_LOSS), "{message}");
        assert_eq!(refused(&stack, &[]), None, "no claim, nothing to lose");
        stack
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ANNOTATION_ALLOW_DATA_LOSS.into(), "true".into());
        assert_eq!(refused(&stack, &claims), None);
    }

    #[test]
    fn redis_removed_or_unpersisted_with_a_claim_is_refused() {
        let mut stack = sample();
        let claims = [claim("demo-redis-data", "1Gi", &[])];
        stack.spec.redis.as_mut().unwrap().persistence.enabled = false;
        let message = refused(&stack, &claims).unwrap();
        assert!(
            message.starts_with("spec.redis.persistence.enabled"),
            "{message}"
        );
        stack.spec.redis = None;
        assert!(
            refused(&stack, &claims)
                .unwrap()
                .starts_with("spec.redis was removed")
        );
    }

    #[test]
    fn a_smaller_storage_size_is_refused_and_a_larger_one_is_not() {
        let mut stack = sample();
        let claims = [claim("demo-db-data", "2Gi", &[])];
        stack.spec.database.as_mut().unwrap().storage.size = Quantity("1024Mi".into());
        let message = refused(&stack, &claims).unwrap();
        assert!(
            message.starts_with("spec.database.storage.size \"1024Mi\""),
            "{message}"
        );
        assert!(message.contains("at least 2Gi"), "{message}");
        stack.spec.database.as_mut().unwrap().storage.size = Quantity("3Gi".into());
        assert_eq!(refused(&stack, &claims), None);
    }

    #[test]
    fn renaming_the_user_or_database_after_initialisation_is_refused() {
        let mut stack = sample();
        let db = stack.spec.database.clone().unwrap();
        let claims = [claim(
            "demo-db-data",
            "1Gi",
            &[
                (ANNOTATION_DATABASE_USER, db.user.as_str()),
                (ANNOTATION_DATABASE_NAME, db.database_name.as_str()),
            ],
        )];
        assert_eq!(refused(&stack, &claims), None);
        stack.spec.database.as_mut().unwrap().user = "shop".into();
        let message = refused(&stack, &claims).unwrap();
        assert!(
            message.starts_with("spec.database.user changed"),
            "{message}"
        );
        stack.spec.database.as_mut().unwrap().user = db.user.clone();
        stack.spec.database.as_mut().unwrap().database_name = "other".into();
        assert!(
            refused(&stack, &claims)
                .unwrap()
                .starts_with("spec.database.databaseName")
        );
    }

    #[test]
    fn the_identity_is_recorded_once_initialised_and_then_kept() {
        let mut stack = sample();
        assert!(identity(None, &stack, false).is_empty());
        let first = identity(None, &stack, true);
        assert_eq!(
            first[ANNOTATION_DATABASE_USER],
            stack.spec.database.as_ref().unwrap().user
        );
        let recorded = claim("demo-db-data", "1Gi", &[(ANNOTATION_DATABASE_USER, "old")]);
        stack.spec.database.as_mut().unwrap().user = "new".into();
        assert_eq!(
            identity(Some(&recorded), &stack, true)[ANNOTATION_DATABASE_USER],
            "old"
        );
    }
}
