//! Tunables of kill, reaper and dispatcher. Plain data: the CLI reads them from
//! `.wg/config.toml`, scenarios from their `[world]`.

/// Upstream workgraph's crash-loop throttle: so many deaths in a window, then backoffs, then fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashLoopPolicy {
    pub deaths_max: usize,
    pub window_ms: u64,
    pub backoffs_ms: Vec<u64>,
}

impl Default for CrashLoopPolicy {
    fn default() -> Self {
        CrashLoopPolicy { deaths_max: 5, window_ms: 300_000, backoffs_ms: vec![60_000, 120_000, 240_000] }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Time between SIGTERM and SIGKILL.
    pub grace_ms: u64,
    /// How long to wait for the exit after SIGKILL before reporting a process that will not die.
    pub kill_wait_ms: u64,
    /// An agent whose last heartbeat is older is stopped and reaped; `None` turns this off.
    pub heartbeat_timeout_ms: Option<u64>,
    /// An agent entry still `starting` without a pid after this long was orphaned by a crash.
    pub starting_timeout_ms: u64,
    /// A stop request older than grace + kill wait + this is taken over by the next retry.
    pub stop_takeover_slack_ms: u64,
    pub max_agents: usize,
    /// The service sweeps at least this often, even when nothing wakes it.
    pub poll_interval_ms: u64,
    pub crash_loop: CrashLoopPolicy,
    /// Test-only: a known bug to plant, so the simulator can prove it finds it.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PlantedBug>,
}

/// Known bugs the simulator must find (`wg-sim`'s `tests/planted.rs`), each hooked in one line
/// where it breaks a rule (`ops/planted.rs`). The names exist in every build, so the tests' table
/// of campaigns can name its bugs; only the `planted-bugs` feature, which no normal build enables,
/// has `Settings::planted_bug` and compiles the buggy branches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// 1: retry re-queues without checking the task is still its agent's.
    UnconditionalRetry,
    /// 2: the reaper settles a task without checking it is still the dead agent's.
    ReaperUnchecked,
    /// 3: a retry that finds another retry in flight counts an attempt too.
    DoubleCountRetries,
    /// 4: the reaper marks the agent dead and re-queues its task in two transactions.
    SplitReap,
    /// 5: signals go to the pid without the identity check (honoured by the process port).
    SignalWithoutIdentity,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            grace_ms: 5_000,
            kill_wait_ms: 5_000,
            heartbeat_timeout_ms: None,
            starting_timeout_ms: 30_000,
            stop_takeover_slack_ms: 10_000,
            max_agents: 4,
            poll_interval_ms: 1_000,
            crash_loop: CrashLoopPolicy::default(),
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }
}

impl Settings {
    /// The longest a stop takes: SIGTERM, the grace period, SIGKILL, the kill wait. A requester
    /// at work has finished by this age of its stop request.
    pub fn stop_max_ms(&self) -> u64 {
        self.grace_ms + self.kill_wait_ms
    }

    /// Past this age a stop request belongs to an invocation that crashed.
    pub fn stop_request_expiry_ms(&self) -> u64 {
        self.stop_max_ms() + self.stop_takeover_slack_ms
    }
}
