//! The local addresses a run's connections leave from, each with its own ephemeral ports.

/// The source addresses a run's connections leave from, taken round-robin: one counter
/// shared by every clone, so connections made on many threads spread evenly.
#[derive(Clone, Default)]
pub struct SourceAddresses {
    addresses: std::sync::Arc<[std::net::IpAddr]>,
    turn: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SourceAddresses {
    pub fn new(addresses: Vec<std::net::IpAddr>) -> Self {
        SourceAddresses {
            addresses: addresses.into(),
            turn: Default::default(),
        }
    }

    /// The address of the next connection; None when the system chooses.
    pub fn next(&self) -> Option<std::net::IpAddr> {
        if self.addresses.is_empty() {
            return None;
        }
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(self.addresses[turn % self.addresses.len()])
    }

    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_taken_in_turn_by_every_clone() {
        let none = SourceAddresses::default();
        assert_eq!(none.next(), None);
        let a: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        let b: std::net::IpAddr = "127.0.0.3".parse().unwrap();
        let sources = SourceAddresses::new(vec![a, b]);
        let clone = sources.clone();
        let taken = [sources.next(), clone.next(), sources.next(), clone.next()];
        assert_eq!(taken, [Some(a), Some(b), Some(a), Some(b)]);
        assert_eq!(sources.len(), 2);
    }
}
