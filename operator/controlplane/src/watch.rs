//! Reflectors shared by the loops that look at the whole cluster at once (scheduler, GC, node lifecycle):
//! a watch keeps a local cache up to date and says when something changed.

use std::fmt::Debug;
use std::hash::Hash;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tracing::warn;

/// What a change means to the loop: nothing, or a reason to look again.
pub type Touch = bool;

/// A cache of `api` kept current by a watch, and the stream that drives it: it yields `filter(event)` for
/// every event (and `false` for watch errors, which the watcher retries with backoff).
pub fn reflect<K>(
    api: Api<K>,
    dyntype: K::DynamicType,
    filter: impl Fn(&watcher::Event<K>) -> Touch + Send + 'static,
) -> (Store<K>, BoxStream<'static, Touch>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash + Send + Sync,
{
    let resource = K::plural(&dyntype).into_owned();
    let writer = reflector::store::Writer::new(dyntype);
    let store = writer.as_reader();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    )
    .map(move |event| match event {
        Ok(event) => filter(&event),
        Err(err) => {
            warn!(resource = %resource, error = %err, "watch failed; retrying");
            false
        }
    });
    (store, stream.boxed())
}

/// Any change at all is a reason to look again.
pub fn any<K>(_: &watcher::Event<K>) -> Touch {
    true
}

/// Merges the streams of several reflectors into one.
pub fn merge(streams: Vec<BoxStream<'static, Touch>>) -> impl Stream<Item = Touch> + Send {
    futures::stream::select_all(streams)
}
