//! A run's timeline (with `record_timeline`): one [`StepRecord`] per step, and its text line
//! (`wg-sim replay`, failure reports, the HTML swimlanes).

use crate::decision::Decision;
use crate::world::clock::EPOCH_START_MS;
use crate::world::{ActorKind, Inner};

/// One step of a run recorded with a timeline: who ran, at which port call, with which fault,
/// and what it changed (`notes`: commits, events, results).
#[derive(Clone, Debug)]
pub struct StepRecord {
    pub step: usize,
    pub tick_ms: i64,
    /// The actor that ran or crashed; `None` for a fault on the world (pid reuse, clock jump,
    /// stall, TERM ignored).
    pub actor: Option<String>,
    pub kind: Option<ActorKind>,
    /// The port call it ran (`CRASH`, or the fault, when it did not run one).
    pub call: String,
    pub fault: Option<String>,
    pub notes: Vec<String>,
}

impl StepRecord {
    /// The record of step `step`, `decision`, which ran at port call `call` (for a `Run`),
    /// with the notes the world took during it.
    pub fn new(inner: &Inner, step: usize, decision: &Decision, call: &str, notes: Vec<String>) -> StepRecord {
        let (actor, kind, call, fault) = match decision {
            Decision::Run { actor, fault } => {
                let slot = &inner.actors[*actor];
                let fault = fault.map(|f| format!("store fault: {f:?}"));
                (Some(slot.name.clone()), Some(slot.kind), call.to_string(), fault)
            }
            Decision::Crash { actor, landing } => {
                let slot = &inner.actors[*actor];
                let fault = Some(format!("crash (write in flight: {landing:?})"));
                (Some(slot.name.clone()), Some(slot.kind), "CRASH".into(), fault)
            }
            other => (None, None, format!("{other:?}"), Some(format!("{other:?}"))),
        };
        StepRecord { step, tick_ms: inner.clock.now_ms - EPOCH_START_MS, actor, kind, call, fault, notes }
    }
    /// The timeline line: `#<step> <tick>  <actor> <call> [fault]  <notes>`.
    pub fn line(&self) -> String {
        let (step, tick, notes) = (self.step, format_tick(self.tick_ms), self.notes.join("; "));
        match (&self.actor, self.call.as_str(), &self.fault) {
            (Some(name), "CRASH", Some(fault)) => {
                let landing = fault.trim_start_matches("crash ");
                format!("#{step:<4} {tick:>8}  {name:<36} CRASH {landing}  {notes}")
            }
            (Some(name), call, fault) => {
                let fault = fault.as_ref().map(|f| format!(" [{f}]")).unwrap_or_default();
                format!("#{step:<4} {tick:>8}  {name:<36} {call}{fault}  {notes}")
            }
            (None, call, _) => format!("#{step:<4} {tick:>8}  {:<36} {call}  {notes}", "FAULT"),
        }
    }
}

pub fn format_tick(tick_ms: i64) -> String {
    format!("{}.{:03}s", tick_ms / 1000, tick_ms % 1000)
}
