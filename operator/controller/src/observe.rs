//! What exists: the objects Stacks own, kept in reflector stores fed by the same watches that trigger
//! reconciles, and the few reads that need the API itself (a Secret the spec names, which berth does not own;
//! the generated password when the store has not seen its Secret).

use std::sync::Arc;

use berth_api::Stack;
use berth_api::constants::LABEL_STACK;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use tokio::sync::watch;

use crate::drift;
use crate::error::Error;
use crate::mapping::{Names, PASSWORD_KEY};
use crate::plan::Object;

/// The length of a generated database password (alphanumeric: no quoting trouble in URLs or shells).
const PASSWORD_LENGTH: usize = 24;

/// Everything the Stacks own, labelled `berth.dev/stack`.
#[derive(Clone)]
pub struct Stores {
    pub pods: Store<Pod>,
    pub services: Store<Service>,
    pub secrets: Store<Secret>,
    pub claims: Store<PersistentVolumeClaim>,
    synced: watch::Receiver<bool>,
}

impl Stores {
    /// The stores, and a future that marks them synced once each has listed its objects: drive it alongside
    /// the watches that fill them. (One waiter only: kube-runtime's `Store::wait_until_ready` wakes a single
    /// task, so concurrent reconciles wait on `synced` instead.)
    pub fn new(
        pods: Store<Pod>,
        services: Store<Service>,
        secrets: Store<Secret>,
        claims: Store<PersistentVolumeClaim>,
    ) -> (Stores, impl Future<Output = ()> + Send + 'static) {
        let (tell, synced) = watch::channel(false);
        let stores = Stores {
            pods,
            services,
            secrets,
            claims,
            synced,
        };
        let waiting = stores.clone();
        let sync = async move {
            // A writer is only dropped when the controller stops, and then nothing waits here any more.
            let _ = futures::join!(
                waiting.pods.wait_until_ready(),
                waiting.services.wait_until_ready(),
                waiting.secrets.wait_until_ready(),
                waiting.claims.wait_until_ready(),
            );
            let _ = tell.send(true);
        };
        (stores, sync)
    }

    /// Waits until every store has listed its objects once: before that, absent would not mean missing.
    pub async fn synced(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|s| *s).await;
    }

    /// The Stack's Pods, any component.
    pub fn pods_of(&self, stack: &Stack) -> Vec<Pod> {
        of_stack(&self.pods, stack)
    }

    /// The Stack's Services.
    pub fn services_of(&self, stack: &Stack) -> Vec<Service> {
        of_stack(&self.services, stack)
    }

    /// The Stack's PersistentVolumeClaims.
    pub fn claims_of(&self, stack: &Stack) -> Vec<PersistentVolumeClaim> {
        of_stack(&self.claims, stack)
    }

    /// True when the object exists with every field the controller would apply: applying it changes nothing.
    pub fn unchanged(&self, object: &Object, namespace: &str) -> bool {
        match object {
            Object::Secret(secret) => holds(
                &self.secrets,
                namespace,
                &drift::stored_secret(secret.as_ref().clone()),
            ),
            Object::Claim(claim) => holds(&self.claims, namespace, claim.as_ref()),
            Object::Service(service) => holds(&self.services, namespace, service.as_ref()),
            // The plan applies a Pod only when it is missing or must be replaced.
            Object::Pod(_) => false,
        }
    }
}

/// The objects labelled with the Stack's name in its namespace, by name.
fn of_stack<K>(store: &Store<K>, stack: &Stack) -> Vec<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let namespace = stack.namespace();
    let name = stack.name_any();
    let mut objects: Vec<K> = store
        .state_filter(|o| o.namespace() == namespace && o.labels().get(LABEL_STACK) == Some(&name))
        .into_iter()
        .map(|o| o.as_ref().clone())
        .collect();
    objects.sort_by_key(|o| o.name_any());
    objects
}

fn holds<K>(store: &Store<K>, namespace: &str, desired: &K) -> bool
where
    K: kube::Resource<DynamicType = ()> + Clone + Serialize + 'static,
{
    let key = ObjectRef::new(&desired.name_any()).within(namespace);
    let Some(existing) = store.get(&key) else {
        return false;
    };
    match (
        serde_json::to_value(existing.as_ref()),
        serde_json::to_value(desired),
    ) {
        (Ok(existing), Ok(desired)) => drift::contains(&existing, &desired),
        _ => false,
    }
}

fn password_in(secret: &Secret) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(PASSWORD_KEY)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|p| !p.is_empty())
}

pub fn generate_password() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(PASSWORD_LENGTH)
        .map(char::from)
        .collect()
}

/// The database password, and a problem no retry fixes if there is one (as (reason, message) for the Stalled
/// condition). Generated: the one already in berth's Secret, or a new one. Named by `passwordSecretRef`: the
/// one in that Secret, or none when the Secret or its key is missing. Empty when the Stack has no database.
pub async fn credentials(
    client: &Client,
    stores: &Stores,
    stack: &Stack,
    names: &Names,
    namespace: &str,
) -> Result<(String, Option<(String, String)>), Error> {
    let Some(database) = stack.spec.database.as_ref() else {
        return Ok((String::new(), None));
    };
    let Some(reference) = database.password_secret_ref.as_ref() else {
        return Ok((generated(client, stores, names, namespace).await?, None));
    };
    if reference.name == names.secret {
        return Ok((
            String::new(),
            Some((
                "SecretNameTaken".into(),
                format!(
                    "spec.database.passwordSecretRef names Secret {:?}, which berth makes for this Stack (it holds \
                     DATABASE_URL); put the password in a Secret of another name",
                    reference.name
                ),
            )),
        ));
    }
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&reference.name)
        .await
        .map_err(|source| Error::Read {
            kind: "Secret",
            name: reference.name.clone(),
            source,
        })?;
    let Some(secret) = secret else {
        return Ok((
            String::new(),
            Some((
                "SecretNotFound".into(),
                format!(
                    "Secret {:?} named by spec.database.passwordSecretRef does not exist in namespace {namespace:?}; \
                     create it with the password under key {:?}, or remove passwordSecretRef to let berth generate one",
                    reference.name, reference.key
                ),
            )),
        ));
    };
    let password = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&reference.key).cloned())
        });
    match password {
        Some(password) => Ok((password, None)),
        None => Ok((
            String::new(),
            Some((
                "SecretKeyNotFound".into(),
                format!(
                    "Secret {:?} named by spec.database.passwordSecretRef has no key {:?}; add the password under that \
                     key, or point passwordSecretRef.key at the key that holds it",
                    reference.name, reference.key
                ),
            )),
        )),
    }
}

/// The generated password to keep: the one already in berth's Secret, or a new one.
async fn generated(
    client: &Client,
    stores: &Stores,
    names: &Names,
    namespace: &str,
) -> Result<String, Error> {
    let key = ObjectRef::new(&names.secret).within(namespace);
    let secret = match stores.secrets.get(&key) {
        Some(secret) => Some(secret),
        // The store may not have seen a Secret written a moment ago; a new password would lock the database
        // out of its data, so ask the API before making one.
        None => Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(&names.secret)
            .await
            .map_err(|source| Error::Read {
                kind: "Secret",
                name: names.secret.clone(),
                source,
            })?
            .map(Arc::new),
    };
    Ok(secret
        .as_deref()
        .and_then(password_in)
        .unwrap_or_else(generate_password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_24_alphanumeric_characters_and_differ() {
        let a = generate_password();
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, generate_password());
    }
}
