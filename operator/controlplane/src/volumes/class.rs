//! The default StorageClass, and the class a claim without one gets (upstream's retroactive default
//! StorageClass assignment).

use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use tracing::info;

use crate::error::{Error, api_code};
use crate::scheduler::{DEFAULT_CLASS_ANNOTATION, is_default_class};

pub const PROVISIONER: &str = "berth.dev/local-path";
pub const DEFAULT_CLASS: &str = "local-path";

/// Creates `local-path` (default, WaitForFirstConsumer, reclaimPolicy Delete) unless it exists; a class the
/// user changed or replaced is left as it is.
pub async fn ensure_default(client: &Client) -> Result<(), Error> {
    let api: Api<StorageClass> = Api::all(client.clone());
    if api.get_opt(DEFAULT_CLASS).await?.is_some() {
        return Ok(());
    }
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(DEFAULT_CLASS.to_owned()),
            annotations: Some([(DEFAULT_CLASS_ANNOTATION.to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        provisioner: PROVISIONER.to_owned(),
        reclaim_policy: Some("Delete".to_owned()),
        volume_binding_mode: Some("WaitForFirstConsumer".to_owned()),
        ..StorageClass::default()
    };
    match api.create(&PostParams::default(), &class).await {
        Ok(_) => {
            info!(class = DEFAULT_CLASS, "created the default StorageClass");
            Ok(())
        }
        Err(err) if api_code(&err) == Some(409) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The name of the default class, if one is marked default (the newest wins, as upstream).
pub async fn default_class(client: &Client) -> Result<Option<String>, Error> {
    let api: Api<StorageClass> = Api::all(client.clone());
    let mut defaults: Vec<StorageClass> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(is_default_class)
        .collect();
    defaults.sort_by_key(|c| c.metadata.creation_timestamp.clone());
    Ok(defaults.pop().and_then(|c| c.metadata.name))
}
