//! The wall clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wg_core::ports::Clock;
use wg_core::time::EpochMs;

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// Now, in milliseconds since the epoch; the one place production reads the wall clock.
pub fn epoch_ms_now() -> EpochMs {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    since_epoch.as_millis() as EpochMs
}

impl Clock for SystemClock {
    fn now_ms(&self) -> EpochMs {
        epoch_ms_now()
    }

    async fn sleep_ms(&self, duration_ms: u64) {
        std::thread::sleep(Duration::from_millis(duration_ms));
    }
}
