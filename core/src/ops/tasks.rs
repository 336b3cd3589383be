//! The plain task commands: add, done, fail, heartbeat, recover.

use super::{requeue, OpError};
use crate::model::{is_companion_id, Task, TaskStatus};
use crate::ports::{Clock, Ctx, Processes, State, Store};
use crate::time::format_rfc3339;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewTask {
    pub id: Option<String>,
    pub title: String,
    pub exec: Option<String>,
    pub after: Vec<String>,
    pub max_retries: Option<u32>,
    pub tags: Vec<String>,
}

/// Adds a task; its id is given or derived from the title. Returns the id.
pub async fn add_task<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    new: &NewTask,
) -> Result<String, OpError> {
    check_new_task(new)?;
    let now = format_rfc3339(ctx.clock.now_ms());
    ctx.store
        .transact(|state| {
            let id = match &new.id {
                Some(id) => id.clone(),
                None => free_id(state, &slug(&new.title)),
            };
            if let Some(missing) = new.after.iter().find(|dependency| state.graph.task(dependency).is_none()) {
                return Err(OpError::Refused(format!("--after {missing}: no such task (see `wg list`)")));
            }
            let mut task = Task::new(&id, &new.title);
            task.exec = new.exec.clone();
            task.after = new.after.clone();
            task.max_retries = new.max_retries;
            task.tags = new.tags.clone();
            task.created_at = Some(now.clone());
            state.graph.add_task(task).map_err(|duplicate| OpError::Refused(duplicate.to_string()))?;
            Ok(id)
        })
        .await?
}

/// A task needs a title, and an id others can name on a command line and in a path
/// (`.wg/agents/<agent>/` is per agent, but tools build paths from task ids too).
fn check_new_task(new: &NewTask) -> Result<(), OpError> {
    if new.title.trim().is_empty() {
        return Err(OpError::Refused("the title is empty: say in a few words what the task is".into()));
    }
    let Some(id) = &new.id else { return Ok(()) };
    let unfit = id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/');
    if unfit {
        return Err(OpError::Refused(format!(
            "--id {id:?}: an id is one word without spaces or '/' (e.g. nightly-checks)"
        )));
    }
    Ok(())
}

/// The id `wg add` makes from a title when no `--id` is given (before any suffix that keeps
/// it unique): "Nightly checks" -> "nightly-checks".
pub fn slug(title: &str) -> String {
    let words: Vec<String> = title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .take(5)
        .map(str::to_ascii_lowercase)
        .collect();
    if words.is_empty() {
        "task".to_string()
    } else {
        words.join("-")
    }
}

fn free_id(state: &State, base: &str) -> String {
    (1..)
        .map(|n| if n == 1 { base.to_string() } else { format!("{base}-{n}") })
        .find(|id| state.graph.task(id).is_none())
        .expect("some suffix is free")
}

/// Checks that `agent_id`, when a command comes from an agent, still owns the task: an agent
/// that was stopped and replaced must not finish its successor's task.
fn check_owner(task: &Task, agent_id: Option<&str>) -> Result<(), OpError> {
    match agent_id {
        Some(agent_id) if task.assigned.as_deref() != Some(agent_id) || task.status != TaskStatus::InProgress => {
            Err(OpError::Refused(format!(
                "{agent_id} no longer owns {} (it is {}{}); the result was not recorded",
                task.id,
                task.status,
                task.assigned.as_deref().map(|owner| format!(", assigned to {owner}")).unwrap_or_default()
            )))
        }
        _ => Ok(()),
    }
}

/// `wg done`. `agent_id` is the caller's `WG_AGENT_ID`, when an agent calls.
pub async fn finish_task<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    task_id: &str,
    agent_id: Option<&str>,
) -> Result<bool, OpError> {
    let now_ms = ctx.clock.now_ms();
    let now = format_rfc3339(now_ms);
    ctx.store
        .transact(|state| {
            let task = state.graph.task(task_id).ok_or_else(|| OpError::UnknownTask(task_id.to_string()))?;
            if task.status == TaskStatus::Done {
                return Ok(false);
            }
            check_owner(task, agent_id)?;
            let task = state.graph.task_mut(task_id).expect("found above");
            task.status = TaskStatus::Done;
            task.completed_at = Some(now.clone());
            task.failure_reason = None;
            task.push_log(now_ms, ctx.actor, "Task marked as done".to_string());
            Ok(true)
        })
        .await?
}

