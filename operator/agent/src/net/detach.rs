//! `Network::detach`: everything a Pod had is released when it goes.

use super::{Error, Network, host_veth_name, link};

impl Network {
    /// Stops the Pod's port proxies, deletes its veth pair (the namespace side goes with it) and releases its
    /// address. Idempotent: detaching a Pod twice, or one never attached, is fine.
    pub async fn detach(&self, pod_uid: &str) -> Result<(), Error> {
        let started = std::time::Instant::now();
        self.unpublish(pod_uid).await;
        let host = host_veth_name(pod_uid);
        link::delete(&self.netlink, &host).await?;
        let released = self.lock_ipam().release(pod_uid)?;
        // `micros` is what bench-network reports as the Pod's network teardown time.
        tracing::info!(
            pod_uid,
            veth = %host,
            ip = ?released,
            micros = started.elapsed().as_micros() as u64,
            "pod detached"
        );
        Ok(())
    }
}
