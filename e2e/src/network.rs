//! A Pod network of its own for each `berth up` a test starts: a bridge name and a /24 that no other test
//! (in this process or in another one running beside it) and no route of the host uses, so that agents run
//! side by side without sharing addresses, and `berth down` of one removes nothing of another's.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The second octets the tests draw from (10.200.0.0 to 10.250.255.0): far from the 10.89.0.0/16 default.
const SECOND_OCTETS: std::ops::RangeInclusive<u32> = 200..=250;

/// The bridge and CIDR of one `berth up`.
#[derive(Clone, Debug)]
pub struct TestNetwork {
    pub bridge: String,
    pub cidr: String,
    /// The bridge's address: the Pods' gateway and DNS server.
    pub gateway: Ipv4Addr,
}

impl TestNetwork {
    /// A bridge name (`bt<pid><n>`, at most 15 characters) and a /24 free on this host.
    pub fn pick() -> TestNetwork {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let routes = host_routes();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            assert!(n < 100_000, "no free test network left");
            let bridge = format!("bt{pid:x}{n:x}");
            assert!(bridge.len() <= 15, "bridge name {bridge} is too long");
            if std::path::Path::new("/sys/class/net")
                .join(&bridge)
                .exists()
            {
                continue;
            }
            // A start that differs between processes, so that tests running beside each other rarely try the
            // same /24 first; a collision the route check misses fails `berth up` with a clear error.
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default();
            let seed = pid.wrapping_mul(2_654_435_761) ^ nanos ^ n.wrapping_mul(40_503);
            let span = SECOND_OCTETS.end() - SECOND_OCTETS.start() + 1;
            let second = SECOND_OCTETS.start() + seed % span;
            let third = (seed >> 8) % 256;
            let network = Ipv4Addr::new(10, second as u8, third as u8, 0);
            if routes
                .iter()
                .any(|(dest, mask)| overlaps(*dest, *mask, network, 0xffff_ff00))
            {
                continue;
            }
            let gateway = Ipv4Addr::new(10, second as u8, third as u8, 1);
            return TestNetwork {
                bridge,
                cidr: format!("{network}/24"),
                gateway,
            };
        }
    }

    /// The `berth up` / `berth agent` flags that select this network.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--bridge".into(),
            self.bridge.clone(),
            "--pod-cidr".into(),
            self.cidr.clone(),
        ]
    }
}

/// The host's IPv4 routes (destination, netmask) from /proc/net/route, the default route left out.
fn host_routes() -> Vec<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    // The kernel prints each address as the native-endian integer of its network-order bytes.
    let addr = |s: &str| {
        let raw = u32::from_str_radix(s, 16).ok()?;
        Some(u32::from(Ipv4Addr::from(raw.to_ne_bytes())))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dest = addr(fields.get(1)?)?;
            let mask = addr(fields.get(7)?)?;
            (mask != 0).then_some((dest, mask))
        })
        .collect()
}

fn overlaps(a: u32, a_mask: u32, b: Ipv4Addr, b_mask: u32) -> bool {
    let common = a_mask & b_mask;
    a & common == u32::from(b) & common
}