/// `wg fail`.
pub async fn fail_task<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    task_id: &str,
    reason: &str,
    agent_id: Option<&str>,
) -> Result<(), OpError> {
    let now_ms = ctx.clock.now_ms();
    ctx.store
        .transact(|state| {
            let task = state.graph.task(task_id).ok_or_else(|| OpError::UnknownTask(task_id.to_string()))?;
            if task.status == TaskStatus::Done {
                return Err(OpError::Refused(format!("{task_id} is done; a done task cannot fail")));
            }
            check_owner(task, agent_id)?;
            let task = state.graph.task_mut(task_id).expect("found above");
            task.status = TaskStatus::Failed;
            task.failure_reason = Some(reason.to_string());
            task.push_log(now_ms, ctx.actor, format!("Task marked as failed: {reason}"));
            Ok(())
        })
        .await?
}

/// `wg heartbeat`: the agent says it is alive.
pub async fn heartbeat<C: Clock, P: Processes, S: Store>(ctx: Ctx<'_, C, P, S>, agent_id: &str) -> Result<(), OpError> {
    let now = format_rfc3339(ctx.clock.now_ms());
    ctx.store
        .transact(|state| {
            let agent = state.registry.agent(agent_id).ok_or_else(|| OpError::UnknownAgent(agent_id.to_string()))?;
            if !agent.status.is_running() {
                return Err(OpError::Refused(format!("{agent_id} is {}; a heartbeat cannot revive it", agent.status)));
            }
            state.registry.agent_mut(agent_id).expect("found above").last_heartbeat = Some(now.clone());
            Ok(())
        })
        .await?
}

/// What `wg recover` does (or would do, in a dry run).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoverPlan {
    /// Failed or abandoned tasks re-opened.
    pub requeued: Vec<String>,
    /// Companions abandoned because their task was re-opened (only without `keep_agency`).
    pub companions_abandoned: Vec<String>,
}

/// `wg recover`: re-open failed and abandoned tasks (optionally only `only_task`). Without
/// `keep_agency`, their open `.evaluate-*` / `.flip-*` companions are abandoned, as upstream
/// does; retry always keeps them. With `apply` false nothing is written.
pub async fn recover<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    only_task: Option<&str>,
    keep_agency: bool,
    apply: bool,
) -> Result<RecoverPlan, OpError> {
    let now_ms = ctx.clock.now_ms();
    ctx.store
        .transact(|state| {
            if let Some(id) = only_task.filter(|id| state.graph.task(id).is_none()) {
                return Err(OpError::UnknownTask(id.to_string()));
            }
            let plan = plan_recovery(state, only_task, keep_agency);
            if apply {
                for id in &plan.requeued {
                    let task = state.graph.task_mut(id).expect("planned from the graph");
                    requeue(task, now_ms, ctx.actor, "Recovered by wg recover".to_string());
                    task.crash_loop = None;
                }
                for id in &plan.companions_abandoned {
                    let task = state.graph.task_mut(id).expect("planned from the graph");
                    task.status = TaskStatus::Abandoned;
                    task.push_log(now_ms, ctx.actor, "Abandoned by wg recover".to_string());
                }
            }
            Ok(plan)
        })
        .await?
}

