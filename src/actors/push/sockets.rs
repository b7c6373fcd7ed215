//! Open push sockets and OFREP event streams, counted in all and per client address, so one host
//! cannot hold every socket a node can keep. Memory only: after a restart
//! the sockets are gone and so are their counts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::sync::Locked;

/// The node's open push sockets.
#[derive(Debug, Default)]
pub struct Sockets {
    per_address: Mutex<HashMap<IpAddr, usize>>,
    open: AtomicUsize,
}

/// One admitted socket; gives its place back when dropped.
#[derive(Debug)]
pub struct SocketPermit {
    sockets: Arc<Sockets>,
    address: IpAddr,
}

impl Sockets {
    /// A place for a socket from `address`, unless it holds `limit` already.
    pub fn admit(self: &Arc<Self>, address: IpAddr, limit: usize) -> Option<SocketPermit> {
        let mut per_address = self.per_address.locked();
        let held = per_address.entry(address).or_default();
        if *held >= limit {
            return None;
        }
        *held += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(SocketPermit {
            sockets: self.clone(),
            address,
        })
    }

    /// Sockets open now, subscribed or not.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        let mut per_address = self.sockets.per_address.locked();
        if let Some(held) = per_address.get_mut(&self.address) {
            *held -= 1;
            if *held == 0 {
                per_address.remove(&self.address);
            }
        }
        self.sockets.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_limit_and_gets_places_back() {
        let sockets = Arc::new(Sockets::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = sockets.admit(a, 2).unwrap();
        let _second = sockets.admit(a, 2).unwrap();
        assert!(sockets.admit(a, 2).is_none());
        let _other = sockets.admit(b, 2).expect("another address has its own places");
        assert_eq!(sockets.open(), 3);
        drop(first);
        let _again = sockets.admit(a, 2).expect("a closed socket's place is free again");
        assert_eq!(sockets.open(), 3);
    }
}
