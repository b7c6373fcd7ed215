//! Tests that load the machine on purpose (the hostile corpus kills
//! workers, spins them to their deadline and fills their memory) run with
//! no other test's server beside them, as when each file was a binary of
//! its own: next to them, a plain fetch misses the 50 ms default deadline.
//! Every other server holds a shared place, so those run together as
//! before.
//!
//! Not a `RwLock`: one test may start several servers, and a shared place
//! taken while a test waits to be alone must not wait behind it.

use std::sync::Mutex;

use tokio::sync::Notify;

/// Servers running beside others, and whether one test runs alone.
static PLACES: Mutex<(usize, bool)> = Mutex::new((0, false));
static CHANGED: Notify = Notify::const_new();

/// A place beside other tests, held as long as a server runs.
pub struct Beside(());

/// The whole process, for a test that loads the machine.
pub struct Alone(());

/// Waits until no test runs alone.
pub async fn beside_others() -> Beside {
    wait_for(|places| {
        let free = !places.1;
        if free {
            places.0 += 1;
        }
        free
    })
    .await;
    Beside(())
}

/// Waits until no other test's server runs, and keeps new ones waiting.
pub async fn alone() -> Alone {
    wait_for(|places| {
        let free = *places == (0, false);
        if free {
            places.1 = true;
        }
        free
    })
    .await;
    Alone(())
}

async fn wait_for(mut take: impl FnMut(&mut (usize, bool)) -> bool) {
    loop {
        // Registered before looking, so a release in between is not missed.
        let changed = CHANGED.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if take(&mut PLACES.lock().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        changed.await;
    }
}

fn release(give: impl FnOnce(&mut (usize, bool))) {
    give(&mut PLACES.lock().unwrap_or_else(|e| e.into_inner()));
    CHANGED.notify_waiters();
}

impl Drop for Beside {
    fn drop(&mut self) {
        release(|places| places.0 -= 1);
    }
}

impl Drop for Alone {
    fn drop(&mut self) {
        release(|places| places.1 = false);
    }
}
