//! A decision: what one step of a run does, and one entry of its trace. A scheduling decision
//! (which actor runs) or an injected fault; chosen by `crate::schedule`, applied by the
//! executor, offered as faults by `crate::faults`, saved in trace files (`crate::trace`).

use crate::world::store::{Landing, StoreFault};
use crate::world::ActorId;
use serde::{Deserialize, Serialize};

/// One entry of a trace: a scheduling decision or an injected fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "kebab-case")]
pub enum Decision {
    Run {
        actor: ActorId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fault: Option<StoreFault>,
    },
    /// The actor (a command, or the whole service) dies at its port call; a write it had in
    /// flight lands as `landing` says.
    Crash {
        actor: ActorId,
        landing: Landing,
    },
    ReusePid {
        pid: i64,
    },
    ClockJump {
        by_ms: u64,
    },
    Stall {
        pid: i64,
        for_ms: u64,
    },
    IgnoreTerm {
        pid: i64,
    },
}

impl Decision {
    pub fn is_fault(&self) -> bool {
        !matches!(self, Decision::Run { fault: None, .. })
    }
}
