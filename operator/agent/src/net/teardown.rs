//! `Network::teardown`, for `berth down`: what setup and the attached Pods left on the host.

use super::{Error, NetConfig, ipam, link, nft};

impl super::Network {
    /// Deletes the veths still on the bridge, the bridge, the nftables table and the IPAM store. Proxies
    /// die with the agent process. Idempotent.
    pub async fn teardown(config: &NetConfig) -> Result<(), Error> {
        let netlink = link::connect()?;
        if let Some(index) = link::index_of(&netlink, &config.bridge).await? {
            for port in link::ports_of(&netlink, index).await? {
                link::delete(&netlink, &port).await?;
            }
            link::delete(&netlink, &config.bridge).await?;
        }
        nft::delete(&config.nft_table())?;
        ipam::Ipam::remove(&config.state_dir)?;
        tracing::info!(bridge = %config.bridge, "pod network removed");
        Ok(())
    }
}
