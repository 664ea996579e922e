//! Time as the service sees it. Injectable so that tests can move time
//! forward (records expiring, codes changing) without sleeping.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use scoring::Timestamp;

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> Timestamp;
    /// Resolves once `now() >= t`.
    fn sleep_until(&self, t: Timestamp) -> Sleep;
}

/// The wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // The one read of the wall clock on the server's side.
        Timestamp::from_system_time(std::time::SystemTime::now())
    }

    fn sleep_until(&self, t: Timestamp) -> Sleep {
        let wait = t.unix_nanos().saturating_sub(self.now().unix_nanos()).max(0);
        Box::pin(tokio::time::sleep(std::time::Duration::from_nanos(wait as u64)))
    }
}

/// A clock that moves only when told to; sleepers wake when it passes
/// their deadline.
#[derive(Debug)]
pub struct ManualClock {
    now: tokio::sync::watch::Sender<Timestamp>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock { now: tokio::sync::watch::Sender::new(start) }
    }

    pub fn set(&self, t: Timestamp) {
        self.now.send_replace(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, t: Timestamp) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // An error means the clock was dropped: time stands still forever.
            if rx.wait_for(|now| *now >= t).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}