fn plan_recovery(state: &State, only_task: Option<&str>, keep_agency: bool) -> RecoverPlan {
    let mut plan = RecoverPlan::default();
    for task in state.graph.tasks() {
        let selected = only_task.is_none_or(|id| id == task.id);
        let recoverable = matches!(task.status, TaskStatus::Failed | TaskStatus::Abandoned);
        if selected && recoverable && !task.is_companion() {
            plan.requeued.push(task.id.clone());
        }
    }
    if !keep_agency {
        for task in state.graph.tasks() {
            let belongs = plan.requeued.iter().any(|id| task.id.ends_with(&format!("-{id}")));
            let finished = matches!(task.status, TaskStatus::Done | TaskStatus::Abandoned);
            if is_companion_id(&task.id) && belongs && !finished {
                plan.companions_abandoned.push(task.id.clone());
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;
    use crate::registry::Registry;

    fn state(graph: &str) -> State {
        State { graph: Graph::parse(graph.as_bytes()).unwrap(), registry: Registry::empty() }
    }

    #[test]
    fn a_task_added_without_an_id_is_named_after_the_first_words_of_its_title() {
        assert_eq!(slug("Nightly checks"), "nightly-checks");
        assert_eq!(slug("  Fix: the build (again) on ARM, today!"), "fix-the-build-again-on");
        assert_eq!(slug("¿?"), "task");
    }

    #[test]
    fn a_taken_id_gets_the_first_free_numbered_suffix() {
        let state = state(concat!(
            r#"{"kind":"task","id":"nightly-checks","status":"open"}"#,
            "\n",
            r#"{"kind":"task","id":"nightly-checks-2","status":"open"}"#
        ));
        assert_eq!(free_id(&state, "nightly-checks"), "nightly-checks-3");
        assert_eq!(free_id(&state, "weekly"), "weekly");
    }

    #[test]
    fn recover_reopens_failed_and_abandoned_tasks_and_abandons_their_open_companions_unless_kept() {
        let state = state(concat!(
            r#"{"kind":"task","id":"t1","status":"failed"}"#,
            "\n",
            r#"{"kind":"task","id":"t2","status":"abandoned"}"#,
            "\n",
            r#"{"kind":"task","id":"t3","status":"done"}"#,
            "\n",
            r#"{"kind":"task","id":".evaluate-t1","status":"open"}"#,
            "\n",
            r#"{"kind":"task","id":".flip-t1","status":"done"}"#,
            "\n",
            r#"{"kind":"task","id":".evaluate-t3","status":"open"}"#,
            "\n",
            r#"{"kind":"task","id":".flip-t2","status":"open"}"#
        ));
        let plan = plan_recovery(&state, None, false);
        assert_eq!(plan.requeued, ["t1", "t2"], "companions are never re-opened by recover");
        assert_eq!(plan.companions_abandoned, [".evaluate-t1", ".flip-t2"]);
        assert_eq!(plan_recovery(&state, None, true).companions_abandoned, Vec::<String>::new());
        let only_t2 = plan_recovery(&state, Some("t2"), false);
        assert_eq!(
            (only_t2.requeued, only_t2.companions_abandoned),
            (vec!["t2".to_string()], vec![".flip-t2".to_string()])
        );
    }

    #[test]
    fn add_names_the_task_it_added_and_refuses_a_dependency_that_does_not_exist() {
        use crate::ops::fake::Fake;
        let fake = Fake::new(
            state(r#"{"kind":"task","id":"nightly-checks","status":"done"}"#),
            0,
            crate::ports::Liveness::Alive,
        );
        let new =
            NewTask { title: "Nightly checks".into(), after: vec!["nightly-checks".into()], ..NewTask::default() };
        assert_eq!(crate::block_on(add_task(fake.ctx(), &new)), Ok("nightly-checks-2".to_string()));
        assert_eq!(fake.state.borrow().graph.task("nightly-checks-2").unwrap().after, ["nightly-checks"]);
        let orphan =
            NewTask { id: Some("t9".into()), title: "Orphan".into(), after: vec!["t0".into()], ..NewTask::default() };
        let refused = crate::block_on(add_task(fake.ctx(), &orphan));
        assert_eq!(refused, Err(OpError::Refused("--after t0: no such task (see `wg list`)".into())));
        assert!(fake.state.borrow().graph.task("t9").is_none());
    }

    #[test]
    fn add_refuses_a_blank_title_and_an_id_with_spaces_or_slashes_and_writes_nothing() {
        use crate::ops::fake::Fake;
        let fake = Fake::new(state(""), 0, crate::ports::Liveness::Alive);
        let titled = |id: Option<&str>, title: &str| NewTask {
            id: id.map(str::to_string),
            title: title.to_string(),
            ..NewTask::default()
        };
        for new in [titled(None, "  "), titled(Some("a b"), "A"), titled(Some("a/b"), "A"), titled(Some(""), "A")] {
            let refused = crate::block_on(add_task(fake.ctx(), &new));
            assert!(matches!(refused, Err(OpError::Refused(_))), "{new:?}: {refused:?}");
        }
        assert_eq!(fake.state.borrow().graph.tasks().count(), 0, "nothing was added");
        assert_eq!(crate::block_on(add_task(fake.ctx(), &titled(Some(".flip-a"), "A"))), Ok(".flip-a".into()));
    }

    // `wg done`, `wg fail` and `wg heartbeat`: who may record a result, and what is written.

    use crate::block_on;
    use crate::ops::fake::{state_of, Fake};
    use crate::ports::Liveness;
    use serde_json::json;

    const NOW_MS: i64 = 60_000;

    fn fake_with(task: serde_json::Value) -> Fake {
        let agent = json!({"id": "agent-1", "pid": 7, "task_id": "t1", "started_at": "x", "status": "working"});
        Fake::new(state_of(&[task], &[agent]), NOW_MS, Liveness::Alive)
    }

    fn owned_by_agent_1() -> serde_json::Value {
        json!({"id": "t1", "status": "in-progress", "assigned": "agent-1", "failure_reason": "earlier"})
    }

    /// The tasks no longer agent-1's, and how the refusal describes each.
    fn not_owned_by_agent_1() -> [(serde_json::Value, &'static str); 3] {
        [
            (json!({"id": "t1", "status": "in-progress", "assigned": "agent-2"}), "in-progress, assigned to agent-2"),
            (json!({"id": "t1", "status": "open", "retry_count": 1}), "open"),
            (json!({"id": "t1", "status": "failed", "assigned": "agent-1"}), "failed, assigned to agent-1"),
        ]
    }

    #[test]
    fn done_by_the_agent_that_owns_the_task_or_by_a_person_marks_it_done() {
        for (task, agent_id) in [(owned_by_agent_1(), Some("agent-1")), (json!({"id": "t1", "status": "failed"}), None)]
        {
            let fake = fake_with(task.clone());
            let before = fake.state.borrow().clone();
            assert_eq!(block_on(finish_task(fake.ctx(), "t1", agent_id)), Ok(true), "{task}");
            let mut expected = before;
            let done = expected.graph.task_mut("t1").unwrap();
            done.status = TaskStatus::Done;
            done.completed_at = Some(format_rfc3339(NOW_MS));
            done.failure_reason = None;
            done.push_log(NOW_MS, "test", "Task marked as done".into());
            assert_eq!(*fake.state.borrow(), expected, "{task}");
        }
    }

    #[test]
    fn done_of_a_done_task_changes_nothing_and_says_so() {
        let fake = fake_with(json!({"id": "t1", "status": "done", "assigned": "agent-2"}));
        let before = fake.state.borrow().clone();
        assert_eq!(block_on(finish_task(fake.ctx(), "t1", Some("agent-1"))), Ok(false));
        assert_eq!(*fake.state.borrow(), before);
    }

    #[test]
    fn done_or_fail_from_an_agent_that_no_longer_owns_the_task_is_refused_and_not_recorded() {
        for (task, now) in not_owned_by_agent_1() {
            let message = format!("agent-1 no longer owns t1 (it is {now}); the result was not recorded");
            let fake = fake_with(task.clone());
            let before = fake.state.borrow().clone();
            assert_eq!(
                block_on(finish_task(fake.ctx(), "t1", Some("agent-1"))),
                Err(OpError::Refused(message.clone()))
            );
            assert_eq!(block_on(fail_task(fake.ctx(), "t1", "broke", Some("agent-1"))), Err(OpError::Refused(message)));
            assert_eq!(*fake.state.borrow(), before, "{task}");
        }
    }

    #[test]
    fn fail_by_the_owning_agent_or_a_person_marks_the_task_failed_with_the_reason() {
        for (task, agent_id) in [(owned_by_agent_1(), Some("agent-1")), (json!({"id": "t1", "status": "open"}), None)] {
            let fake = fake_with(task.clone());
            let before = fake.state.borrow().clone();
            assert_eq!(block_on(fail_task(fake.ctx(), "t1", "tests fail", agent_id)), Ok(()), "{task}");
            let mut expected = before;
            let failed = expected.graph.task_mut("t1").unwrap();
            failed.status = TaskStatus::Failed;
            failed.failure_reason = Some("tests fail".into());
            failed.push_log(NOW_MS, "test", "Task marked as failed: tests fail".into());
            assert_eq!(*fake.state.borrow(), expected, "{task}");
        }
    }

    #[test]
    fn a_done_task_cannot_fail_even_by_a_person() {
        let fake = fake_with(json!({"id": "t1", "status": "done"}));
        let before = fake.state.borrow().clone();
        let refused = block_on(fail_task(fake.ctx(), "t1", "oops", None));
        assert_eq!(refused, Err(OpError::Refused("t1 is done; a done task cannot fail".into())));
        assert_eq!(*fake.state.borrow(), before);
    }

    #[test]
    fn done_and_fail_of_a_task_not_in_the_graph_name_it() {
        let fake = fake_with(owned_by_agent_1());
        assert_eq!(block_on(finish_task(fake.ctx(), "t9", None)), Err(OpError::UnknownTask("t9".into())));
        assert_eq!(block_on(fail_task(fake.ctx(), "t9", "x", None)), Err(OpError::UnknownTask("t9".into())));
    }

    #[test]
    fn a_heartbeat_refreshes_a_running_entry_and_cannot_revive_an_ended_one() {
        let fake = fake_with(owned_by_agent_1());
        let before = fake.state.borrow().clone();
        assert_eq!(block_on(heartbeat(fake.ctx(), "agent-1")), Ok(()));
        let mut expected = before;
        expected.registry.agent_mut("agent-1").unwrap().last_heartbeat = Some(format_rfc3339(NOW_MS));
        assert_eq!(*fake.state.borrow(), expected);
        fake.state.borrow_mut().registry.agent_mut("agent-1").unwrap().status = crate::model::AgentStatus::Dead;
        let refused = block_on(heartbeat(fake.ctx(), "agent-1"));
        assert_eq!(refused, Err(OpError::Refused("agent-1 is dead; a heartbeat cannot revive it".into())));
        assert_eq!(block_on(heartbeat(fake.ctx(), "agent-9")), Err(OpError::UnknownAgent("agent-9".into())));
    }

    // `wg recover`: the plan is applied only when asked, and only to a task that exists.

    fn recoverable() -> Fake {
        let tasks = [
            json!({"id": "t1", "status": "failed", "retry_count": 2, "failure_reason": "exit code 1",
                   "crash_loop": {"backoffs_served": 3}}),
            json!({"id": ".evaluate-t1", "status": "open"}),
            json!({"id": "t2", "status": "in-progress", "assigned": "agent-1"}),
        ];
        Fake::new(state_of(&tasks, &[]), NOW_MS, Liveness::Alive)
    }

    #[test]
    fn recover_applied_reopens_counts_and_unthrottles_the_task_and_abandons_its_companion() {
        let fake = recoverable();
        let before = fake.state.borrow().clone();
        let plan = block_on(recover(fake.ctx(), None, false, true)).unwrap();
        let planned = RecoverPlan { requeued: vec!["t1".into()], companions_abandoned: vec![".evaluate-t1".into()] };
        assert_eq!(plan, planned);
        let mut expected = before;
        let task = expected.graph.task_mut("t1").unwrap();
        task.status = TaskStatus::Open;
        task.retry_count = 3;
        task.failure_reason = None;
        task.crash_loop = None;
        task.push_log(NOW_MS, "test", "Recovered by wg recover (attempt 3)".into());
        let companion = expected.graph.task_mut(".evaluate-t1").unwrap();
        companion.status = TaskStatus::Abandoned;
        companion.push_log(NOW_MS, "test", "Abandoned by wg recover".into());
        assert_eq!(*fake.state.borrow(), expected, "the in-progress t2 is not touched");
    }

    #[test]
    fn recover_as_a_dry_run_writes_nothing_and_of_an_unknown_task_is_refused() {
        let fake = recoverable();
        let before = fake.state.borrow().clone();
        let plan = block_on(recover(fake.ctx(), Some("t1"), true, false)).unwrap();
        assert_eq!(plan, RecoverPlan { requeued: vec!["t1".into()], companions_abandoned: vec![] });
        assert_eq!(*fake.state.borrow(), before, "a dry run");
        assert_eq!(block_on(recover(fake.ctx(), Some("t9"), false, true)), Err(OpError::UnknownTask("t9".into())));
        assert_eq!(*fake.state.borrow(), before);
    }
}
