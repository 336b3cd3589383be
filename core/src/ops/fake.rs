//! Ports for the operations' unit tests: a clock that stands still, a store holding one state
//! (counting its transactions, some of which may be made to fail), processes whose liveness (and
//! spawn) the test sets, and a record of every signal sent and every gate released. A hook may
//! change the state during a liveness check or a spawn, as another command committing at that
//! very moment would.

use crate::identity::check_pid;
use crate::model::ProcessRef;
use crate::ports::{
    Clock, Ctx, ExitWait, Liveness, Processes, Signal, SignalOutcome, SpawnError, SpawnRequest, Spawned, State, Store,
    StoreError,
};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

/// A state made of task lines and registry entries written as the JSON `wg` stores (each task
/// gets `"kind":"task"`), so a test reads like the files it stands for. The next agent id is
/// the one after the entries given.
pub fn state_of(tasks: &[serde_json::Value], agents: &[serde_json::Value]) -> State {
    let lines: Vec<String> = tasks
        .iter()
        .map(|task| {
            let mut line = serde_json::json!({"kind": "task"});
            line.as_object_mut().unwrap().extend(task.as_object().expect("a task is an object").clone());
            line.to_string()
        })
        .collect();
    let agents: serde_json::Map<String, serde_json::Value> = agents
        .iter()
        .map(|agent| (agent["id"].as_str().expect("an entry has an id").to_string(), agent.clone()))
        .collect();
    let registry = serde_json::json!({"agents": agents, "next_agent_id": agents.len() + 1});
    State {
        graph: crate::graph::Graph::parse(lines.join("\n").as_bytes()).expect("a valid graph"),
        registry: crate::registry::Registry::parse(registry.to_string().as_bytes()).expect("a valid registry"),
    }
}

type Hook = Box<dyn FnOnce(&mut State)>;

pub struct Fake {
    pub now_ms: i64,
    pub state: RefCell<State>,
    /// What every process with a pid the guard allows is found to be.
    pub liveness: Liveness,
    pub signals: RefCell<Vec<(i64, Signal)>>,
    /// What each signal finds, in order (recorded in `signals` only when delivered); once
    /// these run out, every signal is delivered.
    pub signal_outcomes: RefCell<VecDeque<SignalOutcome>>,
    /// The signal the process exits on (SIGKILL also ends one that exits on SIGTERM); `None`: it
    /// never exits (stuck in the kernel).
    pub exits_on: Option<Signal>,
    /// The deadline of every wait for an exit.
    pub waits: RefCell<Vec<i64>>,
    on_liveness: RefCell<Option<Hook>>,
    /// What every spawn starts; `None`: spawning fails.
    pub spawns: Option<Spawned>,
    /// Each process released from its gate, and whether it was let run.
    pub releases: RefCell<Vec<(i64, bool)>>,
    on_spawn: RefCell<Option<Hook>>,
    /// How many transactions ran (failed ones included).
    pub transactions: Cell<usize>,
    /// The numbers (from 1) of the transactions that fail without running their change.
    pub failing_transactions: Vec<usize>,
}

impl Fake {
    pub fn new(state: State, now_ms: i64, liveness: Liveness) -> Fake {
        Fake {
            now_ms,
            state: RefCell::new(state),
            liveness,
            signals: RefCell::default(),
            signal_outcomes: RefCell::default(),
            exits_on: Some(Signal::Term),
            waits: RefCell::default(),
            on_liveness: RefCell::default(),
            spawns: None,
            releases: RefCell::default(),
            on_spawn: RefCell::default(),
            transactions: Cell::default(),
            failing_transactions: Vec::new(),
        }
    }

    pub fn ctx(&self) -> Ctx<'_, Fake, Fake, Fake> {
        Ctx { clock: self, processes: self, store: self, actor: "test" }
    }

    /// Runs `hook` on the state at the next liveness check, once.
    pub fn at_next_liveness(&self, hook: impl FnOnce(&mut State) + 'static) {
        *self.on_liveness.borrow_mut() = Some(Box::new(hook));
    }

    /// Runs `hook` on the state at the next spawn, once.
    pub fn at_next_spawn(&self, hook: impl FnOnce(&mut State) + 'static) {
        *self.on_spawn.borrow_mut() = Some(Box::new(hook));
    }
}

impl Clock for Fake {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    async fn sleep_ms(&self, _duration_ms: u64) {}
}

impl Processes for Fake {
    async fn spawn(&self, _request: &SpawnRequest) -> Result<Spawned, SpawnError> {
        if let Some(hook) = self.on_spawn.borrow_mut().take() {
            hook(&mut self.state.borrow_mut());
        }
        self.spawns.ok_or(SpawnError::NoFreePid)
    }

    async fn release(&self, spawned: &Spawned, go: bool) {
        self.releases.borrow_mut().push((spawned.pid, go));
    }

    async fn liveness(&self, process: &ProcessRef) -> Liveness {
        if let Some(hook) = self.on_liveness.borrow_mut().take() {
            hook(&mut self.state.borrow_mut());
        }
        match check_pid(process.pid, None) {
            Err(why) => Liveness::Refused(why),
            Ok(_) => self.liveness.clone(),
        }
    }

    async fn signal(&self, process: &ProcessRef, signal: Signal) -> SignalOutcome {
        let outcome = self.signal_outcomes.borrow_mut().pop_front().unwrap_or(SignalOutcome::Delivered);
        if outcome == SignalOutcome::Delivered {
            self.signals.borrow_mut().push((process.pid, signal));
        }
        outcome
    }

    async fn wait_exit(&self, _process: &ProcessRef, deadline_ms: i64) -> ExitWait {
        self.waits.borrow_mut().push(deadline_ms);
        let ends = |signal: &Signal| match self.exits_on {
            Some(Signal::Term) => true,
            Some(Signal::Kill) => *signal == Signal::Kill,
            None => false,
        };
        match self.signals.borrow().iter().any(|(_, signal)| ends(signal)) {
            true => ExitWait::Exited,
            false => ExitWait::TimedOut,
        }
    }
}

impl Store for Fake {
    async fn transact<R>(&self, change: impl FnOnce(&mut State) -> R) -> Result<R, StoreError> {
        self.transactions.set(self.transactions.get() + 1);
        if self.failing_transactions.contains(&self.transactions.get()) {
            return Err(StoreError::Io("the fake store failed".into()));
        }
        Ok(change(&mut self.state.borrow_mut()))
    }
}
