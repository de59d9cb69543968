//! Instances made ahead of their request. A WASIp2 request gets a fresh
//! instance, as on Spin, but making it (a store and an instantiation, a third
//! of a hello's CPU) need not wait for the request: each component keeps one
//! spare, made in a task of its own while the request that took the last one
//! runs, so a request that comes when the host is not busy finds its instance
//! ready. A spare has served nothing; what differs from making the instance
//! on arrival is only when its component's start-up code runs.
//!
//! A spare holds a pool slot, so spares must not turn requests away: one is
//! made only while at least two slots are free (never with the last one),
//! and a request that finds the pool full drops another component's spare
//! and takes its slot. Only a spare still being made, for the instant that
//! takes, cannot give way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;

use super::World;
use crate::state::InstanceState;

/// A fresh instance and the pool slot it holds.
pub(super) struct Fresh {
    pub store: Store<InstanceState>,
    pub world: World,
    pub permit: OwnedSemaphorePermit,
}

/// One component's spare instance.
#[derive(Default)]
pub(super) struct Spare {
    fresh: Mutex<Option<Fresh>>,
    /// Set while a task is making the spare: one at a time.
    making: AtomicBool,
}

impl Spare {
    pub fn take(&self) -> Option<Fresh> {
        self.fresh.lock().expect("spare lock").take()
    }

    /// Claims the making of the next spare; false if there is one, or one
    /// is being made. The claimer calls [`Self::made`] when done.
    pub fn claim(&self) -> bool {
        if self.making.swap(true, Ordering::AcqRel) {
            return false;
        }
        if self.fresh.lock().expect("spare lock").is_some() {
            self.making.store(false, Ordering::Release);
            return false;
        }
        true
    }

    /// Ends a claim, keeping `fresh` if it was made.
    pub fn made(&self, fresh: Option<Fresh>) {
        if fresh.is_some() {
            *self.fresh.lock().expect("spare lock") = fresh;
        }
        self.making.store(false, Ordering::Release);
    }
}

/// Every component's spare, so that a request can make room in a full pool.
#[derive(Default)]
pub struct Spares(Mutex<Vec<Arc<Spare>>>);

impl Spares {
    /// A new component's spare.
    pub(super) fn add(&self) -> Arc<Spare> {
        let spare = Arc::new(Spare::default());
        self.0.lock().expect("spares lock").push(spare.clone());
        spare
    }

    /// Drops one spare, which frees its pool slot; false if none was there.
    pub(super) fn give_way(&self) -> bool {
        let taken = self.0.lock().expect("spares lock").iter().find_map(|spare| spare.take());
        taken.is_some()
    }
}
